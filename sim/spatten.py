"""SpAtten's pipeline: pruned attention, request by request, on an architecture with top-k engines.

SpAtten (Wang, Zhang, Han, HPCA 2021, arXiv 2012.09852, §4) runs one (query, head) at a time
through a fully pipelined datapath: fetch the kept keys (token pruning decides which) -> Q x K ->
softmax -> progressive-quantization check (a miss refetches K's LSBs and recomputes once) -> the
local-value top-k -> fetch the kept values -> prob x V. Cumulative token and head scores are
accumulated beside it, and the token / head top-k between layers runs on its own engine in
parallel with the critical path.

This module models that pipeline on any :class:`mapper.ArchSpec` with top-k engines (the
``spatten`` and ``spatten_eighth`` presets). The unit of work is a :class:`Request`: the queries of
one (iteration, layer, head) against the keys and values it keeps. A request's stages:

- **dram**: the bits it fetches (kept keys at their MSB width, plus the LSBs on a refetch, kept
  values, the query) over the DRAM bandwidth;
- **qk**: ``ceil(keys / (multipliers / D))`` cycles a query (the adder tree yields
  ``multipliers / D`` scores a cycle), twice on a refetch;
- **softmax**: ``ceil(keys / softmax PEs)`` a query, twice on a refetch;
- **topk_value**: the local-value engine selecting ``values`` of ``keys`` (:mod:`mapper.topk`:
  quick-select rounds plus the filter pass), when it prunes;
- **pv**: ``ceil(values * D / multipliers)`` a query.

The stages overlap across requests, so a request costs its slowest stage and the run costs the
sum of those plus one request's fill (the other stages of the first request and the datapath's
fixed latency, :data:`PIPELINE_DEPTH`). The token engine's work (``Request.token_topk``) runs in
parallel; the run takes at least its busy cycles. Top-k cycles come from the engine's model in
its expected-value form (``topk="expected"``) or as the mean over seeded random draws
(``topk="draws"``).

The workload comes from SpAtten's released GPT-2 traces (:func:`trace`) or from a library cascade
and a pruning schedule (:func:`requests_from_cascade`).
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import einsum
from mapper import topk as topk_model
from mapper.arch import ArchSpec, TopKEngine
from mapper.sram import SRAMError
from sim.errors import EvaluationError

__all__ = [
    "PIPELINE_DEPTH",
    "TRACES",
    "Request",
    "SpAttenReport",
    "compare",
    "dense",
    "describe",
    "keep_schedule",
    "requests_from_cascade",
    "savings",
    "simulate",
    "trace",
]

#: Cycles a value takes through the datapath's fixed stages when the pipeline is empty, from
#: SpAtten's BERT simulator (``spatten_hardware/simulator/src/bert.cpp``): Q x K 1 + 1 + 9 (SRAM,
#: multiplier, adder tree), softmax 7 + 21 + 23 + 29 + 7 (dequantize, exp, accumulate, divide,
#: quantize), prob x V 1 + 1 + 1.
PIPELINE_DEPTH = 11 + 87 + 3

_TRACE_DIR = Path(__file__).parent / "spatten_traces"

#: The shipped traces of mit-han-lab/spatten (MIT licence), by short name.
TRACES = {
    "gpt2-small-wikitext2": "summary-gpt2-small-wikitext2-per8.csv.gz",
    "gpt2-medium-wikitext2-hp": (
        "summary-gpt2-medium-wikitext2-per0-hp-step5+dedic+glob_p+local_p+hp+topk+quant.csv.gz"
    ),
    "gpt2-small-wikitext2-dense": "summary-gpt2-small-wikitext2-per8-step1+dedic.csv.gz",
}


@dataclass(frozen=True)
class Request:
    """The queries of one (iteration, layer, head) against the keys and values they keep.

    ``key_bits`` / ``value_bits`` are the widths fetched first (the MSBs under progressive
    quantization); on a ``requant`` the keys' ``lsb_bits`` more are fetched and Q x K and the
    softmax run again. ``token_topk`` > 0: after this request a token top-k keeps that many of the
    ``keys`` alive (cascade token pruning between layers)."""

    iteration: int
    layer: int
    head: int
    head_dim: int
    context: int
    keys: int
    values: int
    queries: int = 1
    key_bits: int = 12
    value_bits: int = 12
    query_bits: int = 12
    lsb_bits: int = 0
    requant: bool = False
    token_topk: int = 0

    def __post_init__(self) -> None:
        where = f"request (iteration {self.iteration}, layer {self.layer}, head {self.head})"
        for name in ("head_dim", "context", "queries", "key_bits", "value_bits", "query_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise EvaluationError(f"{where}: {name} must be a positive integer, found {v!r}")
        if not 0 <= self.values <= self.keys <= self.context:
            raise EvaluationError(
                f"{where}: need 0 <= values <= keys <= context, found values={self.values}, "
                f"keys={self.keys}, context={self.context}"
            )
        if self.lsb_bits < 0 or self.token_topk < 0 or self.token_topk > self.context:
            raise EvaluationError(
                f"{where}: lsb_bits and token_topk must be >= 0 (token_topk <= context), found "
                f"lsb_bits={self.lsb_bits}, token_topk={self.token_topk}"
            )


# -- traces ------------------------------------------------------------------------------------

_COLUMNS = (
    "iteration_id",
    "layer_id",
    "head_id",
    "embedding_length_D",
    "sentence_length_L",
    "key_fetch_num",
    "quant_key_bit",
    "quant_query_bit",
    "if_requant",
    "auto_requant_incre",
    "value_fetch_num",
    "quant_value_bit",
    "if_topk",
    "topk",
)


def trace(source: str | Path, *, word_bits: int = 12) -> tuple[Request, ...]:
    """The requests of a SpAtten GPT-2 trace: a shipped one by name (:data:`TRACES`) or a CSV
    file (optionally ``.gz``) with the columns of ``spatten_hardware/hardware/workloads/*.csv``.

    A width of -1 (not quantised) reads as ``word_bits``, the on-chip width; the LSBs refetched on
    a requant are ``auto_requant_incre`` bits. Rows that are not requests (the released files end
    with a line naming their configuration) are skipped.

    Raises:
        EvaluationError: no such trace or file, a missing column, or a value that is not a number
            (naming the file and line).
    """
    text, where = _read_trace(source)
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in _COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise EvaluationError(
            f"{where}: not a SpAtten trace: missing column(s) {', '.join(missing)} "
            f"(found {', '.join(reader.fieldnames or ()) or 'no header'})"
        )
    out: list[Request] = []
    for line, row in enumerate(reader, start=2):
        if not (row.get("layer_id") or "").strip():
            continue  # the configuration line at the end of the released files
        try:
            kbits, vbits, qbits = (
                int(row[c]) for c in ("quant_key_bit", "quant_value_bit", "quant_query_bit")
            )
            requant = _boolean(row["if_requant"])
            out.append(
                Request(
                    iteration=int(row["iteration_id"]),
                    layer=int(row["layer_id"]),
                    head=int(row["head_id"]),
                    head_dim=int(float(row["embedding_length_D"])),
                    context=int(row["sentence_length_L"]),
                    keys=int(row["key_fetch_num"]),
                    values=int(row["value_fetch_num"]),
                    key_bits=kbits if kbits > 0 else word_bits,
                    value_bits=vbits if vbits > 0 else word_bits,
                    query_bits=qbits if qbits > 0 else word_bits,
                    lsb_bits=max(int(row["auto_requant_incre"]), 0) if kbits > 0 else 0,
                    requant=requant and kbits > 0,
                    token_topk=int(row["topk"]) if _boolean(row["if_topk"]) else 0,
                )
            )
        except (ValueError, TypeError) as exc:
            raise EvaluationError(f"{where}, line {line}: {exc}") from None
    if not out:
        raise EvaluationError(f"{where}: the trace has no requests")
    return tuple(out)


def _boolean(text: str) -> bool:
    t = text.strip().lower()
    if t not in ("true", "false"):
        raise ValueError(f"expected True or False, found {text!r}")
    return t == "true"


def _read_trace(source: str | Path) -> tuple[str, str]:
    name = str(source)
    if name in TRACES:
        return _shipped(name), f"trace {name!r}"
    path = Path(source)
    if not path.is_file():
        raise EvaluationError(
            f"no SpAtten trace {name!r}: neither a shipped trace ({', '.join(TRACES)}) nor a file"
        )
    try:
        raw = path.read_bytes()
        return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode(), str(path)
    except (OSError, UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise EvaluationError(f"cannot read SpAtten trace {str(path)!r}: {exc}") from None


@cache
def _shipped(name: str) -> str:
    return gzip.decompress((_TRACE_DIR / TRACES[name]).read_bytes()).decode()


# -- workloads from a cascade -----------------------------------------------------------------


def keep_schedule(layers: int, total: int, keep: float, *, unpruned: float) -> tuple[int, ...]:
    """How many of ``total`` stay after each of ``layers`` layers under SpAtten's schedule (§5.1):
    the first ``unpruned`` fraction of the layers prune nothing; over the others the kept ratio
    falls linearly from ``r_start`` to ``r_end`` with ``r_start + r_end = 2 keep``. SpAtten does
    not fix ``r_start``; einforge takes ``r_start = min(1, 1.5 keep)`` (so ``r_end = keep / 2``
    below 2/3). Counts never fall below 1. Entry ``l`` is the count kept for the layers after
    ``l``; ``keep`` is the mean ratio over the pruned layers."""
    if not 0 < keep <= 1:
        raise EvaluationError(f"keep ratio must be in (0, 1], found {keep!r}")
    if not 0 <= unpruned <= 1:
        raise EvaluationError(f"the unpruned fraction of layers must be in [0, 1], found {unpruned!r}")
    first = min(layers, math.ceil(unpruned * layers))
    pruned = layers - first
    start = min(1.0, 1.5 * keep)
    end = 2 * keep - start
    out = []
    for layer in range(layers):
        i = layer + 1 - first  # the pruned layer (0-based) this count applies to
        if i < 0 or pruned == 0:
            out.append(total)
            continue
        r = start + (end - start) * (min(i, pruned - 1) / max(pruned - 1, 1))
        out.append(max(1, min(total, round(r * total))))
    return tuple(out)


def requests_from_cascade(
    cascade: einsum.Cascade,
    sizes: Mapping[str, int],
    *,
    token_keep: float = 0.3,
    head_keep: float = 0.9,
    requant: float = 0.059,
    word_bits: int = 12,
) -> tuple[Request, ...]:
    """The requests a SpAtten cascade makes at these sizes, from the 0/1 masks it declares
    (:func:`einsum.mask_tensors`), read by the ranks each covers:

    - a mask over ``M`` and the layer rank ``L`` (``KEEP[m, l]``): cascade token pruning, keeping
      ``token_keep`` of the tokens on average under :func:`keep_schedule` (first 15 % of the
      layers unpruned);
    - over ``H`` and ``L`` (``HKEEP[h, l]``): cascade head pruning, ``head_keep`` of the heads
      (first 30 % unpruned); a pruned head makes no request;
    - over ``P`` and ``M`` (``VK[p, m] = topk[m; kv] ...``): local value pruning, ``kv`` values a
      query (the cascade's own ``k``, evaluated at these sizes);
    - over ``P`` alone (``LSB[p]``): progressive quantization, a ``requant`` fraction of the
      requests refetching LSBs; the MSB and LSB widths come from the cascade's quantizer operators.

    Sizes: ``L`` layers (1 without an ``L`` rank), ``H`` heads, ``P`` queries, ``M`` keys, ``E`` the
    head dimension.
    """
    need = [r for r in ("P", "M", "E") if r not in sizes]
    if need:
        raise EvaluationError(
            f"{cascade.name or 'cascade'}: SpAtten's pipeline needs sizes for {', '.join(need)} "
            f"(queries P, keys M, head dimension E); found {dict(sizes)}"
        )
    masks = einsum.mask_tensors(cascade)
    ranks = {name: set(cascade.tensors[name]) for name in masks}
    layers, heads = int(sizes.get("L", 1)), int(sizes.get("H", 1))
    p, m, d = int(sizes["P"]), int(sizes["M"]), int(sizes["E"])
    token = any(r >= {"M", "L"} for r in ranks.values())
    head = any(r >= {"H", "L"} for r in ranks.values())
    value_masks = [n for n, r in ranks.items() if r >= {"P", "M"}]
    pq = any(r == {"P"} for r in ranks.values())
    tokens = keep_schedule(layers, m, token_keep, unpruned=0.15) if token else (m,) * layers
    kept_heads = keep_schedule(layers, heads, head_keep, unpruned=0.3) if head else (heads,) * layers
    kv_of = _value_keep(cascade, value_masks, sizes) if value_masks else None
    msb, lsb = _pq_bits(cascade) if pq else (word_bits, 0)
    out: list[Request] = []
    alive_tokens, alive_heads = m, heads
    n_requant = 0
    for layer in range(layers):
        for h in range(alive_heads):
            values = min(alive_tokens, kv_of(alive_tokens)) if kv_of else alive_tokens
            # spread the refetches evenly: request i refetches when the running count falls short
            count = len(out) + 1
            refetch = pq and n_requant < round(requant * count)
            n_requant += refetch
            last_head = h == alive_heads - 1
            out.append(
                Request(
                    iteration=0,
                    layer=layer,
                    head=h,
                    head_dim=d,
                    context=m,
                    keys=alive_tokens,
                    values=values,
                    queries=p,
                    key_bits=msb,
                    value_bits=word_bits,
                    lsb_bits=lsb,
                    requant=refetch,
                    token_topk=tokens[layer] if token and last_head and tokens[layer] < alive_tokens else 0,
                )
            )
        alive_tokens, alive_heads = min(alive_tokens, tokens[layer]), min(alive_heads, kept_heads[layer])
    return tuple(out)


def _value_keep(
    cascade: einsum.Cascade, masks: Sequence[str], sizes: Mapping[str, int]
) -> Callable[[int], int] | None:
    """``n -> kv``: the values a query keeps of ``n`` alive keys. The mask's topk ``k`` is written
    for all ``M`` keys; with fewer alive it scales with them."""
    from einsum._sizes import eval_scalar

    params = einsum.eval_params(cascade, sizes)
    for e in cascade.einsums:
        if e.output in masks and isinstance(e.expr, einsum.TopK):
            m = int(sizes["M"])
            full = int(eval_scalar(e.expr.k, sizes, params, where=f"{e.output}'s k"))
            return lambda n: max(1, min(n, math.ceil(full * n / m)))
    return None


def _pq_bits(cascade: einsum.Cascade) -> tuple[int, int]:
    """MSB and LSB widths of progressive quantization from the cascade's quantizer operators
    (:func:`einsum.quantizer`): the one that drops LSBs says both. Without one, the library's
    8 + 4 bits of a 12-bit format."""
    for op in cascade.operators:
        spec = getattr(op.golden, "quantizer", None)
        if spec is not None and spec[1] > 0:
            fmt, drop = spec
            return fmt.width - drop, drop
    fmt, lsb = einsum.library.PQ_FORMAT, einsum.library.PQ_LSB_BITS
    return fmt.width - lsb, lsb


# -- the pipeline model ------------------------------------------------------------------------


STAGES = ("dram", "qk", "softmax", "topk_value", "pv")


@dataclass(frozen=True)
class SpAttenReport:
    """What :func:`simulate` measured. Cycles are at ``arch.clock_hz``; bits and bytes are DRAM
    traffic; ``bound`` counts the requests each stage limited."""

    arch: str
    requests: int
    cycles: int
    seconds: float
    stage_cycles: Mapping[str, int]
    bound: Mapping[str, int]
    token_topk_cycles: int
    dram_bits: Mapping[str, int]
    sram_words: Mapping[str, int]
    macs: int
    energy_pj: Mapping[str, float]
    keys: int
    values: int
    context: int

    @property
    def dram_bytes(self) -> float:
        return sum(self.dram_bits.values()) / 8

    @property
    def energy_j(self) -> float:
        return sum(self.energy_pj.values()) * 1e-12

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.update(dram_bytes=self.dram_bytes, energy_j=self.energy_j)
        return d


def simulate(
    requests: Iterable[Request],
    arch: ArchSpec,
    *,
    topk: str = "expected",
    draws: int = 64,
    seed: int = 0,
) -> SpAttenReport:
    """Run ``requests`` through SpAtten's pipeline on ``arch`` (see the module's text).

    Raises:
        EvaluationError: the architecture lacks what the pipeline needs (arrays ``qk``, ``pv``,
            ``softmax``; a value top-k engine where a request prunes values), an unknown
            ``topk`` mode, no requests, or a report that fails its own checks.
    """
    reqs = tuple(requests)
    if not reqs:
        raise EvaluationError("simulate: no requests")
    if topk not in ("expected", "draws"):
        raise EvaluationError(f"simulate: topk must be 'expected' or 'draws', found {topk!r}")
    missing = [a for a in ("qk", "pv", "softmax") if a not in {x.name for x in arch.arrays}]
    if missing:
        raise EvaluationError(
            f"architecture {arch.name!r} has no array(s) {', '.join(missing)}: SpAtten's pipeline needs "
            "'qk' and 'pv' multiplier trees and a 'softmax' unit (the spatten presets have them)"
        )
    value_engine, token_engine = arch.topk_engine("value"), arch.topk_engine("token")
    if value_engine is None and any(r.values < r.keys for r in reqs):
        raise EvaluationError(
            f"architecture {arch.name!r} has no top-k engine for local value pruning (role 'value'), "
            "and the workload prunes values"
        )
    if token_engine is None and any(r.token_topk for r in reqs):
        raise EvaluationError(
            f"architecture {arch.name!r} has no top-k engine, and the workload prunes tokens"
        )
    qk_mults, pv_mults = arch.array("qk").pes, arch.array("pv").pes
    softmax_pes = arch.array("softmax").pes
    bits_per_cycle = arch.dram.bandwidth_bytes_per_s * 8 / arch.clock_hz
    cost = _TopKCost(topk, draws, seed)

    total = 0
    stage_sum = dict.fromkeys(STAGES, 0)
    bound = dict.fromkeys(STAGES, 0)
    bits = {"keys": 0, "key_lsbs": 0, "values": 0, "queries": 0}
    macs = exps = compares = 0
    sram_reads = sram_writes = 0
    token_busy = 0
    first_fill = 0
    for i, r in enumerate(reqs):
        d, q = r.head_dim, r.queries
        scores_per_cycle = max(1, qk_mults // d)
        passes = 2 if r.requant else 1
        # kept values: a single query fetches its own; many queries share K and V held on chip
        v_rows = r.values if q == 1 else min(r.keys, r.values * q)
        b_keys = r.keys * d * r.key_bits
        b_lsb = r.keys * d * r.lsb_bits if r.requant else 0
        b_values = v_rows * d * r.value_bits
        b_query = q * d * r.query_bits
        for k, v in zip(bits, (b_keys, b_lsb, b_values, b_query), strict=True):
            bits[k] += v
        st = {
            "dram": math.ceil((b_keys + b_lsb + b_values + b_query) / bits_per_cycle),
            "qk": q * passes * math.ceil(r.keys / scores_per_cycle),
            "softmax": q * passes * math.ceil(r.keys / softmax_pes),
            "topk_value": 0,
            "pv": q * math.ceil(r.values * d / pv_mults),
        }
        if r.values < r.keys and r.values > 0:
            assert value_engine is not None
            sel, filt, visited = cost(r.keys, r.values, value_engine)
            st["topk_value"] = q * math.ceil(sel + filt)
            compares += q * round(visited)
        if r.token_topk and r.token_topk < r.keys:
            assert token_engine is not None
            sel, filt, visited = cost(r.keys, r.token_topk, token_engine)
            token_busy += math.ceil(sel + filt)
            compares += round(visited)
        slowest = max(STAGES, key=lambda s: st[s])
        total += st[slowest]
        bound[slowest] += 1
        for s in STAGES:
            stage_sum[s] += st[s]
        if i == 0:
            first_fill = sum(st.values()) - st[slowest]
        macs += q * passes * r.keys * d + q * r.values * d
        exps += q * passes * r.keys
        # the fetched keys and values go into the key and value SRAMs once and are read once by
        # each query (the keys again on a refetch); pruned ones are neither written nor read
        sram_writes += (r.keys + v_rows) * d
        sram_reads += q * (passes * r.keys + r.values) * d
    cycles = max(total + first_fill + PIPELINE_DEPTH, token_busy)
    e = arch.energy
    try:
        buf = arch.buffer.costs(arch.word_bits)
        sram_pj = sram_reads * buf.read_pj_per_word + sram_writes * buf.write_pj_per_word
    except SRAMError as exc:
        raise EvaluationError(f"architecture {arch.name!r}: its SRAM cannot be priced: {exc}") from None
    energy = {
        "dram": sum(bits.values()) * arch.dram.pj_per_bit,
        "sram": sram_pj,
        "mac": macs * e.mac_pj,
        "softmax": exps * (e.exp_pj + e.div_pj + e.add_pj + e.max_pj),
        "topk": compares * e.max_pj,
    }
    report = SpAttenReport(
        arch=arch.name,
        requests=len(reqs),
        cycles=cycles,
        seconds=cycles / arch.clock_hz,
        stage_cycles=stage_sum,
        bound=bound,
        token_topk_cycles=token_busy,
        dram_bits=bits,
        sram_words={"reads": sram_reads, "writes": sram_writes},
        macs=macs,
        energy_pj=energy,
        keys=sum(r.keys for r in reqs),
        values=sum(r.values for r in reqs),
        context=sum(r.context for r in reqs),
    )
    _check(report, reqs, arch)
    return report


class _TopKCost:
    """Select cycles, filter rows and elements streamed of one top-k, memoised by (n, k, engine)."""

    def __init__(self, mode: str, draws: int, seed: int) -> None:
        self.mode, self.draws, self.seed = mode, draws, seed
        self.memo: dict[tuple[int, int, TopKEngine], tuple[float, float, float]] = {}

    def __call__(self, n: int, k: int, eng: TopKEngine) -> tuple[float, float, float]:
        key = (n, k, eng)
        if key not in self.memo:
            p, o = eng.parallelism, eng.round_overhead
            if self.mode == "expected":
                sel = topk_model.expected_select_cycles(n, k, p, round_overhead=o)
                filt = topk_model.expected_filter_rows(n, k, p)
            else:
                sel, filt = topk_model.mean_cycles(
                    n, k, p, round_overhead=o, draws=self.draws, seed=self.seed
                )
            # the first round streams the scores as they arrive, no faster than the input rate
            sel = max(sel, n / eng.input_rate)
            self.memo[key] = (sel, filt, topk_model.expected_visited(n, k))
        return self.memo[key]


def _check(r: SpAttenReport, reqs: Sequence[Request], arch: ArchSpec) -> None:
    """The report's own invariants: the run is at least every stage's total and at most their
    sum, and the traffic at least the kept keys' and values' MSBs."""
    problems = []
    busiest = max(r.stage_cycles.values())
    if r.cycles < busiest:
        problems.append(f"cycles {r.cycles} < the busiest stage's {busiest}")
    if r.cycles > sum(r.stage_cycles.values()) + PIPELINE_DEPTH + r.token_topk_cycles:
        problems.append(f"cycles {r.cycles} > every stage's cycles added up")
    floor = sum(x.keys * x.head_dim * x.key_bits for x in reqs)
    if r.dram_bits["keys"] < floor:
        problems.append(f"key traffic {r.dram_bits['keys']} bits < the kept keys' {floor}")
    if sum(r.bound.values()) != len(reqs):
        problems.append("every request must have one bounding stage")
    if problems:
        raise EvaluationError(f"SpAtten report on {arch.name!r} fails its checks: " + "; ".join(problems))


def dense(
    requests: Iterable[Request], *, quantization: bool = True, word_bits: int = 12
) -> tuple[Request, ...]:
    """The same requests without pruning: every request fetches all ``context`` keys and values,
    no token top-k runs, and a head that head pruning dropped from a layer (a head id of the
    model, the largest seen in any layer of the iteration, missing from this layer) runs again.
    With ``quantization=False`` also without progressive quantization: keys and values at
    ``word_bits``, no LSB refetch."""
    reqs = tuple(requests)
    heads: dict[int, int] = {}
    for r in reqs:
        heads[r.iteration] = max(heads.get(r.iteration, 0), r.head + 1)
    layers: dict[tuple[int, int], list[Request]] = {}
    for r in reqs:
        layers.setdefault((r.iteration, r.layer), []).append(r)
    out = []
    for (it, _), group in layers.items():
        present = {r.head for r in group}
        group = group + [dataclasses.replace(group[0], head=h) for h in range(heads[it]) if h not in present]
        for r in group:
            r2 = dataclasses.replace(r, keys=r.context, values=r.context, token_topk=0)
            if not quantization:
                r2 = dataclasses.replace(
                    r2, key_bits=word_bits, value_bits=word_bits, lsb_bits=0, requant=False
                )
            out.append(r2)
    return tuple(out)


def compare(requests: Sequence[Request], arch: ArchSpec, **options: Any) -> dict[str, SpAttenReport]:
    """The requests as given (``pruned``), without pruning at the same widths (``dense``), and
    without pruning or progressive quantization (``dense_12bit``, at ``arch.word_bits``)."""
    return {
        "pruned": simulate(requests, arch, **options),
        "dense": simulate(dense(requests), arch, **options),
        "dense_12bit": simulate(
            dense(requests, quantization=False, word_bits=arch.word_bits), arch, **options
        ),
    }


def savings(runs: Mapping[str, SpAttenReport]) -> dict[str, float]:
    """What pruning and progressive quantization saved, as ratios (dense / pruned): DRAM key,
    value and total traffic, cycles, MACs, energy. Key and value traffic are compared at the same
    widths, so they are exactly the trace's sum of contexts over kept keys and kept values."""
    p, d, d12 = runs["pruned"], runs["dense"], runs["dense_12bit"]
    return {
        "dram_keys": d.dram_bits["keys"] / p.dram_bits["keys"],
        "dram_values": d.dram_bits["values"] / max(p.dram_bits["values"], 1),
        "dram_pruning": d.dram_bytes / p.dram_bytes,
        "dram_quantization": d12.dram_bytes / d.dram_bytes,
        "dram_total": d12.dram_bytes / p.dram_bytes,
        "speedup_pruning": d.cycles / p.cycles,
        "speedup_total": d12.cycles / p.cycles,
        "macs": d.macs / p.macs,
        "sram": (d.sram_words["reads"] + d.sram_words["writes"])
        / (p.sram_words["reads"] + p.sram_words["writes"]),
        "energy": d12.energy_j / p.energy_j,
    }


def describe(runs: Mapping[str, SpAttenReport]) -> str:
    """A table of :func:`compare`'s runs and their :func:`savings`."""
    lines = [f"{'run':12s} {'cycles':>12s} {'ms':>9s} {'DRAM MB':>9s} {'GMACs':>8s} {'mJ':>8s}  bound by"]
    for name, r in runs.items():
        bound = ", ".join(f"{s} {n}" for s, n in r.bound.items() if n)
        lines.append(
            f"{name:12s} {r.cycles:12,d} {r.seconds * 1e3:9.3f} {r.dram_bytes / 1e6:9.2f} "
            f"{r.macs / 1e9:8.3f} {r.energy_j * 1e3:8.3f}  {bound}"
        )
    s = savings(runs)
    lines.append(
        f"saved: DRAM keys {s['dram_keys']:.2f}x, values {s['dram_values']:.2f}x, "
        f"pruning {s['dram_pruning']:.2f}x, "
        f"quantization {s['dram_quantization']:.2f}x, in all {s['dram_total']:.2f}x; "
        f"speedup {s['speedup_pruning']:.2f}x from pruning, {s['speedup_total']:.2f}x with quantization"
    )
    return "\n".join(lines)
