"""PyTorch as a second, independent oracle: forward vs ``torch.nn.functional.conv{n}d``, gradients vs autograd.

Geometries are seeded random draws in 1, 2 and 3 dimensions with stride, padding (int, tuple, "valid", "same"),
dilation, groups and bias; every draw is reproducible from its test id.
"""

from __future__ import annotations

import inspect
import re

import numpy as np
import pytest

import fftconv
from conftest import assert_close, reduction_lengths, tolerance

torch = pytest.importorskip("torch")
F = torch.nn.functional

# torch warns that it copies the input for 'same' with even kernels; that is its performance note, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")

DRAWS_PER_DIM = 12


def draw_problem(rng: np.random.Generator, ndim: int) -> dict:
    """A random valid convolution problem: arrays in float64 plus the keyword hyper-parameters."""
    groups = int(rng.choice([1, 1, 2, 3]))
    in_channels, out_channels = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 5 if ndim < 3 else 4, ndim))
    dilation = tuple(int(d) for d in rng.integers(1, 3, ndim))
    style = rng.choice(["same", "valid", "int", "tuple"])
    stride = (1,) * ndim if style == "same" else tuple(int(s) for s in rng.integers(1, 4, ndim))
    padding = {"same": "same", "valid": "valid", "int": int(rng.integers(0, 3)),
               "tuple": tuple(int(p) for p in rng.integers(0, 3, ndim))}[style]
    pad_total = [0] * ndim if isinstance(padding, str) else [2 * p for p in np.broadcast_to(padding, ndim)]
    spare = 6 if ndim < 3 else 3
    input_shape = tuple(max(1, d * (k - 1) + 1 - p) + int(rng.integers(0, spare))
                        for k, d, p in zip(kernel, dilation, pad_total))
    x = rng.standard_normal((int(rng.integers(1, 4)), in_channels, *input_shape))
    w = rng.standard_normal((out_channels, in_channels // groups, *kernel))
    b = rng.standard_normal(out_channels) if rng.random() < 0.5 else None
    options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return dict(x=x, w=w, b=b, options=options)


def torch_reference(x, w, b, options, gy=None):
    """Forward with torch; with ``gy``, also the autograd gradients with respect to input and weight."""
    ndim = x.ndim - 2
    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    bt = None if b is None else torch.tensor(b)
    y = getattr(F, f"conv{ndim}d")(xt, wt, bt, **options)
    if gy is None:
        return y.detach().numpy()
    y.backward(torch.tensor(gy))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


CASES = [(ndim, seed) for ndim in (1, 2, 3) for seed in range(DRAWS_PER_DIM)]


@pytest.mark.parametrize("ndim,seed", CASES, ids=[f"{n}d-seed{s}" for n, s in CASES])
def test_forward_and_gradients_match_torch(ndim, seed):
    rng = np.random.default_rng([ndim, seed])
    problem = draw_problem(rng, ndim)
    x, w, b, options = problem["x"], problem["w"], problem["b"], problem["options"]
    y_torch = torch_reference(x, w, b, options)
    gy = rng.standard_normal(y_torch.shape)
    y_torch, gx_torch, gw_torch = torch_reference(x, w, b, options, gy)
    reductions = reduction_lengths(x.shape, w.shape, gy.shape, options["groups"])
    points = 2 ** ndim * int(np.prod([n + 4 for n in x.shape[2:]]))  # above every policy's FFT size here
    conv, conv_input, conv_weight = (getattr(fftconv, f"conv{ndim}d{suffix}") for suffix in ("", "_input", "_weight"))
    geometry = fftconv.ConvGeometry.from_shapes(x.shape, w.shape, **options)
    for algo in fftconv.ALGORITHMS:
        label = f"{algo} {options}"
        reason = fftconv.ALGORITHMS[algo].unsupported_reason(geometry)
        if reason is not None:  # Winograd with a stride or dilation: refused with the reason
            with pytest.raises(ValueError, match=re.escape(reason)):
                conv(x, w, b, **options, algo=algo)
            continue
        y = conv(x, w, b, **options, algo=algo)
        assert_close(y, y_torch, tolerance(np.float64, points, reductions["forward"]), f"forward {label}")
        gx = conv_input(x.shape, w, gy, **options, algo=algo)
        assert_close(gx, gx_torch, tolerance(np.float64, points, reductions["input"]), f"input grad {label}")
        gw = conv_weight(x, w.shape, gy, **options, algo=algo)
        assert_close(gw, gw_torch, tolerance(np.float64, points, reductions["weight"]), f"weight grad {label}")

    # float32 through the paper's algorithm, measured against torch's float64 result on the same rounded data
    x32, w32, gy32 = x.astype(np.float32), w.astype(np.float32), gy.astype(np.float32)
    b32 = None if b is None else b.astype(np.float32)
    y64, gx64, gw64 = torch_reference(x32.astype(np.float64), w32.astype(np.float64),
                                      None if b32 is None else b32.astype(np.float64), options, gy32.astype(np.float64))
    for result, expected, pass_name in ((conv(x32, w32, b32, **options), y64, "forward"),
                                        (conv_input(x.shape, w32, gy32, **options), gx64, "input"),
                                        (conv_weight(x32, w.shape, gy32, **options), gw64, "weight")):
        assert result.dtype == np.float32
        assert_close(result, expected, tolerance(np.float32, points, reductions[pass_name]), f"float32 {pass_name}")


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_gradient_functions_match_torch_nn_grad(ndim, rng):
    """Same names, argument order and results as ``torch.nn.grad.conv{n}d_input`` / ``conv{n}d_weight``."""
    problem = draw_problem(rng, ndim)
    while isinstance(problem["options"]["padding"], str):  # torch.nn.grad takes numeric padding only
        problem = draw_problem(rng, ndim)
    x, w, options = problem["x"], problem["w"], problem["options"]
    gy = rng.standard_normal(torch_reference(x, w, None, options).shape)
    t_input = getattr(torch.nn.grad, f"conv{ndim}d_input")(x.shape, torch.tensor(w), torch.tensor(gy), **options)
    t_weight = getattr(torch.nn.grad, f"conv{ndim}d_weight")(torch.tensor(x), w.shape, torch.tensor(gy), **options)
    tol = tolerance(np.float64, 2 ** 12, 10 ** 3)
    assert_close(getattr(fftconv, f"conv{ndim}d_input")(x.shape, w, gy, **options), t_input.numpy(), tol)
    assert_close(getattr(fftconv, f"conv{ndim}d_weight")(x, w.shape, gy, **options), t_weight.numpy(), tol)


@pytest.mark.parametrize("name", ["conv2d_input", "conv2d_weight"])
def test_gradient_signatures_mirror_torch(name):
    ours = [p for p in inspect.signature(getattr(fftconv, name)).parameters.values()
            if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    theirs = list(inspect.signature(getattr(torch.nn.grad, name)).parameters.values())
    assert [(p.name, p.default) for p in ours] == [(p.name, p.default) for p in theirs]


@pytest.mark.parametrize("ndim", [1, 2, 3])
def test_same_padding_shapes_match_torch_for_even_kernels(ndim, rng):
    """'same' splits an odd total padding with the extra zero after, as torch does; output size equals input."""
    shape = (2, 2, *(7, 6, 5)[:ndim])
    x = rng.standard_normal(shape)
    for kernel in (2, 4):
        for dilation in (1, 2):
            w = rng.standard_normal((3, 2, *(kernel,) * ndim))
            expected = torch_reference(x, w, None, dict(padding="same", dilation=dilation))
            result = getattr(fftconv, f"conv{ndim}d")(x, w, padding="same", dilation=dilation)
            assert result.shape[2:] == shape[2:]
            assert_close(result, expected, tolerance(np.float64, 4096, 64), f"k={kernel} d={dilation}")


def test_random_draws_cover_every_feature():
    """The seeded draws above exercise each feature in every dimension (guards against a weakened generator)."""
    for ndim in (1, 2, 3):
        seen = set()
        for seed in range(DRAWS_PER_DIM):
            problem = draw_problem(np.random.default_rng([ndim, seed]), ndim)
            options, kernel = problem["options"], problem["w"].shape[2:]
            seen |= {name for name, present in (
                ("same", options["padding"] == "same"), ("valid", options["padding"] == "valid"),
                ("numeric padding", not isinstance(options["padding"], str)),
                ("stride", max(options["stride"]) > 1), ("dilation", max(options["dilation"]) > 1),
                ("groups", options["groups"] > 1), ("bias", problem["b"] is not None),
                ("even kernel", any(k % 2 == 0 for k in kernel))) if present}
        assert seen == {"same", "valid", "numeric padding", "stride", "dilation", "groups", "bias", "even kernel"}, \
            f"{ndim}-d draws only cover {sorted(seen)}"
