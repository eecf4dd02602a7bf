#include "executor.hpp"

#include <algorithm>
#include <cstdint>
#include <utility>

#include "error.hpp"

namespace prt {

// One request per node, inputs linked to their producers' outputs; the graph inputs and outputs
// are bound to the caller's memory (re-bound only when the caller's pointers change). A graph
// output that a later node also reads is bound, for both, to the caller's memory; one the caller
// does not want goes to memory of this set (so no run ever writes into an earlier call's buffer).
// With a bounded batch (batch_max > 0), the tensors between nodes are memory of this set, sized for
// batch_max and bound at each call's batch (re-bound only when the batch changes), instead of links.
class RequestSet {
  public:
    using Port = std::pair<size_t, size_t>;  // (node, port)

    RequestSet(const std::vector<Node> &nodes, size_t n_inputs, const std::vector<size_t> &output_bytes,
               int concurrency, const std::vector<size_t> &waves, int64_t batch_max)
        : nodes_(nodes), output_bytes_(output_bytes), concurrency_(concurrency), waves_(waves), batch_max_(batch_max),
          wave_errors_(nodes.size()), waiting_(nodes.size()),
          producers_(nodes.size()), input_readers_(n_inputs), output_writer_(output_bytes.size()),
          output_readers_(output_bytes.size()), bound_inputs_(n_inputs, nullptr),
          bound_outputs_(output_bytes.size(), nullptr), scratch_(output_bytes.size()) {
        for (size_t i = 0; i < nodes.size(); i++) {
            for (size_t p = 0; p < nodes[i].inputs.size(); p++)
                if (nodes[i].inputs[p].node < 0) input_readers_.at(nodes[i].inputs[p].port).push_back({i, p});
            for (const auto &o : nodes[i].graph_outputs) output_writer_.at(o.second) = {i, o.first};
        }
        for (size_t g = 0; g < output_writer_.size(); g++)
            for (size_t i = 0; i < nodes.size(); i++)
                for (size_t p = 0; p < nodes[i].inputs.size(); p++) {
                    const Source &s = nodes[i].inputs[p];
                    if (s.node >= 0 && Port(static_cast<size_t>(s.node), s.port) == output_writer_[g])
                        output_readers_[g].push_back({i, p});
                }
        // a consumer waits for each producer once, however many of its tensors it reads
        // (a producer lists each consumer once)
        for (const Node &n : nodes)
            for (int c : n.consumers) producers_[static_cast<size_t>(c)]++;
        for (const Node &n : nodes) requests_.push_back(n.graph->new_request());
        ready_.reserve(nodes.size());  // finished() never allocates
        started_.reserve(nodes.size());
        for (size_t i = 0; i < nodes.size(); i++)
            for (size_t p = 0; p < nodes[i].inputs.size(); p++) {
                const Source &s = nodes[i].inputs[p];
                if (s.node < 0) continue;
                const Port producer(static_cast<size_t>(s.node), s.port);
                if (batch_max_ == 0) {
                    requests_[i]->link_input(p, *requests_[producer.first], producer.second);
                    continue;
                }
                if (std::find(output_writer_.begin(), output_writer_.end(), producer) != output_writer_.end())
                    continue;  // a graph output: bound, for its readers too, where the caller's memory is
                auto link = std::find_if(links_.begin(), links_.end(), [&](const Link &l) { return l.producer == producer; });
                if (link == links_.end()) {
                    const prt::Port &port = nodes[producer.first].graph->outputs()[producer.second];
                    size_t bytes = port.element_bytes * static_cast<size_t>(batch_max_);
                    for (size_t d = 1; d < port.shape.size(); d++) bytes *= static_cast<size_t>(port.shape[d]);
                    links_.push_back({producer, {}, std::make_unique<uint64_t[]>((bytes + 7) / 8)});
                    link = links_.end() - 1;
                }
                link->readers.push_back({i, p});
            }
        if (concurrency_ > 1)
            for (size_t i = 0; i < nodes.size(); i++)
                requests_[i]->set_done([this, i](std::exception_ptr e) { finished(static_cast<int>(i), e); });
        else  // run_in_waves reads each failure after the node's wait(), which returns after this call
            for (size_t i = 0; i < nodes.size(); i++)
                requests_[i]->set_done([this, i](std::exception_ptr e) noexcept { wave_errors_[i] = e; });
    }

    void run(const void *const *inputs, void *const *outputs, int64_t batch) {
        bind(inputs, outputs, batch);
        if (concurrency_ <= 1) {
            run_in_waves();
        } else {
            run_concurrently();
        }
        if (batch_max_ > 0) check_output_shapes(batch);
    }

  private:
    // A binding that failed half-way is forgotten (nullptr: never a caller's pointer), so the next
    // call binds again rather than trust requests that may point anywhere. A new batch binds everything again.
    void bind(const void *const *inputs, void *const *outputs, int64_t batch) {
        if (batch_max_ > 0 && batch != bound_batch_) {
            bound_batch_ = 0;
            std::fill(bound_inputs_.begin(), bound_inputs_.end(), nullptr);
            std::fill(bound_outputs_.begin(), bound_outputs_.end(), nullptr);
            for (const Link &l : links_) {
                requests_[l.producer.first]->bind_output(l.producer.second, l.memory.get(), batch);
                for (const Port &r : l.readers) requests_[r.first]->bind_input(r.second, l.memory.get(), batch);
            }
            bound_batch_ = batch;
        }
        for (size_t g = 0; g < bound_inputs_.size(); g++) {
            if (inputs[g] == bound_inputs_[g]) continue;
            bound_inputs_[g] = nullptr;
            for (const Port &r : input_readers_[g]) requests_[r.first]->bind_input(r.second, inputs[g], batch);
            bound_inputs_[g] = inputs[g];
        }
        for (size_t g = 0; g < bound_outputs_.size(); g++) {
            void *target = outputs[g];
            if (target == nullptr) {
                if (!scratch_[g]) scratch_[g] = std::make_unique<uint64_t[]>((output_bytes_[g] + 7) / 8);  // aligned for any type
                target = scratch_[g].get();
            }
            if (target == bound_outputs_[g]) continue;
            bound_outputs_[g] = nullptr;
            requests_[output_writer_[g].first]->bind_output(output_writer_[g].second, target, batch);
            for (const Port &r : output_readers_[g]) requests_[r.first]->bind_input(r.second, target, batch);
            bound_outputs_[g] = target;
        }
    }

    // Each graph output has the shape the caller's buffer was sized for (the model's, at `batch`).
    void check_output_shapes(int64_t batch) {
        for (size_t g = 0; g < output_writer_.size(); g++) {
            const Port &w = output_writer_[g];
            std::vector<int64_t> want = nodes_[w.first].graph->outputs()[w.second].shape;
            if (!want.empty() && want[0] < 0) want[0] = batch;
            const std::vector<int64_t> got = requests_[w.first]->output_shape(w.second);
            if (got != want)
                fail(PRT_E_RUNTIME, "graph output " + std::to_string(g) + " came out of shape " + shape_text(got) +
                                        ", not " + shape_text(want) + " (batch " + std::to_string(batch) + ")");
        }
    }

    static std::string shape_text(const std::vector<int64_t> &shape) {
        std::string s = "[";
        for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
        return s + "]";
    }

    // Each run of waves_ side by side: all but its last node started asynchronously, the last in the
    // calling thread; every started node waited for before the next run, or before a failure is thrown
    // (their tensors belong to this set). The first failure in the run's order wins, the caller's own first.
    void run_in_waves() {
        size_t first = 0;
        for (size_t size : waves_) {
            const size_t last = first + size - 1;
            size_t started = 0;
            std::exception_ptr failed;
            try {
                for (size_t i = first; i < last; i++, started++) {
                    wave_errors_[i] = nullptr;
                    requests_[i]->start_async();
                }
                requests_[last]->infer();
            } catch (...) {
                failed = std::current_exception();
            }
            for (size_t i = first; i < first + started; i++) {
                requests_[i]->wait();
                if (!failed && wave_errors_[i]) failed = runtime_error(wave_errors_[i]);
            }
            if (failed) std::rethrow_exception(failed);
            first += size;
        }
    }

    // A node starts as soon as all its producers are done, at most `concurrency_` at a time.
    void run_concurrently() {
        std::unique_lock<std::mutex> lock(mutex_);
        error_ = nullptr;
        completed_ = 0;
        in_flight_ = 0;
        ready_.clear();
        started_.clear();
        for (size_t i = 0; i < nodes_.size(); i++) {
            waiting_[i] = producers_[i];
            if (waiting_[i] == 0) ready_.push_back(static_cast<int>(i));
        }
        start_ready(lock);
        done_.wait(lock, [this] { return in_flight_ == 0; });
        lock.unlock();
        // OpenVINO finishes its own bookkeeping (restoring the callback) after calling `done`:
        // a request restarted before that would run without one, and this call would never end
        for (int i : started_) requests_[static_cast<size_t>(i)]->wait();
        lock.lock();
        if (error_) std::rethrow_exception(error_);
        if (completed_ != nodes_.size()) fail(PRT_E_RUNTIME, "streams: the DAG stopped before every subgraph ran");
    }

    void start_ready(std::unique_lock<std::mutex> &lock) {
        while (!error_ && !ready_.empty() && in_flight_ < concurrency_) {
            const int i = ready_.front();
            ready_.erase(ready_.begin());
            in_flight_++;
            started_.push_back(i);
            lock.unlock();  // the callback of a request that finishes at once takes the lock
            std::exception_ptr failed;
            try {
                requests_[static_cast<size_t>(i)]->start_async();
            } catch (...) {
                failed = std::current_exception();
            }
            lock.lock();
            if (failed) {
                in_flight_--;
                started_.erase(std::find(started_.begin(), started_.end(), i));
                if (!error_) error_ = failed;
            }
        }
    }

    // Called by OpenVINO, on its thread, once per started node. Must not throw: the waiter in
    // run_concurrently() depends on every call reaching the notify.
    void finished(int i, std::exception_ptr e) noexcept {
        std::unique_lock<std::mutex> lock(mutex_);
        in_flight_--;
        if (e && !error_) error_ = runtime_error(e);
        if (!e) {
            completed_++;
            for (int c : nodes_[static_cast<size_t>(i)].consumers)
                if (--waiting_[static_cast<size_t>(c)] == 0) ready_.push_back(c);  // reserved: no allocation
            start_ready(lock);
        }
        if (in_flight_ == 0) done_.notify_all();
    }

    static std::exception_ptr runtime_error(std::exception_ptr e) noexcept {
        try {
            try {
                std::rethrow_exception(e);
            } catch (const std::exception &x) {
                return std::make_exception_ptr(Error(PRT_E_RUNTIME, std::string("OpenVINO inference failed: ") + x.what()));
            }
        } catch (...) {
            return e;
        }
    }

    const std::vector<Node> &nodes_;
    const std::vector<size_t> &output_bytes_;
    const int concurrency_;
    const std::vector<size_t> &waves_;
    const int64_t batch_max_;
    std::vector<std::exception_ptr> wave_errors_;  // per node: its last asynchronous run's failure
    std::vector<std::unique_ptr<Request>> requests_;

    std::mutex mutex_;
    std::condition_variable done_;
    std::vector<int> waiting_;  // producers not yet done, per node
    std::vector<int> producers_;  // distinct producers, per node
    std::vector<int> ready_;
    std::vector<int> started_;
    int in_flight_ = 0;
    size_t completed_ = 0;
    std::exception_ptr error_;

    std::vector<std::vector<Port>> input_readers_;   // per graph input: the node inputs bound to it
    std::vector<Port> output_writer_;                // per graph output: the node output producing it
    std::vector<std::vector<Port>> output_readers_;  // per graph output: the node inputs reading it
    std::vector<const void *> bound_inputs_;
    std::vector<void *> bound_outputs_;
    std::vector<std::unique_ptr<uint64_t[]>> scratch_;  // per graph output, once not wanted

    struct Link {  // a bounded batch's tensor between nodes, not a graph output
        Port producer;
        std::vector<Port> readers;
        std::unique_ptr<uint64_t[]> memory;  // for batch_max
    };
    std::vector<Link> links_;
    int64_t bound_batch_ = 0;  // the batch links are bound at (0: none)
};

Executor::Executor(std::vector<Node> nodes, size_t n_inputs, std::vector<size_t> output_bytes, int concurrency,
                   std::vector<size_t> waves, int64_t batch_max)
    : nodes_(std::move(nodes)), n_inputs_(n_inputs), output_bytes_(std::move(output_bytes)), concurrency_(concurrency),
      waves_(std::move(waves)), batch_max_(batch_max) {
    size_t sum = 0;
    for (size_t size : waves_) {
        if (size == 0) fail(PRT_E_RUNTIME, "executor: an empty wave");
        sum += size;
    }
    if (concurrency_ <= 1 && sum != nodes_.size()) fail(PRT_E_RUNTIME, "executor: the waves do not cover the nodes");
    free_.push_back(make_set());  // allocate before the first call
}

std::unique_ptr<RequestSet> Executor::make_set() {
    return std::make_unique<RequestSet>(nodes_, n_inputs_, output_bytes_, concurrency_, waves_, batch_max_);
}

Executor::~Executor() = default;

std::unique_ptr<RequestSet> Executor::acquire() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!free_.empty()) {
            std::unique_ptr<RequestSet> set = std::move(free_.back());
            free_.pop_back();
            return set;
        }
    }
    return make_set();  // another thread holds every set: grow
}

void Executor::release(std::unique_ptr<RequestSet> set) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(set));
}

void Executor::run(const void *const *inputs, void *const *outputs, int64_t batch) {
    std::unique_ptr<RequestSet> set = acquire();
    try {
        set->run(inputs, outputs, batch);
    } catch (...) {
        release(std::move(set));
        throw;
    }
    release(std::move(set));
}

}  // namespace prt
