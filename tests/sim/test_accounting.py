"""The two accountings: what each switch of ``fusemax-artifact`` changes, on hand-checkable cases."""

from __future__ import annotations

import dataclasses

import pytest

import einsum
import mapper
import sim
from einsum.errors import ConfigError
from mapper.search import SearchOptions, search

W = sim.workload("BERT", "1K")


def _eval(cascade: str, arch: mapper.ArchSpec, acct: str | sim.Accounting, **kw) -> sim.Report:
    c = einsum.library.get(cascade)
    s = search(c, arch, SearchOptions(fusion="fused", sizes=W.sizes))
    return sim.evaluate(c, s, arch, W, accounting=acct, **kw)


def test_unknown_accounting_is_a_typed_error():
    with pytest.raises(
        ConfigError,
        match=r"unknown accounting 'fusemax_artifact'; did you mean "
        r"'fusemax-artifact'\? \(expected one of physical, fusemax-artifact\)",
    ):
        sim.accounting("fusemax_artifact")


def test_rf_one_instance_divides_register_energy_by_the_pes():
    arch = mapper.fusemax()
    phys = _eval("attention_1pass", arch, "physical")
    one = _eval("attention_1pass", arch, sim.Accounting(name="rf", rf_one_instance=True))
    assert one.per_component_pj["2d.rf"] == pytest.approx(phys.per_component_pj["2d.rf"] / (256 * 256))
    assert one.energy_pj == pytest.approx(phys.energy_pj - phys.per_component_pj["2d.rf"] * (1 - 1 / 65536))


def test_exp_unit_unpriced_only_with_running_state():
    arch = mapper.flat()
    acct = sim.Accounting(name="exp", exp_unit_unpriced_one_pass=True)
    one_pass = _eval("attention_1pass", arch, acct)
    assert one_pass.per_component_pj["1d.exp"] == 0
    assert _eval("attention_1pass", arch, "physical").per_component_pj["1d.exp"] > 0
    # the 3-pass cascade (FLAT's) is charged in either accounting, as the artifact does
    three = _eval("attention_3pass", arch, acct)
    assert three.per_component_pj["1d.exp"] == pytest.approx(64 * 12 * 1024 * 1024 * arch.energy.exp_pj)


def test_summed_op_cycles_charge_subtract_then_exp_twice():
    arch = mapper.flat()
    phys = _eval("attention_1pass", arch, "physical")
    summed = _eval("attention_1pass", arch, sim.Accounting(name="sum", summed_op_cycles_one_pass=True))
    # SLN = exp(QK - RM) on the 1D array: one cycle per element with separate units, two summed
    assert summed.per_einsum["SLN"]["cycles_per_tile"] == 2 * phys.per_einsum["SLN"]["cycles_per_tile"]
    assert summed.latency_s > 1.2 * phys.latency_s
    # a 3-pass cascade has no running state: unchanged
    assert (
        _eval("attention_3pass", arch, sim.Accounting(name="sum", summed_op_cycles_one_pass=True)).latency_s
        == _eval("attention_3pass", arch, "physical").latency_s
    )


def test_buffer_one_port_one_bank_prices_the_declared_geometry_as_the_artifact_did():
    declared = mapper.fusemax().replace(
        buffer=dataclasses.replace(mapper.fusemax().buffer, ports=4, banks=32)
    )
    phys = _eval("attention_1pass", declared, "physical")
    quirk = _eval("attention_1pass", declared, sim.Accounting(name="b", buffer_one_port_one_bank=True))
    plain = _eval("attention_1pass", mapper.fusemax(), "physical")
    assert quirk.per_component_pj["buffer"] == pytest.approx(plain.per_component_pj["buffer"])
    # four ports on each of 32 banks: CACTI prices each 4096-bit access about 20x higher
    assert phys.per_component_pj["buffer"] > 15 * plain.per_component_pj["buffer"]


def test_leakage_is_buffer_leakage_over_the_latency():
    arch = mapper.fusemax()
    r = _eval("attention_1pass", arch, "physical", leakage=True)
    leak_mw = arch.buffer.costs(16).leakage_mw
    assert r.per_component_pj["buffer.leakage"] == pytest.approx(leak_mw * 1e-3 * r.latency_s * 1e12)
    assert r.energy_pj == pytest.approx(sum(r.per_component_pj.values()))
    with pytest.raises(ConfigError, match="charges no leakage"):
        _eval("attention_1pass", arch, "fusemax-artifact", leakage=True)


def test_buffer_energy_is_reads_and_writes_at_the_geometry():
    arch = mapper.flat()
    r = _eval("attention_3pass", arch, "physical")
    c = arch.buffer.costs(16)
    assert r.per_component_pj["buffer"] == pytest.approx(
        r.buffer_reads * c.read_pj_per_word + r.buffer_writes * c.write_pj_per_word
    )
    # per score element at BERT 1K: S read twice (GM, SN), SN once (A; SD sums it as it is made),
    # A once (AV); S, SN and A written once; Q, K, V and the output add 0.5625 reads and 0.25 writes
    scores = W.instances * 1024 * 1024
    assert r.buffer_reads / scores == pytest.approx(4 + 0.5625)
    assert r.buffer_writes / scores == pytest.approx(3 + 0.25)


def test_a_report_below_the_compulsory_traffic_fails_its_self_check(monkeypatch):
    import sim.model
    from mapper.cost import Traffic

    monkeypatch.setattr(
        sim.model, "traffic", lambda *a, **k: Traffic(dram_bytes=(0.0,), buffer_reads=0.0, buffer_writes=0.0)
    )
    with pytest.raises(
        sim.EvaluationError,
        match=r"report failed its self-checks: DRAM traffic 0.0 bytes is "
        r"below the compulsory .* \(every input read once, every "
        r"output written once\); buffer reads 0.0 / writes 0.0 are "
        r"below the compulsory",
    ):
        _eval("attention_1pass", mapper.fusemax(), "physical")


def test_scaling_unpriced_drops_the_scale_multiply_only():
    # the artifact's cascades have no 1/sqrt(E): one multiply per score element is not charged
    acct = sim.Accounting(name="s", scaling_unpriced=True)
    for cascade, arch, component in (
        ("attention_3pass", mapper.flat(), "2d.mac"),
        ("attention_1pass", mapper.fusemax(), "2d.mac"),
    ):
        phys = _eval(cascade, arch, "physical")
        free = _eval(cascade, arch, acct)
        scores = W.instances * 1024 * 1024
        assert phys.per_component_pj[component] - free.per_component_pj[component] == pytest.approx(
            scores * arch.energy.mac_pj
        )
        assert free.macs == phys.macs  # the operation counts are the IR's; only their price changes
        assert free.latency_s == phys.latency_s
    from sim.accounting import constant_scalings

    scalings = constant_scalings(einsum.library.get("attention_3pass"))
    with_scale, without = scalings["S"]
    assert with_scale.at({"P": 4, "M": 8, "E": 2, "F": 2})["mac"] == 32 and not any(
        without.at({"P": 4, "M": 8, "E": 2, "F": 2}).values()
    )
