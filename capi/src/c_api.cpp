// The C ABI of parnet_rt.h: argument checks, handle registry, status and thread-local error.
// Nothing may throw across this boundary.
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "error.hpp"
#include "options.hpp"
#include "parnet_rt.h"
#include "preprocess.hpp"
#include "runtime.hpp"

#ifndef PRT_VERSION_STRING
#define PRT_VERSION_STRING "0.0.0"
#endif

namespace {

thread_local std::string last_error;

// Messages are one line of text: a control byte from anywhere (a path, an option, a reason
// from OpenVINO) becomes \xNN. Text from files was made printable where it was quoted.
std::string one_line(const std::string &message) {
    std::string out;
    for (char c : message) {
        const auto b = static_cast<unsigned char>(c);
        if (b >= 0x20 && b != 0x7f) out += c;
        else out += prt::printable(std::string(1, c));
    }
    return out;
}

prt_status failed(prt_status status, const std::string &message) {
    try {
        last_error = one_line(message);
    } catch (...) {
        last_error.clear();
    }
    return status;
}

// Live handles. A handle is a number, never memory: each prt_open takes the next one, so a closed
// handle is never handed out again and stays an error (not another caller's runtime, not a crash).
// A call holds a reference while it runs, so prt_close on another thread never frees a Runtime under it.
std::mutex registry_mutex;
uintptr_t last_handle = 0;
std::unordered_map<const prt_runtime *, std::shared_ptr<prt::Runtime>> &registry() {
    static auto *map = new std::unordered_map<const prt_runtime *, std::shared_ptr<prt::Runtime>>();
    return *map;
}

std::shared_ptr<prt::Runtime> lookup(const prt_runtime *rt, const char *function) {
    if (rt == nullptr) prt::fail(PRT_E_INVALID_ARG, std::string(function) + ": runtime handle is NULL");
    std::lock_guard<std::mutex> lock(registry_mutex);
    auto it = registry().find(rt);
    if (it == registry().end()) prt::fail(PRT_E_INVALID_ARG, std::string(function) + ": not an open handle (closed?)");
    return it->second;
}

bool valid_utf8(const char *s) {
    const auto *p = reinterpret_cast<const unsigned char *>(s);
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0 || (*p == 0xC0 || *p == 0xC1) || *p > 0xF4) return false;
        const unsigned lead = *p++;
        for (int i = 0; i < n; i++, p++)
            if ((*p & 0xC0) != 0x80) return false;
        if ((lead == 0xE0 && (p[-n] < 0xA0)) || (lead == 0xF0 && p[-n] < 0x90) || (lead == 0xF4 && p[-n] > 0x8F) ||
            (lead == 0xED && p[-n] > 0x9F))
            return false;  // overlong, above U+10FFFF, or a surrogate
    }
    return true;
}

// Exactly `count` values: the rank the header declares, checked against the model at open.
prt_status copy_dims(const std::vector<int64_t> &shape, int64_t *dims, size_t count, const char *function) {
    if (dims == nullptr) return failed(PRT_E_INVALID_ARG, std::string(function) + ": dims is NULL");
    if (shape.size() != count) return failed(PRT_E_RUNTIME, std::string(function) + ": the model's rank changed");
    for (size_t i = 0; i < count; i++) dims[i] = shape[i];
    return PRT_OK;
}

// The checks of prt_preprocess_u8 and prt_preprocess_u8_len; `image_len`: SIZE_MAX if unknown.
prt_status preprocess(const char *function, const prt_runtime *rt, const uint8_t *image, size_t image_len,
                      size_t height, size_t width, size_t row_stride, int order, float *input, size_t input_len) {
    const std::string f = function;
    auto r = lookup(rt, function);
    if (image == nullptr || input == nullptr) return failed(PRT_E_INVALID_ARG, f + ": image and input must not be NULL");
    const auto &shape = r->input_shape();
    const size_t h = static_cast<size_t>(shape[2]), w = static_cast<size_t>(shape[3]);
    if (height != h || width != w)
        return failed(PRT_E_INVALID_ARG, f + ": the image is " + std::to_string(height) + "x" + std::to_string(width) +
                                             ", the model takes " + std::to_string(h) + "x" + std::to_string(w) +
                                             " (resize first)");
    if (row_stride < 3 * width) return failed(PRT_E_INVALID_ARG, f + ": row_stride must be at least 3 * width");
    size_t span = 0;
    if (!prt::image_span(h, w, row_stride, &span))
        return failed(PRT_E_INVALID_ARG, f + ": row_stride " + std::to_string(row_stride) +
                                             " is too large: (height - 1) * row_stride + 3 * width overflows");
    if (span > image_len)
        return failed(PRT_E_INVALID_ARG, f + ": the image spans " + std::to_string(span) +
                                             " bytes ((height - 1) * row_stride + 3 * width), image_len is " +
                                             std::to_string(image_len));
    if (order != PRT_RGB && order != PRT_BGR) return failed(PRT_E_INVALID_ARG, f + ": order must be PRT_RGB or PRT_BGR");
    if (input_len != 3 * h * w)
        return failed(PRT_E_INVALID_ARG, f + ": expected input_len " + std::to_string(3 * h * w) + ", got " +
                                             std::to_string(input_len));
    prt::normalize_u8(image, h, w, row_stride, order == PRT_BGR, r->normalization(), input);
    return PRT_OK;
}

std::string non_finite_text(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf"; }

template <typename F>
prt_status guarded(F &&body) {
    try {
        return body();
    } catch (const prt::Error &e) {
        return failed(e.status(), e.what());
    } catch (const std::bad_alloc &) {
        return failed(PRT_E_NO_MEMORY, "out of memory");
    } catch (const std::exception &e) {
        return failed(PRT_E_RUNTIME, e.what());
    } catch (...) {
        return failed(PRT_E_RUNTIME, "unknown failure");
    }
}

}  // namespace

extern "C" {

const char *prt_version(void) { return PRT_VERSION_STRING; }

int prt_abi_version(void) { return PRT_ABI_VERSION; }

prt_status prt_open(const char *path, const char *options, prt_runtime **out) {
    return guarded([&] {
        if (out == nullptr || path == nullptr) return failed(PRT_E_INVALID_ARG, "prt_open: path and out must not be NULL");
        *out = nullptr;
        if (!valid_utf8(path)) return failed(PRT_E_INVALID_ARG, "prt_open: path is not valid UTF-8");
        if (options != nullptr && !valid_utf8(options)) return failed(PRT_E_INVALID_ARG, "prt_open: options are not valid UTF-8");
        const prt::Options parsed = prt::parse_options(options);
        std::shared_ptr<prt::Runtime> runtime = prt::Runtime::open(path, parsed);
        std::lock_guard<std::mutex> lock(registry_mutex);
        last_handle += 16;  // aligned like a pointer; 2^60 opens before it wraps
        auto *handle = reinterpret_cast<prt_runtime *>(last_handle);
        registry().emplace(handle, std::move(runtime));
        *out = handle;
        return PRT_OK;
    });
}

prt_status prt_input_dims(const prt_runtime *rt, int64_t dims[4]) {
    return guarded([&] { return copy_dims(lookup(rt, "prt_input_dims")->input_shape(), dims, 4, "prt_input_dims"); });
}

prt_status prt_output_dims(const prt_runtime *rt, int64_t dims[2]) {
    return guarded([&] { return copy_dims(lookup(rt, "prt_output_dims")->output_shape(), dims, 2, "prt_output_dims"); });
}

prt_status prt_infer(prt_runtime *rt, const float *input, size_t input_len, float *output, size_t output_len) {
    return guarded([&] {
        auto r = lookup(rt, "prt_infer");
        if (input == nullptr || output == nullptr) return failed(PRT_E_INVALID_ARG, "prt_infer: input and output must not be NULL");
        if (input_len != r->input_len() || output_len != r->output_len())
            return failed(PRT_E_INVALID_ARG, "prt_infer: expected input_len " + std::to_string(r->input_len()) +
                                                 " and output_len " + std::to_string(r->output_len()) + ", got " +
                                                 std::to_string(input_len) + " and " + std::to_string(output_len));
        if (r->check_finite()) {
            const size_t i = prt::first_non_finite(input, input_len);
            if (i < input_len)
                return failed(PRT_E_INVALID_ARG, "prt_infer: input[" + std::to_string(i) + "] is " + non_finite_text(input[i]) +
                                                     ": the input must be finite (open with check_finite=0 to skip this check)");
        }
        r->infer(input, output);
        return PRT_OK;
    });
}

prt_status prt_preprocess_u8(const prt_runtime *rt, const uint8_t *image, size_t height, size_t width,
                             size_t row_stride, int order, float *input, size_t input_len) {
    return guarded([&] {
        return preprocess("prt_preprocess_u8", rt, image, SIZE_MAX, height, width, row_stride, order, input, input_len);
    });
}

prt_status prt_preprocess_u8_len(const prt_runtime *rt, const uint8_t *image, size_t image_len, size_t height,
                                 size_t width, size_t row_stride, int order, float *input, size_t input_len) {
    return guarded([&] {
        return preprocess("prt_preprocess_u8_len", rt, image, image_len, height, width, row_stride, order, input,
                          input_len);
    });
}

prt_status prt_warmup(prt_runtime *rt, int iterations) {
    return guarded([&] {
        auto r = lookup(rt, "prt_warmup");
        if (iterations < 0) return failed(PRT_E_INVALID_ARG, "prt_warmup: iterations must be >= 0");
        std::vector<float> x(r->input_len(), 0.0f), y(r->output_len());
        for (int i = 0; i < iterations; i++) r->infer(x.data(), y.data());
        return PRT_OK;
    });
}

prt_status prt_last_latency_us(const prt_runtime *rt, double *microseconds) {
    return guarded([&] {
        auto r = lookup(rt, "prt_last_latency_us");
        if (microseconds == nullptr) return failed(PRT_E_INVALID_ARG, "prt_last_latency_us: pointer is NULL");
        *microseconds = r->last_latency_us();
        return PRT_OK;
    });
}

const char *prt_last_error(void) { return last_error.c_str(); }

void prt_close(prt_runtime *rt) {
    if (rt == nullptr) return;
    std::shared_ptr<prt::Runtime> runtime;
    {
        std::lock_guard<std::mutex> lock(registry_mutex);
        auto it = registry().find(rt);
        if (it == registry().end()) return;  // not ours, or closed already
        runtime = std::move(it->second);
        registry().erase(it);
    }
    // `runtime` is freed here, or by the last call still running on it
}

}  // extern "C"
