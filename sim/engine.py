"""The cycle-level timing engine lives in :mod:`mapper.engine` (the search ranks schedules by the
same timing the simulator reports); this module re-exports it for existing imports."""

from mapper.engine import KernelTiming, Task, Transfers, simulate_kernel

__all__ = ["KernelTiming", "Task", "Transfers", "simulate_kernel"]
