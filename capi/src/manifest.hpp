// manifest.json (exports) and engines.json (engines), parsed from untrusted JSON into typed values.
// Mirrors parnet_deploy/artifacts/{export_manifest,engines_manifest}.py (schema version 3): every
// error is PRT_E_INCOMPATIBLE with a message naming the field. Not read: `model` (the family
// record), `partition`, and anything else the runtime does not need.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "artifact_dir.hpp"

namespace prt {

// dim 0 of a shape that is a bounded dynamic batch ({"min": a, "max": b} in the manifest)
constexpr int64_t kBatchDim = -1;
constexpr int64_t kMaxBatch = 1024;  // the largest max of batch bounds

struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;  // shape[0] == kBatchDim: a bounded batch, batch_min..batch_max
    std::string dtype;  // float32 | float16 | int8 | uint8 | int32 | int64 | bool
    int64_t batch_min = 0, batch_max = 0;  // 1 <= min < max <= kMaxBatch where shape[0] is kBatchDim; else 0
};

struct SubgraphSpec {
    std::string name;
    std::string file;  // relative to the artifact directory ("tag/file" for engines)
    std::vector<TensorSpec> inputs, outputs;
};

// How the caller turns an 8-bit image into the graph input `input`: (x / 255 - mean) / std per
// channel (1..64 channels; the image classifier's calls take 3, RGB).
struct Normalization {
    std::string input;  // a graph input (whole.inputs), each named at most once
    std::vector<float> mean, std;  // as many of each (the input's channels)
};

struct ExportManifest {
    std::string name, precision;  // fp32 | fp16 | int8
    SubgraphSpec whole;
    std::vector<SubgraphSpec> subgraphs;  // in an execution order (checked)
    std::vector<Normalization> normalization;  // 0..8 entries: the image inputs that declare one
    std::map<std::string, FileSpec> files;
    // A dynamic export bounds dim 0 of every tensor (graph and subgraph boundaries) alike (checked):
    // batch_max > 0 then, and 0 for an export of static shapes only.
    int64_t batch_min = 0, batch_max = 0;
};

struct DeviceRecord {
    std::string kind, name;  // kind: cpu | cuda
};

struct EnginesManifest {
    std::string backend, backend_version, precision;  // precision: fp32 | fp16 | bf16 | int8
    std::map<std::string, DeviceRecord> devices;
    std::map<std::string, std::string> placement;  // subgraph or "model" -> device tag
    ExportManifest export_view;  // the export's graph with every file pointing at its engine
    std::map<std::string, FileSpec> files;
};

// The subgraphs (indices) by depth in the DAG: every member of a level can run at the same time.
// = artifacts/dag.py Dag.levels
std::vector<std::vector<size_t>> dag_levels(const ExportManifest &m);
// How many subgraphs can ever run at once: the largest number at one depth of the DAG.
size_t dag_width(const ExportManifest &m);

ExportManifest parse_export_manifest(const std::string &text, const std::string &where);
EnginesManifest parse_engines_manifest(const std::string &text, const std::string &where);

}  // namespace prt
