// The Backend interface on OpenVINO's C++ API (runtime only: no Python anywhere).
#include <istream>
#include <map>
#include <mutex>
#include <streambuf>
#include <type_traits>

#include <openvino/frontend/manager.hpp>
#include <openvino/openvino.hpp>

#include "backend.hpp"
#include "error.hpp"

namespace prt {
namespace {

// OpenVINO's exceptions carry a stack of "Exception from <file>" lines; the last one says why.
std::string reason(const std::exception &e) {
    std::string text = e.what(), last;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(start, end - start);
        if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
        start = end + 1;
    }
    return last.substr(0, 400);
}

// A read-only, seekable istream buffer over bytes we already hold (no copy).
class MemoryBuffer : public std::streambuf {
  public:
    explicit MemoryBuffer(const std::string &data) {
        char *p = const_cast<char *>(data.data());  // never written: no put area
        setg(p, p, p + data.size());
    }

  protected:
    pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
        const off_type base = dir == std::ios_base::beg ? 0 : dir == std::ios_base::cur ? gptr() - eback() : egptr() - eback();
        return seekpos(pos_type(base + off), std::ios_base::in);
    }
    pos_type seekpos(pos_type pos, std::ios_base::openmode) override {
        if (pos < 0 || pos > egptr() - eback()) return pos_type(off_type(-1));
        setg(eback(), eback() + off_type(pos), egptr());
        return pos;
    }
};

// ONNX only, through OpenVINO's ONNX frontend (Core::read_model would try every format it knows:
// IR, TensorFlow, Paddle, ... for a file the manifest calls a subgraph ONNX file).
std::shared_ptr<ov::Model> read_onnx(const std::string &bytes) {
    static std::mutex mutex;  // FrontEndManager is not documented as thread-safe
    static auto *manager = new ov::frontend::FrontEndManager();  // never destroyed, like the Core
    ov::frontend::FrontEnd::Ptr onnx;
    {
        std::lock_guard<std::mutex> lock(mutex);
        onnx = manager->load_by_framework("onnx");
    }
    MemoryBuffer buffer(bytes);
    std::istream stream(&buffer);
    return onnx->convert(onnx->load(&stream));
}

class OvRequest : public Request {
  public:
    OvRequest(ov::InferRequest request, const ov::CompiledModel &model)
        : request_(std::move(request)), inputs_(model.inputs()), outputs_(model.outputs()) {}

    void bind_input(size_t port, const void *data, int64_t batch) override {
        const ov::Output<const ov::Node> &p = inputs_.at(port);
        // OpenVINO only reads an input tensor; its Tensor type has no read-only view of host memory
        request_.set_tensor(p, ov::Tensor(p.get_element_type(), shape_at(p, batch), const_cast<void *>(data)));
    }
    void bind_output(size_t port, void *data, int64_t batch) override {
        // A host tensor of exactly the batch's shape: should the plugin compute a larger output, the
        // tensor refuses the new shape (an inference failure), so nothing is written past `data`.
        const ov::Output<const ov::Node> &p = outputs_.at(port);
        request_.set_tensor(p, ov::Tensor(p.get_element_type(), shape_at(p, batch), data));
    }
    std::vector<int64_t> output_shape(size_t port) override {
        std::vector<int64_t> out;
        for (size_t d : request_.get_tensor(outputs_.at(port)).get_shape()) out.push_back(static_cast<int64_t>(d));
        return out;
    }
    void link_input(size_t port, Request &producer, size_t producer_port) override {
        auto &from = dynamic_cast<OvRequest &>(producer);
        request_.set_tensor(inputs_.at(port), from.request_.get_tensor(from.outputs_.at(producer_port)));
    }
    void infer() override {
        try {
            request_.infer();
        } catch (const std::exception &e) {
            fail(PRT_E_RUNTIME, "OpenVINO inference failed: " + reason(e));
        }
    }
    void set_done(std::function<void(std::exception_ptr)> done) override { request_.set_callback(std::move(done)); }
    void start_async() override {
        try {
            request_.start_async();
        } catch (const std::exception &e) {
            fail(PRT_E_RUNTIME, "OpenVINO could not start an inference: " + reason(e));
        }
    }

    void wait() override {
        try {
            request_.wait();
        } catch (const std::exception &) {
            // the failure already reached the `done` callback, which reported it
        }
    }

  private:
    // The port's shape; a dynamic dim 0 (a bounded batch) is `batch`.
    static ov::Shape shape_at(const ov::Output<const ov::Node> &p, int64_t batch) {
        const ov::PartialShape &ps = p.get_partial_shape();
        if (ps.is_static()) return ps.to_shape();
        ov::PartialShape at = ps;
        at[0] = ov::Dimension(batch);
        return at.to_shape();  // throws if another dim is dynamic (such ports are refused at open)
    }

    ov::InferRequest request_;
    std::vector<ov::Output<const ov::Node>> inputs_, outputs_;
};

// The manifest's (numpy's) name of an element type; others keep OpenVINO's (u16, f64, ...).
std::string dtype_name(const ov::element::Type &type) {
    if (type == ov::element::f32) return "float32";
    if (type == ov::element::f16) return "float16";
    if (type == ov::element::i8) return "int8";
    if (type == ov::element::u8) return "uint8";
    if (type == ov::element::i32) return "int32";
    if (type == ov::element::i64) return "int64";
    if (type == ov::element::boolean) return "bool";
    return type.get_type_name();
}

// A shape of static dims, or of static dims after a bounded dim 0 (a batch: shape[0] = -1).
std::vector<Port> ports(const std::vector<ov::Output<const ov::Node>> &outputs) {
    std::vector<Port> out;
    for (const auto &p : outputs) {
        Port port;
        for (const std::string &n : p.get_names()) port.names.push_back(n);
        const ov::PartialShape &ps = p.get_partial_shape();
        if (ps.is_static()) {
            for (size_t d : p.get_shape()) port.shape.push_back(static_cast<int64_t>(d));
        } else if (ps.rank().is_static() && ps.size() >= 1 && ps[0].get_max_length() >= 1 &&
                   ps[0].get_min_length() >= 1) {
            bool rest_static = true;
            for (size_t i = 1; i < ps.size(); i++) rest_static = rest_static && ps[i].is_static();
            if (rest_static) {
                port.batch_min = ps[0].get_min_length();
                port.batch_max = ps[0].get_max_length();
                port.shape.push_back(-1);
                for (size_t i = 1; i < ps.size(); i++) port.shape.push_back(ps[i].get_length());
            }
        }
        port.dtype = dtype_name(p.get_element_type());
        port.element_bytes = p.get_element_type().size();
        out.push_back(std::move(port));
    }
    return out;
}

class OvGraph : public Graph {
  public:
    // `blob`: the bytes an imported model was read from; the plugin may keep pointing into them
    explicit OvGraph(ov::CompiledModel model, std::shared_ptr<const std::string> blob = nullptr)
        : blob_(std::move(blob)), model_(std::move(model)), inputs_(ports(model_.inputs())), outputs_(ports(model_.outputs())) {}
    const std::vector<Port> &inputs() const override { return inputs_; }
    const std::vector<Port> &outputs() const override { return outputs_; }
    std::unique_ptr<Request> new_request() override {
        try {
            return std::make_unique<OvRequest>(model_.create_infer_request(), model_);
        } catch (const std::exception &e) {
            fail(PRT_E_RUNTIME, "OpenVINO could not create an infer request: " + reason(e));
        }
    }

  private:
    std::shared_ptr<const std::string> blob_;
    ov::CompiledModel model_;
    std::vector<Port> inputs_, outputs_;
};

// Runs an OpenVINO call; its failure becomes `status` with `message` and OpenVINO's reason.
template <typename F>
auto attempt(prt_status status, const std::string &message, F &&call) -> decltype(call()) {
    try {
        return call();
    } catch (const Error &) {
        throw;
    } catch (const std::bad_alloc &) {
        fail(PRT_E_NO_MEMORY, message + ": out of memory");
    } catch (const std::exception &e) {
        fail(status, message + ": " + reason(e));
    }
}

class OpenVinoBackend : public Backend {
  public:
    std::string name() const override { return "openvino"; }
    std::string title() const override { return "OpenVINO"; }
    std::string version() const override { return ov::get_openvino_version().buildNumber; }

    std::unique_ptr<Graph> load(std::string model, bool compiled, const CompileOptions &options,
                                const std::string &what) override {
        // Without an explicit hint the CPU plugin computes in bf16 on CPUs with AVX512-BF16/AMX, and
        // compiled blobs do not keep the options they were built with: always pass all of them.
        ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY), ov::num_streams(1),
                          ov::hint::inference_precision(ov::element::Type(options.precision_hint))};
        if (options.device == "CPU") {
            config.emplace(ov::inference_num_threads(options.threads));
            // pinned, every compiled model uses the same first cores: concurrent subgraphs would share one
            config.emplace(ov::hint::enable_cpu_pinning(false));
        }
        ov::Core &core = this->core();
        if (compiled) {
            auto blob = std::make_shared<const std::string>(std::move(model));
            const ov::Tensor bytes(ov::element::u8, ov::Shape{blob->size()}, const_cast<char *>(blob->data()));
            return attempt(PRT_E_INCOMPATIBLE, what + ": OpenVINO cannot import it on " + options.device +
                                                   " (built by another OpenVINO or for another CPU? rebuild with parnet-build)",
                           [&] { return std::make_unique<OvGraph>(core.import_model(bytes, options.device, config), blob); });
        }
        // from the verified bytes (never re-read from the path); external data was refused before
        std::shared_ptr<ov::Model> graph = attempt(PRT_E_INCOMPATIBLE, what + ": not an ONNX model OpenVINO can read",
                                                   [&] { return read_onnx(model); });
        if (options.batch_max > 0) bound_batch(*graph, options, what);
        return attempt(PRT_E_RUNTIME, what + ": OpenVINO cannot compile it for " + options.device,
                       [&] { return std::make_unique<OvGraph>(core.compile_model(graph, options.device, config)); });
    }

  private:
    // dim 0 of every input (symbolic in a dynamic export's ONNX) bounded to batch_min..batch_max;
    // the other dims stay as the file has them (open compares them with the manifest).
    static void bound_batch(ov::Model &graph, const CompileOptions &options, const std::string &what) {
        std::map<ov::Output<ov::Node>, ov::PartialShape> shapes;
        for (const ov::Output<ov::Node> &input : graph.inputs()) {
            ov::PartialShape shape = input.get_partial_shape();
            if (shape.rank().is_dynamic() || shape.size() == 0)
                fail(PRT_E_INCOMPATIBLE, what + ": an input of unknown rank or rank 0 cannot have a batch dim");
            shape[0] = ov::Dimension(options.batch_min, options.batch_max);
            shapes.emplace(input, shape);
        }
        attempt(PRT_E_INCOMPATIBLE, what + ": OpenVINO cannot bound its batch to " + std::to_string(options.batch_min) +
                                        ".." + std::to_string(options.batch_max),
                [&] { graph.reshape(shapes); });
    }

    ov::Core &core() {
        // One Core per process: thread-safe, and creating one loads the plugin registry.
        static ov::Core *core = new ov::Core();  // never destroyed: plugins may outlive static destructors
        return *core;
    }
};

// The process-wide OpenVINO backend.
Backend &openvino_backend() {
    static OpenVinoBackend backend;
    return backend;
}

}  // namespace

PRT_REGISTER_BACKEND("openvino", openvino_backend);

}  // namespace prt
