#include "runtime.hpp"

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>

#include "artifact_dir.hpp"
#include "error.hpp"
#include "policy.hpp"

namespace prt {
namespace {

const char *kExportManifest = "manifest.json";
const char *kEnginesManifest = "engines.json";

// [1, 3, 32, 32]; a bounded batch as min..max: [1..4, 3, 32, 32]
std::string shape_text(const std::vector<int64_t> &shape, int64_t batch_min = 0, int64_t batch_max = 0) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++)
        s += (i ? ", " : "") + (i == 0 && shape[i] == kBatchDim ? std::to_string(batch_min) + ".." + std::to_string(batch_max)
                                                                 : std::to_string(shape[i]));
    return s + "]";
}

bool same_shape(const Port &port, const TensorSpec &t) {
    return port.shape == t.shape && (t.shape.empty() || t.shape[0] != kBatchDim ||
                                     (port.batch_min == t.batch_min && port.batch_max == t.batch_max));
}

bool same_port(const Port &a, const Port &b) {
    return a.shape == b.shape && a.dtype == b.dtype && a.batch_min == b.batch_min && a.batch_max == b.batch_max;
}

// The artifact, whichever kind: the graph to run, where its files are, how to compile them.
struct Plan {
    ExportManifest graph;
    std::map<std::string, FileSpec> files;
    std::string manifest;      // its file name, for messages
    bool compiled = false;     // engine blobs (else ONNX)
    std::string precision;     // what runs: an engine's built precision, else the export's
};

// Engines fit this library and this machine: built by `backend` (same version) for this CPU.
void check_engines_fit(const EnginesManifest &m, const Backend &backend, const std::string &path) {
    const std::string hint = "; rebuild with: parnet-build <export dir> --backend " + backend.name();
    if (m.backend != backend.name())
        fail(PRT_E_INCOMPATIBLE, path + ": engines were built for " + printable(m.backend, 40) + "; this library runs " +
                                     backend.title() + " engines and exports" + hint);
    if (m.backend_version != backend.version())
        fail(PRT_E_INCOMPATIBLE, path + ": engines were built with " + backend.title() + " " +
                                     printable(m.backend_version) + ", this is " + backend.title() + " " +
                                     backend.version() + hint);
    const std::string here = policy::cpu_model();
    for (const auto &item : m.placement) {
        const DeviceRecord &d = m.devices.at(item.second);
        if (d.kind != "cpu")
            fail(PRT_E_INCOMPATIBLE, path + ": engines for " + item.second + " are not CPU engines" + hint);
        if (d.name != here)
            fail(PRT_E_INCOMPATIBLE, path + ": engines were optimized for " + printable(d.name, 120) +
                                         "; this CPU is " + here + hint);
    }
}

Plan read_engines_plan(const ArtifactDir &dir, const Backend &backend) {
    EnginesManifest m = parse_engines_manifest(dir.read_manifest(kEnginesManifest), dir.path() + "/" + kEnginesManifest);
    check_engines_fit(m, backend, dir.path());
    Plan plan;
    plan.graph = std::move(m.export_view);
    plan.files = std::move(m.files);
    plan.manifest = kEnginesManifest;
    plan.compiled = true;
    plan.precision = m.precision;
    return plan;
}

Plan read_export_plan(const ArtifactDir &dir) {
    Plan plan;
    plan.graph = parse_export_manifest(dir.read_manifest(kExportManifest), dir.path() + "/" + kExportManifest);
    plan.files = plan.graph.files;
    plan.manifest = kExportManifest;
    plan.precision = plan.graph.precision;
    return plan;
}

// The artifact's manifest, parsed and checked (the files it lists are verified as they are read).
Plan read_plan(const ArtifactDir &dir, const Backend &backend) {
    if (dir.has_file(kEnginesManifest)) return read_engines_plan(dir, backend);
    if (!dir.has_file(kExportManifest))
        fail(PRT_E_NOT_FOUND, dir.path() + ": no manifest.json or engines.json (not an export or engine directory)");
    return read_export_plan(dir);
}

// The float precision the backend computes in: the artifact's own (policy::precision_hint, as the
// Python runtime), or the option's where an fp32 export allows it.
std::string choose_precision_hint(const Plan &plan, const Options &options) {
    const std::string own = policy::precision_hint(plan.precision);
    if (own.empty()) fail(PRT_E_INCOMPATIBLE, "unknown precision '" + printable(plan.precision) + "'");
    const std::string &hint = options.precision_hint;
    if (plan.compiled) {
        if (!hint.empty() && hint != own)
            fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=" + hint + "': these engines were built for " +
                                        plan.precision + " (precision_hint=" + own + ")");
        return own;
    }
    if (hint.empty()) return own;
    if (hint != "f32" && plan.graph.precision != "fp32")
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=" + hint + "': applies to fp32 exports only (this one is " +
                                    plan.graph.precision + ")");
    if (options.device == "CPU" && hint == "f16")
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=f16': the CPU plugin would silently use bf16; use f32 or bf16");
    if (options.device == "CPU" && hint == "bf16" && !policy::native_bf16())
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=bf16': this CPU (" + policy::cpu_model() +
                                    ") has no native bf16 and would emulate it slowly");
    return hint;
}

// How the graphs are compiled and run.
struct Settings {
    std::vector<SubgraphSpec> specs;  // the graphs to load, in an execution order
    std::vector<int> threads;         // per spec: its intra-op threads
    int concurrency = 1;              // how many run at once (the DAG scheduler)
    std::vector<size_t> waves;        // concurrency 1: runs of consecutive specs that run side by side
    CompileOptions compile;
};

// The options applied to this artifact (the same rules as the Python runtime: policy.hpp).
Settings choose_settings(const Plan &plan, const Options &options, const std::string &path) {
    if (plan.compiled && options.device != "CPU")
        fail(PRT_E_INVALID_ARG, "bad option 'device=" + options.device + "': " + path + " holds CPU engines");
    const bool streams = options.mode == Mode::streams;
    const int threads = options.threads > 0 ? options.threads : policy::default_threads();
    const policy::Concurrency c = policy::concurrency(streams, dag_width(plan.graph), threads);
    Settings s;
    s.concurrency = c.graphs;
    s.compile = CompileOptions{options.device, c.graph_threads, choose_precision_hint(plan, options),
                               plan.graph.batch_min, plan.graph.batch_max};
    std::vector<size_t> level_sizes{1};
    if (streams) {  // level by level: an execution order too
        level_sizes.clear();
        for (const std::vector<size_t> &level : dag_levels(plan.graph)) {
            level_sizes.push_back(level.size());
            for (size_t i : level) s.specs.push_back(plan.graph.subgraphs[i]);
        }
    } else {
        s.specs = {plan.graph.whole};
    }
    s.waves = policy::runs(c, level_sizes);
    s.threads = policy::graph_threads(c, s.waves);
    return s;
}

// The port of `model` named `name`; the manifest's names must be exactly the model's.
size_t find_port(const std::vector<Port> &ports, const std::string &name, const std::string &what) {
    for (size_t i = 0; i < ports.size(); i++)
        if (std::find(ports[i].names.begin(), ports[i].names.end(), name) != ports[i].names.end()) return i;
    fail(PRT_E_INCOMPATIBLE, what + ": the model has no tensor '" + printable(name) + "' (the manifest lies or is stale)");
}

// The model's port of each manifest tensor, one to one (names may alias one port: refused), with
// the shapes and element types the model has equal to the manifest's.
std::vector<size_t> match_ports(const std::vector<Port> &ports, const std::vector<TensorSpec> &specs, const char *kind,
                                const std::string &what) {
    if (ports.size() != specs.size())
        fail(PRT_E_INCOMPATIBLE, what + ": the model has " + std::to_string(ports.size()) + " " + kind + "s, the manifest " +
                                     std::to_string(specs.size()));
    std::vector<size_t> port_of;
    std::vector<bool> taken(ports.size(), false);
    for (const TensorSpec &t : specs) {
        const size_t i = find_port(ports, t.name, what);
        if (taken[i])
            fail(PRT_E_INCOMPATIBLE, what + ": the manifest names the model's " + kind + " '" + printable(t.name) + "' twice");
        taken[i] = true;
        if (!same_shape(ports[i], t))
            fail(PRT_E_INCOMPATIBLE, what + ": " + kind + " '" + printable(t.name) + "' is " +
                                         shape_text(ports[i].shape, ports[i].batch_min, ports[i].batch_max) +
                                         " in the model, the manifest says " + shape_text(t.shape, t.batch_min, t.batch_max));
        if (ports[i].dtype != t.dtype)
            fail(PRT_E_INCOMPATIBLE, what + ": " + kind + " '" + printable(t.name) + "' is " + ports[i].dtype +
                                         " in the model, the manifest says " + t.dtype);
        port_of.push_back(i);
    }
    return port_of;
}

// The graph's inputs and outputs by name: their numbers in the manifest's order.
struct GraphIo {
    std::map<std::string, size_t> inputs, outputs;
};

GraphIo graph_io(const SubgraphSpec &whole) {
    GraphIo io;
    for (size_t i = 0; i < whole.inputs.size(); i++) io.inputs[whole.inputs[i].name] = i;
    for (size_t i = 0; i < whole.outputs.size(); i++) io.outputs[whole.outputs[i].name] = i;
    return io;
}

// The graph builder's state: the nodes so far, and which node output holds each tensor.
struct Wiring {
    std::vector<Node> nodes;
    std::map<std::string, std::pair<int, size_t>> produced;  // tensor -> (node, output port)
};

// One subgraph file, verified, compiled by the backend, its ports matched to the manifest.
Node compile_node(const ArtifactDir &dir, const Plan &plan, const SubgraphSpec &s, Backend &backend,
                  const CompileOptions &compile) {
    const std::string what = dir.path() + "/" + s.file;
    std::string bytes = dir.read_verified(s.file, plan.files.at(s.file), plan.manifest);
    if (!plan.compiled && refers_to_external_data(bytes))
        fail(PRT_E_INCOMPATIBLE, what + ": refers to external data (weights in other files), which this library does "
                                        "not read: every file read must be listed and hashed; re-export it");
    Node node;
    node.graph = backend.load(std::move(bytes), plan.compiled, compile, what);
    return node;
}

// The node's inputs read graph inputs or earlier nodes' outputs; its outputs are recorded.
void wire_node(Node node, const SubgraphSpec &s, const GraphIo &io, const std::string &what, Wiring &w) {
    const std::vector<size_t> in_ports = match_ports(node.graph->inputs(), s.inputs, "input", what);
    const std::vector<size_t> out_ports = match_ports(node.graph->outputs(), s.outputs, "output", what);
    const int self = static_cast<int>(w.nodes.size());
    node.inputs.resize(in_ports.size());
    for (size_t i = 0; i < s.inputs.size(); i++) {
        const TensorSpec &t = s.inputs[i];
        const Port &port = node.graph->inputs()[in_ports[i]];
        const auto graph_input = io.inputs.find(t.name);
        if (graph_input != io.inputs.end()) {
            node.inputs[in_ports[i]] = {-1, graph_input->second};
            continue;
        }
        const auto src = w.produced.find(t.name);
        if (src == w.produced.end())  // whole mode: its inputs are the graph inputs
            fail(PRT_E_INCOMPATIBLE, what + ": input '" + printable(t.name) + "' is neither a graph input nor produced earlier");
        Node &producer = w.nodes[static_cast<size_t>(src->second.first)];
        const Port &out = producer.graph->outputs()[src->second.second];
        if (!same_port(out, port))
            fail(PRT_E_INCOMPATIBLE, what + ": input '" + printable(t.name) + "' does not match what its producer outputs");
        node.inputs[in_ports[i]] = {src->second.first, src->second.second};
        if (std::find(producer.consumers.begin(), producer.consumers.end(), self) == producer.consumers.end())
            producer.consumers.push_back(self);
    }
    for (size_t i = 0; i < s.outputs.size(); i++) {
        const TensorSpec &t = s.outputs[i];
        w.produced[t.name] = {self, out_ports[i]};
        const auto graph_output = io.outputs.find(t.name);
        if (graph_output != io.outputs.end()) node.graph_outputs.push_back({out_ports[i], graph_output->second});
    }
    w.nodes.push_back(std::move(node));
}

// compile_node and wire_node for every graph to load: the executor's nodes, in an execution order.
std::vector<Node> build_nodes(const ArtifactDir &dir, const Plan &plan, const Settings &settings, Backend &backend) {
    const GraphIo io = graph_io(plan.graph.whole);
    Wiring w;
    for (size_t i = 0; i < settings.specs.size(); i++) {
        const SubgraphSpec &s = settings.specs[i];
        CompileOptions compile = settings.compile;
        compile.threads = settings.threads[i];
        wire_node(compile_node(dir, plan, s, backend, compile), s, io, dir.path() + "/" + s.file, w);
    }
    return std::move(w.nodes);
}

}  // namespace

size_t element_bytes(const std::string &dtype) {
    if (dtype == "float32" || dtype == "int32") return 4;
    if (dtype == "float16") return 2;
    if (dtype == "int8" || dtype == "uint8" || dtype == "bool") return 1;
    if (dtype == "int64") return 8;
    return 0;
}

// The graph's inputs and outputs as the models have them (each port equal to the manifest's
// subgraph), checked against the manifest's graph: the caller's buffer sizes come from here.
void Runtime::set_io(const std::vector<Node> &nodes, const SubgraphSpec &whole, const std::string &path) {
    inputs_.assign(whole.inputs.size(), IoTensor());
    outputs_.assign(whole.outputs.size(), IoTensor());
    std::vector<bool> read(inputs_.size(), false), written(outputs_.size(), false);
    std::vector<Port> in_ports(inputs_.size()), out_ports(outputs_.size());
    auto take = [&](IoTensor &t, Port &kept, const Port &port) {
        t.shape = port.shape;
        t.dtype = port.dtype;
        kept = port;
    };
    for (const Node &n : nodes) {
        for (size_t p = 0; p < n.inputs.size(); p++) {
            if (n.inputs[p].node >= 0) continue;
            const size_t g = n.inputs[p].port;
            const Port &port = n.graph->inputs()[p];
            if (read[g] && !same_port(in_ports[g], port))
                fail(PRT_E_INCOMPATIBLE, path + ": the subgraphs disagree on the input '" + printable(whole.inputs[g].name) + "'");
            take(inputs_[g], in_ports[g], port);
            read[g] = true;
        }
        for (const auto &o : n.graph_outputs) {
            take(outputs_[o.second], out_ports[o.second], n.graph->outputs()[o.first]);
            written[o.second] = true;
        }
    }
    auto check = [&](std::vector<IoTensor> &tensors, const std::vector<TensorSpec> &specs, const std::vector<bool> &seen,
                     const std::vector<Port> &ports, const char *kind, const char *missing) {
        for (size_t g = 0; g < tensors.size(); g++) {
            IoTensor &t = tensors[g];
            const TensorSpec &spec = specs[g];
            t.name = spec.name;
            const std::string what = path + ": graph " + kind + " '" + printable(spec.name) + "'";
            if (!seen[g]) fail(PRT_E_INCOMPATIBLE, what + " is " + missing);
            const Port &port = ports[g];
            if (!same_shape(port, spec) || t.dtype != spec.dtype)
                fail(PRT_E_INCOMPATIBLE, what + " is " + t.dtype + " " + shape_text(t.shape, port.batch_min, port.batch_max) +
                                             " in the model, the manifest says " + spec.dtype + " " +
                                             shape_text(spec.shape, spec.batch_min, spec.batch_max));
            if (spec.name.find('\0') != std::string::npos)
                fail(PRT_E_INCOMPATIBLE, what + ": a NUL byte in the name (no C string can name it)");
            t.element_bytes = element_bytes(t.dtype);
            if (t.element_bytes == 0) fail(PRT_E_INCOMPATIBLE, what + " is " + printable(t.dtype) + ", which this library does not pass");
            // dims in [1, 65536] (manifest.cpp), up to 8 of them, times a batch up to 1024: may overflow
            std::vector<int64_t> dims = t.shape;
            if (t.batched()) dims[0] = spec.batch_max;  // the largest tensor a call can pass
            size_t largest = t.element_bytes;
            for (int64_t d : dims) {
                if (d < 1 || largest > static_cast<size_t>(PTRDIFF_MAX) / static_cast<size_t>(d))
                    fail(PRT_E_INCOMPATIBLE, what + " " + shape_text(t.shape, spec.batch_min, spec.batch_max) + " is too large");
                largest *= static_cast<size_t>(d);
            }
            t.sample_bytes = t.batched() ? largest / static_cast<size_t>(spec.batch_max) : largest;
            t.bytes = t.batched() ? t.sample_bytes * static_cast<size_t>(spec.batch_min) : largest;
        }
    };
    check(inputs_, whole.inputs, read, in_ports, "input", "read by no subgraph");
    check(outputs_, whole.outputs, written, out_ports, "output", "produced by no subgraph");
}

// The image classifier's calls apply to one float32 N x 3 x H x W input, whose normalization (3
// values each of mean and std) the export declares, and one float32 N x classes output.
void Runtime::set_image_api(const std::vector<Normalization> &normalization) {
    const std::string named = "; use prt_io_info and prt_infer_named";
    if (inputs_.size() != 1 || outputs_.size() != 1) {
        image_api_ = "the model has " + std::to_string(inputs_.size()) + " inputs and " + std::to_string(outputs_.size()) +
                     " outputs, not the image classifier's one input and one output" + named;
        return;
    }
    const IoTensor &in = inputs_[0], &out = outputs_[0];
    if (in.shape.size() != 4 || in.shape[1] != 3 || in.dtype != "float32") {
        image_api_ = "the input '" + printable(in.name) + "' is " + in.dtype + " " + shape_text(in.shape) +
                     ", not the image classifier's float32 N x 3 x H x W" + named;
        return;
    }
    if (out.shape.size() != 2 || out.dtype != "float32") {
        image_api_ = "the output '" + printable(out.name) + "' is " + out.dtype + " " + shape_text(out.shape) +
                     ", not the image classifier's float32 N x classes" + named;
        return;
    }
    const auto norm = std::find_if(normalization.begin(), normalization.end(),
                                   [&](const Normalization &n) { return n.input == in.name; });
    if (norm == normalization.end()) {
        image_api_ = "the export declares no normalization for the input '" + printable(in.name) + "'" + named;
        return;
    }
    if (norm->mean.size() != 3 || norm->std.size() != 3) {
        image_api_ = "the export's normalization for the input '" + printable(in.name) + "' has " +
                     std::to_string(norm->mean.size()) + " channel(s), not the image classifier's 3 (RGB)" + named;
        return;
    }
    image_api_.clear();
    normalization_ = *norm;
    input_shape_ = in.shape;
    output_shape_ = out.shape;
    input_shape_[0] = output_shape_[0] = batch_min_;  // what prt_infer runs
    input_len_ = in.bytes / sizeof(float);
    output_len_ = out.bytes / sizeof(float);
}

std::unique_ptr<Runtime> Runtime::open(const std::string &path, const Options &options) {
    // each step fails with its own status and message (error.hpp); nothing is left half-built
    Backend &backend = make_backend(options.backend);
    const ArtifactDir dir(path);
    const Plan plan = read_plan(dir, backend);
    const Settings settings = choose_settings(plan, options, path);
    std::vector<Node> nodes = build_nodes(dir, plan, settings, backend);
    auto rt = std::unique_ptr<Runtime>(new Runtime());
    rt->set_io(nodes, plan.graph.whole, path);
    rt->dynamic_ = plan.graph.batch_max > 0;
    rt->batch_min_ = rt->dynamic_ ? plan.graph.batch_min : rt->inputs_[0].shape[0];
    rt->batch_max_ = rt->dynamic_ ? plan.graph.batch_max : rt->inputs_[0].shape[0];
    rt->set_image_api(plan.graph.normalization);
    rt->check_finite_ = options.check_finite;
    std::vector<size_t> output_bytes;
    for (const IoTensor &t : rt->outputs_) output_bytes.push_back(t.bytes_at(rt->batch_max_));
    rt->executor_ = std::make_unique<Executor>(std::move(nodes), rt->inputs_.size(), std::move(output_bytes),
                                               settings.concurrency, settings.waves, rt->dynamic_ ? rt->batch_max_ : 0);
    return rt;
}

void Runtime::infer(int64_t batch, const float *input, float *output) {
    const void *inputs[1] = {input};
    void *outputs[1] = {output};
    infer_named(batch, inputs, outputs);
}

void Runtime::infer_named(int64_t batch, const void *const *inputs, void *const *outputs) {
    const auto t0 = std::chrono::steady_clock::now();
    executor_->run(inputs, outputs, batch);
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - t0;
    last_latency_us_.store(took.count());
}

void Runtime::warmup(int iterations) {
    if (iterations <= 0) return;
    std::vector<std::vector<uint64_t>> memory;  // zeroed, aligned for any element type
    std::vector<const void *> in;
    std::vector<void *> out;
    memory.reserve(inputs_.size() + outputs_.size());
    for (const IoTensor &t : inputs_) {
        memory.emplace_back((t.bytes_at(batch_max_) + 7) / 8, 0);
        in.push_back(memory.back().data());
    }
    for (const IoTensor &t : outputs_) {
        memory.emplace_back((t.bytes_at(batch_max_) + 7) / 8, 0);
        out.push_back(memory.back().data());
    }
    for (int i = 0; i < iterations; i++) infer_named(batch_min_, in.data(), out.data());
    if (dynamic_)
        for (int i = 0; i < iterations; i++) infer_named(batch_max_, in.data(), out.data());
}

}  // namespace prt
