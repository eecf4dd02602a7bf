"""Writing artifact folders safely and checking them later: hashes, sizes, atomic directories,
and the reading of manifest JSON with typed, field-naming errors."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ArtifactMismatchError, ArtifactNotFoundError, ExportError, UserError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: Path, name: str) -> None:
    """Temporary directories left by a process that was killed (SIGKILL skips every cleanup)."""
    for p in parent.glob(f".{name}.tmp-*"):
        pid = p.name[len(f".{name}.tmp-"):].partition("-")[0]
        if pid.isdigit() and not _alive(int(pid)) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def check_target(target: Path, force: bool, marker: str, source: Path | None = None) -> None:
    """May ``target`` be written? Never the input itself (or a folder holding it); an existing one
    only with ``force`` and only if it is our artifact of the same kind (it holds ``marker``)."""
    if source is not None:
        t, s = target.resolve(), Path(source).resolve()
        if t == s or s.is_relative_to(t):
            raise UserError(f"the output {target} is the input {source}; choose another --output or name")
    if target.exists() or target.is_symlink():
        if not force:
            raise UserError(f"{target} already exists (use --force to replace it)")
        if target.is_symlink() or not target.is_dir() or not (target / marker).is_file():
            raise UserError(f"refusing to replace {target}: it is not a parnet-deploy artifact of this kind "
                            f"(no {marker})")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, force: bool = False, marker: str = "manifest.json",
                     source: Path | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    On any failure (including Ctrl-C) the temporary directory is removed and an existing
    ``target`` is left untouched. Without ``force`` an existing ``target`` is an error; with
    it, only one of our artifacts of the same kind (holding ``marker``) is ever replaced, and
    never the ``source`` the command reads.
    """
    target = Path(target)
    check_target(target, force, marker, source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp makes 0700; the result should look like any new directory
    except OSError as e:
        raise UserError(f"cannot write to {target.parent}: {e.strerror or e}") from e
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


MAX_MANIFEST_BYTES = 4 << 20


@dataclass(frozen=True)
class FileSpec:
    sha256: str
    bytes: int


def hash_files(directory: Path, depth: int = 1) -> dict[str, FileSpec]:
    """sha256 and size of every file ``depth`` levels below ``directory``, keyed by relative path."""
    return {p.relative_to(directory).as_posix(): FileSpec(sha256_file(p), p.stat().st_size)
            for p in sorted(directory.glob("/".join("*" * depth))) if p.is_file()}


def read_manifest_json(path: Path, schema: str, version: int, redo: str) -> dict[str, Any]:
    """The raw JSON of a manifest whose schema name and version this toolkit reads."""
    try:
        size = path.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise ExportError(f"{path}: {size} bytes is too large for a manifest (limit {MAX_MANIFEST_BYTES})")
        raw = json.loads(path.read_text())
    except (ValueError, RecursionError) as e:
        raise ExportError(f"{path}: malformed manifest: {str(e)[:200]}") from e
    if not isinstance(raw, dict) or raw.get("schema") != schema:
        raise ExportError(f"{path}: not a {schema} manifest")
    if raw.get("schema_version") != version:
        raise ExportError(f"{path}: schema version {raw.get('schema_version')} is not supported "
                          f"(this toolkit reads {version}); {redo}")
    return raw


def verify_files(directory: Path, files: dict[str, FileSpec], manifest_name: str, max_depth: int = 1,
                 redo: str = "re-export it") -> None:
    """Every listed file lies inside ``directory`` and has the recorded size, then sha256."""
    for name, spec in files.items():
        parts = PurePosixPath(name).parts
        if not parts or len(parts) > max_depth or ".." in parts or PurePosixPath(name).is_absolute():
            raise ExportError(f"{directory}: {manifest_name} names a file outside the directory: {name!r}")
        p = directory / name
        if not p.is_file():
            raise ArtifactNotFoundError(f"{directory}: {name} is missing (listed in {manifest_name}); {redo}")
        if not p.resolve().is_relative_to(directory.resolve()):
            raise ExportError(f"{directory}: {name} is a link that points outside the directory; refused")
        if p.stat().st_size != spec.bytes:
            raise ArtifactMismatchError(f"{directory}: {name} has {p.stat().st_size} bytes, {manifest_name} records "
                                        f"{spec.bytes} (modified after it was written?); {redo}")
        if sha256_file(p) != spec.sha256:
            raise ArtifactMismatchError(f"{directory}: {name} does not match its sha256 in {manifest_name} "
                                        f"(modified after it was written?); {redo}")
        if p.suffix == ".onnx":
            unlisted = [f for f in external_data_files(p)
                        if "/" in f or f.startswith(".") or str(PurePosixPath(name).parent / f) not in files]
            if unlisted:
                raise ExportError(f"{directory}: {name} reads external data {unlisted[:3]} that {manifest_name} does "
                                  f"not list (every file read must be listed, hashed and inside the directory)")


def external_data_files(path: Path) -> list[str]:
    """The external-data locations an ONNX file refers to (ONNX Runtime and OpenVINO would read them)."""
    data = path.read_bytes()
    if b"location" not in data:  # no external_data entry can exist without this key
        return []
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # not parseable: the runtime will refuse it with its own message
        return []
    out = []
    for t in _all_tensors(model.graph):
        if t.data_location == onnx.TensorProto.EXTERNAL:
            out += [e.value for e in t.external_data if e.key == "location"]
    return sorted(set(out))


def _all_tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for g in attr.graphs:
                yield from _all_tensors(g)
