"""Structural comparison of two Q/DQ ONNX graphs built from the same fp32 graph (ours vs NVIDIA ModelOpt).

Only reads ONNX files (needs ``onnx`` and ``numpy``), e.g.:

    python benchmarks/modelopt_structure.py FP32.onnx OURS_INT8.onnx MODELOPT_INT8.onnx [--names ours modelopt]

Every (consumer node, input index) of the fp32 graph is given a role (first conv's activation, SE conv's
weight, Add's conv-produced input, Mul's Sigmoid gate, ...); for each graph it records whether that input
reads a DequantizeLinear output and how (activation or weight, per channel or per tensor, zero point dtype
and values, whether the DQ output is shared by several consumers). Nodes are matched by name: both tools
keep the fp32 graph's node names.

The ModelOpt graph compared in the first run (nvidia-modelopt 0.47.0 in its own venv, CPU only, ONNX Runtime
1.24 CPU EP; see the report that came with this file) came from:

    from modelopt.onnx.quantization import quantize
    quantize(onnx_path="small/model.onnx", quantize_mode="int8", calibration_data={"image": images},
             calibration_method="max", calibration_eps=["cpu"], high_precision_dtype="fp32",
             output_path="modelopt.int8.onnx")

(``high_precision_dtype="fp16"``, ModelOpt's default, gives the same Q/DQ placement plus fp16 casts.)
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

QDQ = ("QuantizeLinear", "DequantizeLinear")
SHAPE_ONLY = ("Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose")


class Graph:
    def __init__(self, path: str):
        self.model = onnx.load(path)
        g = self.model.graph
        self.inits = {i.name: i for i in g.initializer}
        for n in g.node:  # Constant nodes count as initializers
            if n.op_type == "Constant" and n.attribute:
                self.inits[n.output[0]] = n.attribute[0].t
        self.producer = {o: n for n in g.node for o in n.output}
        self.readers: dict[str, list[tuple[onnx.NodeProto, int]]] = defaultdict(list)
        for n in g.node:
            for i, t in enumerate(n.input):
                if t:
                    self.readers[t].append((n, i))
        self.nodes = {n.name: n for n in g.node if n.op_type not in QDQ and n.op_type != "Constant"}
        self.inputs = {i.name for i in g.input}

    def const(self, name: str):
        return numpy_helper.to_array(self.inits[name]) if name in self.inits else None

    def src_op(self, tensor: str) -> str:
        """Op type that produced ``tensor`` looking through Q/DQ and shape-only ops."""
        while True:
            if tensor in self.inputs:
                return "graph input"
            if tensor in self.inits:
                return "initializer"
            n = self.producer.get(tensor)
            if n is None:
                return "?"
            if n.op_type in QDQ or n.op_type in SHAPE_ONLY:
                tensor = n.input[0]
                continue
            return n.op_type

    def edge_info(self, node: onnx.NodeProto, i: int) -> dict | None:
        """How input ``i`` of ``node`` is quantized, or None when it is read in float."""
        t = node.input[i]
        dq = self.producer.get(t)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        x = dq.input[0]
        q = self.producer.get(x)
        scale = self.const(dq.input[1])
        zp = self.const(dq.input[2]) if len(dq.input) > 2 and dq.input[2] else None
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        if x in self.inits:
            kind, stored = "weight", f"{onnx.helper.tensor_dtype_to_np_dtype(self.inits[x].data_type)} initializer"
            data = x
        elif q is not None and q.op_type == "QuantizeLinear" and q.input[0] in self.inits:
            kind, stored = "weight", "float initializer + Q"
            data = q.input[0]
        else:
            kind, stored = "activation", "Q(activation)"
            data = q.input[0] if q is not None else x
        consumers = [n.name for n, _ in self.readers[t] if n.op_type not in QDQ]
        return {
            "kind": kind,
            "stored": stored,
            "granularity": "per-channel" if scale is not None and scale.size > 1 else "per-tensor",
            "axis": axis if scale is not None and scale.size > 1 else None,
            "zp_dtype": str(zp.dtype) if zp is not None else "none(uint8 default)",
            "zp_nonzero": bool(zp is not None and np.any(zp != 0)),
            "scale": scale,
            "shared_by": len(consumers),
            "data": data,
        }


def role(g: Graph, node: onnx.NodeProto, i: int) -> str:
    """A description of input ``i`` of ``node`` in the fp32 graph that is the same in every graph."""
    op = node.op_type
    src = g.src_op(node.input[i])
    if op == "Conv":
        if node.input[0] in g.inputs:
            where = "first Conv (reads image)"
        elif g.src_op(node.input[0]) in ("GlobalAveragePool", "ReduceMean"):
            where = "SE Conv (on pooled 1x1)"
        else:
            where = "Conv"
        return f"{where} {['act', 'weight', 'bias'][i]}"
    if op in ("Gemm", "MatMul"):
        return f"classifier {op} {['act', 'weight', 'bias'][i]}"
    if op == "Add":
        if src == "initializer":
            return "Add constant input"
        if any(g.src_op(t) == "initializer" for j, t in enumerate(node.input) if j != i):
            return f"Add x+constant, x input (from {src})"
        if src == "Conv":
            return "Add conv-produced input"
        return f"Add residual input (from {src})"
    if op == "Mul":
        if src == "Sigmoid":
            return "Mul gate input (from Sigmoid)"
        return f"Mul data input (from {src})"
    if op == "BatchNormalization":
        return "BatchNormalization " + ("act" if i == 0 else "param")
    if src == "initializer":
        return f"{op} constant input"
    return f"{op} input (from {src})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fp32")
    ap.add_argument("graphs", nargs="+")
    ap.add_argument("--names", nargs="+")
    ap.add_argument("--list", action="store_true", help="list every edge that differs")
    a = ap.parse_args()
    names = a.names or [p.rsplit("/", 1)[-1] for p in a.graphs]
    ref = Graph(a.fp32)
    gs = [Graph(p) for p in a.graphs]

    print("== node counts (op type: fp32 / " + " / ".join(names) + ")")
    counts = [Counter(n.op_type for n in ref.model.graph.node)] + [Counter(n.op_type for n in g.model.graph.node)
                                                                  for g in gs]
    for op in sorted(set().union(*counts)):
        print(f"  {op:22s} " + " / ".join(str(c[op]) for c in counts))
    for name, g in zip(names, gs):
        missing = set(ref.nodes) - set(g.nodes)
        extra = set(g.nodes) - set(ref.nodes)
        print(f"  {name}: opset {[o.version for o in g.model.opset_import if o.domain in ('', 'ai.onnx')]}, "
              f"fp32 nodes missing {len(missing)}, extra non-Q/DQ nodes {len(extra)} {sorted(extra)[:5]}")

    edges = [(n, i) for n in ref.model.graph.node if n.op_type not in QDQ for i, t in enumerate(n.input) if t]
    roles = {(n.name, i): role(ref, n, i) for n, i in edges}
    info = [{(n.name, i): (g.edge_info(g.nodes[n.name], i) if n.name in g.nodes and i < len(g.nodes[n.name].input)
                           else None) for n, i in edges} for g in gs]

    print("\n== DQ-fed inputs per consumer op type (activation / weight)")
    op_of = {n.name: n.op_type for n in ref.model.graph.node}
    for name, inf in zip(names, info):
        c = Counter()
        for (nm, _), e in inf.items():
            if e:
                c[(op_of[nm], e["kind"])] += 1
        ops = sorted({k[0] for k in c})
        print(f"  {name}: " + ", ".join(f"{op} {c[(op, 'activation')]}/{c[(op, 'weight')]}" for op in ops)
              + f"  (total {sum(c.values())})")

    print("\n== per role: number of inputs, then quantized count in " + " / ".join(names))
    by_role: dict[str, list] = defaultdict(list)
    for k in edges:
        by_role[roles[(k[0].name, k[1])]].append((k[0].name, k[1]))
    for r in sorted(by_role):
        ks = by_role[r]
        cells = []
        for inf in info:
            qs = [inf[k] for k in ks if inf[k]]
            desc = ""
            if qs:
                kinds = Counter((e["kind"], e["granularity"], e["axis"], e["zp_dtype"], e["zp_nonzero"], e["stored"])
                                for e in qs)
                desc = "; ".join(f"{k[0]} {k[1]}{'' if k[2] is None else f' axis={k[2]}'} zp={k[3]}"
                                 f"{' nonzero' if k[4] else ''} {k[5]} x{v}"
                                 for k, v in kinds.items())
                shared = sum(1 for e in qs if e["shared_by"] > 1)
                if shared:
                    desc += f"; DQ shared with other readers: {shared}"
            cells.append(f"{len(qs):3d} [{desc}]" if qs else f"{0:3d}")
        print(f"  {r:45s} n={len(ks):3d} | " + " | ".join(cells))

    if len(gs) == 2:
        print(f"\n== inputs quantized in exactly one graph, by role ({names[0]} only / {names[1]} only)")
        diff: dict[str, list[list]] = defaultdict(lambda: [[], []])
        for k in map(lambda e: (e[0].name, e[1]), edges):
            a_, b_ = info[0][k] is not None, info[1][k] is not None
            if a_ != b_:
                diff[roles[k]][0 if a_ else 1].append(k)
        for r, (x, y) in sorted(diff.items()):
            print(f"  {r:45s} {len(x):3d} / {len(y):3d}")
            if a.list:
                for k in x + y:
                    print(f"      {k}")
        # activation scales on inputs both quantize (same calibration data, both max calibration)
        ratios = []
        for k in map(lambda e: (e[0].name, e[1]), edges):
            e0, e1 = info[0][k], info[1][k]
            if e0 and e1 and e0["kind"] == e1["kind"] == "activation":
                ratios.append(float(e0["scale"].ravel()[0] / e1["scale"].ravel()[0]))
        if ratios:
            r = np.array(ratios)
            print(f"\n== activation scale ratio {names[0]}/{names[1]} on {len(r)} common inputs: "
                  f"median {np.median(r):.4f}, min {r.min():.4f}, max {r.max():.4f}")


if __name__ == "__main__":
    main()
