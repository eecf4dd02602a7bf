#include "preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace prt {

bool image_span(size_t height, size_t width, size_t row_stride, size_t *bytes) {
    constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<std::ptrdiff_t>::max());
    if (height == 0 || width == 0 || width > kMax / 3) return false;
    const size_t last_row = 3 * width;
    if (row_stride != 0 && height - 1 > (kMax - last_row) / row_stride) return false;
    *bytes = (height - 1) * row_stride + last_row;
    return true;
}

void normalize_u8(const uint8_t *image, size_t height, size_t width, size_t row_stride, bool bgr,
                  const Normalization &norm, float *out) {
    // An 8-bit value has 256 possible results per channel: compute them once, with the same float32
    // operations, in the same order, as (rgb / 255 - mean) / std in numpy (so the output is bitwise
    // the same), then look them up: one pass over the image instead of two divisions per byte.
    float table[3][256];
    for (size_t c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++)
            table[c][v] = (static_cast<float>(v) / 255.0f - norm.mean[c]) / norm.std[c];
    const size_t plane = height * width;
    const float *t0 = table[bgr ? 2 : 0], *t1 = table[1], *t2 = table[bgr ? 0 : 2];  // by source byte
    float *d0 = out + (bgr ? 2 : 0) * plane, *d1 = out + plane, *d2 = out + (bgr ? 0 : 2) * plane;
    for (size_t y = 0; y < height; y++) {
        const uint8_t *row = image + y * row_stride;
        const size_t at = y * width;
        for (size_t x = 0; x < width; x++) {
            d0[at + x] = t0[row[3 * x]];
            d1[at + x] = t1[row[3 * x + 1]];
            d2[at + x] = t2[row[3 * x + 2]];
        }
    }
}

size_t first_non_finite(const float *x, size_t n) {
    // Blocks of branch-free integer tests on the exponent bits (all ones: NaN or infinity), which
    // the compiler vectorizes; only a block that has one is searched element by element.
    constexpr size_t kBlock = 1024;
    for (size_t start = 0; start < n; start += kBlock) {
        const size_t end = std::min(n, start + kBlock);
        uint32_t any = 0;
        for (size_t i = start; i < end; i++) {
            uint32_t bits;
            std::memcpy(&bits, x + i, sizeof bits);
            any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
        }
        if (any)
            for (size_t i = start; i < end; i++)
                if (!std::isfinite(x[i])) return i;
    }
    return n;
}

}  // namespace prt
