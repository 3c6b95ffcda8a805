"""golden.compile: kernels generated from the cascades, against golden.run (the float64 oracle)
with FlashAttention's tolerance rule, on shapes the kernels were not tuned on."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import einsum
import golden
from golden import variants
from golden._plan import plan

# The kernels each library variant compiles to (golden.plan's template names, in order of use).
PLANS = {
    "attention_3pass": "softmax",
    "attention_3pass_causal": "softmax",
    "alibi_attention": "softmax",
    "softcap_attention": "softmax",
    "sliding_window_attention": "softmax",
    "document_mask_attention": "softmax",
    "attention_decode": "softmax",
    "sigmoid_attention": "weighted",
    "linear_attention_decay": "weighted",
    "lightning_attention2": "view + loops + weighted + scan",
    "aaren": "loops + scan",
    "agent_attention": "view + loops + softmax",
    "seer_attention": "view + loops + select + softmax",
    "routing_attention": "loops + select + softmax",
    "landmark_attention": "view + loops + select",
    "recycled_attention": "select + softmax",
}
VARIANTS = [n for n in PLANS if n in einsum.library.VARIANTS]
SHAPES = [(1, 1), (1, 300), (113, 1023), (113, 113), (7, 64)]  # (P, M), held back from tuning


def _block(n: int, most: int = 64) -> int:
    """The largest divisor of ``n`` up to ``most`` (a block size the partition accepts)."""
    return max(d for d in range(1, min(n, most) + 1) if n % d == 0)


def _case(
    name: str, p: int, m: int, rng: np.random.Generator, e: int = 16, f: int = 8, block: int = 64
) -> tuple[dict[str, np.ndarray], dict[str, int], Callable[[], np.ndarray]]:
    """Inputs, free sizes and the independent reference (``golden.variants``) of ``name``."""
    if name == "lightning_attention2":
        p = m  # causal self-attention: the queries share the key grid
    x = {"Q": rng.normal(size=(p, e)), "K": rng.normal(size=(m, e)), "V": rng.normal(size=(m, f))}
    sizes: dict[str, int] = {}
    if name == "document_mask_attention":
        x["DK"] = rng.integers(0, 3, size=m).astype(float)
        x["DQ"] = rng.choice(x["DK"], size=p)  # every query's document has a key
    if name == "aaren":
        x["Q"] = x["Q"][0]
    if name == "routing_attention":
        x["C"] = rng.normal(size=(4, e))
    if name == "recycled_attention":
        x["PA"] = rng.random(size=m)
    if name in ("lightning_attention2", "seer_attention", "landmark_attention"):
        sizes["M0"] = _block(m, block)
    if name in ("agent_attention", "seer_attention"):
        sizes["P0"] = _block(p, min(16, block))
    if name == "landmark_attention":
        x["LK"] = rng.normal(size=(m // sizes["M0"], e))
    bq, bm = sizes.get("P0", 1), sizes.get("M0", 1)

    def ref() -> np.ndarray:
        q, k, v = x["Q"], x["K"], x["V"]
        calls: dict[str, Callable[[], np.ndarray]] = {
            "attention_3pass": lambda: variants.document_mask(q, k, v, np.zeros(len(q)), np.zeros(len(k))),
            "attention_3pass_causal": lambda: variants.alibi(q, k, v, slope=0.0),
            "alibi_attention": lambda: variants.alibi(q, k, v),
            "softcap_attention": lambda: variants.softcap(q, k, v),
            "sliding_window_attention": lambda: variants.sliding_window(q, k, v),
            "document_mask_attention": lambda: variants.document_mask(q, k, v, x["DQ"], x["DK"]),
            "attention_decode": lambda: variants.decode(q, k, v),
            "sigmoid_attention": lambda: variants.sigmoid(q, k, v),
            "linear_attention_decay": lambda: variants.linear_decay(q, k, v),
            "lightning_attention2": lambda: variants.lightning2(q, k, v, bm),
            "aaren": lambda: variants.aaren(q, k, v),
            "agent_attention": lambda: variants.agent(q, k, v, bq),
            "seer_attention": lambda: variants.seer(q, k, v, bq, bm),
            "routing_attention": lambda: variants.routing(q, k, v, x["C"]),
            "landmark_attention": lambda: variants.landmark(q, k, v, x["LK"], bm),
            "recycled_attention": lambda: variants.recycled(q, k, v, x["PA"]),
        }
        return calls[name]()

    return x, sizes, ref


def _naive32(c: einsum.Cascade, x: dict[str, np.ndarray], sizes: dict[str, int]) -> np.ndarray:
    """The naive float32 computation: the cascade's own equations, Einsum by Einsum, in float32."""
    x32 = {n: a.astype(np.float32) for n, a in x.items()}
    return golden.run(c, x32, sizes, dtype=np.float32)[c.outputs[0]]


def _check(got: np.ndarray, ref: np.ndarray, naive: np.ndarray) -> None:
    """FlashAttention's rule: the kernel's error against the float64 reference at most twice the
    naive computation's in the same dtype, plus twice the dtype's rounding at the output's size."""
    assert got.shape == ref.shape == naive.shape
    rounding = np.abs((ref.astype(got.dtype) + got.dtype.type(0.3) - got.dtype.type(0.3)) - ref).max()
    bound = 2 * np.abs(naive - ref).max() + 2 * rounding
    assert np.abs(got - ref).max() <= bound, (np.abs(got - ref).max(), bound)


def test_plans_chosen_and_reasons_given() -> None:
    for name, want in PLANS.items():
        pl = plan(einsum.library.get(name))
        assert pl.template == want, (name, pl.describe())
        assert pl.reason == ""
    assert len(VARIANTS) >= 14
    pq = plan(einsum.library.get("spatten_progressive_quantization"))
    assert pq.template is None and "calls the user-defined operator 'qk12'" in pq.reason
    seer = plan(einsum.library.get("seer_attention")).steps[-1]
    # the block-sparse core: blocked query and key, the selection's mask read per block pair
    assert (seer.qranks, seer.kranks, seer.extras) == (("p1", "p0"), ("m1", "m0"), ("BM",))
    assert [s.output for s in plan(einsum.library.get("agent_attention")).cores] == ["VA", "AV"]
    # Lightning Attention-2: the blocks are views of Q, K, V; the intra-block part a weighted core
    # whose key range is each query block's own; the state update and read-out BLAS products
    lightning = golden.compile(einsum.library.get("lightning_attention2"))
    kinds = [
        (s.kind, s.output or einsum.library.get("lightning_attention2").einsums[s.statements[0]].output)
        for s in lightning.plan.steps
    ]
    assert kinds[:3] == [("view", "BQ"), ("view", "BK"), ("view", "BV")]
    src = lightning.kernel_source()
    assert "klo = min(klo, lo)" in src  # the intra-block core narrows its keys
    assert src.count("_gemm(ta") == 2  # KV's update and OX's read-out


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(PLANS))
def test_compiled_kernels_match_the_references(name: str, dtype: type) -> None:
    """Every variant, compiled, on shapes the kernels were not tuned on (P = 1, M = 1, P = 113,
    M = 1023, P != M, E != F, sizes that are not multiples of the tiles), against its independent
    NumPy reference and the float64 interpreter."""
    c = einsum.library.get(name)
    # float64 with each template's default tiles (a blocked core: a tile per block), float32
    # with small ones (several tiles per row and column at every shape but the smallest)
    fn = golden.compile(c) if dtype is np.float64 else golden.compile(c, block_q=32, block_k=128)
    rng = np.random.default_rng(len(name))
    for p, m in SHAPES:
        if name == "attention_decode" and m < p:
            continue
        x, sizes, ref = _case(name, p, m, rng)
        want = ref()
        if p * m <= 113 * 113:
            np.testing.assert_allclose(golden.run(c, x, sizes)[c.outputs[0]], want, rtol=1e-9, atol=1e-12)
        got = fn({n: a.astype(dtype) for n, a in x.items()}, sizes)[c.outputs[0]]
        assert got.dtype == dtype and got.shape == want.shape
        if dtype is np.float64:
            np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)
        else:
            _check(got, want, _naive32(c, x, sizes))


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


def test_the_block_mask_per_batch_entry_where_the_condition_varies() -> None:
    """Documents that differ per batch entry: the call's block mask is made per entry (a mask
    shared across the batch would skip live keys), and dead key tiles of each are skipped (small
    tiles, so that there are several)."""
    c = einsum.library.get("document_mask_attention")
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(2, 64, 8)), rng.normal(size=(2, 96, 8)), rng.normal(size=(2, 96, 4))
    dq = np.stack([np.repeat(np.arange(4.0), 16), np.repeat(np.arange(2.0), 32)])
    dk = np.stack([np.repeat(np.arange(4.0), 24), np.repeat(np.arange(2.0), 48)])
    fn = golden.compile(c, block_q=8, block_k=8)
    got = fn({"Q": q, "K": k, "V": v, "DQ": dq, "DK": dk})["AV"]
    assert "def block_mask" in fn.kernel_source()
    # a condition the key range covers (causal, windows, decode) needs no block mask
    for name in ("attention_decode", "sliding_window_attention", "alibi_attention"):
        assert "def block_mask" not in golden.compile(einsum.library.get(name)).kernel_source()
    for b in range(2):
        want = golden.run(c, {"Q": q[b], "K": k[b], "V": v[b], "DQ": dq[b], "DK": dk[b]})["AV"]
        np.testing.assert_allclose(got[b], want, rtol=1e-10, atol=1e-12)


def test_no_template_runs_in_the_interpreter_and_says_why() -> None:
    c = einsum.library.get("spatten_progressive_quantization")
    rng = np.random.default_rng(1)
    x = {"Q": rng.normal(size=(3, 4)), "K": rng.normal(size=(9, 4)), "V": rng.normal(size=(9, 2))}
    x["TAU"] = np.array(0.5)
    x = {i.name: x.get(i.name, rng.normal(size=(3,))) for i in c.inputs}
    fn = golden.compile(c)
    assert fn.template is None and "user-defined operator" in fn.reason
    with pytest.warns(
        RuntimeWarning, match=r"spatten_progressive_quantization runs in the float64 interpreter"
    ):
        got = fn(x)
    np.testing.assert_array_equal(got["AV"], golden.run(c, x)["AV"])


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
    with pytest.raises(
        golden.EvaluationError, match=r"input K needs 2 dimensions \(M, E\), got shape \(3,\)"
    ):
        golden.compile(c)({"Q": np.ones((2, 3)), "K": np.ones(3), "V": np.ones((2, 3))})
    with pytest.raises(
        golden.EvaluationError,
        match=r"leading \(batch\) dimensions do not broadcast: Q \(2, 2, 3\), K \(3, 4, 3\), V \(4, 5\)",
    ):
        golden.compile(c)({"Q": np.ones((2, 2, 3)), "K": np.ones((3, 4, 3)), "V": np.ones((4, 5))})


_SIM = """
import dataclasses, json, sys
import numpy as np
import einsum, golden
names, sizes, reference = json.loads(sys.argv[1]), json.loads(sys.argv[3]), sys.argv[4] == "1"
for i, name in enumerate(names):
    c = einsum.library.get(name)
    x = dict(np.load(f"{sys.argv[2]}/in{i}.npz"))
    for dt in ("float64", "float32"):
        fn = golden.compile(c, backend="cuda")
        out = fn({k: a.astype(dt) for k, a in x.items()}, sizes[i])[c.outputs[0]]
        np.save(f"{sys.argv[2]}/out{i}_{dt}.npy", out)
    if reference:  # the one-thread-per-row cores, the simple reference
        fn = dataclasses.replace(golden.compile(c, backend="cuda"), cuda_tiled=False)
        np.save(f"{sys.argv[2]}/ref{i}.npy", fn(x, sizes[i])[c.outputs[0]])
"""


def _cuda_run(
    tmp_path: Any,
    shape: tuple[int, int],
    e: int,
    f: int,
    block: int,
    sim: bool,
    cache: Any = None,
    reference: bool = False,
) -> None:
    """Every variant compiled for numba.cuda (the tiled cores), float64 and float32, in a child
    process (numba's simulator, or a real device), against the references and FlashAttention's
    rule; with ``reference``, the one-thread-per-row cores in float64 too."""
    import json
    import os
    import subprocess
    import sys

    rng = np.random.default_rng(8)
    cases = []
    for i, name in enumerate(PLANS):
        x, sizes, ref = _case(name, *shape, rng, e=e, f=f, block=block)
        np.savez(tmp_path / f"in{i}.npz", **x)
        cases.append((name, sizes, ref, x))
    env = dict(os.environ, EINFORGE_CACHE=str(cache or tmp_path / "cache"))
    if sim:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _SIM,
            json.dumps(list(PLANS)),
            str(tmp_path),
            json.dumps([c[1] for c in cases]),
            "1" if reference else "0",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i, (name, sizes, ref, x) in enumerate(cases):
        c = einsum.library.get(name)
        want = ref()
        got = np.load(tmp_path / f"out{i}_float64.npy")
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12, err_msg=name)
        _check(np.load(tmp_path / f"out{i}_float32.npy"), want, _naive32(c, x, sizes))
        if reference:
            np.testing.assert_allclose(
                np.load(tmp_path / f"ref{i}.npy"), want, rtol=1e-9, atol=1e-12, err_msg=name
            )


@pytest.mark.slow  # CI runs it (.ci/run); about 5 to 15 s
def test_compiled_kernels_on_the_cuda_simulator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """P = 6, M = 12 with blocks of 3 queries and 4 keys (several of each); P = M = 1; P = 3,
    M = 37 (a prime: blocks of 1); E = 4, F = 3 (the real-GPU test takes P = 113, M = 1023)."""
    for i, shape in enumerate([(6, 12), (1, 1), (3, 37)]):
        (tmp_path / str(i)).mkdir()
        _cuda_run(tmp_path / str(i), shape, 4, 3, 4, sim=True, cache=tmp_path / "cache", reference=i == 2)


@pytest.mark.gpu
def test_compiled_kernels_on_a_gpu(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A real device: held-back shapes at E = F = 64 (one kernel cache for all)."""
    from numba import cuda

    if not cuda.is_available() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("needs a CUDA device")
    for i, shape in enumerate([(1, 1), (113, 1023), (7, 64)]):
        (tmp_path / str(i)).mkdir()
        _cuda_run(tmp_path / str(i), shape, 64, 64, 64, sim=False, cache=tmp_path / "cache")


def test_the_cuda_cores_are_tiled() -> None:
    """The CUDA cores stage K and V tiles in shared memory, a thread block per query tile, and
    accumulate in the inputs' dtype; the one-thread-per-row kernels stay as the reference."""
    import dataclasses

    fn = golden.compile(einsum.library.get("attention_3pass"), backend="cuda")
    src = fn.kernel_source(3, 4, "float32")
    assert "cuda.shared.array((32, 4), float32)" in src and src.count("cuda.syncthreads()") == 2
    assert "acc = cuda.local.array(3, float32)" in src
    ref = dataclasses.replace(fn, cuda_tiled=False).kernel_source(3)
    assert "cuda.shared" not in ref and "cuda.local.array(3, float64)" in ref


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
    refused = [
        ("document_mask_attention", {}, r"'document_mask_attention' cannot run here: it reads DQ, DK"),
        ("aaren", {}, r"'aaren' cannot run here: its inputs are not Q\[p, e\]"),
        ("agent_attention", {}, r"'agent_attention' cannot run here: it needs the block size\(s\) P0"),
        ("spatten_progressive_quantization", {}, r"cannot run here: .*user-defined"),
        ("alibi_attention", {"causal": True}, r"causal, scale, enable_gqa and attn_mask are written in the"),
    ]
    for name, kw, why in refused:
        with pytest.raises(golden.EvaluationError, match=why):
            golden.attention(q, k, v, cascade=name, **kw)


def test_mismatched_k_is_a_typed_error() -> None:
    fn = golden.compile(einsum.library.get("sigmoid_attention"))
    with pytest.raises(einsum.SizeError, match=r"rank E: 3 in Q \(dimension 1\) but 2 in K \(dimension 1\)"):
        fn({"Q": np.ones((2, 3)), "K": np.ones((4, 2)), "V": np.ones((4, 5))})


def test_quantizer_checks_its_lsbs() -> None:
    with pytest.raises(
        einsum.ConfigError, match=r"quantizer 'q': drop_lsbs must be an integer in 0..11, got 12"
    ):
        einsum.quantizer(einsum.Fixed(12, 8), "q", drop_lsbs=12)


def test_golden_run_in_float32_is_the_naive_computation() -> None:
    c = einsum.library.get("document_mask_attention")
    rng = np.random.default_rng(2)
    x, _, _ = _case("document_mask_attention", 20, 30, rng)
    got = golden.run(c, {n: a.astype(np.float32) for n, a in x.items()}, dtype=np.float32, all_tensors=True)
    assert all(a.dtype == np.float32 for a in got.values())  # the masks' comparisons too
    want = golden.run(c, x)["AV"]
    assert 0 < np.abs(got["AV"] - want).max() < 1e-5
    with pytest.raises(golden.EvaluationError, match=r"dtype must be float32 or float64, got float16"):
        golden.run(c, x, dtype=np.float16)


def test_a_damaged_kernel_cache_is_dropped_and_rebuilt(tmp_path, caplog) -> None:  # type: ignore[no-untyped-def]
    import pickle

    from golden._compile import _drop_broken_cache

    cache = tmp_path / "__pycache__"
    cache.mkdir()
    whole = pickle.dumps({"a": 1})
    (cache / "k_1.kernel-3.py311.nbi").write_bytes(pickle.dumps(7) + pickle.dumps(("stamp", {})))
    (cache / "k_1.kernel-3.py311.1.nbc").write_bytes(whole)
    assert _drop_broken_cache(tmp_path, "k_1") == []  # whole files stay
    (cache / "k_1.kernel-3.py311.1.nbc").write_bytes(whole[:-3])  # truncated
    (cache / "k_2.kernel-3.py311.1.nbc").write_bytes(whole[:5])  # another kernel's: not touched
    assert _drop_broken_cache(tmp_path, "k_1") == ["k_1.kernel-3.py311.1.nbc", "k_1.kernel-3.py311.nbi"]
    assert sorted(p.name for p in cache.iterdir()) == ["k_2.kernel-3.py311.1.nbc"]
    assert "was damaged (ValueError: " in caplog.text and "); rebuilding it" in caplog.text


@pytest.mark.parametrize("dtype", [complex, str])
def test_compiled_kernels_refuse_complex_and_string_inputs(dtype) -> None:  # type: ignore[no-untyped-def]
    fn = golden.compile(einsum.library.get("matmul"))
    a = np.ones((4, 4)).astype(dtype)
    with pytest.raises(
        golden.EvaluationError, match=r"^golden.compile: input A must be a real numeric array, got dtype "
    ):
        fn({"A": a, "B": a})


def test_tanh_fast_in_float32_is_within_three_ulp() -> None:
    """The cores' float32 tanh (softcap, tanh-form GELU) against float64 tanh: within 3 ulp from
    -20 to 20, exact at +-0 and +-inf, NaN for NaN."""
    from numba import njit

    from golden._attn_cpu import tanh_fast

    @njit(cache=False)
    def apply(a):  # type: ignore[no-untyped-def]
        out = np.empty_like(a)
        for i in range(a.size):
            out[i] = tanh_fast(a[i])
        return out

    x = np.linspace(-20, 20, 200_001).astype(np.float32)
    got = apply(x).astype(np.float64)
    want = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(got - want) / np.maximum(ulp, 1e-45)) <= 3
    special = apply(np.array([0.0, -0.0, np.inf, -np.inf, np.nan], np.float32))
    assert special[:4].tolist() == [0.0, 0.0, 1.0, -1.0] and np.isnan(special[4])
    assert apply(np.array([0.5], np.float64))[0] == math.tanh(0.5)  # float64: math.tanh itself


def test_long_key_rows_vectorise_512_bits_wide_and_short_ones_do_not() -> None:
    """A CPU core whose key tiles hold at least WIDE_KEYS keys lets LLVM use 512-bit vectors (the
    function attribute set by ``_wide_vectors``); a core over fewer keys keeps 256-bit ones, whose
    vector loop starts at 32 keys. Both compute the same softmax attention, within FlashAttention's
    rule against the float64 oracle."""
    from golden._compile import WIDE_KEYS

    c = einsum.library.get("attention_3pass")
    fn = golden.compile(c)
    rng = np.random.default_rng(5)
    for m, wide in ((WIDE_KEYS, True), (WIDE_KEYS - 1, False), (40, False), (1000, True)):
        x = {
            "Q": rng.normal(size=(2, 37, 16)),
            "K": rng.normal(size=(2, m, 16)),
            "V": rng.normal(size=(2, m, 8)),
        }
        x32 = {n: a.astype(np.float32) for n, a in x.items()}
        got = fn(x32)["AV"]
        assert ("_wide_vectors()" in fn.source) is wide, m
        ref = np.stack([golden.run(c, {n: a[b] for n, a in x.items()})["AV"] for b in range(2)])
        naive = np.stack([_naive32(c, {n: a[b] for n, a in x.items()}, {}) for b in range(2)])
        _check(got, ref, naive)
    assert fn.kernel_source().count("_wide_vectors()") == 0  # the listing shows the 256-bit form


def test_a_pooling_sums_along_contiguous_memory() -> None:
    """Agent attention's pooling ``AG[p1, e] = sum[p0] BQ[p1, p0, e] / P0``: the sum's loop runs
    outside the output's contiguous index, accumulating into the row in place (the results are
    the references', checked with every variant above)."""
    src = golden.compile(einsum.library.get("agent_attention")).kernel_source()
    assert "for i_p0 in range(szi[4]):\n            for i_e in range(szi[0]):" in src
    assert "t0[g, i_p1, i_e] += (t1[gt1, i_p1, i_p0, i_e] / sz[4])" in src
    # a sum whose operand reads the output's last index elsewhere keeps the accumulator form
    c = einsum.parse("cascade t\ninput A[m, k], B[k, j]\noutput Z\nZ[m, k] = sum[j] B[k, j] * A[m, k]\n")
    fn = golden.compile(c)
    assert "+= (t" not in fn.kernel_source()
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(5, 7)), rng.normal(size=(7, 3))
    np.testing.assert_allclose(fn({"A": a, "B": b})["Z"], a * b.sum(1)[None, :], rtol=1e-12)


def test_a_call_leaves_the_blas_thread_counts_as_it_found_them() -> None:
    """The kernels run BLAS on one thread inside their own threads; after a call (and after one
    that raised inside the limit), every BLAS library has the count it had before."""
    from threadpoolctl import threadpool_info

    from golden._runtime import one_blas_thread

    def counts() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    c = einsum.library.get("attention_decode")
    rng = np.random.default_rng(6)
    x = {"Q": rng.normal(size=(2, 1, 8)), "K": rng.normal(size=(2, 40, 8)), "V": rng.normal(size=(2, 40, 4))}
    fn = golden.compile(c)
    fn(x)  # loads every BLAS the kernels use
    before = counts()
    fn(x)
    assert counts() == before
    with pytest.raises(RuntimeError), one_blas_thread():
        assert set(counts()) <= {1}
        raise RuntimeError("inside the limit")
    assert counts() == before


def test_changing_the_tiles_after_a_call_takes_effect() -> None:
    """A call's launch settings are kept per signature; setting block_q / block_k afterwards is
    not ignored (the generated source is the same; the tiles are the kernel's arguments)."""
    c = einsum.library.get("document_mask_attention")
    rng = np.random.default_rng(7)
    x = {"Q": rng.normal(size=(64, 8)), "K": rng.normal(size=(96, 8)), "V": rng.normal(size=(96, 4))}
    x["DQ"], x["DK"] = np.repeat(np.arange(4.0), 16), np.repeat(np.arange(4.0), 24)
    fn = golden.compile(c)
    first = fn(x)["AV"]
    fn.block_q, fn.block_k = 8, 8
    second = fn(x)["AV"]
    assert {lk[2:] for lk in fn._launches} == {(None, None), (8, 8)}
    np.testing.assert_allclose(second, first, rtol=1e-12, atol=1e-12)


def test_inputs_shared_across_the_batch_are_read_in_place() -> None:
    """An input broadcast over the batch (a document id per key, shared by every batch entry and
    head; one per batch entry) is read at its own entries: no copy per batch entry (traced
    allocations stay below one copy of the shared input per head) and the results are each
    entry's own."""
    import tracemalloc

    c = einsum.library.get("document_mask_attention")
    rng = np.random.default_rng(14)
    b, h, p, m = 2, 64, 8, 4096
    q, k, v = rng.normal(size=(b, h, p, 4)), rng.normal(size=(1, h, m, 4)), rng.normal(size=(1, h, m, 2))
    dq, dk = np.zeros(p), np.repeat(np.arange(2.0), m // 2)  # (P,), (M,): every batch entry's
    fn = golden.compile(c)
    x = {"Q": q, "K": k, "V": v, "DQ": dq, "DK": dk}
    fn(x)
    tracemalloc.start()
    got = fn(x)["AV"]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Q, K and V at their own entries, the output, block masks; a copy of K and V per batch
    # entry alone would be b * h * m * 6 * 8 bytes (25 MB)
    assert peak < (q.nbytes + k.nbytes + v.nbytes + got.nbytes) * 1.5, peak
    for bi, hi in ((0, 0), (1, 63), (1, 5)):
        at = {"Q": q[bi, hi], "K": k[0, hi], "V": v[0, hi], "DQ": dq, "DK": dk}
        np.testing.assert_allclose(got[bi, hi], golden.run(c, at)["AV"], rtol=1e-10, atol=1e-12)


def test_grouped_query_inputs_need_enable_gqa() -> None:
    """enable_gqa lets an input's last batch dimension (the heads) divide the others': query head
    h reads K/V head h // (H // Hkv); without it, a typed error that names the option."""
    c = einsum.library.get("attention_3pass")
    rng = np.random.default_rng(15)
    q, k, v = rng.normal(size=(2, 6, 5, 4)), rng.normal(size=(2, 3, 9, 4)), rng.normal(size=(2, 3, 9, 2))
    fn = golden.compile(c)
    with pytest.raises(golden.EvaluationError, match=r"do not broadcast: .*with enable_gqa the last of them"):
        fn({"Q": q, "K": k, "V": v})
    got = fn({"Q": q, "K": k, "V": v}, enable_gqa=True)["AV"]
    want = fn({"Q": q, "K": np.repeat(k, 2, axis=1), "V": np.repeat(v, 2, axis=1)})["AV"]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(golden.EvaluationError, match=r"do not broadcast"):  # 4 does not divide 6
        fn({"Q": q, "K": k[:, :2].repeat(2, 1), "V": v[:, :2].repeat(2, 1)}, enable_gqa=True)


def test_enable_gqa_needs_the_compiled_kernels() -> None:
    """A cascade with no kernel template runs in the interpreter, which takes no grouped heads: a
    typed error that says so, not a silent broadcast."""
    c = einsum.library.get("spatten_progressive_quantization")
    with pytest.raises(
        golden.EvaluationError, match=r"enable_gqa needs the compiled kernels.*repeat K and V"
    ):
        golden.compile(c)({}, enable_gqa=True)


def test_a_row_s_reference_is_resampled_per_key_tile_only_where_the_score_can_drift() -> None:
    """A softmax core's running reference: set from a row's first 32 scores, raised per key tile
    by a strided sample only where the score reads an index or a tensor beside ``qk`` (ALiBi's
    bias along the row); plain ``qk * scale`` skips the sample and takes two passes over a tile
    whose scores grew past exp(16). Both give the interpreter's AV, here with scores that grow
    by 40 per key tile of 16."""
    rng = np.random.default_rng(11)
    q = np.abs(rng.normal(size=(32, 8))) + 1.0
    k = np.abs(rng.normal(size=(128, 8))) * np.repeat(np.arange(1.0, 9.0), 16)[:, None] * 2.0
    v = rng.normal(size=(128, 4))
    for name, drift in (("attention_3pass", False), ("alibi_attention", True)):
        c = einsum.library.get(name)
        fn = golden.compile(c, block_q=8, block_k=16)
        assert f"if ref != -INF and not {drift}:" in fn.kernel_source()
        x = {"Q": q[None], "K": k[None], "V": v[None]}
        got = fn(x)[c.outputs[0]][0]
        want = golden.run(c, {"Q": q, "K": k, "V": v})[c.outputs[0]]
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
