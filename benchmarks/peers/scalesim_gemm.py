"""Run SCALE-Sim (``scalesim`` on PyPI) on GEMM layers and print their compute cycles as JSON lines.

Runs in SCALE-Sim's own environment (it needs NumPy < 2.4); ``benchmarks/scalesim_gemm.py``
starts it and never imports it. Arguments: a JSON list of [name, M, N, K, rows, cols, dataflow].
Compute cycles are SCALE-Sim's total cycles less its stall cycles (the memory system's).
"""

import csv
import io
import json
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

from scalesim.scale_sim import scalesim

CONFIG = """[general]
run_name = run

[architecture_presets]
ArrayHeight:    {rows}
ArrayWidth:     {cols}
IfmapSramSzkB:    6144
FilterSramSzkB:   6144
OfmapSramSzkB:    2048
IfmapOffset:    0
FilterOffset:   10000000
OfmapOffset:    20000000
Dataflow : {df}
Bandwidth : 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

for name, m, n, k, rows, cols, df in json.loads(sys.argv[1]):
    tmp = Path(tempfile.mkdtemp())
    (tmp / "c.cfg").write_text(CONFIG.format(rows=rows, cols=cols, df=df))
    (tmp / "t.csv").write_text(f"Layer, M, N, K,\n{name}, {m}, {n}, {k},\n")
    # SCALE-Sim reads a layout file even where custom layouts are off; its values are unused then
    (tmp / "l.csv").write_text("Layer, a, b, c, d, e, f, g, h,\n" + f"{name}, 1, 1, 1, 1, 1, 1, 1, 1,\n")
    t0 = time.perf_counter()
    with redirect_stdout(io.StringIO()):
        s = scalesim(
            save_disk_space=True,
            verbose=False,
            config=str(tmp / "c.cfg"),
            topology=str(tmp / "t.csv"),
            layout=str(tmp / "l.csv"),
            input_type_gemm=True,
        )
        s.run_scale(top_path=str(tmp))
    seconds = time.perf_counter() - t0
    report = next(tmp.rglob("COMPUTE_REPORT.csv"))
    row = next(csv.DictReader(line.replace(" ", "") for line in report.read_text().splitlines()))
    total, stall = int(float(row["TotalCycles"])), int(float(row["StallCycles"]))
    print(
        json.dumps(
            {
                "name": name,
                "M": m,
                "N": n,
                "K": k,
                "rows": rows,
                "cols": cols,
                "dataflow": df,
                "total_cycles": total,
                "stall_cycles": stall,
                "compute_cycles": total - stall,
                "seconds": seconds,
            }
        ),
        flush=True,
    )
