"""An isolated ROS 1 master for tests/test_ros.py and benchmarks/ros_latency.py: a free loopback port,
ROS_HOME and logs in a folder of the caller's, and an environment without the caller's ROS_*, PYTHON*
and virtualenv variables (rospy and the tools run under Debian's /usr/bin/python3)."""

from __future__ import annotations

import socket
import time
import xmlrpc.client
from collections.abc import Callable
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated_env(environ: dict[str, str], root: Path, build: Path, port: int) -> dict[str, str]:
    """``build``: the ROS build tree (a ROS package, and the generated Python messages in ``python/``)."""
    env = {k: v for k, v in environ.items() if not k.startswith(("ROS_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1", ROS_HOME=str(root / "home"),
               ROS_LOG_DIR=str(root / "home" / "log"), ROS_PACKAGE_PATH=f"{build}:/usr/share",
               PYTHONPATH=str(build / "python"), PATH="/usr/bin:/bin")
    return env


def wait_for_master(port: int, alive: Callable[[], bool], timeout_s: float = 20.0) -> xmlrpc.client.ServerProxy:
    """The master's XML-RPC proxy once it answers; RuntimeError if it exits or does not answer in time."""
    proxy = xmlrpc.client.ServerProxy(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            proxy.getSystemState("/local_master")
            return proxy
        except OSError:
            if not alive() or time.monotonic() > deadline:
                raise RuntimeError(f"rosmaster on port {port} did not start") from None
            time.sleep(0.1)
