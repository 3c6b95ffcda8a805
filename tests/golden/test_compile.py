"""golden.compile: kernels generated from the cascades, against golden.run (the float64 oracle)
with FlashAttention's tolerance rule, on shapes the kernels were not tuned on."""

from __future__ import annotations

import numpy as np
import pytest

import einsum
import golden
from golden._compile import plan

TEMPLATED = {
    "attention_3pass": "softmax",
    "attention_3pass_causal": "softmax",
    "alibi_attention": "softmax",
    "softcap_attention": "softmax",
    "sliding_window_attention": "softmax",
    "document_mask_attention": "softmax",
    "attention_decode": "softmax",
    "sigmoid_attention": "weighted",
    "linear_attention_decay": "weighted",
}
SHAPES = [(1, 1), (1, 300), (113, 1023), (113, 113), (7, 64)]  # (P, M), held back from tuning


def _inputs(name: str, p: int, m: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    x = {"Q": rng.normal(size=(p, 16)), "K": rng.normal(size=(m, 16)), "V": rng.normal(size=(m, 8))}
    if name == "document_mask_attention":
        x["DK"] = rng.integers(0, 3, size=m).astype(float)
        x["DQ"] = rng.choice(x["DK"], size=p)  # every query's document has a key
    return x


def _naive(name: str, x: dict[str, np.ndarray], dtype: type) -> np.ndarray:
    """The variant in ``dtype`` the way a user writes it in NumPy: the scores as one matrix."""
    q, k, v = (x[n].astype(dtype) for n in ("Q", "K", "V"))
    p_idx, m_idx = np.arange(q.shape[0])[:, None], np.arange(k.shape[0])[None, :]
    s = (q @ k.T) * dtype(1 / np.sqrt(q.shape[1]))
    neg = dtype(-np.inf)
    if name == "attention_3pass_causal":
        s = np.where(p_idx >= m_idx, s, neg)
    elif name == "alibi_attention":
        s = np.where(p_idx >= m_idx, s - dtype(0.0625) * (p_idx - m_idx).astype(dtype), neg)
    elif name == "softcap_attention":
        s = dtype(50) * np.tanh(s / dtype(50))
    elif name == "sliding_window_attention":
        s = np.where((p_idx >= m_idx) & (p_idx - m_idx < 16), s, neg)
    elif name == "document_mask_attention":
        s = np.where(x["DQ"][:, None] == x["DK"][None, :], s, neg)
    elif name == "attention_decode":
        s = np.where(m_idx <= p_idx + k.shape[0] - q.shape[0], s, neg)
    elif name == "sigmoid_attention":
        return (1 / (1 + np.exp(-(s - dtype(np.log(k.shape[0])))))) @ v
    elif name == "linear_attention_decay":
        w = np.where(p_idx >= m_idx, dtype(0.95) ** (p_idx - m_idx).astype(dtype), dtype(0))
        return (w * (q @ k.T)) @ v
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)) @ v


def _check(got: np.ndarray, ref: np.ndarray, naive: np.ndarray) -> None:
    """FlashAttention's rule: the kernel's error against the float64 reference at most twice the
    naive computation's in the same dtype, plus twice the dtype's rounding at the output's size."""
    rounding = np.abs((ref.astype(got.dtype) + got.dtype.type(0.3) - got.dtype.type(0.3)) - ref).max()
    bound = 2 * np.abs(naive - ref).max() + 2 * rounding
    assert np.abs(got - ref).max() <= bound, (np.abs(got - ref).max(), bound)


def test_templates_chosen_and_reasons_given() -> None:
    for name in einsum.library.names():
        pl = plan(einsum.library.get(name))
        assert pl.template == TEMPLATED.get(name), (name, pl.describe())
        assert (pl.reason == "") == (name in TEMPLATED)
    assert "recurrences (RD, RM, RN)" in plan(einsum.library.get("aaren")).reason
    assert "topk" in plan(einsum.library.get("recycled_attention")).reason
    assert "partitions M" in plan(einsum.library.get("attention_1pass")).reason


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(TEMPLATED))
def test_compiled_kernels_match_the_oracle(name: str, dtype: type) -> None:
    c = einsum.library.get(name)
    fn = golden.compile(c, block_q=32, block_k=128)
    rng = np.random.default_rng(len(name))
    for p, m in SHAPES:
        if name == "attention_decode" and m < p:
            continue
        x = _inputs(name, p, m, rng)
        ref = golden.run(c, x)[c.outputs[0]]
        got = fn({n: a.astype(dtype) for n, a in x.items()})[c.outputs[0]]
        assert got.dtype == dtype and got.shape == ref.shape
        if dtype is np.float64:
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
        else:
            _check(got, ref, _naive(name, x, np.float32))


def test_batches_and_shared_row_inputs() -> None:
    c = einsum.library.get("document_mask_attention")
    rng = np.random.default_rng(4)
    q, k, v = rng.normal(size=(2, 3, 20, 16)), rng.normal(size=(2, 3, 50, 16)), rng.normal(size=(2, 3, 50, 8))
    dq, dk = np.repeat(np.arange(2.0), 10), np.repeat(np.arange(2.0), 25)
    got = golden.compile(c)({"Q": q, "K": k, "V": v, "DQ": dq, "DK": dk})["AV"]
    for b in range(2):
        for h in range(3):
            want = golden.run(c, {"Q": q[b, h], "K": k[b, h], "V": v[b, h], "DQ": dq, "DK": dk})["AV"]
            np.testing.assert_allclose(got[b, h], want, rtol=1e-10, atol=1e-12)


def test_no_template_runs_in_the_interpreter_and_says_why() -> None:
    c = einsum.library.get("aaren")
    rng = np.random.default_rng(1)
    x = {"Q": rng.normal(size=4), "K": rng.normal(size=(9, 4)), "V": rng.normal(size=(9, 2))}
    fn = golden.compile(c)
    assert fn.template is None and "recurrences" in fn.reason
    with pytest.warns(RuntimeWarning, match=r"aaren runs in the float64 interpreter: it has recurrences"):
        got = fn(x)
    np.testing.assert_array_equal(got["O"], golden.run(c, x)["O"])


def test_compile_errors() -> None:
    c = einsum.library.get("attention_3pass")
    with pytest.raises(golden.EvaluationError, match=r"unknown backend 'gpu' \(backends: cpu, cuda\)"):
        golden.compile(c, backend="gpu")
    with pytest.raises(golden.EvaluationError, match=r"block_q must be a positive integer, got 0"):
        golden.compile(c, block_q=0)
    with pytest.raises(golden.EvaluationError, match=r"expected an einsum.Cascade, got str"):
        golden.compile("attention_3pass")  # type: ignore[arg-type]
    with pytest.raises(golden.EvaluationError, match=r"missing input\(s\) V"):
        golden.compile(c)({"Q": np.ones((2, 3)), "K": np.ones((2, 3))})


_SIM = """
import json, sys
import numpy as np
import einsum, golden
for i, name in enumerate(json.loads(sys.argv[1])):
    c = einsum.library.get(name)
    x = dict(np.load(f"{sys.argv[2]}/in{i}.npz"))
    for dt in ("float64", "float32"):
        out = golden.compile(c, backend="cuda")({k: a.astype(dt) for k, a in x.items()})[c.outputs[0]]
        np.save(f"{sys.argv[2]}/out{i}_{dt}.npy", out)
"""


def test_compiled_kernels_on_the_cuda_simulator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Every templated cascade compiled for numba.cuda, run on numba's simulator (P = 5, M = 13,
    E = 4, F = 3), float64 and float32, against golden.run and FlashAttention's rule."""
    import json
    import os
    import subprocess
    import sys

    names = list(TEMPLATED)
    rng = np.random.default_rng(8)
    data = []
    for i, name in enumerate(names):
        x = _inputs(name, 5, 13, rng)
        x = {
            "Q": x["Q"][:, :4],
            "K": x["K"][:, :4],
            "V": x["V"][:, :3],
            **{k: a for k, a in x.items() if k.startswith("D")},
        }
        np.savez(tmp_path / f"in{i}.npz", **x)
        data.append(x)
    proc = subprocess.run(
        [sys.executable, "-c", _SIM, json.dumps(names), str(tmp_path)],
        env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1", EINFORGE_CACHE=str(tmp_path / "cache")),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, (name, x) in enumerate(zip(names, data, strict=True)):
        c = einsum.library.get(name)
        ref = golden.run(c, x)[c.outputs[0]]
        np.testing.assert_allclose(np.load(tmp_path / f"out{i}_float64.npy"), ref, rtol=1e-9, atol=1e-12)
        _check(np.load(tmp_path / f"out{i}_float32.npy"), ref, _naive(name, x, np.float32))


def test_cuda_backend_without_a_device_says_so() -> None:
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA device (or the simulator) is present")
    fn = golden.compile(einsum.library.get("attention_3pass"), backend="cuda")
    with pytest.raises(
        golden.EvaluationError, match=r"backend 'cuda' needs an NVIDIA GPU .* NUMBA_ENABLE_CUDASIM=1"
    ):
        fn({"Q": np.ones((2, 3)), "K": np.ones((2, 3)), "V": np.ones((2, 3))})


def test_golden_attention_runs_variants_through_the_compiler() -> None:
    rng = np.random.default_rng(6)
    q, k, v = rng.normal(size=(2, 3, 40, 16)), rng.normal(size=(2, 3, 57, 16)), rng.normal(size=(2, 3, 57, 8))
    for name in ("softcap_attention", "sigmoid_attention"):
        got = golden.attention(q, k, v, cascade=name)
        want = golden.attention(q, k, v, cascade=name, backend="golden")
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    with pytest.raises(
        golden.EvaluationError, match=r"'document_mask_attention' cannot run here: it reads DQ, DK"
    ):
        golden.attention(q, k, v, cascade="document_mask_attention")
    with pytest.raises(golden.EvaluationError, match=r"'aaren' cannot run here: it has recurrences"):
        golden.attention(q, k, v, cascade="aaren")
    with pytest.raises(
        golden.EvaluationError, match=r"causal, scale and enable_gqa are written in the cascade"
    ):
        golden.attention(q, k, v, cascade="alibi_attention", causal=True)


def test_mismatched_k_is_a_typed_error() -> None:
    fn = golden.compile(einsum.library.get("sigmoid_attention"))
    with pytest.raises(golden.EvaluationError, match=r"K must be \(\.\.\., 4, 3\), got \(4, 2\)"):
        fn({"Q": np.ones((2, 3)), "K": np.ones((4, 2)), "V": np.ones((4, 5))})


def test_quantizer_checks_its_lsbs() -> None:
    with pytest.raises(
        einsum.ConfigError, match=r"quantizer 'q': drop_lsbs must be an integer in 0..11, got 12"
    ):
        einsum.quantizer(einsum.Fixed(12, 8), "q", drop_lsbs=12)
