"""Estimate memory before allocating, so that an impossible problem fails fast with a useful message."""

from __future__ import annotations

import os


def available_bytes() -> int | None:
    """Memory the process can still allocate: ``MemAvailable`` from ``/proc/meminfo``, or ``None`` if unknown.

    ``FFTCONV_MEMORY_LIMIT`` (bytes) overrides the reading, which lets tests and shared machines set a budget.
    """
    override = os.environ.get("FFTCONV_MEMORY_LIMIT")
    if override:
        return int(float(override))
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover - not Linux
        pass
    try:  # pragma: no cover - fallback
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None


#: Below this, the check trusts the allocator (reading /proc/meminfo costs ~40 us, a fifth of a small convolution);
#: numpy still raises MemoryError if such an allocation fails. A budget in FFTCONV_MEMORY_LIMIT is always checked.
ALWAYS_FITS_BYTES = 64 * 2**20


def check_fits(needed: int, what: str, fix: str) -> None:
    """Raise ``MemoryError`` if ``needed`` bytes exceed the memory available now."""
    if needed < ALWAYS_FITS_BYTES and not os.environ.get("FFTCONV_MEMORY_LIMIT"):
        return
    available = available_bytes()
    if available is not None and needed > available:
        raise MemoryError(f"{what} needs about {needed / 2**30:.2f} GiB of buffers but only "
                          f"{available / 2**30:.2f} GiB is available; {fix}")
