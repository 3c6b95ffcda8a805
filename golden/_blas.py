"""The BLAS behind the CPU kernels' matrix products.

Every product a compiled or hand-written CPU kernel makes goes through :func:`xgemm`, which
calls the symbol ``einforge_sgemm`` or ``einforge_dgemm`` (the Fortran ``?gemm`` interface,
arguments by reference). :func:`backend` binds those symbols once per process, before any
kernel runs:

- ``mkl``: Intel oneMKL's ``sgemm``/``dgemm`` from ``libmkl_rt`` (``pip install einforge[mkl]``),
  with MKL's sequential threading layer (the kernels run their own threads, one product each);
- ``openblas``: scipy's own BLAS (``scipy.linalg.cython_blas``), the one ``np.dot`` in Numba
  code calls.

``EINFORGE_BLAS`` picks one: ``auto`` (the default: MKL where it is installed), ``mkl`` or
``openblas``. Machine code cached on disk names the symbol, not the library, so the same cache
serves either.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from functools import cache
from pathlib import Path
from typing import Any

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from golden.errors import EvaluationError

__all__ = ["backend", "bind_at_import", "threads_of_its_own", "xgemm"]

_CHOICES = ("auto", "mkl", "openblas")
_STATE = {"sequential": False}
_MKL_THREADING_SEQUENTIAL = 1
_MKL_INTERFACE_LP64 = 0


def _mkl_library() -> ctypes.CDLL | None:
    """``libmkl_rt`` from the ``mkl`` wheel (in the environment's ``lib``) or the system, or None."""
    names: list[str] = []
    for pattern in ("libmkl_rt.so*", "libmkl_rt*.dylib", "mkl_rt*.dll"):
        for folder in (Path(sys.prefix) / "lib", Path(sys.prefix) / "Library" / "bin"):
            names += sorted((str(p) for p in folder.glob(pattern)), reverse=True)
    found = ctypes.util.find_library("mkl_rt")
    if found:
        names.append(found)
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def _mkl() -> dict[str, int] | None:
    lib = _mkl_library()
    if lib is None:
        return None
    try:
        # before any other MKL call: sequential (no threads of MKL's own), 32-bit integers. A
        # process that called MKL before keeps its layer; then the kernels limit its threads.
        lib.MKL_Set_Threading_Layer.restype = ctypes.c_int
        lib.MKL_Set_Interface_Layer.restype = ctypes.c_int
        _STATE["sequential"] = lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_THREADING_SEQUENTIAL)) == (
            _MKL_THREADING_SEQUENTIAL
        )
        if lib.MKL_Set_Interface_Layer(ctypes.c_int(_MKL_INTERFACE_LP64)) != _MKL_INTERFACE_LP64:
            return None  # 64-bit integers already chosen: not the interface xgemm calls
        return {p: ctypes.cast(getattr(lib, f"{p}gemm"), ctypes.c_void_p).value or 0 for p in "sd"}
    except AttributeError:  # not a oneMKL runtime library
        return None


def _openblas() -> dict[str, int]:
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)

    return {p: get_cython_function_address("scipy.linalg.cython_blas", f"{p}gemm") for p in "sd"}


def _bind(addresses: dict[str, int]) -> None:
    from llvmlite import binding as ll

    for p, address in addresses.items():
        ll.add_symbol(f"einforge_{p}gemm", address)


def bind_at_import() -> None:
    """Bind the symbols when the kernels' module loads: machine code loaded from the disk cache
    calls them without compiling anything first. Where ``EINFORGE_BLAS`` is wrong, scipy's
    OpenBLAS is bound (nothing may call an unbound symbol) and :func:`backend` raises the error
    on the kernels' first call."""
    try:
        backend()
    except EvaluationError:
        _bind(_openblas())


@cache
def backend() -> str:
    """Bind the kernels' ``?gemm`` symbols (once) and say to which BLAS: ``"mkl"`` or
    ``"openblas"``."""
    choice = os.environ.get("EINFORGE_BLAS", "auto").strip().lower() or "auto"
    if choice not in _CHOICES:
        raise EvaluationError(
            f"EINFORGE_BLAS={choice!r}: expected one of {', '.join(_CHOICES)} (the BLAS the CPU "
            "kernels' matrix products call)"
        )
    addresses = _mkl() if choice in ("auto", "mkl") else None
    name = "mkl"
    if addresses is None:
        if choice == "mkl":
            raise EvaluationError(
                "EINFORGE_BLAS=mkl, but no oneMKL runtime (libmkl_rt) was found in this environment "
                f"({sys.prefix}) or on the library path: pip install 'einforge[mkl]', or unset "
                "EINFORGE_BLAS to use scipy's OpenBLAS"
            )
        addresses = _openblas()
        name = "openblas"
    _bind(addresses)
    return name


def threads_of_its_own() -> bool:
    """Whether the bound BLAS runs threads of its own that a kernel must hold to one: scipy's
    OpenBLAS does, MKL on its sequential layer does not."""
    return not (backend() == "mkl" and _STATE["sequential"])


@intrinsic
def xgemm(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):  # type: ignore[no-untyped-def]
    """Column-major ``c = alpha op(a) op(b) + beta c`` (``ta``, ``tb``: ``ord('N')`` or
    ``ord('T')``; ``a``, ``b``, ``c``: data addresses; the scalars' type, float32 or float64,
    picks ``sgemm`` or ``dgemm``). Jit-only; the arguments go by reference, as Fortran's."""
    if alpha not in (types.float32, types.float64):
        return None
    real = alpha

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        lt = context.get_value_type(real)
        i8, i32 = ir.IntType(8), ir.IntType(32)
        p8, p32, pt = i8.as_pointer(), i32.as_pointer(), lt.as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [p8, p8, p32, p32, p32, pt, pt, p32, pt, p32, pt, pt, p32])
        name = "einforge_dgemm" if real == types.float64 else "einforge_sgemm"
        fn = cgutils.get_or_insert_function(builder.module, fnty, name)  # type: ignore[no-untyped-call]

        def slot(value: Any, ty: Any, kind: Any) -> Any:
            at = cgutils.alloca_once(builder, kind)  # type: ignore[no-untyped-call]
            builder.store(context.cast(builder, value, ty, _numba_of(kind)), at)
            return at

        vals = list(args)
        tys = list(sig.args)
        out = [
            slot(vals[0], tys[0], i8),
            slot(vals[1], tys[1], i8),
            slot(vals[2], tys[2], i32),
            slot(vals[3], tys[3], i32),
            slot(vals[4], tys[4], i32),
            slot(vals[5], tys[5], lt),
            builder.inttoptr(vals[6], pt),
            slot(vals[7], tys[7], i32),
            builder.inttoptr(vals[8], pt),
            slot(vals[9], tys[9], i32),
            slot(vals[10], tys[10], lt),
            builder.inttoptr(vals[11], pt),
            slot(vals[12], tys[12], i32),
        ]
        builder.call(fn, out)
        return context.get_dummy_value()

    def _numba_of(kind: Any) -> Any:
        if kind == ir.IntType(8):
            return types.int8
        if kind == ir.IntType(32):
            return types.int32
        return real

    sig = types.void(ta, tb, m, n, k, real, types.uintp, lda, types.uintp, ldb, real, types.uintp, ldc)
    return sig, codegen
