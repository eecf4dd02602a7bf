// parnet_ros/LatencyProbe: a benchmark nodelet (benchmarks/ros_latency.py). It publishes one image
// (~frame: a file of raw bytes; ~height, ~width, ~step, ~encoding) on `image` as a shared pointer, waits
// for the matching `classification` (same stamp), records the publish -> receive time on the steady
// clock, and repeats (~warmup + ~count times, ~gap_ms apart). It also records the classifier's
// `inference_ms` (prt_infer's own time for each frame). When done it writes "e2e_us infer_us" lines to
// ~output and stops publishing. Loaded into the classifier's nodelet manager it measures the in-process
// (zero-copy) path; run as `nodelet standalone` it measures the TCP path to parnet_ros_node.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include <nodelet/nodelet.h>
#include <pluginlib/class_list_macros.hpp>
#include <ros/ros.h>
#include <sensor_msgs/Image.h>
#include <std_msgs/Float32.h>
#include <vision_msgs/Classification2D.h>

namespace parnet_ros {

class LatencyProbe : public nodelet::Nodelet {
  public:
    ~LatencyProbe() override {
        stop_ = true;
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

  private:
    using clock = std::chrono::steady_clock;

    void onInit() override {
        ros::NodeHandle nh = getNodeHandle(), pnh = getPrivateNodeHandle();
        std::string frame_path;
        int h = 0, w = 0, step = 0;
        pnh.getParam("frame", frame_path);
        pnh.getParam("height", h);
        pnh.getParam("width", w);
        pnh.param("step", step, 3 * w);
        pnh.param<std::string>("encoding", encoding_, "rgb8");
        pnh.param("count", count_, 200);
        pnh.param("warmup", warmup_, 20);
        pnh.param("gap_ms", gap_ms_, 2.0);
        pnh.getParam("output", output_);
        std::ifstream f(frame_path, std::ios::binary);
        data_.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
        height_ = uint32_t(h);
        width_ = uint32_t(w);
        step_ = uint32_t(step);
        pub_ = nh.advertise<sensor_msgs::Image>("image", 1);
        sub_ = nh.subscribe("classification", 10, &LatencyProbe::on_out, this, ros::TransportHints().tcpNoDelay());
        ms_sub_ = nh.subscribe("inference_ms", 100, &LatencyProbe::on_ms, this, ros::TransportHints().tcpNoDelay());
        worker_ = std::thread([this] { run(); });
    }

    void on_out(const vision_msgs::Classification2DConstPtr &msg) {
        const auto t = clock::now();
        std::lock_guard<std::mutex> lock(m_);
        if (msg->header.stamp == waiting_stamp_) {  // (roscpp rewrites header.seq over TCP)
            received_ = t;
            got_ = true;
            cv_.notify_all();
        }
    }

    void on_ms(const std_msgs::Float32ConstPtr &msg) {
        std::lock_guard<std::mutex> lock(m_);
        infer_ms_.push_back(msg->data);
    }

    void run() {
        // wait until the classifier is connected both ways
        while (!stop_ && ros::ok() && (pub_.getNumSubscribers() < 1 || sub_.getNumPublishers() < 1 ||
                                       ms_sub_.getNumPublishers() < 1))
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        std::vector<double> e2e_us;
        size_t infer_start = 0;
        for (int i = 0; i < warmup_ + count_ && !stop_ && ros::ok(); ++i) {
            if (i == warmup_) {
                std::lock_guard<std::mutex> lock(m_);
                infer_start = infer_ms_.size();
            }
            sensor_msgs::ImagePtr img(new sensor_msgs::Image);
            img->height = height_;
            img->width = width_;
            img->step = step_;
            img->encoding = encoding_;
            img->data = data_;  // a fresh message each time (a publisher must not modify a sent one)
            img->header.frame_id = "probe";
            img->header.seq = uint32_t(i + 1);
            img->header.stamp = ros::Time::now();
            std::unique_lock<std::mutex> lock(m_);
            waiting_stamp_ = img->header.stamp;
            got_ = false;
            lock.unlock();
            const auto t0 = clock::now();
            pub_.publish(img);
            lock.lock();
            if (!cv_.wait_for(lock, std::chrono::seconds(10), [this] { return got_ || stop_.load(); }) || stop_) break;
            if (i >= warmup_) e2e_us.push_back(std::chrono::duration<double, std::micro>(received_ - t0).count());
            lock.unlock();
            std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(gap_ms_));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
        std::lock_guard<std::mutex> lock(m_);
        std::ofstream out(output_ + ".tmp");
        for (size_t i = 0; i < e2e_us.size(); ++i) {
            const size_t j = infer_start + i;
            out << e2e_us[i] << " " << (j < infer_ms_.size() ? infer_ms_[j] * 1e3 : -1.0) << "\n";
        }
        out.close();
        std::rename((output_ + ".tmp").c_str(), output_.c_str());
        NODELET_INFO("latency probe: %zu samples written to %s", e2e_us.size(), output_.c_str());
    }

    std::vector<uint8_t> data_;
    std::string encoding_, output_;
    uint32_t height_ = 0, width_ = 0, step_ = 0;
    int count_ = 200, warmup_ = 20;
    double gap_ms_ = 2.0;
    ros::Publisher pub_;
    ros::Subscriber sub_, ms_sub_;
    std::thread worker_;
    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<bool> stop_{false};
    bool got_ = false;
    ros::Time waiting_stamp_;
    clock::time_point received_;
    std::vector<float> infer_ms_;
};

}  // namespace parnet_ros

PLUGINLIB_EXPORT_CLASS(parnet_ros::LatencyProbe, nodelet::Nodelet)
