"""Run AccelForge's mapper (FFM, ``accelforge==1.0.467``) on one GEMM and print what it found as
one JSON line.

Runs in AccelForge's own environment (``benchmarks/mapper_search.py --accelforge-python PY``
starts it); never imported by einforge. The architecture is einforge's TPU-like one in
AccelForge's terms: DRAM, a global buffer of the given bits, a 32 x 32 fanout to a register of
three words per PE, MACs; energies per bit and per MAC as einforge prices them (given, so no
CACTI run); memories without bandwidth limits (the GEMM is compute-bound in both tools).

    python accelforge_gemm.py M K N '{"dram_pj_bit":..., "buffer_read_pj_bit":..., ...}'
"""

import json
import sys
import tempfile
import time
from pathlib import Path

import accelforge as af

m, k, n = (int(x) for x in sys.argv[1:4])
e = json.loads(sys.argv[4])
arch = f"""
arch:
  nodes:
  - !Memory
    name: MainMemory
    size: inf
    leak_power: 0
    area: 0
    tensors: {{keep: ~Intermediates, may_keep: All}}
    actions:
    - {{name: read, energy: {e["dram_pj_bit"]}, throughput: inf}}
    - {{name: write, energy: {e["dram_pj_bit"]}, throughput: inf}}
  - !Memory
    name: GlobalBuffer
    size: {e["buffer_bits"]}
    leak_power: 0
    area: 0
    tensors: {{keep: ~MainMemory, may_keep: All}}
    actions:
    - {{name: read, energy: {e["buffer_read_pj_bit"]}, throughput: inf}}
    - {{name: write, energy: {e["buffer_write_pj_bit"]}, throughput: inf}}
  - !Container
    name: PE
    spatial:
    - {{name: X, fanout: {e["cols"]}}}
    - {{name: Y, fanout: {e["rows"]}}}
  - !Memory
    name: Register
    size: {3 * e["word_bits"]}
    leak_power: 0
    area: 0
    tensors: {{keep: All}}
    actions:
    - {{name: read, energy: {e["rf_read_pj_bit"]}, throughput: inf}}
    - {{name: write, energy: {e["rf_write_pj_bit"]}, throughput: inf}}
  - !Compute
    name: MAC
    leak_power: 0
    area: 0
    actions:
    - {{name: compute, energy: {e["mac_pj"]}, throughput: 1}}
"""
workload = f"""
workload:
  iteration_space_shape:
    m: 0 <= m < {m}
    k: 0 <= k < {k}
    n: 0 <= n < {n}
  bits_per_value: {{All: {e["word_bits"]}}}
  einsums:
  - name: Z
    tensor_accesses:
    - {{name: A, projection: [m, k]}}
    - {{name: B, projection: [k, n]}}
    - {{name: Zo, projection: [m, n], output: True}}
"""
d = Path(tempfile.mkdtemp())
(d / "arch.yaml").write_text(arch)
(d / "workload.yaml").write_text(workload)
t0 = time.perf_counter()
spec = af.Spec.from_yaml(d / "arch.yaml", d / "workload.yaml")
found = spec.map_workload_to_arch(print_progress=False)
seconds = time.perf_counter() - t0
row = found.data.iloc[0]
print(
    json.dumps(
        {
            "accelforge": af.__version__ if hasattr(af, "__version__") else "1.0.467",
            "seconds": seconds,
            "latency_cycles": float(row["Total<SEP>latency"]),
            "energy_pj": float(row["Total<SEP>energy"]),
        }
    )
)
