#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <set>

#include "backend.hpp"
#include "error.hpp"

namespace prt {
namespace {

std::string trim(const std::string &s) {
    size_t b = 0, e = s.size();
    while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) b++;
    while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) e--;
    return s.substr(b, e - b);
}

[[noreturn]] void bad(const std::string &item, const std::string &why) {
    fail(PRT_E_INVALID_ARG, "bad option '" + (item.size() > 80 ? item.substr(0, 80) + "..." : item) + "': " + why);
}

int parse_threads(const std::string &item, const std::string &value) {
    if (value.empty() || value.size() > 4) bad(item, "threads must be an integer in [1, 1024]");
    int n = 0;
    for (char c : value) {
        if (c < '0' || c > '9') bad(item, "threads must be an integer in [1, 1024]");
        n = n * 10 + (c - '0');
    }
    if (n < 1 || n > 1024) bad(item, "threads must be an integer in [1, 1024]");
    return n;
}

// cpu -> CPU; OpenVINO names CPU, GPU, GPU.<n>, NPU, NPU.<n> pass through (upper-cased)
std::string parse_device(const std::string &item, const std::string &value) {
    std::string name;
    for (char c : value) name += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (name == "CPU") return name;
    const std::string family = name.substr(0, name.find('.'));
    const std::string index = name.find('.') == std::string::npos ? "" : name.substr(name.find('.') + 1);
    bool index_ok = name.find('.') == std::string::npos || (!index.empty() && index.size() <= 3);
    for (char c : index) index_ok = index_ok && c >= '0' && c <= '9';
    if ((family == "GPU" || family == "NPU") && index_ok) return name;
    bad(item, "device must be cpu or an OpenVINO device name (CPU, GPU, GPU.1, NPU); cuda:N needs the Python "
              "runtime (TensorRT)");
}

// one of the backends built into this library
std::string parse_backend(const std::string &item, const std::string &value) {
    const std::vector<std::string> names = backend_names();
    if (std::find(names.begin(), names.end(), value) != names.end()) return value;
    std::string known;
    for (const std::string &n : names) known += (known.empty() ? "" : ", ") + n;
    bad(item, "backend must be one built into this library: " + known);
}

}  // namespace

Options parse_options(const char *text) {
    Options options;
    if (text == nullptr) return options;
    std::set<std::string> seen;
    std::string all(text), item;
    size_t start = 0;
    while (start <= all.size()) {
        size_t end = all.find(';', start);
        if (end == std::string::npos) end = all.size();
        item = trim(all.substr(start, end - start));
        start = end + 1;
        if (item.empty()) continue;
        const size_t eq = item.find('=');
        if (eq == std::string::npos) bad(item, "expected key=value");
        const std::string key = trim(item.substr(0, eq)), value = trim(item.substr(eq + 1));
        if (value.empty()) bad(item, "empty value");
        if (!seen.insert(key).second) bad(item, "key given twice");
        if (key == "mode") {
            if (value == "whole") options.mode = Mode::whole;
            else if (value == "streams") options.mode = Mode::streams;
            else bad(item, "mode must be whole or streams (distributed needs the Python runtime)");
        } else if (key == "threads") {
            options.threads = parse_threads(item, value);
        } else if (key == "device") {
            options.device = parse_device(item, value);
        } else if (key == "precision_hint") {
            if (value != "f32" && value != "bf16" && value != "f16") bad(item, "precision_hint must be f32, bf16 or f16");
            options.precision_hint = value;
        } else if (key == "backend") {
            options.backend = parse_backend(item, value);
        } else if (key == "check_finite") {
            if (value != "1" && value != "0") bad(item, "check_finite must be 1 or 0");
            options.check_finite = value == "1";
        } else {
            bad(item, "unknown key; keys are mode, threads, device, precision_hint, backend, check_finite");
        }
    }
    return options;
}

}  // namespace prt
