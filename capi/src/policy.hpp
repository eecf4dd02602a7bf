// Decisions the library shares with the Python runtime, each with its Python twin named. The two
// are held equal by tests/test_capi_policy.py (through tools/policy_probe.cpp): change both or neither.
// No backend in here: this file builds without OpenVINO.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace prt {
namespace policy {

// /proc/cpuinfo as key -> value: each line split at its first ':', key and value stripped of ASCII
// whitespace, the first value of a key kept (the first processor's). = hardware.parse_cpuinfo.
std::map<std::string, std::string> parse_cpuinfo(const std::string &text);

// The text of /proc/cpuinfo, read once per process ("" if unreadable).
const std::string &host_cpuinfo();
// The kernel's machine name (uname -m: x86_64, aarch64). = platform.machine()
std::string host_machine();

// The CPU name engines record and are checked against: the first "model name", else (arm64 and
// others have none) the machine name. = hardware.cpu_model
std::string cpu_model(const std::string &cpuinfo, const std::string &machine);
std::string cpu_model();  // this host's
// bf16 arithmetic in hardware: AVX512-BF16 or AMX-BF16 among the first "flags". = hardware.native_bf16
bool native_bf16(const std::string &cpuinfo);
bool native_bf16();  // this host's

// OpenVINO's inference-precision hint for what runs (fp32 | fp16 | int8 | bf16): what the graph
// computes in follows the export (fp16 casts, Q/DQ); the hint only governs float math.
// = backends/openvino/config.py PRECISION_HINTS. Returns "" for an unknown precision.
std::string precision_hint(const std::string &precision);
const std::map<std::string, std::string> &precision_hints();

// Threads when none are asked for: every online CPU. = os.cpu_count()
int default_threads();

// How many graphs run at once, and the intra-op threads of each, for `threads` in all: whole mode
// runs one graph; streams mode runs up to dag_width subgraphs at once, each keeping at least 2
// threads. = runtime/executors.py StreamsExecutor.auto_workers and the threads // concurrency of
// backends/openvino/backend.py load().
// With graphs == 1 in streams mode, the subgraphs of one DAG level run side by side in runs of up
// to `wave`, a run of k on max(1, graph_threads / k) threads each. = backends/openvino/chain.py waves
// (the Python runtime's OpenVINO streams on fewer than 4 threads).
struct Concurrency {
    int graphs = 1;          // concurrency of the DAG scheduler
    int graph_threads = 1;   // threads of each compiled graph (of a run of one)
    int wave = 1;
};
Concurrency concurrency(bool streams, size_t dag_width, int threads);

// The runs of side-by-side graphs, in order, for DAG levels of these sizes (whole mode: {1}): with
// graphs == 1 each level cut into runs of at most `wave`; else runs of one (the DAG scheduler runs
// them at once). = chain.py waves
std::vector<size_t> runs(const Concurrency &c, const std::vector<size_t> &levels);
// Per graph, in the runs' order: its intra-op threads, max(1, graph_threads / k) in a run of k.
// = the threads // concurrency of backends/openvino/backend.py load()
std::vector<int> graph_threads(const Concurrency &c, const std::vector<size_t> &runs);

}  // namespace policy
}  // namespace prt
