"""golden.attention against golden.run (the float64 oracle), with FlashAttention's tolerance rule.

The rule (FlashAttention's tests): the kernel's max error against the float64 reference may be at
most twice that of a naive computation in the same dtype, plus twice the dtype's rounding error
at the output's magnitude (``(ref + 0.3 - 0.3) - ref``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import zlib
from typing import Any

import numpy as np
import pytest

import golden
from golden import _attn_cpu
from golden._attention import CASCADES


def _on_the_simulator(script: str, tmp_path: Any, *args: str) -> None:
    """Run ``script`` in a child process on numba's CUDA simulator (its arguments ``args``, then
    ``tmp_path``); fail with its stderr where it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", script, *args, str(tmp_path)],
        env=dict(os.environ, NUMBA_ENABLE_CUDASIM="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def naive(q, k, v, causal, dtype):
    """softmax(q k^T / sqrt(E)) v, every step in ``dtype`` (what a user would write)."""
    q, k, v = (np.asarray(a, dtype) for a in (q, k, v))
    s = (q @ np.swapaxes(k, -1, -2)) * dtype(1 / np.sqrt(q.shape[-1]))
    if causal:
        p, m = s.shape[-2:]
        s = np.where(np.tril(np.ones((p, m), bool)), s, dtype(-np.inf))
    s = np.exp(s - s.max(-1, keepdims=True))
    return (s / s.sum(-1, keepdims=True)) @ v


EXTENDED = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


def check(out, q, k, v, cascade, causal):
    """Float32 results against golden.run (the float64 oracle). Float64 results need a reference
    more precise than float64: the same formula in extended precision (np.longdouble), which
    golden.run must itself match under the same rule."""
    dtype = q.dtype.type
    assert out.dtype == q.dtype and out.shape == (*q.shape[:-1], v.shape[-1])
    oracle = golden.attention(
        *(a.astype(np.float64) for a in (q, k, v)), cascade=cascade, causal=causal, backend="golden"
    )
    if dtype is np.float32:
        ref = oracle
    else:
        if not EXTENDED:
            pytest.skip("np.longdouble is no wider than float64 here: no reference for float64")
        ref = naive(q, k, v, causal, np.longdouble)
        within_rule(oracle, ref, q, k, v, causal, dtype)
    return within_rule(out, ref, q, k, v, causal, dtype)


def within_rule(out, ref, q, k, v, causal, dtype):
    err = np.abs(out - ref).max()
    naive_err = np.abs(naive(q, k, v, causal, dtype) - ref).max()
    atol = 2 * np.abs((ref.astype(dtype) + dtype(0.3) - dtype(0.3)) - ref).max()
    assert err <= 2 * naive_err + atol, (err, naive_err, atol)
    return err


def inputs(rng, lead, p, m, e, f, dtype, q_scale=1.0):
    q = (rng.standard_normal((*lead, p, e)) * q_scale).astype(dtype)
    return (
        q,
        rng.standard_normal((*lead, m, e)).astype(dtype),
        rng.standard_normal((*lead, m, f)).astype(dtype),
    )


# Odd sizes; several query tiles (the CPU query tile shrinks to keep both threads busy) and, at
# M = 1100, three key tiles of 512 with a ragged last one.
SHAPES = [((), 1, 1, 1, 1), ((3,), 7, 33, 5, 3), ((2, 3), 130, 257, 17, 9), ((2,), 300, 1100, 8, 16)]


@pytest.mark.parametrize("cascade", CASCADES)
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cpu_matches_golden_run(cascade, causal, dtype) -> None:
    rng = np.random.default_rng(zlib.crc32(f"{cascade} {causal} {dtype.__name__}".encode()))
    for lead, p, m, e, f in SHAPES:
        q, k, v = inputs(rng, lead, p, m, e, f, dtype)
        check(golden.attention(q, k, v, cascade=cascade, causal=causal), q, k, v, cascade, causal)


@pytest.mark.parametrize("causal", [False, True])
def test_cpu_wide_score_range_rescales(causal) -> None:
    """Scores spread over hundreds: the 1-pass kernel's reference must be raised (recompute path)
    and the exp must neither overflow nor lose the small terms."""
    rng = np.random.default_rng(7)
    q, k, v = inputs(rng, (2,), 200, 1100, 16, 8, np.float32, q_scale=40.0)
    for cascade in CASCADES:
        out = golden.attention(q, k, v, cascade=cascade, causal=causal)
        assert np.isfinite(out).all()
        check(out, q, k, v, cascade, causal)


@pytest.mark.parametrize("causal", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_cpu_1pass_within_the_rule_over_many_draws(causal) -> None:
    """The 1-pass kernel's running reference is not the row max: the rule must hold for every
    draw, not just lucky ones (this shape broke it in 2 of 180 draws before the first tile's
    reference became the max of its first 32 scores)."""
    rng = np.random.default_rng(1000)
    for _ in range(12):
        q, k, v = inputs(rng, (2,), 300, 1100, 8, 16, np.float32)
        check(golden.attention(q, k, v, causal=causal), q, k, v, "attention_1pass", causal)


def test_cpu_1pass_takes_512_bit_vectors_over_long_rows(monkeypatch) -> None:
    """golden.attention's 1-pass kernel runs its row loops 512 bits wide where a key tile holds
    at least WIDE_KEYS keys (golden.compile's rule), 256 bits wide below; both within the rule
    (SHAPES above check both over every cascade and dtype)."""
    from golden._compile import WIDE_KEYS

    calls: list[str] = []
    for name in ("fwd_1pass", "fwd_1pass_wide"):
        real = getattr(_attn_cpu, name)
        monkeypatch.setattr(
            _attn_cpu, name, lambda *a, real=real, name=name: (calls.append(name), real(*a))[1]
        )
    rng = np.random.default_rng(3)
    for m, want in ((WIDE_KEYS, "fwd_1pass_wide"), (WIDE_KEYS - 1, "fwd_1pass"), (2000, "fwd_1pass_wide")):
        q, k, v = inputs(rng, (2,), 70, m, 16, 8, np.float32)
        check(golden.attention(q, k, v), q, k, v, "attention_1pass", False)
        assert calls.pop() == want, m


def test_cpu_equal_scores_average_values() -> None:
    q = np.zeros((1, 5, 4), np.float32)
    k = np.ones((1, 9, 4), np.float32)
    v = np.arange(18, dtype=np.float32).reshape(1, 9, 2)
    for cascade in CASCADES:
        np.testing.assert_allclose(
            golden.attention(q, k, v, cascade=cascade)[0], np.tile([8.0, 9.0], (5, 1)), rtol=1e-6
        )
    causal = golden.attention(q, k, v, causal=True)[0]  # query p averages V[0 .. p, 0] = 0, 2, .., 2p
    np.testing.assert_allclose(causal[:, 0], [0.0, 1.0, 2.0, 3.0, 4.0], rtol=1e-6)


def test_cpu_accepts_views_and_keeps_inputs() -> None:
    rng = np.random.default_rng(3)
    q, k, v = inputs(rng, (4,), 40, 50, 8, 8, np.float32)
    q_t = np.ascontiguousarray(np.swapaxes(q, -1, -2))  # a transposed view below: not contiguous
    keep = q.copy()
    out = golden.attention(np.swapaxes(q_t, -1, -2), k, v)
    np.testing.assert_array_equal(q, keep)
    check(out, q, k, v, "attention_1pass", False)


def test_fast_exp_accuracy() -> None:
    """The float32 exp of the CPU kernels: within 2 ulp of exp wherever exp is a normal float32."""
    from numba import njit

    @njit
    def apply(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = _attn_cpu.exp_fast(x[i])
        return out

    x = np.linspace(-87.0, 16.0, 400_001, dtype=np.float32)
    got = apply(x).astype(np.float64)
    want = np.exp(x.astype(np.float64))
    ulp = np.spacing(want.astype(np.float32)).astype(np.float64)
    assert (np.abs(got - want) / ulp).max() <= 2.0
    tiny = apply(np.array([-200.0, -1e30, -np.inf], np.float32))
    assert (tiny == 0).all()


ERRORS = [
    (dict(cascade="atention_1pass"), r"unknown cascade 'atention_1pass'; did you mean 'attention_1pass'\?"),
    (dict(backend="gpu"), r"unknown backend 'gpu'.*\(known: cpu, cuda, golden\)"),
    (dict(causal="yes"), r"causal must be True or False, got 'yes'"),
    (dict(q=np.zeros((4, 8), np.float16)), r"q must be float32 or float64, got float16"),
    (dict(k=np.zeros((6, 8))), r"q, k and v must have one dtype, got float32, float64, float32"),
    (dict(v=np.zeros(6, np.float32)), r"v must be \(\.\.\., M, F\), got shape \(6,\)"),
    (
        dict(
            q=np.zeros((2, 4, 8), np.float32),
            k=np.zeros((3, 6, 8), np.float32),
            v=np.zeros((3, 6, 3), np.float32),
        ),
        r"leading \(batch, head\) dimensions do not broadcast: q \(2, 4, 8\), k \(3, 6, 8\), v \(3, 6, 3\) "
        r"\(K and V with fewer heads than Q: pass enable_gqa=True\)",
    ),
    (
        dict(k=np.zeros((2, 6, 8), np.float32)),
        r"k and v must have the same leading \(batch, head\) dimensions: q \(4, 8\), k \(2, 6, 8\), v \(6, 3\)",
    ),
    (
        dict(
            q=np.zeros((1, 6, 4, 8), np.float32),
            k=np.zeros((1, 4, 6, 8), np.float32),
            v=np.zeros((1, 4, 6, 3), np.float32),
            enable_gqa=True,
        ),
        r"with enable_gqa the query heads \(6\) must be a multiple of the key/value heads \(4\)",
    ),
    (dict(enable_gqa=True), r"enable_gqa needs a head dimension \(\.\.\., H, P, E\) on q, k and v"),
    (dict(scale=float("nan")), r"scale must be a finite number or None, got nan"),
    (dict(scale="0.1"), r"scale must be a finite number or None, got '0.1'"),
    (
        dict(q=np.zeros((4, 7), np.float32)),
        r"q and k must share E \(the last dimension\): q \(4, 7\), k \(6, 8\)",
    ),
    (dict(v=np.zeros((5, 3), np.float32)), r"k and v must share M \(the second-last dimension\)"),
    (dict(q=np.zeros((0, 8), np.float32)), r"rank P is empty: q \(0, 8\)"),
]


@pytest.mark.parametrize(("change", "message"), ERRORS)
def test_errors(change, message) -> None:
    args = {
        "q": np.zeros((4, 8), np.float32),
        "k": np.zeros((6, 8), np.float32),
        "v": np.zeros((6, 3), np.float32),
    }
    kwargs = {}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(golden.EvaluationError, match=message):
        golden.attention(args["q"], args["k"], args["v"], **kwargs)


# Runs in a subprocess with NUMBA_ENABLE_CUDASIM=1 (numba reads the switch when it is imported):
# each case's inputs are read from case<i>.npz and the output written to out<i>.npy.
_SIM_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import golden
    for i, (cascade, causal) in enumerate(json.loads(sys.argv[1])):
        x = np.load(f"{sys.argv[2]}/case{i}.npz")
        out = golden.attention(x["q"], x["k"], x["v"], cascade=cascade, causal=causal, backend="cuda")
        np.save(f"{sys.argv[2]}/out{i}.npy", out)
    """
)


@pytest.mark.slow  # CI runs it (.ci/run); about 5 to 15 s
def test_cuda_kernels_on_the_simulator(tmp_path) -> None:
    """numba.cuda kernels on numba's CUDA simulator: several query and key tiles, ragged edges,
    causal and not, both dtypes."""
    cases = [
        ("attention_1pass", False, "float32", (2,), 70, 150, 5, 3),
        ("attention_1pass", True, "float64", (), 70, 90, 4, 17),
        ("attention_2pass", True, "float32", (), 65, 130, 3, 2),
        ("attention_3pass", False, "float64", (), 20, 70, 6, 5),
        ("attention_1pass", True, "float64", (), 40, 45, 64, 64),  # 32 x 16 tiles, 8 threads a row
    ]
    rng = np.random.default_rng(11)
    data = []
    for i, (_, _, dtype, lead, p, m, e, f) in enumerate(cases):
        q, k, v = inputs(rng, lead, p, m, e, f, np.dtype(dtype).type)
        np.savez(tmp_path / f"case{i}.npz", q=q, k=k, v=v)
        data.append((q, k, v))
    _on_the_simulator(_SIM_SCRIPT, tmp_path, json.dumps([c[:2] for c in cases]))
    for i, ((cascade, causal, *_), (q, k, v)) in enumerate(zip(cases, data, strict=True)):
        check(np.load(tmp_path / f"out{i}.npy"), q, k, v, cascade, causal)


def test_cuda_without_a_device_says_so() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import numpy as np, golden\n"
            "try:\n    golden.attention(np.ones((2, 2)), np.ones((2, 2)), np.ones((2, 2)), backend='cuda')\n"
            "except golden.EvaluationError as e:\n    print(e)\nelse:\n    print('ran')",
        ],
        env={k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"},
        capture_output=True,
        text=True,
    )
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert "backend 'cuda' needs an NVIDIA GPU" in proc.stdout and "NUMBA_ENABLE_CUDASIM=1" in proc.stdout


def test_cuda_tiles_fit_shared_memory_or_say_so() -> None:
    from golden import _attn_cuda

    assert _attn_cuda.tile_shape(64, 64, np.float32) == (64, 32)
    assert _attn_cuda.tile_shape(64, 64, np.float64) == (32, 16)
    with pytest.raises(
        golden.EvaluationError,
        match=r"attention: backend 'cuda' with E = 512, F = 512 in "
        r"float64 needs 201,856 bytes of shared memory even with 16 x 16 tiles; the kernel has "
        r"49,152 \(use a smaller head dimension, float32, or backend 'cpu'\)",
    ):
        _attn_cuda.tile_shape(512, 512, np.float64)


@pytest.mark.gpu
@pytest.mark.parametrize("cascade", CASCADES)
def test_cuda_on_a_device(cascade) -> None:
    from numba import cuda

    if not cuda.is_available() or os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("needs a CUDA device")
    rng = np.random.default_rng(5)
    for causal in (False, True):
        for dtype in (np.float32, np.float64):
            q, k, v = inputs(rng, (2, 4), 333, 1025, 64, 64, dtype)
            check(
                golden.attention(q, k, v, cascade=cascade, causal=causal, backend="cuda"),
                q,
                k,
                v,
                cascade,
                causal,
            )


def test_cpu_from_several_threads() -> None:
    """Concurrent calls (a thread pool of users) give the same results as one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(21)
    jobs = [inputs(rng, (2,), 90, 130, 8, 4, np.float32) for _ in range(6)]
    alone = [golden.attention(*job) for job in jobs]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(lambda job: golden.attention(*job), jobs))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cascade", CASCADES)
def test_nan_propagates_as_in_torch(cascade: str, dtype: type) -> None:
    """A NaN in a key makes every query's row NaN (each row sees that key); a NaN in a query, that
    query's row only; as torch's SDPA and the float64 oracle give. (The float32 exp used to clamp
    NaN to -88, and the row max drops NaN, so the key was silently ignored.)"""
    rng = np.random.default_rng(3)
    q, k, v = (rng.normal(size=(2, 37, 16)).astype(dtype) for _ in range(3))
    k[1, 20, 5] = np.nan
    q[0, 7, 0] = np.nan
    out = golden.attention(q, k, v, cascade=cascade)
    assert np.isnan(out[1]).all()
    assert np.isnan(out[0, 7]).all() and not np.isnan(np.delete(out[0], 7, axis=0)).any()


@pytest.mark.parametrize("cascade", CASCADES)
@pytest.mark.parametrize(("p", "m"), [(1, 300), (7, 70), (64, 64), (130, 1023)])
def test_causal_bottom_right_alignment(cascade: str, p: int, m: int) -> None:
    """FlashAttention's causal alignment: the queries are the last P positions (KV-cache decode:
    with P = 1 the query sees every key), against the float64 references, float32 and float64."""
    rng = np.random.default_rng(p + m)
    q, k, v = rng.normal(size=(2, p, 16)), rng.normal(size=(2, m, 16)), rng.normal(size=(2, m, 8))
    want = np.stack(
        [
            golden.softmax_attention(q[i], k[i], v[i], causal=True, causal_alignment="bottom-right")
            for i in range(2)
        ]
    )
    got = golden.attention(q, k, v, cascade=cascade, causal=True, causal_alignment="bottom-right")
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    got32 = golden.attention(
        *(a.astype(np.float32) for a in (q, k, v)),
        cascade=cascade,
        causal=True,
        causal_alignment="bottom-right",
    )
    np.testing.assert_allclose(got32, want, rtol=1e-4, atol=1e-5)
    if p == 1:
        np.testing.assert_allclose(
            got[:, 0], np.stack([golden.softmax_attention(q[i], k[i], v[i])[0] for i in range(2)]), rtol=1e-10
        )
    oracle = golden.attention(
        q[:1, :5],
        k[:1, : m - p + 5],
        v[:1, : m - p + 5],
        causal=True,
        causal_alignment="bottom-right",
        backend="golden",
    )
    np.testing.assert_allclose(
        oracle[0],
        golden.softmax_attention(
            q[0, :5], k[0, : m - p + 5], v[0, : m - p + 5], causal=True, causal_alignment="bottom-right"
        ),
        rtol=1e-12,
    )


def test_bottom_right_needs_as_many_keys_as_queries() -> None:
    q = np.zeros((3, 4))
    with pytest.raises(
        golden.EvaluationError,
        match=r"M >= P is needed; got P=3, M=2 \(the first 1 queries would see no key\)",
    ):
        golden.attention(q, np.zeros((2, 4)), np.zeros((2, 4)), causal=True, causal_alignment="bottom-right")
    with pytest.raises(
        golden.EvaluationError, match=r"unknown causal_alignment 'bottom_right'; did you mean 'bottom-right'"
    ):
        golden.attention(q, q, q, causal=True, causal_alignment="bottom_right")


@pytest.mark.slow  # CI runs it (.ci/run); about 5 to 15 s
def test_cuda_bottom_right_on_the_simulator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The CUDA kernels' causal alignment (bottom-right: P = 3 queries at the end of M = 70 keys,
    over several key tiles), on numba's CUDA simulator, against the float64 reference."""
    rng = np.random.default_rng(5)
    q, k, v = rng.normal(size=(3, 4)), rng.normal(size=(70, 4)), rng.normal(size=(70, 3))
    np.savez(tmp_path / "x.npz", q=q, k=k, v=v)
    script = (
        "import sys, numpy as np, golden\n"
        "x = np.load(sys.argv[1] + '/x.npz')\n"
        "for c in ('attention_1pass', 'attention_3pass'):\n"
        "    out = golden.attention(x['q'], x['k'], x['v'], cascade=c, causal=True,"
        " causal_alignment='bottom-right', backend='cuda')\n"
        "    np.save(sys.argv[1] + f'/{c}.npy', out)\n"
    )
    _on_the_simulator(script, tmp_path)
    want = golden.softmax_attention(q, k, v, causal=True, causal_alignment="bottom-right")
    for c in ("attention_1pass", "attention_3pass"):
        np.testing.assert_allclose(np.load(tmp_path / f"{c}.npy"), want, rtol=1e-10, atol=1e-12)


def test_grouped_query_attention_broadcasting_and_scale() -> None:
    """torch's SDPA call: K and V with fewer heads than Q (enable_gqa; each K/V head serves
    consecutive query heads), leading dimensions that broadcast, a scale of one's own."""
    rng = np.random.default_rng(9)
    q = rng.normal(size=(2, 6, 33, 16))
    k, v = rng.normal(size=(2, 2, 50, 16)), rng.normal(size=(2, 2, 50, 8))
    got = golden.attention(q, k, v, enable_gqa=True, scale=0.3)
    for b in range(2):
        for h in range(6):
            qs = q[b, h] * (0.3 * 4.0)  # softmax_attention scales by 1/sqrt(16) = 1/4
            np.testing.assert_allclose(
                got[b, h], golden.softmax_attention(qs, k[b, h // 3], v[b, h // 3]), rtol=1e-10
            )
    oracle = golden.attention(
        q[:1, :3, :5], k[:1, :1], v[:1, :1], enable_gqa=True, scale=0.3, backend="golden"
    )
    np.testing.assert_allclose(oracle, got[:1, :3, :5], rtol=1e-10)
    shared = golden.attention(q, k[0, 0], v[0, 0])  # one K, V for every batch and head
    np.testing.assert_allclose(shared[1, 4], golden.softmax_attention(q[1, 4], k[0, 0], v[0, 0]), rtol=1e-10)


@pytest.mark.parametrize("cascade", CASCADES)
def test_one_query_with_keys_shared_across_the_batch(cascade: str) -> None:
    """P = 1 with K and V broadcast over the batch: a broadcast view's length-1 axis has stride 0,
    which BLAS rejected as a leading dimension (the 1-pass kernel returned NaN) until the kernels'
    inputs got natural strides."""
    rng = np.random.default_rng(12)
    q, k, v = rng.normal(size=(3, 1, 16)), rng.normal(size=(300, 16)), rng.normal(size=(300, 8))
    got = golden.attention(q, k, v, cascade=cascade)
    for b in range(3):
        np.testing.assert_allclose(got[b], golden.softmax_attention(q[b], k, v), rtol=1e-10, atol=1e-12)


def _masked_reference(q, k, v, mask, causal: bool, scale: float | None = None):  # type: ignore[no-untyped-def]
    """torch's semantics of attn_mask in float64 NumPy: boolean True attends, float adds."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = q @ np.swapaxes(k, -1, -2) * (1 / np.sqrt(q.shape[-1]) if scale is None else scale)
    allowed = np.ones(s.shape, bool)
    if mask.dtype == bool:
        allowed &= mask
    else:
        s = s + mask
    if causal:
        allowed &= np.tril(np.ones(s.shape[-2:], bool))
    s = np.where(allowed, s, -np.inf)
    with np.errstate(invalid="ignore"):
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)) @ v


@pytest.mark.parametrize("backend", ["cpu", "golden"])
@pytest.mark.parametrize("causal", [False, True])
def test_attn_mask_boolean_and_additive(backend: str, causal: bool) -> None:
    rng = np.random.default_rng(11)
    q, k, v = (rng.normal(size=(2, 3, 29, 8)).astype(np.float32) for _ in range(3))
    masks = [
        rng.random((29, 29)) > 0.4,  # shared by every head
        rng.normal(size=(3, 29, 29)).astype(np.float32),  # one per head, broadcast over the batch
        rng.random((2, 1, 29, 29)) > 0.5,
    ]
    for mask in masks:
        got = golden.attention(q, k, v, attn_mask=mask, causal=causal, backend=backend, scale=0.3)
        want = _masked_reference(q, k, v, mask, causal, 0.3)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))  # all-masked rows: NaN
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, equal_nan=True)


def test_attn_mask_errors() -> None:
    q = np.ones((2, 5, 4), np.float32)
    with pytest.raises(golden.EvaluationError, match=r"attn_mask must be boolean .* got dtype int64"):
        golden.attention(q, q, q, attn_mask=np.ones((5, 5), np.int64))
    with pytest.raises(
        golden.EvaluationError,
        match=r"attn_mask of shape \(5, 4\) does not broadcast to the scores' shape \(2, 5, 5\)",
    ):
        golden.attention(q, q, q, attn_mask=np.ones((5, 4), bool))
    with pytest.raises(golden.EvaluationError, match=r"'alibi_attention' cannot run here: .*attn_mask"):
        golden.attention(q, q, q, attn_mask=np.ones((5, 5), bool), cascade="alibi_attention")


@pytest.mark.parametrize("cascade", ["attention_1pass", "attention_2pass", "attention_3pass"])
@pytest.mark.parametrize("causal", [False, True])
def test_grouped_query_attention_in_the_cpu_kernels(cascade: str, causal: bool) -> None:
    """enable_gqa on the CPU: each query head reads its K/V head in the kernel (K and V are not
    repeated); the same as the float64 interpreter on repeated K and V, batch dimensions
    broadcast, bottom-right causal."""
    import numpy as np

    import golden

    rng = np.random.default_rng(11)
    q = rng.standard_normal((2, 8, 33, 16)).astype(np.float32)
    k = rng.standard_normal((1, 2, 47, 16)).astype(np.float32)
    v = rng.standard_normal((1, 2, 47, 8)).astype(np.float32)
    kw = dict(cascade=cascade, causal=causal, causal_alignment="bottom-right")
    got = golden.attention(q, k, v, enable_gqa=True, **kw)
    rk, rv = (np.repeat(np.broadcast_to(a, (2, *a.shape[1:])), 4, axis=1) for a in (k, v))
    want = golden.attention(q, rk, rv, backend="golden", **kw)
    assert got.shape == (2, 8, 33, 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("backend", ["cpu", "golden"])
def test_attn_mask_with_grouped_query_attention(backend: str) -> None:
    """attn_mask and enable_gqa together: each query head reads its K/V head in the kernel, the
    mask at its own batch entries (a key-padding row (M,) broadcast within the scores, a mask per
    query head, one per batch entry); the same as repeating K and V."""
    rng = np.random.default_rng(12)
    q = rng.normal(size=(2, 6, 17, 8)).astype(np.float32)
    k, v = (
        rng.normal(size=(2, 2, 23, 8)).astype(np.float32),
        rng.normal(size=(2, 2, 23, 5)).astype(np.float32),
    )
    rk, rv = np.repeat(k, 3, axis=1), np.repeat(v, 3, axis=1)
    masks = [
        rng.random(23) > 0.3,
        rng.normal(size=(6, 17, 23)).astype(np.float32),
        rng.random((2, 1, 17, 23)) > 0.5,
    ]
    for mask in masks:
        got = golden.attention(q, k, v, attn_mask=mask, enable_gqa=True, backend=backend, scale=0.3)
        want = _masked_reference(q, rk, rv, mask, False, 0.3)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=2e-5, equal_nan=True)
    with pytest.raises(
        golden.EvaluationError, match=r"does not broadcast to the scores' shape \(2, 6, 17, 23\)"
    ):
        golden.attention(q, k, v, attn_mask=np.ones((2, 17, 23), bool), enable_gqa=True)  # K/V's heads


@pytest.mark.slow  # CI runs it (.ci/run); about 10 to 30 s
def test_cuda_gqa_and_attn_mask_on_the_simulator(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On numba's CUDA simulator: the hand-written kernel with K/V heads shared by query heads
    (read in the kernel), and attn_mask (a (P, M) mask for every batch entry and head) with GQA,
    through the compiled masked cascade; against repeating K and V in float64."""
    rng = np.random.default_rng(13)
    q = rng.normal(size=(1, 4, 5, 4))
    k, v = rng.normal(size=(1, 2, 37, 4)), rng.normal(size=(1, 2, 37, 3))
    mask = rng.random((5, 37)) > 0.3
    np.savez(tmp_path / "x.npz", q=q, k=k, v=v, mask=mask)
    script = (
        "import sys, numpy as np, golden\n"
        "x = np.load(sys.argv[1] + '/x.npz')\n"
        "np.save(sys.argv[1] + '/gqa.npy', golden.attention(x['q'], x['k'], x['v'], enable_gqa=True,"
        " backend='cuda'))\n"
        "np.save(sys.argv[1] + '/masked.npy', golden.attention(x['q'], x['k'], x['v'], enable_gqa=True,"
        " attn_mask=x['mask'], backend='cuda'))\n"
    )
    _on_the_simulator(script, tmp_path)
    rk, rv = np.repeat(k, 2, axis=1), np.repeat(v, 2, axis=1)
    np.testing.assert_allclose(
        np.load(tmp_path / "gqa.npy"),
        _masked_reference(q, rk, rv, np.ones((5, 37), bool), False, 0.5),
        rtol=1e-10,
    )
    want = _masked_reference(q, rk, rv, mask, False, 0.5)
    np.testing.assert_allclose(np.load(tmp_path / "masked.npy"), want, rtol=1e-10, atol=1e-12)
