# Quick start: `make demo` (end to end on the CPU) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test venv clean capi capi-deps gpu-test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel; an unpinned torch would pull a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[export,dev]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m parnet_deploy.demo

test: $(STAMP) capi-deps
	$(PY) -m pytest -q

# On a machine with an NVIDIA GPU and a CUDA build of PyTorch (not the CPU venv above): installs what
# is missing into that Python without replacing its torch (offline: wheels in .whl/ or $WHEELS), then
# runs the GPU suite and benchmarks/gpu_table3.py. PYTHON=... picks the interpreter (default python3).
gpu-test:
	PYTHON=$(PYTHON) scripts/gpu_test.sh

clean:
	rm -rf $(VENV) export/*/ engines/*/ demo_out build

# C API (native, no Python inside): build/capi/install/{include,lib} with parnet_rt.pc and the
# CMake package, plus the examples built against the installed package (find_package and pkg-config)
CAPI        := build/capi
CAPI_PREFIX := $(abspath $(CAPI)/install)
OV_CMAKE     = $(shell $(PY) -c "import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), 'cmake'))")

capi-deps:
	scripts/install_capi_deps.sh

capi: $(STAMP) capi-deps
	cmake -S capi -B $(CAPI)/lib -DOpenVINO_DIR=$(OV_CMAKE) -DCMAKE_BUILD_TYPE=Release
	cmake --build $(CAPI)/lib -j
	cmake --install $(CAPI)/lib --prefix $(CAPI_PREFIX)
	cmake -S examples -B $(CAPI)/examples -DCMAKE_PREFIX_PATH=$(CAPI_PREFIX)
	cmake --build $(CAPI)/examples -j
	PKG_CONFIG_PATH=$(CAPI_PREFIX)/lib/pkgconfig $(MAKE) -C examples -f pkgconfig.mk OUT=$(abspath $(CAPI)/examples-pc)
	@echo "installed to $(CAPI_PREFIX); try: $(CAPI)/examples/classify export/<name>"
