"""Latency plots: histogram and CDF; latency and images/s against the batch (matplotlib, imported on use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendMissingError


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BackendMissingError("matplotlib", "pip install matplotlib") from e
    return plt


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_latency(series: dict[str, list[float]], path: str | Path, title: str) -> Path:
    plt = _pyplot()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for name, ms in series.items():
        ms = np.sort(np.asarray(ms))
        hist.hist(ms, bins=40, alpha=0.6, label=name)
        cdf.plot(ms, np.arange(1, ms.size + 1) / ms.size, label=name)
    hist.set(xlabel="latency (ms)", ylabel="calls", title="histogram")
    cdf.set(xlabel="latency (ms)", ylabel="fraction of calls", title="CDF")
    for ax in (hist, cdf):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)


def plot_batch_sweep(series: dict[str, dict[int, tuple[float, float, float]]], path: str | Path, title: str) -> Path:
    """``series``: name -> {batch: (median ms per call, p99 ms per call, images/s)}; latency per call
    (median, p99 as the bar's top) and images/s against the batch."""
    plt = _pyplot()
    fig, (lat, ips) = plt.subplots(1, 2, figsize=(11, 4))
    batches: set[int] = set()
    for name, points in series.items():
        b = sorted(points)
        batches.update(b)
        med = np.array([points[k][0] for k in b])
        p99 = np.array([points[k][1] for k in b])
        lat.errorbar(b, med, yerr=[np.zeros_like(med), p99 - med], marker="o", capsize=3, label=name)
        ips.plot(b, [points[k][2] for k in b], marker="o", label=name)
    lat.set(xlabel="batch", ylabel="latency per call (ms; median, bar to p99)", title="latency per call")
    ips.set(xlabel="batch", ylabel="images/s", title="throughput (calls back to back)")
    for ax in (lat, ips):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted(batches), [str(b) for b in sorted(batches)])
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return _save(plt, fig, path)
