"""Cut a model into one ONNX model per subgraph of a :class:`Partition`, and run them back together.

Boundary tensors keep their names (a producer's output is named as its consumer's input), so
the pieces carry the DAG themselves. Each piece is the whole model with its inputs and
outputs moved to the boundary and everything else dropped (onnx-graphsurgeon's
``cleanup``); the initializers and constant nodes a piece reads go with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx

from ..errors import ToolchainError, UserError
from .graph import constant_nodes, prepare_model
from .plan import Partition


def cut_model(model: onnx.ModelProto, partition: Partition) -> dict[str, onnx.ModelProto]:
    """Subgraph name → its ONNX model (each passes ``onnx.checker``), in the partition's execution order."""
    import onnx_graphsurgeon as gs

    prepared = prepare_model(model)
    known = {n.name for n in prepared.graph.node}
    missing = [n for s in partition.subgraphs for n in s.nodes if n not in known]
    if missing:
        raise UserError(f"the partition names node {missing[0]!r}, which the model lacks: "
                        "partition and cut the same model")
    constants = constant_nodes(prepared)
    base = gs.import_onnx(prepared)
    pieces = {}
    for sub in partition.subgraphs:
        graph = base.copy()  # nodes and tensors copied, weights shared
        tensors = graph.tensors()
        wanted = set(sub.nodes)
        kept = [n for n in graph.nodes if n.name in wanted or n.name in constants]
        graph.nodes = kept
        for name in sub.inputs:
            tensors[name].inputs.clear()  # cut the producer off: this piece reads it from outside
        graph.inputs = [tensors[name] for name in sub.inputs]
        graph.outputs = [tensors[name] for name in sub.outputs]
        graph.cleanup(remove_unused_graph_inputs=False).toposort()
        got = {n.name for n in graph.nodes if n.name not in constants}
        if got != wanted:
            raise ToolchainError(f"cutting {sub.name!r} kept {sorted(got ^ wanted)[:3]} wrongly (a bug)")
        piece = gs.export_onnx(graph, do_type_check=True)
        piece.ir_version = prepared.ir_version
        del piece.opset_import[:]
        piece.opset_import.extend(prepared.opset_import)
        piece.graph.name = sub.name
        try:
            onnx.checker.check_model(piece, full_check=True)
        except onnx.checker.ValidationError as e:
            raise ToolchainError(f"subgraph {sub.name!r} fails onnx.checker: {str(e).splitlines()[0]}") from e
        pieces[sub.name] = piece
    return pieces


def compose(pieces: Mapping[str, onnx.ModelProto], feeds: Mapping[str, np.ndarray],
            outputs: Sequence[str]) -> dict[str, np.ndarray]:
    """Run the pieces with ONNX Runtime, each once its inputs exist, and return ``outputs``
    (``partition.graph_outputs`` for the whole model's).

    A verification helper: one piece at a time, in a valid order found from tensor names alone.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sessions = {name: ort.InferenceSession(p.SerializeToString(), opts, providers=["CPUExecutionProvider"])
                for name, p in pieces.items()}
    env = dict(feeds)
    pending = list(pieces)
    while pending:
        ready = [n for n in pending if all(i.name in env for i in sessions[n].get_inputs())]
        if not ready:
            raise UserError(f"pieces {pending} wait for tensors nothing produces (a cycle or a missing feed)")
        for name in ready:
            sess = sessions[name]
            results = sess.run(None, {i.name: env[i.name] for i in sess.get_inputs()})
            env.update(zip((o.name for o in sess.get_outputs()), results))
            pending.remove(name)
    missing = [name for name in outputs if name not in env]
    if missing:
        raise UserError(f"no piece produces {missing[0]!r}")
    return {name: env[name] for name in outputs}
