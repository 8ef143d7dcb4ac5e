"""The cost model: estimated seconds of each algorithm for one pass, from operation counts and machine rates.

Pure: it reads only its arguments (a geometry, a pass, :class:`~fftconv.rates.MachineRates`), times nothing and
touches no file. The counts come from :mod:`fftconv.costs`; each estimate is split into transforms, products,
copies and fixed costs, the terms :func:`fftconv.explain` prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence, Union

import numpy as np

from ..costs import (FFTPassWork, complex_gemm_flops, direct_flops, im2col_column_bytes, kernel_dft_flops,
                     kernels_by_matrix, real_fft_flops, real_gemm_flops, spectra_bytes)
from ..geometry import ConvGeometry
from ..passes import Pass
from ..rates import MachineRates
from ..sizes import fft_shape_for

#: The algorithms ``algo="auto"`` chooses between.
CANDIDATES = ("fft", "im2col", "direct")


@dataclass(frozen=True)
class Estimate:
    """Estimated seconds of one algorithm for one pass, by stage, and the flops it executes.

    ``transforms``: FFTs and DFT-matrix transforms; ``products``: GEMMs or the direct loop's arithmetic;
    ``copies``: unfolding, layout copies and crops; ``fixed``: per-call and per-kernel-tap overheads.
    """

    algo: str
    transforms: float
    products: float
    copies: float
    fixed: float
    flops: float
    fft_shape: tuple[int, ...] | None = field(default=None)

    @property
    def seconds(self) -> float:
        return self.transforms + self.products + self.copies + self.fixed


def estimate_fft(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates,
                 fft_size: Union[str, Sequence[int], None] = None) -> Estimate:
    """The FFT algorithm: transforms at the FFT rate (kernels by DFT matrices where fftconv does that), per-bin
    complex GEMMs, the spectra written once, the crop, and a fixed cost per pass."""
    fft_shape = fft_shape_for(g, fft_size)
    work = FFTPassWork.of(g, fft_shape, pass_name, kernels_by_matrix(g.kernel_shape, fft_shape, rates))
    per_map = rates.fft_seconds(real_fft_flops(fft_shape))
    by_matrix = rates.dft_matrix_seconds(kernel_dft_flops(g.kernel_shape, fft_shape))
    transforms = sum(work.fft_maps) * per_map + sum(work.matrix_maps) * by_matrix
    m, k, n = work.gemm_shape
    products = (rates.complex_gemm_seconds(complex_gemm_flops(m, k, n) * work.gemm_count, min(m, k, n))
                + work.gemm_count * rates.gemm_matrix_seconds)
    crop = {Pass.FORWARD: g.full_output_shape, Pass.INPUT: g.full_input_shape,
            Pass.WEIGHT: g.full_weight_shape}[work.pass_name]
    copies = spectra_bytes(g, fft_shape) / rates.copy_bytes + rates.copy_seconds(math.prod(crop), crop[-1])
    return Estimate("fft", transforms, products, copies, rates.fft_call_seconds, work.flops().total, fft_shape)


def estimate_im2col(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates) -> Estimate:
    """The tap-major im2col of :mod:`fftconv.im2col`: copies by their runs, and one GEMM per group."""
    pass_name = Pass.parse(pass_name)
    positions = g.batch * math.prod(g.output_shape)  # columns of the unfolded matrix
    rows = g.in_channels // g.groups * math.prod(g.kernel_shape)  # its rows, per group
    fg = g.out_channels // g.groups
    row_run = g.output_shape[-1]  # numpy copies an output row per inner loop (strided or not)
    unfold = rates.copy_seconds(rows * g.groups * positions, row_run)
    outputs = rates.copy_seconds(g.out_channels * positions, math.prod(g.output_shape))  # Y or GY transposed
    fixed = rates.im2col_call_seconds
    if pass_name is Pass.FORWARD:  # W (f' x rows) @ cols (rows x positions)
        copies, products = unfold + outputs, _real_gemm(rates, fg, rows, positions, g.groups)
    elif pass_name is Pass.WEIGHT:  # GY^T (f' x positions) @ cols^T (positions x rows)
        copies, products = unfold + outputs, _real_gemm(rates, fg, positions, rows, g.groups)
    else:  # W^T (rows x f') @ GY^T (f' x positions), then col2im: one Python step and one add per tap
        taps = math.prod(g.kernel_shape)
        fixed += taps * rates.tap_seconds
        padded = any(g.padding_before) or any(g.padding_after)  # then the padded gradient is cropped by a copy
        crop = rates.copy_seconds(math.prod(g.full_input_shape), g.input_shape[-1]) if padded else 0.0
        copies = outputs + 1.5 * rates.copy_seconds(rows * g.groups * positions, row_run) + crop
        products = _real_gemm(rates, rows, fg, positions, g.groups)
    return Estimate("im2col", 0.0, products, copies, fixed, float(direct_flops(g)))


def _real_gemm(rates: MachineRates, m: int, k: int, n: int, count: int) -> float:
    return rates.real_gemm_seconds(real_gemm_flops(m, k, n) * count, m, n)


def estimate_direct(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates) -> Estimate:
    """The direct loop: one einsum per kernel tap over strided windows, in float64."""
    Pass.parse(pass_name)
    flops = float(direct_flops(g))
    taps = math.prod(g.kernel_shape)
    inner_loops = flops / 2 / math.prod(g.output_shape)  # einsum's inner loop runs over the output positions
    copies = inner_loops * rates.copy_run_seconds + 2 * im2col_column_bytes(g, np.float32) / rates.copy_bytes
    return Estimate("direct", 0.0, flops / rates.direct_flops, copies,
                    rates.direct_call_seconds + taps * rates.direct_tap_seconds, flops)


def estimates(g: ConvGeometry, pass_name: Union[Pass, str], rates: MachineRates,
              fft_size: Union[str, Sequence[int], None] = None) -> dict[str, Estimate]:
    """The :class:`Estimate` of every candidate for one pass of ``g``.

    Examples
    --------
    >>> g = ConvGeometry.from_shapes((32, 96, 32, 32), (256, 96, 7, 7))
    >>> costs = estimates(g, "forward", MachineRates())
    >>> costs["fft"].seconds < costs["im2col"].seconds < costs["direct"].seconds
    True
    """
    pass_name = Pass.parse(pass_name)
    return {"fft": estimate_fft(g, pass_name, rates, fft_size), "im2col": estimate_im2col(g, pass_name, rates),
            "direct": estimate_direct(g, pass_name, rates)}
