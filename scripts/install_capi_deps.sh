#!/usr/bin/env bash
# What the native C library needs beyond the Python environment (OpenVINO comes from its wheel):
# a C/C++ toolchain, CMake, pkg-config, nlohmann-json, OpenSSL's headers and valgrind (tests).
# Installs the missing Debian packages with apt (root, or sudo); does nothing when all are present.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v c++ >/dev/null || need+=(g++)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v valgrind >/dev/null || need+=(valgrind)
[ -f /usr/include/nlohmann/json.hpp ] || need+=(nlohmann-json3-dev)
[ -f /usr/include/openssl/evp.h ] || need+=(libssl-dev)
. "$(dirname "$0")/apt_install.sh"
apt_install "the C library" "${need[@]}"
