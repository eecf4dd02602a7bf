/*
 * parnet_rt.h - C API of the parnet-deploy runtime (C99, usable from C++).
 *
 * ABI version 1. Functions are only ever added; existing signatures and status values
 * never change within a major version. Check prt_abi_version() == PRT_ABI_VERSION at start-up.
 * Library 0.2.0 added prt_preprocess_u8 (ABI 1 still: an addition, nothing changed). Library
 * 0.3.0 added prt_preprocess_u8_len and the check_finite option (ABI 1 still); prt_infer now
 * refuses non-finite input by default, prt_preprocess_u8 strides whose image cannot exist, and
 * prt_open manifests that are not strict JSON or whose dtypes are not the model's. Library 0.4.0
 * added prt_io_count, prt_io_info and prt_infer_named (ABI 1 still): models with several named
 * inputs and outputs of any manifest dtype now open; prt_infer, prt_input_dims, prt_output_dims
 * and prt_preprocess_u8(_len) refuse them (PRT_E_INCOMPATIBLE) and stay the image classifier's calls.
 * Library 0.5.0 added prt_batch_bounds, prt_infer_batch and prt_preprocess_u8_batch (ABI 1 still):
 * exports with a bounded dynamic batch (manifest shapes whose dim 0 is {"min": a, "max": b}, and
 * engines built from them) now open and run any batch in a..b; prt_io_info reports such a dim 0 as
 * -1 and prt_infer_named takes the batch from the byte counts. Static exports behave as before.
 *
 * The library is native C++ on OpenVINO's runtime; no Python interpreter runs in the process.
 * It reads export directories (parnet-export, parnet-quantize: fp32, fp16, int8 Q/DQ ONNX) and
 * engine directories built with `parnet-build --backend openvino` (compiled blobs).
 *
 * Ownership: the caller owns every buffer it passes; the library reads or writes a buffer only
 * during a call that passes it (it may remember the last addresses, to skip re-binding the same
 * buffers). Strings returned by the library stay valid until the next failing call on the same
 * thread (prt_last_error) or forever (prt_version).
 *
 * Handles are opaque values, never reused: a closed handle passed again gives PRT_E_INVALID_ARG.
 *
 * Trust: a directory is untrusted input. prt_open checks that the manifest is strict JSON (UTF-8
 * without a byte order mark, no NaN or Infinity, no key twice in an object, nested at most 64
 * deep) and its structure, that every file it reads is a regular file listed in the manifest,
 * directly inside the directory (no links, no "..") with the recorded size and then sha256, and
 * that the shapes and dtypes the manifest claims are the model's own; anything else is
 * PRT_E_INCOMPATIBLE. Text quoted from a manifest in messages is cut short and has every byte
 * outside printable ASCII written as \xNN: a message is always one line.
 *
 * Threads: every function may be called from any thread. One handle may be shared by several
 * threads: concurrent prt_infer (and prt_infer_named) calls on it each take their own set of
 * infer requests from a pool (grown on demand), so they run in parallel. Separate handles are
 * fully independent. prt_last_error() is thread-local: it describes the last failure on the
 * calling thread.
 */
#ifndef PARNET_RT_H
#define PARNET_RT_H

#include <stddef.h>
#include <stdint.h>

#define PRT_ABI_VERSION 1

#ifdef __cplusplus
extern "C" {
#endif

typedef struct prt_runtime prt_runtime;

typedef enum {
    PRT_OK = 0,
    PRT_E_INVALID_ARG = 1,   /* NULL pointer, wrong length, bad option, path not UTF-8, non-finite input,
                                an image stride or length that cannot hold the image */
    PRT_E_NOT_FOUND = 2,     /* no export/engine directory at path, or a file listed in it is missing */
    PRT_E_INCOMPATIBLE = 3,  /* malformed or lying manifest, files that do not match it (size, hash, links),
                                shapes or dtypes the model does not have, engines built for another CPU/version/backend */
    PRT_E_RUNTIME = 4,       /* inference or model compilation failed */
    PRT_E_NO_MEMORY = 5
} prt_status;

/* Element type of a named tensor (prt_io_info). Since 0.4.0; exports (manifest schema version 3)
   hold any of them. */
typedef enum {
    PRT_FLOAT32 = 0,
    PRT_FLOAT16 = 1, /* IEEE 754 binary16 */
    PRT_INT8 = 2,
    PRT_UINT8 = 3,
    PRT_INT32 = 4,
    PRT_INT64 = 5,
    PRT_BOOL = 6     /* one byte per element, 0 or 1 */
} prt_dtype;

/* The largest rank of a tensor (prt_io_info never reports more). Since 0.4.0. */
#define PRT_MAX_RANK 8

typedef enum {
    PRT_RGB = 0, /* pixel bytes in R, G, B order */
    PRT_BGR = 1  /* pixel bytes in B, G, R order (OpenCV, most camera drivers) */
} prt_channel_order;

/* Library version, e.g. "0.5.0". */
const char *prt_version(void);
/* PRT_ABI_VERSION of the library actually loaded. */
int prt_abi_version(void);

/* Open an export (parnet-export) or engine (parnet-build --backend openvino) directory.
   options: NULL or "key=value;key=value", keys:
     mode            whole (default: one graph) | streams (one infer request per subgraph; independent
                     subgraphs run concurrently when threads allow two per subgraph; on 2 or 3
                     threads, side by side in waves that share the threads)
     threads         positive integer, in all (default: all cores)
     device          cpu (= CPU, default) or an OpenVINO device name: CPU, GPU, GPU.1, NPU
     precision_hint  f32 | bf16 | f16: the float precision OpenVINO computes in (default f32; int8 and
                     fp16 exports keep their own quantization / rounding). bf16 on a CPU needs native
                     bf16; f16 is for GPU/NPU. Engines: only their built precision.
     backend         openvino (the only backend of this library; kept for compatibility)
     check_finite    1 (default) | 0: whether prt_infer refuses an input holding a NaN or an infinity
                     (OpenVINO turns them into ordinary-looking logits). The check is one pass over
                     the input; 0 skips it, for callers whose inputs are finite by construction
                     (prt_preprocess_u8 output always is).
   Unknown keys, repeated keys or bad values give PRT_E_INVALID_ARG. On success *out is a new
   handle; on failure *out is NULL. */
prt_status prt_open(const char *path, const char *options, prt_runtime **out);

/* Input dims N, C, H, W and output dims N, classes, as the compiled model reports them, N being the
   batch prt_infer runs (a dynamic model's smallest batch; prt_batch_bounds). Writes exactly 4
   (resp. 2) values. These two, prt_infer and prt_preprocess_u8(_len) are the image
   classifier's calls: a model whose graph is not one float32 N x 3 x H x W input and one float32
   N x classes output, or whose export declares no normalization of 3 values for that input, opens
   (use prt_io_info and prt_infer_named), but they give PRT_E_INCOMPATIBLE. */
prt_status prt_input_dims(const prt_runtime *rt, int64_t dims[4]);
prt_status prt_output_dims(const prt_runtime *rt, int64_t dims[2]);

/* Run one image. input: N*C*H*W floats (NCHW, normalised as the export's manifest says; see
   prt_preprocess_u8); output: N*classes floats. Lengths are element counts and must equal the
   model's tensors exactly. An input holding a NaN or an infinity is PRT_E_INVALID_ARG, the message
   naming the first such index, unless the handle was opened with check_finite=0. On a model with a
   dynamic batch, N is its smallest batch: prt_infer is prt_infer_batch(rt, min, ...). */
prt_status prt_infer(prt_runtime *rt, const float *input, size_t input_len, float *output, size_t output_len);

/* The batch bounds of the model (since 0.5.0): an export with a bounded dynamic batch (every graph
   input and output has dim 0 in min..max) gives its bounds; any other model min = max = dim 0 of
   its first graph input (a static batch-N image classifier: N, N). Either pointer may be NULL. */
prt_status prt_batch_bounds(const prt_runtime *rt, size_t *min_batch, size_t *max_batch);

/* prt_infer on `batch` images (since 0.5.0): input batch*C*H*W floats (the images one after the
   other, each NCHW as in prt_infer), output batch*classes floats (row i: image i's logits, the same
   as running image i alone, up to float rounding). A batch outside prt_batch_bounds is
   PRT_E_INVALID_ARG ("batch 9 is outside the model's bounds 1..4"); input_len and output_len must be
   exactly batch*C*H*W and batch*classes (PRT_E_INVALID_ARG otherwise); nothing is written past
   output_len elements. Non-finite input and threads as prt_infer. */
prt_status prt_infer_batch(prt_runtime *rt, size_t batch, const float *input, size_t input_len, float *output,
                           size_t output_len);

/* Turn an 8-bit HWC image (3 channels, `height` x `width` = the model's H x W, rows
   `row_stride` bytes apart, row_stride >= 3 * width; order: a prt_channel_order) into the NCHW float input:
   x[c][y][x] = (rgb[y][x][c] / 255 - mean[c]) / std[c] in float32, with the manifest's mean
   and std; the same numbers as parnet-deploy's Python loaders. input_len must be C*H*W.
   The image spans (height - 1) * row_stride + 3 * width bytes from `image`; a row_stride for which
   that overflows (exceeds PTRDIFF_MAX) is PRT_E_INVALID_ARG. Prefer prt_preprocess_u8_len, which
   also checks the span against the buffer's length. */
prt_status prt_preprocess_u8(const prt_runtime *rt, const uint8_t *image, size_t height, size_t width,
                             size_t row_stride, int order, float *input, size_t input_len);

/* prt_preprocess_u8 on a buffer of `image_len` bytes: PRT_E_INVALID_ARG unless the image's span,
   (height - 1) * row_stride + 3 * width bytes, fits in it (the last row needs no padding). Since 0.3.0. */
prt_status prt_preprocess_u8_len(const prt_runtime *rt, const uint8_t *image, size_t image_len, size_t height,
                                 size_t width, size_t row_stride, int order, float *input, size_t input_len);

/* prt_preprocess_u8_len for `count` images at once (since 0.5.0), the input of prt_infer_batch with
   batch = count: images[i] (image_lens[i] bytes) becomes floats [i*C*H*W, (i+1)*C*H*W) of input,
   bitwise equal to prt_preprocess_u8_len on that image alone. All images share height, width,
   row_stride and order. count >= 1 and input_len must be count*C*H*W; each image is checked as by
   prt_preprocess_u8_len (the message names images[i]), all before anything is written: a failure
   writes nothing. count is not checked against prt_batch_bounds (preprocess in any portions). */
prt_status prt_preprocess_u8_batch(const prt_runtime *rt, const uint8_t *const *images, const size_t *image_lens,
                                   size_t count, size_t height, size_t width, size_t row_stride, int order, float *input,
                                   size_t input_len);

/* Named tensors (since 0.4.0): any model, several inputs and outputs, each as the model has it.
   Indices count the graph's inputs (is_output 0) or outputs (is_output 1) in the manifest's order.
   prt_io_count: how many graph inputs and outputs the model has (either pointer may be NULL).
   prt_io_info: tensor `index`'s name (valid until prt_close of rt), element type, rank and dims
   (row-major: the last dim varies fastest), as the compiled model reports them; a tensor holds
   product(dims) elements of that type, densely packed. Names are compared byte for byte (model
   names are at most 256 bytes; no more than 257 bytes of a caller's name are read). Each of name,
   dtype, rank may be NULL (not wanted). dims: NULL with dims_cap 0 (not wanted), or room for
   dims_cap values: the library writes exactly rank values and never more than dims_cap; a rank
   above dims_cap is PRT_E_INVALID_ARG with nothing written (PRT_MAX_RANK always suffices). On a
   model with a dynamic batch (since 0.5.0) dims[0] is -1 for every graph input and output: the
   batch, any in prt_batch_bounds; the tensor holds batch * product(dims[1..]) elements. */
prt_status prt_io_count(const prt_runtime *rt, size_t *n_inputs, size_t *n_outputs);
prt_status prt_io_info(const prt_runtime *rt, int is_output, size_t index, const char **name, prt_dtype *dtype,
                       int64_t *dims, size_t dims_cap, size_t *rank);

/* Run the model on named tensors. Every graph input is given exactly once (any order); any
   non-empty set of graph outputs is asked for, each at most once (the others are computed but not
   returned). inputs[i] holds input_bytes[i] bytes for the input named input_names[i]; outputs[j]
   receives output_bytes[j] bytes for the output named output_names[j]. Each byte count must equal
   the model's size of that tensor exactly (product of dims times the element size; prt_io_info),
   each buffer must be aligned to its element size, and no output may overlap another buffer.
   Anything else (an unknown, repeated or missing name, a wrong byte count, a NULL pointer) is
   PRT_E_INVALID_ARG naming the tensor (with expected and given bytes), and nothing is written to
   any output. On a model with a dynamic batch (since 0.5.0) the batch is taken from the byte counts:
   the first input given must hold a whole number of samples (its bytes / the bytes of one sample,
   product(dims[1..]) elements), within prt_batch_bounds; every other input and every output must
   then be exactly its size at that batch (PRT_E_INVALID_ARG naming the tensor otherwise). float32 and float16 inputs holding a NaN or an infinity are PRT_E_INVALID_ARG as
   in prt_infer, unless the handle was opened with check_finite=0. Works in whole and streams
   mode; threads as prt_infer. A PRT_E_RUNTIME failure may leave outputs partly written. */
prt_status prt_infer_named(prt_runtime *rt, size_t n_inputs, const char *const *input_names, const void *const *inputs,
                           const size_t *input_bytes, size_t n_outputs, const char *const *output_names,
                           void *const *outputs, const size_t *output_bytes);

/* Run `iterations` inferences on zeros, every graph output computed (first calls allocate and tune);
   on a model with a dynamic batch, `iterations` at its smallest and `iterations` at its largest batch. */
prt_status prt_warmup(prt_runtime *rt, int iterations);

/* Wall time of the last successful prt_infer or prt_infer_named on this handle, in microseconds (NaN before any). */
prt_status prt_last_latency_us(const prt_runtime *rt, double *microseconds);

/* Message of the last failure on this thread ("" if none). */
const char *prt_last_error(void);

/* Release a handle; NULL, or a handle already closed, is a no-op. A call running on the handle in
   another thread finishes normally (the runtime is freed when it returns). */
void prt_close(prt_runtime *rt);

#ifdef __cplusplus
}
#endif

#endif /* PARNET_RT_H */
