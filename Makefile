# Quick start: `make demo` (end to end on the CPU) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel; an unpinned torch would pull a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m parnet_deploy.demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) export/*/ engines/*/ demo_out
