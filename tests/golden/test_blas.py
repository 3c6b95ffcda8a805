"""The BLAS under the CPU kernels' matrix products (golden._blas): every product goes through one
entry, bound to oneMKL where it is installed and to scipy's OpenBLAS otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from golden._attn_cpu import _gemm
from golden._blas import _mkl_library, backend


@njit(cache=False)
def _product(a, b, c, bt, beta):  # type: ignore[no-untyped-def]
    _gemm(a, b, c, bt, beta)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_products_through_the_bound_blas_match_numpy(dtype: type) -> None:
    """Transposed and plain B, an accumulating product (beta = 1), views whose rows are longer
    than the product (a tile of a wider buffer), and empty products, against numpy."""
    assert backend() in ("mkl", "openblas")
    rng = np.random.default_rng(3)
    a = rng.standard_normal((7, 5)).astype(dtype)
    bt = rng.standard_normal((6, 5)).astype(dtype)  # used transposed: 5 x 6
    b = rng.standard_normal((5, 6)).astype(dtype)
    wide = rng.standard_normal((7, 10)).astype(dtype)
    c = wide.copy()
    _product(a, bt, c[:, 2:8], True, 0.0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c[:, 2:8], a @ bt.T, rtol=tol, atol=tol)
    np.testing.assert_array_equal(c[:, :2], wide[:, :2])  # the rest of the buffer untouched
    np.testing.assert_array_equal(c[:, 8:], wide[:, 8:])
    before = c[:, 2:8].copy()
    _product(a, b, c[:, 2:8], False, 1.0)
    np.testing.assert_allclose(c[:, 2:8], before + a @ b, rtol=tol, atol=tol)
    empty = np.empty((0, 6), dtype)
    _product(a[:0], b, empty, False, 0.0)  # no rows: nothing to do, no BLAS argument error


def _run(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )


_CALL = """
import numpy as np, golden
from golden._blas import backend
q = np.random.default_rng(0).standard_normal((1, 2, 16, 8)).astype(np.float32)
try:
    out = golden.attention(q, q, q)
except golden.errors.EvaluationError as e:
    print("error:", e)
else:
    print(backend(), repr(out.sum()))
"""


def test_a_wrong_einforge_blas_is_a_typed_error_on_the_first_call() -> None:
    r = _run({"EINFORGE_BLAS": "openblass"}, _CALL)
    assert r.returncode == 0, r.stderr
    assert "error: EINFORGE_BLAS='openblass': expected one of auto, mkl, openblas" in r.stdout


def test_either_blas_gives_the_kernels_results() -> None:
    """Where MKL is installed, forcing scipy's OpenBLAS gives the same attention within float32
    rounding; where it is not, asking for MKL says how to install it."""
    default = _run({"EINFORGE_BLAS": "auto"}, _CALL)
    assert default.returncode == 0, default.stderr
    if _mkl_library() is not None:
        assert default.stdout.startswith("mkl ")
        other = _run({"EINFORGE_BLAS": "openblas"}, _CALL)
        assert other.returncode == 0 and other.stdout.startswith("openblas "), other.stderr
        x, y = (float(r.stdout.split()[1].split("(")[-1].rstrip(")")) for r in (default, other))
        assert x == pytest.approx(y, rel=1e-5)
    else:
        assert default.stdout.startswith("openblas ")
        other = _run({"EINFORGE_BLAS": "mkl"}, _CALL)
        assert "no oneMKL runtime (libmkl_rt) was found" in other.stdout
        assert "pip install 'einforge[mkl]'" in other.stdout
