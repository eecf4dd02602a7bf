"""Reading untrusted manifest JSON into typed values: every error is one line naming the field."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import ExportError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_DIM = 1 << 16
MAX_RANK = 8
MAX_BATCH = 1024


@dataclass(frozen=True)
class BatchDim:
    """A bounded dynamic batch axis (Polygraphy's ``BoundedShape``): any batch in ``min..max``.
    Written in a shape as ``{"min": a, "max": b}``, only at dim 0, with ``1 <= a < b <= MAX_BATCH``
    (equal bounds are a static batch: a plain int)."""

    min: int
    max: int

    def __str__(self) -> str:
        return f"{self.min}..{self.max}"

    def __contains__(self, batch: object) -> bool:
        return isinstance(batch, int) and self.min <= batch <= self.max


def check_name(value: Any, where: str) -> str:
    """A name that may become a path component: a strict pattern, never ``..``."""
    if not isinstance(value, str) or not NAME.fullmatch(value) or ".." in value:
        raise ExportError(f"{where}: {value!r} is not a valid name ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}}, no '..')")
    return value


class Fields:
    """Typed access to one JSON object; ``where`` names it in errors (``manifest.whole.inputs[0]``)."""

    def __init__(self, value: Any, where: str):
        if not isinstance(value, dict):
            raise ExportError(f"{where}: expected an object, got {type(value).__name__}")
        self.d, self.where = value, where

    def _get(self, key: str, default: Any):
        if key not in self.d:
            if default is _MISSING:
                raise ExportError(f"{self.where}.{key}: missing")
            return default
        return self.d[key]

    def _fail(self, key: str, expected: str) -> ExportError:
        return ExportError(f"{self.where}.{key}: expected {expected}, got {self.d.get(key)!r:.80}")

    def error(self, key: str, message: str) -> ExportError:
        return ExportError(f"{self.where}.{key}: {message}")

    def str(self, key: str, default: Any = None, choices: tuple[str, ...] | None = None) -> Any:
        v = self._get(key, _MISSING if default is None else default)
        if not isinstance(v, str) or (choices is not None and v not in choices):
            raise self._fail(key, f"one of {choices}" if choices else "a string")
        return v

    def int(self, key: str, lo: int = 0, hi: int = 1 << 62, default: Any = None) -> int:
        v = self._get(key, _MISSING if default is None else default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise self._fail(key, f"an integer in [{lo}, {hi}]")
        return v

    def obj(self, key: str, default: Any = None) -> Fields:
        return Fields(self._get(key, _MISSING if default is None else default), f"{self.where}.{key}")

    def list(self, key: str, max_len: int = 64) -> list[Any]:
        v = self._get(key, _MISSING)
        if not isinstance(v, list) or len(v) > max_len:
            raise self._fail(key, f"a list of at most {max_len} items")
        return v

    def number(self, key: str, optional: bool = False) -> Any:
        """A finite number (float); with ``optional``, null reads as None."""
        v = self._get(key, _MISSING)
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise self._fail(key, "a finite number" + (" or null" if optional else ""))
        return float(v)

    def sha256(self, key: str) -> str:
        v = self.str(key)
        if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
            raise self.error(key, "expected 64 lowercase hex digits")
        return v

    def flag(self, key: str) -> bool:
        v = self._get(key, _MISSING)
        if not isinstance(v, bool):
            raise self._fail(key, "true or false")
        return v

    def strings(self, key: str, max_len: int = 4096) -> tuple[str, ...]:
        v = self.list(key, max_len)
        if not all(isinstance(x, str) for x in v):
            raise self._fail(key, "a list of strings")
        return tuple(v)

    def raw(self, key: str, default: Any = None) -> Any:
        return self._get(key, default)

    def shape(self, key: str) -> tuple[int | BatchDim, ...]:
        """Positive dims; dim 0 may be a bounded batch ``{"min": a, "max": b}``."""
        v = self._get(key, _MISSING)
        if isinstance(v, list) and v and isinstance(v[0], dict):
            bounds = Fields(v[0], f"{self.where}.{key}[0]")
            if set(v[0]) != {"min", "max"}:
                raise ExportError(f"{bounds.where}: expected exactly the keys min and max (a bounded batch)")
            lo, hi = bounds.int("min", 1, MAX_BATCH), bounds.int("max", 1, MAX_BATCH)
            if lo >= hi:
                raise ExportError(f"{bounds.where}: bounds {lo}..{hi}: min must be below max (equal bounds: "
                                  "write the batch as a number)")
            return (BatchDim(lo, hi), *self._dims(key, v[1:], 0))
        return self._dims(key, v, 1)

    def _dims(self, key: str, v: Any, min_rank: int) -> tuple[int, ...]:
        if (not isinstance(v, list) or not min_rank <= len(v) <= MAX_RANK - 1 + min_rank
                or not all(isinstance(x, int) and not isinstance(x, bool) and 0 < x <= MAX_DIM for x in v)):
            raise self._fail(key, f"a shape of 1..{MAX_RANK} dimensions in [1, {MAX_DIM}], dim 0 possibly "
                                  f"{{\"min\": a, \"max\": b}}")
        return tuple(v)

    def floats(self, key: str, length: int) -> tuple[float, ...]:
        v = self._get(key, _MISSING)
        if (not isinstance(v, list) or len(v) != length
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)):
            raise self._fail(key, f"{length} numbers")
        return tuple(float(x) for x in v)


_MISSING = object()


def to_json_dict(fields: dict[str, Any]) -> dict[str, Any]:
    """A manifest's fields as written: ``schema`` and ``schema_version`` first, plain JSON types
    (lists, not tuples), exactly as they read back."""
    head = {"schema": fields.pop("schema"), "schema_version": fields.pop("schema_version")}
    return json.loads(json.dumps(head | fields))
