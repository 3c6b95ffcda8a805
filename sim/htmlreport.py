"""Self-contained HTML reports: one file with the tables, the plots (inline SVG) and the
schedule, for an evaluation (:func:`evaluation_html`) or a sweep (:func:`sweep_html`). No script,
no network: it opens anywhere, and prints."""

from __future__ import annotations

import html
import io
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["evaluation_html", "sweep_html"]

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
pre { background: #f7f7f7; padding: 0.8em; font-size: 0.85em; overflow-x: auto; }
.fig svg { max-width: 100%; height: auto; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>\n"
    )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f'<th class="l">{html.escape(c)}</th>' for c in columns)
    cells = []
    for r in rows:
        tds = []
        for c in columns:
            cls = ' class="l"' if isinstance(r.get(c), str) else ""
            tds.append(f"<td{cls}>{_fmt(r.get(c, ''))}</td>")
        cells.append("<tr>" + "".join(tds) + "</tr>")
    body = "".join(cells)
    return f"<table><tr>{head}</tr>{body}</table>"


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return '<div class="fig">' + text[text.index("<svg") :] + "</div>"


def evaluation_html(report: Any, schedule: Any = None, search: Any = None) -> str:
    """One evaluation: the figures, the energy and busy time per Einsum and per component (plots
    and tables), the schedule and the search's summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sim.report import _PALETTE

    r = report
    summary = [
        {"figure": "latency", "value": f"{r.latency_s * 1e3:.4f} ms ({r.latency_cycles:.6g} cycles)"},
        {"figure": "energy", "value": f"{r.energy_pj:.6g} pJ ({r.accounting} accounting)"},
        {"figure": "area", "value": f"{r.area_mm2:.4g} mm^2"},
        {"figure": "DRAM traffic", "value": f"{r.traffic_bytes:.6g} bytes"},
        {"figure": "memory time / latency", "value": f"{r.memory_bound_fraction:.3f}"},
        {"figure": "MACs (executed)", "value": f"{r.macs:.6g} ({r.macs_executed:.6g})"},
        {"figure": "schedule", "value": r.fusion},
    ]
    util = [
        {
            "array": a,
            "time-busy": r.utilization.get(a, 0.0),
            "spatial": r.spatial_utilization.get(a, 0.0),
            "overall": r.pe_utilization.get(a, 0.0),
        }
        for a in r.utilization
    ]
    per = [{"einsum": n, **{k: v for k, v in e.items() if k != "mapping"}} for n, e in r.per_einsum.items()]
    comps = sorted(r.per_component_pj.items(), key=lambda kv: -kv[1])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    names = list(r.per_einsum)
    axes[0].barh(
        names,
        [r.per_einsum[n]["busy_cycles"] for n in names],
        color=[_PALETTE[i % len(_PALETTE)] for i in range(len(names))],
    )
    axes[0].set_xlabel("busy cycles")
    axes[0].set_title("busy time per Einsum")
    axes[0].invert_yaxis()
    axes[1].barh(
        [k for k, _ in comps],
        [v for _, v in comps],
        color=[_PALETTE[i % len(_PALETTE)] for i in range(len(comps))],
    )
    axes[1].set_xlabel("energy (pJ)")
    axes[1].set_title("energy per component")
    axes[1].invert_yaxis()
    fig.tight_layout()
    body = (
        f"<p>{html.escape(r.cascade)} on {html.escape(r.arch)}: {html.escape(str(r.model))}, "
        f"sequence {r.seq}, batch {r.batch}</p>"
        + _table(summary, ["figure", "value"])
        + "<h2>Utilisation</h2>"
        + _table(util, ["array", "time-busy", "spatial", "overall"])
        + "<h2>Where the time goes</h2>"
        + _table(
            [
                {"part": k.replace("_", " "), "cycles": v, "share": f"{v / r.latency_cycles:.1%}"}
                for k, v in r.latency_breakdown.items()
            ],
            ["part", "cycles", "share"],
        )
        + "<h2>Per Einsum and per component</h2>"
        + _svg(fig)
        + _table(
            per, ["einsum", "unit", "spatial", "busy_cycles", "spatial_utilization", "energy_pj", "macs"]
        )
        + _table(
            [{"component": k, "pJ": v, "share": f"{v / r.energy_pj:.1%}"} for k, v in comps],
            ["component", "pJ", "share"],
        )
    )
    if schedule is not None:
        body += "<h2>Schedule</h2><pre>" + html.escape(schedule.describe()) + "</pre>"
    if search is not None:
        body += "<h2>Search</h2><pre>" + html.escape(search.describe()) + "</pre>"
    return _page(f"einforge: {r.cascade} on {r.arch}", body)


def sweep_html(rows: Sequence[Mapping[str, Any]], objectives: Sequence[str], title: str) -> str:
    """A sweep: each workload's Pareto front (plot and table) and the whole table."""
    from sim.sweep import groups, pareto, plot_pareto

    body = ""
    if len(objectives) >= 2 and any(not r.get("error") for r in rows):
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as d:
            p = plot_pareto(rows, objectives[0], objectives[1], Path(d) / "p.svg", title=title)
            text = p.read_text(encoding="utf-8")
        body += '<div class="fig">' + text[text.index("<svg") :] + "</div>"
    cols = list(dict.fromkeys(k for r in rows for k in r if not k.startswith(("energy_pj.", "area_mm2."))))
    for label, idx in groups(rows).items():
        sub = [rows[i] for i in idx]
        if all(r.get("error") for r in sub):
            continue
        front = sorted((sub[i] for i in pareto(sub, objectives)), key=lambda r: r[objectives[0]])
        body += f"<h2>{html.escape(label)}: Pareto front ({len(front)} of {len(sub)})</h2>" + _table(
            front, cols
        )
    body += f"<h2>Every point ({len(rows)})</h2>" + _table(rows, cols)
    return _page(f"einforge sweep: {title}", body)
