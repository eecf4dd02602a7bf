/*
 * parnet_rt.h - C API of the parnet-deploy runtime (C99, usable from C++).
 *
 * ABI version 1. Functions are only ever added; existing signatures and status values
 * never change within a major version. Check prt_abi_version() == PRT_ABI_VERSION at start-up.
 *
 * Ownership: the caller owns every buffer it passes; the library copies nothing it keeps.
 * Strings returned by the library stay valid until the next failing call on the same thread
 * (prt_last_error) or forever (prt_version).
 *
 * Threads: every function may be called from any thread. One handle may be shared by several
 * threads (calls on it may run concurrently); separate handles are fully independent.
 * prt_last_error() is thread-local: it describes the last failure on the calling thread.
 *
 * Implementation note: this library currently embeds a Python interpreter running the
 * parnet-deploy runtime (see README, "C API"); nothing in this header depends on it, so a
 * native implementation can replace it without changing callers.
 */
#ifndef PARNET_RT_H
#define PARNET_RT_H

#include <stddef.h>
#include <stdint.h>

#define PRT_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

/* BEGIN API (parsed by the library build: plain declarations only) */
typedef struct prt_runtime prt_runtime;

typedef enum {
    PRT_OK = 0,
    PRT_E_INVALID_ARG = 1,   /* NULL pointer, wrong length, bad option */
    PRT_E_NOT_FOUND = 2,     /* no export/engine directory at path, or a file listed in it is missing */
    PRT_E_INCOMPATIBLE = 3,  /* malformed manifest, files that do not match their manifest (size, hash), or engines built for another device/version */
    PRT_E_RUNTIME = 4,       /* inference or start-up failed */
    PRT_E_NO_MEMORY = 5
} prt_status;

/* Library version, e.g. "0.1.0". */
const char *prt_version(void);
/* PRT_ABI_VERSION of the library actually loaded. */
int prt_abi_version(void);

/* Open an export (parnet-export) or engine (parnet-build) directory. options: NULL or
   "key=value;key=value" with keys backend (onnxruntime|tensorrt), mode (whole|streams|distributed),
   threads (int), device (cpu|cuda:N). On success *out is a new handle. */
prt_status prt_open(const char *path, const char *options, prt_runtime **out);

/* Input dims N, C, H, W and output dims N, classes. */
prt_status prt_input_dims(const prt_runtime *rt, int64_t dims[4]);
prt_status prt_output_dims(const prt_runtime *rt, int64_t dims[2]);

/* Run one image. input: N*C*H*W floats (NCHW, normalised as the export's manifest says);
   output: N*classes floats. Lengths are element counts and must match exactly. */
prt_status prt_infer(prt_runtime *rt, const float *input, size_t input_len, float *output, size_t output_len);

/* Run `iterations` inferences on zeros (first calls allocate and tune). */
prt_status prt_warmup(prt_runtime *rt, int iterations);

/* Wall time of the last successful prt_infer on this handle, in microseconds. */
prt_status prt_last_latency_us(const prt_runtime *rt, double *microseconds);

/* Message of the last failure on this thread ("" if none). */
const char *prt_last_error(void);

/* Release a handle; NULL is a no-op. */
void prt_close(prt_runtime *rt);
/* END API */

#ifdef __cplusplus
}
#endif

#endif /* PARNET_RT_H */
