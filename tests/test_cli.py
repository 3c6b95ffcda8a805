"""The command line: demo, show, check, run; errors print one line, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import einsum
from einforge.cli import main


def test_demo_checks_every_library_cascade(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "attention_1pass: 17 statements, 1 pass(es) over M" in out
    assert "attention_3pass: 7 statements, 3 pass(es) over M" in out
    assert "attention_2pass_causal: 12 statements, 2 pass(es) over M" in out
    assert "golden vs direct NumPy causal attention" in out
    assert "27 of 27 cascades agree with NumPy" in out
    assert "spatten_token_pruning: 11 statements, 4 pass(es) over M" in out
    assert "FAIL" not in out


def test_show_prints_canonical_text_passes_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "attention_2pass"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("cascade attention_2pass\n")
    assert "passes over M: 2" in out
    assert "BQK[p, m1, m0]         mac=E*M0*M1*P + M0*M1*P" in out


def test_check_reports_every_problem_with_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "good.ein", tmp_path / "bad.ein"
    good.write_text("input A[m, k], B[k, n]\noutput Z\nZ[m, n] = A[m, k] * B[k, n]\n")
    bad.write_text("input A[m, k]\noutput Z\nZ[m, n] = A[m]\n")
    assert main(["check", str(good), str(bad)]) == 1
    captured = capsys.readouterr()
    assert f"{good}: ok (1 statements, outputs Z)" in captured.out
    assert (
        f"{bad}: ill-formed cascade:\n  - einsums[0] Z[m, n] (line 3): reads A[m] with 1 index(es)"
        in captured.err
    )


def test_run_evaluates_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    np.save(tmp_path / "a.npy", np.eye(2))
    np.save(tmp_path / "b.npy", np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert (
        main(
            [
                "run",
                "matmul",
                "-i",
                f"A={tmp_path / 'a.npy'}",
                "-i",
                f"B={tmp_path / 'b.npy'}",
                "-o",
                str(tmp_path / "out.npz"),
            ]
        )
        == 0
    )
    np.testing.assert_array_equal(np.load(tmp_path / "out.npz")["Z"], [[1, 2], [3, 4]])


def test_errors_are_one_line_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "einforge", "show", "attention_1pas"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "einforge: error: library has no cascade 'attention_1pas'; did you mean "
        "'attention_1pass'? (known: " + ", ".join(einsum.library.names()) + ")\n"
    )


def test_bad_size_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "attention_1pass", "--size", "M0=x"]) == 2
    assert "--size 'M0=x': expected RANK=N with a positive integer N" in capsys.readouterr().err


def test_input_that_is_not_npy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.npy").write_text("not an array")
    assert main(["run", "matmul", "-i", f"A={tmp_path / 'a.npy'}"]) == 2
    assert (
        f"-i 'A={tmp_path / 'a.npy'}': cannot read {tmp_path / 'a.npy'} as a .npy array:"
        in capsys.readouterr().err
    )


def test_show_passes_over_an_unknown_rank(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "matmul", "--passes", "Q"]) == 2
    assert "passes(): rank 'Q' is not a rank of this cascade (ranks: K, M, N)" in capsys.readouterr().err


def test_bad_output_paths_fail_before_the_work(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["compare", "--out", str(blocker / "out"), "--quiet"]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["rtl", "export", "topk", "-o", str(tmp_path / "missing" / "x.v")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["run", "matmul", "-o", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in capsys.readouterr().err


def test_output_cut_short_by_a_closed_pipe_ends_quietly() -> None:
    import subprocess
    import sys

    # the reader exits before einforge writes a byte: every write meets a closed pipe
    code = "import sys, time; time.sleep(0.5); from einforge.cli import main; sys.exit(main(['show', 'attention_1pass']))"
    proc = subprocess.run(
        f'{sys.executable} -c "{code}" | true; echo ${{PIPESTATUS[0]}}',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == "0"
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_compile_and_run_with_the_cpu_backend(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    import numpy as np

    import golden

    assert main(["compile", "sliding_window_attention"]) == 0
    out = capsys.readouterr().out
    assert "template 'softmax'" in out and "where((p >= m) * (p - m < window), qk * scale, -inf)" in out
    assert main(["compile", "routing_attention"]) == 0
    out = capsys.readouterr().out
    assert "templates 'loops + select + softmax': 6 kernels" in out
    assert "3. select: CQ[p, c] as a selection pre-kernel" in out and "the score reads SC" in out
    assert main(["compile", "spatten_progressive_quantization"]) == 0
    assert "no template fits: QQ[p, e] calls the user-defined operator 'qk12'" in capsys.readouterr().out
    rng = np.random.default_rng(2)
    arrays = {"Q": rng.normal(size=(5, 4)), "K": rng.normal(size=(9, 4)), "V": rng.normal(size=(9, 3))}
    args = []
    for name, a in arrays.items():
        np.save(tmp_path / f"{name}.npy", a)
        args += ["-i", f"{name}={tmp_path / name}.npy"]
    assert main(["run", "sigmoid_attention", *args, "--backend", "cpu", "-o", str(tmp_path / "o.npz")]) == 0
    assert "compiled kernel, template 'weighted'" in capsys.readouterr().err
    got = np.load(tmp_path / "o.npz")["AV"]
    want = golden.run(einsum.library.get("sigmoid_attention"), arrays)["AV"]
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_ctrl_c_ends_a_command_with_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import einforge.cli as cli_mod

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    parser = cli_mod._parser()
    args = parser.parse_args(["list"])
    monkeypatch.setattr(args, "func", interrupted)
    monkeypatch.setattr(cli_mod, "_parser", lambda: type("P", (), {"parse_args": lambda self, a: args})())
    assert cli_mod.main(["list"]) == 130
    assert capsys.readouterr().err == "\neinforge: interrupted (list)\n"


def test_the_compile_outputs_shown_in_variants_md_are_current(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/variants.md shows `einforge compile` outputs; they must be what the command prints."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "variants.md").read_text()
    shown = re.findall(r"^\$ einforge compile (\w+)\n((?:(?!\$ ).*\n)+)", doc, re.M)
    assert len(shown) >= 2
    for name, text in shown:
        assert main(["compile", name]) == 0
        assert capsys.readouterr().out == text, name
