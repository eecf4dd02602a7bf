// parnet_ros_node: the standalone node. See include/parnet_ros/ros_classifier.hpp for topics and parameters.
//   parnet_ros_node image:=/camera/image_raw _model_dir:=export/digits
// A bad configuration ends it at start-up with one line on stderr and exit status 2; SIGINT and SIGTERM
// end it cleanly (exit 0) after releasing the runtime handle.
#include <csignal>
#include <cstdio>
#include <memory>

#include <ros/ros.h>

#include "parnet_ros/ros_classifier.hpp"

static void on_signal(int) { ros::requestShutdown(); }  // what roscpp's own SIGINT handler does

int main(int argc, char **argv) {
    ros::init(argc, argv, "parnet_classifier", ros::init_options::NoSigintHandler);
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
    std::unique_ptr<parnet_ros::RosClassifier> node;
    {
        ros::NodeHandle nh, pnh("~");
        try {
            node.reset(new parnet_ros::RosClassifier(nh, pnh));
        } catch (const std::exception &e) {
            std::fprintf(stderr, "parnet_ros_node: %s\n", e.what());
            return 2;
        }
        ros::spin();
        node.reset();  // prt_close before roscpp goes down
    }
    ros::shutdown();
    return 0;
}
