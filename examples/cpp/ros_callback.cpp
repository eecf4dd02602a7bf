// Shaped like a ROS 2 subscription callback (no ROS dependency): a node owns one runtime,
// every incoming image message is classified in the callback, and the result is "published".
//
//   ros_callback DIR [OPTIONS]
#include <cstdint>
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "parnet_rt.h"

struct Image {  // stands in for sensor_msgs::msg::Image with encoding "bgr8"
    uint32_t height = 0, width = 0, step = 0;  // step: bytes per row
    std::vector<uint8_t> data;
};

class ClassifierNode {
  public:
    ClassifierNode(const std::string &dir, const char *options) {
        prt_runtime *rt = nullptr;
        if (prt_open(dir.c_str(), options, &rt) != PRT_OK) throw std::runtime_error(prt_last_error());
        rt_.reset(rt);
        int64_t in[4], out[2];
        prt_input_dims(rt, in);
        prt_output_dims(rt, out);
        height_ = static_cast<uint32_t>(in[2]);
        width_ = static_cast<uint32_t>(in[3]);
        input_.resize(static_cast<size_t>(in[0] * in[1] * in[2] * in[3]));
        logits_.resize(static_cast<size_t>(out[0] * out[1]));
        prt_warmup(rt, 3);  // first calls allocate: do it before the first real message
    }

    uint32_t height() const { return height_; }
    uint32_t width() const { return width_; }

    // The subscription callback: must not throw, must not allocate per message.
    void on_image(const Image &msg) {
        // bgr8 → normalised float32 NCHW RGB with the export's mean/std (the model's own size: resize upstream)
        if (prt_preprocess_u8(rt_.get(), msg.data.data(), msg.height, msg.width, msg.step, PRT_BGR, input_.data(),
                              input_.size()) != PRT_OK ||
            prt_infer(rt_.get(), input_.data(), input_.size(), logits_.data(), logits_.size()) != PRT_OK) {
            std::fprintf(stderr, "classifier: %s\n", prt_last_error());
            return;
        }
        size_t best = 0;
        for (size_t c = 1; c < logits_.size(); c++)
            if (logits_[c] > logits_[best]) best = c;
        double us = 0;
        prt_last_latency_us(rt_.get(), &us);
        std::printf("publish: class %zu (%.1f us)\n", best, us);
    }

  private:
    struct Close {
        void operator()(prt_runtime *rt) const { prt_close(rt); }
    };
    std::unique_ptr<prt_runtime, Close> rt_;
    uint32_t height_ = 0, width_ = 0;
    std::vector<float> input_, logits_;
};

int main(int argc, char **argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s DIR [OPTIONS]\n", argv[0]);
        return 2;
    }
    try {
        ClassifierNode node(argv[1], argc > 2 ? argv[2] : nullptr);
        for (int frame = 0; frame < 5; frame++) {  // the executor would call on_image per message
            Image msg{node.height(), node.width(), 3 * node.width(), {}};
            msg.data.resize(static_cast<size_t>(msg.step) * msg.height);
            for (size_t i = 0; i < msg.data.size(); i++) msg.data[i] = static_cast<uint8_t>((i * 7 + frame * 31) % 256);
            node.on_image(msg);
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "ros_callback: %s\n", e.what());
        return 1;
    }
    return 0;
}
