// What happens to the caller's input before inference: an 8-bit HWC image becomes normalised
// NCHW float32 exactly as parnet_deploy.data does it in numpy, and float input is checked finite.
#pragma once

#include <cstddef>
#include <cstdint>

#include "manifest.hpp"

namespace prt {

// The bytes an image of `height` rows, `width` pixels of 3 bytes, rows `row_stride` apart, spans:
// (height - 1) * row_stride + 3 * width. False if that does not fit in a ptrdiff_t (no caller
// could have allocated it, and pointer arithmetic over it would overflow).
bool image_span(size_t height, size_t width, size_t row_stride, size_t *bytes);

// `image`: height rows of `row_stride` bytes, 3 bytes per pixel (RGB, or BGR if `bgr`), spanning
// image_span() bytes; `norm`: 3 values each of mean and std (Runtime::image_api() checked that);
// `out`: 3 * height * width floats, channel-major in RGB order.
void normalize_u8(const uint8_t *image, size_t height, size_t width, size_t row_stride, bool bgr,
                  const Normalization &norm, float *out);

// The index of the first NaN or infinity in x[0, n), or n if every value is finite.
size_t first_non_finite(const float *x, size_t n);

}  // namespace prt
