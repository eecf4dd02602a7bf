"""Latency plots: histogram and CDF (matplotlib, imported on use)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BackendMissingError


def plot_latency(series: dict[str, list[float]], path: str | Path, title: str) -> Path:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise BackendMissingError("matplotlib", "pip install matplotlib") from e
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
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
