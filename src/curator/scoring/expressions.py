"""Threshold expressions over score columns, evaluated without eval().

    quality >= 3 and structured_data >= 2 and content_type != 'generated'
    content_type in ['library', 'application'] or prob_test < 0.1
    max_line_length <= 500 and comment_share < 0.8
    2.5 <= quality < 4.5 and not truncated

An expression is parsed with Python's ast and only a whitelist of node types is accepted: column names,
numbers, strings, lists of constants, comparisons (chains too), and/or/not, + - * /. Names are score columns,
or `prob_<class>` for one class's probability. A typo in a column or a content type name is an error that lists
what exists, not a filter that silently keeps nothing.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable

import numpy as np
import pandas as pd

from curator.data.signals import SIGNAL_COLUMNS

# Columns an expression may name (content_type_probs is reached through prob_<class>): the model's scores,
# then the file's signals (size, line lengths, shares of characters; curator.data.signals documents each).
SCORE_COLUMNS = (
    "quality",
    "structured_data",
    "content_type",
    "num_tokens",
    "truncated",
    "language",
    "path",
    "id",
)
COLUMNS = SCORE_COLUMNS + tuple(SIGNAL_COLUMNS)

_COMPARE = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_ARITH = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class Expression:
    """A parsed, checked expression; call it on a DataFrame of scores to get a boolean mask."""

    def __init__(self, text: str, content_types: list[str] | tuple[str, ...]):
        self.text = text
        self.content_types = list(content_types)
        self.names = set(COLUMNS) | {f"prob_{c}" for c in self.content_types}
        try:
            tree = ast.parse(text.strip(), mode="eval")
        except SyntaxError as e:
            raise ValueError(f"cannot parse expression {text!r}: {e.msg}") from None
        self.used: set[str] = set()
        self._check(tree.body)
        self._tree = tree.body

    def _fail(self, why: str):
        raise ValueError(f"in expression {self.text!r}: {why}")

    def _check(self, node: ast.AST) -> None:
        if isinstance(node, ast.BoolOp):
            for v in node.values:
                self._check(v)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.USub)):
            self._check(node.operand)
        elif isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            self._check(node.left)
            self._check(node.right)
        elif isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
                if isinstance(op, (ast.In, ast.NotIn)):
                    if not isinstance(right, (ast.List, ast.Tuple, ast.Set)):
                        self._fail("'in' needs a list of values, e.g. content_type in ['library', 'test']")
                elif type(op) not in _COMPARE:
                    self._fail(f"comparison {type(op).__name__} is not supported")
                self._check_content_type_values(left, right)
            for v in operands:
                self._check(v)
        elif isinstance(node, ast.Name):
            if node.id not in self.names:
                self._fail(f"unknown column {node.id!r}; known: {sorted(self.names)}")
            self.used.add(node.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool)):
            pass
        elif isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            if not all(isinstance(e, ast.Constant) for e in node.elts):
                self._fail("a list may hold only constants")
        else:
            self._fail(f"{type(node).__name__} is not allowed here ({ast.unparse(node)!r})")

    def _check_content_type_values(self, left: ast.AST, right: ast.AST) -> None:
        for name, other in ((left, right), (right, left)):
            if isinstance(name, ast.Name) and name.id == "content_type":
                values = other.elts if isinstance(other, (ast.List, ast.Tuple, ast.Set)) else [other]
                for v in values:
                    if isinstance(v, ast.Constant) and v.value not in self.content_types:
                        self._fail(
                            f"{v.value!r} is not a content type of this model; known: {self.content_types}"
                        )

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        result = self._eval(self._tree, df)
        result = np.asarray(result)
        if result.dtype != bool or result.shape != (len(df),):
            self._fail("it must be a condition (a comparison, or and/or/not of comparisons)")
        return result

    def _eval(self, node: ast.AST, df: pd.DataFrame):
        if isinstance(node, ast.BoolOp):
            combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
            values = [self._as_bool(self._eval(v, df)) for v in node.values]
            out = values[0]
            for v in values[1:]:
                out = combine(out, v)
            return out
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, df)
            return ~self._as_bool(value) if isinstance(node.op, ast.Not) else -value
        if isinstance(node, ast.BinOp):
            return _ARITH[type(node.op)](self._eval(node.left, df), self._eval(node.right, df))
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            out = np.ones(len(df), dtype=bool)
            left = self._eval(node.left, df)
            for op, right_node in zip(node.ops, operands[1:], strict=True):
                if isinstance(op, (ast.In, ast.NotIn)):
                    values = [e.value for e in right_node.elts]
                    hit = pd.Series(left).isin(values).to_numpy()
                    out &= hit if isinstance(op, ast.In) else ~hit
                    continue
                right = self._eval(right_node, df)
                try:
                    out &= np.asarray(_COMPARE[type(op)](left, right), dtype=bool)
                except TypeError as e:
                    self._fail(f"cannot compare {ast.unparse(node)}: {e}")
                left = right
            return out
        if isinstance(node, ast.Name):
            if node.id.startswith("prob_"):
                return df[node.id].to_numpy() if node.id in df else self._prob(df, node.id[len("prob_") :])
            return df[node.id].to_numpy()
        if isinstance(node, ast.Constant):
            return node.value
        raise AssertionError(f"unchecked node {node!r}")  # _check lets nothing else through

    def _prob(self, df: pd.DataFrame, cls: str) -> np.ndarray:
        k = self.content_types.index(cls)
        return np.array([np.nan if p is None else p[k] for p in df["content_type_probs"]], dtype=np.float32)

    def _as_bool(self, value) -> np.ndarray:
        value = np.asarray(value)
        if value.dtype != bool:
            self._fail("and/or/not need conditions on both sides")
        return value


def where_for(
    language: str, where: str | None, where_lang: dict[str, str], content_types
) -> tuple[str | None, Callable | None]:
    """The expression a language is filtered by: its own (--where-lang) if given, else the global --where."""
    text = where_lang.get(language, where)
    return text, (Expression(text, content_types) if text else None)
