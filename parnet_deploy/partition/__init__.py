"""Split any multi-branch ONNX model into per-branch subgraphs, when a cost model says it pays.

``find_partition(model, cost, devices)`` → :class:`Partition` (which operators go where, the
prediction, a one-line verdict); ``cut_model(model, partition)`` → one ONNX model per
subgraph; ``why_table(partition)`` explains the choice. Shapes must be static.
"""

from .cost import CostModel, measure_cost_model
from .cut import compose, cut_model
from .graph import OpGraph, OpNode, build_graph, prepare_model
from .plan import Partition, Subgraph
from .report import why_table
from .search import find_partition, partition_graph

__all__ = ["CostModel", "OpGraph", "OpNode", "Partition", "Subgraph", "build_graph", "compose", "cut_model",
           "find_partition", "measure_cost_model", "partition_graph", "prepare_model", "why_table"]
