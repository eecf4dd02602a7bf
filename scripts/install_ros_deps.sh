#!/usr/bin/env bash
# What the ROS 1 front ends (ros/, `make ros`, tests/test_ros.py) need: Debian 12's ROS 1 packages
# (roscpp, nodelet, pluginlib, sensor_msgs, std_msgs, catkin), the message generators (genmsg,
# gencpp, genpy: vision_msgs is not packaged, ros/msg/ is generated at build time) and rospy with
# rosmaster for Debian's /usr/bin/python3 (not the project venv). Installs the missing packages with
# apt (root, or sudo); does nothing when all are present.
set -euo pipefail
pkgs=(libroscpp-dev libsensor-msgs-dev libstd-msgs-dev libnodeletlib-dev pluginlib-dev catkin
      python3-rosmaster python3-rospy python3-sensor-msgs python3-std-msgs python3-genmsg python3-gencpp
      python3-genpy ros-sensor-msgs ros-std-msgs libnodeletlib-tools)
need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
. "$(dirname "$0")/apt_install.sh"
apt_install "the ROS front ends" "${need[@]}"
