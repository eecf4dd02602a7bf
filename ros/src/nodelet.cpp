// parnet_ros/ClassifierNodelet: the same RosClassifier in a nodelet manager's process. Images from other
// nodelets of the manager arrive as the publisher's shared pointer (no serialisation, no copy), and the
// classification is published as a shared pointer too.
#include <nodelet/nodelet.h>
#include <pluginlib/class_list_macros.hpp>

#include "parnet_ros/ros_classifier.hpp"

namespace parnet_ros {

class ClassifierNodelet : public nodelet::Nodelet {
    void onInit() override {
        try {
            impl_.reset(new RosClassifier(getNodeHandle(), getPrivateNodeHandle()));
        } catch (const std::exception &e) {
            NODELET_FATAL("%s", e.what());
            throw;
        }
    }
    std::unique_ptr<RosClassifier> impl_;
};

}  // namespace parnet_ros

PLUGINLIB_EXPORT_CLASS(parnet_ros::ClassifierNodelet, nodelet::Nodelet)
