#include "executor.hpp"

#include <algorithm>

#include "error.hpp"

namespace prt {

// One request per node, inputs linked to their producers' outputs; the graph input and output
// are bound to the caller's memory (re-bound only when the caller's pointers change).
class RequestSet {
  public:
    RequestSet(const std::vector<Node> &nodes, int concurrency)
        : nodes_(nodes), concurrency_(concurrency), waiting_(nodes.size()), producers_(nodes.size()) {
        // a consumer waits for each producer once, however many of its tensors it reads
        // (a producer lists each consumer once)
        for (const Node &n : nodes)
            for (int c : n.consumers) producers_[static_cast<size_t>(c)]++;
        for (const Node &n : nodes) requests_.push_back(n.graph->new_request());
        ready_.reserve(nodes.size());  // finished() never allocates
        started_.reserve(nodes.size());
        for (size_t i = 0; i < nodes.size(); i++)
            for (size_t p = 0; p < nodes[i].inputs.size(); p++)
                if (nodes[i].inputs[p].node >= 0)
                    requests_[i]->link_input(p, *requests_[nodes[i].inputs[p].node], nodes[i].inputs[p].port);
        if (concurrency_ > 1)
            for (size_t i = 0; i < nodes.size(); i++)
                requests_[i]->set_done([this, i](std::exception_ptr e) { finished(static_cast<int>(i), e); });
    }

    void run(const float *input, float *output) {
        bind(input, output);
        if (concurrency_ <= 1) {
            for (auto &r : requests_) r->infer();
            return;
        }
        run_concurrently();
    }

  private:
    void bind(const float *input, float *output) {
        if (input != bound_input_) {
            for (size_t i = 0; i < nodes_.size(); i++)
                for (size_t p = 0; p < nodes_[i].inputs.size(); p++)
                    if (nodes_[i].inputs[p].node < 0) requests_[i]->bind_input(p, input);
            bound_input_ = input;
        }
        if (output != bound_output_) {
            for (size_t i = 0; i < nodes_.size(); i++)
                if (nodes_[i].output_port >= 0) requests_[i]->bind_output(static_cast<size_t>(nodes_[i].output_port), output);
            bound_output_ = output;
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
    const int concurrency_;
    std::vector<std::unique_ptr<Request>> requests_;
    const float *bound_input_ = nullptr;
    float *bound_output_ = nullptr;

    std::mutex mutex_;
    std::condition_variable done_;
    std::vector<int> waiting_;  // producers not yet done, per node
    std::vector<int> producers_;  // distinct producers, per node
    std::vector<int> ready_;
    std::vector<int> started_;
    int in_flight_ = 0;
    size_t completed_ = 0;
    std::exception_ptr error_;
};

Executor::Executor(std::vector<Node> nodes, int concurrency) : nodes_(std::move(nodes)), concurrency_(concurrency) {
    free_.push_back(std::make_unique<RequestSet>(nodes_, concurrency_));  // allocate before the first call
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
    return std::make_unique<RequestSet>(nodes_, concurrency_);  // another thread holds every set: grow
}

void Executor::release(std::unique_ptr<RequestSet> set) {
    std::lock_guard<std::mutex> lock(mutex_);
    free_.push_back(std::move(set));
}

void Executor::run(const float *input, float *output) {
    std::unique_ptr<RequestSet> set = acquire();
    try {
        set->run(input, output);
    } catch (...) {
        release(std::move(set));
        throw;
    }
    release(std::move(set));
}

}  // namespace prt
