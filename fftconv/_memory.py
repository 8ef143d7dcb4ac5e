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


def check_fits(needed: int, what: str, fix: str) -> None:
    """Raise ``MemoryError`` if ``needed`` bytes exceed the memory available now."""
    available = available_bytes()
    if available is not None and needed > available:
        raise MemoryError(f"{what} needs about {needed / 2**30:.2f} GiB of buffers but only "
                          f"{available / 2**30:.2f} GiB is available; {fix}")
