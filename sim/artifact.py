"""The FuseMax artifact's published results, per point, as an oracle for the spatial model.

The CSV files beside this module are the artifact's pregenerated results (FuseMax, Nayak et al.,
MICRO 2024; ``FPSG-UIUC/micro24-fusemax-artifact``, MIT licence, notice in their README): one row per
(model, sequence length) for each of the five configurations, and the end-to-end layer's GEMMs for
FuseMax and FLAT. Batch 64, one layer.
"""

from __future__ import annotations

import csv
from importlib import resources

from sim.workloads import parse_seq

__all__ = ["ARTIFACT_FILES", "artifact_pareto", "artifact_results"]

#: configuration -> the artifact's file of attention results; ``end-to-end <config>`` -> its GEMMs
ARTIFACT_FILES = {
    "FuseMax": "attn-proposal.csv",
    "+Architecture": "attn-stall_proposal.csv",
    "+Cascade": "attn-cascade.csv",
    "FLAT": "attn-flat.csv",
    "Unfused": "attn-unfused.csv",
    "end-to-end FuseMax": "end2end-proposal.csv",
    "end-to-end FLAT": "end2end-flat.csv",
}

_FIELDS = {
    "latency": "latency_s",
    "energy": "energy_pj",
    "traffic": "traffic_bytes",
    "util_2d": "util_2d",
    "util_1d": "util_1d",
}


def artifact_results() -> dict[tuple[str, str, int], dict[str, float]]:
    """``(configuration, model, sequence length) -> {"latency_s", "energy_pj", "traffic_bytes"}``
    (plus ``util_2d`` and ``util_1d`` for attention), the artifact's figures for every point.

    The GEMMs of the end-to-end layer are under the configurations ``"end-to-end FuseMax"`` and
    ``"end-to-end FLAT"``; add them to the attention's figures for the whole layer.

    >>> r = artifact_results()
    >>> round(r[("FuseMax", "BERT", 1024)]["latency_s"] * 1e3, 3)
    2.013
    """
    out: dict[tuple[str, str, int], dict[str, float]] = {}
    folder = resources.files("sim") / "fusemax_artifact"
    for config, name in ARTIFACT_FILES.items():
        with (folder / name).open(newline="") as f:
            for row in csv.DictReader(f):
                key = (config, row["model"], parse_seq(row["seq_len"]))
                out[key] = {_FIELDS[k]: float(v) for k, v in row.items() if k in _FIELDS}
    return out


def artifact_pareto() -> dict[tuple[str, int], dict[str, float]]:
    """The artifact's Figure 12 sweep: ``(model, PE dimension) -> {"latency_s", "area_mm2",
    "array_2d_area_mm2", "traffic_bytes"}`` (BERT, TrXL, T5, XLM at 256K tokens).

    >>> round(artifact_pareto()[("BERT", 256)]["latency_s"], 2)
    118.28
    """
    out: dict[tuple[str, int], dict[str, float]] = {}
    with (resources.files("sim") / "fusemax_artifact" / "pareto.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            out[(row["model"], int(row["PE_dim"]))] = {
                "latency_s": float(row["latency"]),
                "area_mm2": float(row["area"]) / 1e6,
                "array_2d_area_mm2": float(row["array_2d_area"]) / 1e6,
                "traffic_bytes": float(row["traffic"]),
            }
    return out
