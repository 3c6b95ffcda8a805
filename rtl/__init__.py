"""Amaranth RTL generators (to be filled by the RTL issue).

Will hold the PE arrays (``array2d``, ``array1d``), SpAtten's top-k engine, Verilog export, the
cocotb runner wrapper and synthesis-based area estimates. May import ``einsum`` and
``mapper.arch``; never ``golden``, ``sim`` or ``mapper.search``.
"""

__all__: list[str] = []
