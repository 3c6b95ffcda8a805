"""Reference execution of cascades.

The generic float64 interpreter :func:`run` is the oracle every faster or lower-precision model
is checked against. :func:`attention` runs the library attention cascades fast (tiled Numba
kernels on the CPU, numba.cuda on a GPU, sharing their scalar operators); :mod:`golden.fixed`
holds the bit-true fixed-point models that mirror the RTL.

    >>> import numpy as np, einsum, golden
    >>> rng = np.random.default_rng(0)
    >>> q, k, v = rng.normal(size=(8, 4)), rng.normal(size=(16, 4)), rng.normal(size=(16, 3))
    >>> out = golden.run(einsum.library.get("attention_1pass"), {"Q": q, "K": k, "V": v},
    ...                  sizes={"M0": 4})["AV"]
    >>> bool(np.allclose(out, golden.softmax_attention(q, k, v)))
    True
"""

from golden._attention import attention
from golden._compile import TILES, CompiledCascade, compile
from golden._interp import run
from golden._plan import Plan, Step, plan
from golden._reference import softmax_attention
from golden.errors import EvaluationError

__all__ = [
    "TILES",
    "CompiledCascade",
    "EvaluationError",
    "Plan",
    "Step",
    "attention",
    "compile",
    "plan",
    "run",
    "softmax_attention",
]
