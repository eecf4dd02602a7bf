"""The small interface every backend implements (Polygraphy's loader/runner split)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from ...export.manifest import SubgraphSpec


class SubgraphRunner(Protocol):
    """Executes one subgraph. ``infer`` is safe to call from several threads at once."""

    spec: SubgraphSpec

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...


class Backend(Protocol):
    """Prepares a runner per subgraph file; ``describe`` is recorded in benchmark reports."""

    name: str
    parallelism: int  # how many subgraphs can usefully run at once

    def load(self, path: Path, spec: SubgraphSpec, concurrency: int = 1) -> SubgraphRunner: ...

    def describe(self) -> dict[str, str]: ...
