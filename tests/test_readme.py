"""README's Python examples run verbatim (the quick start is a promise to new users)."""

import re
from pathlib import Path


README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples():
    assert len(BLOCKS) >= 2


def test_readme_examples_run_in_order(capsys):
    namespace: dict = {}
    for block in BLOCKS:  # later blocks reuse names from earlier ones, as a reader would
        exec(compile(block, str(README), "exec"), namespace)
    printed = capsys.readouterr().out
    assert "forward:" in printed and "input:" in printed and "weight:" in printed
