"""Fixed-point arithmetic as Amaranth expressions: the hardware twin of ``golden.fixed``.

Each helper mirrors one function of ``golden._fxkernels`` (same name, same rounding and
saturation, same order), which is what makes the RTL bit-exact against the golden model.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed

from einsum import Fixed, exp2_coefficients, log2e_raw

__all__ = ["ExpSteps", "divide", "divide_pipelined", "fit", "round_shift", "round_shift_var"]


def round_shift(v: Value, s: int, nearest: bool) -> Value:
    """``v / 2**s``: half up (``(v + 2**(s-1)) >> s``) or an arithmetic shift (towards -inf)."""
    if s <= 0:
        return v << -s
    if nearest:
        return (v + (1 << (s - 1))) >> s
    return v >> s


def round_shift_var(v: Value, s: Value, nearest: bool) -> Value:
    """``round_shift`` by a variable amount: ``((v << 1) >> s) + 1) >> 1`` rounds half up exactly."""
    if nearest:
        return (((v << 1) >> s) + 1) >> 1
    return v >> s


def fit(v: Value, width: int, saturate: bool) -> Value:
    """``v`` brought into ``width`` signed bits: clamped, or wrapped (the low bits kept)."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    low_bits = v[:width].as_signed() if len(v) >= width else v.as_signed()
    if not saturate:
        return low_bits
    return Mux(v < lo, Const(lo, signed(width)), Mux(v > hi, Const(hi, signed(width)), low_bits))


def divide(fmt: Fixed, a: Value, b: Value) -> Value:
    """``golden._fxkernels.fx_div``: sign and magnitude, rounded division; ``b == 0`` saturates."""
    w, fr = fmt.width, fmt.frac
    nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
    na = Mux(a < 0, -a, a).as_unsigned()[: w + 1]
    nb = Mux(b < 0, -b, b).as_unsigned()[: w + 1]
    if nearest:
        q = (((na << (fr + 1)) // nb) + 1) >> 1
    else:
        q = (na << fr) // nb
    q = Cat(q, Const(0, 1)).as_signed()  # zero-extend: the quotient is a magnitude
    result = fit(Mux((a < 0) != (b < 0), -q, q), w, sat)
    return Mux(b == 0, Mux(a >= 0, fmt.max_raw, fmt.min_raw), result)


class ExpSteps:
    """The exp-as-MACs sequence (``golden._fxkernels.fx_exp``) for one PE with one multiplier.

    Step 0 multiplies ``min(x, 0)`` by log2(e); steps 1..degree are Horner MACs; step
    ``degree + 1`` is the rounding shift. A PE runs ``cycles`` steps, one per clock.
    """

    def __init__(self, fmt: Fixed, degree: int) -> None:
        self.fmt = fmt
        self.degree = degree
        self.coeffs = exp2_coefficients(fmt, degree)
        self.log2e = log2e_raw(fmt)
        self.nearest = fmt.rounding == "nearest"
        self.saturate = fmt.overflow == "saturate"

    @property
    def cycles(self) -> int:
        return self.degree + 2

    def operand_width(self) -> int:
        """Signed width that holds every multiplier operand of the sequence."""
        return max(self.fmt.width, self.fmt.frac + 3, max(c.bit_length() for c in self.coeffs) + 1)

    def split(self, t: Value) -> tuple[Value, Value]:
        """``(n, f)``: ``n = floor(t)`` (an integer <= 0) and ``f = t - n`` as ``frac`` raw bits."""
        f = self.fmt.frac
        return t >> f, t[:f] if f else Const(0, 1)

    def shift_amount(self, n: Value) -> Value:
        """``min(-n, frac + 3)``: further shifts give 0 anyway (the golden model clamps the same)."""
        cap = self.fmt.frac + 3
        return Mux(-n > cap, cap, -n)[: cap.bit_length()]

    def emit(
        self, m: Module, step: Value, x: Value, mac: tuple[Signal, Signal, Value], out: Signal, name: str
    ) -> None:
        """Statements for one PE in the EXP state: ``out = exp(x)`` after ``cycles`` steps.

        ``mac`` is the PE's multiplier ``(a, b, a * b)``; its operands are driven here. The
        intermediate ``y``, ``n`` and ``f`` registers are created per PE.
        """
        fmt = self.fmt
        w, fr = fmt.width, fmt.frac
        ma, mb, prod = mac
        y = Signal(signed(fr + 4), name=f"y_{name}")
        n_reg = Signal(signed(w + 3), name=f"n_{name}")
        f_reg = Signal(max(fr, 1), name=f"f_{name}")
        with m.If(step == 0):  # t = min(x, 0) * log2(e), split into n and f; y = c_degree
            m.d.comb += [ma.eq(Mux(x > 0, 0, x)), mb.eq(self.log2e)]
            t = Signal(signed(w + fr + 4), name=f"t_{name}")
            m.d.comb += t.eq(round_shift(prod, fr, self.nearest))
            n, f = self.split(t)
            m.d.sync += [n_reg.eq(n), f_reg.eq(f), y.eq(self.coeffs[self.degree])]
        with m.Elif(step <= self.degree):  # Horner: y = y * f + c_(degree - step)
            m.d.comb += [ma.eq(y), mb.eq(f_reg)]
            coeff = Signal(signed(fr + 4), name=f"coeff_{name}")
            with m.Switch(step):
                for i in range(1, self.degree + 1):
                    with m.Case(i):
                        m.d.comb += coeff.eq(self.coeffs[self.degree - i])
            m.d.sync += y.eq(round_shift(prod, fr, self.nearest) + coeff)
        with m.Else():  # y * 2**n by a rounding shift
            shifted = round_shift_var(y, self.shift_amount(n_reg), self.nearest)
            m.d.sync += out.eq(fit(shifted, w, self.saturate))


def divide_pipelined(m: Module, fmt: Fixed, a: Value, b: Value, stages: int, name: str = "div") -> Value:
    """:func:`divide` as a restoring division in ``stages`` registered steps: its result, bit for bit
    :func:`divide`'s, is valid ``stages`` cycles after its operands (a new division may start every
    cycle; the pipeline never stalls). Each step takes ``ceil(bits / stages)`` of the quotient's
    ``bits`` (``w + 1 + frac + 1`` rounding to nearest, ``w + 1 + frac`` else); the sign, the
    rounding, the saturation and a zero divisor are settled after the last register."""
    if stages <= 0:
        return divide(fmt, a, b)
    w, fr = fmt.width, fmt.frac
    nearest, sat = fmt.rounding == "nearest", fmt.overflow == "saturate"
    shift = fr + 1 if nearest else fr
    nbits = w + 1 + shift
    na = Mux(a < 0, -a, a).as_unsigned()[: w + 1]
    nb: Value = Mux(b < 0, -b, b).as_unsigned()[: w + 1]
    num: Value = Cat(Const(0, shift), na)  # na << shift, nbits wide
    neg: Value = (a < 0) != (b < 0)
    zero: Value = b == 0
    apos: Value = a >= 0
    rem: Value = Const(0, w + 1)
    quo: Value = Const(0, nbits)
    per = -(-nbits // stages)
    i = nbits - 1
    for s in range(stages):
        bits: dict[int, Value] = {}
        for _ in range(per):
            if i < 0:
                break
            # each step's values are signals: an expression reused by the next step would grow
            # exponentially
            t = Signal(w + 2, name=f"{name}_t{i}")
            ge = Signal(name=f"{name}_q{i}")
            r = Signal(w + 1, name=f"{name}_r{i}")
            m.d.comb += [t.eq(Cat(num[i], rem)), ge.eq(t >= nb), r.eq(Mux(ge, t - nb, t)[: w + 1])]
            rem, bits[i] = r, ge
            i -= 1
        quo = Cat(*(bits.get(j, quo[j]) for j in range(nbits)))
        regs = {
            "rem": Signal(w + 1, name=f"{name}{s}_rem"),
            "quo": Signal(nbits, name=f"{name}{s}_quo"),
            "num": Signal(nbits, name=f"{name}{s}_num"),
            "nb": Signal(w + 1, name=f"{name}{s}_divisor"),
            "neg": Signal(name=f"{name}{s}_neg"),
            "zero": Signal(name=f"{name}{s}_zero"),
            "apos": Signal(name=f"{name}{s}_apos"),
        }
        m.d.sync += [
            regs["rem"].eq(rem), regs["quo"].eq(quo), regs["num"].eq(num), regs["nb"].eq(nb),
            regs["neg"].eq(neg), regs["zero"].eq(zero), regs["apos"].eq(apos),
        ]  # fmt: skip
        rem, quo, num, nb = regs["rem"], regs["quo"], regs["num"], regs["nb"]
        neg, zero, apos = regs["neg"], regs["zero"], regs["apos"]
    q = (quo + 1) >> 1 if nearest else quo
    q = Cat(q, Const(0, 1)).as_signed()  # zero-extend: the quotient is a magnitude
    result = fit(Mux(neg, -q, q), w, sat)
    return Mux(zero, Mux(apos, fmt.max_raw, fmt.min_raw), result)
