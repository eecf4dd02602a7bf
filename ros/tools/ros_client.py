#!/usr/bin/python3
"""A rospy client for parnet_ros_node and parnet_ros/ClassifierNodelet: tests/test_ros.py drives the
node and the nodelet through it (benchmarks/ros_latency.py uses the C++ probe nodelet instead). Runs
under Debian's /usr/bin/python3 (rospy lives there), with build/ros/python on PYTHONPATH for the
generated vision_msgs.

    ros_client.py PLAN.json RESULT.json

PLAN: {"image_topic": "/cam/image", "out_ns": "/cls", "mode": "sequential" | "burst",
       "frames": [{"encoding", "height", "width", "step", "data_b64", "frame_id", "expect": "output"|"drop"}],
       "repeat": N, "rate_hz": R (burst), "timeout": seconds}
RESULT: {"outputs": [{"secs", "nsecs", "frame_id", "ids", "scores", }], "drops": [counts],
         "latency_ms": [...], "md5sum": <of the ~classification connection>, "type": ..., "sent": [...]}
"""
import base64
import json
import sys
import threading
import time

import rospy
from sensor_msgs.msg import Image
from std_msgs.msg import UInt64
from vision_msgs.msg import Classification2D


def main(plan_path, result_path):
    plan = json.load(open(plan_path))
    rospy.init_node("parnet_ros_client", anonymous=True, disable_signals=True)
    timeout = float(plan.get("timeout", 10.0))
    lock = threading.Condition()
    outputs, drops, latency, header = [], [], [], {}
    sent_at = {}

    def on_out(msg):
        t = time.perf_counter()
        with lock:
            key = (msg.header.stamp.secs, msg.header.stamp.nsecs)
            if key in sent_at:
                latency.append((t - sent_at[key]) * 1e3)
            outputs.append({"secs": msg.header.stamp.secs, "nsecs": msg.header.stamp.nsecs,
                            "frame_id": msg.header.frame_id, "ids": [r.id for r in msg.results],
                            "scores": [r.score for r in msg.results]})
            lock.notify_all()

    def on_drop(msg):
        with lock:
            drops.append(msg.data)
            lock.notify_all()

    def on_any(msg):  # the connection header: what the publisher says its type and md5sum are
        header.update(md5sum=msg._connection_header["md5sum"], type=msg._connection_header["type"])

    ns = plan["out_ns"]
    sub = rospy.Subscriber(ns + "/classification", Classification2D, on_out, queue_size=1000, tcp_nodelay=True)
    subs = [rospy.Subscriber(ns + "/classification", rospy.AnyMsg, on_any, queue_size=1),
            rospy.Subscriber(ns + "/dropped_frames", UInt64, on_drop, queue_size=100)]
    pub = rospy.Publisher(plan["image_topic"], Image, queue_size=max(1000, len(plan["frames"])), tcp_nodelay=True)
    deadline = time.time() + timeout
    while (pub.get_num_connections() < 1 or sub.get_num_connections() < 1) and time.time() < deadline:
        time.sleep(0.01)
    if pub.get_num_connections() < 1 or sub.get_num_connections() < 1:
        raise SystemExit("no connection to the classifier")
    time.sleep(0.2)  # the latched dropped_frames count (if any) arrives first
    with lock:
        drops_before = len(drops)

    frames = []
    for f in plan["frames"]:
        m = Image(height=f["height"], width=f["width"], encoding=f["encoding"], is_bigendian=0, step=f["step"],
                  data=base64.b64decode(f["data_b64"]))
        m.header.frame_id = f.get("frame_id", "camera")
        frames.append((m, f.get("expect", "output")))

    sent = []
    stamp0 = rospy.Time.now()

    def send(i, m, k):
        m.header.stamp = stamp0 + rospy.Duration(0, 1000 * (k + 1))  # unique, increasing
        m.header.seq = k
        key = (m.header.stamp.secs, m.header.stamp.nsecs)
        with lock:
            sent_at[key] = time.perf_counter()
        pub.publish(m)
        sent.append({"index": i, "secs": key[0], "nsecs": key[1]})
        return key

    def wait_for(pred, t):
        end = time.time() + t
        with lock:
            while not pred() and time.time() < end:
                lock.wait(0.01)
            return pred()

    k = 0
    mode = plan["mode"]
    if mode == "sequential":
        for i, (m, expect) in enumerate(frames):
            key = send(i, m, k)
            k += 1
            if expect == "output":
                if not wait_for(lambda key=key: any((o["secs"], o["nsecs"]) == key for o in outputs), timeout):
                    raise SystemExit(f"no output for frame {i}")
            else:
                n = len(drops)
                if not wait_for(lambda n=n: len(drops) > n, timeout):
                    raise SystemExit(f"no drop count for frame {i}")
                time.sleep(0.2)  # and no output for it either (checked by the caller)
    elif mode == "burst":
        period = 1.0 / float(plan.get("rate_hz", 1000))
        t = time.perf_counter()
        for i in range(int(plan.get("repeat", 100))):
            m, _ = frames[i % len(frames)]
            send(i, m, k)
            k += 1
            t += period
            while time.perf_counter() < t:
                pass
        last = (sent[-1]["secs"], sent[-1]["nsecs"])
        wait_for(lambda: any((o["secs"], o["nsecs"]) == last for o in outputs), timeout)
        time.sleep(1.0)  # anything still in flight
    else:
        raise SystemExit("unknown mode " + mode)
    wait_for(lambda: bool(header), 2.0)
    with lock:
        json.dump({"outputs": outputs, "drops": drops[drops_before:], "latency_ms": latency, "sent": sent,
                   "md5sum": header.get("md5sum"), "type": header.get("type"),
                   "generated_md5sum": Classification2D._md5sum}, open(result_path, "w"))
    del subs
    rospy.signal_shutdown("done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
