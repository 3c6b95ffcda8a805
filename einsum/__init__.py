"""The extended-Einsum cascade IR: notation, validation, analyses and the library.

A cascade is written in the notation of ``docs/notation.md`` (or built in Python with
:mod:`einsum.builder`) and is immutable, validated data::

    >>> import einsum
    >>> c = einsum.library.get("attention_1pass")
    >>> einsum.parse(str(c)) == c
    True
    >>> einsum.passes(c, "M")
    1
"""

from einsum import builder, library
from einsum._analysis import (
    OpCounts,
    Poly,
    dependency_graph,
    mask_tensors,
    op_counts,
    passes,
    tensor_sizes,
)
from einsum._expr import (
    Access,
    Actions,
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
from einsum._fixed import Fixed, exp2_coefficients, log2e_raw, quantizer
from einsum._ir import Cascade, affine_terms, window_accesses
from einsum._parse import parse, parse_expr
from einsum._plan import Stage
from einsum._sizes import bind_sizes, eval_params
from einsum._stmt import Einsum, Input, ParamDef, Partition
from einsum.errors import (
    MAX_RANK_SIZE,
    CascadeError,
    ConfigError,
    EinforgeError,
    EinsumError,
    ParseError,
    SizeError,
    read_text,
)

__all__ = [
    "Access",
    "Actions",
    "BinOp",
    "Binary",
    "Call",
    "Cascade",
    "CascadeError",
    "ConfigError",
    "EinforgeError",
    "Einsum",
    "EinsumError",
    "Expr",
    "Fixed",
    "quantizer",
    "Func",
    "Input",
    "Neg",
    "Num",
    "OpCounts",
    "Operator",
    "ParamDef",
    "ParamRef",
    "ParseError",
    "Partition",
    "Poly",
    "Reduce",
    "ReduceOp",
    "Size",
    "MAX_RANK_SIZE",
    "SizeError",
    "read_text",
    "Stage",
    "TopK",
    "Var",
    "bind_sizes",
    "affine_terms",
    "builder",
    "dependency_graph",
    "eval_params",
    "exp2_coefficients",
    "library",
    "window_accesses",
    "log2e_raw",
    "mask_tensors",
    "op_counts",
    "parse",
    "parse_expr",
    "passes",
    "tensor_sizes",
]
