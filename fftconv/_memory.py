"""Estimate memory before allocating, so that an impossible problem fails fast with a useful message.

The memory a process can still allocate is the least of what each limit that applies to it leaves:

- the machine's ``MemAvailable`` (``/proc/meminfo``);
- the address-space and data-segment limits (``ulimit -v``: ``RLIMIT_AS`` minus ``VmSize``; ``RLIMIT_DATA`` minus
  ``VmData``, from ``/proc/self/status``), which make large allocations fail while the machine has memory free;
- the memory cgroup of a container or a batch job: cgroup v2 ``memory.max`` minus ``memory.current``, cgroup v1
  ``memory.limit_in_bytes`` minus ``memory.usage_in_bytes``, at every level up to the root of the hierarchy, with the
  group's reclaimable page cache (``inactive_file`` of ``memory.stat``) counted as free, as ``docker stats`` does.

``FFTCONV_MEMORY_LIMIT`` replaces all of them by a budget of its own.
"""

from __future__ import annotations

import math
import os
import re
from typing import Callable, NamedTuple

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None

ENVIRONMENT_VARIABLE = "FFTCONV_MEMORY_LIMIT"

#: Units of ``FFTCONV_MEMORY_LIMIT`` (case-insensitive): SI prefixes are powers of 1000, IEC ones powers of 1024.
UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
         "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)\s*"
                   r"(?P<unit>[A-Za-z]*)\s*")
ACCEPTED = ("a non-negative number of bytes, optionally with a unit: 1000000000, 1e9, 1GB, 512MiB, 1.5 GiB "
            "(B, kB, MB, GB, TB are powers of 1000; KiB, MiB, GiB, TiB powers of 1024)")

#: cgroup v1 reports "no limit" as a huge number (PAGE_COUNTER_MAX pages); anything above 2**60 bytes is no limit.
_NO_LIMIT = 2**60
CGROUP_ROOT = "/sys/fs/cgroup"


class Headroom(NamedTuple):
    """Bytes one limit leaves to this process, and the limit's name for messages."""

    nbytes: int
    source: str


def parse_size(text: str, name: str = ENVIRONMENT_VARIABLE) -> int:
    """Bytes in a size such as ``"1GB"``, ``"512MiB"`` or ``"1000000"``; a ``ValueError`` names ``name`` otherwise.

    Examples
    --------
    >>> parse_size("512MiB"), parse_size("1.5 GB"), parse_size("4096")
    (536870912, 1500000000, 4096)
    >>> parse_size("-1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: FFTCONV_MEMORY_LIMIT='-1' is not a memory size: give a non-negative number of bytes, optionally ...
    """
    match = _SIZE.fullmatch(text)
    unit = match["unit"].lower() if match else None
    if match is None or unit not in UNITS or not math.isfinite(float(match["number"])):
        raise ValueError(f"{name}={text!r} is not a memory size: give {ACCEPTED}")
    return int(float(match["number"]) * UNITS[unit])


# ---------------------------------------------------------------------- readers (tests replace these two)
def _read_text(path: str) -> str | None:
    """A small file of /proc or /sys, or ``None`` where it does not exist or cannot be read."""
    try:
        with open(path) as file:
            return file.read()
    except OSError:
        return None


def _soft_limit(name: str) -> int | None:
    """The soft ``resource.RLIMIT_*`` limit ``name`` in bytes, or ``None`` when unlimited or unknown."""
    if resource is None or not hasattr(resource, name):  # pragma: no cover - not POSIX
        return None
    soft = resource.getrlimit(getattr(resource, name))[0]
    return None if soft == resource.RLIM_INFINITY else soft


# ---------------------------------------------------------------------- the limits
def _fields(text: str | None) -> dict[str, int]:
    """``name value`` lines (``/proc/meminfo``, ``/proc/self/status``, ``memory.stat``) as ``{name: value}``."""
    fields = {}
    for line in (text or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2 and parts[1].isdigit():
            fields[parts[0]] = int(parts[1]) * (1024 if parts[2:] == ["kB"] else 1)
    return fields


def _meminfo() -> list[Headroom]:
    available = _fields(_read_text("/proc/meminfo")).get("MemAvailable")
    return [] if available is None else [Headroom(available, "MemAvailable in /proc/meminfo")]


def _resource_limits() -> list[Headroom]:
    status = None
    found = []
    for limit, used in (("RLIMIT_AS", "VmSize"), ("RLIMIT_DATA", "VmData")):
        soft = _soft_limit(limit)
        if soft is None:
            continue
        status = _fields(_read_text("/proc/self/status")) if status is None else status
        found.append(Headroom(max(soft - status.get(used, 0), 0), f"the {limit} limit (ulimit) minus {used}"))
    return found


def _cgroup_directories() -> list[tuple[str, str]]:
    """``(directory, version)`` of this process's memory cgroup and its ancestors, innermost first."""
    directories = []
    for line in (_read_text("/proc/self/cgroup") or "").splitlines():
        hierarchy, _, controllers_and_path = line.partition(":")
        controllers, _, path = controllers_and_path.partition(":")
        if hierarchy == "0" and controllers == "":
            version, mount = "2", CGROUP_ROOT
            if _read_text(f"{mount}/cgroup.controllers") is None:  # hybrid layout: v2 under unified/
                mount = f"{CGROUP_ROOT}/unified"
        elif "memory" in controllers.split(","):
            version, mount = "1", f"{CGROUP_ROOT}/memory"
        else:
            continue
        # Inside a cgroup namespace the path is "/", or the mount shows only the container's own subtree: walk up
        # from the deepest directory that exists, up to the mount's root.
        parts = [p for p in path.split("/") if p]
        while parts and _read_text(f"{mount}/{'/'.join(parts)}/cgroup.procs") is None:
            parts.pop()
        while True:
            directories.append(("/".join([mount, *parts]), version))
            if not parts:
                break
            parts.pop()
    return directories


def _cgroups() -> list[Headroom]:
    found = []
    for directory, version in _cgroup_directories():
        if version == "2":
            limit_text, usage_text = _read_text(f"{directory}/memory.max"), _read_text(f"{directory}/memory.current")
        else:
            limit_text = _read_text(f"{directory}/memory.limit_in_bytes")
            usage_text = _read_text(f"{directory}/memory.usage_in_bytes")
        if limit_text is None or usage_text is None or not limit_text.strip().isdigit():  # absent, or "max"
            continue
        limit = int(limit_text)
        if limit >= _NO_LIMIT:
            continue
        stat = _fields(_read_text(f"{directory}/memory.stat"))
        reclaimable = stat.get("inactive_file", stat.get("total_inactive_file", 0))
        headroom = max(limit - int(usage_text) + reclaimable, 0)
        name = "memory.max" if version == "2" else "memory.limit_in_bytes"
        found.append(Headroom(min(headroom, limit), f"the cgroup limit {directory}/{name}"))
    return found


LIMITS: tuple[Callable[[], list[Headroom]], ...] = (_meminfo, _resource_limits, _cgroups)


def headroom() -> Headroom | None:
    """The tightest limit on what this process can still allocate, or ``None`` if none is known.

    Examples
    --------
    >>> limit = headroom()
    >>> limit is None or (limit.nbytes >= 0 and isinstance(limit.source, str))
    True
    """
    override = os.environ.get(ENVIRONMENT_VARIABLE)
    if override:
        return Headroom(parse_size(override), f"the budget {ENVIRONMENT_VARIABLE}={override!r}")
    found = [limit for reader in LIMITS for limit in reader()]
    if not found:
        try:  # pragma: no cover - not Linux
            found = [Headroom(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "free physical pages")]
        except (ValueError, OSError, AttributeError):  # pragma: no cover
            return None
    return min(found)


def available_bytes() -> int | None:
    """Memory the process can still allocate (see :func:`headroom`), or ``None`` if unknown.

    ``FFTCONV_MEMORY_LIMIT`` overrides the reading, which lets tests and shared machines set a budget.
    """
    limit = headroom()
    return None if limit is None else limit.nbytes


#: Below this, the check trusts the allocator (reading the limits costs tens of microseconds, a fifth of a small
#: convolution); numpy still raises MemoryError if such an allocation fails. A budget in FFTCONV_MEMORY_LIMIT is
#: always checked.
ALWAYS_FITS_BYTES = 64 * 2**20


def check_fits(needed: int, what: str, fix: str) -> None:
    """Raise ``MemoryError`` if ``needed`` bytes exceed the memory available now."""
    if needed < ALWAYS_FITS_BYTES and not os.environ.get(ENVIRONMENT_VARIABLE):
        return
    limit = headroom()
    if limit is not None and needed > limit.nbytes:
        raise MemoryError(f"{what} needs about {needed / 2**30:.2f} GiB of buffers but only "
                          f"{limit.nbytes / 2**30:.2f} GiB is available; {fix} (the limit: {limit.source})")
