"""The placement planner: where each subgraph runs, from measured costs and a link model."""

import pytest

from parnet_deploy.engines import placement as pl
from parnet_deploy.export import load_manifest


@pytest.fixture(scope="module")
def exports(engine_exports):
    return engine_exports


def _toy_manifest(exports):
    _, dirs = exports
    return load_manifest(dirs["shared"])


def test_placement_spreads_streams_when_the_link_is_fast(exports):
    m = _toy_manifest(exports)
    devices = ["a", "b", "c"]
    cost = {(s.name, d): {"stem": 1.0, "fusion": 2.0}.get(s.name, 10.0) for s in m.subgraphs for d in devices}
    best = pl.plan(m, devices, cost, pl.Link(gbytes_per_s=100.0, latency_ms=0.01))
    streams = [best.assignment[f"stream{k}"] for k in range(3)]
    assert len(set(streams)) == 3
    assert best.predicted_ms == pytest.approx(1 + 10 + 2, abs=0.2)
    single = pl.simulate(list(m.subgraphs), {s.name: "a" for s in m.subgraphs}, cost, pl.Link(), "a",
                         ["image"], ["logits"])
    assert single.predicted_ms == pytest.approx(33.0) and best.predicted_ms < single.predicted_ms
    assert best.critical_path[0] == "stem" and best.critical_path[-1] == "fusion"


def test_placement_keeps_everything_home_when_the_link_is_slow(exports):
    m = _toy_manifest(exports)
    devices = ["a", "b", "c"]
    cost = {(s.name, d): 5.0 for s in m.subgraphs for d in devices}
    best = pl.plan(m, devices, cost, pl.Link(gbytes_per_s=1e-6, latency_ms=50.0))
    assert set(best.assignment.values()) == {"a"} and best.predicted_ms == pytest.approx(25.0)


def test_placement_prefers_the_faster_device(exports):
    m = _toy_manifest(exports)
    cost = {(s.name, d): (1.0 if d == "fast" else 4.0) for s in m.subgraphs for d in ("slow", "fast")}
    best = pl.plan(m, ["slow", "fast"], cost, pl.Link(gbytes_per_s=1e3, latency_ms=0.0))
    # all on the fast device: stem 1 + streams 3 x 1 + fusion 1 = 5; any stream on the slow one costs 4 alone
    assert best.assignment == {s.name: "fast" for s in m.subgraphs}
    assert best.predicted_ms == pytest.approx(5.0, abs=1e-3)  # plus moving the image off the home device
