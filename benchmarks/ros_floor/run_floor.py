"""The bare ROS 1 nodelet hand-off floor, to set parnet_ros's nodelet overhead against (issue 22).

Build (the C runtime first: make capi; the project's nodelet too for the ``project`` case: make ros):

    cmake -S benchmarks/ros_floor -B build/ros_floor -DCMAKE_PREFIX_PATH=$PWD/build/capi/install
    cmake --build build/ros_floor -j2
    .venv/bin/python benchmarks/ros_floor/run_floor.py --cases floor --hw 32 --frames 300

Each case runs in one nodelet manager under its own isolated rosmaster (ros/tools/local_master.py), frames
sent one at a time (the next ~gap_ms after the reply), and reports per-frame p50/p99 in ms:

- floor: ros_floor/Probe publishes a hw x hw rgb8 sensor_msgs/Image, ros_floor/Echo replies at once with a
  std_msgs/Header carrying its stamp. Round trip = two in-process hand-offs through the manager's callback
  queue (hop1: probe publish -> echo callback; hop2: echo publish -> probe callback), no inference: the
  floor any nodelet pair pays on this machine.
- busy: the same, the echo spinning --busy-ms on --busy-threads threads first (work, subtracted).
- bare: the echo does what parnet_ros's classifier does to a frame, prt_preprocess_u8_len + prt_infer on
  --model (prt_last_latency_us subtracted), with none of parnet_ros's code.
- project: parnet_ros/ClassifierNodelet + parnet_ros/LatencyProbe on --model (benchmarks/ros_latency.py's
  nodelet measurement, build/ros).

overhead = round trip - work (work: 0 for floor, the spin for busy, prt_infer for bare and project).
--rounds R repeats the list of cases R times, interleaved, so that they share the machine's state.
--spinners N runs N nice-19 busy loops during the runs: vCPUs that never go idle (on a VM where waking an
idle vCPU exits to the host, the floor drops). One JSON line per run on stdout (and appended to --output).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "ros" / "tools"))
from local_master import Session  # noqa: E402

NODELET = "/usr/lib/nodelet/nodelet"
CASES = ("floor", "busy", "bare", "project")
BUILD = ("  cmake -S benchmarks/ros_floor -B build/ros_floor -DCMAKE_PREFIX_PATH=$PWD/build/capi/install\n"
         "  cmake --build build/ros_floor -j2")


def pq(a: np.ndarray) -> list[float]:
    """p50, p99 of microseconds, in ms."""
    return [round(float(np.percentile(a, 50)) / 1e3, 4), round(float(np.percentile(a, 99)) / 1e3, 4)]


def run_pair(work: Path, build: Path, args: argparse.Namespace, echo_params: list[str]) -> dict:
    """ros_floor/Probe + ros_floor/Echo in one manager; p50/p99 of round trip, work, overhead and hops."""
    (work / "home").mkdir(parents=True)
    out = work / "probe.txt"
    session = Session(work, build)
    try:
        workers = [f"_num_worker_threads:={args.workers}"] if args.workers else []
        session.spawn("manager", [NODELET, "manager", "__name:=mgr", *workers])
        time.sleep(1.0)
        session.spawn("echo", [NODELET, "load", "ros_floor/Echo", "mgr", "__name:=echo", *echo_params])
        session.spawn("probe", [NODELET, "load", "ros_floor/Probe", "mgr", "__name:=probe", f"_hw:={args.hw}",
                                f"_count:={args.frames}", f"_warmup:={args.warmup}", f"_gap_ms:={args.gap_ms}",
                                f"_output:={out}"])
        deadline = time.time() + 120 + args.frames
        while not out.exists():
            if time.time() > deadline or any(p.poll() is not None for p in session.procs):
                logs = "\n".join(f.read_text()[-2000:] for f in sorted(work.glob("*.log")))
                raise RuntimeError(f"no result from the probe\n{logs}")
            time.sleep(0.2)
    finally:
        session.close()
    rows = np.loadtxt(out, ndmin=2)
    if len(rows) != args.frames:
        raise RuntimeError(f"{len(rows)} of {args.frames} frames came back (see {work}/echo.log)")
    rtt, hop1, hop2, work_us = rows.T
    return {"round_trip_ms": pq(rtt), "work_ms": pq(work_us), "overhead_ms": pq(rtt - work_us),
            "hop1_ms": pq(hop1), "hop2_ms": pq(hop2), "frames": len(rows)}


def run_project(work: Path, ros_build: Path, model: Path, args: argparse.Namespace) -> dict:
    """parnet_ros's own nodelet pair, through benchmarks/ros_latency.py's measure()."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import ros_latency  # torch and parnet_deploy: imported only for this case

    work.mkdir(parents=True)
    rows = ros_latency.measure(work, ros_build, model, args.hw, args.frames, f"threads={args.threads}", True)
    rtt, infer = rows[:, 0], rows[:, 1]
    return {"round_trip_ms": pq(rtt), "work_ms": pq(infer), "overhead_ms": pq(rtt - infer), "frames": len(rows)}


def export_224(tmp: Path) -> Path:
    """ParNet-S at 224x224, random weights (seed 0): the same export as benchmarks/ros_latency.py's."""
    import torch

    import parnet_deploy as pd
    from parnet_deploy.export import ExportConfig, export_model

    torch.manual_seed(0)
    d, _ = export_model(pd.create_model("parnet_s"), ExportConfig(output=tmp, name="parnet_s_224",
                                                                  resolution=(224, 224), split="shared",
                                                                  verify=False), log=lambda _: None)
    return d


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default="floor", help=f"comma-separated, in order, from {', '.join(CASES)}")
    p.add_argument("--hw", type=int, default=32, help="frame height and width (rgb8); the model's for bare/project")
    p.add_argument("--frames", type=int, default=300, help="measured frames per run")
    p.add_argument("--warmup", type=int, default=20, help="unmeasured frames first (ros_floor pair only)")
    p.add_argument("--gap-ms", type=float, default=2.0, help="sleep between a reply and the next frame")
    p.add_argument("--rounds", type=int, default=1, help="repeat the cases, interleaved")
    p.add_argument("--model", default=str(ROOT / "export" / "digits"),
                   help="exported model for bare/project; 'parnet_s_224' exports ParNet-S 224 (random weights)")
    p.add_argument("--threads", type=int, default=2, help="C runtime threads= for bare/project")
    p.add_argument("--busy-ms", type=float, default=1.5, help="busy case: the echo's synthetic work")
    p.add_argument("--busy-threads", type=int, default=2, help="busy case: threads spinning")
    p.add_argument("--workers", type=int, default=0, help="the manager's num_worker_threads (0: its default)")
    p.add_argument("--spinners", type=int, default=0, help="nice-19 busy loops running during the runs")
    p.add_argument("--build", type=Path, default=ROOT / "build" / "ros_floor", help="this package's build tree")
    p.add_argument("--ros-build", type=Path, default=ROOT / "build" / "ros", help="make ros's build tree (project)")
    p.add_argument("--tag", default="", help="a label copied into each JSON line")
    p.add_argument("--output", type=Path, help="append the JSON lines to this file too")
    args = p.parse_args()
    cases = args.cases.split(",")
    if bad := [c for c in cases if c not in CASES]:
        p.error(f"unknown case(s) {bad}; choose from {CASES}")
    build = args.build.resolve()
    if not (build / "lib" / "libros_floor.so").is_file():
        print(f"build it first (no {build}/lib/libros_floor.so):\n{BUILD}", file=sys.stderr)
        return 2
    if "project" in cases and not (args.ros_build / "lib" / "libparnet_ros_probe.so").is_file():
        print(f"the project case needs make ros ({args.ros_build})", file=sys.stderr)
        return 2
    spinners = [subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
                for _ in range(args.spinners)]
    try:
        with tempfile.TemporaryDirectory(prefix="ros-floor-") as tmp:
            tmp = Path(tmp)
            model = Path(args.model)
            if {"bare", "project"} & set(cases):
                model = export_224(tmp) if args.model == "parnet_s_224" else model.resolve()
                if not (model / "manifest.json").is_file():
                    print(f"no exported model at {model} (make demo writes export/digits)", file=sys.stderr)
                    return 2
            echo = {"floor": [], "busy": [f"_busy_ms:={args.busy_ms}", f"_busy_threads:={args.busy_threads}"],
                    "bare": [f"_model_dir:={model}", f"_options:=threads={args.threads}"]}
            for r in range(args.rounds):
                for case in cases:
                    work = tmp / f"{r}_{case}"
                    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
                    if case == "project":
                        res = run_project(work, args.ros_build.resolve(), model, args)
                    else:
                        res = run_pair(work, build, args, echo[case])
                    line = {"tag": args.tag, "case": case, "round": r, "hw": args.hw, "date": started,
                            "model": str(model) if case in ("bare", "project") else None,
                            "workers": args.workers or None, "spinners": args.spinners, **res,
                            "loadavg": " ".join(Path("/proc/loadavg").read_text().split()[:3])}
                    print(json.dumps(line), flush=True)
                    if args.output:
                        with open(args.output, "a") as f:
                            f.write(json.dumps(line) + "\n")
    finally:
        for s in spinners:
            s.kill()
            s.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
