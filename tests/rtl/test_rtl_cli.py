"""`einforge rtl check --json`, `rtl area --json` and `--waves` through the console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.rtl


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "einforge", "rtl", *args], capture_output=True, text=True, check=True
    )


def test_check_json_line() -> None:
    out = _run(
        "check", "topk", "--param", "n=12", "--param", "k=3", "--seed", "4", "--items", "10", "--json"
    ).stdout
    row = json.loads(out)  # exactly one JSON line on stdout, nothing else
    assert set(row) == {"block", "sim", "seed", "items", "mismatches", "cycles", "model_cycles"}
    assert (row["block"], row["sim"], row["seed"], row["items"], row["mismatches"]) == (
        "topk",
        "verilator",
        4,
        10,
        0,
    )
    assert row["cycles"] == row["model_cycles"] > 0


def test_check_waves_says_where() -> None:
    proc = _run(
        "check", "array1d", "-p", "pes=1", "-p", "f=1", "--sim", "verilator", "--items", "2", "--waves"
    )
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("waves: ")][0]
    assert line.endswith((".vcd", ".fst"))
    # an engineer's view: every signal in the dump has a name (the netlist's unnamed wires stay
    # out), and the controller's states read by name
    names = [
        ln.split()[4]
        for ln in Path(line[len("waves: ") :]).read_text().splitlines()
        if ln.lstrip().startswith("$var")
    ]
    assert names and not [n for n in names if n.startswith(("$", "\\", "_"))], names
    assert {"ctrl_is_LM", "ctrl_is_EXP", "ctrl_is_AV", "rm0"} <= set(names), names


def test_area_json() -> None:
    row = json.loads(
        _run("area", "topk", "-p", "n=4", "-p", "parallelism=2", "-p", "width=4", "--json").stdout
    )
    assert row["block"] == "topk" and row["cells"] > 100 and row["area_um2"] > 100.0


@pytest.mark.slow  # CI runs it (.ci/run): synthesis of four array sizes, about 6 s warm
def test_area_array2d_is_per_pe() -> None:
    """array2d synthesises in seconds (it once hung in ABC's SAT sweep) and its area is per PE:
    four PEs cost three to four and a half times one (one multiplier each, little shared logic)."""
    small = ("-p", "e=2", "-p", "f=1", "-p", "width=8", "-p", "frac=4", "--json")
    one = json.loads(_run("area", "array2d", "-p", "rows=1", "-p", "cols=1", *small).stdout)
    four = json.loads(_run("area", "array2d", "-p", "rows=2", "-p", "cols=2", *small).stdout)
    assert 3.0 < four["area_um2"] / one["area_um2"] < 4.5


@pytest.mark.slow  # CI runs it (.ci/run)
def test_memories_priced_as_register_files() -> None:
    """topk n=16, P=4 holds three 64-bit x 4-row memories: priced from the library's cells, a
    flip-flop (4.522 um^2) and a hold multiplexer (1.862) a bit plus a read tree of 3
    multiplexers a bit; the logic around them is still synthesised."""
    from rtl import blocks, runner
    from rtl.area import synthesize

    p = blocks.resolve("topk", {"n": 16, "parallelism": 4}, extra={"k": None})
    a = synthesize(runner.to_verilog(blocks.build("topk", p), "topk"), "topk", memories="registers")
    assert a.memories == ((64, 4, 1, 1),) * 3
    assert a.memory_um2 == pytest.approx(3 * (256 * (4.522 + 1.862) + 64 * 3 * 1.862))
    assert a.area_um2 > a.memory_um2 + 1000  # the comparators, zero eliminators and control


def test_parse_memories_reads_yosys_dump() -> None:
    from rtl.area import parse_memories

    dump = (
        "  cell $mem_v2 $mem$x\n    parameter \\ABITS 6\n    parameter \\WIDTH 256\n    parameter \\SIZE 64\n"
        "    parameter \\RD_PORTS 1\n    parameter \\WR_PORTS 1\n  end\n"
    )
    assert parse_memories(dump) == [(256, 64, 1, 1)]


def test_prove_from_the_command_line() -> None:
    """`einforge rtl prove NAME --json` runs a proof (the top-k handshake: k-induction, seconds)."""
    rows = json.loads(_run("prove", "topk_handshake", "--json").stdout)
    assert rows == [
        {
            "proof": "topk_handshake",
            "mode": "prove",
            "depth": 4,
            "passed": True,
            "seconds": rows[0]["seconds"],
        }
    ]
    listing = _run("prove", "--list").stdout
    assert "topk_output" in listing and "bmc" in listing


def test_prove_unknown_name_is_a_typed_error(capsys: pytest.CaptureFixture[str]) -> None:
    from einforge.cli import main

    assert main(["rtl", "prove", "topk_outptu"]) == 2
    assert "unknown proof 'topk_outptu'; did you mean 'topk_output'?" in capsys.readouterr().err


def test_synthesize_memories_option_is_checked() -> None:
    from rtl.area import synthesize
    from rtl.runner import SimulatorError

    with pytest.raises(
        SimulatorError, match=r"memories must be 'auto', 'synthesise' or 'registers', found 'flops'"
    ):
        synthesize("module top(); endmodule", "top", memories="flops")
    with pytest.raises(SimulatorError, match=r"timing must be None, 'model' or 'path', found 'fmax'"):
        synthesize("module top(); endmodule", "top", timing="fmax")


def _fails(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "einforge", "rtl", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--array", "4", "--seq", "62"), "p (queries) = 62 must be a multiple of the array's 4 rows"),
        (("--array", "8", "--seq", "8"), "m (keys) = 8 must span at least 2 key tiles of 8 rows"),
        (("--dram-bandwidth", "1.5"), "--dram-bandwidth must be in (0, 1] beats a cycle, got 1.5"),
        (("--dram-latency", "0"), "--dram-latency must be >= 1"),
        (("--waves", "out.txt"), "--waves must name a .vcd or .fst file, got 'out.txt'"),
    ],
)
def test_run_attention_refuses_bad_input_before_building(args: tuple[str, ...], message: str) -> None:
    proc = _fails("run", "attention", *args)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert "building" not in proc.stderr  # refused before any long work


def test_run_attention_json() -> None:
    row = json.loads(
        _run("run", "attention", "--array", "4", "--seq", "32", "--e", "8", "--f", "8", "--json").stdout
    )
    assert row["mismatches"] == 0 and row["compared_beats"] == 32 * 8 // 4
    assert abs(row["model_cycles"] - row["measured_cycles"]) <= 0.01 * row["measured_cycles"]
    assert set(row["per_einsum"]) == {
        "QK",
        "LM",
        "SLN",
        "SLD",
        "SLNV",
        "RM",
        "PRM",
        "SPD",
        "RD",
        "SPNV",
        "RNV",
        "AV",
    }
    assert row["passed"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("attention", "-p", "rows=4"), "rtl area attention: the tile takes --array, --seq, --e, --f"),
        (("array2d", "--array", "4"), "rtl area array2d: --array belong to the attention tile; use --param"),
        (
            ("attention", "--array", "4", "--seq", "6"),
            "p (queries) = 6 must be a multiple of the array's 4 rows",
        ),
    ],
)
def test_area_attention_options_are_checked(args: tuple[str, ...], message: str) -> None:
    proc = _fails("area", *args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_area_attention_by_parts_json() -> None:
    """The tile's area by parts: a 2D PE per PE, a column per column, a 1D PE per column, and the
    rest; the parts add up to the total."""
    proc = subprocess.run(
        [sys.executable, "-m", "einforge", "rtl", "area", "attention", "--array", "2", "--seq", "4",
         "--e", "2", "--f", "2", "--json"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    res = json.loads(proc.stdout)
    parts = res["parts"]
    assert {k: v["count"] for k, v in parts.items()} == {"pe2d": 4, "column": 2, "pe1d": 2}
    assert res["area_um2"] == pytest.approx(res["rest_um2"] + sum(v["area_um2"] for v in parts.values()))
    assert res["memory_um2"] == 0 and res["memories"] == []  # few bits: synthesised with the rest
    assert res["flip_flops"] > 0 and res["cells"] > res["flip_flops"]
    assert res["fmax_mhz"] == pytest.approx(1000 / res["critical_ns"], rel=1e-3) and res["critical_path"]
