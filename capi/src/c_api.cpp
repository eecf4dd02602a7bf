// The C ABI of parnet_rt.h: argument checks, handle registry, status and thread-local error.
// Nothing may throw across this boundary.
#include <cmath>
#include <cstring>
#include <utility>
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

// The image classifier's calls (prt_infer, the dims, preprocessing): other models are refused.
std::shared_ptr<prt::Runtime> lookup_image(const prt_runtime *rt, const char *function) {
    std::shared_ptr<prt::Runtime> r = lookup(rt, function);
    if (!r->image_api()) prt::fail(PRT_E_INCOMPATIBLE, std::string(function) + ": " + r->why_not_image_api());
    return r;
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

std::string non_finite_text(float v) { return std::isnan(v) ? "NaN" : v > 0 ? "+inf" : "-inf"; }

// The checks of one image of prt_preprocess_u8(_len, _batch) but its NULL pointer; `image_len`:
// SIZE_MAX if unknown; `f`: the function, and which image where there are several.
prt_status check_image(const std::string &f, const prt::Runtime &r, size_t image_len, size_t height, size_t width,
                       size_t row_stride, const std::string &len_name) {
    const auto &shape = r.input_shape();
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
                                             " bytes ((height - 1) * row_stride + 3 * width), " + len_name + " is " +
                                             std::to_string(image_len));
    return PRT_OK;
}

// The checks of prt_preprocess_u8 and prt_preprocess_u8_len; `image_len`: SIZE_MAX if unknown.
prt_status preprocess(const char *function, const prt_runtime *rt, const uint8_t *image, size_t image_len,
                      size_t height, size_t width, size_t row_stride, int order, float *input, size_t input_len) {
    const std::string f = function;
    auto r = lookup_image(rt, function);
    if (image == nullptr || input == nullptr) return failed(PRT_E_INVALID_ARG, f + ": image and input must not be NULL");
    const prt_status checked = check_image(f, *r, image_len, height, width, row_stride, "image_len");
    if (checked != PRT_OK) return checked;
    if (order != PRT_RGB && order != PRT_BGR) return failed(PRT_E_INVALID_ARG, f + ": order must be PRT_RGB or PRT_BGR");
    const size_t n = r->sample_input_len();
    if (input_len != n)
        return failed(PRT_E_INVALID_ARG, f + ": expected input_len " + std::to_string(n) + ", got " +
                                             std::to_string(input_len));
    prt::normalize_u8(image, height, width, row_stride, order == PRT_BGR, r->normalization(), input);
    return PRT_OK;
}

// prt_infer and prt_infer_batch: `batch` checked against the bounds, the lengths against the batch.
prt_status infer_batch(const char *function, prt_runtime *rt, size_t batch, const float *input, size_t input_len,
                       float *output, size_t output_len) {
    const std::string f = function;
    auto r = lookup_image(rt, function);
    if (input == nullptr || output == nullptr) return failed(PRT_E_INVALID_ARG, f + ": input and output must not be NULL");
    const auto lo = static_cast<size_t>(r->batch_min()), hi = static_cast<size_t>(r->batch_max());
    if (batch < lo || batch > hi)
        return failed(PRT_E_INVALID_ARG, f + ": batch " + std::to_string(batch) + " is outside the model's bounds " +
                                             std::to_string(lo) + ".." + std::to_string(hi));
    const size_t n_in = batch * r->sample_input_len(), n_out = batch * r->sample_output_len();  // bounded at open
    if (input_len != n_in || output_len != n_out)
        return failed(PRT_E_INVALID_ARG, f + ": expected input_len " + std::to_string(n_in) + " and output_len " +
                                             std::to_string(n_out) + (lo == hi ? "" : " (batch " + std::to_string(batch) + ")") +
                                             ", got " + std::to_string(input_len) + " and " + std::to_string(output_len));
    if (r->check_finite()) {
        const size_t i = prt::first_non_finite(input, input_len);
        if (i < input_len)
            return failed(PRT_E_INVALID_ARG, f + ": input[" + std::to_string(i) + "] is " + non_finite_text(input[i]) +
                                                 ": the input must be finite (open with check_finite=0 to skip this check)");
    }
    r->infer(static_cast<int64_t>(batch), input, output);
    return PRT_OK;
}

// ---- named tensors (prt_io_info, prt_infer_named) ----

constexpr size_t kMaxNameBytes = 256;  // of a tensor name (manifest.cpp): a caller's name is read no further

bool dtype_code(const std::string &name, prt_dtype *code) {
    static const std::pair<const char *, prt_dtype> codes[] = {
        {"float32", PRT_FLOAT32}, {"float16", PRT_FLOAT16}, {"int8", PRT_INT8}, {"uint8", PRT_UINT8},
        {"int32", PRT_INT32},     {"int64", PRT_INT64},     {"bool", PRT_BOOL}};
    for (const auto &c : codes)
        if (name == c.first) {
            *code = c.second;
            return true;
        }
    return false;
}

// A caller's name, for messages: at most kMaxNameBytes + 1 bytes of it read, quoted, printable.
std::string quoted(const char *name) {
    return "'" + prt::printable(std::string(name, strnlen(name, kMaxNameBytes + 1)), 80) + "'";
}

// The graph tensor the caller names, or tensors.size().
size_t find_tensor(const std::vector<prt::IoTensor> &tensors, const char *name) {
    const size_t n = strnlen(name, kMaxNameBytes + 1);
    for (size_t i = 0; i < tensors.size(); i++)
        if (tensors[i].name.size() == n && std::memcmp(tensors[i].name.data(), name, n) == 0) return i;
    return tensors.size();
}

std::string names_of(const std::vector<prt::IoTensor> &tensors) {
    std::string out;
    for (const prt::IoTensor &t : tensors) out += (out.empty() ? "'" : ", '") + prt::printable(t.name, 40) + "'";
    return out;
}

std::string shape_text(const std::vector<int64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

struct Span {
    uintptr_t begin, end;
    std::string what;
};

// The batch a dynamic model's call carries: set by the first batched tensor's byte count
// (0 until then), which later ones must fit.
struct CallBatch {
    const prt::Runtime &r;
    int64_t batch = 0;
    std::string from;  // the tensor that set it
};

// The bytes the caller must pass for tensor t: its size at the call's batch; a dynamic model's
// first batched tensor sets the batch from its byte count (a whole number of samples, in bounds).
size_t expected_bytes(const std::string &f, const prt::IoTensor &t, const std::string &tensor, size_t given,
                      const std::string &given_name, CallBatch &call) {
    if (!t.batched()) return t.bytes;
    if (call.batch == 0) {
        const int64_t lo = call.r.batch_min(), hi = call.r.batch_max();
        if (given % t.sample_bytes != 0 || given / t.sample_bytes < static_cast<size_t>(lo) ||
            given / t.sample_bytes > static_cast<size_t>(hi))
            prt::fail(PRT_E_INVALID_ARG, f + ": " + tensor + " (" + t.dtype + " " + shape_text(t.shape) + ", " +
                                             std::to_string(t.sample_bytes) + " bytes per sample, batch " +
                                             std::to_string(lo) + ".." + std::to_string(hi) + ") is " + given_name +
                                             " = " + std::to_string(given) +
                                             " bytes: not a whole batch within the model's bounds");
        call.batch = static_cast<int64_t>(given / t.sample_bytes);
        call.from = tensor;
    }
    return t.bytes_at(call.batch);
}

// One side of prt_infer_named: each caller entry matched to its graph tensor (by_graph[g]: the
// caller's buffer for graph tensor g, nullptr if not given; sizes[g] its bytes), names, pointers,
// sizes and alignment checked. Stops at the first bad entry: of n entries at most tensors.size() + 1 are read.
template <typename Ptr>
void match_side(const std::string &f, const std::string &side, const std::vector<prt::IoTensor> &tensors, size_t n,
                const char *const *names, Ptr const *buffers, const size_t *bytes, std::vector<Ptr> &by_graph,
                std::vector<size_t> &sizes, std::vector<Span> &spans, CallBatch &call) {
    if (n == 0) prt::fail(PRT_E_INVALID_ARG, f + ": no " + side + "s given (at least one is needed)");
    if (names == nullptr || buffers == nullptr || bytes == nullptr)
        prt::fail(PRT_E_INVALID_ARG, f + ": " + side + "_names, " + side + "s and " + side + "_bytes must not be NULL");
    by_graph.assign(tensors.size(), nullptr);
    sizes.assign(tensors.size(), 0);
    std::vector<bool> seen(tensors.size(), false);
    for (size_t i = 0; i < n; i++) {
        const std::string at = side + "_names[" + std::to_string(i) + "]";
        if (names[i] == nullptr) prt::fail(PRT_E_INVALID_ARG, f + ": " + at + " is NULL");
        const size_t g = find_tensor(tensors, names[i]);
        if (g == tensors.size())
            prt::fail(PRT_E_INVALID_ARG, f + ": " + at + " " + quoted(names[i]) + " is not a graph " + side +
                                             " of the model (its " + side + "s: " + names_of(tensors) + ")");
        const prt::IoTensor &t = tensors[g];
        const std::string tensor = side + " '" + prt::printable(t.name) + "'";
        if (seen[g]) prt::fail(PRT_E_INVALID_ARG, f + ": " + tensor + " is given twice (" + at + ")");
        seen[g] = true;
        if (buffers[i] == nullptr) prt::fail(PRT_E_INVALID_ARG, f + ": the buffer of " + tensor + " is NULL");
        const std::string given = side + "_bytes[" + std::to_string(i) + "]";
        const size_t want = expected_bytes(f, t, tensor, bytes[i], given, call);
        if (bytes[i] != want)
            prt::fail(PRT_E_INVALID_ARG, f + ": " + tensor + " (" + t.dtype + " " + shape_text(t.shape) + ") is " +
                                             std::to_string(want) + " bytes" +
                                             (t.batched() ? " at batch " + std::to_string(call.batch) + " (as " + call.from + " gives)" : "") +
                                             ", " + given + " is " + std::to_string(bytes[i]));
        const auto begin = reinterpret_cast<uintptr_t>(buffers[i]);
        if (begin % t.element_bytes != 0)
            prt::fail(PRT_E_INVALID_ARG, f + ": the buffer of " + tensor + " is not aligned to its element size (" +
                                             std::to_string(t.element_bytes) + " bytes, " + t.dtype + ")");
        by_graph[g] = buffers[i];
        sizes[g] = want;
        spans.push_back({begin, begin > UINTPTR_MAX - want ? UINTPTR_MAX : begin + want, tensor});
    }
}

// float32 and float16 inputs hold no NaN or infinity (the check_finite option).
void check_finite_named(const std::string &f, const std::vector<prt::IoTensor> &tensors,
                        const std::vector<const void *> &by_graph, const std::vector<size_t> &sizes) {
    for (size_t g = 0; g < tensors.size(); g++) {
        const prt::IoTensor &t = tensors[g];
        const size_t n = sizes[g] / t.element_bytes;
        std::string bad;
        size_t at = n;
        if (t.dtype == "float32") {
            const auto *x = static_cast<const float *>(by_graph[g]);
            at = prt::first_non_finite(x, n);
            if (at < n) bad = non_finite_text(x[at]);
        } else if (t.dtype == "float16") {
            const auto *x = static_cast<const uint16_t *>(by_graph[g]);
            for (at = 0; at < n && (x[at] & 0x7c00u) != 0x7c00u; at++) {
            }
            if (at < n) bad = (x[at] & 0x3ffu) ? "NaN" : (x[at] & 0x8000u) ? "-inf" : "+inf";
        }
        if (at < n)
            prt::fail(PRT_E_INVALID_ARG, f + ": input '" + prt::printable(t.name) + "'[" + std::to_string(at) + "] is " + bad +
                                             ": the input must be finite (open with check_finite=0 to skip this check)");
    }
}

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
    return guarded([&] { return copy_dims(lookup_image(rt, "prt_input_dims")->input_shape(), dims, 4, "prt_input_dims"); });
}

prt_status prt_output_dims(const prt_runtime *rt, int64_t dims[2]) {
    return guarded([&] { return copy_dims(lookup_image(rt, "prt_output_dims")->output_shape(), dims, 2, "prt_output_dims"); });
}

prt_status prt_batch_bounds(const prt_runtime *rt, size_t *min_batch, size_t *max_batch) {
    return guarded([&] {
        auto r = lookup(rt, "prt_batch_bounds");
        if (min_batch != nullptr) *min_batch = static_cast<size_t>(r->batch_min());
        if (max_batch != nullptr) *max_batch = static_cast<size_t>(r->batch_max());
        return PRT_OK;
    });
}

prt_status prt_infer(prt_runtime *rt, const float *input, size_t input_len, float *output, size_t output_len) {
    return guarded([&] {
        auto r = lookup_image(rt, "prt_infer");
        return infer_batch("prt_infer", rt, static_cast<size_t>(r->batch_min()), input, input_len, output, output_len);
    });
}

prt_status prt_infer_batch(prt_runtime *rt, size_t batch, const float *input, size_t input_len, float *output,
                           size_t output_len) {
    return guarded([&] { return infer_batch("prt_infer_batch", rt, batch, input, input_len, output, output_len); });
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

prt_status prt_preprocess_u8_batch(const prt_runtime *rt, const uint8_t *const *images, const size_t *image_lens,
                                   size_t count, size_t height, size_t width, size_t row_stride, int order, float *input,
                                   size_t input_len) {
    return guarded([&] {
        const std::string f = "prt_preprocess_u8_batch";
        auto r = lookup_image(rt, "prt_preprocess_u8_batch");
        if (images == nullptr || image_lens == nullptr || input == nullptr)
            return failed(PRT_E_INVALID_ARG, f + ": images, image_lens and input must not be NULL");
        if (count == 0) return failed(PRT_E_INVALID_ARG, f + ": count must be at least 1");
        const size_t n = r->sample_input_len();
        if (count > SIZE_MAX / n || input_len != count * n)
            return failed(PRT_E_INVALID_ARG, f + ": expected input_len " +
                                                 (count > SIZE_MAX / n ? "count * " + std::to_string(n)
                                                                       : std::to_string(count * n)) +
                                                 " (" + std::to_string(count) + " images), got " + std::to_string(input_len));
        if (order != PRT_RGB && order != PRT_BGR) return failed(PRT_E_INVALID_ARG, f + ": order must be PRT_RGB or PRT_BGR");
        for (size_t i = 0; i < count; i++) {  // every image checked before anything is written
            const std::string at = "[" + std::to_string(i) + "]";
            if (images[i] == nullptr) return failed(PRT_E_INVALID_ARG, f + ": images" + at + " is NULL");
            const prt_status checked = check_image(f + ": images" + at, *r, image_lens[i], height, width, row_stride,
                                                   "image_lens" + at);
            if (checked != PRT_OK) return checked;
        }
        for (size_t i = 0; i < count; i++)
            prt::normalize_u8(images[i], height, width, row_stride, order == PRT_BGR, r->normalization(), input + i * n);
        return PRT_OK;
    });
}

prt_status prt_io_count(const prt_runtime *rt, size_t *n_inputs, size_t *n_outputs) {
    return guarded([&] {
        auto r = lookup(rt, "prt_io_count");
        if (n_inputs != nullptr) *n_inputs = r->inputs().size();
        if (n_outputs != nullptr) *n_outputs = r->outputs().size();
        return PRT_OK;
    });
}

prt_status prt_io_info(const prt_runtime *rt, int is_output, size_t index, const char **name, prt_dtype *dtype,
                       int64_t *dims, size_t dims_cap, size_t *rank) {
    return guarded([&] {
        const std::string f = "prt_io_info";
        auto r = lookup(rt, "prt_io_info");
        if (is_output != 0 && is_output != 1) return failed(PRT_E_INVALID_ARG, f + ": is_output must be 0 or 1");
        const std::vector<prt::IoTensor> &tensors = is_output ? r->outputs() : r->inputs();
        const char *side = is_output ? "output" : "input";
        if (index >= tensors.size())
            return failed(PRT_E_INVALID_ARG, f + ": " + side + " " + std::to_string(index) + " does not exist (the model has " +
                                                 std::to_string(tensors.size()) + " " + side + "s)");
        const prt::IoTensor &t = tensors[index];
        if (dims == nullptr && dims_cap != 0) return failed(PRT_E_INVALID_ARG, f + ": dims is NULL but dims_cap is not 0");
        if (dims != nullptr && dims_cap < t.shape.size())
            return failed(PRT_E_INVALID_ARG, f + ": " + side + " '" + prt::printable(t.name) + "' has rank " +
                                                 std::to_string(t.shape.size()) + ", dims_cap is " + std::to_string(dims_cap));
        prt_dtype code = PRT_FLOAT32;
        if (!dtype_code(t.dtype, &code))
            return failed(PRT_E_RUNTIME, f + ": " + side + " '" + prt::printable(t.name) + "' has an element type this API lacks");
        if (name != nullptr) *name = t.name.c_str();  // lives as long as the runtime
        if (dtype != nullptr) *dtype = code;
        if (rank != nullptr) *rank = t.shape.size();
        if (dims != nullptr)  // a bounded batch is -1 (kBatchDim)
            for (size_t i = 0; i < t.shape.size(); i++) dims[i] = t.shape[i];
        return PRT_OK;
    });
}

prt_status prt_infer_named(prt_runtime *rt, size_t n_inputs, const char *const *input_names, const void *const *inputs,
                           const size_t *input_bytes, size_t n_outputs, const char *const *output_names,
                           void *const *outputs, const size_t *output_bytes) {
    return guarded([&] {
        const std::string f = "prt_infer_named";
        auto r = lookup(rt, "prt_infer_named");
        std::vector<const void *> in;
        std::vector<void *> out;
        std::vector<size_t> in_sizes, out_sizes;
        std::vector<Span> spans;
        CallBatch call{*r, 0, {}};
        match_side(f, "input", r->inputs(), n_inputs, input_names, inputs, input_bytes, in, in_sizes, spans, call);
        for (size_t g = 0; g < in.size(); g++)
            if (in[g] == nullptr)
                return failed(PRT_E_INVALID_ARG, f + ": input '" + prt::printable(r->inputs()[g].name) +
                                                     "' is missing (every graph input is required; the model's inputs: " +
                                                     names_of(r->inputs()) + ")");
        const size_t n_in = spans.size();
        if (call.batch == 0) call.batch = r->batch_min();  // static shapes (or no batched input)
        match_side(f, "output", r->outputs(), n_outputs, output_names, outputs, output_bytes, out, out_sizes, spans, call);
        for (size_t o = n_in; o < spans.size(); o++)  // an output written while another buffer is read or written
            for (size_t j = 0; j < spans.size(); j++)
                if (j != o && spans[o].begin < spans[j].end && spans[j].begin < spans[o].end)
                    return failed(PRT_E_INVALID_ARG, f + ": the buffer of " + spans[o].what + " overlaps that of " +
                                                         spans[j].what);
        if (r->check_finite()) check_finite_named(f, r->inputs(), in, in_sizes);
        r->infer_named(call.batch, in.data(), out.data());
        return PRT_OK;
    });
}

prt_status prt_warmup(prt_runtime *rt, int iterations) {
    return guarded([&] {
        auto r = lookup(rt, "prt_warmup");
        if (iterations < 0) return failed(PRT_E_INVALID_ARG, "prt_warmup: iterations must be >= 0");
        r->warmup(iterations);
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
