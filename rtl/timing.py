"""Static timing of synthesised netlists, flat or by parts, in the shipped cells' delays: Fmax.

**Cell delays.** :data:`DELAYS_NS` gives each generic 45 nm cell (``rtl/cells/generic45.lib``) one
delay: the NanGate 45 nm Open Cell Library's typical corner (1.1 V, 25 C; the liberty file
``Nangate45_typ.lib`` in The-OpenROAD-Project/OpenROAD, ``test/Nangate45/``), the X1 cell's
``cell_rise``/``cell_fall`` table at an input slew of 17.2 ps and the table's load nearest 3.5 fF
(about two X1 inputs and a short wire), the worst of its arcs and edges. ``OR2_X1`` was not read
from the library: it is NOR2_X1 (at 1.7 fF) driving INV_X1 (at 3.8 fF), the cell's structure. A
flip-flop adds its clock-to-Q (96.7 ps) before a path and its setup (39.8 ps) after. Delays do not
depend on the actual load or slew here, and wires are free: this is a logic-depth estimate in
real cells' delays, optimistic for long wires and high fan-outs, not a sign-off timing.

**The timing graph.** :func:`netlist_graph` reads yosys' JSON netlist (``write_json``) after the
liberty mapping: cells of the library, ``$mem_v2`` memories priced apart (a synchronous read port
is a register; a combinational one a tree of ``ceil(log2 depth)`` MUX2 from its address; writes
end paths) and instances of parts whose :class:`TimingModel` is given.

**Extracted models.** :func:`extract_model` abstracts a part: the longest register-to-register
path inside it, the arrival at each output bit from its registers, the requirement each input bit
carries to its registers, and the combinational delay from each input bit to each output port and
from each input port to each output bit. A parent's graph uses the model in the part's place, so
the parts' paths that cross their ports are timed across them exactly at the bit where they cross
(:func:`compose_grid` builds the 2D array's model from one PE's and one column's this way).
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rtl.runner import SimulatorError

__all__ = [
    "CLK_TO_Q_NS",
    "DELAYS_NS",
    "SETUP_NS",
    "Graph",
    "TimingError",
    "TimingModel",
    "compose_grid",
    "critical_path",
    "extract_model",
    "netlist_graph",
]

#: Each combinational cell's delay (ns), NanGate45 typical X1 (see the module's text).
DELAYS_NS: dict[str, float] = {
    "INV_X1": 0.0223,
    "BUF_X1": 0.0350,
    "NAND2_X1": 0.0258,
    "NOR2_X1": 0.0399,
    "AND2_X1": 0.0396,
    "OR2_X1": 0.0537,
    "XOR2_X1": 0.0613,
    "XNOR2_X1": 0.0460,
    "MUX2_X1": 0.0670,
}
CLK_TO_Q_NS = 0.0967  # DFF_X1, CK -> Q
SETUP_NS = 0.0398  # DFF_X1, D before CK
NEG = -math.inf


class TimingError(SimulatorError):
    """A netlist the timing cannot read: an unknown cell, a combinational loop (an einforge error:
    the command line reports it without a traceback)."""


@dataclass
class TimingModel:
    """A part's timing at its ports (ns). ``reg2reg``: its longest internal register-to-register
    path (clock-to-Q and setup included); ``reg2out[port][bit]``: the arrival at an output bit
    from its registers (clock-to-Q included); ``in2reg[port][bit]``: the delay from an input bit
    to its registers (setup included); ``in2out_bit[out][in][bit]``: from input bit to output port;
    ``in2out_port[in][out][bit]``: from input port to output bit. ``-inf``: no path."""

    reg2reg: float
    reg2out: dict[str, list[float]]
    in2reg: dict[str, list[float]]
    in2out_bit: dict[str, dict[str, list[float]]]
    in2out_port: dict[str, dict[str, list[float]]]
    widths: dict[str, tuple[str, int]] = field(default_factory=dict)  # port -> (direction, width)

    def to_dict(self) -> dict[str, Any]:
        def r(v: Any) -> Any:
            if isinstance(v, float):
                return None if v == NEG else round(v, 5)
            if isinstance(v, dict):
                return {k: r(x) for k, x in v.items()}
            if isinstance(v, list | tuple):
                return [r(x) for x in v]
            return v

        return {
            "reg2reg": r(self.reg2reg),
            "reg2out": r(self.reg2out),
            "in2reg": r(self.in2reg),
            "in2out_bit": r(self.in2out_bit),
            "in2out_port": r(self.in2out_port),
            "widths": {k: list(v) for k, v in self.widths.items()},
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimingModel:
        def r(v: Any) -> Any:
            if v is None:
                return NEG
            if isinstance(v, dict):
                return {k: r(x) for k, x in v.items()}
            if isinstance(v, list):
                return [r(x) for x in v]
            return float(v)

        return cls(
            r(d["reg2reg"]),
            r(d["reg2out"]),
            r(d["in2reg"]),
            r(d["in2out_bit"]),
            r(d["in2out_port"]),
            {k: (v[0], int(v[1])) for k, v in d.get("widths", {}).items()},
        )


@dataclass
class Graph:
    """A timing graph over nodes (net bits and a few virtual nodes): ``edges[u] = [(v, d)]``;
    ``sources[u]``: an arrival a register launches there; ``ends[u]``: what a path ending at ``u``
    adds (a setup, a part's input requirement); ``inputs``/``outputs``: the module's port bits;
    ``names``: a readable name for some nodes."""

    edges: dict[Any, list[tuple[Any, float]]] = field(default_factory=lambda: defaultdict(list))
    sources: dict[Any, float] = field(default_factory=dict)
    ends: dict[Any, float] = field(default_factory=dict)
    inputs: dict[str, list[Any]] = field(default_factory=dict)
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    names: dict[Any, str] = field(default_factory=dict)
    end_names: dict[Any, str] = field(default_factory=dict)
    _order: list[Any] | None = None

    def edge(self, u: Any, v: Any, d: float) -> None:
        if d != NEG and u != v:
            self.edges[u].append((v, d))
            self._order = None

    def source(self, u: Any, t: float) -> None:
        if t != NEG:
            self.sources[u] = max(self.sources.get(u, NEG), t)

    def end(self, u: Any, extra: float) -> None:
        if extra != NEG:
            self.ends[u] = max(self.ends.get(u, NEG), extra)

    def order(self) -> list[Any]:
        """The nodes in topological order (raises on a combinational loop)."""
        if self._order is not None:
            return self._order
        indeg: dict[Any, int] = defaultdict(int)
        nodes = set(self.edges) | set(self.sources) | set(self.ends)
        for outs in self.edges.values():
            for v, _ in outs:
                indeg[v] += 1
                nodes.add(v)
        for bits in (*self.inputs.values(), *self.outputs.values()):
            nodes.update(bits)
        queue = deque(u for u in nodes if indeg[u] == 0)
        out = []
        while queue:
            u = queue.popleft()
            out.append(u)
            for v, _ in self.edges.get(u, ()):
                indeg[v] -= 1
                if indeg[v] == 0:
                    queue.append(v)
        if len(out) != len(nodes):
            loop = sorted((self.names.get(u, str(u)) for u in nodes if indeg[u] > 0), key=str)[:8]
            raise TimingError(f"timing: a combinational loop through {', '.join(loop)}")
        self._order = out
        return out

    def forward(self, start: Mapping[Any, float], *, registers: bool) -> dict[Any, float]:
        """Latest arrival at each node from ``start`` (and the registers' launches if asked)."""
        arr: dict[Any, float] = defaultdict(lambda: NEG)
        for u, t in start.items():
            arr[u] = max(arr[u], t)
        if registers:
            for u, t in self.sources.items():
                arr[u] = max(arr[u], t)
        for u in self.order():
            a = arr[u]
            if a == NEG:
                continue
            for v, d in self.edges.get(u, ()):
                if a + d > arr[v]:
                    arr[v] = a + d
        return arr

    def backward(self, targets: Mapping[Any, float]) -> dict[Any, float]:
        """Longest delay from each node to any of ``targets`` (plus the target's own value)."""
        dist: dict[Any, float] = defaultdict(lambda: NEG)
        for u, t in targets.items():
            dist[u] = max(dist[u], t)
        for u in reversed(self.order()):
            best = dist[u]
            for v, d in self.edges.get(u, ()):
                if dist[v] != NEG and d + dist[v] > best:
                    best = d + dist[v]
            dist[u] = best
        return dist


def _int(v: Any) -> int:
    return int(v, 2) if isinstance(v, str) else int(v)


def netlist_graph(
    netlist: Mapping[str, Any], top: str, models: Mapping[str, TimingModel] | None = None
) -> Graph:
    """The timing graph of module ``top`` of a yosys JSON netlist (see the module's text)."""
    models = dict(models or {})
    try:
        mod = netlist["modules"][top]
    except KeyError:
        raise TimingError(f"timing: the netlist has no module {top!r}") from None
    g = Graph()
    for name, p in mod["ports"].items():
        # a constant bit keeps its place as a node nothing reaches
        bits = [b if isinstance(b, int) else ("const", name, i) for i, b in enumerate(p["bits"])]
        (g.inputs if p["direction"] == "input" else g.outputs)[name] = bits
    for name, n in mod.get("netnames", {}).items():
        name = name.lstrip("\\")
        if name.startswith("$") or "$" in name.split(".")[-1]:
            continue
        for i, b in enumerate(n["bits"]):
            if isinstance(b, int) and b not in g.names:
                g.names[b] = f"{name}[{i}]" if len(n["bits"]) > 1 else name
    mux = DELAYS_NS["MUX2_X1"]
    for cname, cell in mod["cells"].items():
        kind, conn = cell["type"], cell["connections"]
        if kind in DELAYS_NS:
            (y,) = [b for b in conn["Y"]]
            for pin, bits in conn.items():
                if pin != "Y":
                    for b in bits:
                        if isinstance(b, int) and isinstance(y, int):
                            g.edge(b, y, DELAYS_NS[kind])
        elif kind == "DFF_X1":
            (d,), (q,) = conn["D"], conn["Q"]
            if isinstance(d, int):
                g.end(d, SETUP_NS)
                g.end_names[d] = ("register " + g.names[q]) if q in g.names else "a register"
            if isinstance(q, int):
                g.source(q, CLK_TO_Q_NS)
        elif kind == "$mem_v2":
            prm = cell["parameters"]
            abits, width, size = _int(prm["ABITS"]), _int(prm["WIDTH"]), _int(prm["SIZE"])
            ports, clocked = _int(prm["RD_PORTS"]), str(prm.get("RD_CLK_ENABLE", "0"))
            tree = max(1, math.ceil(math.log2(max(size, 2)))) * mux
            for i in range(ports):
                addr = conn["RD_ADDR"][i * abits : (i + 1) * abits]
                data = conn["RD_DATA"][i * width : (i + 1) * width]
                sync = len(clocked) > i and clocked[len(clocked) - 1 - i] == "1"
                for b in addr:
                    if not isinstance(b, int):
                        continue
                    if sync:
                        g.end(b, SETUP_NS)
                    else:
                        for q in data:
                            if isinstance(q, int):
                                g.edge(b, ("mem", cname, i), tree)
                for q in data:
                    if isinstance(q, int):
                        if sync:
                            g.source(q, CLK_TO_Q_NS)
                        else:
                            g.edge(("mem", cname, i), q, 0.0)
            for pin in ("WR_ADDR", "WR_DATA", "WR_EN"):
                for b in conn.get(pin, ()):
                    if isinstance(b, int):
                        g.end(b, SETUP_NS)
                        g.end_names[b] = f"a write to memory {cname.lstrip(chr(92))}"
        elif kind in models:
            _instance(g, cname, conn, models[kind])
            for port in models[kind].in2reg:
                for b in conn.get(port, ()):
                    if isinstance(b, int):
                        g.end_names.setdefault(b, f"{cname.lstrip(chr(92))}.{port} (into the part)")
        elif kind in ("$scopeinfo",):
            continue
        else:
            raise TimingError(
                f"timing: cell {cname} of type {kind!r} has no delay (not a cell of the library)"
            )
    return g


def _instance(g: Graph, cname: str, conn: Mapping[str, list[Any]], m: TimingModel) -> None:
    """A part's instance in its parent's graph: its registers' arrivals at its outputs, its
    inputs' requirements, and its combinational paths through one virtual node per output port."""
    for port, per_bit in m.reg2out.items():
        for b, t in zip(conn.get(port, ()), per_bit, strict=False):
            if isinstance(b, int):
                g.source(b, t)
    for port, per_bit in m.in2reg.items():
        for b, t in zip(conn.get(port, ()), per_bit, strict=False):
            if isinstance(b, int):
                g.end(b, t)
    for out, by_in in m.in2out_bit.items():
        hub = ("out", cname, out)
        for inp, per_bit in by_in.items():
            for b, t in zip(conn.get(inp, ()), per_bit, strict=False):
                if isinstance(b, int):
                    g.edge(b, hub, t)
        for q in conn.get(out, ()):
            if isinstance(q, int):
                g.edge(hub, q, 0.0)


def extract_model(g: Graph, widths: Mapping[str, tuple[str, int]] | None = None) -> TimingModel:
    """A part's :class:`TimingModel` from its graph (one pass per input port, one per output port)."""
    regs = g.forward({}, registers=True)
    reg2reg = max((regs[u] + e for u, e in g.ends.items() if regs[u] != NEG), default=NEG)
    reg2out = {p: [regs[b] for b in bits] for p, bits in g.outputs.items()}
    to_regs = g.backward(g.ends)
    in2reg = {p: [to_regs[b] for b in bits] for p, bits in g.inputs.items()}
    in2out_bit: dict[str, dict[str, list[float]]] = {}
    for out, obits in g.outputs.items():
        dist = g.backward({b: 0.0 for b in obits})
        by_in = {p: [dist[b] for b in bits] for p, bits in g.inputs.items()}
        in2out_bit[out] = {p: v for p, v in by_in.items() if any(x != NEG for x in v)}
    in2out_port: dict[str, dict[str, list[float]]] = {}
    for inp, ibits in g.inputs.items():
        arr = g.forward({b: 0.0 for b in ibits}, registers=False)
        by_out = {p: [arr[b] for b in bits] for p, bits in g.outputs.items()}
        in2out_port[inp] = {p: v for p, v in by_out.items() if any(x != NEG for x in v)}
    if widths is None:
        widths = {p: ("input", len(b)) for p, b in g.inputs.items()}
        widths.update({p: ("output", len(b)) for p, b in g.outputs.items()})
    return TimingModel(reg2reg, reg2out, in2reg, in2out_bit, in2out_port, dict(widths))


def critical_path(g: Graph, *, top: bool = True) -> tuple[float, list[str]]:
    """The longest path to an endpoint, and the names of the named nets along it. ``top``: the
    design's own ports are registers outside it (inputs launch at clock-to-Q, outputs end with a
    setup); else they are not timed."""
    start = {b: CLK_TO_Q_NS for bits in g.inputs.values() for b in bits} if top else {}
    ends = dict(g.ends)
    if top:
        for bits in g.outputs.values():
            for b in bits:
                ends[b] = max(ends.get(b, NEG), SETUP_NS)
    arr: dict[Any, float] = defaultdict(lambda: NEG)
    pred: dict[Any, Any] = {}
    for u, t in start.items():
        arr[u] = t
    for u, t in g.sources.items():
        arr[u] = max(arr[u], t)
    for u in g.order():
        a = arr[u]
        if a == NEG:
            continue
        for v, d in g.edges.get(u, ()):
            if a + d > arr[v]:
                arr[v] = a + d
                pred[v] = u
    best, end = NEG, None
    for u, e in ends.items():
        if arr[u] != NEG and arr[u] + e > best:
            best, end = arr[u] + e, u
    path: list[str] = []
    u = end
    while u is not None:
        if u in g.names and (not path or path[-1] != g.names[u]):
            path.append(g.names[u])
        u = pred.get(u)
    path.reverse()
    if end is not None:
        path.append("-> " + g.end_names.get(end, g.names.get(end, "an output")))
    return best, path


def compose_grid(pe: TimingModel, col: TimingModel, *, rows: int) -> TimingModel:
    """The 2D array's model (:class:`rtl.tile.Grid2D`): ``rows`` PEs feeding one column, the
    array's other columns being copies (the model's column ports are column 0's; the row ports
    are the whole array's). Built as a graph of the two models and extracted like a netlist."""
    g = Graph()
    nxt = iter(range(1 << 62))
    bus: dict[str, list[int]] = {}

    def bits(name: str, n: int) -> list[int]:
        if name not in bus:
            bus[name] = [next(nxt) for _ in range(n)]
        return bus[name]

    pw = {p: w for p, (_, w) in pe.widths.items()}
    cw = {p: w for p, (_, w) in col.widths.items()}
    per_row = {"k", "v", "bank_max"}
    shared = {"op", "first", "step", "q", "rm", "bank_w", "bank_r"}
    for p in shared:
        g.inputs[p] = bits(p, pw[p])
    for p in per_row:
        g.inputs[p] = bits(p, pw[p] * rows)
    links = {"max_score": "scores", "sln": "sln", "prod": "prods"}
    for r in range(rows):
        conn: dict[str, list[Any]] = {}
        for p in shared:
            conn[p] = bus[p]
        for p in per_row:
            conn[p] = bus[p][r * pw[p] : (r + 1) * pw[p]]
        for o, c in links.items():
            w = pw[o]
            conn[o] = bits(c, cw[c])[r * w : (r + 1) * w]
        _instance(g, f"pe{r}", conn, pe)
    cconn = {c: bus[c] for c in links.values()}
    for o in ("max", "sld", "dot"):
        cconn[o] = bits("col_" + o, cw[o])
        g.outputs[o] = cconn[o]
    _instance(g, "col", cconn, col)
    widths = {p: ("input", len(b)) for p, b in g.inputs.items()}
    widths.update({p: ("output", len(b)) for p, b in g.outputs.items()})
    m = extract_model(g, widths)
    m.reg2reg = max(m.reg2reg, pe.reg2reg, col.reg2reg)
    return m


def widen(m: TimingModel, ports: Iterable[str], copies: int) -> TimingModel:
    """``m`` with ``ports`` repeated ``copies`` times (identical copies side by side: the 2D
    array's column ports across all its columns)."""
    ports = set(ports)

    def w(d: dict[str, list[float]]) -> dict[str, list[float]]:
        return {p: v * copies if p in ports else v for p, v in d.items()}

    return TimingModel(
        m.reg2reg,
        w(m.reg2out),
        w(m.in2reg),
        {o: w(by) for o, by in m.in2out_bit.items()},
        {i: w(by) for i, by in m.in2out_port.items()},
        {p: (d, n * copies if p in ports else n) for p, (d, n) in m.widths.items()},
    )
