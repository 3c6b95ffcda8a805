"""The spatial-model commands: evaluate (table and JSON), compare (table, plots), errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from einforge.cli import main


def test_evaluate_json_through_the_console_script() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "einforge",
            "evaluate",
            "--arch",
            "fusemax",
            "--cascade",
            "attention_1pass",
            "--model",
            "BERT,T5",
            "--seq",
            "1K,4096",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = json.loads(proc.stdout)
    assert [(r["model"], r["seq"]) for r in rows] == [
        ("BERT", 1024),
        ("BERT", 4096),
        ("T5", 1024),
        ("T5", 4096),
    ]
    for r in rows:
        assert {
            "model",
            "seq",
            "latency_s",
            "latency_cycles",
            "energy_pj",
            "traffic_bytes",
            "utilization",
            "per_einsum",
            "per_component_pj",
        } <= set(r)
        assert set(r["utilization"]) == {"2d", "1d"}
    assert rows[0]["latency_s"] == pytest.approx(2.013e-3, rel=0.01)
    assert rows[0]["per_einsum"]["QK"]["unit"] == "2d"


def test_evaluate_table_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--arch", "flat", "--seq", "1K", "--end-to-end"]) == 0
    out = capsys.readouterr().out
    assert "attention_3pass on flat: BERT, seq 1024, batch 64" in out
    assert "gemms" in out
    assert (
        main(
            [
                "evaluate",
                "--arch",
                "fusemax",
                "--array-dim",
                "128",
                "--seq",
                "1K",
                "--no-interleave",
                "--json",
            ]
        )
        == 0
    )
    row = json.loads(capsys.readouterr().out)[0]
    assert row["utilization"]["1d"] < 0.5  # without interleaving the arrays wait on each other


def test_evaluate_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--sizes", "P=0,M=64"]) == 2
    assert "sizes: rank P: sequence length must be positive" in capsys.readouterr().err
    assert main(["evaluate", "--sizes", "P1,M=64"]) == 2
    assert "sizes: 'P1' is not RANK=SIZE" in capsys.readouterr().err
    assert main(["evaluate", "--seq", "1G"]) == 2
    assert "sequence length '1G' is not a number like 1024, 1K, 64K or 1M" in capsys.readouterr().err
    assert main(["evaluate", "--model", "GPT"]) == 2
    assert "unknown model 'GPT'" in capsys.readouterr().err


def test_compare_writes_table_and_plots(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "compare",
                "--model",
                "BERT",
                "--seq",
                "1K,256K",
                "--out",
                str(tmp_path),
                "--format",
                "svg",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "FuseMax        mean speedup vs FLAT" in out
    for name in (
        "results.txt",
        "results.json",
        "speedup.svg",
        "energy_ratio.svg",
        "utilization.svg",
        "energy_breakdown.svg",
        "latency_breakdown.svg",
    ):
        assert (tmp_path / name).stat().st_size > 0
    rows = json.loads((tmp_path / "results.json").read_text())
    assert len(rows) == 10
    assert {"per_component_pj", "latency_breakdown", "per_component_area_mm2"} <= set(rows[0])


def test_evaluate_accounting_area_and_leakage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--arch", "flat", "--seq", "1K,64K", "--json"]) == 0
    physical = json.loads(capsys.readouterr().out)
    assert (
        main(["evaluate", "--arch", "flat", "--seq", "1K,64K", "--json", "--accounting", "fusemax-artifact"])
        == 0
    )
    artifact = json.loads(capsys.readouterr().out)
    for p, a in zip(physical, artifact, strict=True):
        assert p["accounting"] == "physical" and a["accounting"] == "fusemax-artifact"
        # 256 x 256 2D PEs of 1838 + MAC 1545 um^2, 256 1D PEs, and the 32 MiB buffer (CACTI: 175.7 mm^2)
        assert p["area_mm2"] == pytest.approx(a["area_mm2"])
        assert p["per_component_area_mm2"]["buffer"] == pytest.approx(175.717, rel=1e-4)
        assert p["area_mm2"] == pytest.approx(sum(p["per_component_area_mm2"].values()))
        assert p["energy_pj"] > a["energy_pj"]  # every PE's register file is charged
        assert p["latency_s"] == a["latency_s"]
    assert [r["score_rows"] for r in physical] == [1024, 256]  # FLAT's granularity, chosen per point
    assert main(["evaluate", "--seq", "1K", "--json", "--leakage"]) == 0
    leaky = json.loads(capsys.readouterr().out)[0]
    assert leaky["leakage"] and leaky["per_component_pj"]["buffer.leakage"] > 0
    assert main(["evaluate", "--seq", "1K", "--leakage", "--accounting", "fusemax-artifact"]) == 2
    assert "accounting 'fusemax-artifact' charges no leakage" in capsys.readouterr().err
    assert main(["evaluate", "--seq", "1K"]) == 0
    out = capsys.readouterr().out
    assert "(physical accounting)" in out and "area" in out
    assert "score rows fused per pass" not in out  # FuseMax keeps no whole rows of scores


def test_compare_in_artifact_accounting(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "compare",
                "--model",
                "BERT",
                "--seq",
                "1K",
                "--out",
                str(tmp_path),
                "--quiet",
                "--accounting",
                "fusemax-artifact",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "(fusemax-artifact accounting)" in out
    rows = json.loads((tmp_path / "results.json").read_text())
    flat = next(r for r in rows if r["config"] == "FLAT")
    fusemax = next(r for r in rows if r["config"] == "FuseMax")
    # the artifact's BERT 1K: FuseMax / FLAT energy 0.785 (2421.6 / 3086.2 pJ per score)
    assert fusemax["energy_vs_flat"] == pytest.approx(2421.57 / 3086.21, rel=0.03)
    assert flat["score_rows"] == 1024


def test_costs_prints_the_energy_and_area_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["costs", "--arch", "flat", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    by = {(r["component"], r["action"]): r["pj"] for r in out["energy_pj"]}
    assert by[("buffer", "read (word)")] == pytest.approx(93.18, rel=0.005)
    assert by[("1d.exp", "op")] == pytest.approx(94.6475)
    assert out["area_mm2"]["buffer"] == pytest.approx(175.717, rel=1e-4)
    assert main(["costs", "--buffer-bytes", "4MiB", "--accounting", "fusemax-artifact", "--json"]) == 0
    small = json.loads(capsys.readouterr().out)
    by = {(r["component"], r["action"]): r["pj"] for r in small["energy_pj"]}
    assert small["buffer"]["capacity_bytes"] == 4 * 2**20
    assert by[("2d.rf", "read")] == pytest.approx(0.653 / 65536)  # one register-file instance
    assert main(["costs"]) == 0
    assert "energy per action:" in capsys.readouterr().out
    assert main(["costs", "--buffer-bytes", "128M"]) == 2
    assert (
        "SRAM capacity 128 MiB is outside the CACTI table's grid (16 KiB to 64 MiB)"
        in capsys.readouterr().err
    )
    assert main(["costs", "--buffer-bytes", "12Q"]) == 2
    assert "buffer size '12Q' is not a size like 16M" in capsys.readouterr().err


def test_evaluate_users_own_files(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """A modified preset saved as YAML (numbers such as 1e9 included), a cascade file, sizes,
    an objective and a binding: the report names the user's architecture and passes its checks."""
    import mapper

    arch = mapper.fusemax(array_dim=64).replace(name="my-accel")
    text = arch.to_yaml().replace("940000000.0", "9.4e8")
    assert "9.4e8" in text
    (tmp_path / "my.yaml").write_text(text)
    (tmp_path / "my.ein").write_text(
        "cascade lin\ninput Q[p, e], K[m, e], V[m, f]\noutput O\n"
        "KV[e, f] = K[m, e] * V[m, f]\nKS[e] = sum[m] K[m, e]\n"
        "N[p, f] = Q[p, e] * KV[e, f]\nD[p] = Q[p, e] * KS[e]\nO[p, f] = N[p, f] / D[p]\n"
    )
    argv = [
        "evaluate",
        "--arch",
        str(tmp_path / "my.yaml"),
        "--cascade",
        str(tmp_path / "my.ein"),
        "--sizes",
        "P=1,M=4000,E=128,F=128,B=8,H=32",
        "--objective",
        "edp",
        "--bind",
        "O=1d",
        "--json",
    ]
    assert main(argv) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["arch"] == "my-accel" and row["cascade"] == "lin" and row["batch"] == 8
    assert row["search"]["objective"] == "edp" and row["search"]["schedule"]["binding"]["O"] == "1d"
    assert row["macs"] == 8 * 32 * (4000 * 128 * 128 + 1 * 128 * 128 + 1 * 128)
    for u in (*row["utilization"].values(), *row["spatial_utilization"].values()):
        assert 0 <= u <= 1


def test_evaluate_bind_errors_name_what_there_is(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--bind", "QKK=2d"]) == 2
    err = capsys.readouterr().err
    assert "bind names Einsum 'QKK', which attention_1pass does not have; did you mean 'QK'?" in err
    assert main(["evaluate", "--bind", "QK=2e"]) == 2
    assert "has no array '2e'" in capsys.readouterr().err
    assert main(["evaluate", "--bind", "QK"]) == 2
    assert "--bind 'QK' is not EINSUM=ARRAY" in capsys.readouterr().err
    assert main(["evaluate", "--arch", "fusemx"]) == 2
    assert (
        "nor an architecture file (.yaml, .yml or .json); did you mean 'fusemax'?" in capsys.readouterr().err
    )
    assert main(["evaluate", "--objective", "speed"]) == 2
    assert "unknown objective 'speed'" in capsys.readouterr().err


def test_evaluate_refuses_a_missing_cascade_file_and_end_to_end_without_a_model(
    tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--cascade", str(tmp_path / "nope.ein")]) == 2
    assert f"--cascade '{tmp_path / 'nope.ein'}': no such file" in capsys.readouterr().err
    assert main(["evaluate", "--sizes", "P=1,M=64,E=8,F=8", "--end-to-end"]) == 2
    assert "--end-to-end adds a model's projection and FFN GEMMs: give --model" in capsys.readouterr().err
    assert main(["evaluate", "--arch", str(tmp_path / "a.yaml"), "--array-dim", "64"]) == 2
    assert (
        "--array-dim applies to a preset; edit the rows and cols in the architecture file"
        in capsys.readouterr().err
    )


def test_evaluate_refuses_ranks_the_cascade_does_not_have(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--sizes", "P=128,M=1024,E=64,F=64,Bs=8"]) == 2
    assert capsys.readouterr().err == (
        "einforge: error: --sizes names rank(s) BS that attention_1pass does not have; did you mean 'B'?; "
        "its ranks are E, F, M, M0, M1, P (B and H are the batch and the heads)\n"
    )
    assert main(["evaluate", "--cascade", "matmul", "--sizes", "M=64,K=64,N=64,P=7"]) == 2
    assert "names rank(s) P that matmul does not have" in capsys.readouterr().err
    assert main(["evaluate", "--sizes", "P=8,M=2**70", "--json"]) == 2


def test_input_files_that_are_not_utf8_are_typed_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe bad")
    for argv, what in (
        (["evaluate", "--arch", str(bad)], "architecture file"),
        (["evaluate", "--cascade", str(bad.with_suffix(".ein"))], "cascade file"),
        (["sweep", str(bad), "--out", str(tmp_path / "o")], "sweep file"),
    ):
        bad.with_suffix(".ein").write_bytes(b"\xff\xfe bad")
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert (
            err.startswith(f"einforge: error: {what} '") and "not UTF-8 text (byte 0xff at offset 0)" in err
        )
    spec = tmp_path / "s.json"
    spec.write_text("{not json")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["costs", "--buffer-bytes", "infM"], "einforge: error: buffer size 'infM' is not a size like 16M"),
        (
            ["sweep", "examples/sweeps/array_and_buffer.yaml", "--out", "/proc/x"],
            "einforge: error: output folder '/proc/x': cannot write there",
        ),
        (
            ["compare", "--out", "/proc/x", "--model", "BERT", "--seq", "1K"],
            "einforge: error: output folder '/proc/x': cannot write there",
        ),
        (
            ["evaluate", "--trace", "/proc/t.json"],
            "einforge: error: --trace '/proc/t.json': cannot write there",
        ),
        (
            ["run", "attention_1pass", "-o", "/proc/x.npz"],
            "einforge: error: -o '/proc/x.npz': cannot write there",
        ),
        (
            ["run", "attention_1pass", "-i", "Q=/dev/null"],
            "einforge: error: -i 'Q=/dev/null': cannot read /dev/null as a .npy array",
        ),
    ],
)
def test_issue_26_reproducers_are_typed_errors(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if "/proc" in " ".join(argv) and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(expected)


def test_workers_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "examples/sweeps/array_and_buffer.yaml", "--out", "o", "--workers", "-1"])
    assert exc.value.code == 2
    assert "argument --workers: expected a positive integer, found -1" in capsys.readouterr().err


def test_a_cascade_whose_output_is_only_a_view_is_a_typed_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = tmp_path / "v.ein"
    f.write_text("cascade v\ninput A[m]\noutput Z\nZ[m] = A[m + 1]\n")
    assert main(["evaluate", "--cascade", str(f), "--sizes", "M=4"]) == 2
    assert "output(s) Z only re-index another tensor" in capsys.readouterr().err


def test_a_buffer_the_sram_model_cannot_price_fails_before_the_search(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import einforge.cli_sim as cs
    import mapper

    def no_search(*args: object, **kwargs: object) -> None:
        raise AssertionError("the search ran before the buffer was checked")

    monkeypatch.setattr(cs, "explore", no_search)
    f = tmp_path / "b.yaml"
    mapper.fusemax(buffer_bytes=8192).save(f)
    assert main(["evaluate", "--arch", str(f), "--seq", "64K"]) == 2
    assert "SRAM capacity 8 KiB is outside the CACTI table's grid" in capsys.readouterr().err


def test_costs_of_an_architecture_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mapper

    f = tmp_path / "a.yaml"
    mapper.fusemax(array_dim=16, buffer_bytes=4 * 2**20).save(f)
    assert main(["costs", "--arch", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["buffer"]["capacity_bytes"] == 4 * 2**20
    assert main(["costs", "--arch", str(f), "--buffer-bytes", "8M"]) == 2
    assert "--buffer-bytes applies to a preset" in capsys.readouterr().err


def test_several_points_print_one_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--arch", "fusemax", "--model", "BERT", "--seq", "1K,4K"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "attention_1pass on fusemax (physical accounting):"
    assert out[1].split() == [
        "model",
        "seq",
        "batch",
        "fusion",
        "latency_ms",
        "energy_pj",
        "util_1d",
        "util_2d",
        "traffic_bytes",
        "search",
    ]
    assert [line.split()[:2] for line in out[3:]] == [["BERT", "1K"], ["BERT", "4K"]]
    assert main(["evaluate", "--arch", "fusemax", "--model", "BERT", "--seq", "1K,4K", "--details"]) == 0
    assert capsys.readouterr().out.count("certified optimum") == 2
