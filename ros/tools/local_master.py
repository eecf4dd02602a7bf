"""An isolated ROS 1 master for tests/test_ros.py and the ROS benchmarks: a free loopback port,
ROS_HOME and logs in a folder of the caller's, and an environment without the caller's ROS_*, PYTHON*
and virtualenv variables (rospy and the tools run under Debian's /usr/bin/python3)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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


class Session:
    """rosmaster on a free loopback port, ROS_HOME and logs in `root`; processes it started."""

    def __init__(self, root: Path, build: Path):
        self.root, self.build, self.procs = root, build, []
        port = free_port()
        self.env = isolated_env(dict(os.environ), root, build, port)
        master = self.spawn("master", ["/usr/bin/rosmaster", "--core", "-p", str(port)])
        wait_for_master(port, lambda: master.poll() is None)

    def spawn(self, name: str, argv: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "w")  # noqa: SIM115 (the child's stdout)
        p = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
