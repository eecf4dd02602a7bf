// parnet_ros::RosClassifier - the ROS 1 shell around parnet_ros::Classifier, shared by the standalone node
// (parnet_ros_node) and the nodelet (parnet_ros/ClassifierNodelet); also the in-process API: construct
// one on any NodeHandle pair of your own process (it subscribes and publishes on them).
//
// Subscribes:  image (sensor_msgs/Image; remappable), queue ~queue_size, TCP_NODELAY per ~tcp_nodelay.
// Publishes:   ~classification (vision_msgs/Classification2D: the ~top_k best hypotheses sorted by score,
//              header (stamp, frame_id) copied from the image, source_img left empty);
//              ~inference_ms (std_msgs/Float32: prt_infer's own time; only while someone subscribes);
//              ~dropped_frames (std_msgs/UInt64, latched: the count of dropped frames, sent at each drop).
// Parameters:  ~model_dir (required), ~options (C runtime option string, ""), ~top_k (5), ~queue_size (1),
//              ~tcp_nodelay (true), ~labels (optional file, one label per line: checked against the model's
//              class count and set as ~class_labels so that consumers can map ids to names),
//              ~scores ("softmax", the default: probabilities; or "logits").
// A bad configuration throws ConfigError (one line) from the constructor.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ros/ros.h>
#include <sensor_msgs/Image.h>

#include "parnet_ros/classifier.hpp"

namespace parnet_ros {

class RosClassifier {
  public:
    RosClassifier(ros::NodeHandle nh, ros::NodeHandle pnh);
    void on_image(const sensor_msgs::ImageConstPtr &msg);
    const Classifier &classifier() const { return *core_; }

  private:
    std::unique_ptr<Classifier> core_;
    int top_k_ = 5;
    std::vector<Hypothesis> top_;
    ros::Publisher classification_, inference_ms_, dropped_;
    ros::Subscriber sub_;
};

}  // namespace parnet_ros
