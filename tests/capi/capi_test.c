/* Exercises libparnet_rt through its installed header: statuses, errors, outputs, threads.
 *
 *   capi_test COMMAND ARGS... [-- COMMAND ARGS...]...
 *
 *   misuse DIR                               NULLs, lengths, options, non-UTF-8 paths, dims bounds,
 *                                            last-error lifetime, closed handles, image strides
 *                                            and lengths, non-finite inputs
 *   run DIR OPTIONS IN.f32 OUT.f32           one inference of a raw float32 input
 *   status DIR OPTIONS STATUS TEXT           prt_open returns STATUS and an error containing TEXT
 *   threads DIR OPTIONS THREADS CALLS        THREADS x CALLS on one shared handle and on separate
 *                                            handles, each bitwise equal to a single-threaded run
 *   preprocess DIR IMAGE.u8 H W STRIDE ORDER OUT.f32
 *                                            (and prt_preprocess_u8_len on a buffer of exactly the
 *                                            image's span gives the same floats)
 *   peak MAX_KIB                             this process's peak resident memory (VmHWM) is at most MAX_KIB
 *   named DIR OPTIONS IN_PREFIX OUT_PREFIX   named tensors: writes OUT_PREFIX"info.txt" (prt_io_info of
 *                                            every tensor), reads each input from IN_PREFIX<name>.bin,
 *                                            runs all outputs (to OUT_PREFIX<name>.bin), then each
 *                                            output alone and in reverse order (bitwise the same), and
 *                                            checks a buffer of an earlier call is never written again
 *   named_misuse DIR OPTIONS                 prt_infer_named / prt_io_info misuse on a model of several
 *                                            float32 inputs and outputs: every refusal leaves all
 *                                            outputs untouched; the image calls refuse the model
 *
 * Commands run in order in one process (so one valgrind run covers them all). Every error message
 * must be one line of text (no control bytes). Prints one line per failed check, then "ALL OK" or
 * "FAILED n"; the exit code is the number of failures. */
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parnet_rt.h"

static int failures = 0;
#define CHECK(cond, ...)                                \
    do {                                                \
        if (!(cond)) {                                  \
            failures++;                                 \
            printf("FAIL %s:%d: ", __FILE__, __LINE__); \
            printf(__VA_ARGS__);                        \
            printf("\n");                               \
        }                                               \
    } while (0)

static const char *opt(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }

static int one_line(const char *message) {
    for (const unsigned char *p = (const unsigned char *)message; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

static void expect_status(prt_status got, prt_status want, const char *what) {
    CHECK(got == want, "%s: status %d, want %d (%s)", what, (int)got, (int)want, prt_last_error());
    CHECK(got == PRT_OK || strlen(prt_last_error()) > 0, "%s: empty prt_last_error", what);
    CHECK(one_line(prt_last_error()), "%s: prt_last_error is not one line of text", what);
}

/* status `want` and a message containing `text` */
static void expect_error(prt_status got, prt_status want, const char *text, const char *what) {
    expect_status(got, want, what);
    CHECK(got == PRT_OK || strstr(prt_last_error(), text) != NULL, "%s: message '%s' lacks '%s'", what,
          prt_last_error(), text);
}

static void pattern(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(((i + seed * 131u) * 7919u) % 255u) / 127.5f - 1.0f;
}

static int lengths(prt_runtime *rt, size_t *n_in, size_t *n_out) {
    int64_t in[4], out[2];
    if (prt_input_dims(rt, in) != PRT_OK || prt_output_dims(rt, out) != PRT_OK) return 0;
    *n_in = (size_t)(in[0] * in[1] * in[2] * in[3]);
    *n_out = (size_t)(out[0] * out[1]);
    return 1;
}

static void *read_file(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    void *data = malloc(bytes ? bytes : 1);
    size_t got = f ? fread(data, 1, bytes, f) : 0;
    CHECK(f && got == bytes, "cannot read %zu bytes from %s", bytes, path);
    if (f) fclose(f);
    return data;
}

static void write_file(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(data, 1, bytes, f) == bytes, "cannot write %s", path);
    if (f) fclose(f);
}

/* Strides whose image could not exist: refused before any byte is read (here from a 3-byte buffer). */
static void misuse_strides(prt_runtime *rt, size_t h, size_t w, float *x, size_t n_in) {
    uint8_t pixel[3] = {1, 2, 3};
    const size_t huge[] = {SIZE_MAX, (size_t)1 << 63, SIZE_MAX / (h - 1) + 1, (size_t)PTRDIFF_MAX / (h - 1) + 1,
                           ((size_t)PTRDIFF_MAX - 3 * w) / (h - 1) + 1};
    char what[96];
    for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
        snprintf(what, sizeof what, "preprocess row_stride %zu", huge[i]);
        expect_error(prt_preprocess_u8(rt, pixel, h, w, huge[i], PRT_RGB, x, n_in), PRT_E_INVALID_ARG, "too large", what);
        expect_error(prt_preprocess_u8_len(rt, pixel, SIZE_MAX, h, w, huge[i], PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                     "too large", what);
    }
    const size_t span = (h - 1) * (3 * w + 1) + 3 * w;  /* rows padded by one byte; the last row needs none */
    expect_error(prt_preprocess_u8_len(rt, pixel, sizeof pixel, h, w, 3 * w + 1, PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                 "image_len is 3", "preprocess_len 3 bytes");
    expect_error(prt_preprocess_u8_len(rt, pixel, span - 1, h, w, 3 * w + 1, PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                 "image_len is", "preprocess_len one byte short");
    expect_error(prt_preprocess_u8_len(rt, pixel, 0, h, w, 3 * w, PRT_RGB, x, n_in), PRT_E_INVALID_ARG, "image_len is 0",
                 "preprocess_len empty");
    expect_status(prt_preprocess_u8_len(rt, NULL, span, h, w, 3 * w, PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                  "preprocess_len NULL image");
    expect_status(prt_preprocess_u8_len(NULL, pixel, span, h, w, 3 * w, PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                  "preprocess_len NULL handle");
    expect_status(prt_preprocess_u8_len(rt, pixel, span, h, w, 3 * w - 1, PRT_RGB, x, n_in), PRT_E_INVALID_ARG,
                  "preprocess_len short stride");
}

/* NaN, +inf and -inf, first and last, are refused by default with the index; check_finite=0 runs them. */
static void misuse_non_finite(prt_runtime *rt, const char *dir, float *x, size_t n_in, float *y, size_t n_out) {
    const float bad[] = {NAN, INFINITY, -INFINITY};
    const char *names[] = {"NaN", "+inf", "-inf"};
    prt_runtime *unchecked = NULL;
    expect_status(prt_open(dir, "check_finite=0", &unchecked), PRT_OK, "open check_finite=0");
    char text[64];
    for (size_t b = 0; b < 3; b++) {
        for (size_t at = 0; at < n_in; at += n_in - 1) {
            pattern(x, n_in, 0);
            x[at] = bad[b];
            snprintf(text, sizeof text, "input[%zu] is %s", at, names[b]);
            expect_error(prt_infer(rt, x, n_in, y, n_out), PRT_E_INVALID_ARG, text, text);
            if (unchecked) expect_status(prt_infer(unchecked, x, n_in, y, n_out), PRT_OK, "check_finite=0 runs it");
        }
    }
    pattern(x, n_in, 0);
    x[0] = FLT_MAX;
    x[n_in - 1] = -1e-40f; /* a denormal */
    expect_status(prt_infer(rt, x, n_in, y, n_out), PRT_OK, "infer FLT_MAX and a denormal");
    pattern(x, n_in, 0);
    prt_close(unchecked);
}

static void cmd_misuse(const char *dir) {
    CHECK(prt_abi_version() == PRT_ABI_VERSION, "abi version %d", prt_abi_version());
    CHECK(strlen(prt_version()) > 0, "empty version");
    prt_runtime *rt = (prt_runtime *)0x1;
    expect_status(prt_open(NULL, NULL, &rt), PRT_E_INVALID_ARG, "open NULL path");
    expect_status(prt_open(dir, NULL, NULL), PRT_E_INVALID_ARG, "open NULL out");
    rt = (prt_runtime *)0x1;
    expect_status(prt_open("/nonexistent/parnet", NULL, &rt), PRT_E_NOT_FOUND, "open missing");
    CHECK(rt == NULL, "failed open must set *out to NULL");
    expect_status(prt_open("/tmp/\xff\xfe-not-utf8", NULL, &rt), PRT_E_INVALID_ARG, "non-UTF-8 path");
    expect_status(prt_open("/tmp/\xc0\xaf", NULL, &rt), PRT_E_INVALID_ARG, "overlong UTF-8 path");
    expect_status(prt_open(dir, "mode=\xe9", &rt), PRT_E_INVALID_ARG, "non-UTF-8 options");
    static const char *bad_options[] = {"mode=fast", "mode=distributed", "threads=two", "threads=0", "threads=-1",
                                        "threads=99999", "colour=blue", "mode", "mode=", "device=cuda:0",
                                        "device=TPU", "precision_hint=f8", "backend=onnxruntime",
                                        "threads=2;threads=2", "precision_hint=f16", "check_finite=2",
                                        "check_finite=yes", "check_finite=true", "check_finite=-1",
                                        "check_finite=1;check_finite=0", "backend=tensorrt", "backend=OpenVINO",
                                        "backend=openvino;backend=openvino"};
    for (size_t i = 0; i < sizeof bad_options / sizeof *bad_options; i++) {
        expect_status(prt_open(dir, bad_options[i], &rt), PRT_E_INVALID_ARG, bad_options[i]);
        CHECK(strstr(prt_last_error(), "bad option") != NULL, "%s: message %s", bad_options[i], prt_last_error());
    }

    /* the last error stays valid (and unchanged) until the next failing call on this thread */
    expect_status(prt_open(dir, "colour=blue", &rt), PRT_E_INVALID_ARG, "unknown key");
    const char *kept = prt_last_error();
    char copy[512];
    snprintf(copy, sizeof copy, "%s", kept);
    expect_status(prt_open(dir, "backend=openvino", &rt), PRT_OK, "open naming the backend");
    prt_close(rt);
    expect_status(prt_open(dir, " mode = whole ; threads=2 ;", &rt), PRT_OK, "open with spaces");
    (void)prt_last_error();
    CHECK(strcmp(kept, copy) == 0, "last error changed by successful calls: %s", kept);

    /* the dims functions write exactly 4 and 2 values, whatever the manifest says */
    struct { int64_t dims[4]; int64_t canary[4]; } in = {{0}, {7, 7, 7, 7}};
    struct { int64_t dims[2]; int64_t canary[4]; } out = {{0}, {7, 7, 7, 7}};
    expect_status(prt_input_dims(rt, in.dims), PRT_OK, "input dims");
    expect_status(prt_output_dims(rt, out.dims), PRT_OK, "output dims");
    for (int i = 0; i < 4; i++) CHECK(in.canary[i] == 7 && out.canary[i] == 7, "dims wrote past the array");
    CHECK(in.dims[1] == 3 && out.dims[0] >= 1 && out.dims[1] >= 1, "dims %lld %lld", (long long)in.dims[1],
          (long long)out.dims[1]);
    expect_status(prt_input_dims(NULL, in.dims), PRT_E_INVALID_ARG, "dims NULL handle");
    expect_status(prt_output_dims(rt, NULL), PRT_E_INVALID_ARG, "dims NULL buffer");

    size_t n_in = 1, n_out = 1;
    CHECK(lengths(rt, &n_in, &n_out), "lengths");
    float *x = malloc(n_in * sizeof *x), *y = malloc((n_out + 1) * sizeof *y);
    pattern(x, n_in, 0);
    expect_status(prt_infer(NULL, x, n_in, y, n_out), PRT_E_INVALID_ARG, "infer NULL handle");
    expect_status(prt_infer(rt, NULL, n_in, y, n_out), PRT_E_INVALID_ARG, "infer NULL input");
    expect_status(prt_infer(rt, x, n_in, NULL, n_out), PRT_E_INVALID_ARG, "infer NULL output");
    expect_status(prt_infer(rt, x, n_in - 1, y, n_out), PRT_E_INVALID_ARG, "infer short input");
    expect_status(prt_infer(rt, x, n_in, y, n_out + 1), PRT_E_INVALID_ARG, "infer long output");
    expect_status(prt_infer(rt, x, n_in, y, n_out - 1), PRT_E_INVALID_ARG, "infer short output");
    expect_status(prt_infer(rt, x, 0, y, 0), PRT_E_INVALID_ARG, "infer zero lengths");
    CHECK(strstr(prt_last_error(), "expected input_len") != NULL, "length message: %s", prt_last_error());
    expect_status(prt_warmup(rt, -1), PRT_E_INVALID_ARG, "warmup negative");
    expect_status(prt_warmup(NULL, 1), PRT_E_INVALID_ARG, "warmup NULL");
    double us = 0;
    expect_status(prt_last_latency_us(rt, &us), PRT_OK, "latency before any call");
    CHECK(isnan(us), "latency before any call: %f, want NaN", us);
    expect_status(prt_warmup(rt, 2), PRT_OK, "warmup");
    y[n_out] = 12345.0f;
    expect_status(prt_infer(rt, x, n_in, y, n_out), PRT_OK, "infer");
    CHECK(y[n_out] == 12345.0f, "infer wrote past output_len");
    expect_status(prt_last_latency_us(rt, &us), PRT_OK, "latency");
    CHECK(us > 0, "latency %f", us);
    expect_status(prt_last_latency_us(rt, NULL), PRT_E_INVALID_ARG, "latency NULL");

    uint8_t pixel[3] = {1, 2, 3};
    expect_status(prt_preprocess_u8(rt, NULL, 1, 1, 3, PRT_RGB, x, n_in), PRT_E_INVALID_ARG, "preprocess NULL image");
    expect_status(prt_preprocess_u8(rt, pixel, 1, 1, 3, PRT_RGB, x, n_in), PRT_E_INVALID_ARG, "preprocess wrong size");
    expect_status(prt_preprocess_u8(rt, pixel, (size_t)in.dims[2], (size_t)in.dims[3], 1, PRT_RGB, x, n_in),
                  PRT_E_INVALID_ARG, "preprocess short stride");
    expect_status(prt_preprocess_u8(rt, pixel, (size_t)in.dims[2], (size_t)in.dims[3], 3 * (size_t)in.dims[3],
                                    7, x, n_in),
                  PRT_E_INVALID_ARG, "preprocess bad order");
    expect_status(prt_preprocess_u8(rt, pixel, (size_t)in.dims[2], (size_t)in.dims[3], 3 * (size_t)in.dims[3],
                                    PRT_RGB, x, n_in - 1),
                  PRT_E_INVALID_ARG, "preprocess short output");
    misuse_strides(rt, (size_t)in.dims[2], (size_t)in.dims[3], x, n_in);
    misuse_non_finite(rt, dir, x, n_in, y, n_out);

    prt_close(rt);
    prt_close(NULL);
    /* a closed handle is refused, not used (no handle was opened since, so the address is not reused) */
    expect_status(prt_infer(rt, x, n_in, y, n_out), PRT_E_INVALID_ARG, "infer on a closed handle");
    prt_close(rt);  /* twice: a no-op */
    free(x);
    free(y);
}

static void cmd_run(const char *dir, const char *options, const char *in_path, const char *out_path) {
    prt_runtime *rt = NULL;
    expect_status(prt_open(dir, opt(options), &rt), PRT_OK, dir);
    if (!rt) return;
    size_t n_in = 0, n_out = 0;
    CHECK(lengths(rt, &n_in, &n_out), "lengths");
    float *x = read_file(in_path, n_in * sizeof(float)), *y = calloc(n_out, sizeof(float));
    expect_status(prt_infer(rt, x, n_in, y, n_out), PRT_OK, "infer");
    write_file(out_path, y, n_out * sizeof(float));
    free(x);
    free(y);
    prt_close(rt);
}

static void cmd_status(const char *dir, const char *options, int want, const char *text) {
    prt_runtime *rt = (prt_runtime *)0x1;
    prt_status got = prt_open(dir, opt(options), &rt);
    CHECK((int)got == want, "%s: status %d, want %d (%s)", dir, (int)got, want, prt_last_error());
    CHECK(got != PRT_OK || rt != NULL, "%s: OK without a handle", dir);
    CHECK(got == PRT_OK || rt == NULL, "%s: failed open left *out set", dir);
    CHECK(got == PRT_OK || strstr(prt_last_error(), text) != NULL, "%s: message '%s' lacks '%s'", dir, prt_last_error(),
          text);
    CHECK(one_line(prt_last_error()), "%s: prt_last_error is not one line of text", dir);
    prt_close(rt);
}

struct job {
    const char *dir, *options;
    prt_runtime *shared;
    int calls, wrong, id;
    size_t n_in, n_out;
    const float *input, *expected;
};

static void *worker(void *arg) {
    struct job *j = arg;
    prt_runtime *own = NULL, *rt = j->shared;
    if (!rt) {
        if (prt_open(j->dir, j->options, &own) != PRT_OK) {
            j->wrong = j->calls;
            return NULL;
        }
        rt = own;
    }
    float *y = malloc(j->n_out * sizeof *y);
    for (int c = 0; c < j->calls; c++)
        if (prt_infer(rt, j->input, j->n_in, y, j->n_out) != PRT_OK || memcmp(y, j->expected, j->n_out * sizeof *y) != 0)
            j->wrong++;
    free(y);
    prt_close(own);
    return NULL;
}

static void cmd_threads(const char *dir, const char *options, int threads, int calls) {
    prt_runtime *rt = NULL;
    expect_status(prt_open(dir, opt(options), &rt), PRT_OK, dir);
    if (!rt || threads < 1 || threads > 64) return;
    size_t n_in = 0, n_out = 0;
    CHECK(lengths(rt, &n_in, &n_out), "lengths");
    float *inputs = malloc((size_t)threads * n_in * sizeof(float)), *expected = malloc((size_t)threads * n_out * sizeof(float));
    for (int i = 0; i < threads; i++) {
        pattern(inputs + (size_t)i * n_in, n_in, (unsigned)i + 1);
        expect_status(prt_infer(rt, inputs + (size_t)i * n_in, n_in, expected + (size_t)i * n_out, n_out), PRT_OK, "reference");
    }
    for (int shared = 1; shared >= 0; shared--) {
        pthread_t t[64];
        struct job jobs[64];
        for (int i = 0; i < threads; i++) {
            jobs[i] = (struct job){dir, opt(options), shared ? rt : NULL, calls, 0, i, n_in, n_out,
                                   inputs + (size_t)i * n_in, expected + (size_t)i * n_out};
            pthread_create(&t[i], NULL, worker, &jobs[i]);
        }
        for (int i = 0; i < threads; i++) {
            pthread_join(t[i], NULL);
            CHECK(jobs[i].wrong == 0, "%s handle: thread %d had %d of %d calls fail or differ bitwise",
                  shared ? "shared" : "separate", i, jobs[i].wrong, calls);
        }
    }
    free(inputs);
    free(expected);
    prt_close(rt);
}

static void cmd_preprocess(const char *dir, const char *image_path, size_t h, size_t w, size_t stride, int order,
                           const char *out_path) {
    prt_runtime *rt = NULL;
    expect_status(prt_open(dir, NULL, &rt), PRT_OK, dir);
    if (!rt) return;
    uint8_t *image = read_file(image_path, h * stride);
    float *x = calloc(3 * h * w, sizeof(float)), *x_len = calloc(3 * h * w, sizeof(float));
    expect_status(prt_preprocess_u8(rt, image, h, w, stride, order, x, 3 * h * w), PRT_OK, "preprocess");
    write_file(out_path, x, 3 * h * w * sizeof(float));
    /* exactly the span, in its own allocation: a read past it is a sanitizer error */
    const size_t span = (h - 1) * stride + 3 * w;
    uint8_t *exact = malloc(span);
    memcpy(exact, image, span);
    expect_status(prt_preprocess_u8_len(rt, exact, span, h, w, stride, order, x_len, 3 * h * w), PRT_OK,
                  "preprocess_len exact span");
    CHECK(memcmp(x, x_len, 3 * h * w * sizeof(float)) == 0, "prt_preprocess_u8_len differs from prt_preprocess_u8");
    expect_status(prt_preprocess_u8_len(rt, exact, span - 1, h, w, stride, order, x_len, 3 * h * w), PRT_E_INVALID_ARG,
                  "preprocess_len one byte short");
    free(exact);
    free(image);
    free(x);
    free(x_len);
    prt_close(rt);
}

static void cmd_peak(long max_kib) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) break;
    if (f) fclose(f);
    CHECK(kib >= 0 && kib <= max_kib, "peak resident memory %ld KiB, limit %ld KiB", kib, max_kib);
}

/* ---- named tensors ---- */

#define SENTINEL 0xA5
#define MAX_IO 8 /* graph inputs (outputs) at most: the manifest's limit */

struct io {
    size_t n_in, n_out;
    const char *names[2][MAX_IO];
    size_t bytes[2][MAX_IO];
    prt_dtype dtype[2][MAX_IO];
};

static size_t dtype_size(prt_dtype d) {
    switch (d) {
    case PRT_FLOAT32: case PRT_INT32: return 4;
    case PRT_FLOAT16: return 2;
    case PRT_INT8: case PRT_UINT8: case PRT_BOOL: return 1;
    case PRT_INT64: return 8;
    }
    return 0;
}

/* Every graph tensor's info; each line of `info` (if not NULL): "input|output INDEX NAME DTYPE d0,d1,..." */
static int query_io(prt_runtime *rt, struct io *io, FILE *info) {
    expect_status(prt_io_count(rt, &io->n_in, &io->n_out), PRT_OK, "io_count");
    CHECK(io->n_in >= 1 && io->n_in <= MAX_IO && io->n_out >= 1 && io->n_out <= MAX_IO, "io counts %zu %zu",
          io->n_in, io->n_out);
    if (io->n_in < 1 || io->n_in > MAX_IO || io->n_out < 1 || io->n_out > MAX_IO) return 0;
    for (int side = 0; side < 2; side++) {
        for (size_t i = 0; i < (side ? io->n_out : io->n_in); i++) {
            struct { int64_t dims[PRT_MAX_RANK]; int64_t canary; } d = {{0}, 77};
            size_t rank = 99;
            expect_status(prt_io_info(rt, side, i, &io->names[side][i], &io->dtype[side][i], d.dims, PRT_MAX_RANK, &rank),
                          PRT_OK, "io_info");
            CHECK(d.canary == 77 && rank >= 1 && rank <= PRT_MAX_RANK, "io_info rank %zu", rank);
            size_t bytes = dtype_size(io->dtype[side][i]);
            for (size_t k = 0; k < rank && k < PRT_MAX_RANK; k++) bytes *= (size_t)d.dims[k];
            io->bytes[side][i] = bytes;
            if (info) {
                fprintf(info, "%s %zu %s %d ", side ? "output" : "input", i, io->names[side][i], (int)io->dtype[side][i]);
                for (size_t k = 0; k < rank && k < PRT_MAX_RANK; k++) fprintf(info, k ? ",%lld" : "%lld", (long long)d.dims[k]);
                fprintf(info, "\n");
            }
        }
    }
    return 1;
}

/* A buffer of `bytes` filled with SENTINEL and 8 more SENTINEL bytes after it (a canary). */
static void *sentinel_buffer(size_t bytes) {
    unsigned char *p = malloc(bytes + 8);
    memset(p, SENTINEL, bytes + 8);
    return p;
}

static int all_sentinel(const void *p, size_t bytes) {
    for (size_t i = 0; i < bytes; i++)
        if (((const unsigned char *)p)[i] != SENTINEL) return 0;
    return 1;
}

static char *joined(const char *a, const char *b) {
    char *s = malloc(strlen(a) + strlen(b) + 1);
    strcpy(s, a);
    strcat(s, b);
    return s;
}

static void cmd_named(const char *dir, const char *options, const char *in_prefix, const char *out_prefix) {
    prt_runtime *rt = NULL;
    expect_status(prt_open(dir, opt(options), &rt), PRT_OK, dir);
    if (!rt) return;
    struct io io;
    char *info_path = joined(out_prefix, "info.txt");
    FILE *info = fopen(info_path, "w");
    CHECK(info != NULL, "cannot write %s", info_path);
    const int ok = query_io(rt, &io, info);
    if (info) fclose(info);
    free(info_path);
    if (!ok) {
        prt_close(rt);
        return;
    }
    void *in[MAX_IO], *out[MAX_IO], *again[MAX_IO];
    for (size_t i = 0; i < io.n_in; i++) {
        char *path = joined(in_prefix, io.names[0][i]);
        char *file = joined(path, ".bin");
        in[i] = read_file(file, io.bytes[0][i]);
        free(path);
        free(file);
    }
    for (size_t j = 0; j < io.n_out; j++) {
        out[j] = sentinel_buffer(io.bytes[1][j]);
        again[j] = sentinel_buffer(io.bytes[1][j]);
    }
    /* all outputs, inputs and outputs in the model's order */
    expect_status(prt_infer_named(rt, io.n_in, io.names[0], (const void *const *)in, io.bytes[0], io.n_out, io.names[1],
                                  out, io.bytes[1]),
                  PRT_OK, "infer_named all");
    double us = 0;
    expect_status(prt_last_latency_us(rt, &us), PRT_OK, "latency");
    CHECK(us > 0, "named call left no latency: %f", us);
    for (size_t j = 0; j < io.n_out; j++) {
        CHECK(all_sentinel((char *)out[j] + io.bytes[1][j], 8), "output %s: written past its bytes", io.names[1][j]);
        char *path = joined(out_prefix, io.names[1][j]);
        char *file = joined(path, ".bin");
        write_file(file, out[j], io.bytes[1][j]);
        free(path);
        free(file);
    }
    /* each output alone: the same bytes; the buffers of the first call (refilled) are never written again */
    for (size_t j = 0; j < io.n_out; j++) memset(out[j], SENTINEL, io.bytes[1][j]);
    for (size_t j = 0; j < io.n_out; j++) {
        memset(again[j], SENTINEL, io.bytes[1][j]);
        expect_status(prt_infer_named(rt, io.n_in, io.names[0], (const void *const *)in, io.bytes[0], 1, &io.names[1][j],
                                      &again[j], &io.bytes[1][j]),
                      PRT_OK, "infer_named one output");
        char path[4096];
        snprintf(path, sizeof path, "%s%s.bin", out_prefix, io.names[1][j]);
        void *first = read_file(path, io.bytes[1][j]);
        CHECK(memcmp(first, again[j], io.bytes[1][j]) == 0, "output %s alone differs from all outputs", io.names[1][j]);
        free(first);
    }
    for (size_t j = 0; j < io.n_out; j++)
        CHECK(all_sentinel(out[j], io.bytes[1][j] + 8), "output %s: a buffer of an earlier call was written",
              io.names[1][j]);
    /* reversed order of inputs and outputs */
    const char *rin_names[MAX_IO], *rout_names[MAX_IO];
    const void *rin[MAX_IO];
    void *rout[MAX_IO];
    size_t rin_bytes[MAX_IO], rout_bytes[MAX_IO];
    for (size_t i = 0; i < io.n_in; i++) {
        rin_names[i] = io.names[0][io.n_in - 1 - i];
        rin[i] = in[io.n_in - 1 - i];
        rin_bytes[i] = io.bytes[0][io.n_in - 1 - i];
    }
    for (size_t j = 0; j < io.n_out; j++) {
        rout_names[j] = io.names[1][io.n_out - 1 - j];
        rout[j] = out[io.n_out - 1 - j];
        rout_bytes[j] = io.bytes[1][io.n_out - 1 - j];
    }
    expect_status(prt_infer_named(rt, io.n_in, rin_names, rin, rin_bytes, io.n_out, rout_names, rout, rout_bytes), PRT_OK,
                  "infer_named reversed");
    for (size_t j = 0; j < io.n_out; j++)
        CHECK(memcmp(out[j], again[j], io.bytes[1][j]) == 0, "output %s: reversed order differs", io.names[1][j]);
    expect_status(prt_warmup(rt, 2), PRT_OK, "warmup on named tensors");
    for (size_t i = 0; i < io.n_in; i++) free(in[i]);
    for (size_t j = 0; j < io.n_out; j++) {
        free(out[j]);
        free(again[j]);
    }
    prt_close(rt);
}

/* One refused prt_infer_named call: status and text, and every output buffer still all SENTINEL. */
static void refused(prt_status got, const char *text, void *const *outs, const size_t *bytes, size_t n, const char *what) {
    expect_error(got, PRT_E_INVALID_ARG, text, what);
    for (size_t j = 0; j < n; j++) CHECK(all_sentinel(outs[j], bytes[j] + 8), "%s: output %zu was written", what, j);
}

static void cmd_named_misuse(const char *dir, const char *options) {
    prt_runtime *rt = NULL;
    expect_status(prt_open(dir, opt(options), &rt), PRT_OK, dir);
    if (!rt) return;
    struct io io;
    if (!query_io(rt, &io, NULL) || io.n_in < 2 || io.n_out < 2 || io.n_in >= MAX_IO) {
        CHECK(0, "named_misuse needs a model of 2+ inputs and 2+ outputs");
        prt_close(rt);
        return;
    }
    for (size_t side = 0; side < 2; side++)
        for (size_t i = 0; i < (side ? io.n_out : io.n_in); i++)
            CHECK(io.dtype[side][i] == PRT_FLOAT32, "named_misuse takes float32 tensors");

    /* the image classifier's calls refuse the model, naming the call to use */
    int64_t dims4[4] = {7, 7, 7, 7}, dims2[2] = {7, 7};
    float f[16] = {0};
    uint8_t pixel[3] = {0};
    expect_error(prt_input_dims(rt, dims4), PRT_E_INCOMPATIBLE, "prt_infer_named", "input_dims of a named model");
    CHECK(dims4[0] == 7 && dims4[3] == 7, "input_dims wrote on failure");
    expect_error(prt_output_dims(rt, dims2), PRT_E_INCOMPATIBLE, "prt_infer_named", "output_dims of a named model");
    expect_error(prt_infer(rt, f, 4, f + 4, 4), PRT_E_INCOMPATIBLE, "inputs and", "prt_infer of a named model");
    expect_error(prt_preprocess_u8(rt, pixel, 1, 1, 3, PRT_RGB, f, 3), PRT_E_INCOMPATIBLE, "prt_infer_named",
                 "preprocess of a named model");
    expect_error(prt_preprocess_u8_len(rt, pixel, 3, 1, 1, 3, PRT_RGB, f, 3), PRT_E_INCOMPATIBLE, "prt_infer_named",
                 "preprocess_len of a named model");

    /* prt_io_info: bounds, optional outputs, dims_cap */
    struct { int64_t dims[1]; int64_t canary[PRT_MAX_RANK]; } small = {{55}, {55, 55, 55, 55, 55, 55, 55, 55}};
    size_t rank = 0, n_in = 0;
    const char *name = NULL;
    expect_status(prt_io_info(rt, 0, io.n_in, &name, NULL, NULL, 0, &rank), PRT_E_INVALID_ARG, "io_info index past end");
    expect_status(prt_io_info(rt, 1, SIZE_MAX, &name, NULL, NULL, 0, &rank), PRT_E_INVALID_ARG, "io_info SIZE_MAX");
    expect_status(prt_io_info(rt, 2, 0, &name, NULL, NULL, 0, &rank), PRT_E_INVALID_ARG, "io_info is_output 2");
    expect_status(prt_io_info(rt, -1, 0, &name, NULL, NULL, 0, &rank), PRT_E_INVALID_ARG, "io_info is_output -1");
    expect_status(prt_io_info(NULL, 0, 0, &name, NULL, NULL, 0, &rank), PRT_E_INVALID_ARG, "io_info NULL handle");
    expect_status(prt_io_info(rt, 0, 0, &name, NULL, NULL, 4, &rank), PRT_E_INVALID_ARG, "io_info NULL dims, cap 4");
    expect_status(prt_io_info(rt, 0, 0, NULL, NULL, NULL, 0, NULL), PRT_OK, "io_info nothing wanted");
    expect_status(prt_io_info(rt, 0, 0, NULL, NULL, NULL, 0, &rank), PRT_OK, "io_info rank only");
    if (rank > 1) {
        rank = 99;
        expect_error(prt_io_info(rt, 0, 0, &name, NULL, small.dims, 1, &rank), PRT_E_INVALID_ARG, "dims_cap is 1",
                     "io_info dims_cap short");
        CHECK(rank == 99 && small.dims[0] == 55, "io_info wrote on failure");
    }
    for (int i = 0; i < PRT_MAX_RANK; i++) CHECK(small.canary[i] == 55, "io_info wrote past dims_cap");
    expect_status(prt_io_count(rt, &n_in, NULL), PRT_OK, "io_count inputs only");
    CHECK(n_in == io.n_in, "io_count");
    expect_status(prt_io_count(NULL, &n_in, NULL), PRT_E_INVALID_ARG, "io_count NULL handle");

    float *in[MAX_IO];
    void *out[MAX_IO];
    for (size_t i = 0; i < io.n_in; i++) {
        in[i] = malloc(io.bytes[0][i]);
        pattern(in[i], io.bytes[0][i] / 4, (unsigned)i);
    }
    for (size_t j = 0; j < io.n_out; j++) out[j] = sentinel_buffer(io.bytes[1][j]);
    const void *const *ins = (const void *const *)in;
    const size_t n_out = io.n_out;
    const char **in_names = io.names[0], **out_names = io.names[1];
    size_t *in_bytes = io.bytes[0], *out_bytes = io.bytes[1];

#define NAMED(ni, inn, inp, inb, no, onn, onp, onb) prt_infer_named(rt, ni, inn, inp, inb, no, onn, onp, onb)
    refused(NAMED(io.n_in, in_names, ins, in_bytes, 0, out_names, out, out_bytes), "at least one", out, out_bytes, n_out,
            "no outputs");
    refused(NAMED(0, in_names, ins, in_bytes, n_out, out_names, out, out_bytes), "no inputs given", out, out_bytes, n_out,
            "no inputs");
    refused(NAMED(io.n_in - 1, in_names, ins, in_bytes, n_out, out_names, out, out_bytes), "is missing", out, out_bytes,
            n_out, "missing input");
    refused(NAMED(io.n_in, NULL, ins, in_bytes, n_out, out_names, out, out_bytes), "must not be NULL", out, out_bytes,
            n_out, "NULL input names");
    refused(NAMED(io.n_in, in_names, NULL, in_bytes, n_out, out_names, out, out_bytes), "must not be NULL", out,
            out_bytes, n_out, "NULL inputs");
    refused(NAMED(io.n_in, in_names, ins, NULL, n_out, out_names, out, out_bytes), "must not be NULL", out, out_bytes,
            n_out, "NULL input bytes");
    refused(NAMED(io.n_in, in_names, ins, in_bytes, n_out, out_names, NULL, out_bytes), "must not be NULL", out,
            out_bytes, n_out, "NULL outputs");
    expect_status(NAMED(io.n_in, in_names, ins, in_bytes, n_out, out_names, out, out_bytes), PRT_OK, "named OK");
    /* the cases below each change one entry of a copy of the good call */
    const char *bad_in_names[MAX_IO], *bad_out_names[MAX_IO];
    const void *bad_ins[MAX_IO];
    void *bad_outs[MAX_IO];
    size_t bad_in_bytes[MAX_IO], bad_out_bytes[MAX_IO];
    char text[512];
#define RESET()                                                                          \
    do {                                                                                 \
        for (size_t k = 0; k < io.n_in; k++) {                                           \
            bad_in_names[k] = in_names[k];                                               \
            bad_ins[k] = in[k];                                                          \
            bad_in_bytes[k] = in_bytes[k];                                               \
        }                                                                                \
        for (size_t k = 0; k < n_out; k++) {                                             \
            bad_out_names[k] = out_names[k];                                             \
            bad_outs[k] = out[k];                                                        \
            bad_out_bytes[k] = out_bytes[k];                                             \
            memset(out[k], SENTINEL, out_bytes[k] + 8);                                  \
        }                                                                                \
    } while (0)
#define BAD(text_, what_) \
    refused(NAMED(io.n_in, bad_in_names, bad_ins, bad_in_bytes, n_out, bad_out_names, bad_outs, bad_out_bytes), text_, \
            out, out_bytes, n_out, what_)
    RESET();
    bad_in_names[1] = "no_such_tensor";
    BAD("'no_such_tensor' is not a graph input", "unknown input name");
    RESET();
    bad_in_names[1] = out_names[0];
    BAD("is not a graph input", "an output's name as an input");
    RESET();
    bad_out_names[0] = in_names[0];
    BAD("is not a graph output", "an input's name as an output");
    RESET();
    bad_in_names[1] = in_names[0];
    snprintf(text, sizeof text, "input '%s' is given twice", in_names[0]);
    BAD(text, "duplicate input");
    RESET();
    bad_out_names[1] = out_names[0];
    snprintf(text, sizeof text, "output '%s' is given twice", out_names[0]);
    BAD(text, "duplicate output");
    RESET();
    bad_in_names[0] = NULL;
    BAD("input_names[0] is NULL", "NULL input name");
    RESET();
    bad_outs[1] = NULL;
    BAD("is NULL", "NULL output buffer");
    RESET();
    bad_ins[0] = NULL;
    BAD("is NULL", "NULL input buffer");
    const size_t wrong[] = {0, 1, 4, SIZE_MAX};
    for (size_t w = 0; w < sizeof wrong / sizeof *wrong; w++) {
        RESET();
        bad_in_bytes[1] = in_bytes[1] + wrong[w]; /* wraps for SIZE_MAX: one byte short */
        snprintf(text, sizeof text, "input '%s' (float32 [", in_names[1]);
        if (bad_in_bytes[1] != in_bytes[1]) BAD(text, "wrong input bytes");
        snprintf(text, sizeof text, "is %zu bytes, input_bytes[1] is %zu", in_bytes[1], bad_in_bytes[1]);
        if (bad_in_bytes[1] != in_bytes[1]) BAD(text, "wrong input bytes (numbers)");
        RESET();
        bad_out_bytes[n_out - 1] = out_bytes[n_out - 1] + wrong[w];
        snprintf(text, sizeof text, "output '%s' (float32 [", out_names[n_out - 1]);
        if (bad_out_bytes[n_out - 1] != out_bytes[n_out - 1]) BAD(text, "wrong output bytes");
    }
    RESET();
    bad_in_bytes[0] = 0;
    BAD("input_bytes[0] is 0", "zero input bytes");
    RESET();
    bad_outs[0] = (char *)out[0] + 1;
    BAD("not aligned", "misaligned output");
    RESET();
    bad_outs[1] = out[0];
    BAD("overlaps", "two outputs in one buffer");
    RESET();
    bad_outs[0] = (void *)in[0];
    BAD("overlaps", "an output in an input's buffer");
    RESET();
    bad_ins[1] = in[0]; /* two inputs reading one buffer is fine */
    expect_status(NAMED(io.n_in, bad_in_names, bad_ins, bad_in_bytes, n_out, bad_out_names, bad_outs, bad_out_bytes),
                  PRT_OK, "two inputs from one buffer");
    RESET();
    const float saved = in[1][2];
    in[1][2] = NAN;
    snprintf(text, sizeof text, "input '%s'[2] is NaN", in_names[1]);
    BAD(text, "NaN input");
    in[1][2] = -INFINITY;
    snprintf(text, sizeof text, "input '%s'[2] is -inf", in_names[1]);
    BAD(text, "-inf input");
    in[1][2] = saved;
    /* a long caller name is read no further than needed and quoted cut short */
    char long_name[2048];
    memset(long_name, 'x', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = 0;
    RESET();
    bad_out_names[0] = long_name;
    BAD("...' is not a graph output", "long output name");
    /* more entries than the model has (n_inputs SIZE_MAX): refused at the first repeat, no entry past it read */
    RESET();
    bad_in_names[io.n_in] = in_names[0];
    bad_ins[io.n_in] = in[0];
    bad_in_bytes[io.n_in] = in_bytes[0];
    snprintf(text, sizeof text, "input '%s' is given twice (input_names[%zu])", in_names[0], io.n_in);
    refused(NAMED(SIZE_MAX, bad_in_names, bad_ins, bad_in_bytes, n_out, bad_out_names, bad_outs, bad_out_bytes), text,
            out, out_bytes, n_out, "n_inputs SIZE_MAX");
    expect_status(prt_infer_named(NULL, io.n_in, in_names, ins, in_bytes, n_out, out_names, out, out_bytes),
                  PRT_E_INVALID_ARG, "named NULL handle");
#undef BAD
#undef RESET
#undef NAMED
    for (size_t i = 0; i < io.n_in; i++) free(in[i]);
    for (size_t j = 0; j < io.n_out; j++) free(out[j]);
    prt_close(rt);
}

int main(int argc, char **argv) {
    int i = 1;
    while (i < argc) {
        const char *c = argv[i];
        int n = !strcmp(c, "misuse") || !strcmp(c, "peak") ? 1 : !strcmp(c, "preprocess") ? 7
                : !strcmp(c, "named_misuse")                    ? 2
                                                                : 4;
        if (i + n >= argc) {
            fprintf(stderr, "capi_test: %s needs %d arguments\n", c, n);
            return 100;
        }
        char **a = argv + i + 1;
        if (!strcmp(c, "misuse")) cmd_misuse(a[0]);
        else if (!strcmp(c, "run")) cmd_run(a[0], a[1], a[2], a[3]);
        else if (!strcmp(c, "status")) cmd_status(a[0], a[1], atoi(a[2]), a[3]);
        else if (!strcmp(c, "threads")) cmd_threads(a[0], a[1], atoi(a[2]), atoi(a[3]));
        else if (!strcmp(c, "peak")) cmd_peak(atol(a[0]));
        else if (!strcmp(c, "named")) cmd_named(a[0], a[1], a[2], a[3]);
        else if (!strcmp(c, "named_misuse")) cmd_named_misuse(a[0], a[1]);
        else if (!strcmp(c, "preprocess"))
            cmd_preprocess(a[0], a[1], (size_t)atol(a[2]), (size_t)atol(a[3]), (size_t)atol(a[4]), atoi(a[5]), a[6]);
        else {
            fprintf(stderr, "capi_test: unknown command %s\n", c);
            return 100;
        }
        i += n + 1;
        if (i < argc && !strcmp(argv[i], "--")) i++;
    }
    printf(failures ? "FAILED %d\n" : "ALL OK\n", failures);
    return failures;
}
