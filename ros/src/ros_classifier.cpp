// The ROS 1 shell: see include/parnet_ros/ros_classifier.hpp.
#include "parnet_ros/ros_classifier.hpp"

#include <std_msgs/Float32.h>
#include <std_msgs/UInt64.h>
#include <vision_msgs/Classification2D.h>

namespace parnet_ros {

RosClassifier::RosClassifier(ros::NodeHandle nh, ros::NodeHandle pnh) {
    std::string model_dir, options, labels, scores;
    int queue_size = 1;
    bool tcp_nodelay = true;
    if (!pnh.getParam("model_dir", model_dir)) throw ConfigError("no model directory: set ~model_dir");
    pnh.param<std::string>("options", options, "");
    pnh.param<std::string>("labels", labels, "");
    pnh.param<std::string>("scores", scores, "softmax");
    pnh.param("top_k", top_k_, 5);
    pnh.param("queue_size", queue_size, 1);
    pnh.param("tcp_nodelay", tcp_nodelay, true);
    if (top_k_ < 1) throw ConfigError("~top_k must be >= 1, not " + std::to_string(top_k_));
    if (queue_size < 1) throw ConfigError("~queue_size must be >= 1, not " + std::to_string(queue_size));
    if (scores != "softmax" && scores != "logits")
        throw ConfigError("~scores must be softmax or logits, not '" + scores + "'");
    core_.reset(new Classifier(model_dir, options, scores == "softmax" ? Scores::softmax : Scores::logits));
    if (!labels.empty()) pnh.setParam("class_labels", read_labels(labels, core_->classes()));
    top_.reserve(size_t(top_k_));
    classification_ = pnh.advertise<vision_msgs::Classification2D>("classification", 1);
    inference_ms_ = pnh.advertise<std_msgs::Float32>("inference_ms", 1);
    dropped_ = pnh.advertise<std_msgs::UInt64>("dropped_frames", 1, true);
    ros::TransportHints hints;
    if (tcp_nodelay) hints = hints.tcpNoDelay();
    sub_ = nh.subscribe("image", uint32_t(queue_size), &RosClassifier::on_image, this, hints);
    ROS_INFO("parnet_ros: %s, input %lldx%lld, %lld classes, top %d; listening on %s", model_dir.c_str(),
             (long long)core_->width(), (long long)core_->height(), (long long)core_->classes(), top_k_,
             sub_.getTopic().c_str());
}

void RosClassifier::on_image(const sensor_msgs::ImageConstPtr &msg) {
    std::string why;
    // msg->data is read in place: no cv_bridge, no copy; msg->step is honoured.
    Drop d = core_->classify(msg->data.data(), msg->data.size(), msg->height, msg->width, msg->step, msg->encoding,
                             size_t(top_k_), top_, why);
    if (d != Drop::none) {
        const unsigned long long n = core_->dropped();
        // One call site per reason, so that each reason is throttled on its own.
        switch (d) {
        case Drop::encoding: ROS_WARN_THROTTLE(5.0, "dropped frame (%s, %llu dropped so far): %s", drop_name(d), n, why.c_str()); break;
        case Drop::layout: ROS_WARN_THROTTLE(5.0, "dropped frame (%s, %llu dropped so far): %s", drop_name(d), n, why.c_str()); break;
        case Drop::resolution: ROS_WARN_THROTTLE(5.0, "dropped frame (%s, %llu dropped so far): %s", drop_name(d), n, why.c_str()); break;
        default: ROS_ERROR_THROTTLE(5.0, "dropped frame (%s, %llu dropped so far): %s", drop_name(d), n, why.c_str()); break;
        }
        std_msgs::UInt64Ptr count(new std_msgs::UInt64);
        count->data = n;
        dropped_.publish(count);
        return;
    }
    // Published as a shared pointer: in-process subscribers (nodelets) get this object, not a copy.
    vision_msgs::Classification2DPtr out(new vision_msgs::Classification2D);
    out->header = msg->header;  // stamp and frame_id of the image, never now()
    out->results.resize(top_.size());
    for (size_t i = 0; i < top_.size(); ++i) {
        out->results[i].id = top_[i].id;
        out->results[i].score = top_[i].score;
    }
    classification_.publish(out);
    if (inference_ms_.getNumSubscribers() > 0) {
        std_msgs::Float32Ptr ms(new std_msgs::Float32);
        ms->data = float(core_->last_inference_ms());
        inference_ms_.publish(ms);
    }
}

}  // namespace parnet_ros
