"""FuseMax's energy against FLAT's, and what moves the ratio.

The mean over the 24 points (4 models x 6 lengths) of FuseMax's attention energy / FLAT's, under
physical accounting (what the hardware spends) and under the FuseMax artifact's bookkeeping, then
the physical ratio with one assumption changed at a time: the buffers priced with the ports and
banks the artifact's Accelergy specification declares, FLAT with FuseMax's 16 MiB buffer, both
buffers' leakage, the FuseMax buffer of 4 MiB and 64 MiB. The sweep of the unchanged presets is
the peer each variant's time is measured against.

    python benchmarks/energy_ratio.py [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from collections.abc import Callable

import einsum
import mapper
import sim
from mapper.search import SearchOptions, search

MIB = 2**20
POINTS = [(m, s) for m in sim.MODELS for s in sim.SEQ_LENGTHS]


def _energy(
    config: sim.Config, arch: mapper.ArchSpec, w: sim.Workload, accounting: str, leakage: bool
) -> float:
    c = einsum.library.get(config.cascade)
    s = search(
        c, arch, SearchOptions(fusion="fused", sizes=w.sizes, interleave=config.interleave, fuse=config.fuse)
    )
    return sim.evaluate(c, s, arch, w, accounting=accounting, leakage=leakage).energy_pj


def ratio(
    fusemax: Callable[[], mapper.ArchSpec],
    flat: Callable[[], mapper.ArchSpec],
    *,
    accounting: str = "physical",
    leakage: bool = False,
) -> float:
    configs = {c.name: c for c in sim.CONFIGS}
    fm, fl = fusemax(), flat()
    return statistics.mean(
        _energy(configs["FuseMax"], fm, sim.workload(m, n), accounting, leakage)
        / _energy(configs["FLAT"], fl, sim.workload(m, n), accounting, leakage)
        for m, n in POINTS
    )


def _buffer(arch: mapper.ArchSpec, **changes: int) -> mapper.ArchSpec:
    return arch.replace(buffer=dataclasses.replace(arch.buffer, **changes))


VARIANTS: dict[str, tuple[Callable[[], mapper.ArchSpec], Callable[[], mapper.ArchSpec], str, bool]] = {
    "physical (presets: 4096-bit rows, 1 bank, 1 port)": (mapper.fusemax, mapper.flat, "physical", False),
    "fusemax-artifact accounting": (mapper.fusemax, mapper.flat, "fusemax-artifact", False),
    "physical, buffers as the artifact's spec declares them (4 ports; 32 / 4 banks)": (
        lambda: _buffer(mapper.fusemax(), ports=4, banks=32),
        lambda: _buffer(mapper.flat(), ports=4, banks=4),
        "physical",
        False,
    ),
    "physical, FLAT with a 16 MiB buffer (iso-capacity)": (
        mapper.fusemax,
        lambda: mapper.flat(buffer_bytes=16 * MIB),
        "physical",
        False,
    ),
    "physical, with the buffers' leakage": (mapper.fusemax, mapper.flat, "physical", True),
    "physical, FuseMax with a 4 MiB buffer": (
        lambda: mapper.fusemax(buffer_bytes=4 * MIB),
        mapper.flat,
        "physical",
        False,
    ),
    "physical, FuseMax with a 64 MiB buffer": (
        lambda: mapper.fusemax(buffer_bytes=64 * MIB),
        mapper.flat,
        "physical",
        False,
    ),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    published = statistics.mean(
        sim.artifact_results()[("FuseMax", *p)]["energy_pj"]
        / sim.artifact_results()[("FLAT", *p)]["energy_pj"]
        for p in POINTS
    )
    rows = []
    for name, (fm, fl, acct, leak) in VARIANTS.items():
        t0 = time.perf_counter()
        try:
            r: float | str = ratio(fm, fl, accounting=acct, leakage=leak)
        except mapper.ArchError as exc:  # a FLAT that cannot hold its score rows
            r = f"cannot map: {exc}"
        rows.append({"variant": name, "energy_ratio": r, "seconds": time.perf_counter() - t0})
        if not args.json:
            value = f"{r:.3f}" if isinstance(r, float) else r
            print(f"{name:82s} {value}  ({rows[-1]['seconds']:.1f} s)", flush=True)
    if args.json:
        print(json.dumps({"artifact_published": published, "variants": rows}, indent=1))
    else:
        print(f"{'the artifact (published data)':82s} {published:.3f}")


if __name__ == "__main__":
    main()
