/* classify: open an export or engine directory, run one image, print the top-5 and the latency.
 *
 *   classify DIR [IMAGE.f32] [OPTIONS]
 *
 * IMAGE.f32: raw little-endian float32 NCHW, already normalised (default: a fixed pattern).
 * OPTIONS: e.g. "mode=streams;threads=2".
 */
#include <stdio.h>
#include <stdlib.h>

#include "parnet_rt.h"

static int fail(const char *what, prt_status s) {
    fprintf(stderr, "classify: %s failed (status %d): %s\n", what, (int)s, prt_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [IMAGE.f32] [OPTIONS]\n", argv[0]);
        return 2;
    }
    prt_runtime *rt = NULL;
    prt_status s = prt_open(argv[1], argc > 3 ? argv[3] : NULL, &rt);
    if (s != PRT_OK) return fail("prt_open", s);

    int64_t in[4], out[2];
    prt_input_dims(rt, in);
    prt_output_dims(rt, out);
    size_t n_in = (size_t)(in[0] * in[1] * in[2] * in[3]), n_out = (size_t)(out[0] * out[1]);
    float *x = malloc(n_in * sizeof *x), *y = malloc(n_out * sizeof *y);
    if (!x || !y) return 1;
    if (argc > 2 && argv[2][0]) {
        FILE *f = fopen(argv[2], "rb");
        if (!f || fread(x, sizeof *x, n_in, f) != n_in) {
            fprintf(stderr, "classify: cannot read %zu floats from %s\n", n_in, argv[2]);
            return 2;
        }
        fclose(f);
    } else {
        for (size_t i = 0; i < n_in; i++) x[i] = (float)((i * 7919u) % 255u) / 127.5f - 1.0f;
    }

    prt_warmup(rt, 3);
    if ((s = prt_infer(rt, x, n_in, y, n_out)) != PRT_OK) return fail("prt_infer", s);
    double us = 0;
    prt_last_latency_us(rt, &us);

    printf("parnet_rt %s, input %lldx%lldx%lldx%lld, %lld classes, latency %.1f us\n", prt_version(),
           (long long)in[0], (long long)in[1], (long long)in[2], (long long)in[3], (long long)out[1], us);
    int used[5] = {-1, -1, -1, -1, -1};
    for (int k = 0; k < 5 && k < out[1]; k++) {
        int best = -1;
        for (int c = 0; c < out[1]; c++) {
            int taken = 0;
            for (int j = 0; j < k; j++) taken |= used[j] == c;
            if (!taken && (best < 0 || y[c] > y[best])) best = c;
        }
        used[k] = best;
        printf("  top-%d: class %d  logit %.4f\n", k + 1, best, y[best]);
    }
    free(x);
    free(y);
    prt_close(rt);
    return 0;
}
