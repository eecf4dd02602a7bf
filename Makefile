# Quick start: `make demo` (end to end on the CPU) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean capi

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel; an unpinned torch would pull a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[export,dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m parnet_deploy.demo

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) export/*/ engines/*/ demo_out

# C API: build/capi/libparnet_rt.so (+ parnet_rt.pc) and the examples
CAPI := build/capi
.PHONY: capi
capi: $(STAMP)
	$(PY) -m pip install --quiet "cffi>=1.16"
	$(PY) -m parnet_deploy.capi.build $(CAPI)
	cc -std=c99 -O2 -Wall -Wextra -Iinclude examples/c/classify.c -o $(CAPI)/classify \
	   -L$(CAPI) -Wl,-rpath,$(abspath $(CAPI)) -lparnet_rt
	c++ -std=c++17 -O2 -Wall -Wextra -Iinclude examples/cpp/ros_callback.cpp -o $(CAPI)/ros_callback \
	   -L$(CAPI) -Wl,-rpath,$(abspath $(CAPI)) -lparnet_rt
