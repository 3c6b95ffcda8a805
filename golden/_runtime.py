"""What the compiled kernels and the attention kernels share at run time: C-contiguous arrays for
BLAS, one CPU kernel at a time, and the BLAS thread limit inside a kernel. (A module of its own so
that golden._compile and golden._attention do not import each other.)"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: one CPU kernel runs at a time (each already uses every core)
_CPU_LOCK = threading.Lock()


def c_array(x: NDArray[Any], dtype: Any = None) -> NDArray[Any]:
    """``x`` as a C-contiguous array with the natural strides on every axis, copied only where it
    is not one already. (NumPy calls an array contiguous whatever the stride of a length-1 axis,
    and a broadcast view's is 0; a BLAS call given that stride as a leading dimension rejects it,
    as ``P = 1`` did.)"""
    a = np.asarray(x, dtype=dtype)
    natural = []
    step = a.itemsize
    for n in reversed(a.shape):
        natural.append(step)
        step *= n
    if a.flags.c_contiguous and tuple(reversed(natural)) == a.strides:
        return a
    return np.array(a, order="C", copy=True)


@cache
def _blas_controller() -> Any:
    """threadpoolctl's view of the loaded BLAS libraries, made once (about 0.5 ms), after
    scipy's BLAS, which np.dot in the kernels uses, is loaded."""
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


class _OneBlasThread:
    """``with one_blas_thread():`` runs its body with every loaded BLAS on one thread (the
    kernels call BLAS from each of their own threads), and restores the counts after. OpenBLAS
    libraries are set through their own ``openblas_set_num_threads`` (about 0.5 us a call);
    threadpoolctl's ``limit`` costs 10 to 30 us, which a decode step (0.2 ms) feels. Any other
    BLAS goes through threadpoolctl. Not reentrant: it is used under ``_CPU_LOCK``."""

    def __init__(self) -> None:
        ctl = _blas_controller()
        self._raw: list[tuple[Any, Any]] = []
        others = []
        from golden._blas import threads_of_its_own

        for lib in ctl.lib_controllers:
            if lib.user_api != "blas":
                continue
            if lib.internal_api == "mkl" and not threads_of_its_own():
                continue  # the kernels' MKL runs its sequential layer: no threads to limit
            get = set_ = None
            if lib.internal_api == "openblas":
                try:
                    get = lib._get_symbol("openblas_get_num_threads")
                    set_ = lib._get_symbol("openblas_set_num_threads")
                except Exception:  # a build without the symbols: threadpoolctl's way
                    get = set_ = None
            if get is not None and set_ is not None:
                self._raw.append((get, set_))
            else:
                others.append(lib)
        self._others = bool(others)
        self._saved: list[int] = []
        self._limiter: Any = None

    def __enter__(self) -> None:
        self._saved = [get() for get, _ in self._raw]
        for _, set_ in self._raw:
            set_(1)
        if self._others:
            self._limiter = _blas_controller().limit(limits=1, user_api="blas")

    def __exit__(self, *exc: object) -> None:
        if self._limiter is not None:
            self._limiter.restore_original_limits()
            self._limiter = None
        for (_, set_), n in zip(self._raw, self._saved, strict=True):
            set_(n)


@cache
def one_blas_thread() -> _OneBlasThread:
    """The process's :class:`_OneBlasThread` (made once, after the BLAS libraries load). Checks
    the kernels' BLAS first (:func:`golden._blas.backend`: a wrong ``EINFORGE_BLAS`` is a typed
    error on every call)."""
    from golden._blas import backend

    backend()
    return _OneBlasThread()
