"""The ducc0 backend: against numpy.fft on random shapes, strides and axes, into fftconv's frequency-major spectra,
block by block, and through the three passes against the float64 oracle. Skipped where ducc0 is not installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("ducc0")

import fftconv  # noqa: E402
import oracle  # noqa: E402
from conftest import assert_close, tolerance  # noqa: E402
from fftconv import backends  # noqa: E402
from fftconv.backends import base, blocks  # noqa: E402
from fftconv.backends.ducc0 import Ducc0Backend, configure_ducc0  # noqa: E402

COMPLEX = {np.dtype(np.float32): np.dtype(np.complex64), np.dtype(np.float64): np.dtype(np.complex128)}


@st.composite
def strided_transforms(draw):
    """A real array that is a strided view (transposed, stepped, reversed), some of its axes, and transform sizes
    that pad or crop each of them."""
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 7), min_size=ndim, max_size=ndim))
    steps = draw(st.lists(st.sampled_from([1, 2, -1, -2]), min_size=ndim, max_size=ndim))
    order = draw(st.permutations(range(ndim)))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=min(ndim, 3), unique=True))
    sizes = [max(1, shape[axis] + draw(st.integers(-1, 3))) for axis in axes]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    threads = draw(st.sampled_from([1, 3]))
    negative = draw(st.booleans())
    return shape, steps, order, axes, sizes, dtype, threads, negative


def make_view(rng, shape, steps, order, dtype) -> np.ndarray:
    """An array of ``shape`` read through steps and a transpose of a larger base array."""
    base_shape = [n * abs(s) for n, s in zip(shape, steps)]
    base_array = rng.standard_normal([base_shape[axis] for axis in order]).astype(dtype)
    view = base_array.transpose(np.argsort(order))
    return view[tuple(slice(None, None, s) for s in steps)]


@settings(max_examples=60, deadline=None)
@given(strided_transforms())
def test_rfftn_and_irfftn_match_numpy_on_strided_views(case):
    shape, steps, order, axes, sizes, dtype, threads, negative = case
    rng = np.random.default_rng(abs(hash(str(case))) % 2**32)
    x = make_view(rng, shape, steps, order, dtype)
    ndim = x.ndim
    axes_given = [axis - ndim for axis in axes] if negative else axes
    backend = Ducc0Backend(threads=threads)
    tol = tolerance(dtype, math.prod(sizes))

    spectrum = backend.rfftn(x, sizes, axes_given)
    expected = np.fft.rfftn(x.astype(np.float64), s=sizes, axes=axes)
    assert spectrum.dtype == COMPLEX[np.dtype(dtype)]
    assert_close(spectrum, expected, tol, "rfftn")

    kept = spectrum.copy()
    inverse = backend.irfftn(spectrum, sizes, axes_given)
    assert inverse.dtype == np.dtype(dtype)
    assert_close(inverse, np.fft.irfftn(kept.astype(np.complex128), s=sizes, axes=axes), tol, "irfftn")
    np.testing.assert_array_equal(spectrum, kept, err_msg="irfftn destroyed its input by default")
    unnormalised = backend.irfftn(spectrum, sizes, axes_given, normalise=False)
    assert_close(unnormalised / math.prod(sizes), inverse, tol, "irfftn(normalise=False)")


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_rfftn_into_a_frequency_major_view_block_by_block(dtype, threads, monkeypatch, rng):
    """Into a transposed view (fftconv's spectra): every map lands in its place through the bin strides, including
    the partial blocks at the edges, from a reversed input that needs zero padding; an aligned contiguous ``out``
    is written directly."""
    monkeypatch.setattr(blocks, "STAGE_BYTES", 3 * 7 * 3 * 16)  # three complex128 maps of 7 x 3 bins per block
    backend = Ducc0Backend(threads=threads)
    maps = rng.standard_normal((5, 2, 4, 6, 4)).astype(dtype)[..., ::-1, ::-1]  # (rows, groups, cols, *space)
    complex_dtype = COMPLEX[np.dtype(dtype)]
    storage = np.full((7, 3, 2, 5, 4), np.nan, dtype=complex_dtype)  # (*bins, groups, rows, cols)
    view = storage.transpose(3, 2, 4, 0, 1)
    expected = np.fft.rfftn(maps.astype(np.float64), s=(7, 5), axes=(3, 4))
    assert backend.rfftn(maps, (7, 5), (3, 4), out=view) is view
    assert_close(view, expected, tolerance(dtype, 35), "frequency-major out")
    contiguous = np.full(expected.shape, np.nan, dtype=complex_dtype)
    assert backend.rfftn(maps, (7, 5), (3, 4), out=contiguous) is contiguous
    assert_close(contiguous, expected, tolerance(dtype, 35), "contiguous out")


@pytest.mark.parametrize("lead", [(5, 2, 4), (1, 1, 7)], ids=["rows shared", "one row"])
def test_irfftn_blocks_hands_every_map_over_once(lead, monkeypatch, rng):
    monkeypatch.setattr(blocks, "STAGE_BYTES", 2 * 7 * 3 * 16)
    backend = Ducc0Backend(threads=3)
    maps = rng.standard_normal((*lead, 7, 5))
    rows, groups, cols = lead
    storage = np.empty((7, 3, groups, rows, cols), dtype=np.complex128)
    spectrum = storage.transpose(3, 2, 4, 0, 1)
    spectrum[...] = np.fft.rfftn(maps, axes=(3, 4))
    result, handed = np.full(maps.shape, np.nan), np.zeros(lead, int)

    def consume(block, block_maps):
        result[block] = block_maps
        handed[block[:3]] += 1

    backend.irfftn_blocks(spectrum, (7, 5), (3, 4), consume)
    assert (handed == 1).all()
    assert_close(result, maps * 35, tolerance(np.float64, 35), "blocked inverse (unnormalised)")


def test_out_and_spectrum_shapes_and_settings_are_checked():
    backend = Ducc0Backend(threads=1)
    with pytest.raises(ValueError, match=r"out has shape \(3, 7, 5\) and dtype complex128; the transform needs "
                                         r"shape \(3, 7, 3\) and dtype complex128"):
        backend.rfftn(np.zeros((3, 6, 5)), (7, 5), (1, 2), out=np.zeros((3, 7, 5), np.complex128))
    with pytest.raises(ValueError, match=r"out has shape \(3, 7, 3\) and dtype complex64; .* dtype complex128"):
        backend.rfftn(np.zeros((3, 6, 5)), (7, 5), (1, 2), out=np.zeros((3, 7, 3), np.complex64))
    with pytest.raises(ValueError, match=r"spectrum has shape \(3, 7, 3\); irfftn to size \(8, 5\) over axes "
                                         r"\(1, 2\) needs \(3, 8, 3\)"):
        backend.irfftn(np.zeros((3, 7, 3), np.complex128), (8, 5), (1, 2))
    for threads in (0, -2):
        with pytest.raises(ValueError, match=f"threads must be a positive int, got {threads}"):
            Ducc0Backend(threads=threads)


def test_missing_library_is_named(monkeypatch):
    monkeypatch.setattr(backends.ducc0, "ducc0", None)
    with pytest.raises(ImportError, match=r"the 'ducc0' backend needs ducc0: pip install 'fftconv\[ducc0\]'"):
        Ducc0Backend()


def test_registered_shared_and_configurable():
    saved = dict(base._instances)
    try:
        assert "ducc0" in fftconv.available_backends()
        shared = fftconv.get_backend("ducc0")
        assert isinstance(shared, Ducc0Backend) and fftconv.get_backend("ducc0") is shared
        configured = configure_ducc0(threads=1)
        assert fftconv.get_backend("ducc0") is configured and configured.threads == 1
        assert repr(configured) == "Ducc0Backend(threads=1)"
    finally:
        base._instances.clear()
        base._instances.update(saved)


@pytest.mark.parametrize("kernel_transform", ["fft", "gemm"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_three_passes_match_the_oracle(dtype, kernel_transform, monkeypatch, rng):
    """Forward, input and weight gradients through a SpectralPlan on ducc0 (strided, grouped, padded, dilated),
    with blocks of a few maps so that every pass crosses block edges."""
    monkeypatch.setattr(blocks, "STAGE_BYTES", 4 * 16 * 9 * 16)
    options = dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2)
    x = rng.standard_normal((3, 4, 11, 10)).astype(dtype)
    w = rng.standard_normal((6, 2, 3, 2)).astype(dtype)
    geometry = fftconv.ConvGeometry.from_shapes(x.shape, w.shape, **options)
    gy = rng.standard_normal(geometry.full_output_shape).astype(dtype)
    plan = fftconv.spectral.SpectralPlan.create(geometry, dtype, backend=Ducc0Backend(threads=3),
                                                kernel_transform=kernel_transform)
    input_spectrum, weight_spectrum = plan.transform_input(x), plan.transform_weight(w)
    grad_spectrum = plan.transform_grad_output(gy)
    tol = tolerance(dtype, math.prod(plan.fft_shape), 3 * 4 * 6 * 5)
    assert_close(plan.forward(input_spectrum, weight_spectrum), oracle.forward(x, w, **options), tol, "forward")
    assert_close(plan.grad_input(grad_spectrum, weight_spectrum), oracle.grad_input(x.shape, w, gy, **options), tol,
                 "grad_input")
    assert_close(plan.grad_weight(input_spectrum, grad_spectrum), oracle.grad_weight(x, w.shape, gy, **options), tol,
                 "grad_weight")
