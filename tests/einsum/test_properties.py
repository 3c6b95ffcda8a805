"""Hypothesis properties of the IR and the oracle (profile "ci": 200 examples, derandomised)."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import einsum
import golden
from einsum import (
    Access,
    Binary,
    BinOp,
    Call,
    Cascade,
    Einsum,
    Expr,
    Func,
    Input,
    Neg,
    Num,
    ParamDef,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    TopK,
    Var,
)
from einsum._expr import free_vars, walk

# Inputs of every generated cascade; an index walks the rank of its own name.
INPUTS = (Input("A", ("I", "J")), Input("B", ("J", "K")), Input("C", ("K",)), Input("D", ()))
PARAMS = (
    ParamDef("alpha", Num(0.5)),
    ParamDef("beta", Binary(op=BinOp.DIV, lhs=Num(1.0), rhs=Call(func=Func.SQRT, args=(Size("J"),)))),
)

numbers = st.one_of(
    st.integers(-5, 5).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([float("inf"), -float("inf"), 1e-5, 0.25]),
).map(Num)
accesses = st.sampled_from(
    [
        Access("A", (Var("i"), Var("j"))),
        Access("B", (Var("j"), Var("k"))),
        Access("C", (Var("k"),)),
        Access("D", ()),
    ]
)
leaves = st.one_of(
    numbers,
    accesses,
    st.sampled_from([ParamRef("alpha"), ParamRef("beta"), Size("I")]),
    st.sampled_from([Var("i"), Var("j"), Var("k")]),
)
arith = st.sampled_from([BinOp.ADD, BinOp.SUB, BinOp.MUL, BinOp.DIV])
compare = st.sampled_from([op for op in BinOp if op.is_comparison] + [BinOp.POW])
unary_funcs = st.sampled_from([f for f in Func if f.arity == 1])


def _extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.builds(lambda op, a, b: Binary(op=op, lhs=a, rhs=b), arith, children, children),
        st.builds(lambda op, a, b: Binary(op=op, lhs=a, rhs=b), compare, children, children),
        st.builds(Neg, children),
        st.builds(lambda f, a: Call(func=f, args=(a,)), unary_funcs, children),
        st.builds(
            lambda f, a, b: Call(func=f, args=(a, b)),
            st.sampled_from([Func.MAX, Func.MIN]),
            children,
            children,
        ),
        st.builds(lambda a, b, c: Call(func=Func.WHERE, args=(a, b, c)), children, children, children),
        st.builds(_reduce, st.sampled_from(list(ReduceOp)), children, st.randoms()),
        st.builds(_topk, children, st.integers(0, 3), st.randoms()),
    )


def _reduce(op: ReduceOp, body: Expr, rnd) -> Expr:  # type: ignore[no-untyped-def]
    bound_inside = {i for n in walk(body) if isinstance(n, Reduce) for i in n.indices}
    free = sorted(free_vars(body) - bound_inside)
    if not free:
        return body
    return Reduce(op=op, indices=(rnd.choice(free),), body=body)


def _topk(body: Expr, k: int, rnd) -> Expr:  # type: ignore[no-untyped-def]
    free = sorted(free_vars(body))
    if not free:
        return body
    return TopK(indices=(rnd.choice(free),), k=Num(float(k)), body=body)


expressions = st.recursive(leaves, _extend, max_leaves=12)


@st.composite
def cascades(draw: st.DrawFn) -> Cascade:
    einsums: list[Einsum] = []
    for n in range(draw(st.integers(1, 3))):
        expr = draw(expressions)
        reduced = {i for node in walk(expr) if isinstance(node, Reduce) for i in node.indices}
        candidates = sorted(free_vars(expr) - reduced)
        lhs = tuple(draw(st.permutations(candidates))[: draw(st.integers(0, len(candidates)))])
        einsums.append(Einsum(output=f"Z{n}", indices=lhs, expr=expr))
    return Cascade(
        name=draw(st.sampled_from([None, "generated"])),
        inputs=INPUTS,
        params=PARAMS,
        outputs=tuple(e.output for e in einsums),
        einsums=tuple(einsums),
    )


@given(cascades())
def test_print_parse_round_trip(c: Cascade) -> None:
    text = str(c)
    again = einsum.parse(text)
    assert again == c, text
    assert str(again) == text


@given(expressions)
def test_expression_round_trip(expr: Expr) -> None:
    assert einsum.parse_expr(str(expr), params=["alpha", "beta"]) == expr


LETTERS = "ijkl"


@st.composite
def plain_einsums(draw: st.DrawFn) -> tuple[str, list[str], str, dict[str, int]]:
    sizes = {c: draw(st.integers(1, 4)) for c in LETTERS}
    operands = [
        "".join(draw(st.permutations(LETTERS))[: draw(st.integers(0, 3))])
        for _ in range(draw(st.integers(1, 3)))
    ]
    used = sorted(set("".join(operands)))
    out = "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))])
    return ",".join(operands) + "->" + out, operands, out, sizes


@given(plain_einsums(), st.integers(0, 2**32 - 1))
def test_golden_run_equals_numpy_einsum(spec: tuple[str, list[str], str, dict[str, int]], seed: int) -> None:
    equation, operands, out, sizes = spec
    rng = np.random.default_rng(seed)
    names = [f"T{n}" for n in range(len(operands))]
    arrays = [rng.normal(size=tuple(sizes[c] for c in op)) for op in operands]
    decl = ", ".join(f"{n}[{', '.join(op)}]" for n, op in zip(names, operands, strict=True))
    rhs = " * ".join(f"{n}[{', '.join(op)}]" for n, op in zip(names, operands, strict=True))
    text = f"input {decl}\noutput Z\nZ[{', '.join(out)}] = {rhs}\n"
    got = golden.run(einsum.parse(text), dict(zip(names, arrays, strict=True)))["Z"]
    want = np.einsum(equation, *arrays)
    assert got.shape == want.shape, (text, got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=text)


@given(
    p=st.integers(1, 12),
    m1=st.integers(1, 5),
    m0=st.integers(1, 6),
    e=st.integers(1, 8),
    f=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    scale=st.sampled_from([1.0, 10.0]),
)
def test_attention_cascades_agree_with_direct_softmax(
    p: int, m1: int, m0: int, e: int, f: int, seed: int, scale: float
) -> None:
    rng = np.random.default_rng(seed)
    m = m1 * m0
    x = {"Q": scale * rng.normal(size=(p, e)), "K": rng.normal(size=(m, e)), "V": rng.normal(size=(m, f))}
    ref = golden.softmax_attention(x["Q"], x["K"], x["V"])
    for name in ("attention_3pass", "attention_2pass", "attention_1pass"):
        c = einsum.library.get(name)
        sizes = {"M0": m0} if "M0" in c.ranks else None
        out = golden.run(c, x, sizes)["AV"]
        assert out.shape == (p, f), name
        np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-12, err_msg=f"{name} M0={m0}")


@given(cascades(), st.integers(0, 2**32 - 1))
def test_generated_cascades_evaluate_or_fail_typed(c: Cascade, seed: int) -> None:
    """Any valid cascade evaluates without an untyped exception (values may be inf/nan)."""
    rng = np.random.default_rng(seed)
    x = {
        "A": rng.normal(size=(2, 3)),
        "B": rng.normal(size=(3, 2)),
        "C": rng.normal(size=2),
        "D": np.array(rng.normal()),
    }
    try:
        out = golden.run(c, x)
    except einsum.EinforgeError:
        assume(False)
    for e in c.einsums:
        want = tuple({"i": 2, "j": 3, "k": 2}[i] for i in e.indices)
        assert out[e.output].shape == want
