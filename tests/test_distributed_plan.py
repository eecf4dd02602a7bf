"""The distributed plan and schedule without PyTorch: which rank runs what, the JSON every rank
gets, and the transfers each rank makes in which order.

Everything is computed in a child interpreter where ``import torch`` fails (``sys.modules['torch']
= None``), so plan.py, schedule.py and the package's ``__init__`` must not import it, not even
indirectly; this process only compares the child's results with the expected ones.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import json, sys
    sys.modules["torch"] = None  # any `import torch` now raises ImportError

    from parnet_deploy.artifacts.export_manifest import load_manifest
    from parnet_deploy.runtime.distributed.plan import RankPlan
    from parnet_deploy.runtime.distributed.schedule import schedule

    manifests = {split: load_manifest(d) for split, d in zip(("replicated", "shared"), sys.argv[1:3])}
    cases = json.loads(sys.argv[3])

    def describe(plan):
        back = RankPlan.from_json(plan.to_json())
        return {"world": plan.world, "rank_of": plan.rank_of, "device_of": plan.device_of,
                "broadcast_inputs": list(plan.broadcast_inputs), "nccl": plan.nccl,
                "json_fields": sorted(json.loads(plan.to_json())),
                "round_trip": back == plan, "same_export": back.export == plan.export,
                "round_trip_device_of": sorted(back.device_of.items()),
                "steps": [[[[t.tensor, t.src, t.dst] for t in transfers], list(level)]
                          for transfers, level in schedule(plan)]}

    out = {name: describe(RankPlan.make(manifests[case["split"]], case["placement"], case["devices"], "fp32"))
           for name, case in cases.items()}
    try:
        import torch  # noqa: F401
        guarded = False
    except ImportError:
        guarded = True
    out["torch"] = {"guarded": guarded, "loaded": sorted(m for m in sys.modules
                                                         if (m == "torch" or m.startswith("torch."))
                                                         and sys.modules[m] is not None)}
    print(json.dumps(out))
""")

SHARED_STREAMS = ["stream0", "stream1", "stream2"]
CASES = {
    # everything on one rank: nothing crosses ranks
    "one_rank": {"split": "shared", "placement": {n: "a" for n in ["stem", *SHARED_STREAMS, "fusion"]},
                 "devices": {"a": "cpu"}},
    # one stream per rank, stem and fusion on the caller's rank
    "streams_apart": {"split": "shared",
                      "placement": {"stem": "a", "stream0": "a", "stream1": "b", "stream2": "c", "fusion": "a"},
                      "devices": {"a": "cpu", "b": "cpu", "c": "cpu"}},
    # the stem elsewhere: the image is broadcast, the stem's outputs travel to rank 0
    "stem_away": {"split": "shared",
                  "placement": {"stem": "b", "stream0": "a", "stream1": "a", "stream2": "a", "fusion": "a"},
                  "devices": {"a": "cpu", "b": "cpu"}},
    # the official split of an export (placement None): stream k on rank k, the fusion with stream 0
    "official": {"split": "replicated", "placement": None, "devices": None},
    # the fusion's device is rank 0 whatever its tag; "cuda" is "cuda:0"
    "fusion_home_on_gpus": {"split": "replicated",
                            "placement": {"stream0": "a", "stream1": "b", "stream2": "c", "fusion": "b"},
                            "devices": {"a": "cuda:1", "b": "cuda", "c": "cuda:2"}},
}


@pytest.fixture(scope="module")
def plans(engine_exports):
    _, dirs = engine_exports
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(dirs["replicated"]), str(dirs["shared"]),
                           json.dumps(CASES)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_plan_and_schedule_import_no_torch(plans):
    assert plans["torch"] == {"guarded": True, "loaded": []}


def test_everything_on_one_rank(plans):
    p = plans["one_rank"]
    assert p["world"] == 1 and p["device_of"] == {"0": "cpu"} and p["nccl"] is False
    assert p["rank_of"] == {"stem": 0, "stream0": 0, "stream1": 0, "stream2": 0, "fusion": 0}
    assert p["broadcast_inputs"] == []
    assert p["steps"] == [[[], ["stem"]], [[], SHARED_STREAMS], [[], ["fusion"]]]


def test_streams_on_different_ranks(plans):
    p = plans["streams_apart"]
    assert p["world"] == 3 and p["device_of"] == {"0": "cpu", "1": "cpu", "2": "cpu"}
    assert p["rank_of"] == {"stem": 0, "stream0": 0, "stream1": 1, "stream2": 2, "fusion": 0}
    assert p["broadcast_inputs"] == []  # only the stem, on rank 0, reads the image
    assert p["steps"] == [
        [[], ["stem"]],
        [[["x1", 0, 1], ["x2", 0, 2]], SHARED_STREAMS],
        [[["y1", 1, 0], ["y2", 2, 0]], ["fusion"]],
    ]


def test_a_stem_on_another_rank_gets_the_image_and_sends_its_outputs(plans):
    p = plans["stem_away"]
    assert p["world"] == 2 and p["rank_of"] == {"stem": 1, "stream0": 0, "stream1": 0, "stream2": 0, "fusion": 0}
    assert p["broadcast_inputs"] == ["image"]
    assert p["steps"] == [
        [[], ["stem"]],
        [[["x0", 1, 0], ["x1", 1, 0], ["x2", 1, 0]], SHARED_STREAMS],
        [[], ["fusion"]],
    ]


def test_the_official_split_on_this_cpu(plans):
    p = plans["official"]
    assert p["world"] == 3 and p["device_of"] == {"0": "cpu", "1": "cpu", "2": "cpu"}
    assert p["rank_of"] == {"stream0": 0, "stream1": 1, "stream2": 2, "fusion": 0}
    assert p["broadcast_inputs"] == ["image"]
    assert p["steps"] == [[[], SHARED_STREAMS], [[["y1", 1, 0], ["y2", 2, 0]], ["fusion"]]]


def test_the_fusions_device_is_rank_0_and_gpu_names_are_canonical(plans):
    p = plans["fusion_home_on_gpus"]
    assert p["world"] == 3 and p["nccl"] is True
    assert p["device_of"] == {"0": "cuda:0", "1": "cuda:1", "2": "cuda:2"}
    assert p["rank_of"] == {"stream0": 1, "stream1": 0, "stream2": 2, "fusion": 0}
    assert p["steps"] == [[[], SHARED_STREAMS], [[["y0", 1, 0], ["y2", 2, 0]], ["fusion"]]]


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_plan_round_trips_through_json(plans, case):
    """to_json writes the ranks as JSON object keys (strings); from_json gives back the same plan."""
    p = plans[case]
    assert p["round_trip"] is True and p["same_export"] is True
    assert p["json_fields"] == ["device_of", "manifest", "precision", "rank_of", "world"]
    assert p["round_trip_device_of"] == [[r, p["device_of"][str(r)]] for r in range(p["world"])]
