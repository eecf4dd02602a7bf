"""Which batch a benchmark runs: any within a dynamic export's bounds, or a static export's own."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..data.batching import batch_bounds
from ..errors import UserError

if TYPE_CHECKING:
    from ..artifacts.export_manifest import ExportManifest


def resolve_batch(manifest: ExportManifest, batch: int | None, flag: str = "--batch") -> int:
    """``batch`` checked against the export (None: its smallest); a UserError naming the bounds."""
    lo, hi = batch_bounds(manifest.whole.inputs[0])
    if batch is None:
        return lo
    if lo == hi and batch != lo:
        raise UserError(f"{flag} {batch}: export {manifest.name!r} has a static batch of {lo}; re-export with "
                        f"parnet-export --batch MIN..MAX to run other batches")
    if not lo <= batch <= hi:
        raise UserError(f"{flag} {batch} is outside the batch bounds {lo}..{hi} of export {manifest.name!r}")
    return batch


def parse_batches(text: str) -> tuple[int, ...]:
    """``--batch-sweep 1,2,4,8``: positive integers, sorted, without repeats (ValueError if malformed)."""
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise ValueError(text)
    return tuple(values)
