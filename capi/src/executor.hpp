// Runs a DAG of compiled graphs: one node (whole mode) or one per subgraph (streams mode).
// Each concurrent call takes a RequestSet (one request per node, wired together once) from a pool.
#pragma once

#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "backend.hpp"

namespace prt {

struct Source {       // where a node's input comes from
    int node = -1;    // -1: the graph input
    size_t port = 0;  // the producer's output port
};

struct Node {
    std::shared_ptr<Graph> graph;
    std::vector<Source> inputs;    // per input port
    int output_port = -1;          // the port holding the graph output, or -1
    std::vector<int> consumers;    // nodes reading any of this node's outputs
};

class RequestSet;

class Executor {
  public:
    // `nodes` in an execution order; `concurrency`: how many nodes may run at once (1: in order,
    // in the calling thread).
    Executor(std::vector<Node> nodes, int concurrency);
    ~Executor();
    void run(const float *input, float *output);

  private:
    std::unique_ptr<RequestSet> acquire();
    void release(std::unique_ptr<RequestSet> set);

    std::vector<Node> nodes_;
    int concurrency_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<RequestSet>> free_;
};

}  // namespace prt
