#include "runtime.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include "artifact_dir.hpp"
#include "error.hpp"
#include "policy.hpp"

namespace prt {
namespace {

const char *kExportManifest = "manifest.json";
const char *kEnginesManifest = "engines.json";

std::string shape_text(const std::vector<int64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
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
    int concurrency = 1;              // how many run at once
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
    s.specs = streams ? plan.graph.subgraphs : std::vector<SubgraphSpec>{plan.graph.whole};
    s.concurrency = c.graphs;
    s.compile = CompileOptions{options.device, c.graph_threads, choose_precision_hint(plan, options)};
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
        if (ports[i].shape != t.shape)
            fail(PRT_E_INCOMPATIBLE, what + ": " + kind + " '" + printable(t.name) + "' is " + shape_text(ports[i].shape) +
                                         " in the model, the manifest says " + shape_text(t.shape));
        if (ports[i].dtype != t.dtype)
            fail(PRT_E_INCOMPATIBLE, what + ": " + kind + " '" + printable(t.name) + "' is " + ports[i].dtype +
                                         " in the model, the manifest says " + t.dtype);
        port_of.push_back(i);
    }
    return port_of;
}

// The graph's one input and one output (what this API passes).
struct GraphIo {
    std::string input, output;
};

GraphIo graph_io(const SubgraphSpec &whole, const std::string &path) {
    if (whole.inputs.size() != 1 || whole.outputs.size() != 1)
        fail(PRT_E_INCOMPATIBLE, path + ": expected one input and one output, the manifest lists " +
                                     std::to_string(whole.inputs.size()) + " and " + std::to_string(whole.outputs.size()));
    return {whole.inputs[0].name, whole.outputs[0].name};
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

// The node's inputs read the graph input or an earlier node's output; its outputs are recorded.
void wire_node(Node node, const SubgraphSpec &s, const GraphIo &io, const std::string &what, Wiring &w) {
    const std::vector<size_t> in_ports = match_ports(node.graph->inputs(), s.inputs, "input", what);
    const std::vector<size_t> out_ports = match_ports(node.graph->outputs(), s.outputs, "output", what);
    const int self = static_cast<int>(w.nodes.size());
    node.inputs.resize(in_ports.size());
    for (size_t i = 0; i < s.inputs.size(); i++) {
        const TensorSpec &t = s.inputs[i];
        const Port &port = node.graph->inputs()[in_ports[i]];
        if (t.name == io.input) {
            if (port.dtype != "float32") fail(PRT_E_INCOMPATIBLE, what + ": the graph input is not float32");
            node.inputs[in_ports[i]] = {-1, 0};
            continue;
        }
        const auto src = w.produced.find(t.name);
        if (src == w.produced.end())  // whole mode: its only input is the graph input
            fail(PRT_E_INCOMPATIBLE, what + ": input '" + printable(t.name) + "' is neither the graph input nor produced earlier");
        Node &producer = w.nodes[static_cast<size_t>(src->second.first)];
        const Port &out = producer.graph->outputs()[src->second.second];
        if (out.shape != port.shape || out.dtype != port.dtype)
            fail(PRT_E_INCOMPATIBLE, what + ": input '" + printable(t.name) + "' does not match what its producer outputs");
        node.inputs[in_ports[i]] = {src->second.first, src->second.second};
        if (std::find(producer.consumers.begin(), producer.consumers.end(), self) == producer.consumers.end())
            producer.consumers.push_back(self);
    }
    for (size_t i = 0; i < s.outputs.size(); i++) {
        const TensorSpec &t = s.outputs[i];
        w.produced[t.name] = {self, out_ports[i]};
        if (t.name == io.output) {
            if (node.graph->outputs()[out_ports[i]].dtype != "float32")
                fail(PRT_E_INCOMPATIBLE, what + ": the graph output is not float32");
            node.output_port = static_cast<int>(out_ports[i]);
        }
    }
    w.nodes.push_back(std::move(node));
}

// compile_node and wire_node for every graph to load: the executor's nodes, in an execution order.
std::vector<Node> build_nodes(const ArtifactDir &dir, const Plan &plan, const Settings &settings, Backend &backend) {
    const GraphIo io = graph_io(plan.graph.whole, dir.path());
    Wiring w;
    for (const SubgraphSpec &s : settings.specs)
        wire_node(compile_node(dir, plan, s, backend, settings.compile), s, io, dir.path() + "/" + s.file, w);
    return std::move(w.nodes);
}

}  // namespace

// The shapes of the caller's buffers, from the models (each port equal to the manifest),
// checked against the manifest's graph and this API (N x 3 x H x W in, N x classes out).
void Runtime::set_shapes(const std::vector<Node> &nodes, const SubgraphSpec &whole, const std::string &path) {
    for (const Node &n : nodes) {
        for (size_t p = 0; p < n.inputs.size(); p++) {
            if (n.inputs[p].node >= 0) continue;
            const std::vector<int64_t> &shape = n.graph->inputs()[p].shape;
            if (!input_shape_.empty() && input_shape_ != shape)
                fail(PRT_E_INCOMPATIBLE, path + ": the subgraphs disagree on the input shape");
            input_shape_ = shape;
        }
        if (n.output_port >= 0) output_shape_ = n.graph->outputs()[static_cast<size_t>(n.output_port)].shape;
    }
    if (input_shape_ != whole.inputs[0].shape || output_shape_ != whole.outputs[0].shape)
        fail(PRT_E_INCOMPATIBLE, path + ": the model's input " + shape_text(input_shape_) + " and output " +
                                     shape_text(output_shape_) + " are not the manifest's " +
                                     shape_text(whole.inputs[0].shape) + " and " + shape_text(whole.outputs[0].shape));
    if (input_shape_.size() != 4 || input_shape_[1] != 3)
        fail(PRT_E_INCOMPATIBLE, path + ": the input is " + shape_text(input_shape_) + "; this API takes N x 3 x H x W");
    if (output_shape_.size() != 2)
        fail(PRT_E_INCOMPATIBLE, path + ": the output is " + shape_text(output_shape_) + "; this API returns N x classes");
    input_len_ = output_len_ = 1;
    for (int64_t d : input_shape_) input_len_ *= static_cast<size_t>(d);
    for (int64_t d : output_shape_) output_len_ *= static_cast<size_t>(d);
}

std::unique_ptr<Runtime> Runtime::open(const std::string &path, const Options &options) {
    // each step fails with its own status and message (error.hpp); nothing is left half-built
    Backend &backend = make_backend(options.backend);
    const ArtifactDir dir(path);
    const Plan plan = read_plan(dir, backend);
    const Settings settings = choose_settings(plan, options, path);
    std::vector<Node> nodes = build_nodes(dir, plan, settings, backend);
    auto rt = std::unique_ptr<Runtime>(new Runtime());
    rt->set_shapes(nodes, plan.graph.whole, path);
    rt->normalization_ = plan.graph.normalization;
    rt->check_finite_ = options.check_finite;
    rt->executor_ = std::make_unique<Executor>(std::move(nodes), settings.concurrency);
    return rt;
}

void Runtime::infer(const float *input, float *output) {
    const auto t0 = std::chrono::steady_clock::now();
    executor_->run(input, output);
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - t0;
    last_latency_us_.store(took.count());
}

}  // namespace prt
