// Runs a DAG of compiled graphs: one node (whole mode) or one per subgraph (streams mode).
// Each concurrent call takes a RequestSet (one request per node, wired together once) from a pool.
#pragma once

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "backend.hpp"

namespace prt {

struct Source {       // where a node's input comes from
    int node = -1;    // -1: the graph input number `port` (the manifest's order)
    size_t port = 0;  // the producer's output port, or the graph input's number
};

struct Node {
    std::shared_ptr<Graph> graph;
    std::vector<Source> inputs;    // per input port
    std::vector<std::pair<size_t, size_t>> graph_outputs;  // (output port, graph output number)
    std::vector<int> consumers;    // nodes reading any of this node's outputs
};

class RequestSet;

class Executor {
  public:
    // `nodes` in an execution order, reading graph inputs 0..n_inputs-1 and together producing
    // graph outputs 0..output_bytes.size()-1 (each exactly once; output_bytes: each one's size);
    // `concurrency`: how many nodes may run at once (1: in order, in the calling thread, except that
    // each run of `waves` consecutive nodes, sizes summing to the nodes', runs side by side: all
    // but its last started asynchronously, the last in the calling thread).
    // `batch_max`: 0 for static shapes; else the graphs have a bounded batch (dim 0 of every
    // boundary tensor, Port::shape[0] == -1) of at most batch_max, and output_bytes are at batch_max.
    Executor(std::vector<Node> nodes, size_t n_inputs, std::vector<size_t> output_bytes, int concurrency,
             std::vector<size_t> waves, int64_t batch_max = 0);
    ~Executor();
    // inputs[i]: graph input i; outputs[j]: graph output j's memory, or nullptr where the caller
    // does not want it (computed into memory of the request set: never into an earlier caller's).
    // `batch`: dim 0 of every tensor with a bounded batch (the caller checked the bounds and sizes).
    void run(const void *const *inputs, void *const *outputs, int64_t batch);

  private:
    std::unique_ptr<RequestSet> make_set();
    std::unique_ptr<RequestSet> acquire();
    void release(std::unique_ptr<RequestSet> set);

    std::vector<Node> nodes_;
    size_t n_inputs_;
    std::vector<size_t> output_bytes_;
    int concurrency_;
    std::vector<size_t> waves_;
    int64_t batch_max_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<RequestSet>> free_;
};

}  // namespace prt
