"""The run context an experiment's ``measure`` and ``plot`` receive, and :func:`run`, which drives one experiment.

An experiment is a module with ``NAME``, ``DESCRIPTION``, an optional ``add_arguments(parser)``, an optional
``validate(row)`` (why a saved row is unusable, or ``None``), ``measure(ctx)`` and ``plot(ctx)``. ``measure`` appends
rows with :meth:`Context.append` (or :func:`experiments.harness.jobs.measure_jobs`) and skips points already saved;
``plot`` reads :meth:`Context.rows` only (it never measures). docs/experiments.md describes the whole harness.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import provenance
from .results import ResultsFile, recording_writes, write_atomic

#: The repository root: ``paper_figures/`` lives here.
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_options(**overrides) -> argparse.Namespace:
    """The common options with their defaults (for tests and for calling an experiment from Python)."""
    values = dict(algos=None, backends=None, threads=None, force=False, plot_only=False, mix=False, dask=None)
    values.update(overrides)
    return argparse.Namespace(**values)


class Context:
    """What ``measure`` and ``plot`` receive.

    Attributes
    ----------
    name : str
    quick : bool
        Quick mode shrinks the problem (the batch, unless the experiment says otherwise) to fit the time budget.
    out_dir : Path
        ``paper_figures/<name>/`` in quick mode, ``paper_figures/<name>/full/`` in full mode; created.
    results : ResultsFile
        ``out_dir/results.jsonl``; resuming counts rows of this commit only, unless ``--mix``.
    options : argparse.Namespace
        The common options (``algos``, ``backends``, ``threads``, ``force``, ``plot_only``, ``mix``, ``dask``) and
        the experiment's own.
    run_settings : dict
        What ``measure`` decided (sizes, rounds, targets ...); stored in every row it writes as ``settings``, so a
        redraw takes its constants from the saved results (:meth:`saved_settings`).
    """

    def __init__(self, name: str, quick: bool, options: argparse.Namespace | None = None,
                 output_root: str | Path | None = None, validate=None):
        self.name = name
        self.quick = bool(quick)
        self.options = options if options is not None else default_options()
        root = Path(output_root) if output_root is not None else REPO_ROOT / "paper_figures"
        self.out_dir = root / name if self.quick else root / name / "full"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.mix = bool(getattr(self.options, "mix", False))
        self.results = ResultsFile(self.out_dir / "results.jsonl", validate=validate,
                                   counts=provenance.counts_for_resume(self.mix))
        self.run_settings: dict[str, Any] = {}
        self.executor = None
        self._selection: provenance.Selection | None = None
        self._legacy: dict | None = None

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def metadata_path(self) -> Path:
        return self.out_dir / "metadata.json"

    # ------------------------------------------------------------------------------------------------ measuring
    def stamp(self) -> dict:
        """Provenance of a row measured in this process now."""
        return provenance.stamp(threads=getattr(self.options, "threads", None))

    def append(self, row: dict) -> None:
        """Save one row measured in this process, with its provenance and the run's settings."""
        extra: dict[str, Any] = {}
        if self.run_settings and "settings" not in row:
            extra["settings"] = self.run_settings
        if "provenance" not in row:
            extra["provenance"] = self.stamp()
        self.results.append({**row, **extra})
        self._selection = None

    def record_settings(self, **fields) -> None:
        """Add to :attr:`run_settings` (stored with every row written from now on)."""
        self.run_settings.update(fields)

    def pending(self, keys: Iterable[dict]) -> list[dict]:
        """The keys that have no row yet: what a resumed sweep still has to measure."""
        return [key for key in keys if not self.results.has(key)]

    def progress(self, iterable: Iterable, total: int | None = None, desc: str | None = None) -> Iterator:
        """A tqdm progress bar on stderr (plain iteration if tqdm is missing)."""
        try:
            from tqdm.auto import tqdm
        except ImportError:  # pragma: no cover
            return iter(iterable)
        return iter(tqdm(iterable, total=total, desc=desc or self.name, file=sys.stderr, dynamic_ncols=True,
                         mininterval=0.5, leave=False))

    def selected(self, option: str, available: Sequence[str], default: Sequence[str] | None = None) -> list[str]:
        """The values of list option ``option`` (e.g. ``"algos"``) this experiment supports, in the user's order.

        Raises ``ValueError`` naming the option if the user asked only for values the experiment cannot run.
        """
        asked = getattr(self.options, option, None)
        if not asked:
            return list(default if default is not None else available)
        chosen = [value for value in asked if value in available]
        ignored = [value for value in asked if value not in available]
        if ignored and chosen:
            print(f"{self.name}: ignoring --{option} {' '.join(ignored)} (supported here: {' '.join(available)})",
                  file=sys.stderr)
        if not chosen:
            raise ValueError(f"--{option} {' '.join(asked)}: experiment {self.name!r} supports only "
                             f"{' '.join(available)}")
        return chosen

    # ------------------------------------------------------------------------------------------------ plotting
    @property
    def selection(self) -> provenance.Selection:
        """The rows figures and tables use: the newest (commit, machine) group, or all with ``--mix``."""
        if self._selection is None:
            self._selection = provenance.select(self.results.rows(), self.mix)
        return self._selection

    def rows(self) -> list[dict]:
        """The selected rows (copies)."""
        return [dict(row) for row in self.selection.rows]

    @property
    def legacy_metadata(self) -> dict | None:
        """What an older ``metadata.json`` recorded about the run that wrote rows without provenance."""
        if self._legacy is None:
            self._legacy = {}
            if self.metadata_path.exists():
                try:
                    saved = json.loads(self.metadata_path.read_text())
                except (OSError, json.JSONDecodeError):
                    saved = {}
                if "groups" in saved:
                    self._legacy = saved.get("metadata_of_rows_without_provenance") or {}
                else:  # written before metadata was derived from the rows: it describes the old rows' run
                    self._legacy = saved
        return self._legacy or None

    def provenance_note(self) -> str:
        """A line for tables: which commit and machine the shown rows come from, and what was left out."""
        return self.selection.describe(self.legacy_metadata) + "\n"

    def saved_settings(self, defaults: dict) -> tuple[dict, bool]:
        """The settings stored with the selected rows (the newest row's win), and whether any were stored.

        Rows written before settings were stored get ``defaults`` (the code's current values); figures then say so.
        """
        stored = [row["settings"] for row in self.selection.rows if isinstance(row.get("settings"), dict)]
        if not stored:
            return dict(defaults), False
        merged = dict(defaults)
        for settings in stored:
            merged.update(settings)
        return merged, True

    @property
    def threads(self) -> int | None:
        counts = sorted({t for t in map(provenance.threads_of, self.selection.rows) if isinstance(t, int)})
        if counts:
            return counts[-1] if len(counts) == 1 else None
        legacy = self.legacy_metadata or {}
        return legacy.get("threads")

    @property
    def machine(self) -> str:
        """For figure titles: CPU model, cores and threads of the shown rows, e.g. ``"AMD EPYC, 2 cores, 2 threads"``."""
        text = self.selection.cpu(self.legacy_metadata)
        threads = self.threads
        return text + (f", {threads} threads" if threads else "")

    def describe(self, compares: str, scaling: str | None = None) -> str:
        """A caption: what the figure compares; machine and scaling (quick/full plus ``scaling``); provenance."""
        scale = f"{self.mode} mode" + (f" ({scaling})" if scaling else "")
        return f"{compares}\n{self.machine}; {scale}\n{self.short_provenance()}"

    def short_provenance(self) -> str:
        """``"commit 4887d467a0"`` for titles, or that provenance was not recorded, or that groups were mixed."""
        groups = self.selection.groups
        if not groups:
            return "no rows"
        if len(groups) > 1:
            return f"rows of {len(groups)} commits or machines (--mix)"
        group = groups[0]
        if not group.recorded:
            commits = self.selection.legacy_commits
            return provenance.NOT_RECORDED + (f" (rows name commit {', '.join(c[:10] for c in commits)})"
                                              if commits else "")
        return f"commit {(group.commit or 'unknown')[:10]}" + (" + uncommitted changes" if group.dirty else "")

    def write_metadata(self) -> dict:
        """Write ``metadata.json`` derived from the saved rows (never describing rows that were not measured)."""
        metadata = provenance.derived_metadata(self.results.rows(), self.name, self.mode, self.legacy_metadata)
        write_atomic(self.metadata_path, json.dumps(metadata, indent=2, default=str) + "\n")
        return metadata

    def __repr__(self) -> str:
        return f"Context(name={self.name!r}, mode={self.mode!r}, out_dir={str(self.out_dir)!r})"


def run(module, options: argparse.Namespace) -> Context:
    """Run one experiment: ``--force`` clears; ``measure`` (unless ``--plot-only``) under the results file's lock;
    ``metadata.json`` derived from the rows; ``plot``; then one summary line on stderr."""
    start = time.perf_counter()
    ctx = Context(module.NAME, quick=not options.full, options=options, output_root=options.output_root,
                  validate=getattr(module, "validate", None))
    measured = kept = 0
    with recording_writes() as written:
        if options.plot_only:
            if not len(ctx.results):
                raise SystemExit(f"{module.NAME}: no results at {ctx.results.path}; run without --plot-only first")
        else:
            if getattr(options, "dask", None):
                from .jobs import DaskExecutor

                ctx.executor = DaskExecutor(options.dask)
            try:
                with ctx.results.locked(f"{module.NAME}: waiting for another run writing {ctx.results.path}"):
                    if options.force:
                        ctx.results.clear()
                    before, kept = len(ctx.results), ctx.results.counted()
                    try:
                        module.measure(ctx)
                    except KeyboardInterrupt:
                        print(f"\n{module.NAME}: interrupted with {len(ctx.results)} rows saved in "
                              f"{ctx.results.path}; rerun the same command to resume", file=sys.stderr)
                        raise
                    finally:
                        measured = len(ctx.results) - before
            finally:
                if ctx.executor is not None:
                    ctx.executor.close()
            ctx.write_metadata()
        ctx._selection = None
        module.plot(ctx)
    files = ", ".join(sorted({str(path.relative_to(ctx.out_dir)) if path.is_relative_to(ctx.out_dir) else str(path)
                              for path in written}))
    if options.plot_only:
        done = f"plot only, nothing measured; {len(ctx.selection.rows)} of {len(ctx.results)} rows shown"
    else:
        unused = len(ctx.results) - ctx.results.counted()
        done = (f"{measured} rows measured, {kept} rows kept"
                + (f", {unused} rows of other commits left unused (--mix uses them)" if unused > 0 else ""))
    print(f"{module.NAME}: {done}; {len(set(written))} files written in {ctx.out_dir}"
          + (f" ({files})" if files else "") + f"; {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return ctx
