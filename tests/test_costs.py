"""fftconv.costs against values computed by hand from the paper, and against the transforms fftconv really runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fftconv import ConvGeometry, CountingBackend, NumpyBackend, SpectralPlan
from fftconv.costs import (PASSES, direct_flops, direct_ops, executed_flops, fft_ops, kernel_dft_flops,
                           paper_memory_bytes, real_fft_flops)

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


@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kernel_transform", ["fft", "gemm"])
def test_executed_flops_count_the_transforms_fftconv_runs(pass_name, groups, kernel_transform):
    """An independent oracle: count the maps a real SpectralPlan transforms in each pass, and how."""
    geometry = ConvGeometry.from_shapes((3, 4, 9, 7), (6, 4 // groups, 3, 2), groups=groups)
    plan = SpectralPlan.create(geometry, np.float64, backend=CountingBackend(NumpyBackend()), fft_size="fast",
                               kernel_transform=kernel_transform)
    counter = plan.backend
    rng = np.random.default_rng(0)
    x = rng.standard_normal(geometry.full_input_shape)
    w = rng.standard_normal(geometry.full_weight_shape)
    gy = rng.standard_normal(geometry.full_output_shape)
    if pass_name == "forward":
        plan.forward(plan.transform_input(x), plan.transform_weight(w))
    elif pass_name == "grad_input":
        plan.grad_input(plan.transform_grad_output(gy), plan.transform_weight(w))
    else:
        plan.grad_weight(plan.transform_input(x), plan.transform_grad_output(gy))
    by_gemm = kernel_transform == "gemm"
    count = executed_flops(geometry, plan.fft_shape, pass_name, kernels_by_gemm=by_gemm)
    fft_points = plan.fft_shape[0] * plan.fft_shape[1]
    one = 2.5 * fft_points * math.log2(fft_points)
    b0, b1 = plan.fft_shape[0], plan.fft_shape[1] // 2 + 1
    kernel_map = 8 * (3 * b0 * b1 + 3 * 2 * b1) if by_gemm else one  # per-axis DFT matrices on a 3x2 kernel
    # The counter logs maps done by DFT-matrix products as ("dft by gemm", maps); the rest went through the FFT.
    by_matrix = {"rfftn": 0, "irfftn": 0}
    for direction, shape in counter.calls:
        if shape[0] == "dft by gemm":
            by_matrix[direction] += shape[1]
    assert (by_matrix["rfftn"] + by_matrix["irfftn"] > 0) == by_gemm
    expected = {"forward": (counter.forward_maps - by_matrix["rfftn"]) * one + by_matrix["rfftn"] * kernel_map,
                "inverse": (counter.inverse_maps - by_matrix["irfftn"]) * one + by_matrix["irfftn"] * kernel_map}
    assert count.forward_transforms == pytest.approx(expected["forward"])
    assert count.inverse_transforms == pytest.approx(expected["inverse"])
    assert count.products == 8 * b0 * b1 * 3 * 4 * 6 // groups  # S x f x f' multiply-adds per bin, in groups
    assert count.total == count.forward_transforms + count.products + count.inverse_transforms
    assert count.kernels_by_gemm is by_gemm


def test_direct_flops_are_two_per_multiply_add():
    geometry = ConvGeometry.from_shapes((2, 6, 10, 12), (4, 3, 3, 5), groups=2, stride=(1, 2))
    output = geometry.output_shape  # (8, 4)
    assert direct_flops(geometry) == 2 * 2 * 4 * 3 * math.prod(output) * 15


@pytest.mark.parametrize("call, message", [
    (lambda: direct_ops(0, 1, 1, 8, 3), "batch"),
    (lambda: direct_ops(1, 1, 1, 4, 5), "kernel_size=5"),
    (lambda: fft_ops(1, 1, 1, 8, fft_constant=0), "fft_constant"),
    (lambda: paper_memory_bytes(1, 2.5, 1, 8), "in_channels"),
    (lambda: executed_flops(ConvGeometry.from_shapes((1, 1, 8), (1, 1, 3)), (8,), "backward"), "pass_name"),
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
