"""One exception hierarchy for the whole toolkit.

CLIs catch :class:`UserError` (and its subclasses) and turn it into one line on
stderr and exit code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class ParnetError(Exception):
    """Base class of every error raised on purpose by parnet-deploy."""

    exit_code = 1


class UserError(ParnetError):
    """The user asked for something impossible: bad input, bad file, bad option."""

    exit_code = 2


class CheckpointError(UserError):
    """A checkpoint is missing, unreadable, unsafe or does not fit the model."""


class ConfigError(UserError):
    """A model configuration or an input shape is invalid."""


class ExportError(UserError):
    """An export directory is missing, incomplete, tampered with or fails a check."""


class ArtifactNotFoundError(ExportError):
    """An export/engine directory, its manifest, or a file it lists does not exist."""


class ArtifactMismatchError(ExportError):
    """A file does not match the sha256 its manifest records (modified after it was written)."""


class RunnerClosedError(UserError):
    """A runner was called after close()."""


class VerificationError(ParnetError):
    """A numerical check failed (outputs differ beyond tolerance)."""

    exit_code = 1


class ToolchainError(ParnetError):
    """A tool we rely on rejected our own output (onnx.checker, the TensorRT op gate): a bug, not the user's."""

    exit_code = 1


class DistributedError(ParnetError):
    """A rank failed or did not answer in time."""


class EngineIncompatibleError(UserError):
    """The engines were built for another device or backend version."""


class RuntimeFailure(ParnetError):
    """An engine failed while executing, or a runner was used after close()."""

    exit_code = 1


class BackendMissingError(UserError):
    """An optional backend is not installed; the message says what to install."""

    def __init__(self, backend: str, hint: str):
        super().__init__(f"{backend} is not available: {hint}")
        self.backend = backend
        self.hint = hint
