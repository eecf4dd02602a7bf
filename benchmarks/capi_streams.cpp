// Streams against the whole graph through the C library (the native runtime a robot embeds): the same
// export opened twice ("mode=whole" and "mode=streams", THREADS each), timed in blocks of BLOCK calls, one
// of each per round (the order swapped every round) for ROUNDS rounds, on a fixed synthetic input. Prints
// one JSON line: the medians over all calls, each round's ratio of block medians and the largest
// difference between the two outputs. Driven by benchmarks/int8_peers.py.
//   capi_streams EXPORT_DIR ROUNDS BLOCK THREADS
#include <parnet_rt.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s EXPORT_DIR ROUNDS BLOCK THREADS\n", argv[0]);
        return 2;
    }
    const int rounds = std::atoi(argv[2]), block = std::atoi(argv[3]);
    const std::string threads = argv[4];
    if (rounds < 1 || block < 1) return 2;
    prt_runtime *whole = nullptr, *streams = nullptr;
    if (prt_open(argv[1], ("mode=whole;threads=" + threads).c_str(), &whole) != PRT_OK ||
        prt_open(argv[1], ("mode=streams;threads=" + threads).c_str(), &streams) != PRT_OK) {
        std::fprintf(stderr, "capi_streams: cannot open %s\n", argv[1]);
        return 1;
    }
    int64_t in[4], out[2];
    prt_input_dims(whole, in);
    prt_output_dims(whole, out);
    const size_t n_in = static_cast<size_t>(in[0] * in[1] * in[2] * in[3]), n_out = static_cast<size_t>(out[0] * out[1]);
    std::vector<float> x(n_in), y_whole(n_out), y_streams(n_out);
    for (size_t i = 0; i < n_in; i++) x[i] = static_cast<float>((i * 7919u) % 255u) / 127.5f - 1.0f;
    prt_warmup(whole, 5);
    prt_warmup(streams, 5);
    std::vector<double> t_whole, t_streams;
    auto timed = [&](prt_runtime *rt, std::vector<float> &y, std::vector<double> &t) {
        for (int b = 0; b < block; b++) {
            const auto t0 = std::chrono::steady_clock::now();
            if (prt_infer(rt, x.data(), n_in, y.data(), n_out) != PRT_OK) std::exit(1);
            t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
        }
    };
    // a ratio per round (block medians, the order swapped every round), as int8_peers.paired_ratio does:
    // this VM drifts by several percent within seconds, which a ratio taken within a round cancels
    std::vector<double> ratios;
    for (int r = 0; r < rounds; r++) {
        std::vector<double> tw, ts;
        if (r % 2) {
            timed(streams, y_streams, ts);
            timed(whole, y_whole, tw);
        } else {
            timed(whole, y_whole, tw);
            timed(streams, y_streams, ts);
        }
        ratios.push_back(median(ts) / median(tw));
        t_whole.insert(t_whole.end(), tw.begin(), tw.end());
        t_streams.insert(t_streams.end(), ts.begin(), ts.end());
    }
    double diff = 0;
    for (size_t i = 0; i < n_out; i++) diff = std::max(diff, static_cast<double>(std::fabs(y_whole[i] - y_streams[i])));
    const double w = median(t_whole), s = median(t_streams);
    std::printf("{\"whole_ms\": %.4f, \"streams_ms\": %.4f, \"max_abs_diff\": %.6g, \"calls\": %zu, \"ratios\": [",
                w, s, diff, t_whole.size());
    for (size_t i = 0; i < ratios.size(); i++) std::printf("%s%.6f", i ? ", " : "", ratios[i]);
    std::printf("]}\n");
    prt_close(whole);
    prt_close(streams);
    return 0;
}
