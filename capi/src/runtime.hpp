// A handle of the C API: an opened, verified artifact ready to run.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "executor.hpp"
#include "manifest.hpp"
#include "options.hpp"

namespace prt {

class Runtime {
  public:
    // In steps (runtime.cpp): create the backend (make_backend), read and check the manifest
    // (read_plan), apply the options (choose_settings: concurrency, threads, precision hint, by
    // policy.hpp), compile and wire each graph (build_nodes: compile_node, wire_node), take the
    // buffer shapes (set_shapes) and build the executor.
    static std::unique_ptr<Runtime> open(const std::string &path, const Options &options);

    const std::vector<int64_t> &input_shape() const { return input_shape_; }
    const std::vector<int64_t> &output_shape() const { return output_shape_; }
    size_t input_len() const { return input_len_; }
    size_t output_len() const { return output_len_; }
    const Normalization &normalization() const { return normalization_; }
    bool check_finite() const { return check_finite_; }

    void infer(const float *input, float *output);
    double last_latency_us() const { return last_latency_us_.load(); }

  private:
    Runtime() = default;
    void set_shapes(const std::vector<Node> &nodes, const SubgraphSpec &whole, const std::string &path);
    std::vector<int64_t> input_shape_, output_shape_;
    size_t input_len_ = 0, output_len_ = 0;
    Normalization normalization_;
    bool check_finite_ = true;
    std::unique_ptr<Executor> executor_;
    std::atomic<double> last_latency_us_{0.0 / 0.0};
};

}  // namespace prt
