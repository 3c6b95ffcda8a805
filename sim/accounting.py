"""How a simulation turns actions into energy and cycles: ``physical`` or ``fusemax-artifact``.

One model, two bookkeepings. ``physical`` (the default) charges what the hardware does: every
register-file access of every PE, every buffer access at the energy of the buffer's geometry (its
width, ports and banks, priced by the SRAM model), the exp unit whenever it works, and cycles per
Einsum as the PE's separate pipelined units overlap (a subtract feeding an exp unit costs one
cycle per element); with ``leakage=True`` the buffer's leakage over the run's latency too.

``fusemax-artifact`` reproduces the bookkeeping of the FuseMax artifact
(github.com/FPSG-UIUC/micro24-fusemax-artifact, ``workspace/src/accel/``), each quirk a switch of
:class:`Accounting` named after what it does:

- ``rf_one_instance``: ``cascade.py``'s ``Stats.read_data`` matches the prefix "Scalar reads", which
  finds Timeloop's "Scalar reads (per-instance)" line, and ``build_accelergy_yaml`` charges one
  register-file instance: register energy is divided by the number of PEs.
- ``exp_unit_unpriced_one_pass``: ``flat_pe_proposal.py`` (the 1-pass cascade on FLAT's PEs)
  prices exponentials under the key ``"exponential"``, which ``cascade.py``'s table spells
  ``"exponentiatial"``; costs are combined only for keys that exist, so an exp unit's work is
  free in a cascade with running state. (FLAT's and Unfused's 3-pass models use the table's
  spelling and are charged.)
- ``summed_op_cycles_one_pass``: ``proposal.py`` and ``flat_pe_proposal.py`` multiply each
  Einsum's Timeloop cycles by the sum of its operations' costs (``comp_lat * cost``), so a
  subtract-then-exp on FLAT's 1D PE takes 2 cycles per element there, while ``flat.py`` /
  ``stable_softmax.py`` charge Timeloop's 1.
- ``scaling_unpriced``: the artifact's cascades have no scaling by 1/sqrt(E): the operation tables
  (``compute_cost``) of ``proposal.py``, ``flat_pe_proposal.py``, ``flat.py`` and
  ``stable_softmax.py`` list no such operation, so multiplying by a constant of the cascade
  costs no energy (its cycles stay: the arrays that do it are not the bottleneck).
- ``buffer_one_port_one_bank``: the Accelergy class ``smartbuffer_SRAM`` hands CACTI ``width``,
  ``depth`` and ``n_rdwr_ports``, but the CACTI plug-in reads ``n_rw_ports`` and ``n_banks``, so
  every buffer is priced as one bank with one read/write port, whatever the specification says.
- ``rf_area_unscaled``: the artifact's Accelergy run did not apply ``smartbuffer_RF``'s
  ``area_share`` to its storage (its ``ART_summary_verbose.yaml`` lists ``area_scale: 1`` for a
  32 x 16-bit file), so every register file of at most 64 entries of 32 bits costs a whole
  64 x 32 regfile's area, whatever its depth. It applies where register files are priced by
  :mod:`mapper.regfile` from their depth (a sweep's ``rf_words: fusemax-fig12``,
  :meth:`mapper.arch.ArchSpec.with_register_files`); the presets' given areas stay.
- no leakage (``leakage=True`` is refused).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import einsum
from einsum._expr import Access, Binary, BinOp, Expr, Reduce, free_vars, product_factors, walk
from einsum.errors import ConfigError, suggest
from mapper.arch import Buffer, PEArray

__all__ = ["ACCOUNTINGS", "Accounting", "accounting", "constant_scalings"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Accounting:
    """The bookkeeping switches of one accounting (all off: physical)."""

    name: str
    rf_one_instance: bool = False
    exp_unit_unpriced_one_pass: bool = False
    summed_op_cycles_one_pass: bool = False
    scaling_unpriced: bool = False
    buffer_one_port_one_bank: bool = False
    gemms_bypass_buffer: bool = False
    rf_area_unscaled: bool = False
    allows_leakage: bool = True

    def priced_buffer(self, buffer: Buffer) -> Buffer:
        """The buffer as this accounting prices it (one bank, one port under the artifact's)."""
        return dataclasses.replace(buffer, ports=1, banks=1) if self.buffer_one_port_one_bank else buffer

    def bookkeeping(self, cascade: einsum.Cascade) -> Any:
        """These switches as the presets' trees state them for ``cascade``
        (:class:`mapper.as_tree.Bookkeeping`: ``einforge evaluate --check-tree`` under either
        accounting); the ones the tree has no place for (the GEMMs' buffer bypass, the register
        files' area, leakage) do not change what it checks."""
        from mapper.as_tree import Bookkeeping

        one_pass = bool(cascade.iterative)
        return Bookkeeping(
            rf_one_instance=self.rf_one_instance,
            exp_unpriced=self.exp_unit_unpriced_one_pass and one_pass,
            serial=self.summed_op_cycles_one_pass and one_pass,
            buffer_one_port_one_bank=self.buffer_one_port_one_bank,
            scalings=constant_scalings(cascade) if self.scaling_unpriced else {},
        )

    def rf_share(self, array: PEArray) -> float:
        """The share of the array's register-file accesses that is charged (1 / PEs under the
        artifact's bookkeeping, which charges one instance)."""
        return 1 / array.pes if self.rf_one_instance else 1.0


ACCOUNTINGS = {
    "physical": Accounting(name="physical"),
    "fusemax-artifact": Accounting(
        name="fusemax-artifact",
        rf_one_instance=True,
        exp_unit_unpriced_one_pass=True,
        summed_op_cycles_one_pass=True,
        scaling_unpriced=True,
        buffer_one_port_one_bank=True,
        gemms_bypass_buffer=True,
        rf_area_unscaled=True,
        allows_leakage=False,
    ),
}


def accounting(which: str | Accounting) -> Accounting:
    """The named accounting (``physical``, ``fusemax-artifact``), or ``which`` itself."""
    if isinstance(which, Accounting):
        return which
    if which not in ACCOUNTINGS:
        raise ConfigError(
            f"unknown accounting {which!r}{suggest(str(which), ACCOUNTINGS)} "
            f"(expected one of {', '.join(ACCOUNTINGS)})"
        )
    return ACCOUNTINGS[which]


def _is_constant(expr: Expr) -> bool:
    return not free_vars(expr) and not any(isinstance(n, Access) for n in walk(expr))


def _without_constant_factors(expr: Expr) -> Expr:
    if isinstance(expr, Reduce):
        return dataclasses.replace(expr, body=_without_constant_factors(expr.body))
    factors = product_factors(expr)
    keep = [f for f in factors if not _is_constant(f)]
    if len(factors) < 2 or not keep or len(keep) == len(factors):
        return expr
    out = keep[0]
    for f in keep[1:]:
        out = Binary(op=BinOp.MUL, lhs=out, rhs=f)
    return out


@functools.cache
def constant_scalings(cascade: einsum.Cascade) -> dict[str, tuple[einsum.OpCounts, einsum.OpCounts]]:
    """Per Einsum (by output), its operation counts with and without the multiplications by
    constants of the cascade (a param such as ``scale``); the difference in MACs, evaluated at
    the workload's sizes, is what scaling costs."""
    stripped = dataclasses.replace(
        cascade,
        einsums=tuple(
            dataclasses.replace(e, expr=_without_constant_factors(e.expr)) for e in cascade.einsums
        ),
    )
    return {
        e.output: (a, b)
        for e, a, b in zip(
            cascade.einsums, einsum.op_counts(cascade), einsum.op_counts(stripped), strict=True
        )
    }
