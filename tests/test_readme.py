"""The README's Python examples run verbatim (the quick start is a promise to new users), and the links and file
paths in the README and docs/ point at files that exist."""

import re
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
#: Blocks using the PyTorch adapter run on their own and skip where it cannot be imported (torch not installed).
ADAPTER_IMPORT = re.compile(r"^\s*(import fftconv\.torch|from fftconv\.torch import|from fftconv import torch)",
                            flags=re.M)
ADAPTER_BLOCKS = [block for block in BLOCKS if ADAPTER_IMPORT.search(block)]
NUMPY_BLOCKS = [block for block in BLOCKS if not ADAPTER_IMPORT.search(block)]
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
#: Written alongside this documentation and linked before they exist in every checkout: a missing one skips the
#: link test (naming it) instead of failing it. Anything else missing fails.
LINKED_AHEAD = ("docs/", "experiments/data/")


def test_readme_has_python_examples():
    assert len(NUMPY_BLOCKS) >= 2


def test_readme_examples_run_in_order(capsys):
    namespace: dict = {}
    for block in NUMPY_BLOCKS:  # later blocks reuse names from earlier ones, as a reader would
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "forward:" in printed and "input:" in printed and "weight:" in printed


def test_readme_has_a_pytorch_example():
    assert ADAPTER_BLOCKS, "the README should show the PyTorch adapter in a ```python block of its own"


@pytest.mark.parametrize("block", ADAPTER_BLOCKS, ids=lambda block: f"pytorch-block-{ADAPTER_BLOCKS.index(block)}")
def test_readme_pytorch_example_runs(block, capsys):
    pytest.importorskip("fftconv.torch", reason="fftconv.torch cannot be imported here (torch or the adapter is missing)")
    exec(compile(block, str(README), "exec"), {})  # self-contained: a fresh namespace
    assert capsys.readouterr().out.strip(), "the example prints the conversion report"


def _without_code_blocks(text: str) -> str:
    return re.sub(r"```.*?```", "", text, flags=re.S)


def _targets(page: Path) -> list[tuple[str, Path, str]]:
    """(as written, resolved path, anchor) for every relative Markdown link and every `path/like/this` in code."""
    text = _without_code_blocks(page.read_text())
    found = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        found.append((target, (page.parent / path).resolve(), anchor))
    for path in re.findall(r"`((?:paper_figures|experiments|fftconv|tests|docs)/[\w./-]+)`", text):
        if "*" not in path:
            found.append((path, (ROOT / path).resolve(), ""))
    return found


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, repeats numbered."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#+ (.+)$", _without_code_blocks(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, count = slug, 0
        while candidate in anchors:
            count += 1
            candidate = f"{slug}-{count}"
        anchors.add(candidate)
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_links_and_paths_exist(page):
    broken, ahead = [], []
    for written, path, anchor in _targets(page):
        relative = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)
        if not path.exists():
            (ahead if relative.startswith(LINKED_AHEAD) else broken).append(written)
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(written)
    assert not broken, f"{page.relative_to(ROOT)} points at missing files or headings: {broken}"
    if ahead:
        pytest.skip(f"{page.relative_to(ROOT)} links to pages not in this checkout yet: {sorted(set(ahead))}")
