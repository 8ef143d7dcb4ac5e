"""Measure this machine's :class:`~fftconv.rates.MachineRates` and save them for later processes.

Each rate is measured on fftconv's own code paths (frequency-major spectra, GEMMs on its thread pool) at shapes
typical of convolution layers, in float32 with the default FFT backend and threads, and converted with the same
formulas the cost model divides by, so the model reproduces the measurements it was fitted to.

:func:`calibrate_once` runs it automatically, once, the first time ``algo="auto"`` needs rates on a machine that has
none saved (``FFTCONV_CALIBRATE=0`` turns that off).
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from typing import Callable

import numpy as np

from .._parallel import batched_matmul, fork_safe_lock, parallel_matmul
from ..algorithms import ALGORITHMS
from ..backends import FFTBackend, get_backend
from ..costs import complex_gemm_flops, direct_flops, kernel_dft_flops, real_fft_flops, real_gemm_flops
from ..geometry import ConvGeometry
from ..passes import Pass
from ..rates import MachineRates, calibration_file, gemm_efficiency, needs_calibration, save_rates, set_rates
from ..sizes import half_spectrum_shape
from ..spectral import SpectralPlan
from .model import estimate_fft, estimate_winograd

#: ``FFTCONV_CALIBRATE``: ``"1"`` (the default) calibrates an uncalibrated machine automatically, once; ``"0"`` never.
CALIBRATE_VARIABLE = "FFTCONV_CALIBRATE"


def calibrate(save: bool = True) -> MachineRates:
    """Measure this machine's rates (a few seconds), use them from now on and, by default, save them.

    Saved rates are found again by later processes on the same machine with the same library versions
    (:func:`fftconv.rates.calibration_file`); :func:`fftconv.explain` says whether the rates in use were calibrated.

    Returns
    -------
    MachineRates
        The measured rates; ``source`` says when, where and with which backend.
    """
    rng = np.random.default_rng(0)
    backend = get_backend()
    fft_flops, fft_map_seconds = _pipeline_fft_rates(backend, rng)
    stack, m, k, n = 272, 32, 96, 256  # the per-bin products of a 32x32 layer with S=32, f=96, f'=256
    left = (rng.standard_normal((stack, m, k)) + 1j * rng.standard_normal((stack, m, k))).astype(np.complex64)
    right = (rng.standard_normal((stack, k, n)) + 1j * rng.standard_normal((stack, k, n))).astype(np.complex64)
    product = np.empty((stack, m, n), np.complex64)
    cgemm_seconds = _best_seconds(lambda: batched_matmul(left, right, product))
    tiny_left, tiny_right = left[:, :1, :2].copy(), right[:, :2, :2].copy()
    tiny_product = np.empty((stack, 1, 2), np.complex64)
    matrix_seconds = _best_seconds(lambda: batched_matmul(tiny_left, tiny_right, tiny_product), repeats=20) / stack
    rows, inner, columns = 4096, 1024, 256
    a = rng.standard_normal((rows, inner), dtype=np.float32)
    b = rng.standard_normal((inner, columns), dtype=np.float32)
    sgemm_seconds = _best_seconds(lambda: parallel_matmul(a[None], b[None]))  # as im2col runs it
    strided = rng.standard_normal((64, 64, 64, 64), dtype=np.float32)
    copy_seconds = _best_seconds(lambda: strided.copy())
    # numpy's copy loop pays per innermost run: runs of 3 values from a source that stays in cache (1 MiB), as
    # im2col's unfold reads its padded input
    short = strided[0, :, :, :3]
    short_seconds = _best_seconds(lambda: np.ascontiguousarray(short), repeats=20)
    pointwise = ConvGeometry.from_shapes((8, 16, 32, 32), (16, 16, 1, 1))  # the direct loop's einsum, one tap
    x64, w64 = rng.standard_normal(pointwise.full_input_shape), rng.standard_normal((16, 16))
    direct_seconds = _best_seconds(lambda: np.einsum("scxy,fc->sfxy", x64, w64))
    dft_seconds, dft_flops = _kernel_dft_seconds(backend, rng)
    call_seconds = _tiny_call_seconds()
    defaults = MachineRates()
    rates = MachineRates(
        fft_flops=fft_flops,
        fft_map_seconds=fft_map_seconds,
        complex_gemm_flops=complex_gemm_flops(m, k, n) * stack / cgemm_seconds / gemm_efficiency(
            min(m, k, n), defaults.complex_gemm_half_dim),
        real_gemm_flops=real_gemm_flops(rows, inner, columns) / sgemm_seconds / (
            gemm_efficiency(rows, defaults.gemm_half_dim) * gemm_efficiency(columns, defaults.gemm_half_dim)),
        copy_bytes=strided.nbytes / copy_seconds,
        copy_run_seconds=short_seconds / (short.size // 3),
        direct_flops=direct_flops(pointwise) / direct_seconds,
        dft_matrix_flops=dft_flops / dft_seconds,
        fft_call_seconds=call_seconds["fft"],
        im2col_call_seconds=call_seconds["im2col"],
        direct_call_seconds=call_seconds["direct"],
        winograd_call_seconds=call_seconds["winograd"],
        gemm_matrix_seconds=matrix_seconds,
        tap_seconds=_tap_seconds("im2col", Pass.INPUT),
        direct_tap_seconds=_tap_seconds("direct", Pass.FORWARD),
        source=f"calibrated {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()} with backend {backend.name}",
    )
    rates = replace(rates, fft_call_seconds=max(rates.fft_call_seconds, _fft_fixed_seconds(rates)),
                    winograd_transform_flops=_winograd_transform_flops(rates, rng))
    if save:
        save_rates(rates)
    set_rates(rates)
    return rates


# ---------------------------------------------------------------------- once, automatically
_once_lock = fork_safe_lock()  # a forked child finds it free
_attempted = False



def automatic_calibration() -> bool:
    """Whether ``FFTCONV_CALIBRATE`` lets :func:`calibrate_once` calibrate (``"1"``, the default) or not (``"0"``)."""
    value = os.environ.get(CALIBRATE_VARIABLE, "1").strip()
    if value not in ("0", "1"):
        raise ValueError(f"{CALIBRATE_VARIABLE} must be '1' (calibrate an uncalibrated machine once, "
                         f"automatically) or '0' (never), got {value!r}")
    return value == "1"


def calibrate_once() -> None:
    """Calibrate this machine the first time ``algo="auto"`` needs its rates, if it has none saved.

    Runs at most once per process (later calls return at once), under a lock so that concurrent first calls wait
    for one calibration instead of running several. It says so on stderr, takes a few seconds, and saves the rates
    (:func:`fftconv.rates.calibration_file`) so that later processes on this machine find them. Nothing happens with
    ``FFTCONV_CALIBRATE=0``, when rates were given to :func:`fftconv.choose.set_rates`, or when this machine's
    calibration is saved. A failed calibration warns and leaves the built-in defaults in use.
    """
    global _attempted
    if _attempted or not automatic_calibration():
        return
    with _once_lock:
        if _attempted:
            return
        _attempted = True
        if not needs_calibration():
            return
        print("fftconv: measuring this machine's rates for algo='auto' (once, a few seconds; FFTCONV_CALIBRATE=0 "
              "turns this off)", file=sys.stderr, flush=True)
        try:
            calibrate(save=True)
        except Exception as error:  # noqa: BLE001 - a failed measurement must not fail the convolution
            warnings.warn(f"fftconv: calibration failed ({error!r}); algo='auto' uses the built-in default rates",
                          RuntimeWarning, stacklevel=3)
            return
        print(f"fftconv: rates saved in {calibration_file()}", file=sys.stderr, flush=True)


def _best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def _pipeline_fft_rates(backend: FFTBackend, rng: np.random.Generator) -> tuple[float, float]:
    """The FFT rate (flop/s) and the cost per map beyond the flops (seconds), from batches of 32x32 and 8x8 maps.

    Each batch is timed as fftconv runs it: into and out of frequency-major spectra (padded, strided), which is
    slower than the map-major batches an FFT benchmark times; a map-major rate would make the model favour the
    FFT too much. Per map, ``seconds = flops / rate + per_map`` at both sizes: two equations, two unknowns.
    """
    per_map = {}
    for size, maps in ((32, 32), (8, 128)):  # 1024 and 16384 maps each way
        g = ConvGeometry.from_shapes((maps, 32, size, size), (32, 32, 1, 1))
        plan = SpectralPlan.create(g, np.float32, backend, fft_size=(size, size))
        x = rng.standard_normal(g.full_input_shape).astype(np.float32)
        spectrum = plan.transform_input(x)
        forward = _best_seconds(lambda: plan.transform_input(x, out=spectrum))
        # as the passes do, block by block (the crop that reads each block is modelled apart)
        inverse = _best_seconds(lambda: backend.irfftn_blocks(plan.layout.channels_first(spectrum), (size, size),
                                                              plan.layout.axes, lambda block, maps: None))
        per_map[size] = (forward + inverse) / (2 * math.prod(g.full_input_shape[:2]))
    large, small = real_fft_flops((32, 32)), real_fft_flops((8, 8))
    rate = (large - small) / (per_map[32] - per_map[8]) if per_map[32] > per_map[8] else 0.0
    overhead = per_map[8] - small / rate if rate > 0 else -1.0
    if overhead < 0:  # noise made the two sizes inconsistent: all of the time to the flops
        return large / per_map[32], 0.0
    return rate, overhead


def _kernel_dft_seconds(backend: FFTBackend, rng: np.random.Generator) -> tuple[float, float]:
    """Seconds and flops of 5x5 kernels transformed to 32x32 spectra by DFT matrices, as the kernel transform does."""
    kernel_shape, fft_shape, maps = (5, 5), (32, 32), 4096
    kernels = rng.standard_normal((*kernel_shape, maps), dtype=np.float32)
    positions = [np.arange(k)[::-1] for k in kernel_shape]  # stored flipped, like the plan's kernels
    out = np.empty((*half_spectrum_shape(fft_shape), maps), np.complex64)
    seconds = _best_seconds(lambda: backend.rfftn_by_matrix(kernels, positions, fft_shape, out))
    return seconds, kernel_dft_flops(kernel_shape, fft_shape) * maps


def _tiny_call_seconds() -> dict[str, float]:
    """Seconds of one pass of each algorithm on a problem too small to have any arithmetic cost."""
    g = ConvGeometry.from_shapes((1, 1, 4, 4), (1, 1, 1, 1))
    x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
    return {name: _best_seconds(lambda: ALGORITHMS[name].forward(x, w, None, g), repeats=20)
            for name in ("fft", "im2col", "direct", "winograd")}  # the tiled FFT pays the FFT's fixed cost


def _tap_seconds(algo: str, pass_name: Pass) -> float:
    """Seconds per kernel tap of an algorithm's per-tap loop: a 16x16 kernel against a 1x1 one, on one map."""
    many, one = (ConvGeometry.from_shapes((1, 1, 16, 16), (1, 1, k, k)) for k in (16, 1))
    seconds = {}
    for g in (many, one):
        x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
        gy = np.ones(g.full_output_shape, np.float32)
        run = {Pass.FORWARD: lambda: ALGORITHMS[algo].forward(x, w, None, g),
               Pass.INPUT: lambda: ALGORITHMS[algo].grad_input(gy, w, g)}[pass_name]
        seconds[g] = _best_seconds(run, repeats=10)
    return max(seconds[many] - seconds[one], 0.0) / (math.prod(many.kernel_shape) - 1)


def _fft_fixed_seconds(rates: MachineRates) -> float:
    """Fixed cost of an FFT pass on a small problem that still splits over the thread pool: measured minus modelled.

    The 4x4 problem of :func:`_tiny_call_seconds` hands nothing to the pool; a pass of a few 64x64 maps pays the
    hand-offs, fresh arrays and plan lookups of each of its stages, which the flop terms miss.
    """
    g = ConvGeometry.from_shapes((1, 3, 64, 64), (16, 3, 7, 7))
    x, w = np.ones(g.full_input_shape, np.float32), np.ones(g.full_weight_shape, np.float32)
    measured = _best_seconds(lambda: ALGORITHMS["fft"].forward(x, w, None, g), repeats=10)
    return measured - estimate_fft(g, Pass.FORWARD, replace(rates, fft_call_seconds=0.0)).seconds


def _winograd_transform_flops(rates: MachineRates, rng: np.random.Generator) -> float:
    """The Winograd transform rate: a VGG-like F(4x4, 3x3) pass (64 channels of 32 x 32 maps, batch 32), its
    measured time less the model's other terms, over its transform flops. On smaller passes the other terms are
    nearly all of the time, and the rate swung by 2x between calibrations. Where they leave under a tenth of the
    time, the transforms are taken to cost that tenth: a lower bound on the rate, not the default."""
    g = ConvGeometry.from_shapes((32, 64, 32, 32), (64, 64, 3, 3), padding=1)
    x = rng.standard_normal(g.full_input_shape).astype(np.float32)
    w = rng.standard_normal(g.full_weight_shape).astype(np.float32)
    measured = _best_seconds(lambda: ALGORITHMS["winograd"].forward(x, w, None, g, tile=(4, 4)), repeats=7)
    modelled = estimate_winograd(g, Pass.FORWARD, rates, (4, 4))
    transforms = max(measured - (modelled.seconds - modelled.transforms), 0.1 * measured)
    return modelled.transforms * rates.winograd_transform_flops / transforms
