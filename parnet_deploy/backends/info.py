"""What each backend declares once, in its package's ``__init__``: its name and capabilities.

The registry reads these declarations without importing the backend's implementation (or its
library); the :class:`~.base.Backend` subclass takes its class variables from the same object.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendMissingError


@dataclass(frozen=True)
class BackendInfo:
    name: str
    cls: str  # the Backend subclass, in the package's ``backend`` module
    install_hint: str  # what a BackendMissingError tells the user to install
    precisions: tuple[str, ...]  # what its engines can compute in
    device_kinds: tuple[str, ...] = ("cpu",)
    engine_suffix: str = ""  # engine files: <tag>/<subgraph><suffix>
    runs_onnx: bool = True  # False: only its own engine files (TensorRT plans)
    builds_engines: bool = True  # False: runs exports only (torch)

    def missing(self, hint: str | None = None) -> BackendMissingError:
        return BackendMissingError(self.name, hint or self.install_hint)
