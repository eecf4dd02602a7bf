"""The ROS 1 front ends (ros/): parnet_ros_node and the nodelet parnet_ros/ClassifierNodelet over the
native C library, driven through a real ROS master.

A harness starts ``rosmaster --core`` on a free loopback port (ROS_HOME / ROS_LOG_DIR in a temp dir),
then the node, then a rospy client (ros/tools/ros_client.py, under Debian's /usr/bin/python3, where
rospy lives) that publishes sensor_msgs/Image and subscribes to vision_msgs/Classification2D. It checks:
scores equal the Python runtime on the same pixels (rtol 1e-5) with stamp and frame_id preserved; bgr8
with swapped channels and a padded step give identical scores; unsupported encodings, short data and
wrong resolutions are dropped, counted and logged while the next frame still works; a burst leaves no
backlog; the nodelet (discovered through Debian's pluginlib + rospack) gives the same results; a bad
configuration ends the node with one line and a non-zero status; SIGINT/SIGTERM exit 0 within 2 s; and
the master and the publisher report vision_msgs/Classification2D with upstream Noetic's md5sum.

The apt packages come from scripts/install_ros_deps.sh (``make test`` runs it); if rospy is missing and
that script cannot install it, the module is skipped with the reason.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SMALL_INPUT, randomize_bn

import parnet_deploy as pd
from parnet_deploy import runtime
from parnet_deploy.artifacts.export_manifest import load_manifest, normalize_u8
from parnet_deploy.export import ExportConfig, export_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ros" / "tools"))
from local_master import free_port, isolated_env, wait_for_master  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BUILD = ROOT / "build" / "test_ros"  # incremental between runs (the C library and the ROS package)
DEB_PY = "/usr/bin/python3"
CLIENT = ROOT / "ros" / "tools" / "ros_client.py"
NODELET = "/usr/lib/nodelet/nodelet"
# md5sum of vision_msgs/Classification2D in upstream Noetic (ros-perception/vision_msgs, noetic-devel and
# tags 0.0.1/0.0.2: ObjectHypothesis with `int64 id`); the same value is hard-coded in the code upstream's
# genlisp, gennodejs and rosjava generators produce for it. ros/msg/ holds those definitions verbatim.
UPSTREAM_MD5 = "b23d0855d0f41568e09106615351255f"


def _debian_ros() -> str | None:
    """None when /usr/bin/python3 has rospy and the generators; else why not (after trying the deps script)."""
    probe = [DEB_PY, "-c", "import rospy, rosmaster, genmsg, gencpp, genpy"]
    if os.path.exists(DEB_PY) and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return None
    try:  # no terminal: a sudo that wants a password fails instead of waiting
        r = subprocess.run([str(ROOT / "scripts" / "install_ros_deps.sh")], check=False, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=900)
    except subprocess.TimeoutExpired as e:
        r = subprocess.CompletedProcess(e.cmd, 1, "", "timed out after 900 s")
    if os.path.exists(DEB_PY) and subprocess.run(probe, check=False, capture_output=True).returncode == 0:
        return None
    return ("Debian's ROS 1 packages are missing (no rospy in /usr/bin/python3) and scripts/install_ros_deps.sh "
            f"could not install them: {(r.stderr or r.stdout).strip()[-300:]}")


@pytest.fixture(scope="module", autouse=True)
def ros_available():
    reason = _debian_ros()
    if reason:
        pytest.skip(reason)


def _cmake(src: Path, build: Path, *defs: str) -> None:
    r = subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-DCMAKE_BUILD_TYPE=Release", *defs],
                       check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run(["cmake", "--build", str(build), "-j2"], check=False, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.fixture(scope="module")
def built() -> Path:
    """libparnet_rt installed under BUILD/capi, then ros/ built against that CMake package."""
    import openvino

    _cmake(ROOT / "capi", BUILD / "capi-build", f"-DOpenVINO_DIR={Path(openvino.__file__).parent / 'cmake'}")
    subprocess.run(["cmake", "--install", str(BUILD / "capi-build"), "--prefix", str(BUILD / "capi")], check=True,
                   capture_output=True)
    _cmake(ROOT / "ros", BUILD / "ros", f"-DCMAKE_PREFIX_PATH={BUILD / 'capi'}")
    return BUILD / "ros"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    m = randomize_bn(pd.create_model("parnet_cifar_s", **TINY_SMALL_INPUT))  # 32x32, 10 classes
    d, _ = export_model(m, ExportConfig(output=tmp_path_factory.mktemp("ros_model"), name="tiny", split="shared",
                                        verify=False), log=lambda _: None)
    return d


@pytest.fixture(scope="module")
def expected(model):
    """Top-5 (ids, softmax scores) of the Python runtime (OpenVINO) on an 8-bit HWC RGB image."""
    norm = load_manifest(model).normalization
    run = runtime.load(model, backend="openvino", threads=1)

    def top5(hwc: np.ndarray):
        logits = run(np.ascontiguousarray(normalize_u8(hwc, norm.mean, norm.std)[None])).astype(np.float64).ravel()
        p = np.exp(logits - logits.max())
        p /= p.sum()
        ids = sorted(range(len(p)), key=lambda i: (-logits[i], i))[:5]
        return ids, p[ids]

    yield top5
    run.close()


class Ros:
    def __init__(self, root: Path, build: Path):
        self.port = free_port()
        self.root = root
        (root / "home").mkdir()
        self.env = isolated_env(dict(os.environ), root, build, self.port)
        self.build = build
        self.master = self.spawn("rosmaster", ["/usr/bin/rosmaster", "--core", "-p", str(self.port)])
        try:
            self.proxy = wait_for_master(self.port, lambda: self.master.poll() is None)
        except RuntimeError as e:
            pytest.fail(f"{e}: {self.log('rosmaster')}")

    def spawn(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        out, err = (open(self.root / f"{name}.{ext}", "w") for ext in ("out", "err"))  # noqa: SIM115 (the child's)
        return subprocess.Popen(argv, env=self.env, stdout=out, stderr=err, **kw)

    def log(self, name: str) -> str:
        return ((self.root / f"{name}.out").read_text() + (self.root / f"{name}.err").read_text())[-4000:]

    def topics(self) -> dict[str, str]:
        return dict(self.proxy.getTopicTypes("/test")[2])

    def published(self) -> dict[str, str]:
        return dict(self.proxy.getPublishedTopics("/test", "")[2])

    def start(self, name: str, model_dir: Path, *params: str, nodelet: bool = False) -> subprocess.Popen:
        args = [f"__name:={name}", "image:=/cam/image", f"_model_dir:={model_dir}", *params]
        argv = ([NODELET, "standalone", "parnet_ros/ClassifierNodelet", *args] if nodelet
                else [str(self.build / "parnet_ros_node"), *args])
        p = self.spawn(name, argv)
        deadline = time.time() + 60
        while f"/{name}/classification" not in self.published():
            assert p.poll() is None and time.time() < deadline, self.log(name)
            time.sleep(0.1)
        return p

    def client(self, plan: dict, tag: str) -> dict:
        (self.root / f"{tag}.plan.json").write_text(json.dumps(plan))
        r = subprocess.run([DEB_PY, str(CLIENT), str(self.root / f"{tag}.plan.json"), str(self.root / f"{tag}.json")],
                           env=self.env, check=False, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return json.loads((self.root / f"{tag}.json").read_text())

    def close(self) -> None:
        self.master.terminate()
        self.master.wait(10)


@pytest.fixture(scope="module")
def ros(built, tmp_path_factory):
    r = Ros(tmp_path_factory.mktemp("ros"), built)
    yield r
    r.close()


def _stop(p: subprocess.Popen, sig=signal.SIGINT, within: float = 2.0) -> tuple[int, float]:
    t = time.monotonic()
    p.send_signal(sig)
    try:
        rc = p.wait(within)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return -999, time.monotonic() - t
    return rc, time.monotonic() - t


LABELS = [f"class {i}" for i in range(10)]


@pytest.fixture(scope="module")
def node(ros, model):
    (ros.root / "labels.txt").write_text("\n".join(LABELS) + "\n")
    p = ros.start("cls", model, f"_labels:={ros.root / 'labels.txt'}")
    yield p
    if p.poll() is None:
        _stop(p)


@pytest.fixture(scope="module")
def nodelet(ros, model):
    p = ros.start("cls_nodelet", model, nodelet=True)
    yield p
    if p.poll() is None:
        _stop(p)


RNG = np.random.default_rng(7)
IMAGES = [RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)]


def _frame(data: bytes, encoding: str, step: int, frame_id: str, expect="output", h=32, w=32) -> dict:
    return {"encoding": encoding, "height": h, "width": w, "step": step, "frame_id": frame_id, "expect": expect,
            "data_b64": base64.b64encode(bytes(data)).decode()}


def _padded(img: np.ndarray, pad: int) -> bytes:
    h, w, _ = img.shape
    rows = np.full((h, 3 * w + pad), 0xAB, np.uint8)
    rows[:, :3 * w] = img.reshape(h, 3 * w)
    return rows.tobytes()


def _plan(frames, mode="sequential", **kw) -> dict:
    return {"image_topic": "/cam/image", "out_ns": "/cls", "mode": mode, "frames": frames, "timeout": 20, **kw}


MAIN_FRAMES = [
    _frame(IMAGES[0].tobytes(), "rgb8", 96, "cam_a"),                        # 0: rgb8
    _frame(IMAGES[1].tobytes(), "rgb8", 96, "cam_b/optical"),                # 1: rgb8, another frame_id
    _frame(IMAGES[0][..., ::-1].tobytes(), "bgr8", 96, "cam_a"),             # 2: bgr8, channels swapped
    _frame(_padded(IMAGES[1], 7), "rgb8", 103, "cam_b/optical"),             # 3: padded step
    _frame(_padded(IMAGES[0][..., ::-1], 32), "bgr8", 128, "cam_a"),         # 4: bgr8 and padded
]


def _by_stamp(result: dict) -> dict[int, dict]:
    """sent index -> output, matched by stamp."""
    outs = {(o["secs"], o["nsecs"]): o for o in result["outputs"]}
    return {s["index"]: outs[(s["secs"], s["nsecs"])] for s in result["sent"] if (s["secs"], s["nsecs"]) in outs}


def _check_main(result: dict, expected) -> dict[int, dict]:
    got = _by_stamp(result)
    assert sorted(got) == list(range(len(MAIN_FRAMES))), got.keys()
    for i, img in ((0, IMAGES[0]), (1, IMAGES[1])):
        ids, scores = expected(img)
        assert got[i]["ids"] == ids, (i, got[i], ids)
        np.testing.assert_allclose(got[i]["scores"], scores, rtol=1e-5)
        assert got[i]["frame_id"] == MAIN_FRAMES[i]["frame_id"]
    stamps = {(s["secs"], s["nsecs"]) for s in result["sent"]}
    assert all((o["secs"], o["nsecs"]) in stamps for o in result["outputs"])  # stamps copied, never now()
    for i, same in ((2, 0), (3, 1), (4, 0)):  # bgr8 swapped and padded steps: identical, not just close
        assert got[i]["ids"] == got[same]["ids"] and got[i]["scores"] == got[same]["scores"], (i, got[i], got[same])
        assert got[i]["frame_id"] == got[same]["frame_id"]
    return got


def test_scores_equal_python_runtime_with_stamp_and_frame_id(ros, node, expected):
    """(1) and (2): the Python runtime's scores on the same pixels; bgr8 and padded steps identical."""
    result = ros.client(_plan(MAIN_FRAMES), "main")
    _check_main(result, expected)
    assert result["drops"] == []


def test_bad_frames_are_dropped_counted_logged_and_the_node_goes_on(ros, node, expected):
    """(3): unsupported encoding, short data, a short step and a wrong resolution: no output, a counted and
    logged drop each; the next good frame still works."""
    good = MAIN_FRAMES[0]
    frames = [
        _frame(IMAGES[0][..., 0].tobytes(), "mono8", 32, "cam_a", expect="drop"),       # unsupported encoding
        _frame(IMAGES[0].tobytes()[:-1], "rgb8", 96, "cam_a", expect="drop"),           # data one byte short
        _frame(IMAGES[0].tobytes(), "rgb8", 95, "cam_a", expect="drop"),                # step < 3 * width
        _frame(np.zeros((16, 16, 3), np.uint8).tobytes(), "rgb8", 48, "cam_a", expect="drop", h=16, w=16),
        good,
    ]
    before = node.poll()
    result = ros.client(_plan(frames), "bad")
    assert before is None and node.poll() is None
    got = _by_stamp(result)
    assert list(got) == [4], got  # only the good frame produced an output
    ids, scores = expected(IMAGES[0])
    assert got[4]["ids"] == ids
    np.testing.assert_allclose(got[4]["scores"], scores, rtol=1e-5)
    counts = result["drops"]
    assert len(counts) == 4 and counts == list(range(counts[0], counts[0] + 4)), counts  # counted, one by one
    time.sleep(0.5)
    log = ros.log("cls")
    for reason in ("encoding 'mono8' is not supported", "layout", "the model takes 32x32"):
        assert reason in log, log  # logged (throttled per reason)


def test_burst_leaves_no_backlog(ros, node):
    """(4): 300 frames at ~2 kHz: at most as many outputs as inputs, in order, the last input's stamp last."""
    result = ros.client(_plan(MAIN_FRAMES[:2], mode="burst", repeat=300, rate_hz=2000), "burst")
    sent = [(s["secs"], s["nsecs"]) for s in result["sent"]]
    outs = [(o["secs"], o["nsecs"]) for o in result["outputs"]]
    assert 1 <= len(outs) <= len(sent)
    assert outs == sorted(outs) and set(outs) <= set(sent)
    assert outs[-1] == sent[-1], (outs[-5:], sent[-5:])


def test_nodelet_is_discovered_and_gives_the_same_results(ros, node, nodelet, expected):
    """(5): parnet_ros/ClassifierNodelet, loaded by `nodelet standalone` through pluginlib's discovery
    (Debian's pluginlib: ament index first, then rospack on ROS_PACKAGE_PATH, which finds build/ros's
    package.xml), gives the node's results."""
    via_node = _check_main(ros.client(_plan(MAIN_FRAMES), "main_node"), expected)
    via_nodelet = _check_main(ros.client({**_plan(MAIN_FRAMES), "out_ns": "/cls_nodelet"}, "main_nodelet"), expected)
    for i in via_node:
        assert via_node[i]["ids"] == via_nodelet[i]["ids"] and via_node[i]["scores"] == via_nodelet[i]["scores"]


def test_nodelet_in_process_with_another_nodelet(ros, model, tmp_path):
    """(5, in-process): the classifier and the benchmark's probe nodelet (parnet_ros/LatencyProbe) in one
    nodelet manager: images and results pass as shared pointers; every frame gets its result."""
    frame = tmp_path / "frame.rgb8"
    frame.write_bytes(IMAGES[0].tobytes())
    out = tmp_path / "probe.txt"
    procs = [ros.spawn("mgr", [NODELET, "manager", "__name:=mgr"])]
    try:
        time.sleep(0.5)
        procs.append(ros.spawn("mgr_cls", [NODELET, "load", "parnet_ros/ClassifierNodelet", "mgr", "__name:=cls_in",
                                           "image:=/in/image", f"_model_dir:={model}"]))
        procs.append(ros.spawn("mgr_probe", [
            NODELET, "load", "parnet_ros/LatencyProbe", "mgr", "__name:=probe", "image:=/in/image",
            "classification:=/cls_in/classification", "inference_ms:=/cls_in/inference_ms", f"_frame:={frame}",
            "_height:=32", "_width:=32", "_count:=30", "_warmup:=5", f"_output:={out}"]))
        deadline = time.time() + 90
        while not out.exists():
            assert time.time() < deadline and all(p.poll() is None for p in procs), ros.log("mgr")
            time.sleep(0.2)
    finally:
        for p in reversed(procs):
            _stop(p, within=10)
    rows = np.loadtxt(out, ndmin=2)
    assert rows.shape == (30, 2) and (rows[:, 1] > 0).all() and (rows[:, 0] > rows[:, 1]).all(), rows


def _tampered(model: Path, tmp: Path) -> Path:
    d = tmp / "tampered"
    shutil.copytree(model, d)
    with (d / "model.onnx").open("ab") as f:
        f.write(b"\0")
    return d


def test_bad_configuration_exits_nonzero_with_one_line(ros, model, tmp_path):
    """(6): a bad ~model_dir (and options, tampered artifact, top_k, labels) ends the node at start-up."""
    short_labels = tmp_path / "labels.txt"
    short_labels.write_text("\n".join(LABELS[:9]) + "\n")
    cases = {"missing dir": [f"_model_dir:={tmp_path / 'nope'}"],
             "bad options": [f"_model_dir:={model}", "_options:=mode=sideways"],
             "tampered": [f"_model_dir:={_tampered(model, tmp_path)}"],
             "bad top_k": [f"_model_dir:={model}", "_top_k:=0"],
             "labels count": [f"_model_dir:={model}", f"_labels:={short_labels}"],
             "no labels file": [f"_model_dir:={model}", f"_labels:={tmp_path / 'none.txt'}"],
             "no model_dir": []}
    for n, (case, params) in enumerate(cases.items()):
        r = subprocess.run([str(ros.build / "parnet_ros_node"), f"__name:=bad_{n}", *params], env=ros.env,
                           check=False, capture_output=True, text=True, timeout=60)
        lines = [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]
        assert r.returncode != 0 and len(lines) == 1 and lines[0].startswith("parnet_ros_node: "), (case, r)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_exits_cleanly_within_2s(ros, model, sig):
    """(7): SIGINT (and SIGTERM) end the node with status 0 within 2 s, after prt_close."""
    p = ros.start(f"cls_sig{int(sig)}", model)
    rc, took = _stop(p, sig, within=2.0)
    assert rc == 0 and took < 2.0, (rc, took, ros.log(f"cls_sig{int(sig)}"))


def test_labels_are_published_as_a_parameter(ros, node):
    code, _, value = ros.proxy.getParam("/test", "/cls/class_labels")
    assert code == 1 and value == LABELS


def test_master_reports_upstream_md5sum(ros, node):
    """(8): vision_msgs/Classification2D, wire-compatible with upstream Noetic."""
    assert ros.topics()["/cls/classification"] == "vision_msgs/Classification2D"
    result = ros.client(_plan(MAIN_FRAMES[:1]), "md5")
    assert result["type"] == "vision_msgs/Classification2D"
    assert result["md5sum"] == UPSTREAM_MD5  # what the node's publisher (generated C++) announces
    assert result["generated_md5sum"] == UPSTREAM_MD5  # the generated Python module
