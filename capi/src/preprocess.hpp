// 8-bit HWC image -> normalised NCHW float32, exactly as parnet_deploy.data does it in numpy.
#pragma once

#include <cstddef>
#include <cstdint>

#include "manifest.hpp"

namespace prt {

// `image`: height rows of `row_stride` bytes, 3 bytes per pixel (RGB, or BGR if `bgr`);
// `out`: 3 * height * width floats, channel-major in RGB order.
void normalize_u8(const uint8_t *image, size_t height, size_t width, size_t row_stride, bool bgr,
                  const Normalization &norm, float *out);

}  // namespace prt
