"""The five configurations of the FuseMax evaluation, derived by the mapper, and sweeps over them."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import einsum
from mapper import arch as archs
from mapper.search import SearchOptions, search
from sim.accounting import Accounting
from sim.model import evaluate, gemm_report
from sim.report import Report
from sim.workloads import SEQ_LENGTHS, Workload, workload

__all__ = ["CONFIGS", "Config", "compare", "run_config"]


@dataclasses.dataclass(frozen=True)
class Config:
    """One configuration: a library cascade on a preset architecture with mapper options."""

    name: str
    cascade: str
    arch: str
    interleave: bool = True
    fuse: bool = True
    fusion: str = "fused"  # the five configurations are fused tilings (Unfused: kernels via DRAM)
    bind: tuple[tuple[str, str], ...] = ()  # Einsums whose array the configuration fixes


#: FuseMax's binding (its artifact's mapping): the 2D array runs QK, LM, SLN, SLD and SLNV.
FUSEMAX_BINDING = tuple(
    (e, "2d" if e in ("QK", "LM", "SLN", "SLD", "SLNV") else "1d")
    for e in ("QK", "LM", "RM", "SLN", "SLD", "SLNV", "PRM", "SPD", "RD", "SPNV", "RNV", "AV")
)

CONFIGS = (
    Config("FuseMax", "attention_1pass", "fusemax"),
    # the artifact's +Architecture runs FuseMax's binding without interleaving; left free, the
    # search finds LM on the 1D array 0.2 % faster there (BERT 1K), a design the artifact has not
    Config("+Architecture", "attention_1pass", "fusemax", interleave=False, bind=FUSEMAX_BINDING),
    Config("+Cascade", "attention_1pass", "flat"),
    Config("FLAT", "attention_3pass", "flat"),
    Config("Unfused", "attention_3pass", "unfused", fuse=False),
)


def run_config(
    config: Config,
    w: Workload,
    *,
    array_dim: int = 256,
    end_to_end: bool = False,
    accounting: str | Accounting = "physical",
) -> Report:
    """Search the configuration's schedule for ``w`` and evaluate it (plus the GEMMs with
    ``end_to_end``) under ``accounting`` (``physical`` or ``fusemax-artifact``)."""
    arch = archs.preset(config.arch, array_dim=array_dim)
    cascade = einsum.library.get(config.cascade)
    schedule = search(
        cascade,
        arch,
        SearchOptions(
            sizes=w.sizes,
            interleave=config.interleave,
            fuse=config.fuse,
            fusion=config.fusion,
            instances=w.instances,
            bind=dict(config.bind),
        ),
    )
    report = evaluate(cascade, schedule, arch, w, accounting=accounting)
    if end_to_end:
        report = report.with_gemms(
            [gemm_report(m, k, n, arch, name, accounting=accounting) for name, (m, k, n) in w.gemms().items()]
        )
    return report


def compare(
    models: Sequence[str] = ("BERT", "TrXL", "T5", "XLM"),
    seqs: Sequence[int] = SEQ_LENGTHS,
    *,
    configs: Sequence[Config] = CONFIGS,
    batch: int = 64,
    end_to_end: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
    accounting: str | Accounting = "physical",
) -> Iterator[dict[str, object]]:
    """Yield one row per (configuration, model, length) with its report."""
    total = len(configs) * len(models) * len(seqs)
    done = 0
    for c in configs:
        for m in models:
            for s in seqs:
                w = workload(m, s, batch=batch)
                rep = run_config(c, w, end_to_end=end_to_end, accounting=accounting)
                done += 1
                if progress:
                    progress(done, total, f"{c.name} {m} {s}")
                yield {"config": c.name, "model": m, "seq": s, "report": rep}
