"""Simulating schedules on spatial-array accelerators.

``evaluate(cascade, schedule, arch, workload) -> Report``: latency from a cycle-level simulation
of the schedule's tiles on the arrays it binds, DRAM and buffer traffic, energy per Einsum and per
component, utilisation per array. Workloads (BERT, TrXL, T5, XLM), the five configurations of the
FuseMax evaluation and sweeps over them. May import ``einsum`` and ``mapper``.
"""

from sim.accounting import ACCOUNTINGS, Accounting, accounting
from sim.artifact import ARTIFACT_FILES, artifact_pareto, artifact_results
from sim.compare import CONFIGS, Config, compare, run_config
from sim.errors import EvaluationError
from sim.model import ENERGY_OF, evaluate, gemm_report
from sim.report import Report, plot_compare, table
from sim.workloads import (
    MODELS,
    SEQ_LENGTHS,
    Model,
    Workload,
    format_seq,
    parse_seq,
    parse_sizes,
    workload,
)

__all__ = [
    "ACCOUNTINGS",
    "ARTIFACT_FILES",
    "Accounting",
    "accounting",
    "CONFIGS",
    "ENERGY_OF",
    "MODELS",
    "SEQ_LENGTHS",
    "Config",
    "EvaluationError",
    "Model",
    "Report",
    "Workload",
    "artifact_pareto",
    "artifact_results",
    "compare",
    "evaluate",
    "format_seq",
    "gemm_report",
    "parse_seq",
    "parse_sizes",
    "plot_compare",
    "run_config",
    "table",
    "workload",
]
