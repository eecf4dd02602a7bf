/* Mean wall time of prt_infer over N calls (after warm-up), and the mean time the runner
 * itself took inside those calls (prt_last_latency_us): capi_overhead DIR N -> "wall inner" */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "parnet_rt.h"

int main(int argc, char **argv) {
    prt_runtime *rt;
    if (argc < 3 || prt_open(argv[1], "threads=1", &rt) != PRT_OK) return 1;
    int64_t in[4], out[2];
    prt_input_dims(rt, in);
    prt_output_dims(rt, out);
    size_t n_in = (size_t)(in[0] * in[1] * in[2] * in[3]), n_out = (size_t)(out[0] * out[1]);
    float *x = calloc(n_in, sizeof *x), *y = calloc(n_out, sizeof *y);
    int n = atoi(argv[2]);
    prt_warmup(rt, 50);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    double inner = 0, us;
    for (int i = 0; i < n; i++) {
        prt_infer(rt, x, n_in, y, n_out);
        prt_last_latency_us(rt, &us);
        inner += us;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%.3f %.3f\n", ((b.tv_sec - a.tv_sec) * 1e6 + (b.tv_nsec - a.tv_nsec) / 1e3) / n, inner / n);
    prt_close(rt);
    return 0;
}
