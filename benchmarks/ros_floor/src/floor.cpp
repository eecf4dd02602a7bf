// ros_floor: the bare ROS 1 nodelet hand-off floor (benchmarks/ros_floor/run_floor.py drives it).
// ros_floor/Probe: publishes a sensor_msgs/Image (as a shared pointer) on "image", one frame at a time, and
//   waits for the std_msgs/Header on "echo" carrying the frame's stamp; steady clock, publish() -> receive.
// ros_floor/Echo: on each image, optionally does work (~busy_ms of synthetic spinning on ~busy_threads
//   threads, or prt_preprocess_u8_len + prt_infer on ~model_dir with ~options, as parnet_ros's classifier
//   does), then publishes a Header with the image's stamp. Its frame_id carries "recv_ns pub_ns work_us"
//   (steady clock) so the probe can split the round trip into its two hops.
// In one nodelet manager each hop is one hand-off through the manager's callback queue to a worker thread.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nodelet/nodelet.h>
#include <parnet_rt.h>
#include <pluginlib/class_list_macros.hpp>
#include <ros/ros.h>
#include <sensor_msgs/Image.h>
#include <std_msgs/Header.h>

namespace ros_floor {
using clock = std::chrono::steady_clock;
static int64_t now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock::now().time_since_epoch()).count();
}

class Echo : public nodelet::Nodelet {
  public:
    ~Echo() override {
        if (rt_) prt_close(rt_);
    }

  private:
    void onInit() override {
        ros::NodeHandle nh = getNodeHandle(), pnh = getPrivateNodeHandle();
        pnh.param("busy_ms", busy_ms_, 0.0);
        pnh.param("busy_threads", busy_threads_, 2);
        std::string model_dir, options;
        pnh.param<std::string>("model_dir", model_dir, "");
        pnh.param<std::string>("options", options, "threads=2");
        if (!model_dir.empty()) {
            if (prt_open(model_dir.c_str(), options.c_str(), &rt_) != PRT_OK) {
                NODELET_FATAL("prt_open(%s): %s", model_dir.c_str(), prt_last_error());
                throw std::runtime_error("prt_open");
            }
            int64_t in[4], out[2];
            prt_input_dims(rt_, in);
            prt_output_dims(rt_, out);
            input_.resize(size_t(3 * in[2] * in[3]));
            output_.resize(size_t(out[1]));
        }
        pub_ = nh.advertise<std_msgs::Header>("echo", 1);
        sub_ = nh.subscribe("image", 1, &Echo::on_image, this, ros::TransportHints().tcpNoDelay());
    }
    static void spin_for(double ms) {
        const auto end = clock::now() + std::chrono::duration<double, std::milli>(ms);
        volatile double x = 1.0;
        while (clock::now() < end)
            for (int i = 0; i < 1000; ++i) x = x * 1.0000001 + 1e-9;
    }
    void on_image(const sensor_msgs::ImageConstPtr &msg) {
        const int64_t recv = now_ns();
        double work_us = 0;
        if (rt_) {
            if (prt_preprocess_u8_len(rt_, msg->data.data(), msg->data.size(), msg->height, msg->width, msg->step,
                                      PRT_RGB, input_.data(), input_.size()) != PRT_OK ||
                prt_infer(rt_, input_.data(), input_.size(), output_.data(), output_.size()) != PRT_OK) {
                NODELET_ERROR_THROTTLE(1.0, "ros_floor/Echo: %s", prt_last_error());
                return;  // the probe times out and writes fewer rows than asked: the driver reports it
            }
            prt_last_latency_us(rt_, &work_us);
        } else if (busy_ms_ > 0) {
            const auto t = clock::now();
            std::vector<std::thread> ts;
            for (int i = 1; i < busy_threads_; ++i) ts.emplace_back([this] { spin_for(busy_ms_); });
            spin_for(busy_ms_);
            for (auto &th : ts) th.join();
            work_us = std::chrono::duration<double, std::micro>(clock::now() - t).count();
        }
        std_msgs::HeaderPtr out(new std_msgs::Header);
        out->stamp = msg->header.stamp;
        char buf[96];
        const int64_t pub = now_ns();
        std::snprintf(buf, sizeof buf, "%lld %lld %.3f", (long long)recv, (long long)pub, work_us);
        out->frame_id = buf;
        pub_.publish(out);
    }
    double busy_ms_ = 0;
    int busy_threads_ = 2;
    prt_runtime *rt_ = nullptr;
    std::vector<float> input_, output_;
    ros::Publisher pub_;
    ros::Subscriber sub_;
};

class Probe : public nodelet::Nodelet {
  public:
    ~Probe() override {
        stop_ = true;
        cv_.notify_all();
        if (worker_.joinable()) worker_.join();
    }

  private:
    void onInit() override {
        ros::NodeHandle nh = getNodeHandle(), pnh = getPrivateNodeHandle();
        pnh.param("hw", hw_, 224);
        pnh.param("count", count_, 300);
        pnh.param("warmup", warmup_, 20);
        pnh.param("gap_ms", gap_ms_, 2.0);
        if (!pnh.getParam("output", output_) || output_.empty()) {
            NODELET_FATAL("ros_floor/Probe: ~output (the results file) is required");
            throw std::runtime_error("~output");
        }
        data_.resize(size_t(3 * hw_ * hw_));
        for (size_t i = 0; i < data_.size(); ++i) data_[i] = uint8_t(i * 2654435761u >> 24);
        pub_ = nh.advertise<sensor_msgs::Image>("image", 1);
        sub_ = nh.subscribe("echo", 10, &Probe::on_echo, this, ros::TransportHints().tcpNoDelay());
        worker_ = std::thread([this] { run(); });
    }
    void on_echo(const std_msgs::HeaderConstPtr &msg) {
        const int64_t t = now_ns();
        std::lock_guard<std::mutex> lock(m_);
        if (msg->stamp == waiting_) {
            recv_ = t;
            info_ = msg->frame_id;
            got_ = true;
            cv_.notify_all();
        }
    }
    // one row per measured frame: round trip, hop 1 (publish -> echo callback), hop 2 (echo publish -> probe
    // callback), the echo's work (us)
    void run() {
        while (!stop_ && ros::ok() && (pub_.getNumSubscribers() < 1 || sub_.getNumPublishers() < 1))
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
        std::ostringstream out;
        for (int i = 0; i < warmup_ + count_ && !stop_ && ros::ok(); ++i) {
            sensor_msgs::ImagePtr img(new sensor_msgs::Image);
            img->height = img->width = uint32_t(hw_);
            img->step = uint32_t(3 * hw_);
            img->encoding = "rgb8";
            img->data = data_;
            img->header.frame_id = "probe";
            img->header.stamp = ros::Time::now();
            std::unique_lock<std::mutex> lock(m_);
            waiting_ = img->header.stamp;
            got_ = false;
            lock.unlock();
            const int64_t t0 = now_ns();
            pub_.publish(img);
            lock.lock();
            if (!cv_.wait_for(lock, std::chrono::seconds(20), [this] { return got_ || stop_.load(); }) || stop_) break;
            long long r = 0, p = 0;
            double work = 0;
            std::sscanf(info_.c_str(), "%lld %lld %lf", &r, &p, &work);
            if (i >= warmup_)
                out << (recv_ - t0) / 1e3 << " " << (r - t0) / 1e3 << " " << (recv_ - p) / 1e3 << " " << work << "\n";
            lock.unlock();
            std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(gap_ms_));
        }
        std::ofstream f(output_ + ".tmp");
        f << out.str();
        f.close();
        std::rename((output_ + ".tmp").c_str(), output_.c_str());
        NODELET_INFO("ros_floor/Probe: wrote %s", output_.c_str());
    }
    std::vector<uint8_t> data_;
    std::string output_, info_;
    int hw_ = 224, count_ = 300, warmup_ = 20;
    double gap_ms_ = 2.0;
    ros::Publisher pub_;
    ros::Subscriber sub_;
    std::thread worker_;
    std::mutex m_;
    std::condition_variable cv_;
    std::atomic<bool> stop_{false};
    bool got_ = false;
    ros::Time waiting_;
    int64_t recv_ = 0;
};
}  // namespace ros_floor

PLUGINLIB_EXPORT_CLASS(ros_floor::Echo, nodelet::Nodelet)
PLUGINLIB_EXPORT_CLASS(ros_floor::Probe, nodelet::Nodelet)
