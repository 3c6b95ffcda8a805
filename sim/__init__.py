"""Cycle-level simulation of a schedule (to be filled by the spatial-model issue).

Will hold ``evaluate(cascade, schedule, arch, workload) -> Report`` (latency, utilisation per
unit, traffic per level, energy per component and per Einsum), the workloads (BERT, TrXL, T5,
XLM), design-space sweeps and report output. May import ``einsum`` and ``mapper``.
"""

__all__: list[str] = []
