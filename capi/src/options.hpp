// The options string of prt_open: "key=value;key=value".
#pragma once

#include <string>

namespace prt {

enum class Mode { whole, streams };

struct Options {
    Mode mode = Mode::whole;
    int threads = 0;              // 0: all cores
    std::string backend = "openvino";  // a name make_backend() knows (backend.hpp)
    std::string device = "CPU";   // an OpenVINO device name
    std::string precision_hint;   // "" (the artifact's own), f32, bf16, f16
    bool check_finite = true;     // prt_infer refuses NaN and infinities in the input
};

// Throws Error(PRT_E_INVALID_ARG) for unknown or repeated keys and bad values.
Options parse_options(const char *text);

}  // namespace prt
