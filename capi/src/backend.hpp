// The boundary between the runtime and an inference engine. OpenVINO implements it
// (openvino_backend.cpp). A backend is one source file: its Backend, Graph and Request classes and
// a PRT_REGISTER_BACKEND line; adding the file to the library (CMakeLists.txt) is all it takes
// for make_backend() and the `backend=` option to know it.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace prt {

struct Port {
    std::vector<std::string> names;  // every name the tensor has in the model
    std::vector<int64_t> shape;      // empty if the model's shape is not static, except that dim 0 may be a
                                     // bounded batch: shape[0] == -1 (kBatchDim) and batch_min..batch_max
    std::string dtype;               // element type: float32, float16, int8, uint8, int32, int64, bool (numpy's
                                     // names), else the backend's
    int64_t batch_min = 0, batch_max = 0;  // of a bounded dim 0 (1 <= min <= max), else 0
    size_t element_bytes = 0;        // of the element type (0 if below a byte)
};

// One execution of a graph; owns its internal memory. Not thread-safe: one caller at a time.
class Request {
  public:
    virtual ~Request() = default;
    // Point an input (output) at caller memory of exactly the port's shape and element type; a port
    // with a bounded batch (Port::shape[0] == -1) takes the shape at `batch` (ignored for other ports).
    virtual void bind_input(size_t port, const void *data, int64_t batch) = 0;
    virtual void bind_output(size_t port, void *data, int64_t batch) = 0;
    // The shape output `port` has after a run (a bounded batch's outputs: read from the request).
    virtual std::vector<int64_t> output_shape(size_t port) = 0;
    // Make input `port` read output `producer_port` of `producer` (same backend), without copies.
    virtual void link_input(size_t port, Request &producer, size_t producer_port) = 0;
    virtual void infer() = 0;
    // Asynchronous run; `done` is called once per start_async, from any thread, with the failure if any.
    virtual void set_done(std::function<void(std::exception_ptr)> done) = 0;
    virtual void start_async() = 0;
    // Returns once a started run is over, its `done` call included (so it may be started again).
    virtual void wait() = 0;
};

// One compiled graph on one device.
class Graph {
  public:
    virtual ~Graph() = default;
    virtual const std::vector<Port> &inputs() const = 0;
    virtual const std::vector<Port> &outputs() const = 0;
    virtual std::unique_ptr<Request> new_request() = 0;
};

struct CompileOptions {
    std::string device;          // the backend's device name
    int threads = 1;             // intra-op threads of this graph
    std::string precision_hint;  // f32 | bf16 | f16
    // A dynamic export (ONNX with a symbolic dim 0): every input's dim 0 is bounded to
    // batch_min..batch_max before compiling. 0: static shapes, compiled as they are.
    int64_t batch_min = 0, batch_max = 0;
};

class Backend {
  public:
    virtual ~Backend() = default;
    virtual std::string name() const = 0;   // as engines.json records it: openvino
    virtual std::string title() const = 0;  // for messages: OpenVINO
    virtual std::string version() const = 0;
    // `model`: bytes already verified (taken: a graph may keep them). `compiled`: a blob of this backend (else ONNX).
    virtual std::unique_ptr<Graph> load(std::string model, bool compiled, const CompileOptions &options,
                                        const std::string &what) = 0;
};

// The backends this library was built with, by name. A backend lives for the whole process (it may
// hold process-wide engine state, like OpenVINO's Core).
using BackendFactory = Backend &(*)();
// Adds `factory` under `name` (once per name); called at load time by PRT_REGISTER_BACKEND.
bool register_backend(const char *name, BackendFactory factory);
// The backend named `name`; PRT_E_INVALID_ARG naming the known ones if there is none.
Backend &make_backend(const std::string &name);
// Every registered name, sorted (the default, Options::backend, is openvino).
std::vector<std::string> backend_names();

// In the backend's .cpp, at namespace scope: PRT_REGISTER_BACKEND("openvino", openvino_backend);
#define PRT_REGISTER_BACKEND(name, factory) \
    static const bool prt_registered_backend_ [[maybe_unused]] = ::prt::register_backend(name, factory)

}  // namespace prt
