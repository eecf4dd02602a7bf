// Timings of the native C library against OpenVINO used directly (see capi_overhead.py).
//
//   capi_overhead overhead DIR ROUNDS CALLS   per round: CALLS x (one prt_infer, one ov::InferRequest::infer()
//                                              on the same model, same settings, tensors bound once); prints
//                                              "prt_us ov_us diff_us control_us" (medians; diff: of the paired
//                                              differences; control: a second OpenVINO copy minus the first)
//   capi_overhead open DIR                     microseconds from prt_open to the first prt_infer result
//   capi_overhead percall DIR OPTIONS CALLS    median microseconds per prt_infer call
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <openvino/openvino.hpp>

#include "parnet_rt.h"

namespace {

using Clock = std::chrono::steady_clock;

double us_since(Clock::time_point t0) { return std::chrono::duration<double, std::micro>(Clock::now() - t0).count(); }

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

prt_runtime *open_or_die(const char *dir, const char *options) {
    prt_runtime *rt = nullptr;
    if (prt_open(dir, options, &rt) != PRT_OK) {
        std::fprintf(stderr, "prt_open: %s\n", prt_last_error());
        std::exit(1);
    }
    return rt;
}

void sizes(prt_runtime *rt, size_t &n_in, size_t &n_out) {
    int64_t in[4], out[2];
    prt_input_dims(rt, in);
    prt_output_dims(rt, out);
    n_in = static_cast<size_t>(in[0] * in[1] * in[2] * in[3]);
    n_out = static_cast<size_t>(out[0] * out[1]);
}

int overhead(const char *dir, int rounds, int calls) {
    prt_runtime *rt = open_or_die(dir, "threads=1");
    size_t n_in, n_out;
    sizes(rt, n_in, n_out);
    std::vector<float> x(n_in, 0.5f), y(n_out), z(n_out);

    // the same graph, read and compiled the way the library does it: from the file's bytes in memory
    // (reading from the path gives a differently laid-out compiled model: up to +-7 us on this graph),
    // threads=1, f32, latency, unpinned
    std::ifstream file(std::string(dir) + "/model.onnx", std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    ov::Core core;
    const ov::AnyMap config{ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY), ov::num_streams(1),
                            ov::hint::inference_precision(ov::element::f32), ov::inference_num_threads(1),
                            ov::hint::enable_cpu_pinning(false)};
    ov::CompiledModel model = core.compile_model(core.read_model(bytes, ov::Tensor()), "CPU", config);
    ov::InferRequest request = model.create_infer_request();
    request.set_input_tensor(ov::Tensor(ov::element::f32, model.input().get_shape(), x.data()));
    request.set_output_tensor(ov::Tensor(ov::element::f32, model.output().get_shape(), z.data()));
    // a control: a second copy of the same graph, compiled the same way; its difference to the
    // first is what two copies differ by, with no library in between
    ov::CompiledModel copy = core.compile_model(core.read_model(bytes, ov::Tensor()), "CPU", config);
    std::vector<float> w(n_out);
    ov::InferRequest control = copy.create_infer_request();
    control.set_input_tensor(ov::Tensor(ov::element::f32, copy.input().get_shape(), x.data()));
    control.set_output_tensor(ov::Tensor(ov::element::f32, copy.output().get_shape(), w.data()));

    prt_warmup(rt, 200);
    for (int i = 0; i < 200; i++) request.infer(), control.infer();
    // alternating call by call, so drift (frequency, the other core's load) hits both alike
    std::vector<double> a(static_cast<size_t>(calls)), b(a), d(a), c(a);
    for (int r = 0; r < rounds; r++) {
        for (size_t i = 0; i < a.size(); i++) {
            auto t0 = Clock::now();
            prt_infer(rt, x.data(), n_in, y.data(), n_out);
            a[i] = us_since(t0);
            t0 = Clock::now();
            request.infer();
            b[i] = us_since(t0);
            t0 = Clock::now();
            control.infer();
            c[i] = us_since(t0) - b[i];
            d[i] = a[i] - b[i];
        }
        std::printf("%.3f %.3f %.3f %.3f\n", median(a), median(b), median(d), median(c));
    }
    // the library's own work alone: a call refused after every check but the inference
    const auto t0 = Clock::now();
    for (int i = 0; i < 100000; i++) prt_infer(rt, x.data(), n_in - 1, y.data(), n_out);
    std::printf("checks %.4f\n", us_since(t0) / 100000);
    if (y != z) {
        std::fprintf(stderr, "outputs differ between prt_infer and OpenVINO\n");
        return 1;
    }
    prt_close(rt);
    return 0;
}

int open_time(const char *dir) {
    const auto t0 = Clock::now();
    prt_runtime *rt = open_or_die(dir, nullptr);
    size_t n_in, n_out;
    sizes(rt, n_in, n_out);
    std::vector<float> x(n_in, 0.5f), y(n_out);
    if (prt_infer(rt, x.data(), n_in, y.data(), n_out) != PRT_OK) return 1;
    std::printf("%.1f\n", us_since(t0));
    prt_close(rt);
    return 0;
}

int percall(const char *dir, const char *options, int calls) {
    prt_runtime *rt = open_or_die(dir, options);
    size_t n_in, n_out;
    sizes(rt, n_in, n_out);
    std::vector<float> x(n_in, 0.5f), y(n_out);
    prt_warmup(rt, 5);
    std::vector<double> t(static_cast<size_t>(calls));
    for (int i = 0; i < calls; i++) {
        const auto t0 = Clock::now();
        prt_infer(rt, x.data(), n_in, y.data(), n_out);
        t[static_cast<size_t>(i)] = us_since(t0);
    }
    std::printf("%.1f\n", median(t));
    prt_close(rt);
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "overhead" && argc == 5) return overhead(argv[2], std::atoi(argv[3]), std::atoi(argv[4]));
    if (cmd == "open" && argc == 3) return open_time(argv[2]);
    if (cmd == "percall" && argc == 5) return percall(argv[2], argv[3], std::atoi(argv[4]));
    std::fprintf(stderr, "usage: capi_overhead overhead DIR ROUNDS CALLS | open DIR | percall DIR OPTIONS CALLS\n");
    return 2;
}
