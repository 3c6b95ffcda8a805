"""``Report``: frozen results of one evaluation, with units in the field names."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Report", "plot_compare", "table"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Report:
    """Latency, energy, traffic and utilisation of one cascade on one architecture and workload."""

    cascade: str
    arch: str
    model: str
    seq: int
    batch: int
    latency_cycles: float
    latency_s: float
    energy_pj: float
    traffic_bytes: float  # DRAM
    buffer_traffic_bytes: float
    utilization: Mapping[str, float]  # busy cycles / total cycles, per array
    busy_cycles: Mapping[str, float]
    per_einsum: Mapping[str, Mapping[str, Any]]
    per_component_pj: Mapping[str, float]
    memory_bound_fraction: float  # DRAM time / total time
    macs: int
    simulated_tiles: int
    interleave: bool
    buffer_reads: float = 0.0  # words
    buffer_writes: float = 0.0  # words
    accounting: str = "physical"
    leakage: bool = False
    area_mm2: float = 0.0
    per_component_area_mm2: Mapping[str, float] = dataclasses.field(default_factory=dict)
    score_rows: int | None = None  # FLAT's granularity: query rows per pass over K and V
    # busiest unit's operations / (PEs x busy cycles): how full an array is while it works
    spatial_utilization: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # busiest unit's operations / (PEs x latency): time-busy x spatial
    pe_utilization: Mapping[str, float] = dataclasses.field(default_factory=dict)
    fusion: str = "fused"  # "fused", "kernels" (through DRAM) or "layerwise" (loop nests)
    tiles_skipped: int = 0  # tiles a mask leaves wholly masked, not computed
    tiles_total: int = 0
    macs_executed: float = 0.0  # the MACs of the tiles computed (``macs`` counts every point)
    # cycles: the busiest array's work ("compute"), DRAM or buffer time beyond it ("memory"), the
    # pipeline's fill and drain ("fill_drain") and arrays waiting on each other ("stalls")
    latency_breakdown: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def clock_hz_or_one(self) -> float:
        """Cycles per second of this report (latency_cycles / latency_s)."""
        return self.latency_cycles / self.latency_s if self.latency_s else 1.0

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def with_gemms(self, gemms: Sequence[Mapping[str, float]]) -> Report:
        """This report plus GEMMs run one after the other on the same architecture."""
        extra_cycles = sum(g["cycles"] for g in gemms)
        cycles = self.latency_cycles + extra_cycles
        busy = dict(self.busy_cycles)
        busy["2d"] = busy.get("2d", 0.0) + sum(g["busy_cycles"] for g in gemms)
        comp = dict(self.per_component_pj)
        comp["gemms"] = sum(g["energy_pj"] for g in gemms)
        per = dict(self.per_einsum)
        for g in gemms:
            per[str(g["name"])] = {
                "unit": "2d",
                "busy_cycles": g["busy_cycles"],
                "energy_pj": g["energy_pj"],
                "macs": g["macs"],
            }
        return dataclasses.replace(
            self,
            latency_cycles=cycles,
            latency_s=self.latency_s * cycles / self.latency_cycles,
            energy_pj=self.energy_pj + comp["gemms"],
            traffic_bytes=self.traffic_bytes + sum(g["traffic_bytes"] for g in gemms),
            busy_cycles=busy,
            utilization={a: b / cycles for a, b in busy.items()},
            per_einsum=per,
            per_component_pj=comp,
            macs=self.macs + int(sum(g["macs"] for g in gemms)),
            latency_breakdown={
                **self.latency_breakdown,
                "compute": self.latency_breakdown.get("compute", 0.0) + sum(g["busy_cycles"] for g in gemms),
                "memory": self.latency_breakdown.get("memory", 0.0)
                + sum(g["cycles"] - g["busy_cycles"] for g in gemms),
            }
            if self.latency_breakdown
            else {},
            # DRAM time of the attention and of the GEMMs over the whole layer's time
            memory_bound_fraction=min(
                1.0,
                (
                    self.memory_bound_fraction * self.latency_cycles
                    + sum(g.get("memory_cycles", 0.0) for g in gemms)
                )
                / cycles,
            ),
        )

    def __str__(self) -> str:
        lines = [
            f"{self.cascade} on {self.arch}: {self.model}, seq {self.seq}, batch {self.batch}",
            f"  latency      {self.latency_s * 1e3:14.4f} ms  ({self.latency_cycles:.6g} cycles)",
            f"  energy       {self.energy_pj:14.6g} pJ  ({self.accounting} accounting"
            + (", with leakage)" if self.leakage else ")"),
            f"  area         {self.area_mm2:14.4g} mm^2"
            + (f"  (buffer {self.per_component_area_mm2.get('buffer', 0.0):.4g} mm^2)"),
            f"  DRAM traffic {self.traffic_bytes:14.6g} bytes"
            f"  (memory time / latency = {self.memory_bound_fraction:.2f})",
            "  utilization  time-busy "
            + ", ".join(f"{a} {u:.3f}" for a, u in self.utilization.items())
            + ";  spatial (PEs working while busy) "
            + ", ".join(f"{a} {u:.3f}" for a, u in self.spatial_utilization.items())
            + ";  overall "
            + ", ".join(f"{a} {u:.4f}" for a, u in self.pe_utilization.items()),
            "  latency      "
            + ", ".join(
                f"{k.replace('_', ' ')} {v / self.latency_cycles:.1%}"
                for k, v in self.latency_breakdown.items()
            )
            + " of the cycles",
            f"  mapping      {self.fusion}"
            + (
                f"; {self.tiles_skipped} of {self.tiles_total} tiles wholly masked, skipped"
                if self.tiles_total
                else ""
            ),
            "  per Einsum:",
        ]
        for name, e in self.per_einsum.items():
            lines.append(
                f"    {name:6s} on {e['unit']:3s} ({e.get('spatial', '')})  "
                f"busy {e['busy_cycles']:12.6g} cycles  "
                f"spatial {e.get('spatial_utilization', 0.0):.3f}  energy {e['energy_pj']:12.6g} pJ"
            )
        lines.append("  energy per component:")
        for name, v in sorted(self.per_component_pj.items(), key=lambda kv: -kv[1]):
            lines.append(f"    {name:10s} {v:14.6g} pJ  ({v / self.energy_pj:6.1%})")
        return "\n".join(lines)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain-text table of ``rows`` (dicts) with the given columns."""
    cells = [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [
        max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)
    ]
    out = [
        "  ".join(c.rjust(w) for c, w in zip(columns, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    out += ["  ".join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(out)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_compare(results: Sequence[Mapping[str, Any]], out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Plots of a comparison: speedup and energy ratio vs FLAT per length, utilisation per unit and
    the energy breakdown per component. ``results`` are rows with ``config``, ``model``, ``seq`` and
    a ``report`` (:class:`Report`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = list(dict.fromkeys(r["config"] for r in results))
    models = list(dict.fromkeys(r["model"] for r in results))
    seqs = sorted({r["seq"] for r in results})
    by = {(r["config"], r["model"], r["seq"]): r["report"] for r in results}
    paths = []
    for metric, label, fname in (
        ("latency_s", "speedup vs FLAT", "speedup"),
        ("energy_pj", "energy / FLAT energy", "energy_ratio"),
    ):
        fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.2), sharey=True, squeeze=False)
        for ax, model in zip(axes[0], models, strict=True):
            for c in configs:
                ys = []
                for s in seqs:
                    base = by.get(("FLAT", model, s))
                    rep = by.get((c, model, s))
                    if base is None or rep is None:
                        ys.append(float("nan"))
                    elif metric == "latency_s":
                        ys.append(base.latency_s / rep.latency_s)
                    else:
                        ys.append(rep.energy_pj / base.energy_pj)
                n = configs.index(c)
                marker, style = _STYLES[n % len(_STYLES)]
                # a small sideways shift per configuration, so equal values (+Architecture's
                # energy is FuseMax's) draw side by side instead of one over the other
                shift = (n - (len(configs) - 1) / 2) * 0.06
                ax.plot(
                    [i + shift for i in range(len(seqs))],
                    ys,
                    marker=marker,
                    linestyle=style,
                    markersize=4,
                    label=c,
                    color=_PALETTE[n % len(_PALETTE)],
                )
            ax.set_xticks(range(len(seqs)), [_seq(s) for s in seqs])
            ax.set_title(model)
            ax.set_xlabel("sequence length")
        axes[0][0].set_ylabel(label)
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        fig.tight_layout()
        p = out / f"{fname}.{fmt}"
        fig.savefig(p)
        plt.close(fig)
        paths.append(p)
    # utilisation per unit: a row of panels per array, one panel per model
    units = sorted({u for rep in by.values() for u in rep.utilization})
    fig, axes = plt.subplots(
        len(units),
        len(models),
        figsize=(3.6 * len(models) + 1.6, 2.8 * len(units)),
        sharey=True,
        squeeze=False,
    )
    for row, unit in zip(axes, units, strict=True):
        for ax, model in zip(row, models, strict=True):
            for n, c in enumerate(configs):
                ax.plot(
                    range(len(seqs)),
                    [
                        by[(c, model, s)].utilization.get(unit, 0.0) if (c, model, s) in by else float("nan")
                        for s in seqs
                    ],
                    marker="o",
                    color=_PALETTE[n % len(_PALETTE)],
                    label=c,
                )
            ax.set_xticks(range(len(seqs)), [_seq(s) for s in seqs], fontsize=7)
            ax.set_title(f"{unit} array, {model}", fontsize=9)
        row[0].set_ylabel("time-busy utilisation")
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    fig.tight_layout()
    p = out / f"utilization.{fmt}"
    fig.savefig(p)
    plt.close(fig)
    paths.append(p)
    # energy and latency breakdowns: every model at its shortest and longest length
    picks = [(m, s) for m in models for s in dict.fromkeys((seqs[0], seqs[-1]))]
    comps = sorted({k for rep in by.values() for k in rep.per_component_pj})
    parts = ("compute", "memory", "fill_drain", "stalls")
    paths.append(
        _stacked(
            by,
            configs,
            picks,
            comps,
            lambda r, k: r.per_component_pj.get(k, 0.0),
            "energy (pJ)",
            out / f"energy_breakdown.{fmt}",
        )
    )
    paths.append(
        _stacked(
            by,
            configs,
            picks,
            parts,
            lambda r, k: r.latency_breakdown.get(k, 0.0) / r.clock_hz_or_one(),
            "latency (s)",
            out / f"latency_breakdown.{fmt}",
        )
    )
    return paths


def _stacked(
    by: Mapping[tuple[str, str, int], Report],
    configs: Sequence[str],
    picks: Sequence[tuple[str, int]],
    keys: Sequence[str],
    value: Any,
    ylabel: str,
    path: Path,
) -> Path:
    """Stacked bars of ``value(report, key)`` per configuration, one panel per (model, length),
    every key its own colour (hatched past the palette's ten strong colours), each bar's total
    written above it, the legend outside the panels. The axis is linear: stacked parts on a log
    axis misstate their shares and hide the shortest bars."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(picks), figsize=(2.6 * len(picks) + 2.2, 3.6), squeeze=False)
    colour = {k: _PALETTE[i % 10] for i, k in enumerate(keys)}
    hatch = {k: None if i < 10 else ("//", "..", "xx")[(i // 10 - 1) % 3] for i, k in enumerate(keys)}
    for ax, (model, seq) in zip(axes[0], picks, strict=True):
        shown = [c for c in configs if (c, model, seq) in by]
        bottom = [0.0] * len(shown)
        for k in keys:
            vals = [value(by[(c, model, seq)], k) for c in shown]
            ax.bar(
                shown,
                vals,
                bottom=bottom,
                label=k.replace("_", " "),
                color=colour[k],
                hatch=hatch[k],
                edgecolor="white" if hatch[k] else None,
                linewidth=0,
            )
            bottom = [b + v for b, v in zip(bottom, vals, strict=True)]
        for x, total in enumerate(bottom):
            ax.annotate(f"{total:.3g}", (x, total), ha="center", va="bottom", fontsize=6)
        ax.set_ylim(0, max(bottom, default=1.0) * 1.12 or 1.0)
        ax.set_title(f"{model}, {_seq(seq)}", fontsize=9)
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
    axes[0][0].set_ylabel(ylabel)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(0.995, 0.95), frameon=False)
    fig.tight_layout(rect=(0, 0, 0.86, 1))
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


#: A qualitative palette with 20 distinct colours (matplotlib's tab20, darker shades first, then the
#: lighter ones), so that no two components or configurations share a colour.
_PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
]


#: Marker and line style per configuration in the line plots, so that no two look alike even in grey.
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"), ("X", "-.")]


def _seq(n: int) -> str:
    for unit, size in (("M", 1 << 20), ("K", 1 << 10)):
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)
