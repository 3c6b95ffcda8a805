"""The RTL flows: the runs that connect einforge's RTL blocks (:mod:`rtl`) with its models.

- :mod:`einforge.rtlflow.area`: area of an architecture from its synthesised PEs and tile;
- :mod:`einforge.rtlflow.tile`: the attention tile built, simulated and timed against the model;
- :mod:`einforge.rtlflow.check`: each block's cocotb check against the golden model and its cycle
  model, Verilog export, synthesis area, the exponential's error;
- :mod:`einforge.rtlflow.tb`: the cocotb testbenches those runs start.

They sit in ``einforge`` because they import ``sim``, ``golden`` and ``rtl`` together, which the core
packages may not (``lint-imports``); the command line (``einforge rtl ...``, ``sweep`` with
``area: rtl``) calls them.
"""
