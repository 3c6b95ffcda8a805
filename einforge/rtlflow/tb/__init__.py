"""cocotb testbenches of the RTL blocks: drivers, monitors, golden models and scoreboards.

They run inside the HDL simulator, started by ``einforge rtl check`` and by ``tests/rtl`` through
:mod:`rtl.runner`. Each reads its configuration from ``EINFORGE_TB`` (JSON) and writes a result
file that ``einforge.rtlflow.check`` reads back.
"""
