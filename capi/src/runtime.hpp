// A handle of the C API: an opened, verified artifact ready to run.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "executor.hpp"
#include "manifest.hpp"
#include "options.hpp"

namespace prt {

// A graph input or output as the compiled model has it (equal to the manifest's).
struct IoTensor {
    std::string name;
    std::string dtype;  // float32 | float16 | int8 | uint8 | int32 | int64 | bool
    std::vector<int64_t> shape;  // shape[0] == kBatchDim (-1): a bounded batch (Runtime::dynamic())
    size_t element_bytes = 0;
    size_t bytes = 0;  // at the smallest batch (static shapes: the only one)
    size_t sample_bytes = 0;  // of one sample (dims 1...) where batched, else bytes
    bool batched() const { return !shape.empty() && shape[0] == kBatchDim; }
    size_t bytes_at(int64_t batch) const { return batched() ? sample_bytes * static_cast<size_t>(batch) : bytes; }
};

// The element size of a dtype name (Port::dtype), 0 if this library does not know it.
size_t element_bytes(const std::string &dtype);

class Runtime {
  public:
    // In steps (runtime.cpp): create the backend (make_backend), read and check the manifest
    // (read_plan), apply the options (choose_settings: concurrency, threads, precision hint, by
    // policy.hpp), compile and wire each graph (build_nodes: compile_node, wire_node), take the
    // graph inputs and outputs (set_io) and build the executor.
    static std::unique_ptr<Runtime> open(const std::string &path, const Options &options);

    // The graph's inputs and outputs, in the manifest's order.
    const std::vector<IoTensor> &inputs() const { return inputs_; }
    const std::vector<IoTensor> &outputs() const { return outputs_; }
    // Whether the image classifier's calls (prt_infer, dims, preprocess) apply: one float32
    // N x 3 x H x W input, declared a normalization of 3 values, and one float32 N x classes
    // output; else why not (for messages).
    bool image_api() const { return image_api_.empty(); }
    const std::string &why_not_image_api() const { return image_api_; }
    // The batch bounds: a dynamic export's (every graph input and output batched alike), else
    // min = max = dim 0 of the first graph input.
    bool dynamic() const { return dynamic_; }
    int64_t batch_min() const { return batch_min_; }
    int64_t batch_max() const { return batch_max_; }
    // Valid only where image_api(); shapes and lengths at batch_min (dim 0 static: the only batch):
    const std::vector<int64_t> &input_shape() const { return input_shape_; }
    const std::vector<int64_t> &output_shape() const { return output_shape_; }
    size_t input_len() const { return input_len_; }
    size_t output_len() const { return output_len_; }
    // Elements of one image, and of one image's output, where image_api().
    size_t sample_input_len() const { return input_len_ / static_cast<size_t>(batch_min_); }
    size_t sample_output_len() const { return output_len_ / static_cast<size_t>(batch_min_); }
    const Normalization &normalization() const { return normalization_; }  // of the input: 3 values
    bool check_finite() const { return check_finite_; }

    // `batch` in batch_min()..batch_max(); sizes are at that batch (the caller checked them).
    void infer(int64_t batch, const float *input, float *output);
    // inputs[i]: graph input i (inputs()); outputs[j]: graph output j, or nullptr (not wanted).
    // The caller checked every size and pointer.
    void infer_named(int64_t batch, const void *const *inputs, void *const *outputs);
    // `iterations` runs on zeros, every output computed; a dynamic model's at its smallest and its largest batch.
    void warmup(int iterations);
    double last_latency_us() const { return last_latency_us_.load(); }

  private:
    Runtime() = default;
    void set_io(const std::vector<Node> &nodes, const SubgraphSpec &whole, const std::string &path);
    void set_image_api(const std::vector<Normalization> &normalization);
    std::vector<IoTensor> inputs_, outputs_;
    std::string image_api_;  // empty: the image API applies; else why not
    std::vector<int64_t> input_shape_, output_shape_;
    size_t input_len_ = 0, output_len_ = 0;
    int64_t batch_min_ = 1, batch_max_ = 1;
    bool dynamic_ = false;
    Normalization normalization_;
    bool check_finite_ = true;
    std::unique_ptr<Executor> executor_;
    std::atomic<double> last_latency_us_{0.0 / 0.0};
};

}  // namespace prt
