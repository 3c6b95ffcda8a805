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
