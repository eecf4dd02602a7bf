"""Writing artifact folders safely and checking them later: hashes, sizes, atomic directories,
and the reading of manifest JSON with typed, field-naming errors."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import math
import os
import shutil
import stat
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


MAX_JSON_DEPTH = 64  # nested objects and lists, the top level included; as the C library


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} does not fit a double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("a key appears twice in one object (parsers disagree on which one wins)")
    return out


def _depth(text: str) -> int:
    """Deepest nesting of objects and lists, brackets inside strings excluded (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            escaped, in_string = (not escaped and ch == "\\"), in_string and (escaped or ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads_strict(text: str) -> Any:
    """JSON that every parser reads the same way, as the C library reads it: no NaN/Infinity, no number
    that overflows a double, no key twice in one object, no lone surrogate, at most 64 levels deep."""
    if "\0" in text:
        raise ValueError("a NUL character (parsers stop reading there)")
    if _depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float,
                       object_pairs_hook=_unique_keys)
    json.dumps(value, ensure_ascii=False).encode("utf-8")  # a lone surrogate (\\ud800) is not UTF-8: raises
    return value


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Strict JSON: a NaN or infinity here is a bug to stop at, not a file for readers to choke on."""
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def current_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def as_new_file(path: str | os.PathLike) -> None:
    """Give a file written by a 0600 writer (mkstemp, safetensors) the mode of any new file: 0666 & ~umask."""
    os.chmod(path, 0o666 & ~current_umask())


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


def _is_our_artifact(path: Path, marker: str) -> bool:
    """A real directory (not a link) holding ``marker`` as a regular file: written by this toolkit."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode) and stat.S_ISREG(os.lstat(path / marker).st_mode)
    except OSError:
        return False


def check_target(target: Path, force: bool, marker: str, source: Path | None = None) -> None:
    """May ``target`` be written? Never the input itself (or a folder holding it); an existing one
    only with ``force`` and only if it is our artifact of the same kind (it holds ``marker``).
    Checked early, to fail before minutes of work, and again at the rename (see ``_publish``)."""
    if source is not None:
        t, s = target.resolve(), Path(source).resolve()
        if t == s or s.is_relative_to(t) or t.is_relative_to(s):
            raise UserError(f"the output {target} is the input {source}, holds it or lies inside it; "
                            f"choose another --output or name")
    if target.exists() or target.is_symlink():
        if not force:
            raise UserError(f"{target} already exists (use --force to replace it)")
        if not _is_our_artifact(target, marker):
            raise UserError(f"refusing to replace {target}: it is not a parnet-deploy artifact of this kind "
                            f"(no {marker})")


_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100


def _renameat2(src: Path, dst: Path, flags: int) -> None:
    """Linux renameat2(2): NOREPLACE fails with EEXIST instead of replacing, EXCHANGE swaps two paths atomically."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available")
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), str(dst))


def _appeared(target: Path) -> UserError:
    return UserError(f"{target} appeared while this command ran (another process wrote it); left it untouched")


def _publish(tmp: Path, target: Path, force: bool, marker: str) -> None:
    """Move ``tmp`` to ``target`` atomically, deciding at that moment what may be replaced: nothing
    without ``force``; with it, only our own artifact. Whatever else is at ``target`` stays as it was."""
    try:
        _renameat2(tmp, target, _RENAME_NOREPLACE)
        return
    except FileExistsError:
        pass
    except OSError as e:
        if e.errno not in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
            raise
        return _publish_without_renameat2(tmp, target, force, marker)
    if not force:
        raise _appeared(target)
    _renameat2(tmp, target, _RENAME_EXCHANGE)  # tmp now names what was at target
    if not _is_our_artifact(tmp, marker):
        _renameat2(tmp, target, _RENAME_EXCHANGE)  # put it back, untouched
        raise UserError(f"refusing to replace {target}: it is not a parnet-deploy artifact of this kind (no {marker})")


def _publish_without_renameat2(tmp: Path, target: Path, force: bool, marker: str) -> None:
    """The same rules on a filesystem without renameat2: claim the name with mkdir (atomic, fails if
    taken), then rename onto that empty directory (fails with ENOTEMPTY if anyone wrote into it)."""
    if force and (target.exists() or target.is_symlink()):
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
        if not _is_our_artifact(old, marker):
            os.rename(old, target)
            raise UserError(f"refusing to replace {target}: it is not a parnet-deploy artifact of this kind "
                            f"(no {marker})")
        os.rename(old, tmp.with_name(tmp.name + ".old"))
    try:
        os.mkdir(target)
        os.rename(tmp, target)
    except OSError as e:
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
            raise _appeared(target) from None
        raise


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, force: bool = False, marker: str = "manifest.json",
                     source: Path | None = None) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    On any failure (including Ctrl-C) the temporary directory is removed and an existing
    ``target`` is left untouched. Without ``force`` an existing ``target`` is an error; with
    it, only one of our artifacts of the same kind (holding ``marker``) is ever replaced, and
    never the ``source`` the command reads. Both rules hold at the final rename too: a target
    that appears while the command runs (a user's folder, a concurrent export) is never replaced.
    """
    target = Path(target)
    check_target(target, force, marker, source)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(target.parent, target.name)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
        tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes 0700; the result should look like any new directory
    except OSError as e:
        raise UserError(f"cannot write to {target.parent}: {e.strerror or e}") from e
    try:
        yield tmp
        _publish(tmp, target, force, marker)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the artifact we replaced
        shutil.rmtree(tmp.with_name(tmp.name + ".old"), ignore_errors=True)


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
        raw = loads_strict(path.read_text())
    except (ValueError, RecursionError) as e:
        raise ExportError(f"{path}: malformed manifest: {str(e)[:200]}") from e
    if not isinstance(raw, dict) or raw.get("schema") != schema:
        raise ExportError(f"{path}: not a {schema} manifest")
    if raw.get("schema_version") != version:
        raise ExportError(f"{path}: schema version {raw.get('schema_version')} is not supported "
                          f"(this toolkit reads {version}); {redo}")
    return raw


def is_sparse(st: os.stat_result) -> bool:
    """Holes cost no disk but would cost memory once read: a model's weights do not compress 8x, so a file
    with fewer allocated blocks than that (sparse, or a hostile compressed filesystem) is refused, as in C."""
    return st.st_size > (1 << 20) and st.st_blocks * 512 * 8 < st.st_size


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
        st = p.stat()
        if st.st_size != spec.bytes:
            raise ArtifactMismatchError(f"{directory}: {name} has {st.st_size} bytes, {manifest_name} records "
                                        f"{spec.bytes} (modified after it was written?); {redo}")
        if is_sparse(st):
            raise ExportError(f"{directory}: {name} is sparse ({st.st_blocks * 512} bytes on disk for {st.st_size}); "
                              f"refused")
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
