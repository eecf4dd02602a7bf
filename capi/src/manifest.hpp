// manifest.json (exports) and engines.json (engines), parsed from untrusted JSON into typed values.
// Mirrors parnet_deploy/artifacts/{export_manifest,engines_manifest}.py (schema version 2): every
// error is PRT_E_INCOMPATIBLE with a message naming the field.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "artifact_dir.hpp"

namespace prt {

struct TensorSpec {
    std::string name;
    std::vector<int64_t> shape;
    std::string dtype;  // float32 | float16
};

struct SubgraphSpec {
    std::string name;
    std::string file;  // relative to the artifact directory ("tag/file" for engines)
    std::vector<TensorSpec> inputs, outputs;
};

struct Normalization {
    std::array<float, 3> mean{}, std{};
};

struct ExportManifest {
    std::string name, precision;  // fp32 | fp16 | int8
    SubgraphSpec whole;
    std::vector<SubgraphSpec> subgraphs;  // in an execution order (checked)
    Normalization normalization;
    std::map<std::string, FileSpec> files;
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

// How many subgraphs can ever run at once: the largest number at one depth of the DAG.
size_t dag_width(const ExportManifest &m);

ExportManifest parse_export_manifest(const std::string &text, const std::string &where);
EnginesManifest parse_engines_manifest(const std::string &text, const std::string &where);

}  // namespace prt
