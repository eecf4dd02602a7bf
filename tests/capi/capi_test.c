/* Exercises libparnet_rt through its header: statuses, errors, outputs, threads.
 *   capi_test DIR TAMPERED_DIR OUT.f32 CALLS
 * Prints one line per failed check, then "ALL OK" or "FAILED n"; exit code = failures. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parnet_rt.h"

static int failures = 0;
#define CHECK(cond, ...)                                        \
    do {                                                        \
        if (!(cond)) {                                          \
            failures++;                                         \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);         \
            printf(__VA_ARGS__);                                \
            printf("\n");                                       \
        }                                                       \
    } while (0)

static const char *dir;
static size_t n_in, n_out;
static int calls;
static float *inputs[4], *expected[4];

static void pattern(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(((i + seed * 131u) * 7919u) % 255u) / 127.5f - 1.0f;
}

static void expect_status(prt_status got, prt_status want, const char *what) {
    CHECK(got == want, "%s: status %d, want %d (%s)", what, (int)got, (int)want, prt_last_error());
    CHECK(got == PRT_OK || strlen(prt_last_error()) > 0, "%s: empty prt_last_error", what);
}

static int close_enough(const float *a, const float *b, size_t n) {
    float scale = 0, diff = 0;
    for (size_t i = 0; i < n; i++) {
        float d = a[i] - b[i];
        if (d < 0) d = -d;
        if (d > diff) diff = d;
        if ((b[i] < 0 ? -b[i] : b[i]) > scale) scale = b[i] < 0 ? -b[i] : b[i];
    }
    return diff <= 1e-6f * scale;
}

struct job { prt_runtime *rt; int id; int bad; };

static void *worker(void *arg) {
    struct job *j = arg;
    prt_runtime *own = NULL;
    prt_runtime *rt = j->rt;
    if (!rt) {
        if (prt_open(dir, NULL, &own) != PRT_OK) { j->bad = calls; return NULL; }
        rt = own;
    }
    float *y = malloc(n_out * sizeof *y);
    for (int c = 0; c < calls; c++) {
        if (prt_infer(rt, inputs[j->id], n_in, y, n_out) != PRT_OK || !close_enough(y, expected[j->id], n_out))
            j->bad++;
    }
    free(y);
    prt_close(own);
    return NULL;
}

static void run_threads(prt_runtime *shared, const char *label) {
    pthread_t t[4];
    struct job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (struct job){shared, i, 0};
        pthread_create(&t[i], NULL, worker, &jobs[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        CHECK(jobs[i].bad == 0, "%s: thread %d had %d wrong or failed calls of %d", label, i, jobs[i].bad, calls);
    }
}

int main(int argc, char **argv) {
    if (argc < 5) return 100;
    dir = argv[1];
    calls = atoi(argv[4]);
    CHECK(prt_abi_version() == PRT_ABI_VERSION, "abi version %d", prt_abi_version());
    CHECK(strlen(prt_version()) > 0, "empty version");

    prt_runtime *rt = (prt_runtime *)0x1;
    expect_status(prt_open(NULL, NULL, &rt), PRT_E_INVALID_ARG, "open NULL path");
    expect_status(prt_open(dir, NULL, NULL), PRT_E_INVALID_ARG, "open NULL out");
    expect_status(prt_open("/nonexistent/parnet", NULL, &rt), PRT_E_NOT_FOUND, "open missing");
    CHECK(rt == NULL, "failed open must set *out to NULL");
    expect_status(prt_open(argv[2], NULL, &rt), PRT_E_INCOMPATIBLE, "open tampered");
    CHECK(strstr(prt_last_error(), "modified after it was written") != NULL, "tampered message: %s", prt_last_error());
    expect_status(prt_open(dir, "mode=fast", &rt), PRT_E_INVALID_ARG, "bad mode");
    expect_status(prt_open(dir, "threads=two", &rt), PRT_E_INVALID_ARG, "bad threads");
    expect_status(prt_open(dir, "colour=blue", &rt), PRT_E_INVALID_ARG, "unknown key");

    expect_status(prt_open(dir, "mode=whole;threads=2", &rt), PRT_OK, "open");
    int64_t in[4] = {0}, out[2] = {0};
    expect_status(prt_input_dims(rt, in), PRT_OK, "input dims");
    expect_status(prt_output_dims(rt, out), PRT_OK, "output dims");
    expect_status(prt_input_dims(NULL, in), PRT_E_INVALID_ARG, "dims NULL handle");
    expect_status(prt_output_dims(rt, NULL), PRT_E_INVALID_ARG, "dims NULL buffer");
    n_in = (size_t)(in[0] * in[1] * in[2] * in[3]);
    n_out = (size_t)(out[0] * out[1]);
    CHECK(in[1] == 3 && n_out > 0, "dims %lld %lld", (long long)in[1], (long long)n_out);

    float *x = malloc(n_in * sizeof *x), *y = malloc(n_out * sizeof *y);
    pattern(x, n_in, 0);
    expect_status(prt_infer(NULL, x, n_in, y, n_out), PRT_E_INVALID_ARG, "infer NULL handle");
    expect_status(prt_infer(rt, NULL, n_in, y, n_out), PRT_E_INVALID_ARG, "infer NULL input");
    expect_status(prt_infer(rt, x, n_in, NULL, n_out), PRT_E_INVALID_ARG, "infer NULL output");
    expect_status(prt_infer(rt, x, n_in - 1, y, n_out), PRT_E_INVALID_ARG, "infer short input");
    expect_status(prt_infer(rt, x, n_in, y, n_out + 1), PRT_E_INVALID_ARG, "infer long output");
    CHECK(strstr(prt_last_error(), "expected input_len") != NULL, "length message: %s", prt_last_error());
    expect_status(prt_warmup(rt, -1), PRT_E_INVALID_ARG, "warmup negative");
    expect_status(prt_warmup(rt, 2), PRT_OK, "warmup");
    expect_status(prt_infer(rt, x, n_in, y, n_out), PRT_OK, "infer");
    double us = -1;
    expect_status(prt_last_latency_us(rt, &us), PRT_OK, "latency");
    CHECK(us > 0, "latency %f", us);
    FILE *f = fopen(argv[3], "wb");
    fwrite(y, sizeof *y, n_out, f);
    fclose(f);

    for (int i = 0; i < 4; i++) {
        inputs[i] = malloc(n_in * sizeof(float));
        expected[i] = malloc(n_out * sizeof(float));
        pattern(inputs[i], n_in, (unsigned)i + 1);
        expect_status(prt_infer(rt, inputs[i], n_in, expected[i], n_out), PRT_OK, "reference");
    }
    run_threads(NULL, "separate handles");
    run_threads(rt, "shared handle");

    prt_close(rt);
    prt_close(NULL);
    for (int i = 0; i < 4; i++) { free(inputs[i]); free(expected[i]); }
    free(x);
    free(y);
    printf(failures ? "FAILED %d\n" : "ALL OK\n", failures);
    return failures;
}
