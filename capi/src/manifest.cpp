#include "manifest.hpp"

#include <cfloat>
#include <cmath>
#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "error.hpp"

namespace prt {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxDim = 1 << 16;
constexpr size_t kMaxRank = 8;
constexpr size_t kMaxDepth = 64;  // of nested objects and lists; the manifests written reach 6
constexpr size_t kMaxIo = 8;       // tensors of a subgraph's inputs (outputs); normalization entries
constexpr size_t kMaxChannels = 64;  // of a normalization entry
constexpr int kSchemaVersion = 3;
const char *kWhole = "model";

// Typed access to one JSON object; `where` names it in errors (manifest.whole.inputs[0]).
class Fields {
  public:
    Fields(const json &value, std::string where) : v_(value), where_(std::move(where)) {
        if (!v_.is_object()) fail(PRT_E_INCOMPATIBLE, where_ + ": expected an object");
    }
    const std::string &where() const { return where_; }
    [[noreturn]] void error(const std::string &key, const std::string &what) const {
        fail(PRT_E_INCOMPATIBLE, where_ + "." + key + ": " + what);
    }
    bool has(const std::string &key) const { return v_.contains(key) && !v_.at(key).is_null(); }
    const json &at(const std::string &key) const {
        if (!v_.contains(key)) error(key, "missing");
        return v_.at(key);
    }
    std::string str(const std::string &key, std::initializer_list<const char *> choices = {}) const {
        const json &v = at(key);
        if (!v.is_string()) error(key, "expected a string");
        std::string s = v.get<std::string>();
        if (choices.size() == 0) return s;
        for (const char *c : choices)
            if (s == c) return s;
        error(key, "unexpected value '" + printable(s, 40) + "'");
    }
    std::string name(const std::string &key) const {
        std::string s = str(key);
        if (!is_valid_name(s)) error(key, "'" + printable(s) + "' is not a valid name ([A-Za-z0-9][A-Za-z0-9._-]{0,63}, no '..')");
        return s;
    }
    int64_t integer(const std::string &key, int64_t lo, int64_t hi) const {
        const json &v = at(key);
        if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi ||
            (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi)))
            error(key, "expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        return v.get<int64_t>();
    }
    Fields obj(const std::string &key) const { return Fields(at(key), where_ + "." + key); }
    const json &list(const std::string &key, size_t max_len) const {
        const json &v = at(key);
        if (!v.is_array() || v.size() > max_len) error(key, "expected a list of at most " + std::to_string(max_len) + " items");
        return v;
    }
    // 1..8 dims in [1, 65536]; dim 0 may be bounded batch {"min": a, "max": b}, 1 <= a < b <= 1024
    // (shape[0] is then kBatchDim and the bounds go to *min, *max; else both are 0).
    std::vector<int64_t> shape(const std::string &key, int64_t *min, int64_t *max) const {
        const json &v = at(key);
        const char *expected = "expected a shape of 1..8 dimensions in [1, 65536], dim 0 possibly {\"min\": a, \"max\": b}";
        if (!v.is_array() || v.empty() || v.size() > kMaxRank) error(key, expected);
        std::vector<int64_t> out;
        *min = *max = 0;
        for (size_t i = 0; i < v.size(); i++) {
            const json &d = v[i];
            if (d.is_object()) {
                const std::string at_dim = key + "[" + std::to_string(i) + "]";
                if (i != 0) error(at_dim, "batch bounds are allowed at dim 0 only");
                Fields bounds(d, where_ + "." + at_dim);
                if (d.size() != 2 || !d.contains("min") || !d.contains("max"))
                    fail(PRT_E_INCOMPATIBLE, bounds.where() + ": expected exactly the keys min and max (a bounded batch)");
                *min = bounds.integer("min", 1, kMaxBatch);
                *max = bounds.integer("max", 1, kMaxBatch);
                if (*min >= *max)
                    fail(PRT_E_INCOMPATIBLE, bounds.where() + ": bounds " + std::to_string(*min) + ".." + std::to_string(*max) +
                                                 ": min must be below max (equal bounds: write the batch as a number)");
                out.push_back(kBatchDim);
                continue;
            }
            if (!d.is_number_integer() || d.get<int64_t>() < 1 || d.get<int64_t>() > kMaxDim) error(key, expected);
            out.push_back(d.get<int64_t>());
        }
        return out;
    }
    // 1..max_len numbers, each a finite float32 (as numpy's float32 cast of the JSON double).
    std::vector<float> floats(const std::string &key, size_t max_len) const {
        const json &v = at(key);
        const std::string expected = "expected a list of 1.." + std::to_string(max_len) + " finite float32 numbers";
        if (!v.is_array() || v.empty() || v.size() > max_len) error(key, expected);
        std::vector<float> out;
        for (const json &x : v) {
            if (!x.is_number() || !(std::fabs(x.get<double>()) <= FLT_MAX)) error(key, expected);
            out.push_back(static_cast<float>(x.get<double>()));
        }
        return out;
    }
    const json &raw() const { return v_; }

  private:
    const json &v_;
    std::string where_;
};

// Strict JSON, as Python's loader reads it: no byte order mark and no NUL byte (nlohmann would
// skip the one and stop reading at the other), no NaN or Infinity (nlohmann refuses those), no
// key twice in one object (readers differ on which one counts), and nesting at most kMaxDepth
// deep (Python's parser recurses; ours would build any depth).
json parse_json(const std::string &text, const std::string &where) {
    if (text.rfind("\xEF\xBB\xBF", 0) == 0)
        fail(PRT_E_INCOMPATIBLE, where + ": malformed manifest: starts with a UTF-8 byte order mark (not JSON)");
    const size_t nul = text.find('\0');
    if (nul != std::string::npos)
        fail(PRT_E_INCOMPATIBLE, where + ": malformed manifest: a NUL byte at offset " + std::to_string(nul));
    std::vector<std::set<std::string>> keys;  // of each open object
    size_t depth = 0;
    auto check = [&](int, json::parse_event_t event, json &parsed) {
        using E = json::parse_event_t;
        if (event == E::object_start || event == E::array_start) {
            if (++depth > kMaxDepth)
                fail(PRT_E_INCOMPATIBLE, where + ": malformed manifest: nested deeper than " + std::to_string(kMaxDepth));
            if (event == E::object_start) keys.emplace_back();
        } else if (event == E::object_end || event == E::array_end) {
            depth--;
            if (event == E::object_end) keys.pop_back();
        } else if (event == E::key && !keys.back().insert(parsed.get<std::string>()).second) {
            fail(PRT_E_INCOMPATIBLE, where + ": malformed manifest: key '" + printable(parsed.get<std::string>()) +
                                         "' appears twice in one object");
        }
        return true;
    };
    try {
        return json::parse(text, check);
    } catch (const json::exception &e) {
        fail(PRT_E_INCOMPATIBLE, where + ": malformed manifest: " + printable(e.what(), 200));
    }
}

void check_header(const Fields &f, const char *schema, const std::string &redo) {
    if (!f.raw().contains("schema") || f.raw().at("schema") != schema)
        fail(PRT_E_INCOMPATIBLE, f.where() + ": not a " + std::string(schema) + " manifest");
    if (!f.raw().contains("schema_version") || f.raw().at("schema_version") != kSchemaVersion)
        fail(PRT_E_INCOMPATIBLE, f.where() + ": schema version is not supported (this library reads " +
                                     std::to_string(kSchemaVersion) + "); " + redo);
}

std::vector<TensorSpec> tensors(const Fields &f, const std::string &key) {
    const json &items = f.list(key, kMaxIo);
    if (items.empty()) f.error(key, "expected at least one tensor");
    std::vector<TensorSpec> out;
    for (size_t i = 0; i < items.size(); i++) {
        Fields t(items[i], f.where() + "." + key + "[" + std::to_string(i) + "]");
        TensorSpec spec;
        spec.name = t.str("name");
        spec.shape = t.shape("shape", &spec.batch_min, &spec.batch_max);
        spec.dtype = t.str("dtype", {"float32", "float16", "int8", "uint8", "int32", "int64", "bool"});
        out.push_back(std::move(spec));
        if (out.back().name.empty() || out.back().name.size() > 256) t.error("name", "expected 1..256 characters");
        for (size_t j = 0; j + 1 < out.size(); j++)
            if (out[j].name == out.back().name) t.error("name", "'" + printable(out.back().name) + "' is listed twice");
    }
    return out;
}

SubgraphSpec subgraph(const Fields &f) { return {f.name("name"), f.name("file"), tensors(f, "inputs"), tensors(f, "outputs")}; }

std::map<std::string, FileSpec> files(const Fields &f, size_t depth) {
    std::map<std::string, FileSpec> out;
    if (f.raw().size() > 4096) fail(PRT_E_INCOMPATIBLE, f.where() + ": too many entries");
    for (const auto &item : f.raw().items()) {
        const std::string &key = item.key();
        const size_t slash = key.find('/');
        const bool ok = slash == std::string::npos
                            ? is_valid_name(key)
                            : depth >= 2 && is_valid_name(key.substr(0, slash)) && is_valid_name(key.substr(slash + 1));
        if (!ok) f.error(printable(key), "not a file name inside the directory (at most " + std::to_string(depth) + " strict names)");
        Fields s(item.value(), f.where() + "." + key);
        std::string sha = s.str("sha256");
        if (sha.size() != 64 || sha.find_first_not_of("0123456789abcdef") != std::string::npos)
            s.error("sha256", "expected 64 lowercase hex digits");
        out[key] = {sha, static_cast<uint64_t>(s.integer("bytes", 0, static_cast<int64_t>(kMaxFileBytes)))};
    }
    return out;
}

// The DAG rules of artifacts/dag.py: listed order is an execution order, every tensor is produced
// once, the graph output is produced, every subgraph feeds something.
void check_dag(const ExportManifest &m, const std::string &where) {
    if (m.subgraphs.empty()) fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: the DAG has no subgraphs");
    std::set<std::string> names, available, produced, used;
    for (const TensorSpec &t : m.whole.inputs) available.insert(t.name);
    for (const SubgraphSpec &s : m.subgraphs) {
        if (!names.insert(s.name).second) fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: subgraph " + s.name + " repeats");
        if (s.name == kWhole) fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: a subgraph may not be called model");
        for (const TensorSpec &t : s.inputs) {
            if (!available.count(t.name))
                fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: " + s.name + " needs " + printable(t.name) +
                                             ", which no earlier subgraph produces (a cycle, or an unknown tensor)");
            used.insert(t.name);
        }
        for (const TensorSpec &t : s.outputs) {
            if (!produced.insert(t.name).second || available.count(t.name))
                fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: tensor " + printable(t.name) + " is produced twice");
            available.insert(t.name);
        }
    }
    for (const TensorSpec &t : m.whole.outputs) {
        if (!produced.count(t.name))
            fail(PRT_E_INCOMPATIBLE, where + ": graph output " + printable(t.name) + " is produced by no subgraph");
        used.insert(t.name);
    }
    for (const SubgraphSpec &s : m.subgraphs) {
        bool feeds = false;
        for (const TensorSpec &t : s.outputs) feeds = feeds || used.count(t.name);
        if (!feeds) fail(PRT_E_INCOMPATIBLE, where + ".subgraphs: " + s.name + " feeds nothing (the DAG is not connected)");
    }
}

// normalization: [{input, mean, std, layout, note}], at most one entry per graph input (layout
// and note are for people: not read). The bounds keep (x / 255 - mean) / std finite for every
// 8-bit x, as the Python side checks.
std::vector<Normalization> normalizations(const Fields &f, const SubgraphSpec &whole) {
    const json &items = f.list("normalization", kMaxIo);
    std::vector<Normalization> out;
    for (size_t i = 0; i < items.size(); i++) {
        Fields e(items[i], f.where() + ".normalization[" + std::to_string(i) + "]");
        Normalization n;
        n.input = e.str("input");
        const bool known = std::any_of(whole.inputs.begin(), whole.inputs.end(),
                                       [&](const TensorSpec &t) { return t.name == n.input; });
        if (!known) e.error("input", "'" + printable(n.input) + "' is not an input of the graph");
        for (const Normalization &earlier : out)
            if (earlier.input == n.input) e.error("input", "'" + printable(n.input) + "' is listed twice");
        n.mean = e.floats("mean", kMaxChannels);
        n.std = e.floats("std", kMaxChannels);
        if (n.std.size() != n.mean.size())
            e.error("std", std::to_string(n.std.size()) + " numbers, mean has " + std::to_string(n.mean.size()));
        for (float s : n.std)
            if (!(s >= 1e-6f && s <= 1e3f)) e.error("std", "expected numbers in [1e-6, 1000]");
        for (float v : n.mean)
            if (!(v >= -1e3f && v <= 1e3f)) e.error("mean", "expected numbers in [-1000, 1000]");
        out.push_back(std::move(n));
    }
    return out;
}

std::string bounds_text(const TensorSpec &t) {
    return t.batch_max == 0 ? std::string("static") : std::to_string(t.batch_min) + ".." + std::to_string(t.batch_max);
}

// One batch axis: if any tensor bounds its dim 0, every graph input and output and every subgraph
// boundary tensor bounds it alike (as artifacts/export_manifest.py check_batch).
void check_batch(ExportManifest &m, const std::string &where) {
    std::vector<std::pair<const TensorSpec *, std::string>> all;  // each tensor, with its field
    auto add = [&](const SubgraphSpec &s, const std::string &at) {
        for (size_t i = 0; i < s.inputs.size(); i++) all.push_back({&s.inputs[i], at + ".inputs[" + std::to_string(i) + "]"});
        for (size_t i = 0; i < s.outputs.size(); i++) all.push_back({&s.outputs[i], at + ".outputs[" + std::to_string(i) + "]"});
    };
    add(m.whole, where + ".whole");
    for (size_t k = 0; k < m.subgraphs.size(); k++) add(m.subgraphs[k], where + ".subgraphs[" + std::to_string(k) + "]");
    const auto bounded = std::find_if(all.begin(), all.end(), [](const auto &t) { return t.first->batch_max > 0; });
    if (bounded == all.end()) return;
    const TensorSpec &first = *bounded->first;
    for (const auto &t : all)
        if (t.first->batch_min != first.batch_min || t.first->batch_max != first.batch_max)
            fail(PRT_E_INCOMPATIBLE, t.second + ".shape[0]: batch " + bounds_text(*t.first) + ", but " +
                                         bounded->second.substr(where.size() + 1) + " has " + bounds_text(first) +
                                         " (a dynamic export bounds dim 0 of every tensor alike)");
    m.batch_min = first.batch_min;
    m.batch_max = first.batch_max;
}

ExportManifest export_fields(const Fields &f) {
    ExportManifest m;
    m.name = f.name("name");
    m.precision = f.str("precision", {"fp32", "fp16", "int8"});
    m.whole = subgraph(f.obj("whole"));
    const json &subs = f.list("subgraphs", 16);
    for (size_t i = 0; i < subs.size(); i++)
        m.subgraphs.push_back(subgraph(Fields(subs[i], f.where() + ".subgraphs[" + std::to_string(i) + "]")));
    m.normalization = normalizations(f, m.whole);
    m.files = files(f.obj("files"), 1);
    check_batch(m, f.where());
    check_dag(m, f.where());
    return m;
}

}  // namespace

std::vector<std::vector<size_t>> dag_levels(const ExportManifest &m) {
    std::map<std::string, size_t> depth_of_producer;  // tensor -> depth of the subgraph producing it
    std::vector<std::vector<size_t>> levels;
    for (size_t i = 0; i < m.subgraphs.size(); i++) {  // an execution order (check_dag)
        const SubgraphSpec &s = m.subgraphs[i];
        size_t depth = 0;
        for (const TensorSpec &t : s.inputs) {
            const auto it = depth_of_producer.find(t.name);
            if (it != depth_of_producer.end()) depth = std::max(depth, it->second + 1);
        }
        if (levels.size() <= depth) levels.resize(depth + 1);
        levels[depth].push_back(i);
        for (const TensorSpec &t : s.outputs) depth_of_producer[t.name] = depth;
    }
    return levels;
}

size_t dag_width(const ExportManifest &m) {
    size_t width = 1;
    for (const auto &level : dag_levels(m)) width = std::max(width, level.size());
    return width;
}

ExportManifest parse_export_manifest(const std::string &text, const std::string &where) {
    const json raw = parse_json(text, where);
    Fields f(raw, where);
    check_header(f, "parnet-deploy/export", "re-export it with parnet-export");
    ExportManifest m = export_fields(f);
    std::vector<std::string> referenced{m.whole.file};
    for (const SubgraphSpec &s : m.subgraphs) referenced.push_back(s.file);
    for (const std::string &file : referenced)
        if (!m.files.count(file)) f.error("files", "no entry for the subgraph file " + file);
    return m;
}

EnginesManifest parse_engines_manifest(const std::string &text, const std::string &where) {
    const json raw = parse_json(text, where);
    Fields f(raw, where);
    check_header(f, "parnet-deploy/engines", "rebuild with parnet-build");
    EnginesManifest m;
    Fields backend = f.obj("backend");
    m.backend = backend.str("name");
    m.backend_version = backend.str("version");
    m.precision = f.str("precision", {"fp32", "fp16", "bf16", "int8"});
    Fields exp = f.obj("export");
    m.export_view = export_fields(exp);
    const std::string &ep = m.export_view.precision;
    if (!(m.precision == ep || (m.precision == "bf16" && ep == "fp32")))
        f.error("precision", "'" + m.precision + "' does not fit the export's '" + ep + "'");

    std::set<std::string> subgraphs{kWhole};
    for (const SubgraphSpec &s : m.export_view.subgraphs) subgraphs.insert(s.name);
    Fields devices = f.obj("devices");
    for (const auto &item : devices.raw().items()) {
        if (!is_valid_name(item.key())) devices.error(printable(item.key()), "not a valid device tag");
        Fields d(item.value(), devices.where() + "." + item.key());
        m.devices[item.key()] = {d.str("kind", {"cpu", "cuda"}), d.str("name")};
    }
    Fields placement = f.obj("placement");
    for (const std::string &s : subgraphs) {
        std::string tag = placement.str(s);
        if (!m.devices.count(tag)) placement.error(s, "device tag '" + printable(tag) + "' is not in devices");
        m.placement[s] = tag;
    }
    if (placement.raw().size() != subgraphs.size()) placement.error("", "expected exactly one device per subgraph");
    Fields engines = f.obj("engines");
    m.files = files(f.obj("files"), 2);
    auto engine_file = [&](const std::string &sub) {
        const std::string &tag = m.placement.at(sub);
        const std::string file = tag + "/" + engines.obj(tag).name(sub);
        if (!m.files.count(file)) f.error("files", "no entry for the engine file " + file);
        return file;
    };
    m.export_view.whole.file = engine_file(kWhole);
    for (SubgraphSpec &s : m.export_view.subgraphs) s.file = engine_file(s.name);
    return m;
}

}  // namespace prt
