"""Writing artifact folders safely and checking them later: hashes, atomic directories."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | os.PathLike, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``target``; on success it replaces ``target``.

    On any failure (including Ctrl-C) the temporary directory is removed and an existing
    ``target`` is left untouched. Without ``force`` an existing ``target`` is an error.
    """
    target = Path(target)
    if target.exists() and not force:
        raise UserError(f"{target} already exists (use --force to replace it)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
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
