"""Build ``libparnet_rt.so`` with cffi's embedding mode: ``python -m parnet_deploy.capi.build OUTDIR``.

The declarations come from ``include/parnet_rt.h`` (between its BEGIN/END API markers), so
the header is the one source of truth. The embedded interpreter is the one building the
library; its ``sys.path`` (the virtual environment) is recorded so the library finds
parnet-deploy and its dependencies; ``PYTHONPATH`` still applies on top.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "include" / "parnet_rt.h"

INIT_CODE = r'''
import sys
for _p in reversed(%(paths)r):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import numpy as np
from parnet_rt import ffi
from parnet_deploy.capi import _impl

_handles = {}            # id -> (cffi handle, Handle): keeps both alive until prt_close
_version = ffi.new("char[]", _impl.version().encode())
_errors = {}             # thread id -> char[] of its last error


def _fail(status, message):
    _impl.set_error(message)
    return status


def _handle(rt):
    if rt == ffi.NULL:
        raise _impl.UserError("runtime handle is NULL")
    obj = ffi.from_handle(ffi.cast("void *", rt))
    return obj


def _call(fn):
    try:
        return fn()
    except BaseException as e:  # every failure becomes a status; nothing crosses into C
        return _fail(_impl.status_of(e), str(e).splitlines()[0] if str(e) else type(e).__name__)


@ffi.def_extern()
def prt_version():
    return _version


@ffi.def_extern()
def prt_abi_version():
    return _impl.ABI_VERSION


@ffi.def_extern()
def prt_open(path, options, out):
    def run():
        if out == ffi.NULL or path == ffi.NULL:
            return _fail(_impl.E_INVALID_ARG, "prt_open: path and out must not be NULL")
        out[0] = ffi.NULL
        opts = ffi.string(options).decode() if options != ffi.NULL else None
        handle = _impl.open_handle(ffi.string(path).decode(), opts)
        c_handle = ffi.new_handle(handle)
        _handles[id(handle)] = (c_handle, handle)
        out[0] = ffi.cast("prt_runtime *", c_handle)
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_input_dims(rt, dims):
    def run():
        if dims == ffi.NULL:
            return _fail(_impl.E_INVALID_ARG, "prt_input_dims: dims is NULL")
        for i, d in enumerate(_handle(rt).input_shape):
            dims[i] = d
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_output_dims(rt, dims):
    def run():
        if dims == ffi.NULL:
            return _fail(_impl.E_INVALID_ARG, "prt_output_dims: dims is NULL")
        for i, d in enumerate(_handle(rt).output_shape):
            dims[i] = d
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_infer(rt, input, input_len, output, output_len):
    def run():
        h = _handle(rt)
        if input == ffi.NULL or output == ffi.NULL:
            return _fail(_impl.E_INVALID_ARG, "prt_infer: input and output must not be NULL")
        if input_len != h.input_len or output_len != h.output_len:
            return _fail(_impl.E_INVALID_ARG, f"prt_infer: expected input_len {h.input_len} and output_len "
                                              f"{h.output_len}, got {input_len} and {output_len}")
        x = np.frombuffer(ffi.buffer(input, input_len * 4), dtype=np.float32)
        y = np.ascontiguousarray(_impl.infer(h, x), dtype=np.float32)
        ffi.memmove(output, y, output_len * 4)
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_warmup(rt, iterations):
    def run():
        h = _handle(rt)
        if iterations < 0:
            return _fail(_impl.E_INVALID_ARG, "prt_warmup: iterations must be >= 0")
        x = np.zeros(h.input_len, np.float32)
        for _ in range(iterations):
            _impl.infer(h, x)
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_last_latency_us(rt, us):
    def run():
        if us == ffi.NULL:
            return _fail(_impl.E_INVALID_ARG, "prt_last_latency_us: pointer is NULL")
        us[0] = _handle(rt).last_latency_us
        return _impl.OK
    return _call(run)


@ffi.def_extern()
def prt_last_error():
    import threading
    buf = ffi.new("char[]", _impl.last_error().encode())
    _errors[threading.get_ident()] = buf  # valid until this thread's next failure
    return buf


@ffi.def_extern()
def prt_close(rt):
    if rt == ffi.NULL:
        return
    try:
        h = _handle(rt)
        _handles.pop(id(h), None)
        h.runner.close()
    except BaseException:
        pass
'''


def declarations() -> str:
    text = HEADER.read_text()
    match = re.search(r"/\* BEGIN API[^*]*\*/(.*)/\* END API \*/", text, re.S)
    if not match:
        raise SystemExit(f"{HEADER}: no BEGIN/END API markers")
    body = re.sub(r"/\*.*?\*/", "", match.group(1), flags=re.S)
    return body


def build(outdir: Path) -> Path:
    import cffi

    outdir.mkdir(parents=True, exist_ok=True)
    ffibuilder = cffi.FFI()
    ffibuilder.embedding_api(declarations())
    ffibuilder.set_source("parnet_rt", f'#include "{HEADER}"')
    paths = [str(ROOT)] + [p for p in sys.path if p and "site-packages" in p]
    ffibuilder.embedding_init_code(INIT_CODE % {"paths": paths})
    libdir = sysconfig.get_config_var("LIBDIR")
    target = ffibuilder.compile(tmpdir=str(outdir), target="libparnet_rt.so", verbose=False)
    (outdir / "parnet_rt.pc").write_text(
        f"prefix={outdir}\nincludedir={HEADER.parent}\nlibdir={outdir}\n\n"
        f"Name: parnet_rt\nDescription: parnet-deploy runtime C API (embeds Python)\nVersion: 0.1.0\n"
        f"Cflags: -I${{includedir}}\nLibs: -L${{libdir}} -Wl,-rpath,${{libdir}} -Wl,-rpath,{libdir} -lparnet_rt\n")
    return Path(target)


if __name__ == "__main__":
    print(build(Path(sys.argv[1] if len(sys.argv) > 1 else "build/capi").resolve()))
