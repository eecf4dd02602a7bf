// A test tool, not installed: prints the library's policy decisions (src/policy.hpp) as JSON lines,
// one per command, for tests/test_capi_policy.py to hold them equal to the Python runtime's.
//
//   parnet_rt_policy_probe COMMAND... where COMMAND is one of
//     host                            this machine: cpu_model, native_bf16, machine, default_threads
//     cpuinfo FILE                    cpu_model and native_bf16 of FILE's text as /proc/cpuinfo
//     hints                           every precision's inference-precision hint
//     hint PRECISION                  the inference-precision hint ("" for an unknown precision)
//     concurrency MODE WIDTH THREADS  graphs, graph_threads, and the runs and per-graph threads of a
//                                     DAG of WIDTH independent subgraphs (MODE: whole | streams)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "policy.hpp"

namespace {

using nlohmann::json;
namespace policy = prt::policy;

void print(const json &j) {
    std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
}

[[noreturn]] void usage(const char *why) {
    std::fprintf(stderr, "parnet_rt_policy_probe: %s (see the comment at the top of policy_probe.cpp)\n", why);
    std::exit(2);
}

long number(const char *text) {
    char *end = nullptr;
    const long n = std::strtol(text, &end, 10);
    if (end == text || *end != '\0' || n < 0 || n > 1000000) usage("expected a number");
    return n;
}

}  // namespace

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const std::string command = argv[i];
        const int left = argc - i - 1;
        if (command == "host") {
            print({{"cpu_model", policy::cpu_model()}, {"native_bf16", policy::native_bf16()},
                   {"machine", policy::host_machine()}, {"default_threads", policy::default_threads()}});
        } else if (command == "cpuinfo" && left >= 1) {
            std::ifstream in(argv[++i], std::ios::binary);
            if (!in) usage("cannot read the cpuinfo file");
            const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
            print({{"cpu_model", policy::cpu_model(text, policy::host_machine())},
                   {"native_bf16", policy::native_bf16(text)}});
        } else if (command == "hints") {
            print(policy::precision_hints());
        } else if (command == "hint" && left >= 1) {
            print({{"hint", policy::precision_hint(argv[++i])}});
        } else if (command == "concurrency" && left >= 3) {
            const std::string mode = argv[++i];
            if (mode != "whole" && mode != "streams") usage("mode must be whole or streams");
            const long width = number(argv[++i]), threads = number(argv[++i]);
            const policy::Concurrency c =
                policy::concurrency(mode == "streams", static_cast<size_t>(width), static_cast<int>(threads));
            const std::vector<size_t> runs =
                policy::runs(c, {mode == "streams" ? static_cast<size_t>(width) : size_t{1}});
            print({{"graphs", c.graphs}, {"graph_threads", c.graph_threads}, {"runs", runs},
                   {"threads", policy::graph_threads(c, runs)}});
        } else {
            usage("unknown command or missing arguments");
        }
    }
    return 0;
}
