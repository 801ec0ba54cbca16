"""Compile-time arithmetic of the frontend: literal typing, constant casts and folding.

Pure functions on `Literal`s and `ir.Const`s (no IR is emitted here); the
typing rules they implement are listed in core.frontend_expr's docstring.
Integer folding follows core.ops exactly (wrap-around, Python floor division,
division by zero gives 0 / a, shift amounts clamped to the width), so a folded
constant equals what a device would compute.
"""

from __future__ import annotations

import math
import operator

from .frontend_hooks import Literal
from .ir import Const
from .types import ScalarType, bool_, f32, f64, i32, i64, promote, u32, u64

#: element types arrays may have (bool arrays have no portable layout: use u32/i32)
ARRAY_ELEMS = (i32, u32, i64, u64, f32, f64)

ARITH = ("add", "sub", "mul", "div", "floordiv", "mod", "pow", "min", "max")
BITWISE = ("band", "bor", "bxor")
SHIFTS = ("shl", "shr")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge")


def int_range(t: ScalarType) -> tuple[int, int]:
    """The inclusive value range of an integer type."""
    if t.is_signed:
        return -(2 ** (t.bits - 1)), 2 ** (t.bits - 1) - 1
    return 0, 2**t.bits - 1


def fits(v: int, t: ScalarType) -> bool:
    lo, hi = int_range(t)
    return lo <= v <= hi


def wrap_int(v: int, t: ScalarType) -> int:
    """v reduced to t's width, two's complement (what integer add/mul/cast do)."""
    v &= (1 << t.bits) - 1
    if t.is_signed and v >= 1 << (t.bits - 1):
        v -= 1 << t.bits
    return v


def adapt_literal(lit: Literal, t: ScalarType, *, strict: bool, bitwise: bool = False):
    """The Const of type t a literal becomes next to a value of type t, or None if it cannot.

    Int literals adapt to any integer type they fit (bitwise operators also take
    the bit pattern of the other signedness, `x & 0xFFFFFFFF` on an i32) and to
    floats; float literals only to floats. `strict` (assignments, stores,
    arguments) keeps bools and numbers apart; otherwise a bool literal is 0/1.
    Raises ValueError when an int literal does not fit an integer type.
    """
    v = lit.value
    if t.is_bool:
        return Const(v, t) if isinstance(v, bool) else None
    if isinstance(v, bool):
        if strict:
            return None
        v = int(v)
    if isinstance(v, float):
        return Const(v, t) if t.is_float else None
    if t.is_float:
        return Const(float(v), t)
    if fits(v, t):
        return Const(v, t)
    if bitwise and -(2 ** (t.bits - 1)) <= v < 2**t.bits:
        return Const(wrap_int(v, t), t)
    lo, hi = int_range(t)
    raise ValueError(f"the literal {v} does not fit {t} ({lo}..{hi})")


def cast_const(c: Const, t: ScalarType) -> Const | None:
    """`cast(c)` to t folded per core.ops (None where folding could differ from a device)."""
    v = c.value
    if t == c.type:
        return c
    if t.is_bool:
        return Const(bool(v != 0), t)
    if c.type.is_bool:
        v = int(v)
    if t.is_float:
        if isinstance(v, int) and abs(v) > 2**24:
            return None  # int -> f32/f64 rounding: leave it to the device's conversion
        return Const(float(v), t)
    if isinstance(v, float):
        # float -> int truncates toward zero, saturates, NaN -> 0 (core.ops)
        if math.isnan(v):
            return Const(0, t)
        lo, hi = int_range(t)
        if math.isinf(v):
            return Const(hi if v > 0 else lo, t)
        return Const(min(max(math.trunc(v), lo), hi), t)
    return Const(wrap_int(v, t), t)


def _shift_amount(b: int, t: ScalarType) -> int:
    # the amount is read as unsigned: negative amounts are huge and clamp like >= bits
    return b & ((1 << t.bits) - 1)


def _shl(a: int, b: int, t: ScalarType) -> int:
    n = _shift_amount(b, t)
    return 0 if n >= t.bits else wrap_int(a << n, t)


def _shr(a: int, b: int, t: ScalarType) -> int:
    n = _shift_amount(b, t)
    if n >= t.bits:
        return -1 if a < 0 else 0
    return a >> n


def _floordiv(a: int, b: int, t: ScalarType) -> int:
    return 0 if b == 0 else wrap_int(a // b, t)


def _mod(a: int, b: int, t: ScalarType) -> int:
    return a if b == 0 else a % b


_INT_FOLD = {
    "add": lambda a, b, t: wrap_int(a + b, t),
    "sub": lambda a, b, t: wrap_int(a - b, t),
    "mul": lambda a, b, t: wrap_int(a * b, t),
    "floordiv": _floordiv,
    "mod": _mod,
    "min": lambda a, b, t: min(a, b),
    "max": lambda a, b, t: max(a, b),
    "band": lambda a, b, t: wrap_int(a & b, t),
    "bor": lambda a, b, t: wrap_int(a | b, t),
    "bxor": lambda a, b, t: wrap_int(a ^ b, t),
    "shl": _shl,
    "shr": _shr,
}

_COMPARE = {
    "eq": operator.eq,
    "ne": operator.ne,
    "lt": operator.lt,
    "le": operator.le,
    "gt": operator.gt,
    "ge": operator.ge,
}


def fold_binary(opcode: str, a: Const, b: Const) -> Const | None:
    """Fold an op on two constants of one integer or bool type; None if not foldable.

    Float ops are left to the device: folding them in Python doubles could round
    differently from f32 arithmetic.
    """
    t = a.type
    if b.type != t or t.is_float:
        return None
    if opcode in _COMPARE:
        return Const(bool(_COMPARE[opcode](a.value, b.value)), bool_)
    if t.is_bool:
        if opcode == "land":
            return Const(bool(a.value and b.value), bool_)
        if opcode == "lor":
            return Const(bool(a.value or b.value), bool_)
        return None
    fold = _INT_FOLD.get(opcode)
    return None if fold is None else Const(fold(a.value, b.value, t), t)


def fold_unary(opcode: str, a: Const) -> Const | None:
    t = a.type
    if opcode == "lnot" and t.is_bool:
        return Const(not a.value, bool_)
    if not t.is_int:
        return None
    if opcode == "neg":
        return Const(wrap_int(-a.value, t), t)
    if opcode == "bnot":
        return Const(wrap_int(~a.value, t), t)
    if opcode == "abs":
        return Const(wrap_int(abs(a.value), t), t)
    return None


_PY_BINARY = {
    "add": operator.add,
    "sub": operator.sub,
    "mul": operator.mul,
    "div": operator.truediv,
    "floordiv": operator.floordiv,
    "mod": operator.mod,
    "pow": operator.pow,
    "band": operator.and_,
    "bor": operator.or_,
    "bxor": operator.xor,
    "shl": operator.lshift,
    "shr": operator.rshift,
    "min": min,
    "max": max,
    **_COMPARE,
}


def fold_literals(opcode: str, a: Literal, b: Literal) -> Literal:
    """Python's own arithmetic on two literals (exact ints, double floats).

    Raises ValueError with a user-facing message for what Python rejects
    (division by zero, negative shifts, float bitwise operators).
    """
    x, y = a.value, b.value
    if (opcode == "pow" and abs(x) > 1 and not isinstance(y, float) and y > 4096) or (
        opcode == "shl" and not isinstance(y, float) and y > 4096
    ):
        raise ValueError("the constant expression is far too large for 64 bits")
    if opcode in BITWISE + SHIFTS and (isinstance(x, float) or isinstance(y, float)):
        raise ValueError("bitwise operators need integers, not floats")
    try:
        result = _PY_BINARY[opcode](x, y)
    except ZeroDivisionError:
        raise ValueError("division by zero in a constant expression") from None
    except (ValueError, OverflowError) as err:
        raise ValueError(f"invalid constant expression: {err}") from None
    if isinstance(result, complex):
        raise ValueError("a negative number to a fractional power is complex")
    if opcode in COMPARISONS:
        result = bool(result)
    elif isinstance(result, bool):
        # Python's True + True is 2 but True & True is True: keep arithmetic on bools an int
        result = result if opcode in BITWISE and isinstance(x, bool) else int(result)
    return Literal(result)


def float_for_division(t: ScalarType) -> ScalarType:
    """The float type `/` converts integer operands to: f64 for 64-bit, else f32."""
    if t.is_float:
        return t
    return f64 if t.bits == 64 else f32


def common_type(a: ScalarType, b: ScalarType) -> ScalarType:
    """The type two typed operands are converted to: equal types stay, else types.promote."""
    return a if a == b else promote(a, b)
