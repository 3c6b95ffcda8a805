"""Fast softmax attention from the library cascades: Numba on the CPU, numba.cuda on a GPU.

:func:`attention` runs the pass structure of a library cascade (``attention_1pass``,
``attention_2pass`` or ``attention_3pass``) as a tiled kernel. :func:`golden.run` stays the
oracle; ``backend="golden"`` runs it here, head by head, in float64, for checks.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from einsum.errors import suggest
from golden._runtime import _CPU_LOCK, c_array, one_blas_thread
from golden.errors import EvaluationError

if TYPE_CHECKING:
    from golden._compile import CompiledCascade

__all__ = ["ALIGNMENTS", "BACKENDS", "CASCADES", "attention"]

CASCADES = ("attention_1pass", "attention_2pass", "attention_3pass")
BACKENDS = ("cpu", "cuda", "golden")
ALIGNMENTS = ("top-left", "bottom-right")

# Query-tile rows and key-tile columns of the CPU kernels (float32; measured on the benchmark
# shape, see benchmarks/golden_cpu.py). The 3-pass slab is capped at _SLAB_BYTES per thread.
_BQ, _BK = 256, 512
_SLAB_BYTES = 8 << 20


def attention(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    *,
    cascade: str = "attention_1pass",
    causal: bool = False,
    causal_alignment: str = "top-left",
    scale: float | None = None,
    enable_gqa: bool = False,
    attn_mask: ArrayLike | None = None,
    backend: str = "cpu",
) -> NDArray[Any]:
    """``softmax(q k^T * scale) v`` computed the way ``cascade`` computes it.

    Args:
        q: queries ``(..., P, E)``; k: keys ``(..., M, E)``; v: values ``(..., M, F)``. The
            leading (batch, head) dimensions broadcast against each other (NumPy's rules). All
            float32 or all float64.
        scale: the factor on the scores; ``None`` (default) is ``1 / sqrt(E)``.
        enable_gqa: grouped-query attention, as ``torch``'s ``enable_gqa``: K and V may have
            fewer heads (the third-last dimension) than Q, a divisor of Q's; each K/V head serves
            ``Hq / Hkv`` consecutive query heads.
        cascade: ``attention_1pass`` (online softmax over key tiles; the P x M score matrix is
            never materialised), ``attention_2pass`` or ``attention_3pass`` (hand-written
            kernels); or a library variant that reads only Q, K and V and fits a template of
            :func:`golden.compile` (``alibi_attention``, ``sigmoid_attention``,
            ``softcap_attention``, ...), run by its compiled kernel.
        causal: query ``p`` sees keys ``0 .. p`` (top-left aligned, as ``torch``'s
            ``is_causal``), or with ``causal_alignment="bottom-right"`` keys ``0 .. p + M - P``
            (FlashAttention's alignment: the queries are the last ``P`` positions, as in decoding
            with a KV cache, where one query sees every key; needs ``M >= P``).
        attn_mask: as ``torch``'s: boolean (True: the query attends to the key) or additive
            (added to the scaled scores), broadcastable to ``(..., P, M)``; combined with
            ``causal``. A query whose keys are all masked gets NaN (as torch's math backend). It
            runs through a kernel compiled from the masked cascade (:func:`golden.compile`).
        backend: ``cpu`` (parallel Numba), ``cuda`` (numba.cuda; a GPU, or numba's simulator
            with ``NUMBA_ENABLE_CUDASIM=1``) or ``golden`` (:func:`golden.run` per head, the
            float64 oracle; slow).

    Returns:
        ``(..., P, F)`` in the inputs' dtype (float64 for ``golden``).

    Raises:
        EvaluationError: unknown cascade or backend, arrays of the wrong rank, shape, dtype or an
            empty rank, or no CUDA device for ``backend="cuda"``.

    Example:
        >>> import numpy as np, golden
        >>> rng = np.random.default_rng(0)
        >>> q, k, v = (rng.standard_normal((2, 3, 40, 16), dtype=np.float32) for _ in range(3))
        >>> out = golden.attention(q, k, v, causal=True)
        >>> out.shape, out.dtype
        ((2, 3, 40, 16), dtype('float32'))
        >>> ref = golden.softmax_attention(q[1, 2], k[1, 2], v[1, 2], causal=True)
        >>> bool(np.abs(out[1, 2] - ref).max() < 1e-5)
        True
    """
    _check_choice("backend", backend, BACKENDS)
    if cascade not in CASCADES:
        return _variant(q, k, v, cascade, causal, scale, enable_gqa or attn_mask is not None, backend)
    if not isinstance(causal, bool | np.bool_):
        raise EvaluationError(f"attention: causal must be True or False, got {causal!r}")
    _check_choice("causal_alignment", causal_alignment, ALIGNMENTS)
    if scale is not None and (
        isinstance(scale, bool)
        or not isinstance(scale, int | float | np.floating)
        or not math.isfinite(scale)
    ):
        raise EvaluationError(f"attention: scale must be a finite number or None, got {scale!r}")
    # the kernels map each query head to its K/V head: K and V are not repeated for them
    in_kernel = backend != "golden"
    qa, ka, va = _check_arrays(q, k, v, enable_gqa=bool(enable_gqa), repeat_kv=not in_kernel)
    lead = qa.shape[:-2]
    P, E = qa.shape[-2:]
    M, F = va.shape[-2:]
    shift = 0
    if causal and causal_alignment == "bottom-right":
        if M < P:
            raise EvaluationError(
                f"attention: with causal_alignment='bottom-right' the P queries are the last P of the M "
                f"key positions, so M >= P is needed; got P={P}, M={M} (the first {P - M} queries would "
                "see no key)"
            )
        shift = M - P
    if attn_mask is not None:
        gqa = bool(enable_gqa)
        return _masked(qa, ka, va, attn_mask, bool(causal), causal_alignment, scale, backend, gqa)
    if backend == "golden":
        if scale is not None:  # the cascades scale by 1/sqrt(E): fold the rest into Q (float64)
            qa = qa.astype(np.float64) * (float(scale) * math.sqrt(E))
        return _golden(qa, ka, va, cascade, bool(causal), shift)
    g = int(np.prod(lead, dtype=np.int64))
    gk = int(np.prod(ka.shape[:-2], dtype=np.int64))  # fewer than g with grouped-query attention
    q3 = c_array(qa.reshape(g, *qa.shape[-2:]))
    k3, v3 = (c_array(a.reshape(gk, *a.shape[-2:])) for a in (ka, va))
    out = np.empty((g, P, F), qa.dtype)
    scale = qa.dtype.type(1.0 / math.sqrt(E) if scale is None else scale)
    if backend == "cpu":
        _cpu(q3, k3, v3, out, scale, cascade, bool(causal), shift)
    else:
        from golden import _attn_cuda

        _attn_cuda.run(q3, k3, v3, out, scale, cascade, bool(causal), shift)
    return out.reshape(*lead, P, F)


def _variant(
    q: ArrayLike,
    k: ArrayLike,
    v: ArrayLike,
    cascade: object,
    causal: object,
    scale: object,
    gqa: object,
    backend: str,
) -> NDArray[Any]:
    """A library variant whose only inputs are Q, K and V, through a kernel compiled from its
    cascade (:func:`golden.compile`); the hand-written kernels serve the 1-, 2- and 3-pass
    softmax."""
    import einsum
    from golden._interp import run

    names = einsum.library.names()
    if not isinstance(cascade, str) or cascade not in names:
        raise EvaluationError(
            f"attention: unknown cascade {cascade!r}{suggest(cascade, (*CASCADES, *names))} (known: "
            f"{', '.join(CASCADES)}, or a library variant such as alibi_attention)"
        )
    c = einsum.library.get(cascade)
    fn = _compiled(c, "cuda" if backend == "cuda" else "cpu")
    extra = [i.name for i in c.inputs if i.name not in ("Q", "K", "V")]
    ranks = {i.name: i.ranks for i in c.inputs}
    out_ranks = next(e.ranks for e in c.einsums if e.output == c.outputs[0])
    why = (
        fn.reason
        if fn.template is None
        else f"it reads {', '.join(extra)} besides Q, K and V"
        if extra
        else "its inputs are not Q[p, e], K[m, e], V[m, f] with the output [p, f]"
        if [ranks.get(n) for n in "QKV"] != [("P", "E"), ("M", "E"), ("M", "F")] or out_ranks != ("P", "F")
        else f"it needs the block size(s) {', '.join(p.parts[-1] for p in c.partitions)}"
        if c.partitions
        else "causal, scale, enable_gqa and attn_mask are written in the cascade itself"
        if causal or scale is not None or gqa
        else ""
    )
    if why:
        raise EvaluationError(
            f"attention: cascade {cascade!r} cannot run here: {why}; use golden.compile(einsum.library.get"
            f"({cascade!r})) or golden.run"
        )
    qa, ka, va = _check_arrays(q, k, v)
    if backend == "golden":
        lead = qa.shape[:-2]
        out = np.empty((*lead, qa.shape[-2], va.shape[-1]))
        for idx in np.ndindex(*lead):
            out[idx] = run(c, {"Q": qa[idx], "K": ka[idx], "V": va[idx]})[c.outputs[0]]
        return out
    return fn({"Q": qa, "K": ka, "V": va})[c.outputs[0]]


@cache
def _compiled(cascade: Any, backend: str) -> CompiledCascade:
    """``golden.compile(cascade, backend)``, planned and generated once per cascade (the calls of
    golden.attention reuse it; the kernels themselves are cached on disk besides)."""
    from golden._compile import compile as compile_cascade

    hit = _COMPILED.get((id(cascade), backend))
    if hit is not None and hit[0] is cascade:
        return hit[1]
    fn = compile_cascade(cascade, backend=backend)
    if len(_COMPILED) >= 64:
        _COMPILED.clear()
    _COMPILED[(id(cascade), backend)] = (cascade, fn)  # the cascade kept: its id stays its own
    return fn


_COMPILED: dict[tuple[int, str], tuple[Any, CompiledCascade]] = {}


@cache
def masked_cascade(boolean: bool, causal: bool, alignment: str, scale: float | None) -> Any:
    """The cascade ``golden.attention`` runs for an ``attn_mask``: softmax attention whose score
    reads the mask ``MASK[p, m]`` (a boolean mask as 0 / 1), with the causal condition."""
    import einsum

    score = "where(MASK[p, m] > 0, QK[p, m] * scale, -inf)" if boolean else "QK[p, m] * scale + MASK[p, m]"
    if causal:
        cond = "p >= m" if alignment == "top-left" else "m <= p + M - P"
        score = f"where({cond}, {score}, -inf)"
    text = f"""
cascade attention_masked
input Q[p, e], K[m, e], V[m, f], MASK[p, m]
param scale = {"1 / sqrt(E)" if scale is None else repr(float(scale))}
output AV

QK[p, m] = Q[p, e] * K[m, e]
S[p, m]  = {score}
GM[p]    = max[m] S[p, m]
SN[p, m] = exp(S[p, m] - GM[p])
SD[p]    = sum[m] SN[p, m]
A[p, m]  = SN[p, m] / SD[p]
AV[p, f] = A[p, m] * V[m, f]
"""
    return einsum.parse(text)


def _masked(
    qa: NDArray[Any],
    ka: NDArray[Any],
    va: NDArray[Any],
    attn_mask: ArrayLike,
    causal: bool,
    alignment: str,
    scale: float | None,
    backend: str,
    gqa: bool = False,
) -> NDArray[Any]:
    """Attention with torch's ``attn_mask``, through the masked softmax cascade's kernels: the
    mask is read in the kernel at its own batch entries (not copied across batch and heads), and
    with ``gqa`` each query head reads its K/V head (K and V are not repeated)."""
    from golden._interp import run

    mask = np.asarray(attn_mask)
    if mask.dtype.kind not in "bf":
        raise EvaluationError(
            f"attention: attn_mask must be boolean (True: attend) or floating (added to the scores), "
            f"got dtype {mask.dtype}"
        )
    P, M = qa.shape[-2], ka.shape[-2]
    heads = ka.shape[-3] != qa.shape[-3] if gqa else False  # K/V keep their own (fewer) heads
    kv_lead = (*ka.shape[:-3], qa.shape[-3]) if heads else ka.shape[:-2]
    lead = np.broadcast_shapes(qa.shape[:-2], kv_lead)
    try:
        np.broadcast_shapes(mask.shape, (*lead, P, M))
        lead = np.broadcast_shapes(lead, mask.shape[:-2])
    except ValueError:
        raise EvaluationError(
            f"attention: attn_mask of shape {mask.shape} does not broadcast to the scores' shape "
            f"{(*lead, P, M)} (..., P, M)"
        ) from None
    boolean = mask.dtype.kind == "b"
    c = masked_cascade(boolean, causal, alignment, scale)
    # the cascade reads MASK[p, m]: broadcast within the scores' two dimensions only
    m = np.broadcast_to(mask, (*mask.shape[:-2], P, M)).astype(qa.dtype)
    x = {"Q": qa, "K": ka, "V": va, "MASK": m}
    if backend == "golden":
        m = np.broadcast_to(mask, (*lead, P, M)).astype(qa.dtype)
        x["MASK"] = m
        out = np.empty((*lead, P, va.shape[-1]))
        for idx in np.ndindex(*lead):
            at = {n: np.broadcast_to(a, (*lead, *a.shape[-2:]))[idx] for n, a in x.items()}
            out[idx] = run(c, at)["AV"]
        return out
    return _compiled(c, backend)(x, enable_gqa=heads)["AV"]


def _check_choice(what: str, value: object, known: tuple[str, ...]) -> None:
    if isinstance(value, str) and value in known:
        return
    raise EvaluationError(
        f"attention: unknown {what} {value!r}{suggest(value, known)} (known: {', '.join(known)})"
    )


def _check_arrays(
    q: ArrayLike, k: ArrayLike, v: ArrayLike, *, enable_gqa: bool = False, repeat_kv: bool = True
) -> tuple[NDArray[Any], ...]:
    """``q``, ``k``, ``v`` checked and broadcast to common leading dimensions. With
    ``enable_gqa``, K and V are repeated over the query heads, or (``repeat_kv=False``, for a
    kernel that maps each query head to its K/V head itself) keep their own heads, broadcast over
    the batch dimensions only."""
    arrays = []
    for name, x, dims in (("q", q, "(..., P, E)"), ("k", k, "(..., M, E)"), ("v", v, "(..., M, F)")):
        a = np.asarray(x)
        if a.dtype not in (np.float32, np.float64):
            raise EvaluationError(
                f"attention: {name} must be float32 or float64, got {a.dtype} (convert with "
                f".astype(np.float32))"
            )
        if a.ndim < 2:
            raise EvaluationError(f"attention: {name} must be {dims}, got shape {a.shape}")
        arrays.append(a)
    qa, ka, va = arrays
    if not qa.dtype == ka.dtype == va.dtype:
        raise EvaluationError(
            f"attention: q, k and v must have one dtype, got {qa.dtype}, {ka.dtype}, {va.dtype}"
        )
    shapes = f"q {qa.shape}, k {ka.shape}, v {va.shape}"
    if ka.shape[:-2] != va.shape[:-2]:
        raise EvaluationError(
            f"attention: k and v must have the same leading (batch, head) dimensions: {shapes}"
        )
    if enable_gqa:
        if qa.ndim < 3 or ka.ndim < 3:
            raise EvaluationError(
                f"attention: enable_gqa needs a head dimension (..., H, P, E) on q, k and v: {shapes}"
            )
        hq, hkv = qa.shape[-3], ka.shape[-3]
        if hkv == 0 or hq % hkv:
            raise EvaluationError(
                f"attention: with enable_gqa the query heads ({hq}) must be a multiple of the key/value "
                f"heads ({hkv}): {shapes}"
            )
        if repeat_kv:
            ka, va = (np.repeat(a, hq // hkv, axis=-3) for a in (ka, va))
        elif hq != hkv:
            try:
                batch = np.broadcast_shapes(qa.shape[:-3], ka.shape[:-3])
            except ValueError:
                raise EvaluationError(
                    f"attention: the leading (batch) dimensions do not broadcast: {shapes}"
                ) from None
            qa = np.broadcast_to(qa, (*batch, *qa.shape[-3:])) if qa.shape[:-3] != batch else qa
            ka, va = (
                np.broadcast_to(a, (*batch, *a.shape[-3:])) if a.shape[:-3] != batch else a for a in (ka, va)
            )
            return _check_sizes(qa, ka, va, shapes)
    try:
        lead = np.broadcast_shapes(qa.shape[:-2], ka.shape[:-2])
    except ValueError:
        hint = (
            " (K and V with fewer heads than Q: pass enable_gqa=True)"
            if qa.ndim >= 3 and ka.ndim >= 3 and qa.shape[-3] != ka.shape[-3]
            else ""
        )
        raise EvaluationError(
            f"attention: the leading (batch, head) dimensions do not broadcast: {shapes}{hint}"
        ) from None
    qa, ka, va = (
        a if a.shape[:-2] == lead else np.broadcast_to(a, (*lead, *a.shape[-2:])) for a in (qa, ka, va)
    )
    return _check_sizes(qa, ka, va, shapes)


def _check_sizes(
    qa: NDArray[Any], ka: NDArray[Any], va: NDArray[Any], shapes: str
) -> tuple[NDArray[Any], ...]:
    if qa.shape[-1] != ka.shape[-1]:
        raise EvaluationError(f"attention: q and k must share E (the last dimension): {shapes}")
    if ka.shape[-2] != va.shape[-2]:
        raise EvaluationError(f"attention: k and v must share M (the second-last dimension): {shapes}")
    for name, size in (("P", qa.shape[-2]), ("E", qa.shape[-1]), ("M", ka.shape[-2]), ("F", va.shape[-1])):
        if size == 0:
            raise EvaluationError(f"attention: rank {name} is empty: {shapes}")
    return qa, ka, va


def _cpu(
    q: NDArray[Any],
    k: NDArray[Any],
    v: NDArray[Any],
    out: NDArray[Any],
    scale: Any,
    cascade: str,
    causal: bool,
    shift: int = 0,
) -> None:
    import numba
    from numba.core.errors import NumbaIRAssumptionWarning

    from golden import _attn_cpu, _compile

    g, p, _ = q.shape
    m = k.shape[1]
    threads = numba.get_num_threads()
    bq = _BQ
    if cascade == "attention_3pass":  # one bq x M slab of scores per thread
        bq = max(1, min(bq, _SLAB_BYTES // (m * q.itemsize)))
    while bq > 16 and g * -(-p // bq) < 2 * threads:  # enough work items for every thread
        bq //= 2
    # the 1-pass kernel's row loops 512 bits wide over rows of enough keys (golden.compile's rule)
    wide = min(_BK, m) >= _compile.WIDE_KEYS
    kernel = {
        "attention_1pass": _attn_cpu.fwd_1pass_wide if wide else _attn_cpu.fwd_1pass,
        "attention_2pass": _attn_cpu.fwd_2pass,
        "attention_3pass": _attn_cpu.fwd_3pass,
    }[cascade]
    # One call at a time: the kernel already uses every core, and numba's workqueue threading
    # layer (its fallback where neither OpenMP nor TBB loads) aborts the process when two Python
    # threads launch parallel kernels at once.
    with _CPU_LOCK, one_blas_thread(), warnings.catch_warnings():
        # numba's pedantic SSA check flags the row helpers' accumulators once they are inlined
        # into the 1-pass kernel's loop (inline="always"); the compiled code is unaffected
        warnings.simplefilter("ignore", NumbaIRAssumptionWarning)
        kernel(q, k, v, out, scale, causal, shift, bq, _BK)


def _golden(
    q: NDArray[Any], k: NDArray[Any], v: NDArray[Any], cascade: str, causal: bool, shift: int = 0
) -> NDArray[Any]:
    import einsum
    from golden._interp import run

    if causal and shift:  # bottom-right: the library's decode cascade (3 passes)
        c = einsum.library.get("attention_decode")
    else:
        c = einsum.library.get(cascade + ("_causal" if causal else ""))
    lead, (P, _), F = q.shape[:-2], q.shape[-2:], v.shape[-1]
    out = np.empty((*lead, P, F))
    m = k.shape[-2]
    sizes = {"M0": math.gcd(m, 64)} if "M0" in c.ranks else None
    for idx in np.ndindex(*lead):
        out[idx] = run(c, {"Q": q[idx], "K": k[idx], "V": v[idx]}, sizes)["AV"]
    return out
