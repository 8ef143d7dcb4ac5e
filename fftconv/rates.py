"""The machine's throughputs that turn operation counts into seconds, and where the ones in use come from.

:class:`MachineRates` holds them, with the few conversions every estimate uses. The rates in use
(:func:`get_rates`) are, in order: those given to :func:`set_rates`, those :func:`fftconv.calibrate` saved for this
machine, or the built-in defaults. A saved calibration is keyed by what decides the rates (the CPU model, the
thread count, the numpy, scipy and pyFFTW versions and the BLAS library), so a new machine or a library upgrade is
not mistaken for a calibrated one.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from threadpoolctl import threadpool_info

from ._parallel import default_threads, fork_safe_lock

DEFAULT_SOURCE = "defaults"


@dataclass(frozen=True)
class MachineRates:
    """Throughputs the cost model divides by (flop/s and byte/s), and fixed costs per call (seconds).

    The defaults were measured on a 2-core AMD EPYC (Zen 4) machine with 2 threads (docs/performance.md);
    :func:`fftconv.calibrate` measures this machine's.

    Examples
    --------
    >>> rates = MachineRates()
    >>> rates.fft_seconds(12e9), rates.source
    (1.0, 'defaults')
    """

    fft_flops: float = 12e9           # batched real FFTs into/out of frequency-major spectra (costs.real_fft_flops)
    complex_gemm_flops: float = 150e9  # per-bin complex GEMMs with every dimension large (8 flops per multiply-add)
    real_gemm_flops: float = 190e9    # one real GEMM with large output dimensions (im2col)
    copy_bytes: float = 6e9           # bytes copied per second with long contiguous runs (unfold, crops, transposes)
    direct_flops: float = 2e9         # the float64 einsum loop of algo="direct"
    dft_matrix_flops: float = 60e9    # kernel-size maps transformed by DFT matrices (8 flops per multiply-add)
    winograd_transform_flops: float = 50e9  # Winograd's small dense transforms, one axis at a time (a whole pass)
    # GEMMs with a small dimension run slower: the rate is multiplied by d / (d + half) for each output dimension of
    # a real GEMM, and for the smallest dimension of a complex one.
    gemm_half_dim: float = 16.0
    complex_gemm_half_dim: float = 4.0
    copy_run_seconds: float = 7e-9    # extra cost of each innermost run of a strided copy (numpy's loop overhead)
    # Fixed costs the flop and byte terms miss; they decide small problems:
    fft_call_seconds: float = 3.0e-4     # plan lookup, allocations, thread hand-offs of one FFT pass
    fft_map_seconds: float = 3e-8        # each map a batched FFT transforms, beyond its flops (small maps, tiles)
    winograd_call_seconds: float = 1.5e-4  # one Winograd pass on a tiny problem
    im2col_call_seconds: float = 1.4e-4  # one im2col pass on a tiny problem
    direct_call_seconds: float = 1.0e-4
    gemm_matrix_seconds: float = 1e-7    # numpy's stacked matmul calls BLAS once per matrix (per bin and group)
    tap_seconds: float = 5e-6            # one step of im2col's per-tap col2im loop
    direct_tap_seconds: float = 3e-5     # one step of the direct algorithm's per-tap einsum loop
    source: str = DEFAULT_SOURCE         # "defaults", or when, where and with which backend they were calibrated

    @property
    def calibrated(self) -> bool:
        return self.source != DEFAULT_SOURCE

    def fft_seconds(self, flops: float) -> float:
        """Seconds of batched real FFTs of ``flops`` flops."""
        return flops / self.fft_flops

    def winograd_transform_seconds(self, flops: float) -> float:
        """Seconds of Winograd's data, filter and output transforms of ``flops`` flops."""
        return flops / self.winograd_transform_flops

    def dft_matrix_seconds(self, flops: float) -> float:
        """Seconds of DFT-matrix transforms of kernel-size maps of ``flops`` flops."""
        return flops / self.dft_matrix_flops

    def complex_gemm_seconds(self, flops: float, smallest_dimension: float) -> float:
        """Seconds of complex GEMMs of ``flops`` flops whose smallest dimension is ``smallest_dimension``."""
        return flops / (self.complex_gemm_flops * gemm_efficiency(smallest_dimension, self.complex_gemm_half_dim))

    def real_gemm_seconds(self, flops: float, rows: float, columns: float) -> float:
        """Seconds of real GEMMs of ``flops`` flops with outputs of ``rows x columns``."""
        efficiency = gemm_efficiency(rows, self.gemm_half_dim) * gemm_efficiency(columns, self.gemm_half_dim)
        return flops / (self.real_gemm_flops * efficiency)

    def copy_seconds(self, elements: float, run: float, itemsize: int = 4) -> float:
        """Seconds of a strided copy of ``elements`` values moved in contiguous runs of ``run`` values."""
        return elements * itemsize / self.copy_bytes + elements / max(run, 1) * self.copy_run_seconds


def gemm_efficiency(dimension: float, half: float) -> float:
    """Fraction of the peak GEMM rate along a dimension of this size: ``d / (d + half)``.

    Examples
    --------
    >>> gemm_efficiency(12, 4)
    0.75
    """
    return dimension / (dimension + half)


# ---------------------------------------------------------------------- the rates in use
_lock = fork_safe_lock()  # a forked child finds it free
_current: tuple[MachineRates, str] | None = None  # the rates, and how they were obtained
_NOT_CALIBRATED = "this machine is not calibrated"



def cache_directory() -> Path:
    """Where calibrations are saved: ``FFTCONV_CACHE``, else ``~/.cache/fftconv``."""
    return Path(os.environ.get("FFTCONV_CACHE", Path.home() / ".cache" / "fftconv"))


@functools.lru_cache(maxsize=1)
def machine_key() -> dict[str, object]:
    """What the rates depend on: the CPU model, the threads fftconv uses, the library versions and the BLAS.

    Examples
    --------
    >>> sorted(machine_key())
    ['blas', 'cpu', 'numpy', 'pyfftw', 'scipy', 'threads']
    """
    blas = sorted(f"{pool.get('internal_api')} {pool.get('version')} {pool.get('architecture')}"
                  for pool in threadpool_info() if pool.get("user_api") == "blas")
    return {"cpu": _cpu_model(), "threads": default_threads(), "numpy": _version("numpy"),
            "scipy": _version("scipy"), "pyfftw": _version("pyFFTW"), "blas": blas}


def calibration_file() -> Path:
    """The file this machine's calibration is saved in: its name is a digest of :func:`machine_key`."""
    digest = hashlib.sha256(json.dumps(machine_key(), sort_keys=True).encode()).hexdigest()[:16]
    return cache_directory() / f"rates-{digest}.json"


def save_rates(rates: MachineRates) -> Path:
    """Save ``rates`` as this machine's calibration (atomically: a reader never sees half a file)."""
    path = calibration_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"machine": machine_key(), "rates": asdict(rates)}, indent=1))
    os.replace(temporary, path)
    return path


def _load_saved() -> MachineRates | None:
    try:
        saved = json.loads(calibration_file().read_text())
        if saved.get("machine") != json.loads(json.dumps(machine_key())):  # compare as JSON: lists, not tuples
            return None
        return MachineRates(**saved["rates"])
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return None


def set_rates(rates: MachineRates | None) -> None:
    """Use these rates from now on (``None``: this machine's saved calibration, else the defaults)."""
    global _current
    with _lock:
        _current = None if rates is None else (rates, "set by set_rates")


def needs_calibration() -> bool:
    """Whether the rates in use are the built-in defaults because this machine has no saved calibration.

    False when :func:`set_rates` chose the rates (defaults included) or this machine's calibration was found.
    """
    return _state()[1] == _NOT_CALIBRATED


def get_rates() -> MachineRates:
    """The rates in use: set by :func:`set_rates`, else this machine's saved calibration, else the defaults."""
    return _state()[0]


def rates_status() -> str:
    """One line saying which rates are in use and where they come from (for :func:`fftconv.explain`).

    Examples
    --------
    >>> set_rates(MachineRates())
    >>> rates_status()
    'built-in defaults (set by set_rates); run fftconv.calibrate() to measure this machine'
    >>> set_rates(None)
    """
    rates, origin = _state()
    if rates.calibrated:
        return f"{rates.source} ({origin})"
    return f"built-in defaults ({origin}); run fftconv.calibrate() to measure this machine"


def _state() -> tuple[MachineRates, str]:
    global _current
    with _lock:
        if _current is None:
            saved = _load_saved()
            _current = ((saved, f"saved in {calibration_file()}") if saved is not None else
                        (MachineRates(), _NOT_CALIBRATED))
        return _current


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover - not Linux
        pass
    return platform.processor() or platform.machine()


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # pragma: no cover - pyFFTW is optional at run time
        return None
