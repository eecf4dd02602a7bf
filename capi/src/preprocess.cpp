#include "preprocess.hpp"

namespace prt {

void normalize_u8(const uint8_t *image, size_t height, size_t width, size_t row_stride, bool bgr,
                  const Normalization &norm, float *out) {
    const size_t plane = height * width;
    for (size_t c = 0; c < 3; c++) {
        const size_t src = bgr ? 2 - c : c;
        const float mean = norm.mean[c], std = norm.std[c];
        float *dst = out + c * plane;
        for (size_t y = 0; y < height; y++) {
            const uint8_t *row = image + y * row_stride;
            for (size_t x = 0; x < width; x++)
                // the same float32 operations, in the same order, as (rgb / 255 - mean) / std in numpy
                dst[y * width + x] = (static_cast<float>(row[3 * x + src]) / 255.0f - mean) / std;
        }
    }
}

}  // namespace prt
