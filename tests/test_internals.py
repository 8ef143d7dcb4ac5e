"""The two building blocks behind the spectral crops and the small-kernel transforms, against numpy oracles."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from fftconv import _cyclic, _kernel_dft
from fftconv.geometry import ConvGeometry
from fftconv.spectral import SpectralPlan


progression_args = st.tuples(st.integers(0, 9), st.integers(-4, 4).filter(bool), st.integers(-12, 12),
                             st.integers(1, 12))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(progression_args)
def test_pieces_cover_the_progression_exactly(args):
    p = _cyclic.Progression(*args)
    if p.repeats():
        return
    rebuilt = np.empty(p.count, dtype=int)
    for in_progression, in_buffer in p.pieces():
        rebuilt[in_progression] = np.arange(p.size)[in_buffer]
    np.testing.assert_array_equal(rebuilt, p.positions())


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(progression_args, min_size=1, max_size=3))
def test_gather_and_scatter_match_fancy_indexing(args):
    progressions = [_cyclic.Progression(*a) for a in args]
    rng = np.random.default_rng(0)
    buffer = rng.standard_normal((2, *(p.size for p in progressions)))
    index = (slice(None), *np.ix_(*(p.positions() for p in progressions)))
    gathered = np.full((2, *(p.count for p in progressions)), np.nan)
    _cyclic.gather_into(gathered, buffer, progressions)
    np.testing.assert_array_equal(gathered, buffer[index])
    values = rng.standard_normal((2, *(p.count for p in progressions)))
    expected = np.zeros_like(buffer)
    np.add.at(expected, index, values)  # wrapped positions add up
    scattered = np.zeros_like(buffer)
    _cyclic.scatter(scattered, progressions, values)
    np.testing.assert_allclose(scattered, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("kernel,fft_shape,step,offset", [
    ((3,), (8,), -1, 2), ((3, 4), (7, 10), -2, 0), ((5, 5), (4, 6), -1, 4), ((2, 1, 3), (5, 4, 6), 3, -1)])
def test_dft_by_gemm_equals_rfftn_of_the_placed_maps(kernel, fft_shape, step, offset, rng):
    maps = rng.standard_normal((*kernel, 5))
    positions = [(np.arange(k) * step + offset) % n for k, n in zip(kernel, fft_shape)]
    buffer = np.zeros((*fft_shape, 5))
    np.add.at(buffer, np.ix_(*positions), maps)  # positions may wrap onto each other (kernel longer than N)
    axes = tuple(range(len(kernel)))
    expected = np.fft.rfftn(buffer, axes=axes)
    out = np.empty(expected.shape, complex)
    np.testing.assert_allclose(_kernel_dft.forward(maps, positions, fft_shape, out), expected, atol=1e-12)
    spectrum = np.fft.rfftn(rng.standard_normal((*fft_shape, 5)), axes=axes)
    read = np.fft.irfftn(spectrum, fft_shape, axes=axes)[np.ix_(*positions)]
    np.testing.assert_allclose(_kernel_dft.inverse(spectrum, positions, fft_shape, np.float64), read, atol=1e-12)


def test_gemm_and_fft_kernel_transforms_agree_in_every_pass(rng):
    g = ConvGeometry.from_shapes((2, 4, 9, 11), (6, 2, 3, 5), stride=(2, 1), padding=(1, 3), dilation=(1, 2),
                                 groups=2)
    x, w, gy = (rng.standard_normal(s) for s in (g.full_input_shape, g.full_weight_shape, g.full_output_shape))
    results = {}
    for mode in ("fft", "gemm"):
        plan = SpectralPlan.create(g, np.float64, "numpy", kernel_transform=mode)
        assert plan.kernels_by_gemm == (mode == "gemm")
        X, W, G = plan.transform_input(x), plan.transform_weight(w), plan.transform_grad_output(gy)
        results[mode] = [W, plan.forward(X, W), plan.grad_input(G, W), plan.grad_weight(X, G)]
    for by_fft, by_gemm in zip(results["fft"], results["gemm"]):
        np.testing.assert_allclose(by_gemm, by_fft, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="kernel_transform must be 'auto', 'fft' or 'gemm', got 'dft'"):
        SpectralPlan.create(g, np.float64, kernel_transform="dft")


@pytest.mark.parametrize("backend", ["pyfftw", "scipy", "numpy"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_padded_frequency_major_spectra_give_the_oracles_results(backend, dtype, rng):
    """Spectra whose rows per bin are >= 1 KiB get padded bin strides; every pass must still be exact.

    S * f / groups = 128 complex entries per bin and group (1 KiB in complex64, 2 KiB in complex128), with two groups
    so that the padding sits between bins and not between groups. Checked against the float64 loop oracle, through
    the functional API and through a layer with a Workspace (views of one shared buffer).
    """
    import oracle
    import fftconv
    from fftconv import nn
    from conftest import assert_close, tolerance

    if backend not in fftconv.available_backends():
        pytest.skip(f"{backend} is not installed")
    S, f, fp, groups = 8, 32, 12, 2
    x = rng.standard_normal((S, f, 7, 6)).astype(dtype)
    w = rng.standard_normal((fp, f // groups, 3, 2)).astype(dtype)
    gy = rng.standard_normal((S, fp, 3, 5)).astype(dtype)
    options = dict(stride=(2, 1), padding=(0, 0), groups=groups)
    g = ConvGeometry.from_shapes(x.shape, w.shape, **options)
    plan = SpectralPlan.create(g, dtype, backend)
    spectrum = plan.transform_input(x)
    row = spectrum[(0,) * g.ndim]
    assert spectrum.strides[g.ndim - 1] > row.size * row.itemsize, "expected a padded stride between bins"
    tol = tolerance(dtype, 64, f // groups * 6)
    expected = {"forward": oracle.forward(x, w, **options), "input": oracle.grad_input(x.shape, w, gy, **options),
                "weight": oracle.grad_weight(x, w.shape, gy, **options)}
    got = {"forward": fftconv.conv2d(x, w, backend=backend, **options),
           "input": fftconv.conv2d_input(x.shape, w, gy, backend=backend, **options),
           "weight": fftconv.conv2d_weight(x, w.shape, gy, backend=backend, **options)}
    for name in expected:
        assert_close(got[name], expected[name], tol, name)
    layer = nn.Conv2d(f, fp, (3, 2), bias=False, backend=backend, memory="recompute", dtype=dtype, **options)
    layer.weight[...] = w
    assert_close(layer.forward(x), expected["forward"], tol, "layer forward")
    assert_close(layer.backward(gy), expected["input"], tol, "layer input gradient")
    assert_close(layer.grad_weight, expected["weight"], tol, "layer weight gradient")



@pytest.mark.parametrize("shape", [(2, 9, 3, 4), (2, 3, 4, 9), (2, 3, 9, 4), (1, 1, 1, 1)],
                         ids=["rows", "columns", "shared", "tiny"])
def test_parallel_matmul_splits_any_dimension_exactly(shape, rng):
    """im2col's GEMM on the pool: split by rows, columns or the shared dimension (partial sums), equal to matmul."""
    from fftconv._parallel import parallel_matmul

    stack, m, k, n = shape
    left, right = rng.standard_normal((stack, m, k)), rng.standard_normal((stack, k, n))
    np.testing.assert_allclose(parallel_matmul(left, right, threads=3), np.matmul(left, right), rtol=1e-13,
                               atol=1e-13)
    # one matrix against a stack (the DFT matrices of fftconv._kernel_dft), written into a given strided out
    storage = np.zeros((stack, m, 2 * n))
    out = storage[..., ::2]
    assert parallel_matmul(left[0], right, out=out, threads=3) is out
    np.testing.assert_allclose(out, np.matmul(left[0], right), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("fft_shape", [(8,), (8, 8), (7, 8), (8, 7), (7, 7), (2, 6), (3, 1), (6, 4, 8), (5, 6, 7)],
                         ids=str)
def test_hermitian_matmul_equals_every_bin_multiplied(fft_shape, rng):
    """Skipping the mirrored bins of the self-conjugate columns changes nothing: every bin of ``out`` is written
    (it starts as NaN) and equals the per-bin matmul of half-spectra of real maps, for odd and even sizes in 1-3-d."""
    from fftconv.spectral import hermitian_matmul

    axes = tuple(range(len(fft_shape)))
    left = np.fft.rfftn(rng.standard_normal((*fft_shape, 2, 3, 4)), axes=axes)
    right = np.fft.rfftn(rng.standard_normal((*fft_shape, 2, 4, 5)), axes=axes)
    out = np.full((*left.shape[:-1], 5), np.nan, dtype=complex)
    assert hermitian_matmul(left, right, out, fft_shape) is out
    # products of sums of ~prod(fft_shape) terms of size ~1: float64 rounding of the mirrored transform
    np.testing.assert_allclose(out, left @ right, rtol=0, atol=1e-12 * np.prod(fft_shape))
