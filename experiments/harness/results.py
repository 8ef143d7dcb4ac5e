"""The results store: JSON lines, one measured point per line, appended and fsynced as soon as it is measured.

Robust to what interrupted and concurrent runs leave behind (docs/experiments.md, "Results files"):

- a torn last line (killed mid-write), even one cut inside a multi-byte character, is dropped with a warning and cut
  off before the next append; the point is measured again;
- a line that is not a JSON object, or a row the experiment's ``validate`` rejects (missing fields), is skipped with
  a warning naming the file and line; it does not count as measured, so a rerun measures that point again;
- :meth:`ResultsFile.locked` holds an exclusive ``fcntl.flock`` on the file for a whole measuring run and re-reads
  it once the lock is held, so two runs into one folder take turns and the second skips what the first measured;
- rows written before the experiments named the passes as fftconv does are read with the current names
  (:func:`upgraded`), so figures can be redrawn from them until they are measured again.

Also here: :func:`write_atomic` for figures, tables and metadata, and :func:`recording_writes`, which lists what a
run wrote.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

#: Paths written by :func:`write_atomic` while a :func:`recording_writes` block is open (innermost last).
_recorders: list[list[Path]] = []


#: The experiments' names of the gradient passes before they used fftconv's (:mod:`fftconv.passes`).
LEGACY_PASS_NAMES = {"grad_input": "input", "grad_weight": "weight"}


def upgraded(row: dict) -> dict:
    """``row`` with the pass names of :data:`LEGACY_PASS_NAMES` replaced wherever older rows held them: the ``pass``
    field, field names (``fftconv_fast_grad_input_total``) and the passes listed in ``settings["paper_skips"]``.

    The one place that knows the old names; every row is read through it.

    Examples
    --------
    >>> upgraded({"pass": "grad_input", "fftconv_fast_grad_weight_total": 2.0, "n": 8})
    {'pass': 'input', 'fftconv_fast_weight_total': 2.0, 'n': 8}
    """
    def rename(text: str) -> str:
        for old, new in LEGACY_PASS_NAMES.items():
            text = text.replace(old, new)
        return text

    if not any(old in key for key in row for old in LEGACY_PASS_NAMES) and row.get("pass") not in LEGACY_PASS_NAMES \
            and "paper_skips" not in (row.get("settings") or {}):
        return row
    row = {rename(key): value for key, value in row.items()}
    if row.get("pass") in LEGACY_PASS_NAMES:
        row["pass"] = LEGACY_PASS_NAMES[row["pass"]]
    settings = row.get("settings")
    if isinstance(settings, dict) and isinstance(settings.get("paper_skips"), dict):
        skips = {layer: [LEGACY_PASS_NAMES.get(p, p) for p in passes]
                 for layer, passes in settings["paper_skips"].items()}
        row["settings"] = {**settings, "paper_skips": skips}
    return row


class ResultsWarning(UserWarning):
    """A line of a results file was dropped or skipped (the message names the file and line)."""


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` so that readers see either the old file or the whole new one, never a part.

    The data goes to a temporary file in the same folder (same file system), is flushed to disk, then renamed over
    ``path`` with :func:`os.replace`, which is atomic on POSIX.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode() if isinstance(data, str) else bytes(data)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    for recorder in _recorders:
        recorder.append(path)
    return path


@contextlib.contextmanager
def recording_writes() -> Iterator[list[Path]]:
    """Collect the paths :func:`write_atomic` writes inside the block (for a run's summary line)."""
    written: list[Path] = []
    _recorders.append(written)
    try:
        yield written
    finally:
        _recorders.remove(written)


def _normalised(value: Any) -> Any:
    """The value as it reads back from JSON (tuples become lists, numpy scalars become Python numbers)."""
    return json.loads(json.dumps(value, default=_json_default))


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy here
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"results rows must hold JSON values, got {type(value).__name__}: {value!r}")


def missing_fields(row: dict, *fields: str) -> str | None:
    """``"missing fields: a, b"`` if ``row`` lacks any of ``fields``, else ``None`` (for ``validate`` functions).

    Examples
    --------
    >>> missing_fields({"n": 1}, "n", "k", "S")
    'missing fields: k, S'
    """
    absent = [name for name in fields if name not in row]
    return f"missing fields: {', '.join(absent)}" if absent else None


class ResultsFile:
    """Tidy results as JSON lines: one measured point per line, appended as soon as it is measured.

    Parameters
    ----------
    path : path of the ``.jsonl`` file
    validate : callable, optional
        ``validate(row)`` returns ``None`` for a usable row or a reason (e.g. ``"missing fields: S"``); rejected rows
        are skipped with a warning and are not counted as measured.
    counts : callable, optional
        ``counts(row)`` says whether a saved row counts as done for :meth:`has` (resuming); by default all do. Rows
        that do not count are still returned by :meth:`rows`.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> results = ResultsFile(pathlib.Path(tempfile.mkdtemp()) / "results.jsonl")
    >>> results.append({"n": 8, "pass": "forward", "seconds": 0.5})
    >>> results.has({"n": 8, "pass": "forward"}), results.has({"n": 16})
    (True, False)
    """

    def __init__(self, path: str | os.PathLike, validate: Callable[[dict], str | None] | None = None,
                 counts: Callable[[dict], bool] | None = None):
        self.path = Path(path)
        self.validate = validate
        self.counts = counts
        self._entries: list[tuple[int, dict]] | None = None
        self._lines = 0
        self._repaired = False

    # ------------------------------------------------------------------------------------------------ reading
    def _warn(self, line: int, message: str) -> None:
        warnings.warn(f"{self.path}:{line}: {message}", ResultsWarning, stacklevel=4)

    def _load(self) -> list[tuple[int, dict]]:
        if self._entries is not None:
            return self._entries
        entries: list[tuple[int, dict]] = []
        data = self.path.read_bytes() if self.path.exists() else b""
        lines = data.split(b"\n")
        torn = lines.pop() if lines else b""  # after the last newline: empty, or a torn tail
        self._lines = len(lines)
        for number, raw in enumerate(lines, start=1):
            row = self._parse(number, raw, torn=False)
            if row is not None:
                entries.append((number, row))
        if torn.strip():
            self._parse(len(lines) + 1, torn, torn=True)
        self._entries = entries
        return entries

    def _parse(self, number: int, raw: bytes, torn: bool) -> dict | None:
        if not raw.strip():
            return None
        if torn:  # no newline after it: a write was interrupted; even a complete-looking row may be cut short
            self._warn(number, "dropped the unterminated last line (an interrupted write); that point is measured "
                               "again and the line is cut off before the next row is appended")
            return None
        try:
            row = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            self._warn(number, f"skipped a line that is not a JSON row ({type(error).__name__}: {error})")
            return None
        if not isinstance(row, dict):
            self._warn(number, f"skipped a line that is not a JSON object (a {type(row).__name__})")
            return None
        row = upgraded(row)
        problem = self.validate(row) if self.validate else None
        if problem:
            self._warn(number, f"skipped a row the plots cannot use ({problem}); rerun without --plot-only to "
                               "measure that point again")
            return None
        return row

    def reload(self) -> None:
        """Forget what was read: the next access reads the file again (after another process wrote to it)."""
        self._entries = None

    def rows(self) -> list[dict]:
        """All usable rows, in the order they were measured (copies: callers may modify them)."""
        return [dict(row) for _, row in self._load()]

    def numbered_rows(self) -> list[tuple[int, dict]]:
        """``(line number, row)`` of every usable row."""
        return [(number, dict(row)) for number, row in self._load()]

    def has(self, key: dict) -> bool:
        """Whether some usable row that counts (see ``counts``) has every field of ``key`` with an equal value."""
        wanted = _normalised(key)
        return any(all(name in row and row[name] == value for name, value in wanted.items())
                   and (self.counts is None or self.counts(row)) for _, row in self._load())

    def counted(self) -> int:
        """How many usable rows count as done."""
        return sum(1 for _, row in self._load() if self.counts is None or self.counts(row))

    # ------------------------------------------------------------------------------------------------ writing
    def _repair_torn_tail(self) -> None:
        """Cut an unterminated last line so that the next row starts on a line of its own."""
        if self._repaired or not self.path.exists():
            self._repaired = True
            return
        with open(self.path, "rb+") as handle:
            data = handle.read()
            if data and not data.endswith(b"\n"):
                handle.truncate(data.rfind(b"\n") + 1)
        self._repaired = True

    def append(self, row: dict) -> None:
        """Append one row as a single JSON line; flushed and fsynced before returning."""
        if not isinstance(row, dict):
            raise TypeError(f"row must be a dict, got {type(row).__name__}")
        line = json.dumps(row, default=_json_default)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entries = self._load()  # read before writing, or the new row would be loaded twice
        self._repair_torn_tail()
        with open(self.path, "ab") as handle:
            handle.write(line.encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        self._lines += 1
        entries.append((self._lines, json.loads(line)))

    def clear(self) -> None:
        """Empty the file (``--force``); truncated rather than deleted, so a lock held on it stays valid."""
        if self.path.exists():
            with open(self.path, "rb+") as handle:
                handle.truncate(0)
        self._entries, self._lines, self._repaired = None, 0, False

    @contextlib.contextmanager
    def locked(self, waiting_message: str | None = None) -> Iterator["ResultsFile"]:
        """Hold an exclusive lock on the file (``fcntl.flock``) and re-read it once the lock is held.

        A second run into the same folder waits here (saying so on stderr) until the first ends, then sees every row
        the first wrote: it measures only what is still missing. The lock is released when the block ends or the
        process dies.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "ab")
        try:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                print(waiting_message or f"waiting for another run that is writing {self.path}", file=sys.stderr,
                      flush=True)
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            self.reload()
            self._repaired = False
            yield self
        finally:
            handle.close()  # releases the lock

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"ResultsFile({str(self.path)!r})"
