"""Sweeps: grid order, the store (resume after SIGKILL), determinism across workers and hash
seeds, Pareto fronts, and bad input caught before the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from einforge.cli import main
from einsum.errors import ConfigError
from sim import sweep as sw

SPEC = {
    "name": "tiny",
    "arch": "fusemax",
    "params": {"array_dim": [16, 32], "buffer_bytes": ["1M", "4M"]},
    "workloads": [{"model": "BERT", "seq": "1K", "batch": 1}, {"sizes": "P=1,M=512,E=64,F=64"}],
    "cascades": ["attention_1pass", "attention_3pass"],
    "options": {"fusion": "fused"},
}


def test_points_follow_the_grid() -> None:
    pts = sw.points(SPEC)
    assert len(pts) == 2 * 2 * 2 * 2
    assert pts[0]["params"] == {"array_dim": 16, "buffer_bytes": 2**20}
    assert [p["cascade"] for p in pts[:2]] == ["attention_1pass", "attention_3pass"]
    assert len({sw.point_key(p) for p in pts}) == len(pts)


def test_rows_carry_inputs_and_figures_and_errors_are_rows() -> None:
    # a point that cannot run (its workload gives E and F no size) is a row with its error
    ok = {
        **SPEC,
        "params": {"array_dim": [16], "buffer_bytes": [2**20]},
        "workloads": [SPEC["workloads"][0], {"sizes": "P=16,M=64"}],
        "cascades": ["attention_1pass"],
    }
    rows = sw.sweep(ok, workers=1).rows
    good = [r for r in rows if not r["error"]]
    assert good and all(r["param.array_dim"] == 16 and r["latency_s"] > 0 and r["area_mm2"] > 0 for r in good)
    assert any(k.startswith("energy_pj.") for k in good[0])
    failed = [r for r in rows if r["error"]]
    assert failed and failed[0]["error"].startswith("ScheduleError: ")
    # a point that cannot even be set up stops the sweep before any work
    bad = {**SPEC, "params": {"array_dim": [16]}, "cascades": ["attention_1pass", "no_such_cascade"]}
    with pytest.raises(
        ConfigError,
        match=r"^sweep: 2 of 4 points cannot run; nothing was run:\n  2 points \(1, 3\): library has no cascade 'no_such_cascade'",
    ):
        sw.sweep(bad, workers=1)


def test_same_table_whatever_the_workers_and_hash_seed(tmp_path: Path) -> None:
    one = sw.sweep(SPEC, out=tmp_path / "a", workers=1)
    two = sw.sweep(SPEC, out=tmp_path / "b", workers=2)
    assert (tmp_path / "a" / "results.csv").read_bytes() == (tmp_path / "b" / "results.csv").read_bytes()
    assert one.rows == two.rows
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    code = (
        "import sys, json; from sim import sweep as sw; "
        "sw.sweep(json.loads(sys.argv[1]), out=sys.argv[2], workers=2)"
    )
    import json

    subprocess.run([sys.executable, "-c", code, json.dumps(SPEC), str(tmp_path / "c")], env=env, check=True)
    assert (tmp_path / "c" / "results.csv").read_bytes() == (tmp_path / "a" / "results.csv").read_bytes()


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
def test_a_killed_sweep_resumes_with_the_same_files(tmp_path: Path) -> None:
    spec = {**SPEC, "params": {"array_dim": [16, 32, 64], "buffer_bytes": ["1M", "4M", "16M"]}}
    import json

    code = (
        "import sys, json; from sim import sweep as sw; "
        "sw.sweep(json.loads(sys.argv[1]), out=sys.argv[2], workers=1)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec), str(tmp_path / "killed")])
    store = tmp_path / "killed" / "store"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(store.glob("*.json"))) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(store.glob("*.json")))
    total = len(sw.points(spec))
    assert 0 < done < total, "the sweep must be killed part-way"
    assert not (tmp_path / "killed" / "results.csv").exists()
    resumed = sw.sweep(spec, out=tmp_path / "killed", workers=1)
    assert resumed.reused >= done and resumed.computed == total - resumed.reused
    sw.sweep(spec, out=tmp_path / "whole", workers=1)
    for name in ("results.csv", "results.jsonl"):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()
    assert not list((tmp_path / "killed").rglob("*.tmp"))


def test_pareto_front_of_hand_made_rows() -> None:
    rows = [
        {"latency_s": 1.0, "energy_pj": 5.0},
        {"latency_s": 2.0, "energy_pj": 2.0},
        {"latency_s": 3.0, "energy_pj": 3.0},  # dominated by the second
        {"latency_s": 1.0, "energy_pj": 6.0},  # dominated by the first
        {"latency_s": 4.0, "energy_pj": 1.0},
        {"error": "ScheduleError: no fit"},
    ]
    assert sw.pareto(rows) == [0, 1, 4]
    # rows equal in every objective (within the tolerance) are one point of the front: the first
    assert sw.pareto(rows, ("latency_s",)) == [0]
    with pytest.raises(ConfigError, match="pareto: no row has area_mm2"):
        sw.pareto(rows, ("latency_s", "area_mm2"))


def test_bad_input_fails_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    spec = tmp_path / "s.yaml"
    spec.write_text("arch: fusemax\nworkloads: [{model: BERT, seq: 1K}]\ncascades: [attention_1pass]\n")
    assert main(["sweep", str(spec), "--out", str(blocker / "sub")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    spec.write_text("arch: fusemax\nworkload: [{model: BERT, seq: 1K}]\ncascades: [attention_1pass]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    assert "unknown key 'workload'; did you mean 'workloads'?" in capsys.readouterr().err
    assert main(["sweep", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_sweep_command_writes_table_front_and_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "params": {"array_dim": [16, 32]}}))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--quiet", "--format", "svg"]) == 0
    out = capsys.readouterr().out
    assert "Pareto front of latency_s and energy_pj" in out
    header = (tmp_path / "o" / "results.csv").read_text().splitlines()[0].split(",")
    assert {"param.array_dim", "latency_s", "area_mm2", "energy_pj"} <= set(header)
    assert (tmp_path / "o" / "pareto.svg").stat().st_size > 0


def test_dask_local_cluster_gives_the_local_table(tmp_path: Path) -> None:
    """The same sweep on a real Dask cluster (2 workers on loopback) writes the same files."""
    distributed = pytest.importorskip(
        "distributed", reason="Dask's distributed is not installed (pip install distributed)"
    )
    local = sw.sweep(SPEC, out=tmp_path / "local", workers=1)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, processes=True
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = sw.sweep(SPEC, out=tmp_path / "dask", executor=client)
    assert remote.rows == local.rows
    for name in ("results.csv", "results.jsonl"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()


def test_end_to_end_memory_fraction_counts_the_gemms() -> None:
    import mapper
    import sim

    w = sim.workload("BERT", "1K")
    arch = mapper.fusemax()
    att = sim.run_config(sim.CONFIGS[0], w)
    gemms = [sim.gemm_report(m, k, n, arch, name) for name, (m, k, n) in w.gemms().items()]
    e2e = att.with_gemms(gemms)
    mem = att.memory_bound_fraction * att.latency_cycles + sum(g["memory_cycles"] for g in gemms)
    assert e2e.memory_bound_fraction == pytest.approx(min(1.0, mem / e2e.latency_cycles))
    assert e2e.memory_bound_fraction != pytest.approx(att.memory_bound_fraction)


def test_fusemax_fig12_latency_and_area(tmp_path: Path) -> None:
    """examples/fusemax_fig12.yaml against the artifact's Figure 12 data: the latency at every PE
    dimension within 0.5%, and the area within 1% (the issue asks 15%): the artifact's register
    files, deepened by its rule and priced by mapper.regfile under its accounting, and its buffer,
    one PE row wide, priced by the CACTI table."""
    import sim

    spec = sw.load_spec(Path(__file__).resolve().parents[2] / "examples" / "fusemax_fig12.yaml")
    rows = sw.sweep(spec, out=tmp_path, workers=1).rows
    art = sim.artifact_pareto()
    dims = [r["param.array_dim"] for r in rows]
    assert dims == [16, 32, 64, 128, 256, 512]
    for r in rows:
        theirs = art[("BERT", r["param.array_dim"])]
        assert r["latency_s"] == pytest.approx(theirs["latency_s"], rel=0.005)
        assert r["area_mm2"] == pytest.approx(theirs["area_mm2"], rel=0.01)
    assert sw.pareto(rows, ("latency_s", "area_mm2")) == list(
        range(6)
    )  # every point trades one for the other


def test_fusemax_fig12_register_files_physical(tmp_path: Path) -> None:
    """The same sweep under the physical accounting: the register files are priced at their depth
    (a 4-word file is a sixteenth of the 64-word regfile it is scaled from), so each 2D PE is
    smaller than the artifact's and grows with the rule's depth; latency is the same."""
    spec = sw.load_spec(Path(__file__).resolve().parents[2] / "examples" / "fusemax_fig12.yaml")
    spec = {**spec, "accounting": "physical", "params": {**spec["params"], "array_dim": [64, 512]}}
    art = sw.sweep({**spec, "accounting": "fusemax-artifact"}, workers=1).rows
    phys = sw.sweep(spec, workers=1).rows
    from mapper import regfile

    for a, p in zip(art, phys, strict=True):
        d = p["param.array_dim"]
        assert p["latency_s"] == a["latency_s"]
        depth = sw.fig12_rf_words(d, 64)["2d"]
        pe = regfile.costs(depth=depth, width_bits=16).area_um2 + 1545.0 + 49.29
        assert p["area_mm2.2d"] == pytest.approx(d * d * pe / 1e6)
        assert p["area_mm2.2d"] < a["area_mm2.2d"] / 3
    assert sw.fig12_rf_words(64, 64) == {"2d": 4, "1d": 16}
    assert sw.fig12_rf_words(512, 64) == {"2d": 32, "1d": 128}


@pytest.mark.rtl
def test_area_from_our_synthesised_rtl(tmp_path: Path) -> None:
    """area: rtl adds a second area: each array's PEs as einforge's own blocks synthesised (one PE,
    times the PE count), the buffer from CACTI."""
    from einforge.rtlflow.area import arch_area_from_rtl, pe_area_um2

    spec = {
        **SPEC,
        "params": {"array_dim": [16]},
        "cascades": ["attention_1pass"],
        "workloads": SPEC["workloads"][:1],
    }
    [row] = sw.sweep(spec, workers=1, area_model=arch_area_from_rtl).rows
    assert row["area_mm2_rtl.2d"] == pytest.approx(256 * pe_area_um2("array2d") / 1e6)
    assert row["area_mm2_rtl.1d"] == pytest.approx(16 * pe_area_um2("array1d") / 1e6)
    assert row["area_mm2_rtl.buffer"] == pytest.approx(row["area_mm2.buffer"])
    assert row["area_mm2_rtl"] == pytest.approx(
        row["area_mm2_rtl.2d"] + row["area_mm2_rtl.1d"] + row["area_mm2_rtl.buffer"]
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq": "1K"}, "a sequence length needs a model (BERT, TrXL, T5, XLM); or give sizes alone"),
        ({}, "a workload needs a model and a sequence length, or rank sizes"),
        ({"model": "BERT"}, "model 'BERT' needs a sequence length such as 1K"),
        ({"sizes": {"P": 0}}, "sizes: rank P must be a positive integer, found 0"),
        ({"sizes": "P=1,M=x"}, "sizes: rank M: sequence length 'x' is not a number like 1024, 1K, 64K or 1M"),
        ({"sizes": ","}, "sizes: ',' gives no RANK=SIZE pair"),
    ],
)
def test_workload_errors(kwargs, message) -> None:  # type: ignore[no-untyped-def]
    import sim

    with pytest.raises(ConfigError, match=re_escape(message)):
        sim.workload(**kwargs)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


def test_bad_points_are_refused_before_any_work() -> None:
    bad = {
        **SPEC,
        "params": {"array_dim": [16], "buffer_bytes": ["biggest"]},
        "workloads": [{"model": "BERT", "seq": "1K", "heads": 2}, {"model": "BERT", "seq": "1K"}],
        "cascades": ["attention_1pass"],
    }
    # checked before any point runs, every distinct problem listed
    with pytest.raises(ConfigError) as exc:
        sw.sweep(bad, workers=1)
    assert str(exc.value) == (
        "sweep: 2 of 2 points cannot run; nothing was run:\n"
        "  point 0: sweep: a workload takes model, seq, batch and sizes; found ['heads']\n"
        "  point 1: sweep: buffer_bytes 'biggest' is neither a size nor a rule (fusemax-fig12)"
    )
    with pytest.raises(ConfigError, match="sweep: 'workloads' must list at least one entry"):
        sw.points({**SPEC, "workloads": []})
    with pytest.raises(ConfigError, match="sweep: params must map a parameter to a list of values, found"):
        sw.points({**SPEC, "params": [16]})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("options: {objectiv: edp}", "options: unknown option 'objectiv'; did you mean 'objective'?"),
        ("options: true", "sweep: options must map option names to values"),
        ("options: {objective: 5}", "options: a value has the wrong type"),
        ("workloads: [-1]", "sweep: a workload is a mapping"),
        ("workloads: [{sizes: 7}]", "a workload's sizes are"),
        ("workloads: [{model: {a: 1}}]", "a workload's model is a name"),
        ("params: {array_dim: [null]}", "fusemax: array_dim must be an integer, found None"),
        ("cascades: [missing.ein]", "cannot read cascade file 'missing.ein'"),
        (
            "params: {array_dm: [64]}",
            "preset 'fusemax' has no parameter 'array_dm'; did you mean 'array_dim'?",
        ),
        ("params: {array_dim: [-4]}", "fusemax: array_dim must be positive, found -4"),
    ],
)
def test_a_sweep_spec_is_checked_point_by_point_before_any_work(
    change: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = {
        "name": "t",
        "arch": "fusemax",
        "params": "params: {array_dim: [64]}",
        "workloads": "workloads: [{model: BERT, seq: 1K}]",
        "cascades": "cascades: [attention_1pass]",
        "options": "",
    }
    key = change.split(":")[0]
    base[key] = change
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: t\narch: fusemax\n"
        + "\n".join(v for k, v in base.items() if k not in ("name", "arch") and v)
        + "\n"
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert not (tmp_path / "o" / "store").exists() or not any((tmp_path / "o" / "store").iterdir())


def test_a_sweep_whose_points_fail_exits_1_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "s.yaml"
    # a workload without E and F: set up, but no schedule can be searched
    spec.write_text(
        "name: t\narch: fusemax\nparams: {array_dim: [16]}\nworkloads: [{sizes: 'P=16,M=64'}]\n"
        "cascades: [attention_1pass]\n"
    )
    assert main(["sweep", str(spec), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "einforge sweep: 1 of 1 point(s) could not run" in err


def test_the_store_verifies_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec = {
        **SPEC,
        "params": {"array_dim": [16, 32]},
        "cascades": ["attention_1pass"],
        "workloads": SPEC["workloads"][:1],
    }
    first = sw.sweep(spec, out=tmp_path, workers=1)
    files = sorted((tmp_path / "store").glob("*.json"))
    assert len(files) == 2
    a, b = (f.read_text() for f in files)
    # swapped files, an edited latency, and files holding null or []
    files[0].write_text(b)
    files[1].write_text(a)
    again = sw.sweep(spec, out=tmp_path, workers=1)
    assert again.computed == 2 and again.rows == first.rows
    assert "holds another point" in caplog.text
    data = json.loads(files[0].read_text())
    data["row"]["latency_s"] *= 2
    files[0].write_text(json.dumps(data))
    files[1].write_text("null")
    caplog.clear()
    third = sw.sweep(spec, out=tmp_path, workers=1)
    assert third.computed == 2 and third.rows == first.rows
    assert "edited since it was written" in caplog.text and "malformed" in caplog.text
    files[1].write_text("[]")
    assert sw.sweep(spec, out=tmp_path, workers=1).computed == 1
    assert sw.sweep(spec, out=tmp_path, workers=1).computed == 0  # and all good again


@pytest.mark.parametrize("content", ["null", "[]", "{not json", "NEGATIVE", "NAN"])
def test_a_damaged_rtl_area_cache_is_rebuilt(
    content: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import einforge.rtlflow.area as ra
    import einforge.rtlflow.check as rc
    from rtl import blocks

    cache = tmp_path / "rtl-area.json"
    key = json.dumps({"block": "array1d", **blocks.resolve("array1d", {"pes": 1})}, sort_keys=True)
    if content in ("NEGATIVE", "NAN"):
        content = json.dumps({key: -5.0 if content == "NEGATIVE" else float("nan")})
    cache.write_text(content)
    monkeypatch.setattr(ra, "CACHE", cache)
    monkeypatch.setattr(rc, "area", lambda block, params: {"area_um2": 1234.5})
    assert ra.pe_area_um2("array1d") == 1234.5
    assert json.loads(cache.read_text())[key] == 1234.5


def test_files_written_are_readable_by_others(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        sw.write_atomic(tmp_path / "r.csv", "a,b\n")
    finally:
        os.umask(old)
    assert (tmp_path / "r.csv").stat().st_mode & 0o777 == 0o644


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads children from /proc")
def test_pool_workers_exit_when_the_sweep_is_killed(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    code = (
        "import sys; from sim import sweep as sw; "
        "spec = {'name': 'o', 'arch': 'fusemax', 'params': {'array_dim': [16, 32, 64, 128], "
        "'buffer_bytes': [2**20, 2**22, 2**24, 2**26]}, 'workloads': [{'model': 'BERT', 'seq': s} "
        "for s in ('1K', '4K', '16K', '64K')], 'cascades': ['attention_1pass', 'attention_3pass']}; "
        "sw.sweep(spec, out=sys.argv[1], workers=2)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "o")])
    children: list[int] = []
    for _ in range(100):  # wait for the pool
        time.sleep(0.1)
        for t in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            children += [int(c) for c in t.read_text().split()]
        if len(children) >= 2:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert children, "the sweep started no pool"
    deadline = time.time() + 10
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.2)
        alive = [c for c in children if _running(c)]
    for c in alive:
        os.kill(c, signal.SIGKILL)
    assert not alive, f"pool workers {alive} outlived the killed sweep"


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def test_pareto_treats_noise_as_equal() -> None:
    rows = [
        {"latency_s": 1.0, "energy_pj": 1.0 + 2e-11},
        {"latency_s": 1.0 + 2e-11, "energy_pj": 1.0},
        {"latency_s": 2.0, "energy_pj": 0.5},
        {"latency_s": 2.0, "energy_pj": 0.7},
    ]
    assert sw.pareto(rows) == [0, 2]  # 1 is 0 within noise; 3 is dominated by 2
    assert sw.pareto(rows, rel_tol=0.0) == [0, 1, 2]


@pytest.mark.slow  # CI's slow step runs it (.ci/run)
def test_a_sweep_over_several_architecture_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import mapper

    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    mapper.fusemax(array_dim=16).save(a)
    mapper.flat(array_dim=16).save(b)
    spec = {
        "name": "m",
        "arch": [str(a), str(b)],
        "workloads": [{"model": "BERT", "seq": "1K"}],
        "cascades": ["attention_1pass"],
    }
    rows = sw.sweep(spec, workers=1).rows
    assert [r["arch"] for r in rows] == [str(a), str(b)] and all(not r["error"] for r in rows)
    with pytest.raises(
        ConfigError, match=r"sweep: arch is a preset or an architecture file, or a list of them"
    ):
        sw.points({**spec, "arch": [7]})


def test_two_sweeps_into_one_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A sweep holds its folder: a second sweep into it, while the first runs, is a typed error
    naming the first; a lock left by a sweep that died is taken over; the lock goes at the end."""
    import socket

    spec = {
        **SPEC,
        "params": {"array_dim": [16]},
        "cascades": ["attention_1pass"],
        "workloads": SPEC["workloads"][:1],
    }
    lock = tmp_path / sw.LOCK
    # a live sweep: a process that is running now
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(f"{sleeper.pid} {socket.gethostname()} 2026-12-07 10:00:00\n")
        with pytest.raises(ConfigError, match=rf"is in use by another sweep \(process {sleeper.pid} on "):
            sw.sweep(spec, out=tmp_path, workers=1)
        assert not (tmp_path / "store").exists()  # refused before any work
    finally:
        sleeper.kill()
        sleeper.wait()
    # the same process id, now gone: the lock is stale
    first = sw.sweep(spec, out=tmp_path, workers=1)
    assert first.computed == 1 and "left by a sweep that is gone" in caplog.text
    assert not lock.exists()


def test_a_sweep_over_fields_of_one_s_own_file(tmp_path: Path) -> None:
    """params of a file sweep its own fields by dotted path (arrays.0.rows, buffer.capacity_bytes),
    and node_nm moves it to another node; a wrong path is a typed error with a did-you-mean."""
    import mapper

    mine = tmp_path / "mine.yaml"
    mapper.fusemax(array_dim=16).save(mine)
    spec = {
        "name": "fields",
        "arch": str(mine),
        "params": {"buffer.capacity_bytes": ["1M", "4M"], "arrays.0.rows": [8], "node_nm": [45, 7]},
        "workloads": [{"model": "BERT", "seq": "1K", "batch": 1}],
        "cascades": ["attention_1pass"],
        "options": {"fusion": "fused"},
    }
    rows = sw.sweep(spec, workers=1).rows
    assert len(rows) == 4 and all(not r["error"] for r in rows)
    archs = [sw._arch(p) for p in sw.points(spec)]
    assert {a.buffer.capacity_bytes for a in archs} == {2**20, 4 * 2**20}
    assert {a.arrays[0].rows for a in archs} == {8} and {a.node_nm for a in archs} == {45.0, 7.0}
    at = {(r["param.node_nm"], r["param.buffer.capacity_bytes"]): r["energy_pj"] for r in rows}
    assert at[(7, 2**20)] < 0.5 * at[(45, 2**20)]
    with pytest.raises(
        ConfigError,
        match=r"params\.buffer\.capacity: .* has no field 'buffer\.capacity'; did you mean 'capacity_bytes'\?",
    ):
        sw.validate(sw.points({**spec, "params": {"buffer.capacity": ["1M"]}}))
    with pytest.raises(
        ConfigError, match=r"params\.arrays\.5\.rows: .* has 2 item\(s\) at arrays; '5' is no index"
    ):
        sw.validate(sw.points({**spec, "params": {"arrays.5.rows": [8]}}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"array_dim": [16], "rf_words": ["deep"]},
            "sweep: rf_words 'deep' is neither a number nor a rule (fusemax-fig12)",
        ),
        (
            {"rf_words": ["fusemax-fig12"]},
            "sweep: rf_words: fusemax-fig12 needs arch: fusemax and an array_dim",
        ),
    ],
)
def test_register_file_rule_errors(params, message) -> None:  # type: ignore[no-untyped-def]
    bad = {**SPEC, "params": params, "cascades": ["attention_1pass"], "workloads": SPEC["workloads"][:1]}
    with pytest.raises(ConfigError, match=re_escape(message)):
        sw.sweep(bad, workers=1)


def test_a_resumed_sweep_removes_a_killed_writer_s_temporary_files(tmp_path: Path) -> None:
    """A sweep killed while writing a point leaves its temporary file (SIGKILL runs no cleanup);
    the next sweep of the folder, holding its lock, removes it and never reads it."""
    spec = {
        **SPEC,
        "params": {"array_dim": [16]},
        "cascades": ["attention_1pass"],
        "workloads": SPEC["workloads"][:1],
    }
    sw.sweep(spec, out=tmp_path, workers=1)
    leftover = tmp_path / "store" / ".0123abcd.json.4242.1.tmp"
    leftover.write_text('{"half": ')
    again = sw.sweep(spec, out=tmp_path, workers=1)
    assert again.reused == 1 and not leftover.exists()
