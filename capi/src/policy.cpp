#include "policy.hpp"

#include <sys/utsname.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <thread>

namespace prt {
namespace policy {
namespace {

const char *kSpace = " \t\n\r\v\f";  // ASCII whitespace: Python's hardware._WS

std::string strip(const std::string &s) {
    const size_t b = s.find_first_not_of(kSpace);
    if (b == std::string::npos) return "";
    return s.substr(b, s.find_last_not_of(kSpace) - b + 1);
}

// The whitespace-separated tokens of `s` include `word`.
bool has_token(const std::string &s, const std::string &word) {
    size_t i = 0;
    while ((i = s.find_first_not_of(kSpace, i)) != std::string::npos) {
        const size_t end = std::min(s.find_first_of(kSpace, i), s.size());
        if (s.compare(i, end - i, word) == 0) return true;
        i = end;
    }
    return false;
}

std::string field(const std::string &cpuinfo, const std::string &key) {
    const auto fields = parse_cpuinfo(cpuinfo);
    const auto it = fields.find(key);
    return it == fields.end() ? "" : it->second;
}

}  // namespace

std::map<std::string, std::string> parse_cpuinfo(const std::string &text) {
    std::map<std::string, std::string> out;
    size_t start = 0;
    while (start < text.size()) {
        size_t end = text.find('\n', start);
        if (end == std::string::npos) end = text.size();
        const std::string line = text.substr(start, end - start);
        start = end + 1;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) continue;
        out.emplace(strip(line.substr(0, colon)), strip(line.substr(colon + 1)));  // keeps the first
    }
    return out;
}

const std::string &host_cpuinfo() {
    static const std::string *text = [] {
        std::ifstream in("/proc/cpuinfo", std::ios::binary);
        return new std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }();  // never destroyed: read from any thread, at any time
    return *text;
}

std::string host_machine() {
    struct utsname u {};
    return uname(&u) == 0 ? std::string(u.machine) : std::string();
}

std::string cpu_model(const std::string &cpuinfo, const std::string &machine) {
    const std::string model = field(cpuinfo, "model name");
    return model.empty() ? machine : model;
}

std::string cpu_model() { return cpu_model(host_cpuinfo(), host_machine()); }

bool native_bf16(const std::string &cpuinfo) {
    const std::string flags = field(cpuinfo, "flags");
    return has_token(flags, "avx512_bf16") || has_token(flags, "amx_bf16");
}

bool native_bf16() { return native_bf16(host_cpuinfo()); }

const std::map<std::string, std::string> &precision_hints() {
    static const auto *hints =
        new std::map<std::string, std::string>{{"fp32", "f32"}, {"fp16", "f32"}, {"int8", "f32"}, {"bf16", "bf16"}};
    return *hints;
}

std::string precision_hint(const std::string &precision) {
    const auto it = precision_hints().find(precision);
    return it == precision_hints().end() ? "" : it->second;
}

int default_threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

Concurrency concurrency(bool streams, size_t dag_width, int threads) {
    Concurrency c;
    threads = std::max(1, threads);
    if (streams) {
        const int width = static_cast<int>(std::min<size_t>(dag_width, 1u << 20));
        c.graphs = std::max(1, std::min(width, threads / 2));
    }
    c.graph_threads = std::max(1, threads / c.graphs);
    if (streams && c.graphs == 1) c.wave = threads;
    return c;
}

std::vector<size_t> runs(const Concurrency &c, const std::vector<size_t> &levels) {
    const size_t size = c.graphs == 1 ? static_cast<size_t>(std::max(1, c.wave)) : 1;
    std::vector<size_t> out;
    for (size_t n : levels)
        for (size_t done = 0; done < n; done += size) out.push_back(std::min(size, n - done));
    return out;
}

std::vector<int> graph_threads(const Concurrency &c, const std::vector<size_t> &runs) {
    std::vector<int> out;
    for (size_t k : runs) out.insert(out.end(), k, std::max(1, c.graph_threads / static_cast<int>(k)));
    return out;
}

}  // namespace policy
}  // namespace prt
