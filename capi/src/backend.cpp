// The registry of backends: each backend's file adds itself (PRT_REGISTER_BACKEND) while the
// library loads, before any C function can run.
#include <map>
#include <mutex>

#include "backend.hpp"
#include "error.hpp"

namespace prt {
namespace {

struct Registry {
    std::mutex mutex;
    std::map<std::string, BackendFactory> factories;
};

Registry &registry() {
    static auto *r = new Registry();  // never destroyed: filled during static initialization, read at any time
    return *r;
}

}  // namespace

bool register_backend(const char *name, BackendFactory factory) {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    return r.factories.emplace(name, factory).second;
}

std::vector<std::string> backend_names() {
    Registry &r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    std::vector<std::string> names;
    for (const auto &item : r.factories) names.push_back(item.first);
    return names;
}

Backend &make_backend(const std::string &name) {
    BackendFactory factory = nullptr;
    {
        Registry &r = registry();
        std::lock_guard<std::mutex> lock(r.mutex);
        const auto it = r.factories.find(name);
        if (it != r.factories.end()) factory = it->second;
    }
    if (factory == nullptr) {
        std::string known;
        for (const std::string &n : backend_names()) known += (known.empty() ? "" : ", ") + n;
        fail(PRT_E_INVALID_ARG, "no backend '" + printable(name) + "' in this library (it has: " + known + ")");
    }
    return factory();
}

}  // namespace prt
