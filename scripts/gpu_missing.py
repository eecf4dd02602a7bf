"""Print the project's requirements (base, [export], [dev]) that this Python lacks or has in a
version out of range, one per line, for ``pip install``. torch is never listed: the GPU's own
CUDA build stays (scripts/gpu_test.sh pins it)."""

from __future__ import annotations

import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement


def missing(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [*project["dependencies"], *extras.get("export", []), *extras.get("dev", [])]
    out = []
    for text in wanted:
        req = Requirement(text)
        if req.name == "torch":
            continue
        try:
            installed = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if not req.specifier.contains(installed, prereleases=True):
            out.append(text)
    return out


if __name__ == "__main__":
    print("\n".join(missing(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("pyproject.toml"))))
