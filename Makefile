# Two commands do all set-up on a fresh machine: `make test` and `make figures` (README).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is optional for users, but installed here so that the PyTorch oracle tests run. Pinned: on the project's
# machines 2.13.0 is a CPU wheel on disk; an unpinned torch would download a multi-GB CUDA build.
TORCH := torch==2.13.0
FIGURES_FLAGS ?= --quick

.PHONY: test figures figures-resume figures-full figures-redraw install clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test,experiments,distributed]" "$(TORCH)"
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

# Measure everything again in quick mode (--force drops saved results) and redraw paper_figures/.
figures: install
	$(PY) -m experiments all $(FIGURES_FLAGS) --force

# Continue an interrupted `make figures` where it stopped (saved rows are kept).
figures-resume: install
	$(PY) -m experiments all $(FIGURES_FLAGS)

# The paper's sizes (hours); resumable: rerun the same command after an interruption.
figures-full: install
	$(PY) -m experiments all --full

# Redraw every figure and table from the saved results (paper_figures/*/results.jsonl); measures nothing.
figures-redraw: install
	$(PY) -m experiments all --plot-only $(FIGURES_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache
