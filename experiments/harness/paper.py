"""The paper's published values (``experiments/data/mathieu2014.json``), read for tables and figures, and Lavin &
Gray's accuracy table (``experiments/data/lavin_gray2016.json``), shown beside the accuracy experiment's VGG table.

The paper measured on a GTX Titan GPU against cuda-convnet and a Torch 7 implementation; ours run on a CPU against
PyTorch and fftconv's own baselines. So its times are shown beside ours as ratios (FFT against its peers, in each
setting), and as absolute values only where hardware does not matter (memory, operation counts).

Examples
--------
>>> data = load()
>>> data["source"]["hardware"].startswith("NVIDIA GeForce GTX Titan")
True
>>> layer_times((7, 32, 96, 256))["forward"]
{'torch7': 178, 'cudaconv': 221, 'fft': 34}
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Sequence

DATA_FILE = Path(__file__).resolve().parents[1] / "data" / "mathieu2014.json"
PEERS = ("fft", "torch7", "cudaconv")
PEER_LABELS = {"fft": "paper FFT", "torch7": "Torch7 (custom)", "cudaconv": "CudaConv"}


@functools.lru_cache(maxsize=1)
def load() -> dict:
    """The whole data file (source, layers, network, memory, fig2, fig3)."""
    return json.loads(DATA_FILE.read_text())


def citation() -> str:
    """``"Mathieu, Henaff & LeCun, ICLR 2014, on an NVIDIA GeForce GTX Titan"``-style source line."""
    source = load()["source"]
    return f"{source['authors']}, \"{source['title']}\", {source['venue']}; {source['hardware']}"


def layer_times(config: Sequence[int]) -> dict[str, dict[str, float | None]] | None:
    """The paper's ms per pass (and ``total``) and peer for one (k, n, f, f') layer, or ``None`` if not in it."""
    table = load()["layers"]
    configs = [tuple(c) for c in table["configs"]]
    if tuple(config) not in configs:
        return None
    index = configs.index(tuple(config))
    return {pass_: {peer: values[index] for peer, values in peers.items()} for pass_, peers in table["times"].items()}


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or ``None`` if either is missing."""
    return numerator / denominator if numerator and denominator else None


def memory_mb() -> dict[tuple[int, int, int, int], float]:
    """The paper's printed MB per (S, n, f, f')."""
    return {tuple(row[:4]): row[4] for row in load()["memory"]["rows"]}


LAVIN_GRAY_FILE = DATA_FILE.with_name("lavin_gray2016.json")


@functools.lru_cache(maxsize=1)
def lavin_gray() -> dict:
    """Lavin & Gray's published accuracy table (CVPR 2016, Table 4) with its source and caveats.

    Examples
    --------
    >>> table = lavin_gray()["accuracy"]
    >>> table["rows"]["1.2"]["winograd_4"], sorted(table["columns"])
    (0.000284, ['direct', 'winograd_2', 'winograd_4'])
    """
    return json.loads(LAVIN_GRAY_FILE.read_text())


def lavin_gray_citation() -> str:
    source = lavin_gray()["source"]
    return f"{source['authors']}, \"{source['title']}\", {source['venue']}"
