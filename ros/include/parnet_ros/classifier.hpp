// parnet_ros::Classifier - the ROS-free core of the ROS front ends (ros/src/node.cpp, ros/src/nodelet.cpp).
//
// It owns one prt_runtime handle of the native C library (capi/include/parnet_rt.h) and maps an 8-bit
// image, given as the fields of a sensor_msgs/Image (data pointer and length, height, width, step,
// encoding), to prt_preprocess_u8_len + prt_infer, reading the message's own buffer (no cv_bridge, no copy)
// and honouring its row step. No ROS type appears here, so a ROS 2 (rclcpp) component is a thin shell.
//
// Encodings: "rgb8" and "bgr8" (the channel order is handed to the C library). Anything else (mono8,
// rgba8, 16-bit, Bayer, ...) is refused: the frame is dropped with Drop::encoding. A step smaller than
// 3 * width, or data shorter than (height - 1) * step + 3 * width bytes, is Drop::layout; a height or width
// other than the model's input resolution is Drop::resolution (no resizing: resize upstream, e.g. with
// image_proc/resize, so the cost is visible). A refused frame never reaches the model.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct prt_runtime;

namespace parnet_ros {

struct Hypothesis {
    int64_t id;    // class index of the model's output
    double score;  // softmax probability (Scores::softmax) or the raw logit (Scores::logits)
};

enum class Scores { softmax, logits };

enum class Drop { none = 0, encoding, layout, resolution, runtime };
const char *drop_name(Drop d);

// Thrown by the constructor: a one-line message (bad directory, options, tampered artifact, ABI mismatch,
// or a model that is not an image classifier of batch 1 with 3 channels).
class ConfigError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

class Classifier {
  public:
    // model_dir: a parnet-export or parnet-build --backend openvino directory. options: the C runtime's
    // option string (empty: defaults). Throws ConfigError.
    Classifier(const std::string &model_dir, const std::string &options, Scores scores = Scores::softmax);
    ~Classifier();  // prt_close
    Classifier(const Classifier &) = delete;
    Classifier &operator=(const Classifier &) = delete;

    // Classify one image; on success fills `top` with the min(top_k, classes) best hypotheses sorted by
    // score, highest first (ties: lower id first), and returns Drop::none. Otherwise returns why the frame
    // was dropped, writes a one-line reason to `why`, counts it, and leaves `top` empty. Thread-safe
    // (calls on one Classifier are serialised: they share the input and output buffers).
    Drop classify(const uint8_t *data, size_t data_len, uint32_t height, uint32_t width, uint32_t step,
                  const std::string &encoding, size_t top_k, std::vector<Hypothesis> &top, std::string &why);

    int64_t height() const { return height_; }
    int64_t width() const { return width_; }
    int64_t classes() const { return classes_; }
    // prt_infer's own wall time for the last classified frame (prt_last_latency_us), in milliseconds.
    double last_inference_ms() const;
    uint64_t processed() const { return processed_.load(); }
    uint64_t dropped() const { return dropped_.load(); }
    uint64_t dropped(Drop reason) const;

  private:
    prt_runtime *rt_ = nullptr;
    Scores scores_;
    int64_t height_ = 0, width_ = 0, classes_ = 0;
    std::vector<float> input_, output_;
    std::vector<int64_t> order_;
    mutable std::mutex mutex_;
    std::atomic<uint64_t> processed_{0}, dropped_{0};
    std::atomic<uint64_t> by_reason_[5] = {};
    Drop refuse(Drop d, std::string &why, std::string text);
};

// Labels file: one label per line (empty lines kept, so line i is class i). Throws ConfigError when the
// file cannot be read or its line count is not `classes`.
std::vector<std::string> read_labels(const std::string &path, int64_t classes);

}  // namespace parnet_ros
