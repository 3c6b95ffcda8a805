"""Kernels compiled from a cascade: :func:`compile` (``golden.compile``).

An analysis of the cascade (:func:`plan`) splits it into kernels, each from a template with the
cascade's own expressions generated into it, compiled once (per kernel source and dtype) and
cached on disk. The attention cores:

- ``softmax``: ``O[q.., f] = W[q.., k..] * V[k.., f]`` summed over the key indices, ``W`` the
  softmax over them (``GM = max S``, ``SN = exp(S - GM)``, ``SD = sum SN``, then ``SN / SD`` or
  ``SN * V / SD``) of a score that is, once its pointwise intermediates are inlined, a function of
  one ``Q[q.., e] * K[k.., e]`` product (times constants), the indices, params, rank sizes and
  tensors indexed by the query and key indices (inputs, or tensors earlier kernels computed: a
  selection's mask, a cluster match). Query and key may each span several indices (a blocked
  cascade's ``p1, p0``), flattened. The kernel is an online softmax over key tiles (the P x M
  scores never exist); ``-inf`` scores are masked keys.
- ``weighted``: the same with any pointwise weights and no normaliser (sigmoid attention, linear
  attention with decay, Lightning Attention-2's intra-block part).

A dead-key condition (``where(COND, X, -inf)`` in a softmax score, a ``where(COND, X, 0)`` weight
factor) narrows each query tile's keys to the range its comparisons linear in the key index allow
(causal, windows, bottom-right causal, Lightning's blocks), and a key tile where COND holds
nowhere is skipped before its product (documents, block-sparse selections).

Everything else is a generated loop nest, one kernel per Einsum: ``loops`` (any pointwise,
reduction or contraction statement), ``select`` (a top-k per fiber, ties to the lower index: the
selection pre-kernels of SeerAttention, routing, landmark and recycled attention) and ``scan`` (a
recurrence's steps in order, in parallel over the batch: Aaren's prefix softmax, Lightning's
state). A cascade with a statement no generator handles (a user-defined Python operator, a top-k
over several indices) runs in the float64 interpreter (:func:`golden.run`) with a warning that
says why (``CompiledCascade.reason``).
"""

from __future__ import annotations

import math
import sys
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from einsum import (
    Cascade,
    bind_sizes,
    eval_params,
)
from golden._codegen import (
    CUDA_TILE_ROWS,
    _cuda_source,
    _loops_source,
    _source,
    layouts,
    loop_tensors,
    masked_tiles,
)
from golden._plan import Plan, Step, _view_of, plan
from golden._runtime import c_array
from golden.errors import EvaluationError

__all__ = ["BACKENDS", "CompiledCascade", "Plan", "compile", "plan"]

BACKENDS = ("cpu", "cuda")
# Each core template's default (query-tile rows, key-tile columns) on the CPU.
TILES = {"softmax": (256, 512), "weighted": (128, 256)}
# A core whose score's condition can kill whole tiles takes key tiles of at most this many keys:
# finer blocks skip more dead keys (document masks at P = M = 2048: 17.0 ms at 512, 10.7 at 256).
MASKED_KEYS = 256
# A CPU core whose key tiles hold at least this many keys lets LLVM vectorise its row loops
# 512 bits wide (x86 compilers tune for 256). On this machine's AVX-512 cores the exponentials
# over rows of 512 keys go from 0.34 to 0.24 ns a score, over 128 from 0.37 to 0.24, but over
# 64 from 0.39 to 0.50 (the wide loop's remainder); with every core wide, agent attention (rows
# of 32 agents) lost 2-26% against eager.
WIDE_KEYS = 128
_LOCK = threading.Lock()


_KERNELS: dict[str, Any] = {}


def _drop_broken_cache(root: Any, stem: str) -> list[str]:
    """Remove the Numba cache files of kernel module ``stem`` if any of them is not whole (a file
    truncated by a full disk or a killed process would otherwise fail every later call with an
    UnpicklingError); Numba then compiles the kernel again and rewrites them. The pickles are
    walked opcode by opcode, not loaded (loading needs the module, not yet imported). Returns the
    names removed."""
    import io
    import logging
    import pickletools

    files = sorted((root / "__pycache__").glob(f"{stem}.*"))
    try:
        for f in files:
            if f.suffix not in (".nbi", ".nbc"):
                continue
            data = io.BytesIO(f.read_bytes())
            # an index holds two pickles (Numba's version, then the stamp and overloads)
            for _ in range(2 if f.suffix == ".nbi" else 1):
                for _op in pickletools.genops(data):
                    pass
            if data.read(1):
                raise ValueError("trailing bytes after the pickled data")
    except Exception as exc:  # any failure to walk a cache file means: rebuild it
        for f in files:
            f.unlink(missing_ok=True)
        where = root / "__pycache__" / stem
        logging.getLogger(__name__).warning(
            "kernel cache %s was damaged (%s: %s); rebuilding it", where, type(exc).__name__, exc
        )
        return [f.name for f in files]
    return []


_NO_BLOCKS = np.ones((1, 1, 1), np.bool_)


def _build(src: str) -> Any:
    """The kernel of generated source ``src`` (:func:`_module`'s ``kernel``)."""
    return _module(src).kernel


def _module(src: str) -> Any:
    """The module of generated source ``src``: written to a file in the cache folder and imported,
    so that Numba caches its machine code across processes (one file per distinct source)."""
    import hashlib
    import importlib.util
    import os

    digest = hashlib.sha256(src.encode()).hexdigest()[:16]
    if digest in _KERNELS:
        return _KERNELS[digest]
    from golden._kernel_cache import cache_folder

    root = cache_folder("kernels")
    path = root / f"k_{digest}.py"
    if not path.exists() or path.read_text() != src:
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(src)
        tmp.replace(path)  # atomic: another process may be writing the same file
    _drop_broken_cache(root, f"k_{digest}")
    spec = importlib.util.spec_from_file_location(f"einforge_kernel_{digest}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # Numba's cache finds the module by name when it loads
    spec.loader.exec_module(module)
    _KERNELS[digest] = module
    return module


def _batch_shape(
    leads: Mapping[str, tuple[int, ...]], gqa: bool, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[int, ...]:
    """The batch the inputs' leading dimensions broadcast to (torch's rules; with ``gqa`` the last
    of them, the heads, may also be a divisor of the others'). ``shapes``: the inputs' whole
    shapes, for the error."""
    n = max((len(x) for x in leads.values()), default=0)
    padded = {k: (1,) * (n - len(x)) + tuple(x) for k, x in leads.items()}
    out = []
    for d in range(n):
        sizes = {x[d] for x in padded.values()} - {1}
        big = max(sizes, default=1)
        if len(sizes) > 1 and not (gqa and d == n - 1 and all(big % s == 0 for s in sizes)):
            got = ", ".join(f"{k} {tuple(x)}" for k, x in shapes.items())
            hint = (
                "; with enable_gqa the last of them (the heads) may divide the others'"
                if d == n - 1 and not gqa and all(big % s == 0 for s in sizes)
                else ""
            )
            raise EvaluationError(
                f"golden.compile: the inputs' leading (batch) dimensions do not broadcast: {got}{hint}"
            )
        out.append(big)
    return tuple(out)


def _unbroadcast(a: NDArray[Any], nranks: int) -> NDArray[Any]:
    """``a`` with its leading dimensions that are broadcast views (stride 0) cut to length 1: the
    kernels read such an input at one batch entry, rather than a copy per entry."""
    lead = a.ndim - nranks
    if lead <= 0 or all(a.strides[d] != 0 or a.shape[d] <= 1 for d in range(lead)):
        return a
    return a[tuple(slice(0, 1) if a.strides[d] == 0 and a.shape[d] > 1 else slice(None) for d in range(lead))]


def _group_map(own: tuple[int, ...], lead: tuple[int, ...]) -> NDArray[np.int64]:
    """For each batch entry (row-major over ``lead``), the entry of an input whose leading
    dimensions are ``own`` that it reads: 0 along a broadcast dimension, ``i // (n // m)`` along
    one of ``m`` heads shared by ``n`` (grouped-query attention)."""
    g = math.prod(lead)
    own = (1,) * (len(lead) - len(own)) + tuple(own)
    if own == tuple(lead):
        return np.arange(g, dtype=np.int64)
    coords = np.unravel_index(np.arange(g, dtype=np.int64), lead) if lead else ()
    idx = np.zeros(g, np.int64)
    stride = 1
    for d in reversed(range(len(lead))):
        if own[d] != 1:
            idx += (coords[d] // (lead[d] // own[d])) * stride
        stride *= own[d]
    return idx


@dataclass
class _Run:
    """One call's state, shared by its kernels: the tensors by name (each ``(G, ...)``), their
    shapes, the param and rank names, the params' and sizes' arrays, the dtype and the batch."""

    tensors: dict[str, Any]
    shapes: dict[str, tuple[int, ...]]
    pn: list[str]
    sn: list[str]
    prm: Any
    sz: Any
    szi: Any
    dtype: Any
    g: int
    szi_k: Any = None  # the sizes as the CUDA kernels read them (on the device)
    uniform: frozenset[str] = frozenset()  # inputs the same for every batch entry

    key: Any = None  # the call's signature, for what a step derives from it alone
    #: per tensor held at its own batch entries (inputs and their views): the entry each batch
    #: entry reads; any other tensor is held at every batch entry
    maps: Mapping[str, Any] = field(default_factory=dict)

    def fields(self) -> tuple[Any, ...]:
        """The fields but ``key``, in order, not copied (``dataclasses.astuple`` copies the
        tensors' dict)."""
        return (
            self.tensors,
            self.shapes,
            self.pn,
            self.sn,
            self.prm,
            self.sz,
            self.szi,
            self.dtype,
            self.g,
            self.szi_k,
            self.uniform,
        )


@dataclass
class CompiledCascade:
    """A cascade compiled by :func:`compile`: call it like :func:`golden.run`
    (``fn(inputs, sizes=None) -> {output: array}``). Inputs may carry leading batch dimensions
    (broadcast against each other, as torch does); the kernels run once per batch entry."""

    cascade: Cascade
    plan: Plan
    backend: str
    block_q: int | None
    block_k: int | None
    source: str = ""
    #: the CUDA cores: tiled (K and V tiles in shared memory), or the one-thread-per-row reference
    cuda_tiled: bool = True
    _kernels: dict[Any, tuple[str, Any, Any]] = field(default_factory=dict, repr=False)
    # per call signature (input shapes and dtypes, sizes): what follows from it alone
    _shapes: dict[Any, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    _masks: dict[str, Any] = field(default_factory=dict, repr=False)  # a core's block-mask kernel
    # per (call signature, step): a CPU core's launch settings (CompiledCascade._cpu_launch)
    _launches: dict[Any, tuple[Any, ...]] = field(default_factory=dict, repr=False)
    # per (call signature, step): the step's group map (CompiledCascade._gmap)
    _gmaps: dict[Any, Any] = field(default_factory=dict, repr=False)

    @property
    def template(self) -> str | None:
        return self.plan.template

    @property
    def reason(self) -> str:
        return self.plan.reason

    def describe(self) -> str:
        return self.plan.describe()

    def _names(self) -> tuple[list[str], list[str]]:
        """The params and rank sizes the kernels read, in the order of their ``prm`` and ``sz``."""
        return sorted(p.name for p in self.cascade.params), sorted(self.cascade.ranks)

    def kernel_source(self, f: int = 0, e: int = 0, dtype: str = "float32") -> str:
        """The Numba source of every kernel the backend generates ("" without a template); the
        CUDA core templates need V's width ``f`` (and the tiled ones Q's width ``e`` and the
        dtype)."""
        pn, sn = self._names()
        parts = []
        for st in self.plan.steps:
            if st.kind == "view":
                parts.append(f"# ---- {st.describe(self.cascade)}")
                continue
            if st.core:
                if self.backend != "cuda":
                    src = _source(st, pn, sn)
                elif self.cuda_tiled:
                    src = _cuda_source(st, pn, sn, f or 1, e or 1, dtype, tiled=True)
                else:
                    src = _cuda_source(st, pn, sn, f or 1)
            else:
                src = _loops_source(self.cascade, st, pn, sn, self.backend == "cuda")[0]
            parts.append(f"# ---- {st.describe(self.cascade)}\n{src}")
        return "\n\n".join(parts)

    def _signature(
        self,
        arrays: Mapping[str, NDArray[Any]],
        sizes: Mapping[str, int] | None,
        enable_gqa: bool = False,
        compact: Mapping[str, NDArray[Any]] | None = None,
    ) -> tuple[Any, ...]:
        """What a call's input shapes, dtypes and sizes determine (checked once per signature):
        the dtype, the ranks' sizes, the batch, the params' and sizes' arrays, every tensor's
        shape and layout, and which inputs are the same for every batch entry."""
        c = self.cascade
        missing = [i.name for i in c.inputs if i.name not in arrays]
        if missing:
            raise EvaluationError(f"golden.compile: missing input(s) {', '.join(missing)}")
        for i in c.inputs:
            if arrays[i.name].dtype.kind not in "biuf":  # as golden.run: no silent coercion
                raise EvaluationError(
                    f"golden.compile: input {i.name} must be a real numeric array, "
                    f"got dtype {arrays[i.name].dtype}"
                )
            if arrays[i.name].ndim < len(i.ranks):
                raise EvaluationError(
                    f"golden.compile: input {i.name} needs {len(i.ranks)} dimensions "
                    f"({', '.join(i.ranks)}), got shape {arrays[i.name].shape}"
                )
        floats = [arrays[i.name].dtype for i in c.inputs if arrays[i.name].dtype.kind == "f"]
        dtype = np.result_type(*floats) if floats else np.dtype(np.float64)
        if dtype not in (np.float32, np.float64):
            dtype = np.dtype(np.float64)
        tails = {i.name: arrays[i.name].shape[arrays[i.name].ndim - len(i.ranks) :] for i in c.inputs}
        leads = {i.name: arrays[i.name].shape[: arrays[i.name].ndim - len(i.ranks)] for i in c.inputs}
        lead = _batch_shape(leads, enable_gqa, {i.name: arrays[i.name].shape for i in c.inputs})
        bound = bind_sizes(c, tails, sizes)
        params = eval_params(c, bound)
        pnames, snames = self._names()
        g = int(np.prod(lead, dtype=np.int64))
        prm64 = np.array([params[n] for n in pnames], np.float64)
        sz64 = np.array([bound[n] for n in snames], np.float64)
        szi = np.array([bound[n] for n in snames], np.int64)
        shapes = {}
        lay = layouts(c)
        for e in c.einsums:
            shape = [bound[r] for r in e.ranks]
            if e.step is not None:
                shape[e.indices.index(e.step)] += 1
            shapes[e.output] = (g, *(shape[i] for i in lay.get(e.output, range(len(shape)))))
        # each input at its own batch entries (not copied across the batch): the entry each
        # batch entry reads; a view of an input reads as the input does
        compact = compact or arrays
        own = {i.name: compact[i.name].shape[: compact[i.name].ndim - len(i.ranks)] for i in c.inputs}
        uniform = frozenset(i.name for i in c.inputs if math.prod(own[i.name]) == 1)
        maps = {n: _group_map(o, lead) for n, o in own.items()}
        for st in self.plan.steps:
            if st.kind == "view":
                e = c.einsums[st.statements[0]]
                src = _view_of(c, e)
                if src in maps:
                    maps[e.output] = maps[src]
        # the cores read the params and sizes in the dtype; loop nests compute in float64
        prm_c, sz_c = prm64.astype(dtype), sz64.astype(dtype)
        return (
            dtype, tails, lead, g, prm64, sz64, szi, shapes, lay, pnames, snames, uniform, prm_c, sz_c, maps
        )  # fmt: skip

    def __call__(
        self,
        inputs: Mapping[str, ArrayLike],
        sizes: Mapping[str, int] | None = None,
        *,
        enable_gqa: bool = False,
    ) -> dict[str, NDArray[Any]]:
        """Run the kernels. Inputs broadcast over their leading (batch) dimensions as torch's do,
        and are not copied across the batch: each kernel reads an input at its own batch entry.
        ``enable_gqa`` (torch's grouped-query attention) lets the last batch dimension (the
        heads) of an input divide the others' instead of equal them: query head ``h`` of ``H``
        reads head ``h // (H // Hkv)`` of an input with ``Hkv`` heads."""
        from golden._interp import run

        c, pl = self.cascade, self.plan
        if pl.template is None:
            if enable_gqa:
                raise EvaluationError(
                    f"golden.compile: enable_gqa needs the compiled kernels, and {c.name or 'the cascade'} "
                    f"runs in the interpreter ({pl.reason}); repeat K and V over the query heads instead"
                )
            warnings.warn(
                f"golden.compile: {c.name or 'the cascade'} runs in the float64 interpreter: {pl.reason}",
                RuntimeWarning,
                stacklevel=2,
            )
            return run(c, inputs, sizes)
        ranks = {i.name: len(i.ranks) for i in c.inputs}
        arrays = {n: np.asarray(a) for n, a in inputs.items()}
        # broadcast views cut to one batch entry: the kernels read each at its own entries
        compact = {n: _unbroadcast(a, ranks.get(n, 0)) for n, a in arrays.items()}
        key = (
            tuple((n, a.shape, compact[n].shape, a.dtype.str) for n, a in arrays.items()),
            tuple(sorted((sizes or {}).items())),
            bool(enable_gqa),
        )
        known = self._shapes.get(key)
        if known is None:
            known = self._signature(arrays, sizes, bool(enable_gqa), compact)
            if len(self._shapes) >= 16:  # a few signatures per kernel (decode steps, batches)
                self._shapes.pop(next(iter(self._shapes)))
            self._shapes[key] = known
        dtype, tails, lead, g, prm64, sz64, szi, shapes, lay, pnames, snames, uniform, prm_c, sz_c, maps = (
            known
        )
        tensors: dict[str, Any] = {}
        for i in c.inputs:  # each at its own batch entries (the group maps say which one is read)
            tensors[i.name] = c_array(compact[i.name].reshape(-1, *tails[i.name]), dtype)
        cuda = self.backend == "cuda"
        if cuda:
            from numba import cuda as nbcuda

            if not nbcuda.is_available():  # type: ignore[no-untyped-call]
                raise EvaluationError(
                    "golden.compile: backend 'cuda' needs an NVIDIA GPU with a working CUDA driver (none "
                    "found); set NUMBA_ENABLE_CUDASIM=1 to run on numba's CUDA simulator instead"
                )
            tensors = {n: nbcuda.to_device(a) for n, a in tensors.items()}
            prm_c, sz_c, szi_k = (nbcuda.to_device(a) for a in (prm64, sz64, szi))
            prm_l, sz_l = prm_c, sz_c  # float64 for every CUDA kernel
        else:
            szi_k = None
            prm_l, sz_l = prm64, sz64  # loop nests compute in float64
        names = (tensors, shapes, pnames, snames)
        core_run = _Run(*names, prm_c, sz_c, szi, dtype, g, szi_k, uniform, key, maps)
        loop_run = _Run(*names, prm_l, sz_l, szi, dtype, g, szi_k, key=key, maps=maps)
        from golden._runtime import _CPU_LOCK, one_blas_thread

        sources = []
        with _CPU_LOCK, one_blas_thread():
            for st in pl.steps:
                if st.kind == "view":
                    e = c.einsums[st.statements[0]]
                    src = tensors[_view_of(c, e)]  # type: ignore[index]
                    tensors[e.output] = src.reshape((src.shape[0], *shapes[e.output][1:]))
                    continue
                src = self._core(st, core_run) if st.core else self._loops(st, loop_run)
                sources.append(src)
            if cuda:
                nbcuda.synchronize()  # type: ignore[no-untyped-call]
        self.source = "\n\n".join(sources)
        result = {}
        for name in c.outputs:
            x = tensors[name]
            x = x.copy_to_host() if cuda else x
            if name in maps and x.shape[0] != g:  # an output that is an input's view
                x = x[maps[name]]
            if name in lay:  # back to the logical order
                x = np.ascontiguousarray(
                    np.transpose(x, (0, *(1 + lay[name].index(i) for i in range(x.ndim - 1))))
                )
            result[name] = x.reshape(*lead, *tuple(x.shape)[1:])
        return result

    def _kernel(self, st: Step, source: Any, f: Any = 0) -> tuple[str, Any, Any]:
        """The step's generated source, compiled kernel and what ``source()`` gives besides the
        source (a loop step's split index), generated once per instance."""
        key = (st.statements, f)
        if key not in self._kernels:
            src, extra = source()
            with _LOCK:
                self._kernels[key] = (src, _build(src), extra)
        return self._kernels[key]

    def _alloc(
        self, name: str, tensors: dict[str, Any], shapes: dict[str, tuple[int, ...]], dtype: Any
    ) -> None:
        if name in tensors:
            return
        # a recurrence's tensor starts NaN, as golden.run's (a position no step writes reads NaN);
        # every other statement writes its whole tensor
        iterative = name in self.cascade.iterative
        if self.backend == "cuda":
            from numba import cuda as nbcuda

            if iterative:
                tensors[name] = nbcuda.to_device(np.full(shapes[name], np.nan, dtype))
            else:
                tensors[name] = nbcuda.device_array(shapes[name], dtype)
        else:
            tensors[name] = (
                np.full(shapes[name], np.nan, dtype) if iterative else np.empty(shapes[name], dtype)
            )

    def _cpu_launch(self, st: Step, run: _Run, m: int) -> tuple[Any, ...]:
        """What a CPU core's launch takes from the call's signature alone (worked out once per
        signature): its source and kernel, its block-mask kernel, the tiles, the batch the block
        mask spans and the placeholder for a core without extra tensors. ``m``: the keys."""
        _, _, pn, sn, _, _, szi, dtype, g, _, uniform = run.fields()
        bq, bk = TILES[st.kind]
        # a blocked query or key (SeerAttention's): a tile per block, so that a block the
        # selection dropped is skipped whole
        if len(st.qranks) > 1:
            bq = int(szi[sn.index(st.qranks[-1].upper())])
        if len(st.kranks) > 1:
            bk = int(szi[sn.index(st.kranks[-1].upper())])
        if masked_tiles(st) and len(st.kranks) == 1:
            bk = min(bk, MASKED_KEYS)
        bq, bk = self.block_q or bq, self.block_k or bk
        wide = min(bk, m) >= WIDE_KEYS
        src, kernel, _ = self._kernel(st, lambda: (_source(st, pn, sn, wide), None), wide)
        if src not in self._masks:
            self._masks[src] = getattr(_module(src), "block_mask", None)
        mask = self._masks[src]
        gm = 1 if all(x in uniform for x in st.extras) else g
        return src, kernel, mask, bq, bk, gm, np.zeros((1, 1), dtype)

    def _gmap(self, st: Step, run: _Run, names: list[str]) -> Any:
        """The step's group map, a row per tensor of ``names`` (its kernel's): the batch entry
        each batch entry reads it at (made once per call signature; on the device for CUDA)."""
        gkey = (run.key, st.statements)
        gm = self._gmaps.get(gkey)
        if gm is None:
            ident = np.arange(run.g, dtype=np.int64)
            gm = np.stack([run.maps.get(t, ident) for t in names]) if names else ident[None]
            gm = np.ascontiguousarray(gm)
            if self.backend == "cuda":
                from numba import cuda as nbcuda

                gm = nbcuda.to_device(gm)
            if len(self._gmaps) >= 64:
                self._gmaps.pop(next(iter(self._gmaps)))
            self._gmaps[gkey] = gm
        return gm

    def _loops(self, st: Step, run: _Run) -> str:
        tensors, shapes, pn, sn, prm, sz, szi, dtype, g, szi_k, uniform = run.fields()
        c = self.cascade
        names = loop_tensors(c, st)
        gmap = self._gmap(st, run, names)
        for i in st.statements:
            self._alloc(c.einsums[i].output, tensors, shapes, dtype)
        src, kernel, par = self._kernel(st, lambda: _loops_source(c, st, pn, sn, self.backend == "cuda"))
        n = int(szi[sn.index(par.upper())]) if par else 1
        args = [tensors[t] for t in names]
        if self.backend == "cuda":
            threads = 128
            kernel[max(1, -(-(g * n) // threads)), threads](*args, prm, sz, szi_k, gmap)
        else:
            kernel(*args, prm, sz, szi, gmap)
        return str(src)

    def _core(self, st: Step, run: _Run) -> str:
        tensors, shapes, pn, sn, prm, sz, szi, dtype, g, szi_k, uniform = run.fields()
        q, k, v = tensors[st.q], tensors[st.k], tensors[st.v]
        qs, ks, vs = (
            tuple(q.shape),
            tuple(k.shape),
            tuple(v.shape),
        )  # (the CUDA simulator's shapes are not tuples)
        p, m = math.prod(qs[1:-1]), math.prod(ks[1:-1])
        f = vs[-1]
        # each at its own batch entries (an input shared across the batch, K/V heads under GQA)
        q3, k3, v3 = q.reshape(qs[0], p, qs[-1]), k.reshape(ks[0], m, ks[-1]), v.reshape(vs[0], m, f)
        extras = [tensors[x] for x in st.extras]
        gmap = self._gmap(st, run, [st.q, st.k, st.v, *st.extras])
        cuda = self.backend == "cuda"
        if cuda:
            from numba import cuda as nbcuda

            out = nbcuda.device_array((g, p, f), dtype)
            if not extras:
                extras = [nbcuda.to_device(np.zeros((1, 1), dtype))]
            if self.cuda_tiled:
                e, dt = qs[-1], "float32" if dtype == np.float32 else "float64"
                src, kernel, _ = self._kernel(
                    st, lambda: (_cuda_source(st, pn, sn, f, e, dt, tiled=True), None), (f, e, dt)
                )
                threads = CUDA_TILE_ROWS
            else:
                src, kernel, _ = self._kernel(st, lambda: (_cuda_source(st, pn, sn, f), None), f)
                threads = 64
            kernel[(-(-p // threads), g), threads](q3, k3, v3, out, prm, sz, szi_k, *extras, gmap)
        else:
            out = np.empty((g, p, f), dtype)
            lkey = (run.key, st.statements, self.block_q, self.block_k)
            launch = self._launches.get(lkey)
            if launch is None:
                launch = self._cpu_launch(st, run, m)
                if len(self._launches) >= 64:
                    self._launches.pop(next(iter(self._launches)))
                self._launches[lkey] = launch
            src, kernel, mask, bq, bk, gm, blank = launch
            if not extras:
                extras = [blank]
            if mask is not None:  # the blocks where the score's condition holds, once per call
                blk = np.empty((gm, -(-p // bq), -(-m // bk)), np.bool_)
                mask(q3, prm, sz, szi, *extras, bq, bk, gm, p, m, blk, gmap)
            else:
                blk = _NO_BLOCKS
            kernel(q3, k3, v3, out, prm, sz, szi, *extras, bq, bk, blk, gmap)
        tensors[st.output] = out.reshape(shapes[st.output])
        return src


def compile(
    cascade: Cascade, backend: str = "cpu", *, block_q: int | None = None, block_k: int | None = None
) -> CompiledCascade:
    """Compile ``cascade`` into a fused, tiled kernel (see the module's text for the templates).

    Args:
        cascade: any valid cascade; one that fits no template runs in the interpreter (with a
            warning naming the reason) when called.
        backend: ``"cpu"`` (parallel Numba) or ``"cuda"`` (numba.cuda, one thread per query
            row: correct, not yet fast; numba's simulator with ``NUMBA_ENABLE_CUDASIM=1``).
        block_q, block_k: the attention cores' query-tile rows and key-tile columns; None (the
            default) takes each template's, :data:`TILES` (the best of five pairs measured at
            B 1, H 8, 2048 x 2048, d 64, float32 on 2 cores: softmax 256 x 512, as the
            hand-written kernels; weighted 128 x 256).

    Raises:
        EvaluationError: an unknown backend or a tile size that is not a positive integer.
    """
    if not isinstance(cascade, Cascade):
        raise EvaluationError(f"golden.compile: expected an einsum.Cascade, got {type(cascade).__name__}")
    if backend not in BACKENDS:
        raise EvaluationError(
            f"golden.compile: unknown backend {backend!r} (backends: {', '.join(BACKENDS)})"
        )
    for name, b in (("block_q", block_q), ("block_k", block_k)):
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise EvaluationError(f"golden.compile: {name} must be a positive integer, got {b!r}")
    return CompiledCascade(cascade, plan(cascade), backend, block_q, block_k)
