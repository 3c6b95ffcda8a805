"""Run ZigZag (``zigzag-dse``) on one GEMM layer and print what it did as one JSON line.

Runs in ZigZag's own environment (``benchmarks/mapper_search.py`` starts it); never imported by
einforge. It counts the temporal mappings LOMA costs (calls of ZigZag's cost model) and times
the whole search, on ZigZag's shipped TPU-like accelerator (a 32 x 32 array, one global buffer,
DRAM) with the GEMM's C and K across the array, as ZigZag's own mapping file for it says.
"""

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import yaml
import zigzag
from zigzag.api import get_hardware_performance_zigzag
from zigzag.cost_model import cost_model

m, k, n = (int(x) for x in sys.argv[1:4])
root = Path(zigzag.__file__).parent / "inputs"
tmp = Path(tempfile.mkdtemp())
workload = [
    {
        "id": 0,
        "name": "gemm",
        "operator_type": "Gemm",
        "equation": "O[b][k]+=I[b][c]*W[c][k]",
        "loop_dims": ["B", "C", "K"],
        "loop_sizes": [m, k, n],
        "operand_precision": {"O": 16, "O_final": 16, "W": 16, "I": 16},
    }
]
mapping = [
    {
        "name": "default",
        "spatial_mapping": {"D1": ["K, 32"], "D2": ["C, 32"]},
        "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"},
    }
]
(tmp / "w.yaml").write_text(yaml.safe_dump(workload))
(tmp / "m.yaml").write_text(yaml.safe_dump(mapping))

calls = 0
original = cost_model.CostModelEvaluation.__init__


def counted(self, *a, **kw):  # type: ignore[no-untyped-def]
    global calls
    calls += 1
    original(self, *a, **kw)


cost_model.CostModelEvaluation.__init__ = counted  # type: ignore[method-assign]
logging.disable(logging.CRITICAL)
t0 = time.perf_counter()
energy, latency, cmes = get_hardware_performance_zigzag(
    str(tmp / "w.yaml"),
    str(root / "hardware" / "tpu_like.yaml"),
    str(tmp / "m.yaml"),
    opt="latency",
    dump_folder=str(tmp / "out"),
    loma_show_progress_bar=False,
)
seconds = time.perf_counter() - t0
cme = cmes[0][1][0][0]  # the layer's own evaluation inside the summed one
print(
    json.dumps(
        {
            "evaluations": calls,
            "seconds": seconds,
            "latency_cycles": float(latency),
            "energy_pj": float(energy),
            "mapping": f"spatial {cme.spatial_mapping}; temporal {cme.temporal_mapping}".replace("\n", " "),
            "ideal_cycles": float(cme.ideal_cycle),
            "zigzag": getattr(zigzag, "__version__", "3.9.1"),
        }
    )
)
