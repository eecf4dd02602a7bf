"""Print the project's requirements that this Python lacks or has in a version out of range, one
per line, for ``pip install``: base, [export] and [dev]; with ``--extra gpu``, that extra's alone
(TensorRT: wanted, not required). torch is never listed: the machine's own CUDA build stays
(scripts/gpu_test.sh also pins it). onnxruntime-gpu counts as onnxruntime (they cannot coexist)."""

from __future__ import annotations

import argparse
import tomllib
from importlib import metadata
from pathlib import Path

try:
    from packaging.requirements import Requirement
except ImportError:  # pip always vendors it
    from pip._vendor.packaging.requirements import Requirement

SAME_AS = {"onnxruntime": ("onnxruntime", "onnxruntime-gpu")}


def installed(name: str) -> tuple[str, str] | None:
    """(distribution, version) of ``name`` or of what counts as it."""
    for dist in SAME_AS.get(name, (name,)):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def missing(pyproject: Path, extra: str | None = None) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = extras.get(extra, []) if extra else [*project["dependencies"], *extras.get("export", []),
                                                  *extras.get("dev", [])]
    out = []
    for text in wanted:
        req = Requirement(text)
        if req.name == "torch":
            continue
        found = installed(req.name)
        if found is None:
            out.append(text)
        elif not req.specifier.contains(found[1], prereleases=True):
            out.append(f"{found[0]}{req.specifier}")  # onnxruntime-gpu too old: upgrade it, not the CPU build
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("pyproject", type=Path, nargs="?", default=Path("pyproject.toml"))
    p.add_argument("--extra", help="list only this optional extra's missing requirements")
    args = p.parse_args()
    print("\n".join(missing(args.pyproject, args.extra)))
