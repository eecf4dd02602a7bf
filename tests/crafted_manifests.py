"""Crafted ``manifest.json`` files that every manifest reader of the toolkit must refuse.

``CRAFTED`` lists ``(id, mutate)`` pairs: ``mutate`` takes the bytes of a valid export's
``manifest.json`` and returns the bytes of one that is not acceptable: not strict JSON, JSON that
two parsers could read differently (a key twice, a byte order mark, nesting one of them cannot
follow), numbers that do not fit, or names that would break an error message in two (NUL,
newline). The same list runs through the C library (tests/test_capi.py) and Python's loader, so
that the two agree.

Everything else in a crafted manifest is left valid, so a refusal is for the crafted reason:
values that only need a place go under an extra top-level key, ``crafted``, which both readers
otherwise ignore.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_DEPTH = 64  # of nested objects and lists, the top-level object included (the C library's bound)
BOM = b"\xef\xbb\xbf"


def _extra(value: bytes) -> Callable[[bytes], bytes]:
    """The manifest with ``"crafted": <value>`` first (``value`` as raw JSON text)."""
    def mutate(data: bytes) -> bytes:
        start = data.index(b"{")
        return data[:start + 1] + b'"crafted": ' + value + b", " + data[start + 1:]
    return mutate


def nested(depth: int) -> Callable[[bytes], bytes]:
    """Lists nested so that the manifest is ``depth`` deep (the top-level object counts one)."""
    return _extra(b"[" * (depth - 1) + b"]" * (depth - 1))


def _edit(change: Callable[[dict[str, Any]], None]) -> Callable[[bytes], bytes]:
    def mutate(data: bytes) -> bytes:
        m = json.loads(data)
        change(m)
        return json.dumps(m, indent=2).encode()
    return mutate


def _rename_output(name: str) -> Callable[[dict[str, Any]], None]:
    """The graph output renamed (and nothing produces it any more)."""
    return lambda m: m["whole"]["outputs"][0].update(name=name)


def _rename_subgraph(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["subgraphs"][0].update(name=name)


def _list_file(name: str) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["files"].update({name: m["files"]["model.onnx"]})


def _file_bytes(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda m: m["files"]["model.onnx"].update(bytes=n)


CRAFTED: list[tuple[str, Callable[[bytes], bytes]]] = [
    # not JSON text, or not UTF-8 JSON text
    ("empty", lambda d: b""),
    ("bom", lambda d: BOM + d),
    ("utf16", lambda d: d.decode().encode("utf-16")),
    ("invalid_utf8", _extra(b'"\xff\xfe"')),
    ("raw_control_character", _extra(b'"a\x01b"')),
    ("raw_newline_in_string", _extra(b'"a\nb"')),
    ("trailing_data", lambda d: d + b" {}"),
    ("trailing_nul", lambda d: d + b"\x00"),
    ("nul_then_anything", lambda d: d + b"\x00{not json"),  # nlohmann stopped reading at a NUL
    ("comment", lambda d: b"// a comment\n" + d),
    ("top_level_list", lambda d: b"[" + d + b"]"),
    ("oversized", lambda d: d + b" " * (4 << 20)),
    # JSON that readers disagree on
    ("nesting_just_too_deep", nested(MAX_DEPTH + 1)),
    ("nesting_two_million_deep", nested(2_000_000)),  # 4 MB of brackets, within the size limit
    ("duplicate_key", lambda d: d.replace(b"{", b'{"schema_version": 1, ', 1)),  # the later 2 would win
    ("nan_literal", _extra(b"NaN")),
    ("infinity_literal", _extra(b"Infinity")),
    ("minus_infinity_literal", _extra(b"-Infinity")),
    ("float_overflow", _extra(b"1e400")),
    ("integer_of_5000_digits", _extra(b"9" * 5000)),
    ("lone_surrogate", _extra(b'"\\ud800"')),
    ("huge_file_size", _edit(_file_bytes(10 ** 30))),
    # names that would cut or split an error message
    ("nul_in_tensor_name", _edit(_rename_output("logits\x00after"))),
    ("newline_in_tensor_name", _edit(_rename_output("logits\nafter"))),
    ("nul_in_subgraph_name", _edit(_rename_subgraph("stem\x00after"))),
    ("newline_in_subgraph_name", _edit(_rename_subgraph("stem\r\nafter"))),
    ("newline_in_file_name", _edit(_list_file("model\nafter.onnx"))),
]
