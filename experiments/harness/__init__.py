"""What every experiment shares, one module per job (docs/experiments.md describes the method and the rules):

- :mod:`.timing`: the timing helper (warm-up, repeats, median/min/max);
- :mod:`.workers`: fresh worker processes with pinned threads and tuned malloc, and what runs inside them;
- :mod:`.jobs`: resumable sweeps of jobs, locally or on a dask.distributed cluster;
- :mod:`.points`: the shared point format of a convolution problem, its inputs, passes and result lookup;
- :mod:`.methods`: method labels (``fft-pyfftw``, ``im2col``, ``torch`` ...) and their selection;
- :mod:`.results`: the JSON-lines results store and atomic file writes;
- :mod:`.provenance`: commit and machine fingerprint of every row, and which rows a figure shows;
- :mod:`.context`: the run context and :func:`~.context.run`;
- :mod:`.style`: plotting style, number formats, markdown tables, figure files;
- :mod:`.paper`: the paper's published values (``experiments/data/mathieu2014.json``);
- :mod:`.fftconv_api`: every fftconv name used beyond the public API, in one place.

Nothing here imports numpy at import time: the command line pins thread counts before numpy loads.
"""
