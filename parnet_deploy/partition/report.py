"""Why a model was (or was not) split: one table a person can check against the prediction."""

from __future__ import annotations

from .plan import Partition


def why_table(partition: Partition) -> str:
    """Subgraphs in execution order with their operators, cost share and stream; then the
    predicted critical path against the whole model, and the verdict."""
    rows = [("subgraph", "stream", "ops", "share", "cost ms", "inputs", "outputs")]
    for s in partition.subgraphs:
        rows.append((s.name, "shared" if s.stream is None else str(s.stream), str(len(s.nodes)),
                     f"{100 * s.share:.1f}%", f"{s.cost_ms:.3f}", str(len(s.inputs)), str(len(s.outputs))))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    p = partition
    lines += ["",
              f"devices {p.devices}, streams {p.streams}, launch {p.launch_ms:.3f} ms per subgraph",
              f"predicted: whole {p.whole_ms:.3f} ms, critical path {p.critical_path_ms:.3f} ms, "
              f"speedup {p.predicted_speedup:.2f}x",
              f"verdict: {p.verdict}"]
    return "\n".join(lines)
