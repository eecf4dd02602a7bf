# Quick start: `make demo` (end to end on the CPU) and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint venv clean capi capi-deps gpu-test ros ros-deps

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, pinned: the local CPU wheel; an unpinned torch would pull a CUDA build
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[export,dev]"
	# pytorchcv: foreign architectures for tests/test_partition.py; it declares torchvision, which cannot
	# be installed beside torch 2.13, and the models the tests import need none of it: hence --no-deps
	$(PY) -m pip install --quiet --no-deps "pytorchcv==0.0.74"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m parnet_deploy.demo

test: $(STAMP) capi-deps ros-deps
	$(PY) -m pytest -q

# ruff, with the rules in pyproject.toml ([tool.ruff]); .ci/run runs it before the tests
lint: $(STAMP)
	$(VENV)/bin/ruff check parnet_deploy tests benchmarks scripts examples ros

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

# ROS 1 front ends (ros/: node parnet_ros_node, nodelet parnet_ros/ClassifierNodelet, generated vision_msgs)
# built against the installed parnet_rt CMake package; Debian's ROS 1 packages come from the deps script.
# Run: ROS_PACKAGE_PATH=$(abspath build/ros):/usr/share build/ros/parnet_ros_node _model_dir:=export/digits
ros-deps:
	scripts/install_ros_deps.sh

ros: capi ros-deps
	cmake -S ros -B build/ros -DCMAKE_PREFIX_PATH=$(CAPI_PREFIX) -DCMAKE_BUILD_TYPE=Release
	cmake --build build/ros -j
	@echo "built build/ros/parnet_ros_node and the nodelet; see README, On a robot"
