"""Plotting style and output formats shared by every figure and table: method colours and order, number formats,
markdown tables, and figure files (PNG for the README, SVG as the vector format), written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .methods import parse_method
from .results import write_atomic

_BACKEND_COLORS = {"pyfftw": "#1b9e3e", "scipy": "#66c2a4", "numpy": "#a6d96a"}
#: The widest a figure should be, in inches at :data:`DPI` (about 1600 pixels).
MAX_WIDTH_INCHES = 13.3
DPI = 120


def method_order(label: str) -> tuple:
    """Sort key: FFT variants first, then tiled, auto, im2col, Winograd, direct, other fftconv algorithms, PyTorch."""
    rank = {"fft": 0, "tiled": 1, "auto": 2, "im2col": 3, "winograd": 4, "direct": 5, "torch": 7}
    return (rank.get(parse_method(label)["algo"] or "torch", 6), label)


def method_style(label: str) -> dict[str, Any]:
    """Matplotlib style of a method, the same in every figure (FFT green as in the paper, PyTorch red)."""
    parsed = parse_method(label)
    if parsed["library"] == "torch":
        return {"color": "#d62728", "marker": "s", "label": "PyTorch CPU (oneDNN)"}
    algo = parsed["algo"]
    if algo == "fft":
        return {"color": _BACKEND_COLORS.get(parsed["backend"], "#238b45"), "marker": "o",
                "label": f"fftconv FFT ({parsed['backend']})"}
    styles = {"im2col": {"color": "#ff7f0e", "marker": "^", "label": "fftconv im2col + GEMM"},
              "direct": {"color": "#7f7f7f", "marker": "x", "label": "fftconv direct (float64 reference)"},
              "auto": {"color": "#1f77b4", "marker": "D", "label": "fftconv auto"},
              "winograd": {"color": "#8c564b", "marker": "P", "label": "fftconv Winograd F(m, r)"},
              "tiled": {"color": "#17becf", "marker": "*", "label": "fftconv tiled FFT"}}
    return styles.get(algo, {"color": "#9467bd", "marker": "v", "label": f"fftconv {algo}"})


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds for tables: 3 significant digits, '-' if missing.

    Examples
    --------
    >>> fmt_ms(0.01234), fmt_ms(0.5), fmt_ms(None)
    ('12.3', '500', '-')
    """
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 100 else f"{ms:.0f}"


def fmt_ratio(numerator: float | None, denominator: float | None) -> str:
    """``numerator / denominator`` as ``"2.30x"``, '-' if either is missing."""
    if not numerator or not denominator:
        return "-"
    return f"{numerator / denominator:.2f}x"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table from a header and rows of already formatted cells."""
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, out_dir: str | os.PathLike, stem: str) -> list[Path]:
    """Save a matplotlib figure as ``stem.png`` and ``stem.svg``, each atomically.

    The SVG gets no date and a fixed salt for its element ids (matplotlib otherwise salts them randomly), so
    redrawing unchanged results gives byte-identical files and committed figures can be compared with a redraw.
    """
    import matplotlib

    written = []
    for fmt, extra in (("png", {"dpi": DPI}), ("svg", {"metadata": {"Date": None}})):
        buffer = io.BytesIO()
        with matplotlib.rc_context({"svg.hashsalt": "fftconv"}):
            fig.savefig(buffer, format=fmt, bbox_inches="tight", **extra)
        written.append(write_atomic(Path(out_dir) / f"{stem}.{fmt}", buffer.getvalue()))
    return written


def write_table(out_dir: str | os.PathLike, stem: str, markdown: str) -> Path:
    """Write a markdown table (or any markdown text) to ``out_dir/stem.md`` atomically."""
    return write_atomic(Path(out_dir) / f"{stem}.md", markdown if markdown.endswith("\n") else markdown + "\n")
