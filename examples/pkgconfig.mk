# The examples, built with pkg-config instead of CMake:
#   PKG_CONFIG_PATH=<prefix>/lib/pkgconfig make -C examples -f pkgconfig.mk OUT=<dir>
OUT ?= build
PRT := $(shell pkg-config --cflags --libs parnet_rt)

all: $(OUT)/classify $(OUT)/ros_callback

$(OUT)/classify: c/classify.c
	mkdir -p $(OUT)
	cc -std=c99 -O2 -Wall -Wextra $< -o $@ $(PRT)

$(OUT)/ros_callback: cpp/ros_callback.cpp
	mkdir -p $(OUT)
	c++ -std=c++17 -O2 -Wall -Wextra $< -o $@ $(PRT)
