#include "runtime.hpp"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <map>
#include <thread>

#include "error.hpp"

namespace prt {
namespace {

const char *kExportManifest = "manifest.json";
const char *kEnginesManifest = "engines.json";

std::string shape_text(const std::vector<int64_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

// /proc/cpuinfo's first "model name": what engines record (parnet_deploy/hardware.py).
std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind("model name", 0) != 0) continue;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        std::string v = line.substr(colon + 1);
        v.erase(0, v.find_first_not_of(" \t"));
        v.erase(v.find_last_not_of(" \t\r") + 1);
        return v;
    }
    return "";
}

bool cpu_has_native_bf16() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("flags", 0) == 0)
            return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
    return false;
}

// The artifact, whichever kind: the graph to run, where its files are, how to compile them.
struct Plan {
    ExportManifest graph;
    std::map<std::string, FileSpec> files;
    std::string manifest;      // its file name, for messages
    bool compiled = false;     // engine blobs (else ONNX)
    std::string precision;     // what an engine was built for ("" for exports)
};

Plan read_plan(const ArtifactDir &dir, Backend &backend) {
    Plan plan;
    if (dir.has_file(kEnginesManifest)) {
        const std::string where = dir.path() + "/" + kEnginesManifest;
        EnginesManifest m = parse_engines_manifest(dir.read_manifest(kEnginesManifest), where);
        const std::string hint = "; rebuild with: parnet-build <export dir> --backend openvino";
        if (m.backend != backend.name())
            fail(PRT_E_INCOMPATIBLE, dir.path() + ": engines were built for " + printable(m.backend, 40) +
                                         "; this library runs OpenVINO engines and exports" + hint);
        if (m.backend_version != backend.version())
            fail(PRT_E_INCOMPATIBLE, dir.path() + ": engines were built with OpenVINO " + printable(m.backend_version) +
                                         ", this is OpenVINO " + backend.version() + hint);
        const std::string here = cpu_model();
        for (const auto &item : m.placement) {
            const DeviceRecord &d = m.devices.at(item.second);
            if (d.kind != "cpu")
                fail(PRT_E_INCOMPATIBLE, dir.path() + ": engines for " + item.second + " are not CPU engines" + hint);
            if (d.name != here)
                fail(PRT_E_INCOMPATIBLE, dir.path() + ": engines were optimized for " + printable(d.name, 120) +
                                             "; this CPU is " + here + hint);
        }
        plan.graph = std::move(m.export_view);
        plan.files = std::move(m.files);
        plan.manifest = kEnginesManifest;
        plan.compiled = true;
        plan.precision = m.precision;
        return plan;
    }
    if (!dir.has_file(kExportManifest))
        fail(PRT_E_NOT_FOUND, dir.path() + ": no manifest.json or engines.json (not an export or engine directory)");
    plan.graph = parse_export_manifest(dir.read_manifest(kExportManifest), dir.path() + "/" + kExportManifest);
    plan.files = plan.graph.files;
    plan.manifest = kExportManifest;
    return plan;
}

std::string precision_hint(const Plan &plan, const Options &options) {
    static const std::map<std::string, std::string> kHints{{"fp32", "f32"}, {"fp16", "f32"}, {"int8", "f32"}, {"bf16", "bf16"}};
    std::string hint = options.precision_hint;
    if (plan.compiled) {
        const std::string built = kHints.at(plan.precision);
        if (!hint.empty() && hint != built)
            fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=" + hint + "': these engines were built for " +
                                        plan.precision + " (precision_hint=" + built + ")");
        return built;
    }
    if (hint.empty()) return "f32";
    if (hint != "f32" && plan.graph.precision != "fp32")
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=" + hint + "': applies to fp32 exports only (this one is " +
                                    plan.graph.precision + ")");
    if (options.device == "CPU" && hint == "f16")
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=f16': the CPU plugin would silently use bf16; use f32 or bf16");
    if (options.device == "CPU" && hint == "bf16" && !cpu_has_native_bf16())
        fail(PRT_E_INVALID_ARG, "bad option 'precision_hint=bf16': this CPU (" + cpu_model() +
                                    ") has no native bf16 and would emulate it slowly");
    return hint;
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

}  // namespace

std::unique_ptr<Runtime> Runtime::open(const std::string &path, const Options &options) {
    Backend &backend = openvino_backend();
    ArtifactDir dir(path);
    const Plan plan = read_plan(dir, backend);
    if (plan.compiled && options.device != "CPU")
        fail(PRT_E_INVALID_ARG, "bad option 'device=" + options.device + "': " + path + " holds CPU engines");
    const ExportManifest &g = plan.graph;
    const bool streams = options.mode == Mode::streams;
    const std::vector<SubgraphSpec> specs = streams ? g.subgraphs : std::vector<SubgraphSpec>{g.whole};

    // as the Python runtime: concurrent subgraphs keep at least 2 threads each
    const int threads = options.threads > 0 ? options.threads : std::max(1u, std::thread::hardware_concurrency());
    const int concurrency = streams ? std::max(1, std::min(static_cast<int>(dag_width(g)), threads / 2)) : 1;
    CompileOptions compile{options.device, std::max(1, threads / concurrency), precision_hint(plan, options)};

    auto rt = std::unique_ptr<Runtime>(new Runtime());
    const SubgraphSpec &whole = g.whole;
    if (whole.inputs.size() != 1 || whole.outputs.size() != 1)
        fail(PRT_E_INCOMPATIBLE, path + ": expected one input and one output, the manifest lists " +
                                     std::to_string(whole.inputs.size()) + " and " + std::to_string(whole.outputs.size()));
    const std::string input_name = whole.inputs[0].name, output_name = whole.outputs[0].name;

    std::vector<Node> nodes;
    std::map<std::string, std::pair<int, size_t>> produced;  // tensor -> (node, output port)
    for (const SubgraphSpec &s : specs) {
        const std::string what = path + "/" + s.file;
        std::string bytes = dir.read_verified(s.file, plan.files.at(s.file), plan.manifest);
        if (!plan.compiled && refers_to_external_data(bytes))
            fail(PRT_E_INCOMPATIBLE, what + ": refers to external data (weights in other files), which this library does "
                                            "not read: every file read must be listed and hashed; re-export it");
        Node node;
        node.graph = backend.load(std::move(bytes), plan.compiled, compile, what);
        const std::vector<size_t> in_ports = match_ports(node.graph->inputs(), s.inputs, "input", what);
        const std::vector<size_t> out_ports = match_ports(node.graph->outputs(), s.outputs, "output", what);
        node.inputs.resize(in_ports.size());
        for (size_t i = 0; i < s.inputs.size(); i++) {
            const TensorSpec &t = s.inputs[i];
            const Port &port = node.graph->inputs()[in_ports[i]];
            if (t.name == input_name) {
                if (port.dtype != "float32") fail(PRT_E_INCOMPATIBLE, what + ": the graph input is not float32");
                node.inputs[in_ports[i]] = {-1, 0};
                continue;
            }
            const auto src = produced.find(t.name);
            if (src == produced.end())  // whole mode: its only input is the graph input
                fail(PRT_E_INCOMPATIBLE,
                     what + ": input '" + printable(t.name) + "' is neither the graph input nor produced earlier");
            const Port &out = nodes[static_cast<size_t>(src->second.first)].graph->outputs()[src->second.second];
            if (out.shape != port.shape || out.dtype != port.dtype)
                fail(PRT_E_INCOMPATIBLE, what + ": input '" + printable(t.name) + "' does not match what its producer outputs");
            node.inputs[in_ports[i]] = {src->second.first, src->second.second};
            auto &consumers = nodes[static_cast<size_t>(src->second.first)].consumers;
            if (std::find(consumers.begin(), consumers.end(), static_cast<int>(nodes.size())) == consumers.end())
                consumers.push_back(static_cast<int>(nodes.size()));
        }
        for (size_t i = 0; i < s.outputs.size(); i++) {
            const TensorSpec &t = s.outputs[i];
            produced[t.name] = {static_cast<int>(nodes.size()), out_ports[i]};
            if (t.name == output_name) {
                if (node.graph->outputs()[out_ports[i]].dtype != "float32")
                    fail(PRT_E_INCOMPATIBLE, what + ": the graph output is not float32");
                node.output_port = static_cast<int>(out_ports[i]);
            }
        }
        nodes.push_back(std::move(node));
    }
    // Shapes come from the models: the ports bound to the caller's buffers (each equal to the manifest).
    for (const Node &n : nodes) {
        for (size_t p = 0; p < n.inputs.size(); p++) {
            if (n.inputs[p].node >= 0) continue;
            const std::vector<int64_t> &shape = n.graph->inputs()[p].shape;
            if (!rt->input_shape_.empty() && rt->input_shape_ != shape)
                fail(PRT_E_INCOMPATIBLE, path + ": the subgraphs disagree on the input shape");
            rt->input_shape_ = shape;
        }
        if (n.output_port >= 0) rt->output_shape_ = n.graph->outputs()[static_cast<size_t>(n.output_port)].shape;
    }
    if (rt->input_shape_ != whole.inputs[0].shape || rt->output_shape_ != whole.outputs[0].shape)
        fail(PRT_E_INCOMPATIBLE, path + ": the model's input " + shape_text(rt->input_shape_) + " and output " +
                                     shape_text(rt->output_shape_) + " are not the manifest's " +
                                     shape_text(whole.inputs[0].shape) + " and " + shape_text(whole.outputs[0].shape));
    if (rt->input_shape_.size() != 4 || rt->input_shape_[1] != 3)
        fail(PRT_E_INCOMPATIBLE, path + ": the input is " + shape_text(rt->input_shape_) + "; this API takes N x 3 x H x W");
    if (rt->output_shape_.size() != 2)
        fail(PRT_E_INCOMPATIBLE, path + ": the output is " + shape_text(rt->output_shape_) + "; this API returns N x classes");
    rt->input_len_ = rt->output_len_ = 1;
    for (int64_t d : rt->input_shape_) rt->input_len_ *= static_cast<size_t>(d);
    for (int64_t d : rt->output_shape_) rt->output_len_ *= static_cast<size_t>(d);
    rt->normalization_ = g.normalization;
    rt->check_finite_ = options.check_finite;
    rt->executor_ = std::make_unique<Executor>(std::move(nodes), concurrency);
    return rt;
}

void Runtime::infer(const float *input, float *output) {
    const auto t0 = std::chrono::steady_clock::now();
    executor_->run(input, output);
    const std::chrono::duration<double, std::micro> took = std::chrono::steady_clock::now() - t0;
    last_latency_us_.store(took.count());
}

}  // namespace prt
