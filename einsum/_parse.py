"""``einsum.parse``: the text notation (docs/notation.md) to a :class:`Cascade`.

A hand-written tokenizer and recursive-descent parser, so that every syntax error names its line
and column and shows the offending source line.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from einsum._expr import (
    Access,
    Binary,
    BinOp,
    Call,
    Expr,
    Func,
    Neg,
    Num,
    Operator,
    ParamRef,
    Reduce,
    ReduceOp,
    Size,
    TopK,
    Var,
)
from einsum._ir import Cascade
from einsum._stmt import Einsum, Input, ParamDef, Partition
from einsum.errors import EinsumError, ParseError, suggest

__all__ = ["parse", "parse_expr"]

_T = TypeVar("_T")

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r]+)
  | (?P<comment>\#[^\n]*)
  | (?P<newline>\n)
  | (?P<number>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>\*\*|<=|>=|==|!=|->|[-+*/<>=\[\](),;])
    """,
    re.VERBOSE,
)

_KEYWORDS = ("cascade", "input", "param", "partition", "output", "init")
_REDUCTIONS = {op.value: op for op in ReduceOp}
_COMPARE = {op.value: op for op in BinOp if op.is_comparison}


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # name, number, op, newline, eof
    text: str
    line: int
    col: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    line, line_start, depth, pos = 1, 0, 0, 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            source = text.splitlines()[line - 1] if text.splitlines() else ""
            raise ParseError(f"unexpected character {text[pos]!r}", line=line, column=col, source_line=source)
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "newline":
            if depth == 0:
                tokens.append(_Tok("newline", "\n", line, col))
            line += 1
            line_start = m.end()
        elif kind in ("number", "name", "op"):
            if value in ("(", "["):
                depth += 1
            elif value in (")", "]"):
                depth = max(0, depth - 1)
            tokens.append(_Tok(kind, value, line, col))
        pos = m.end()
    # the end of the text is shown at the end of its last line that holds anything (not on the
    # empty line after a final newline), where an unclosed bracket or a dangling operator is
    lines = text.splitlines()
    while len(lines) > 1 and not lines[-1].strip():
        lines.pop()
    if lines and (len(lines) < line or pos - line_start == 0):
        line, end_col = len(lines), len(lines[-1]) + 1
    else:
        end_col = pos - line_start + 1
    tokens.append(_Tok("newline", "\n", line, end_col))
    tokens.append(_Tok("eof", "", line, end_col))
    return tokens


def _describe(tok: _Tok) -> str:
    if tok.kind == "newline":
        return "the end of the line"
    if tok.kind == "eof":
        return "the end of the text"
    return repr(tok.text)


class _Parser:
    def __init__(self, text: str, operators: Iterable[Operator]) -> None:
        self.lines = text.splitlines() or [""]
        self.toks = _tokenize(text)
        self.pos = 0
        self.params: list[str] = []
        self.operators: dict[str, Operator] = {}
        for op in operators:
            if not isinstance(op, Operator):
                raise EinsumError(f"parse(): operators must be einsum.Operator objects, got {op!r}")
            self.operators[op.name] = op

    # -- token helpers --------------------------------------------------------------------------

    @property
    def tok(self) -> _Tok:
        return self.toks[self.pos]

    def peek(self, ahead: int = 1) -> _Tok:
        return self.toks[min(self.pos + ahead, len(self.toks) - 1)]

    def error(self, detail: str, tok: _Tok | None = None) -> ParseError:
        tok = tok or self.tok
        source = self.lines[tok.line - 1] if tok.line - 1 < len(self.lines) else ""
        return ParseError(detail, line=tok.line, column=tok.col, source_line=source)

    def advance(self) -> _Tok:
        tok = self.tok
        self.pos += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.tok.kind == "op" and self.tok.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str, context: str) -> _Tok:
        if self.tok.kind == "op" and self.tok.text == text:
            return self.advance()
        raise self.error(f"expected {text!r} {context}, found {_describe(self.tok)}")

    def expect_name(self, context: str) -> _Tok:
        if self.tok.kind == "name":
            return self.advance()
        raise self.error(f"expected a name {context}, found {_describe(self.tok)}")

    def end_of_statement(self) -> None:
        if self.tok.kind != "newline":
            raise self.error(f"expected the end of the statement, found {_describe(self.tok)}")
        self.advance()

    # -- statements -----------------------------------------------------------------------------

    def cascade(self) -> Cascade:
        name: str | None = None
        inputs: list[Input] = []
        params: list[ParamDef] = []
        partitions: list[Partition] = []
        outputs: list[str] = []
        einsums: list[Einsum] = []
        used_ops: dict[str, Operator] = {}
        while self.tok.kind != "eof":
            if self.tok.kind == "newline":
                self.advance()
                continue
            first = self.tok
            keyword = first.text if first.kind == "name" and self.peek().text != "[" else None
            if keyword == "cascade":
                self.advance()
                if name is not None:
                    raise self.error("the cascade is named twice", first)
                name = self.expect_name("after 'cascade'").text
            elif keyword == "input":
                self.advance()
                inputs.append(self.input_decl())
                while self.accept(","):
                    inputs.append(self.input_decl())
            elif keyword == "param":
                self.advance()
                pname = self.expect_name("after 'param'")
                self.expect("=", f"after 'param {pname.text}'")
                expr = self.expr(index_context=False)
                params.append(self.build(ParamDef, pname, pname.text, expr))
                self.params.append(pname.text)
            elif keyword == "partition":
                self.advance()
                rank = self.rank_name("after 'partition'")
                self.expect("->", f"after 'partition {rank}'")
                parts = [self.rank_name("in the partition")]
                while self.accept(","):
                    parts.append(self.rank_name("in the partition"))
                partitions.append(self.build(Partition, first, rank, tuple(parts)))
            elif keyword == "output":
                self.advance()
                outputs.append(self.expect_name("after 'output'").text)
                while self.accept(","):
                    outputs.append(self.expect_name("after ','").text)
            elif keyword == "init":
                self.advance()
                einsums.append(self.einsum(init=True))
            elif first.kind == "name" and self.peek().text == "[":
                einsums.append(self.einsum(init=False))
            else:
                raise self.error(
                    f"expected a statement (one of {', '.join(_KEYWORDS)}, or an Einsum "
                    f"T[i, ...] = ...), found {_describe(first)}"
                )
            self.end_of_statement()
        for e in einsums:
            for op in _operators_in(e.expr):
                used_ops.setdefault(op.name, op)
        return Cascade(
            name=name,
            inputs=tuple(inputs),
            params=tuple(params),
            partitions=tuple(partitions),
            outputs=tuple(outputs),
            einsums=tuple(einsums),
            operators=tuple(used_ops.values()),
        )

    def build(self, make: Callable[..., _T], tok: _Tok, *args: Any, **kwargs: Any) -> _T:
        """``make(*args, **kwargs)``, with an IR constructor's complaint placed at ``tok``."""
        try:
            return make(*args, **kwargs)
        except EinsumError as exc:
            raise self.error(str(exc), tok) from None

    def rank_name(self, context: str) -> str:
        tok = self.expect_name(context)
        if not tok.text.isupper():
            raise self.error(f"rank names are UPPERCASE, found {tok.text!r}", tok)
        return tok.text

    def input_decl(self) -> Input:
        name = self.expect_name("for the input tensor")
        self.expect("[", f"after input {name.text}")
        ranks: list[str] = []
        if not (self.tok.kind == "op" and self.tok.text == "]"):
            while True:
                idx = self.expect_name(f"as an index of input {name.text}")
                if not idx.text.islower():
                    raise self.error(
                        f"input indices are lowercase (the index of rank {idx.text.upper()} is "
                        f"{idx.text.lower()}), found {idx.text!r}",
                        idx,
                    )
                ranks.append(idx.text.upper())
                if not self.accept(","):
                    break
        self.expect("]", f"to close input {name.text}[...")
        return self.build(Input, name, name.text, tuple(ranks))

    def einsum(self, *, init: bool) -> Einsum:
        name = self.expect_name("for the tensor defined")
        self.expect("[", f"after {name.text}")
        indices: list[str] = []
        step: str | None = None
        if not (self.tok.kind == "op" and self.tok.text == "]"):
            while True:
                idx = self.expect_name(f"as an index on the left of {name.text}[...]")
                if not idx.text.islower():
                    raise self.error(
                        f"indices on the left are lowercase index names, found {idx.text!r}", idx
                    )
                indices.append(idx.text)
                if self.tok.text in ("+", "="):
                    op = self.advance()
                    num = self.tok
                    want = "0" if init else "1"
                    if (op.text == "=") != init or num.kind != "number" or num.text != want:
                        form = f"{idx.text} = 0" if init else f"{idx.text} + 1"
                        raise self.error(
                            f"on the left, an index may only be written {idx.text!r} or, for a "
                            f"{'init' if init else 'recurrence'}, {form!r}",
                            op,
                        )
                    self.advance()
                    if step is not None:
                        raise self.error("only one index on the left may be a step", idx)
                    step = idx.text
                if not self.accept(","):
                    break
        self.expect("]", f"to close {name.text}[...")
        if init and step is None:
            raise self.error(
                f"an init gives the value at position 0 of the iterative rank: write "
                f"init {name.text}[..., i = 0] = ...",
                name,
            )
        self.expect("=", f"after {name.text}[...]")
        expr = self.expr(index_context=False)
        return self.build(
            Einsum,
            name,
            output=name.text,
            indices=tuple(indices),
            expr=expr,
            step=step,
            init=init,
            line=name.line,
        )

    # -- expressions ----------------------------------------------------------------------------

    def expr(self, *, index_context: bool) -> Expr:
        lhs = self.additive(index_context)
        if self.tok.kind == "op" and self.tok.text in _COMPARE:
            op = self.advance()
            rhs = self.additive(index_context)
            lhs = Binary(op=_COMPARE[op.text], lhs=lhs, rhs=rhs)
            if self.tok.kind == "op" and self.tok.text in _COMPARE:
                raise self.error("comparisons do not chain; use parentheses")
        return lhs

    def additive(self, ix: bool) -> Expr:
        lhs = self.term(ix)
        while self.tok.kind == "op" and self.tok.text in ("+", "-"):
            op = BinOp.ADD if self.advance().text == "+" else BinOp.SUB
            lhs = Binary(op=op, lhs=lhs, rhs=self.term(ix))
        return lhs

    def term(self, ix: bool) -> Expr:
        lhs = self.unary(ix)
        while self.tok.kind == "op" and self.tok.text in ("*", "/"):
            op = BinOp.MUL if self.advance().text == "*" else BinOp.DIV
            lhs = Binary(op=op, lhs=lhs, rhs=self.unary(ix))
        return lhs

    def unary(self, ix: bool) -> Expr:
        if self.accept("-"):
            if self.tok.kind == "number" and self.peek().text != "**":
                return Num(-float(self.advance().text))
            if self.tok.text == "inf" and self.peek().text != "**":
                self.advance()
                return Num(-math.inf)
            return Neg(self.unary(ix))
        return self.power(ix)

    def power(self, ix: bool) -> Expr:
        base = self.primary(ix)
        if self.accept("**"):
            return Binary(op=BinOp.POW, lhs=base, rhs=self.unary(ix))
        return base

    def primary(self, ix: bool) -> Expr:
        tok = self.tok
        if tok.kind == "number":
            self.advance()
            return Num(float(tok.text))
        if self.accept("("):
            inner = self.expr(index_context=ix)
            self.expect(")", "to close '('")
            return inner
        if tok.kind != "name":
            raise self.error(f"expected an expression, found {_describe(tok)}")
        self.advance()
        nxt = self.tok.text if self.tok.kind == "op" else ""
        if tok.text == "inf":
            return Num(math.inf)
        if nxt == "[" and tok.text in _REDUCTIONS and not ix:
            indices = self.index_list(f"{tok.text}[...]", stop="]")
            body = self.expr(index_context=False)
            return self.build(Reduce, tok, op=_REDUCTIONS[tok.text], indices=indices, body=body)
        if nxt == "[" and tok.text == "topk" and not ix:
            indices = self.index_list("topk[...]", stop=";")
            k = self.expr(index_context=False)
            self.expect("]", "to close topk[...; k]")
            body = self.expr(index_context=False)
            return self.build(TopK, tok, indices=indices, k=k, body=body)
        if nxt == "[":
            if ix:
                raise self.error("a tensor access cannot be used as an index", tok)
            self.advance()
            idx: list[Expr] = []
            if not self.accept("]"):
                while True:
                    idx.append(self.expr(index_context=True))
                    if self.accept("]"):
                        break
                    self.expect(",", f"or ']' in {tok.text}[...]")
            return self.build(Access, tok, tok.text, tuple(idx))
        if nxt == "(":
            return self.call(tok, ix)
        return self.name(tok, ix)

    def index_list(self, context: str, *, stop: str) -> tuple[str, ...]:
        self.expect("[", f"after {context.split('[')[0]}")
        names: list[str] = []
        while True:
            tok = self.expect_name(f"as an index in {context}")
            if not tok.text.islower():
                raise self.error(f"{context} lists lowercase indices, found {tok.text!r}", tok)
            names.append(tok.text)
            if self.accept(stop):
                return tuple(names)
            self.expect(",", f"or {stop!r} in {context}")

    def call(self, tok: _Tok, ix: bool) -> Expr:
        func: Func | Operator | None = Func.by_name(tok.text) or self.operators.get(tok.text)
        if func is None:
            if tok.text in _REDUCTIONS:
                raise self.error(
                    f"{tok.text} is a reduction: write {tok.text}[i] EXPR (max and min also take "
                    "two arguments: max(a, b))",
                    tok,
                )
            known = sorted([f.text for f in Func] + list(self.operators))
            hint = suggest(tok.text, known)
            raise self.error(
                f"unknown function {tok.text!r}{hint} (known: {', '.join(known)}; register "
                "others as einsum.Operator and pass operators=...)",
                tok,
            )
        self.expect("(", f"after {tok.text}")
        args: list[Expr] = []
        if not self.accept(")"):
            while True:
                args.append(self.expr(index_context=ix))
                if self.accept(")"):
                    break
                self.expect(",", f"or ')' in {tok.text}(...)")
        if len(args) != func.arity:
            raise self.error(f"{tok.text}() takes {func.arity} argument(s), found {len(args)}", tok)
        return Call(func=func, args=tuple(args))

    def name(self, tok: _Tok, ix: bool) -> Expr:
        text = tok.text
        if not ix and text in self.params:
            return ParamRef(text)
        if text.islower():
            if text in _KEYWORDS or text in _REDUCTIONS or text == "topk":
                raise self.error(f"{text!r} is a keyword and cannot be used as a value", tok)
            return Var(text)
        if text.isupper():
            return Size(text)
        declared = f" (params declared so far: {', '.join(self.params)})" if self.params else ""
        raise self.error(
            f"unknown name {text!r}: not a param{declared}, nor an index (lowercase) nor a rank "
            "(UPPERCASE); params must be declared before use",
            tok,
        )


def _operators_in(expr: Expr) -> list[Operator]:
    from einsum._expr import walk

    return [n.func for n in walk(expr) if isinstance(n, Call) and isinstance(n.func, Operator)]


def parse(text: str, *, operators: Iterable[Operator] = ()) -> Cascade:
    """Parse a cascade written in the notation of docs/notation.md.

    Args:
        text: the cascade's text.
        operators: user-defined operators the text may call by name.

    Returns:
        The validated :class:`Cascade`.

    Raises:
        ParseError: the text does not follow the notation (with line and column).
        CascadeError: it parses but is ill-formed (every problem listed).

    Example:
        >>> c = parse("input X[i]\\noutput Y\\ninit R[i = 0] = 0\\nR[i + 1] = R[i] + X[i]\\nY[] = R[I]")
        >>> print(c.einsums[1])
        R[i + 1] = R[i] + X[i]
    """
    if not isinstance(text, str):
        raise EinsumError(f"parse() takes the cascade's text as a str, got {type(text).__name__}")
    return _Parser(text, operators).cascade()


def parse_expr(text: str, *, params: Iterable[str] = (), operators: Iterable[Operator] = ()) -> Expr:
    """Parse one expression (the right side of an Einsum), e.g. ``"exp(S[p, m] - GM[p])"``."""
    p = _Parser(text, operators)
    p.params = list(params)
    expr = p.expr(index_context=False)
    p.end_of_statement()
    if p.tok.kind != "eof":
        raise p.error(f"expected the end of the expression, found {_describe(p.tok)}")
    return expr
