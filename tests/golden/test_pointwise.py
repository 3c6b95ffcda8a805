"""The built-in pointwise operators tanh, erf, log1p, silu, softplus, gelu and gelu_tanh in every
layer: parsed and built, evaluated by the interpreter against scipy and math, compiled (a loop nest
and an attention core) against the interpreter, and costed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special

import einsum
import golden
from einsum import builder as b

FUNCS = ("tanh", "erf", "log1p", "silu", "softplus", "gelu", "gelu_tanh")

# scalar references, written from the definitions (not from einforge's tables)
REFERENCE = {
    "tanh": np.tanh,
    "erf": special.erf,
    "log1p": np.log1p,
    "silu": lambda x: x * special.expit(x),
    "softplus": lambda x: np.logaddexp(0.0, x),
    "gelu": lambda x: x * special.ndtr(x),  # x * Phi(x)
    "gelu_tanh": lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
}

# a held-back cascade: every new operator in a map, a gated sum and a soft-capped attention
HELD_BACK = """
cascade pointwise_mix
input X[p, e], W[e, f], Q[p, e], K[m, e], V[m, f]
param scale = 1 / sqrt(E)
param cap = 30
output Y, AV

H[p, f]  = X[p, e] * W[e, f]
G[p, f]  = silu(H[p, f]) * gelu(H[p, f]) + gelu_tanh(H[p, f]) - softplus(H[p, f])
Y[p, f]  = tanh(G[p, f]) + erf(H[p, f] / 4) + log1p(abs(H[p, f]))
QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = cap * tanh(QK[p, m] * scale / cap)
GM[p]    = max[m] S[p, m]
SN[p, m] = exp(S[p, m] - GM[p])
SD[p]    = SN[p, m]
A[p, m]  = SN[p, m] / SD[p]
AV[p, f] = A[p, m] * V[m, f]
"""


@pytest.mark.parametrize("name", FUNCS)
def test_the_interpreter_matches_the_definitions(name: str) -> None:
    c = einsum.parse(f"cascade f\ninput X[p]\noutput Y\nY[p] = {name}(X[p])")
    x = np.concatenate([np.linspace(-40, 40, 801), [-1e-9, 0.0, 1e-9, 700.0, -700.0]])
    if name == "log1p":  # its domain: x > -1
        x = np.concatenate([np.linspace(-0.999, 40, 801), [-1e-12, 0.0, 1e-12, 1e300]])
    with np.errstate(over="ignore"):
        got = golden.run(c, {"X": x})["Y"]
        want = REFERENCE[name](x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("name", FUNCS)
def test_text_and_builder_give_the_same_ir(name: str) -> None:
    text = einsum.parse(f"cascade f\ninput X[p]\noutput Y\nY[p] = {name}(X[p] * 2)")
    (p,) = b.indices("p")
    cb = b.CascadeBuilder("f")
    x = cb.input("X", "p")
    cb.einsum("Y", "p", getattr(b, name)(x[p] * 2))
    cb.output("Y")
    assert cb.build() == text


def test_the_held_back_cascade_compiles_and_matches_the_interpreter() -> None:
    c = einsum.parse(HELD_BACK)
    rng = np.random.default_rng(5)
    p, m, e, f = 37, 53, 16, 8
    x = {
        "X": rng.normal(size=(p, e)),
        "W": rng.normal(size=(e, f)) / 4,
        "Q": rng.normal(size=(p, e)),
        "K": rng.normal(size=(m, e)),
        "V": rng.normal(size=(m, f)),
    }
    want = golden.run(c, x)
    got = golden.compile(c)(x)
    for out in ("Y", "AV"):
        np.testing.assert_allclose(got[out], want[out], rtol=1e-9, atol=1e-12)
    kernels = golden.plan(c)
    assert "softmax" in kernels.describe() and "loops" in kernels.describe()


def test_costs() -> None:
    """tanh = (e^2x - 1) / (e^2x + 1): one exponential, one division, two adds, one multiply."""
    c = einsum.parse("cascade f\ninput X[p]\noutput Y\nY[p] = tanh(X[p])")
    counts = einsum.op_counts(c)[0].at({"P": 10})
    assert (counts["exp"], counts["div"], counts["add"], counts["mac"]) == (10, 10, 20, 10)
    soft = einsum.op_counts(einsum.library.get("softcap_attention"))
    assert any(cnt.at({"P": 4, "M": 4, "E": 2, "F": 2})["exp"] >= 16 for cnt in soft)
