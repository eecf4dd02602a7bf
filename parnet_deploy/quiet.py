"""``quiet()``: silence a third-party tool's prints, warnings and logs while it runs (one helper for all)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet(logger: str = "") -> Iterator[None]:
    """``logger``: the tool's logger name ("" is the root logger), raised to ERROR meanwhile."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        log.setLevel(level)
