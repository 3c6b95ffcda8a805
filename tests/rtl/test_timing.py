"""Static timing (rtl.timing) on hand-made netlists, where every path is computed by hand, and a
part's extracted model in its parent against the same design timed flat."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rtl.timing import (
    CLK_TO_Q_NS,
    DELAYS_NS,
    SETUP_NS,
    TimingError,
    critical_path,
    extract_model,
    netlist_graph,
)

INV, NAND, XOR, MUX = (DELAYS_NS[k] for k in ("INV_X1", "NAND2_X1", "XOR2_X1", "MUX2_X1"))


def _cell(kind: str, **pins: list[Any]) -> dict[str, Any]:
    return {"type": kind, "connections": pins, "parameters": {}}


def _module(
    ports: dict[str, tuple[str, list[int]]], cells: dict[str, Any], names: dict[str, list[int]] | None = None
):
    return {
        "ports": {n: {"direction": d, "bits": b} for n, (d, b) in ports.items()},
        "cells": cells,
        "netnames": {n: {"bits": b} for n, b in (names or {}).items()},
    }


def _pipeline() -> dict[str, Any]:
    """in a -> INV -> NAND(with register q1) -> register q2; q2 -> XOR(b) -> out y."""
    return {
        "modules": {
            "top": _module(
                {"clk": ("input", [1]), "a": ("input", [2]), "b": ("input", [3]), "y": ("output", [9])},
                {
                    "r1": _cell("DFF_X1", CK=[1], D=[2], Q=[4]),
                    "i": _cell("INV_X1", A=[2], Y=[5]),
                    "n": _cell("NAND2_X1", A=[5], B=[4], Y=[6]),
                    "r2": _cell("DFF_X1", CK=[1], D=[6], Q=[7]),
                    "x": _cell("XOR2_X1", A=[7], B=[3], Y=[9]),
                },
                {"q1": [4], "q2": [7]},
            )
        }
    }


def test_paths_add_the_cells_delays() -> None:
    g = netlist_graph(_pipeline(), "top")
    ns, path = critical_path(g)
    # the design's ports are registers outside it: a -> INV -> NAND -> q2, or q2 (or b) -> XOR -> y
    assert ns == pytest.approx(max(CLK_TO_Q_NS + INV + NAND + SETUP_NS, CLK_TO_Q_NS + XOR + SETUP_NS))
    assert path[-1] == "-> an output"
    assert critical_path(g, top=False)[0] == pytest.approx(CLK_TO_Q_NS + NAND + SETUP_NS)
    m = extract_model(g)
    assert m.reg2reg == pytest.approx(CLK_TO_Q_NS + NAND + SETUP_NS)  # q1 -> NAND -> q2
    assert m.reg2out["y"] == [pytest.approx(CLK_TO_Q_NS + XOR)]
    assert m.in2reg["a"] == [pytest.approx(max(SETUP_NS, INV + NAND + SETUP_NS))]
    assert m.in2out_bit["y"] == {"b": [pytest.approx(XOR)]}
    assert m.in2out_port["b"] == {"y": [pytest.approx(XOR)]}
    assert "a" not in m.in2out_port or "y" not in m.in2out_port["a"]


def test_a_part_in_its_parent_times_like_the_flat_design() -> None:
    """The pipeline as a part, its output y feeding an INV into a parent register, and its input
    a driven by the parent's register through a NAND: the parent's paths across the part equal
    those of the same cells timed flat."""
    part = extract_model(netlist_graph(_pipeline(), "top"))
    parent = {
        "modules": {
            "p": _module(
                {"clk": ("input", [1]), "c": ("input", [2])},
                {
                    "r0": _cell("DFF_X1", CK=[1], D=[2], Q=[3]),
                    "n0": _cell("NAND2_X1", A=[3], B=[3], Y=[4]),
                    "u": _cell("pipe", clk=[1], a=[4], b=[3], y=[5]),
                    "i0": _cell("INV_X1", A=[5], Y=[6]),
                    "r9": _cell("DFF_X1", CK=[1], D=[6], Q=[7]),
                },
            )
        }
    }
    ns, _ = critical_path(netlist_graph(parent, "p", {"pipe": part}))
    into = CLK_TO_Q_NS + NAND + INV + NAND + SETUP_NS  # r0 -> n0 -> (part) INV -> NAND -> q2
    out_of = CLK_TO_Q_NS + XOR + INV + SETUP_NS  # (part) q2 -> XOR -> y -> i0 -> r9
    through = CLK_TO_Q_NS + XOR + INV + SETUP_NS  # r0 -> b -> XOR -> y -> i0 -> r9
    assert ns == pytest.approx(max(into, out_of, through))


def test_memory_read_is_a_mux_tree_or_a_register() -> None:
    mem = {
        "type": "$mem_v2",
        "parameters": {"ABITS": "11", "WIDTH": "1", "SIZE": "1000", "RD_PORTS": "10", "RD_CLK_ENABLE": "10"},
        "connections": {
            "RD_ADDR": [2, 3, 2, 3],  # port 0 comb, port 1 clocked
            "RD_DATA": [4, 5],
            "WR_ADDR": [2, 3],
            "WR_DATA": [2],
            "WR_EN": ["1"],
        },
    }
    net = {
        "modules": {
            "m": _module(
                {"a": ("input", [2, 3]), "y": ("output", [6]), "z": ("output", [5])},
                {"mem": mem, "i": _cell("INV_X1", A=[4], Y=[6])},
            )
        }
    }
    m = extract_model(netlist_graph(net, "m"))
    assert m.in2out_port["a"]["y"] == [pytest.approx(math.ceil(math.log2(8)) * MUX + INV)]
    assert m.reg2out["z"] == [pytest.approx(CLK_TO_Q_NS)]  # the clocked port is a register
    assert m.in2reg["a"] == [pytest.approx(SETUP_NS)] * 2  # write and clocked-read addresses


def test_loops_and_unknown_cells_are_typed_errors() -> None:
    loop = {
        "modules": {
            "m": _module(
                {"a": ("input", [2])},
                {"x": _cell("NAND2_X1", A=[2], B=[4], Y=[3]), "y": _cell("INV_X1", A=[3], Y=[4])},
                {"n": [3]},
            )
        }
    }
    with pytest.raises(TimingError, match="a combinational loop through"):
        critical_path(netlist_graph(loop, "m"))
    odd = {"modules": {"m": _module({}, {"c": _cell("AOI21_X1", A=[1], Y=[2])})}}
    with pytest.raises(TimingError, match="cell c of type 'AOI21_X1' has no delay"):
        netlist_graph(odd, "m")
    with pytest.raises(TimingError, match="the netlist has no module 'x'"):
        netlist_graph(odd, "x")
