"""fftconv.costs against values computed by hand from the paper, and against the transforms fftconv really runs."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from counting_backend import CountingBackend
from fftconv import ConvGeometry, NumpyBackend, SpectralPlan
from fftconv.costs import (direct_flops, direct_ops, executed_flops, fft_ops, kernel_dft_flops, paper_memory_bytes,
                           real_fft_flops, spatial_workspace_bytes)
from fftconv.passes import PASSES

# The paper's memory table (section 2.3): S, n, f, f', printed "MB".
PAPER_MEMORY_ROWS = [
    (128, 16, 96, 256, 76), (128, 32, 96, 256, 294), (64, 64, 96, 256, 784), (128, 64, 96, 256, 1159),
    (128, 16, 256, 384, 151), (128, 32, 256, 384, 588), (128, 16, 384, 384, 214), (128, 32, 384, 384, 830),
]


def test_direct_ops_match_the_figure_2_values():
    # S f' f (n-k+1)^2 k^2 with S=128, f=96, f'=256, k=7, worked out by hand: 128*256*96 = 3145728, k^2 = 49.
    assert direct_ops(128, 96, 256, 32, 7) == 3145728 * 26 ** 2 * 49 == 104_199_094_272  # "1.042e11"
    assert direct_ops(128, 96, 256, 8, 7) == 3145728 * 2 ** 2 * 49  # 6.17e8
    assert direct_ops(128, 96, 256, 16, 7) == 3145728 * 10 ** 2 * 49  # 1.54e10
    assert direct_ops(128, 96, 256, 64, 7) == 3145728 * 58 ** 2 * 49  # 5.185e11
    assert f"{direct_ops(128, 96, 256, 64, 7):.4g}" == "5.185e+11"


def test_fft_ops_follow_table_1_with_c_5():
    # n=32, C=5: one transform 2*5*32^2*log2(32) = 51200 ops; S f + f' f = 36864 maps forward, S f' = 32768 inverse;
    # products 4 S f' f n^2 = 4 * 3145728 * 1024.
    expected = 51200 * 36864 + 4 * 3145728 * 1024 + 51200 * 32768
    assert fft_ops(128, 96, 256, 32) == expected
    # The reference's reading of Figure 2 (3.9e9 / 1.65e10 / 6.87e10 at n = 16 / 32 / 64).
    assert [round(fft_ops(128, 96, 256, n) / 1e9, 2) for n in (16, 32, 64)] == [3.93, 16.45, 68.65]
    # The count does not depend on k and scales linearly in C for the transform terms only.
    products = 4 * 3145728 * 1024
    assert fft_ops(128, 96, 256, 32, fft_constant=10) - products == pytest.approx(2 * (expected - products))


def test_paper_memory_formula_reproduces_rows_1_to_4_exactly():
    for batch, n, f, f_out, printed_mb in PAPER_MEMORY_ROWS[:4]:
        formula = paper_memory_bytes(batch, f, f_out, n)
        assert formula == 4 * n * (n + 1) * (batch * f + batch * f_out + f * f_out)
        assert round(formula / 1e6) == printed_mb  # MB = 10^6 bytes


def test_paper_memory_rows_5_to_8_disagree_with_the_papers_own_formula():
    for batch, n, f, f_out, printed_mb in PAPER_MEMORY_ROWS[4:]:
        ratio = printed_mb / (paper_memory_bytes(batch, f, f_out, n) / 1e6)
        assert 0.76 < ratio < 0.81, (batch, n, f, f_out, ratio)


def test_real_fft_flops():
    assert real_fft_flops((32, 32)) == 2.5 * 1024 * 10
    assert real_fft_flops((8,)) == 2.5 * 8 * 3
    with pytest.raises(ValueError, match="fft_shape"):
        real_fft_flops((0, 4))


@pytest.fixture
def matmul_flops(monkeypatch):
    """Count the flops of every complex matrix product fftconv runs: the per-bin GEMMs (``hermitian_matmul``'s
    ``batched_matmul``) and the DFT-matrix transforms (``_kernel_dft``'s ``parallel_matmul``), from the shapes of
    the operands actually multiplied."""
    from fftconv import _kernel_dft
    from fftconv.spectral import hermitian

    counted = {"per-bin": 0.0, "dft-matrix": 0.0}

    def counting(function, kind):
        def wrapper(left, right, *args, **kwargs):
            out = function(left, right, *args, **kwargs)
            m, k = left.shape[-2:]
            counted[kind] += 8.0 * math.prod(out.shape[:-2]) * m * k * right.shape[-1]
            return out
        return wrapper

    monkeypatch.setattr(hermitian, "batched_matmul", counting(hermitian.batched_matmul, "per-bin"))
    monkeypatch.setattr(_kernel_dft, "parallel_matmul", counting(_kernel_dft.parallel_matmul, "dft-matrix"))
    return counted


@pytest.mark.parametrize("fft_size", ["fast", (10, 8), (9, 7)], ids=["fast", "even", "odd"])
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kernel_transform", ["fft", "gemm"])
def test_executed_flops_count_the_work_fftconv_runs(pass_name, groups, kernel_transform, fft_size, matmul_flops):
    """An independent oracle: run a real SpectralPlan pass and count what it does. Maps through the FFT come from a
    counting backend (at 2.5 N log2 N each); GEMM and DFT-matrix flops from the shapes of the matrices multiplied,
    so the conjugate bins hermitian_matmul skips are not counted."""
    geometry = ConvGeometry.from_shapes((3, 4, 9, 7), (6, 4 // groups, 3, 2), groups=groups)
    counter = CountingBackend(NumpyBackend())
    plan = SpectralPlan.create(geometry, np.float64, backend=counter, fft_size=fft_size,
                               kernel_transform=kernel_transform)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(geometry.full_input_shape)
    w = rng.standard_normal(geometry.full_weight_shape)
    gy = rng.standard_normal(geometry.full_output_shape)
    if pass_name == "forward":
        plan.forward(plan.transform_input(x), plan.transform_weight(w))
    elif pass_name == "input":
        plan.grad_input(plan.transform_grad_output(gy), plan.transform_weight(w))
    else:
        plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(gy))
    by_gemm = kernel_transform == "gemm"
    count = executed_flops(geometry, plan.fft_shape, pass_name, kernels_by_gemm=by_gemm)
    fft_points = math.prod(plan.fft_shape)
    one = 2.5 * fft_points * math.log2(fft_points)
    fft_maps = {"rfftn": 0, "irfftn": 0}
    for method, shape in counter.calls:
        if method in fft_maps:
            fft_maps[method] += math.prod(shape[:-2])  # (rows, groups, cols, *space): maps before the 2 spatial axes
    assert (matmul_flops["dft-matrix"] > 0) == by_gemm
    assert count.transforms == pytest.approx((fft_maps["rfftn"] + fft_maps["irfftn"]) * one
                                             + matmul_flops["dft-matrix"])
    assert count.forward_transforms >= fft_maps["rfftn"] * one and count.inverse_transforms >= fft_maps["irfftn"] * one
    assert count.products == pytest.approx(matmul_flops["per-bin"])
    every_bin = 8 * plan.fft_shape[0] * (plan.fft_shape[1] // 2 + 1) * 3 * 4 * 6 // groups  # S f f'/g per bin
    assert count.products < every_bin  # the conjugate pairs are multiplied once
    assert count.total == count.forward_transforms + count.products + count.inverse_transforms
    assert count.kernels_by_gemm is by_gemm


def test_executed_flops_skip_exactly_the_conjugate_bins():
    """At 8 x 8 the columns 0 and 4 of the 8 x 5 half spectrum pair rows 1-3 with rows 7-5: 6 of 40 bins are copies."""
    g = ConvGeometry.from_shapes((1, 1, 8, 8), (1, 1, 1, 1))
    assert executed_flops(g, (8, 8), kernels_by_gemm=False).products == 8 * (40 - 6)
    assert executed_flops(g.__class__.from_shapes((1, 1, 8), (1, 1, 1)), (8,)).products == 8 * 5  # 1-d: no pairs


def test_direct_flops_are_two_per_multiply_add():
    geometry = ConvGeometry.from_shapes((2, 6, 10, 12), (4, 3, 3, 5), groups=2, stride=(1, 2))
    output = geometry.output_shape  # (8, 4)
    assert direct_flops(geometry) == 2 * 2 * 4 * 3 * math.prod(output) * 15


@pytest.mark.parametrize("call, message", [
    (lambda: direct_ops(0, 1, 1, 8, 3), "batch"),
    (lambda: direct_ops(1, 1, 1, 4, 5), "kernel_size=5"),
    (lambda: fft_ops(1, 1, 1, 8, fft_constant=0), "fft_constant"),
    (lambda: paper_memory_bytes(1, 2.5, 1, 8), "in_channels"),
    (lambda: executed_flops(ConvGeometry.from_shapes((1, 1, 8), (1, 1, 3)), (8,), "grad_input"), "pass_name"),
    (lambda: executed_flops(ConvGeometry.from_shapes((1, 1, 8), (1, 1, 3)), (8, 8)), "fft_shape"),
])
def test_bad_arguments_are_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_executed_flops_follow_fftconvs_own_choice_of_kernel_transform():
    small = ConvGeometry.from_shapes((2, 3, 32, 32), (4, 3, 3, 3))
    large = ConvGeometry.from_shapes((2, 3, 32, 32), (4, 3, 31, 31))
    for geometry in (small, large):
        chosen = SpectralPlan.create(geometry, np.float32, fft_size=(32, 32), check_memory=False).kernels_by_gemm
        assert executed_flops(geometry, (32, 32)) == executed_flops(geometry, (32, 32), kernels_by_gemm=chosen)
    assert executed_flops(small, (32, 32), kernels_by_gemm=True) != executed_flops(small, (32, 32),
                                                                                  kernels_by_gemm=False)


def test_kernel_dft_flops_by_hand():
    assert kernel_dft_flops((3, 3), (8, 8)) == 8 * (3 * 8 * 5 + 3 * 3 * 5)
    assert kernel_dft_flops((4,), (10,)) == 8 * 4 * 6


def test_kernel_transform_follows_the_rates_in_use():
    """DFT matrices for kernels when the complex GEMM is fast against the FFT, the FFT when it is slow; the plan and
    the flop count ask the same rule at the rates in use."""
    from fftconv.costs import kernels_by_matrix
    from fftconv.rates import MachineRates, set_rates

    g = ConvGeometry.from_shapes((2, 3, 32, 32), (4, 3, 5, 5))
    fast_gemm, slow_gemm = MachineRates(dft_matrix_flops=1e12), MachineRates(dft_matrix_flops=1e9)
    assert kernels_by_matrix((5, 5), (32, 32), fast_gemm) and not kernels_by_matrix((5, 5), (32, 32), slow_gemm)
    try:
        for rates, expected in ((fast_gemm, True), (slow_gemm, False)):
            set_rates(rates)
            assert SpectralPlan.create(g, np.float32, fft_size=(32, 32)).kernels_by_gemm is expected
            assert executed_flops(g, (32, 32)).kernels_by_gemm is expected
    finally:
        set_rates(None)


# ---------------------------------------------------------------------- memory: estimates against measured peaks
# (input, weight, options): padding and not, f' >> f k (the output dominates im2col), pointwise, strided, 3-d.
# Peaks of 0.2 to 7 MB: large enough that Python's own small objects (a few kB) do not matter.
MEMORY_CASES = {
    "padded-3x3": ((4, 16, 32, 32), (32, 16, 3, 3), dict(padding=1)),
    "many-outputs": ((2, 3, 32, 32), (256, 3, 3, 3), dict(padding=1)),
    "pointwise": ((2, 8, 20, 20), (64, 8, 1, 1), {}),
    "strided-5x5": ((4, 32, 16, 16), (32, 32, 5, 5), dict(stride=2, padding=2)),
    "3d": ((2, 4, 12, 12, 12), (8, 4, 3, 3, 3), dict(padding=1)),
}
#: How far above the measured peak each estimate may be. The spatial algorithms are counted phase by phase; the
#: spectral plan's peak (fft, and the tiles' plan of tiled) assumes three spectra, a product and a spatial result
#: alive at once, which the passes do not all hold together; Winograd's counts every task's chunk twice at once,
#: which the tasks rarely reach together.
OVER_ESTIMATE = {"im2col": 1.25, "direct": 1.8, "fft": 2.0, "tiled": 2.5, "winograd": 4.0}
#: Small allocations the estimates leave out: Python objects, the thread pool's futures, index arrays.
UNCOUNTED = 64 * 2**10


def measured_peak(run) -> int:
    """Bytes numpy allocated at the peak of ``run()`` (numpy reports its allocations to tracemalloc); run once first
    so that caches (plans, transform matrices) are not counted."""
    run()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("case_id", list(MEMORY_CASES))
def test_workspace_estimates_cover_the_measured_peaks(case_id, dtype):
    """Every algorithm's workspace estimate (what algo="auto" and the memory checks use) is at least the peak
    tracemalloc measures (less UNCOUNTED), and at most OVER_ESTIMATE times it."""
    from fftconv import ALGORITHMS, choose

    x_shape, w_shape, options = MEMORY_CASES[case_id]
    g = ConvGeometry.from_shapes(x_shape, w_shape, **options)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape).astype(dtype), rng.standard_normal(w_shape).astype(dtype)
    gy = rng.standard_normal(g.full_output_shape).astype(dtype)
    for algo, entry in ALGORITHMS.items():
        if entry.unsupported_reason(g):
            continue
        for pass_name in PASSES:
            estimate = choose.best_estimate(algo, g, pass_name, choose.MachineRates(), dtype=dtype, max_error=None)
            run = {"forward": lambda: entry.forward(x, w, None, g, **estimate.options),
                   "input": lambda: entry.grad_input(gy, w, g, **estimate.options),
                   "weight": lambda: entry.grad_weight(x, gy, g, **estimate.options)}[pass_name]
            peak = measured_peak(run)
            ratio = estimate.workspace_bytes / peak
            assert estimate.workspace_bytes + UNCOUNTED >= peak, f"{algo} {pass_name}: {peak} > {estimate}"
            assert ratio <= OVER_ESTIMATE[algo], f"{algo} {pass_name}: estimate / measured = {ratio:.2f}"


def test_spatial_workspace_by_hand():
    """f' >> f k: im2col's forward holds the GEMM's Y^T and its copy Y; direct holds float64 copies whatever the
    input dtype."""
    g = ConvGeometry.from_shapes((2, 3, 32, 32), (256, 3, 3, 3), padding=1)
    outputs, columns = 2 * 256 * 32 * 32, 3 * 9 * 2 * 32 * 32
    assert spatial_workspace_bytes(g, np.float32, "im2col", "forward") == 4 * max(columns + outputs, 2 * outputs)
    buffers = 3 * np.getbufsize() * 8
    padded, weights = 2 * 3 * 34 * 34, 256 * 3 * 9
    # the padded float64 input (and its float64 copy before padding), the float64 result and one tap's product
    assert spatial_workspace_bytes(g, np.float32, "direct", "forward") == (
        8 * max(2 * 3 * 32 * 32 + padded, padded + 2 * outputs) + 8 * weights + buffers)
    with pytest.raises(ValueError, match="algo must be 'im2col' or 'direct'"):
        spatial_workspace_bytes(g, np.float32, "fft", "forward")
