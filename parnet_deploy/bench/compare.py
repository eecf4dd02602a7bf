"""``parnet-bench --compare CKPT``: the paper's Table 3 (unfused vs fused vs runtimes) on this machine.

All candidates are measured in one run, interleaved, and each one's logits are checked
against the train form first: a fast wrong answer is not a row.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..backends import available_backends
from ..compare import compare
from ..errors import VerificationError
from ..export.pipeline import ExportConfig, export_model
from ..models import ParNet
from ..reparam import reparameterize
from ..runtime import load
from .environment import environment
from .stats import LatencyStats
from .timing import TimingConfig, measure_interleaved

# int8 rows are judged by accuracy on a labeled set (parnet-eval, the int8 build's gate),
# not by logits of a random-weight model: no numerical check here.
RTOL = {"fp32": 1e-4, "bf16": 5e-2, "fp16": 1e-2, "int8": float("inf")}


@dataclass
class Candidate:
    name: str
    run: Callable[[np.ndarray], np.ndarray]
    precision: str = "fp32"
    close: Callable[[], None] | None = None


@dataclass
class CompareResult:
    rows: list[dict]
    environment: dict
    resolution: tuple[int, int]
    arch: str

    def to_dict(self) -> dict:
        return {"arch": self.arch, "resolution": list(self.resolution), "batch": 1, "rows": self.rows,
                "environment": self.environment}

    def table(self) -> str:
        lines = [f"{self.arch} {self.resolution[0]}x{self.resolution[1]} batch 1 ({self.environment['cpu']}, "
                 f"{self.environment['cores']} cores)",
                 f"  {'':<40}{'median ms':>10}{'p99 ms':>9}{'speed-up':>10}{'max rel err':>13}"]
        for r in self.rows:
            lat = r["latency_ms"]
            lines.append(f"  {r['name']:<40}{lat['median']:>10.2f}{lat['p99']:>9.2f}"
                         f"{r['speedup_vs_unfused']:>9.2f}x{r['max_rel_err_vs_train']:>13.1e}")
        return "\n".join(lines)


def torch_runner(model: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """numpy image in, numpy logits out, no autograd."""
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    return run


def torch_candidates(model: ParNet, threads: int) -> list[Candidate]:
    torch.set_num_threads(threads)
    return [Candidate("torch train form (unfused, eager)", torch_runner(model.eval())),
            Candidate("torch deploy form (eager)", torch_runner(reparameterize(model)))]


def runtime_candidates(model: ParNet, workdir: Path, resolution: tuple[int, int], threads: int,
                       log: Callable[[str], None]) -> list[Candidate]:
    """Every CPU backend installed here: the whole graph, and the streams of each split."""
    out = []
    for split in ("replicated", "shared"):
        directory, _ = export_model(model, ExportConfig(output=workdir, name=split, resolution=resolution,
                                                        split=split, verify=False), log=lambda _: None)
        log(f"exported {split} split")
        modes = ("whole", "streams") if split == "replicated" else ("streams",)
        for backend in available_backends("cpu"):
            for mode in modes:
                r = load(directory, backend=backend, mode=mode, threads=threads)
                label = f"{backend} whole graph" if mode == "whole" else f"{backend} streams ({split})"
                out.append(Candidate(label, r, close=r.close))
    return out


def run_compare(model: ParNet, resolution: tuple[int, int], threads: int, timing: TimingConfig = TimingConfig(),
                extra: Callable[[ParNet, Path], list[Candidate]] | None = None,
                log: Callable[[str], None] = print, rounds: int = 5) -> CompareResult:
    x = np.random.default_rng(0).standard_normal((1, 3, *resolution)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="parnet-compare-") as tmp:
        candidates = torch_candidates(model, threads)
        candidates += runtime_candidates(model, Path(tmp), resolution, threads, log)
        if extra is not None:
            candidates += extra(model, Path(tmp))
        try:
            reference = candidates[0].run(x)
            errors = []
            for c in candidates:
                check = compare(c.name, {"logits": c.run(x)}, {"logits": reference}, RTOL[c.precision])
                if not check.passed:
                    raise VerificationError(f"{c.name} disagrees with the train form:\n{check.report()}")
                errors.append(check.outputs[0].max_rel)
            log(f"all {len(candidates)} candidates agree with the train form; measuring "
                f"({rounds} interleaved rounds) ...")
            samples = measure_interleaved([lambda c=c: c.run(x) for c in candidates], timing, rounds, log)
        finally:
            for c in candidates:
                if c.close:
                    c.close()
    stats = [LatencyStats.from_seconds(s) for s in samples]
    base = stats[0].median
    rows = [{"name": c.name, "precision": c.precision, "latency_ms": st.to_dict(), "iterations": st.count,
             "throughput_qps": st.throughput_qps, "speedup_vs_unfused": base / st.median,
             "max_rel_err_vs_train": err, "samples_ms": [v * 1e3 for v in s]}
            for c, st, err, s in zip(candidates, stats, errors, samples)]
    env = environment({"threads": threads, "timing": asdict(timing)})
    return CompareResult(rows, env, resolution, model.config.arch)
