/* Batch N through libparnet_rt's installed header (tests/test_capi_batch.py):
 *
 *   capi_batch_test COMMAND ARGS... [-- COMMAND ARGS...]...
 *
 *   bounds DIR OPTIONS MIN MAX               prt_batch_bounds is MIN..MAX; prt_input_dims/prt_output_dims
 *                                            report dims[0] = MIN
 *   rows DIR OPTIONS IN.f32 OUT_PREFIX       IN.f32 holds MAX images; for every batch b in MIN..MAX,
 *                                            prt_infer_batch on the first b images writes
 *                                            OUT_PREFIX<b>.f32 (never past output_len: a canary), twice
 *                                            (bitwise the same); where MIN is 1, each image alone to
 *                                            OUT_PREFIX"one.f32"; prt_infer equals prt_infer_batch at MIN;
 *                                            prt_warmup runs
 *   misuse DIR OPTIONS                       batches 0 and MAX+1 refused in one line naming the bounds,
 *                                            wrong input_len/output_len refused, NULLs; nothing written
 *   preprocess DIR COUNT                     prt_preprocess_u8_batch on COUNT padded images (each its own
 *                                            buffer of exactly its span) bitwise equals prt_preprocess_u8_len
 *                                            per image; misuse refused with nothing written
 *   named DIR OPTIONS IN.f32                 prt_io_info dims[0] is -1 on a dynamic model, MIN otherwise;
 *                                            prt_infer_named at every batch (taken from the byte counts)
 *                                            bitwise equals prt_infer_batch; byte counts that are no whole
 *                                            batch, out of bounds, or disagree are refused naming the tensor
 *   threads DIR OPTIONS THREADS CALLS        THREADS threads on one shared handle, each at its own batch
 *                                            (MIN + t % (MAX - MIN + 1)) CALLS times, each bitwise equal to
 *                                            a single-threaded run at that batch
 *   status DIR OPTIONS STATUS TEXT           prt_open returns STATUS and an error containing TEXT
 *
 * Every error message must be one line. Prints one line per failed check, then "ALL OK" or "FAILED n". */
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

#define CANARY 1234.5f
#define SENTINEL 0xA5

static const char *opt(const char *s) { return strcmp(s, "-") == 0 ? NULL : s; }

static int one_line(const char *message) {
    for (const unsigned char *p = (const unsigned char *)message; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return 0;
    return 1;
}

static void expect_error(prt_status got, prt_status want, const char *text, const char *what) {
    CHECK(got == want, "%s: status %d, want %d (%s)", what, (int)got, (int)want, prt_last_error());
    CHECK(got == PRT_OK || one_line(prt_last_error()), "%s: prt_last_error is not one line of text", what);
    CHECK(got == PRT_OK || text == NULL || strstr(prt_last_error(), text) != NULL, "%s: message '%s' lacks '%s'", what,
          prt_last_error(), text);
}

static void expect_ok(prt_status got, const char *what) { expect_error(got, PRT_OK, NULL, what); }

static void pattern(float *x, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(((i + seed * 131u) * 7919u) % 255u) / 127.5f - 1.0f;
}

static void *read_file(const char *path, size_t bytes) {
    FILE *f = fopen(path, "rb");
    void *data = calloc(bytes ? bytes : 1, 1);
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

/* An open handle with its bounds and the elements of one image and of one image's output. */
struct model {
    prt_runtime *rt;
    size_t min, max, sample_in, sample_out, h, w;
};

static int open_model(const char *dir, const char *options, struct model *m) {
    memset(m, 0, sizeof *m);
    expect_ok(prt_open(dir, opt(options), &m->rt), dir);
    if (!m->rt) return 0;
    int64_t in[4], out[2];
    expect_ok(prt_batch_bounds(m->rt, &m->min, &m->max), "batch bounds");
    expect_ok(prt_input_dims(m->rt, in), "input dims");
    expect_ok(prt_output_dims(m->rt, out), "output dims");
    CHECK(m->min >= 1 && m->min <= m->max && m->max <= 1024, "bounds %zu..%zu", m->min, m->max);
    CHECK(in[0] == (int64_t)m->min && out[0] == (int64_t)m->min, "dims[0] %lld, %lld: want the smallest batch %zu",
          (long long)in[0], (long long)out[0], m->min);
    m->sample_in = (size_t)(in[1] * in[2] * in[3]);
    m->sample_out = (size_t)out[1];
    m->h = (size_t)in[2];
    m->w = (size_t)in[3];
    return m->min >= 1 && m->min <= m->max && m->max <= 1024;
}

static void cmd_bounds(const char *dir, const char *options, size_t want_min, size_t want_max) {
    struct model m;
    if (!open_model(dir, options, &m)) return;
    CHECK(m.min == want_min && m.max == want_max, "bounds %zu..%zu, want %zu..%zu", m.min, m.max, want_min, want_max);
    size_t only = 0;
    expect_ok(prt_batch_bounds(m.rt, NULL, &only), "batch bounds, min not wanted");
    CHECK(only == want_max, "max %zu", only);
    expect_ok(prt_batch_bounds(m.rt, &only, NULL), "batch bounds, max not wanted");
    CHECK(only == want_min, "min %zu", only);
    expect_error(prt_batch_bounds(NULL, &only, &only), PRT_E_INVALID_ARG, "NULL", "batch bounds of NULL");
    prt_close(m.rt);
}

static void cmd_rows(const char *dir, const char *options, const char *in_path, const char *out_prefix) {
    struct model m;
    if (!open_model(dir, options, &m)) return;
    float *x = read_file(in_path, m.max * m.sample_in * sizeof(float));
    float *y = malloc((m.max * m.sample_out + 1) * sizeof *y), *again = malloc(m.max * m.sample_out * sizeof *again);
    for (size_t b = m.min; b <= m.max; b++) {
        const size_t n_out = b * m.sample_out;
        y[n_out] = CANARY;
        expect_ok(prt_infer_batch(m.rt, b, x, b * m.sample_in, y, n_out), "infer_batch");
        CHECK(y[n_out] == CANARY, "batch %zu: written past output_len", b);
        expect_ok(prt_infer_batch(m.rt, b, x, b * m.sample_in, again, n_out), "infer_batch again");
        CHECK(memcmp(y, again, n_out * sizeof *y) == 0, "batch %zu: a second run differs", b);
        char path[4096];
        snprintf(path, sizeof path, "%s%zu.f32", out_prefix, b);
        write_file(path, y, n_out * sizeof *y);
    }
    if (m.min == 1) { /* each image alone: OUT_PREFIX"one.f32", MAX rows */
        for (size_t i = 0; i < m.max; i++)
            expect_ok(prt_infer_batch(m.rt, 1, x + i * m.sample_in, m.sample_in, again + i * m.sample_out, m.sample_out),
                      "infer_batch 1");
        char path[4096];
        snprintf(path, sizeof path, "%sone.f32", out_prefix);
        write_file(path, again, m.max * m.sample_out * sizeof *again);
    }
    /* prt_infer is prt_infer_batch at the smallest batch; after the largest, the smallest again */
    expect_ok(prt_infer(m.rt, x, m.min * m.sample_in, y, m.min * m.sample_out), "infer");
    expect_ok(prt_infer_batch(m.rt, m.min, x, m.min * m.sample_in, again, m.min * m.sample_out), "infer_batch min");
    CHECK(memcmp(y, again, m.min * m.sample_out * sizeof *y) == 0, "prt_infer differs from prt_infer_batch(min)");
    expect_ok(prt_warmup(m.rt, 1), "warmup");
    expect_ok(prt_infer_batch(m.rt, m.min, x, m.min * m.sample_in, y, m.min * m.sample_out), "infer_batch after warmup");
    CHECK(memcmp(y, again, m.min * m.sample_out * sizeof *y) == 0, "a run after warmup differs");
    free(x);
    free(y);
    free(again);
    prt_close(m.rt);
}

static int untouched(const float *y, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (y[i] != CANARY) return 0;
    return 1;
}

static void cmd_misuse(const char *dir, const char *options) {
    struct model m;
    if (!open_model(dir, options, &m)) return;
    const size_t n_in = (m.max + 1) * m.sample_in, n_out = (m.max + 1) * m.sample_out + 1;
    float *x = malloc(n_in * sizeof *x), *y = malloc(n_out * sizeof *y);
    pattern(x, n_in, 1);
    for (size_t i = 0; i < n_out; i++) y[i] = CANARY;
    char text[128];
    const size_t outside[] = {0, m.max + 1, m.min > 1 ? m.min - 1 : 0, SIZE_MAX};
    for (size_t k = 0; k < sizeof outside / sizeof *outside; k++) {
        const size_t b = outside[k];
        snprintf(text, sizeof text, "prt_infer_batch: batch %zu is outside the model's bounds %zu..%zu", b, m.min, m.max);
        const size_t bi = b <= m.max + 1 ? b : 1;
        expect_error(prt_infer_batch(m.rt, b, x, bi * m.sample_in, y, bi * m.sample_out), PRT_E_INVALID_ARG, text, text);
        CHECK(strcmp(prt_last_error(), text) == 0, "message '%s', want exactly '%s'", prt_last_error(), text);
    }
    const size_t b = m.max;
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in - 1, y, b * m.sample_out), PRT_E_INVALID_ARG,
                 "expected input_len", "short input");
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in + m.sample_in, y, b * m.sample_out), PRT_E_INVALID_ARG,
                 "expected input_len", "an image too many");
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in, y, b * m.sample_out + 1), PRT_E_INVALID_ARG,
                 "expected input_len", "long output");
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in, y, b * m.sample_out - 1), PRT_E_INVALID_ARG,
                 "expected input_len", "short output");
    if (m.max > m.min)  /* the lengths of the smallest batch with the largest */
        expect_error(prt_infer_batch(m.rt, b, x, m.min * m.sample_in, y, m.min * m.sample_out), PRT_E_INVALID_ARG,
                     "expected input_len", "lengths of another batch");
    expect_error(prt_infer_batch(m.rt, b, NULL, b * m.sample_in, y, b * m.sample_out), PRT_E_INVALID_ARG, "NULL",
                 "NULL input");
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in, NULL, b * m.sample_out), PRT_E_INVALID_ARG, "NULL",
                 "NULL output");
    expect_error(prt_infer_batch(NULL, b, x, b * m.sample_in, y, b * m.sample_out), PRT_E_INVALID_ARG, "NULL",
                 "NULL handle");
    CHECK(untouched(y, n_out), "a refused call wrote its output");
    x[b * m.sample_in - 1] = NAN;
    snprintf(text, sizeof text, "input[%zu] is NaN", b * m.sample_in - 1);
    expect_error(prt_infer_batch(m.rt, b, x, b * m.sample_in, y, b * m.sample_out), PRT_E_INVALID_ARG, text,
                 "NaN in the last image");
    CHECK(untouched(y, n_out), "a refused call wrote its output");
    pattern(x, n_in, 1);
    expect_ok(prt_infer_batch(m.rt, b, x, b * m.sample_in, y, b * m.sample_out), "infer_batch max");
    CHECK(y[b * m.sample_out] == CANARY, "written past output_len");
    if (m.min == m.max) { /* a static model: prt_infer and prt_infer_batch(N) are the same call */
        expect_ok(prt_infer(m.rt, x, b * m.sample_in, y, b * m.sample_out), "infer static");
    }
    free(x);
    free(y);
    prt_close(m.rt);
}

static void cmd_preprocess(const char *dir, size_t count) {
    struct model m;
    if (!open_model(dir, "-", &m) || count < 2 || count > 64) {
        CHECK(count >= 2 && count <= 64, "preprocess COUNT in 2..64");
        prt_close(m.rt);
        return;
    }
    const size_t h = m.h, w = m.w, stride = 3 * w + 7, span = (h - 1) * stride + 3 * w, n = m.sample_in;
    uint8_t *images[64];
    size_t lens[64];
    unsigned state = 12345u;
    for (size_t i = 0; i < count; i++) {
        images[i] = malloc(span);  /* exactly the span: a read past it is a sanitizer or valgrind error */
        for (size_t k = 0; k < span; k++) {
            state = state * 1103515245u + 12345u;
            images[i][k] = (uint8_t)(state >> 16);
        }
        lens[i] = span;
    }
    const size_t total = count * n;
    float *batch = malloc((total + 1) * sizeof *batch), *one = malloc(n * sizeof *one);
    for (int order = PRT_RGB; order <= PRT_BGR; order++) {
        batch[total] = CANARY;
        expect_ok(prt_preprocess_u8_batch(m.rt, (const uint8_t *const *)images, lens, count, h, w, stride, order, batch,
                                          total),
                  "preprocess batch");
        CHECK(batch[total] == CANARY, "preprocess batch wrote past input_len");
        for (size_t i = 0; i < count; i++) {
            expect_ok(prt_preprocess_u8_len(m.rt, images[i], lens[i], h, w, stride, order, one, n), "preprocess one");
            CHECK(memcmp(one, batch + i * n, n * sizeof *one) == 0, "order %d image %zu: batch differs from one by one",
                  order, i);
        }
    }
    /* misuse: every refusal writes nothing */
    for (size_t i = 0; i <= total; i++) batch[i] = CANARY;
    const uint8_t *const *imgs = (const uint8_t *const *)images;
    lens[1] = span - 1;
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, stride, PRT_RGB, batch, total), PRT_E_INVALID_ARG,
                 "images[1]: the image spans", "one byte short");
    CHECK(strstr(prt_last_error(), "image_lens[1] is") != NULL, "message: %s", prt_last_error());
    lens[1] = span;
    uint8_t *kept = images[count - 1];
    images[count - 1] = NULL;
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, stride, PRT_RGB, batch, total), PRT_E_INVALID_ARG,
                 "is NULL", "a NULL image");
    images[count - 1] = kept;
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, stride, PRT_RGB, batch, total - 1),
                 PRT_E_INVALID_ARG, "expected input_len", "short input_len");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, stride, PRT_RGB, batch, total + n),
                 PRT_E_INVALID_ARG, "expected input_len", "input_len of one image more");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, SIZE_MAX / 2, h, w, stride, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "expected input_len", "count overflowing");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, 0, h, w, stride, PRT_RGB, batch, 0), PRT_E_INVALID_ARG,
                 "count", "count 0");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, 3 * w - 1, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "row_stride", "short stride");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, SIZE_MAX, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "too large", "huge stride");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h + 1, w, stride, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "resize first", "wrong size");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, lens, count, h, w, stride, 7, batch, total), PRT_E_INVALID_ARG,
                 "order", "bad order");
    expect_error(prt_preprocess_u8_batch(m.rt, NULL, lens, count, h, w, stride, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "NULL", "NULL images");
    expect_error(prt_preprocess_u8_batch(m.rt, imgs, NULL, count, h, w, stride, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "NULL", "NULL image_lens");
    expect_error(prt_preprocess_u8_batch(NULL, imgs, lens, count, h, w, stride, PRT_RGB, batch, total),
                 PRT_E_INVALID_ARG, "NULL", "NULL handle");
    CHECK(untouched(batch, total + 1), "a refused preprocess wrote its input");
    for (size_t i = 0; i < count; i++) free(images[i]);
    free(batch);
    free(one);
    prt_close(m.rt);
}

static int all_sentinel(const void *p, size_t bytes) {
    for (size_t i = 0; i < bytes; i++)
        if (((const unsigned char *)p)[i] != SENTINEL) return 0;
    return 1;
}

static void cmd_named(const char *dir, const char *options, const char *in_path) {
    struct model m;
    if (!open_model(dir, options, &m)) return;
    const char *in_name = NULL, *out_name = NULL;
    int64_t in_dims[PRT_MAX_RANK], out_dims[PRT_MAX_RANK];
    size_t rank = 0;
    expect_ok(prt_io_info(m.rt, 0, 0, &in_name, NULL, in_dims, PRT_MAX_RANK, &rank), "io_info input");
    expect_ok(prt_io_info(m.rt, 1, 0, &out_name, NULL, out_dims, PRT_MAX_RANK, &rank), "io_info output");
    const int64_t want = m.min == m.max ? (int64_t)m.min : -1;
    CHECK(in_dims[0] == want && out_dims[0] == want, "io_info dims[0] %lld, %lld: want %lld", (long long)in_dims[0],
          (long long)out_dims[0], (long long)want);
    float *x = read_file(in_path, m.max * m.sample_in * sizeof(float));
    const size_t out_cap = (m.max + 1) * m.sample_out * sizeof(float) + 8;
    unsigned char *y = malloc(out_cap);
    float *ref = malloc(m.max * m.sample_out * sizeof *ref);
    const char *in_names[1] = {in_name}, *out_names[1] = {out_name};
    const void *ins[1] = {x};
    void *outs[1] = {y};
    for (size_t b = m.min; b <= m.max; b++) {
        size_t in_bytes = b * m.sample_in * sizeof(float), out_bytes = b * m.sample_out * sizeof(float);
        memset(y, SENTINEL, out_cap);
        expect_ok(prt_infer_named(m.rt, 1, in_names, ins, &in_bytes, 1, out_names, outs, &out_bytes), "infer_named");
        CHECK(all_sentinel(y + out_bytes, out_cap - out_bytes), "batch %zu: infer_named wrote past its output", b);
        expect_ok(prt_infer_batch(m.rt, b, x, b * m.sample_in, ref, b * m.sample_out), "infer_batch");
        CHECK(memcmp(y, ref, out_bytes) == 0, "batch %zu: infer_named differs from infer_batch", b);
    }
    /* byte counts that are no whole batch, outside the bounds, or outputs of another batch: refused, nothing written */
    memset(y, SENTINEL, out_cap);
    const size_t sample = m.sample_in * sizeof(float), out_sample = m.sample_out * sizeof(float);
    struct { size_t in_bytes, out_bytes; const char *text; } bad[] = {
        {m.max * sample + 4, m.max * out_sample, "input '"},
        {(m.max + 1) * sample, (m.max + 1) * out_sample, "input '"},
        {m.min * sample - 4, m.min * out_sample, "input '"},
        {m.min * sample, m.min * out_sample + 4, "output '"},
        {m.max * sample, m.min * out_sample, "output '"},
        {0, 0, "input '"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        if (m.min == m.max && bad[k].in_bytes == m.max * sample && bad[k].out_bytes == m.min * out_sample) continue;
        char what[64];
        snprintf(what, sizeof what, "named bad bytes %zu", k);
        expect_error(prt_infer_named(m.rt, 1, in_names, ins, &bad[k].in_bytes, 1, out_names, outs, &bad[k].out_bytes),
                     PRT_E_INVALID_ARG, bad[k].text, what);
    }
    if (m.min == 1 && m.max > 1) {
        size_t in_bytes = 5 * sample / 2, out_bytes = 2 * out_sample;
        expect_error(prt_infer_named(m.rt, 1, in_names, ins, &in_bytes, 1, out_names, outs, &out_bytes),
                     PRT_E_INVALID_ARG, "not a whole batch", "half an image");
    }
    CHECK(all_sentinel(y, out_cap), "a refused named call wrote its output");
    free(x);
    free(y);
    free(ref);
    prt_close(m.rt);
}

struct job {
    prt_runtime *rt;
    size_t batch, n_in, n_out;
    int calls, wrong;
    const float *input, *expected;
};

static void *worker(void *arg) {
    struct job *j = arg;
    float *y = malloc(j->n_out * sizeof *y);
    for (int c = 0; c < j->calls; c++)
        if (prt_infer_batch(j->rt, j->batch, j->input, j->n_in, y, j->n_out) != PRT_OK ||
            memcmp(y, j->expected, j->n_out * sizeof *y) != 0)
            j->wrong++;
    free(y);
    return NULL;
}

static void cmd_threads(const char *dir, const char *options, int threads, int calls) {
    struct model m;
    if (!open_model(dir, options, &m) || threads < 1 || threads > 16) {
        CHECK(threads >= 1 && threads <= 16, "threads in 1..16");
        prt_close(m.rt);
        return;
    }
    const size_t n_in = m.max * m.sample_in, n_out = m.max * m.sample_out;
    float *x = malloc(n_in * sizeof *x), *expected = malloc((size_t)threads * n_out * sizeof *expected);
    pattern(x, n_in, 3);
    pthread_t t[16];
    struct job jobs[16];
    for (int i = 0; i < threads; i++) {
        const size_t b = m.min + (size_t)i % (m.max - m.min + 1);
        jobs[i] = (struct job){m.rt, b, b * m.sample_in, b * m.sample_out, calls, 0, x, expected + (size_t)i * n_out};
        expect_ok(prt_infer_batch(m.rt, b, x, b * m.sample_in, expected + (size_t)i * n_out, b * m.sample_out),
                  "reference");
    }
    for (int i = 0; i < threads; i++) pthread_create(&t[i], NULL, worker, &jobs[i]);
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        CHECK(jobs[i].wrong == 0, "thread %d (batch %zu): %d of %d calls failed or differ bitwise", i, jobs[i].batch,
              jobs[i].wrong, calls);
    }
    free(x);
    free(expected);
    prt_close(m.rt);
}

static void cmd_status(const char *dir, const char *options, int want, const char *text) {
    prt_runtime *rt = (prt_runtime *)0x1;
    prt_status got = prt_open(dir, opt(options), &rt);
    CHECK((int)got == want, "%s: status %d, want %d (%s)", dir, (int)got, want, prt_last_error());
    CHECK(got == PRT_OK || rt == NULL, "%s: failed open left *out set", dir);
    CHECK(got == PRT_OK || strstr(prt_last_error(), text) != NULL, "%s: message '%s' lacks '%s'", dir, prt_last_error(),
          text);
    CHECK(one_line(prt_last_error()), "%s: prt_last_error is not one line of text", dir);
    if (got == PRT_OK) prt_close(rt);
}

int main(int argc, char **argv) {
    int i = 1;
    while (i < argc) {
        int end = i;
        while (end < argc && strcmp(argv[end], "--") != 0) end++;
        const int n = end - i;
        char **a = argv + i;
        if (n == 5 && strcmp(a[0], "bounds") == 0)
            cmd_bounds(a[1], a[2], (size_t)strtoull(a[3], NULL, 10), (size_t)strtoull(a[4], NULL, 10));
        else if (n == 5 && strcmp(a[0], "rows") == 0)
            cmd_rows(a[1], a[2], a[3], a[4]);
        else if (n == 3 && strcmp(a[0], "misuse") == 0)
            cmd_misuse(a[1], a[2]);
        else if (n == 3 && strcmp(a[0], "preprocess") == 0)
            cmd_preprocess(a[1], (size_t)strtoull(a[2], NULL, 10));
        else if (n == 4 && strcmp(a[0], "named") == 0)
            cmd_named(a[1], a[2], a[3]);
        else if (n == 5 && strcmp(a[0], "threads") == 0)
            cmd_threads(a[1], a[2], atoi(a[3]), atoi(a[4]));
        else if (n == 5 && strcmp(a[0], "status") == 0)
            cmd_status(a[1], a[2], atoi(a[3]), a[4]);
        else {
            printf("unknown command or arguments: %s (%d args)\n", a[0], n);
            return 100;
        }
        i = end + 1;
    }
    if (failures == 0) printf("ALL OK\n");
    else printf("FAILED %d\n", failures);
    return failures > 99 ? 99 : failures;
}
