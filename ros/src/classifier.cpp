// The ROS-free core: see include/parnet_ros/classifier.hpp.
#include "parnet_ros/classifier.hpp"

#include <parnet_rt.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>
#include <sstream>

namespace parnet_ros {

const char *drop_name(Drop d) {
    switch (d) {
    case Drop::none: return "none";
    case Drop::encoding: return "encoding";
    case Drop::layout: return "layout";
    case Drop::resolution: return "resolution";
    case Drop::runtime: return "runtime";
    }
    return "?";
}

static std::string one_line(std::string s) {
    for (char &c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

Classifier::Classifier(const std::string &model_dir, const std::string &options, Scores scores) : scores_(scores) {
    if (prt_abi_version() != PRT_ABI_VERSION)
        throw ConfigError("libparnet_rt ABI " + std::to_string(prt_abi_version()) + ", built against " +
                          std::to_string(PRT_ABI_VERSION));
    if (model_dir.empty()) throw ConfigError("no model directory (set ~model_dir)");
    prt_status s = prt_open(model_dir.c_str(), options.empty() ? nullptr : options.c_str(), &rt_);
    if (s != PRT_OK) throw ConfigError(one_line(std::string("cannot open '") + model_dir + "': " + prt_last_error()));
    int64_t in[4], out[2];
    if (prt_input_dims(rt_, in) != PRT_OK || prt_output_dims(rt_, out) != PRT_OK) {
        std::string e = one_line(prt_last_error());
        prt_close(rt_);
        throw ConfigError("cannot read the model's dims: " + e);
    }
    if (in[0] != 1 || in[1] != 3 || out[0] != 1 || out[1] < 1) {
        prt_close(rt_);
        std::ostringstream m;
        m << "'" << model_dir << "' is not a batch-1 RGB image classifier (input " << in[0] << "x" << in[1] << "x"
          << in[2] << "x" << in[3] << ", output " << out[0] << "x" << out[1] << ")";
        throw ConfigError(m.str());
    }
    height_ = in[2];
    width_ = in[3];
    classes_ = out[1];
    input_.resize(static_cast<size_t>(3 * height_ * width_));
    output_.resize(static_cast<size_t>(classes_));
    order_.resize(static_cast<size_t>(classes_));
}

Classifier::~Classifier() { prt_close(rt_); }

double Classifier::last_inference_ms() const {
    double us = NAN;
    prt_last_latency_us(rt_, &us);
    return us / 1000.0;
}

uint64_t Classifier::dropped(Drop reason) const { return by_reason_[static_cast<int>(reason)].load(); }

Drop Classifier::refuse(Drop d, std::string &why, std::string text) {
    dropped_++;
    by_reason_[static_cast<int>(d)]++;
    why = one_line(std::move(text));
    return d;
}

Drop Classifier::classify(const uint8_t *data, size_t data_len, uint32_t height, uint32_t width, uint32_t step,
                          const std::string &encoding, size_t top_k, std::vector<Hypothesis> &top, std::string &why) {
    top.clear();
    int order;
    if (encoding == "rgb8")
        order = PRT_RGB;
    else if (encoding == "bgr8")
        order = PRT_BGR;
    else
        return refuse(Drop::encoding, why, "encoding '" + encoding.substr(0, 32) + "' is not supported (rgb8, bgr8)");
    if (height != height_ || width != width_)
        return refuse(Drop::resolution, why,
                      "image is " + std::to_string(width) + "x" + std::to_string(height) + ", the model takes " +
                          std::to_string(width_) + "x" + std::to_string(height_) + " (no resizing)");
    const uint64_t row = 3ull * width;
    const uint64_t span = height == 0 ? 0 : (uint64_t(height) - 1) * step + row;
    if (step < row || data == nullptr || data_len < span)
        return refuse(Drop::layout, why,
                      "step " + std::to_string(step) + " and " + std::to_string(data_len) + " data bytes cannot hold a " +
                          std::to_string(width) + "x" + std::to_string(height) + " " + encoding + " image (needs step >= " +
                          std::to_string(row) + " and " + std::to_string(span) + " bytes)");
    std::lock_guard<std::mutex> lock(mutex_);
    if (prt_preprocess_u8_len(rt_, data, data_len, height, width, step, order, input_.data(), input_.size()) != PRT_OK)
        return refuse(Drop::layout, why, std::string("prt_preprocess_u8_len: ") + prt_last_error());
    if (prt_infer(rt_, input_.data(), input_.size(), output_.data(), output_.size()) != PRT_OK)
        return refuse(Drop::runtime, why, std::string("prt_infer: ") + prt_last_error());
    const size_t k = std::min(top_k, output_.size());
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), [this](int64_t a, int64_t b) {
        return output_[a] > output_[b] || (output_[a] == output_[b] && a < b);
    });
    double max = output_[order_[0]], sum = 0;
    if (scores_ == Scores::softmax)
        for (float v : output_) sum += std::exp(double(v) - max);
    top.reserve(k);
    for (size_t i = 0; i < k; ++i) {
        const double v = output_[order_[i]];
        top.push_back({order_[i], scores_ == Scores::softmax ? std::exp(v - max) / sum : v});
    }
    processed_++;
    return Drop::none;
}

std::vector<std::string> read_labels(const std::string &path, int64_t classes) {
    std::ifstream f(path);
    if (!f) throw ConfigError("cannot read the labels file '" + path + "'");
    std::vector<std::string> labels;
    std::string line;
    while (std::getline(f, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        labels.push_back(line);
    }
    if (int64_t(labels.size()) != classes)
        throw ConfigError("the labels file '" + path + "' has " + std::to_string(labels.size()) +
                          " lines, the model has " + std::to_string(classes) + " classes");
    return labels;
}

}  // namespace parnet_ros
