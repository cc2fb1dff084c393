"""The calculator tool: arithmetic on numbers, evaluated from the parsed syntax tree (never `eval`).

Accepted: integer and decimal numbers, + - * / // % **, unary + and -, parentheses. Anything else (names, calls,
attributes, strings, comparisons) is an error the model sees as the tool's reply. Bounds keep one call cheap: the
expression is at most 200 characters, exponents at most 64 in size, and every intermediate result at most 1e30 in
size, so `9**9**9` is an error, not a hang.
"""

from __future__ import annotations

import ast
import math
import operator

MAX_LENGTH = 200
MAX_EXPONENT = 64
MAX_MAGNITUDE = 1e30

BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
    """The expression is not arithmetic the calculator accepts, or its value is out of bounds."""


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic expression; raises `CalculatorError` with a message meant for the model."""
    if len(expression) > MAX_LENGTH:
        raise CalculatorError(f"expression longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as e:
        raise CalculatorError(f"not an arithmetic expression: {e.msg}") from None
    return _value(tree.body)


def _value(node: ast.AST) -> int | float:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return _bounded(node.value)
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return UNARY[type(node.op)](_value(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise CalculatorError(f"exponent larger than {MAX_EXPONENT}")
        try:
            return _bounded(BINARY[type(node.op)](left, right))
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except (OverflowError, TypeError) as e:  # TypeError: a complex result, e.g. (-8) ** 0.5
            raise CalculatorError(str(e)) from None
    raise CalculatorError(f"unsupported: {ast.unparse(node)!r} (numbers, + - * / // % ** and parentheses only)")


def _bounded(value: int | float) -> int | float:
    if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
        raise CalculatorError("result is not a finite real number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError("result too large")
    return value


def calculator(expression: str) -> str:
    """The tool: the value as text (a whole float as an integer: 10 / 2 gives 5), or the error for the model."""
    try:
        value = evaluate(expression)
    except CalculatorError as e:
        return f"error: {e}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) else f"{value:.10g}"
