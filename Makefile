# univenc: `make reproduce` regenerates every figure, `make test` runs the test suite.
# PRESET=smoke|cpu|paper (default: paper with a CUDA GPU, cpu otherwise); JOBS=N networks trained at once;
# make figures RESULTS=data/results/<preset>/results.pt rebuilds every figure and the claims from that file alone.
# make reproduce PRESET=paper MAX_STEPS=20: a dry run, every network 20 optimiser steps, then every notebook.
# make scaling: the scaling study (notebook 11), its own target.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PRESET ?= auto
JOBS ?=
RESULTS ?=
MAX_STEPS ?=

.PHONY: env reproduce scaling figures test lab data clean-runs

# The environment is (re)built when pyproject.toml changes; versions are pinned there.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

env: $(VENV)/.installed

reproduce: env
	@$(PY) -m univenc.reproduce --preset $(PRESET) $(if $(JOBS),--jobs $(JOBS)) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS))

# The scaling study (notebook 11, Fig. 10): every claim's statistic against training images and width.
scaling: env
	@$(PY) -m univenc.reproduce --preset $(PRESET) --only 11_scaling $(if $(JOBS),--jobs $(JOBS))

figures: env
	$(PY) -m univenc.reproduce --preset $(PRESET) --analysis-only $(if $(RESULTS),--results $(RESULTS))

data: env
	$(PY) -m univenc.data --download

test: env
	$(PY) -m pytest -q

lab: env
	$(VENV)/bin/jupyter lab notebooks

clean-runs:
	rm -rf runs
