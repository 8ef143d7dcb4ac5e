"""Experiments that regenerate the figures and tables of Mathieu, Henaff & LeCun (2014), plus accuracy and
algorithm comparisons. Run ``python -m experiments list``; see ``experiments/README.md``.

Importing this package imports nothing heavy: the command line sets thread variables before numpy loads.
"""

#: The experiments ``python -m experiments all`` runs, in this order. A name whose module does not exist yet is
#: skipped with a message, so the list can name experiments still being written.
EXPERIMENTS = [
    "param_counts",
    "opcounts",
    "memory",
    "accuracy",
    "lenet",
    "sweeps",
    "layers",
    "network",
    "kernel_window",
    "roofline",
    "transform_rates",
    "torch_step",
    "defaults",
    "auto_grid",
]
