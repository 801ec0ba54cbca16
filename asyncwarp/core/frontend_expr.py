"""Expressions of the kernel language: values, operators, calls and awaits.

A FunctionCompiler mixin. Typing rules (the README repeats them for users):
- Literals have no type until used: next to a typed value an int literal takes
  that value's type when it fits (`i + 1` with i u64 gives `1:u64`; bitwise
  operators also accept the other signedness's bit pattern, `x & 0xFFFFFFFF`),
  and may become a float (`x * 2` with x f32 gives `2.0:f32`); a float literal
  becomes the float type of a float operand, and f32 next to an integer. Alone,
  ints are i32 (i64, then u64, when they do not fit), floats f32, bools bool.
  Operations on literals only are folded exactly in Python. Module-level ints,
  floats and bools are literals too; numpy scalars keep their dtype.
- Two typed operands: equal types stay, else `types.promote` (float beats int,
  wider beats narrower, unsigned beats signed at equal width, bool is i32), the
  other operand being cast. Arithmetic on bools is done in i32.
- `/` converts integers to f32 (f64 when 64-bit) first; `//` and `%` follow
  Python; `**` by a non-negative compile-time integer is repeated
  multiplication (any numeric type), float ** float is `pow`, nothing else.
- `& | ^` need integers or two bools (logical ops); shifts keep the left
  operand's type; comparisons compare in the common type; `and`, `or`, `not`
  give bools (non-bool operands are tested with `!= 0`).
- Assignments, stores, returns and arguments never change a value's type
  implicitly (only literals adapt): a mismatch is a CompileError suggesting a
  cast (`aw.f32(x)`). Integer constants (literals, `aw.WARP`) fold.
"""

from __future__ import annotations

import ast

import numpy as np

from . import ir, lang
from .errors import CompileError
from .frontend_async import AsyncCall
from .frontend_hooks import Awaitable, KernelObject, Literal, lookup_builtin
from .frontend_types import (
    BITWISE,
    COMPARISONS,
    SHIFTS,
    adapt_literal,
    cast_const,
    common_type,
    fits,
    float_for_division,
    fold_binary,
    fold_literals,
    fold_unary,
)
from .ir import Const, Loc, Var
from .lang import DeviceFunction
from .ops import PURE, SPECIAL, info
from .types import ArrayType, ScalarType, bool_, from_dtype, i32

_BINOPS = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.FloorDiv: "floordiv",
    ast.Mod: "mod",
    ast.Pow: "pow",
    ast.BitAnd: "band",
    ast.BitOr: "bor",
    ast.BitXor: "bxor",
    ast.LShift: "shl",
    ast.RShift: "shr",
}
_CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
_SYMBOLS = {ast.MatMult: "@", ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in"}


class BoundMethod:
    """`obj.name` for a KernelObject, waiting to be called."""

    def __init__(self, obj: KernelObject, name: str):
        self.obj = obj
        self.name = name


def is_pure_block(block: list) -> bool:
    """Whether a block may run speculatively: only pure ops and execution-model reads."""
    return all(isinstance(s, ir.Op) and info(s.opcode).category in (PURE, SPECIAL) for s in block)


class ExprMixin:
    """Expression visitors and the value helpers that builtins and primitives use."""

    # ---- frontend values

    def from_python(self, obj, node: ast.AST | None):
        """A compile-time Python object as a frontend value."""
        if obj is lang.WARP:
            return Const(self.warp_width, i32)
        if isinstance(obj, (bool, int, float)):
            return Literal(obj)
        if isinstance(obj, np.generic):
            try:
                t = from_dtype(obj.dtype)
            except ValueError:
                return obj
            return Const(obj.item(), t)
        if isinstance(obj, tuple):
            return tuple(self.from_python(x, node) for x in obj)
        return obj

    def scalar(self, x, loc: Loc | None, what: str = "the value"):
        """x if it is a scalar (a Var, Const or Literal); a CompileError saying what it is else."""
        if isinstance(x, (Const, Literal)):
            return x
        if isinstance(x, (bool, int, float, np.generic)):  # a handler passed a Python number
            converted = self.from_python(x, None)
            if isinstance(converted, (Const, Literal)):
                return converted
            self.error(f"{what} is a {type(x).__name__}, which kernels do not support", loc)
        if isinstance(x, Var):
            if isinstance(x.type, ScalarType):
                return x
            self.error(
                f"{what} is an array ({x.type}), not a scalar", loc, hint="index the array: a[i]"
            )
        if x is None:
            self.error(f"{what} has no value (the function called returns nothing)", loc)
        if isinstance(x, str):
            self.error(
                "strings are not supported in kernels",
                loc,
                hint="strings only appear as order=/scope= arguments",
            )
        if isinstance(x, tuple):
            self.error(
                f"{what} is a tuple of {len(x)} values where one value is needed",
                loc,
                hint="unpack it first: a, b = ...",
            )
        if isinstance(x, Awaitable):
            self.error(
                f"{what} is {x.describe}, a future: it is never awaited", loc, hint="add await"
            )
        if isinstance(x, KernelObject):
            self.error(f"{what} is a {x.kind}, not a value", loc)
        self.error(f"{what} is {x!r}, which is not a value in kernels", loc)

    def literal_const(self, lit: Literal, loc: Loc | None) -> Const:
        try:
            return Const(lit.value, lit.default_type)
        except CompileError as err:  # raised without a location
            self.error(err.message, loc, err.hint)

    def value(
        self, x, type: ScalarType | None = None, loc: Loc | None = None, what: str = "the value"
    ):
        """x as an IR value; with `type`, of that type (literals adapt, else it must match)."""
        x = self.scalar(x, loc, what)
        if type is None:
            return self.literal_const(x, loc) if isinstance(x, Literal) else x
        if isinstance(x, Literal):
            try:
                c = adapt_literal(x, type, strict=True)
            except ValueError as err:
                self.error(f"{what}: {err}", loc)
            if c is None:
                self.error(
                    f"{what} is {x.value!r}, not a {type} value",
                    loc,
                    hint=f"write it as a {type} literal or cast: aw.{type.name}(...)",
                )
            return c
        if isinstance(x, Const) and x.type.is_int and type.is_int and fits(x.value, type):
            return Const(x.value, type)  # a compile-time integer (aw.WARP * 4) converts exactly
        if x.type != type:
            self.error(
                f"{what} is {x.type}, expected {type}", loc, hint=f"cast it: aw.{type.name}(...)"
            )
        return x

    def const_int(self, x, loc: Loc | None, what: str = "the value") -> int:
        """The Python int of a compile-time integer (a literal, aw.WARP, folded constants)."""
        if isinstance(x, Literal) and isinstance(x.value, int) and not isinstance(x.value, bool):
            return x.value
        if isinstance(x, Const) and x.type.is_int:
            return x.value
        self.error(
            f"{what} must be a compile-time integer constant",
            loc,
            hint="use a literal, a module-level int, or an expression of them and aw.WARP",
        )

    def constant(self, value, type: ScalarType) -> Const:
        """A Const of `type` (checked: ints must fit, floats are floats)."""
        c = adapt_literal(Literal(value), type, strict=True)
        if c is None:
            raise TypeError(f"{value!r} is not a {type} constant")
        return c

    def cast(self, x, t: ScalarType, loc: Loc | None = None):
        """x converted to t (literals adapt; constants fold; else a `cast` op)."""
        x = self.scalar(x, loc, "the value")
        if isinstance(x, Literal):
            try:
                c = adapt_literal(x, t, strict=False)
            except ValueError:
                c = None
            x = c if c is not None else self.literal_const(x, loc)
        if x.type == t:
            return x
        if isinstance(x, Const):
            folded = cast_const(x, t)
            if folded is not None:
                return folded
        return self.b.op("cast", x, type=t)

    def truth(self, x, loc: Loc | None):
        """x as a bool (`x != 0` for numbers); literals stay literals."""
        x = self.scalar(x, loc, "the condition")
        if isinstance(x, Literal):
            return Literal(bool(x.value))
        if x.type.is_bool:
            return x
        return self.emit_binary("ne", x, Const(0.0 if x.type.is_float else 0, x.type))

    def index_value(self, x, loc: Loc | None):
        """x as an array index: any integer type; literals become i32 (i64 if large)."""
        x = self.scalar(x, loc, "the index")
        if isinstance(x, Literal):
            if not isinstance(x.value, int) or isinstance(x.value, bool):
                self.error(f"array index {x.value!r} is not an integer", loc)
            if x.value < 0:
                self.error(
                    f"negative array index {x.value}",
                    loc,
                    hint="kernels do not wrap negative indices: compute n - k",
                )
            return self.literal_const(x, loc)
        if not x.type.is_int:
            self.error(
                f"array index must be an integer, not {x.type}", loc, hint="cast it: aw.i32(...)"
            )
        return x

    def array(self, x, loc: Loc | None, what: str = "the array") -> Var:
        if isinstance(x, Var) and isinstance(x.type, ArrayType):
            return x
        self.error(f"{what} must be an array", loc)

    def emit_binary(self, opcode: str, a, b):
        if isinstance(a, Const) and isinstance(b, Const):
            folded = fold_binary(opcode, a, b)
            if folded is not None:
                return folded
        return self.b.op(opcode, a, b)

    def emit_unary(self, opcode: str, a):
        if isinstance(a, Const):
            folded = fold_unary(opcode, a)
            if folded is not None:
                return folded
        return self.b.op(opcode, a)

    # ---- operators

    def _adapt(self, lit: Literal, t: ScalarType, loc: Loc | None, bitwise: bool = False) -> Const:
        try:
            c = adapt_literal(lit, t, strict=False, bitwise=bitwise)
        except ValueError as err:
            self.error(str(err), loc, hint="cast the other operand to a wider type, e.g. aw.i64")
        return c if c is not None else self.literal_const(lit, loc)

    def _typed_pair(self, a, b, loc: Loc | None, bitwise: bool = False):
        if isinstance(a, Literal):
            a = self._adapt(a, b.type, loc, bitwise)
        elif isinstance(b, Literal):
            b = self._adapt(b, a.type, loc, bitwise)
        t = common_type(a.type, b.type)
        return self.cast(a, t), self.cast(b, t), t

    def binary(self, op: str, a, b, loc: Loc | None):
        """`a op b` for op in ARITH, BITWISE, SHIFTS and COMPARISONS (opcode names)."""
        a = self.scalar(a, loc, "the left operand")
        b = self.scalar(b, loc, "the right operand")
        if isinstance(a, Literal) and isinstance(b, Literal):
            try:
                return fold_literals(op, a, b)
            except ValueError as err:
                self.error(str(err), loc)
        if op == "pow":
            return self._pow(a, b, loc)
        if op in SHIFTS:
            return self._shift(op, a, b, loc)
        a, b, t = self._typed_pair(a, b, loc, bitwise=op in BITWISE)
        if op in BITWISE:
            if t.is_float:
                self.error(f"bitwise operators need integers, not {t}", loc)
            if t.is_bool:
                return self.emit_binary({"band": "land", "bor": "lor", "bxor": "ne"}[op], a, b)
            return self.emit_binary(op, a, b)
        if op in COMPARISONS:
            return self.emit_binary(op, a, b)
        if t.is_bool:
            a, b, t = self.cast(a, i32), self.cast(b, i32), i32
        if op == "div":
            ft = float_for_division(t)
            a, b = self.cast(a, ft), self.cast(b, ft)
        return self.emit_binary(op, a, b)

    def _pow(self, a, b, loc: Loc | None):
        exponent = None
        if isinstance(b, Literal) and type(b.value) is int:
            exponent = b.value
        elif isinstance(b, Const) and b.type.is_int:
            exponent = b.value
        if exponent is not None and exponent >= 0:
            if isinstance(a, Literal):
                return self.binary("pow", a, Literal(exponent), loc)
            return self._power(self.cast(a, i32) if a.type.is_bool else a, exponent)
        typed = [x for x in (a, b) if not isinstance(x, Literal)]
        if all(x.type.is_float for x in typed):
            a, b, t = self._typed_pair(a, b, loc)
            return self.emit_binary("pow", a, b)
        self.error(
            "** needs a non-negative compile-time integer exponent, or float operands",
            loc,
            hint="cast to a float type for a general power: aw.f32(x) ** aw.f32(y)",
        )

    def _power(self, x, e: int):
        if e == 0:
            return Const(1.0 if x.type.is_float else 1, x.type)
        result, base = None, x
        while e:  # square and multiply
            if e & 1:
                result = base if result is None else self.emit_binary("mul", result, base)
            e >>= 1
            if e:
                base = self.emit_binary("mul", base, base)
        return result

    def _shift(self, op: str, a, b, loc: Loc | None):
        if isinstance(a, Literal):
            a = self._adapt(a, b.type, loc) if b.type.is_int else self.literal_const(a, loc)
        if a.type.is_bool:
            a = self.cast(a, i32)
        if not a.type.is_int:
            self.error(f"shifts need an integer, not {a.type}", loc)
        if isinstance(b, Literal):
            if type(b.value) is not int or b.value < 0:
                self.error(f"shift amount {b.value!r} must be a non-negative integer", loc)
            b = self._adapt(b, a.type, loc)
        elif b.type.is_float:
            self.error(f"shift amount must be an integer, not {b.type}", loc)
        return self.emit_binary(op, a, self.cast(b, a.type))

    def unary(self, op: str, x, loc: Loc | None):
        """`not x`, `-x`, `+x`, `~x` (op: not, neg, pos, invert)."""
        x = self.scalar(x, loc, "the operand")
        if op == "not":
            t = self.truth(x, loc)
            return Literal(not t.value) if isinstance(t, Literal) else self.emit_unary("lnot", t)
        if op == "invert" and (isinstance(x, Literal) or not x.type.is_int):
            if isinstance(x, Literal) and type(x.value) is int:
                return Literal(~x.value)
            shown = x.value if isinstance(x, Literal) else x.type
            self.error(f"~ needs an integer, not {shown!r}", loc, hint="use `not` for bools")
        if isinstance(x, Literal):
            return Literal(-x.value if op == "neg" else +x.value)
        if x.type.is_bool:
            x = self.cast(x, i32)
        if op == "pos":
            return x
        return self.emit_unary("neg" if op == "neg" else "bnot", x)

    def short_circuit(self, is_and: bool, left, right_thunk, loc: Loc | None):
        """`left and right` / `left or right` with Python's evaluation order.

        The right side is evaluated into a block; when that block is pure it is
        spliced in and combined with land/lor, else it runs inside an If.
        """
        if isinstance(left, (Literal, Const)):
            if bool(left.value) != is_and:  # decided: the right side is not evaluated
                return Literal(bool(left.value))
            return right_thunk()
        block, right = self.build_block(right_thunk)
        if isinstance(right, Literal):
            right = self.literal_const(right, loc)
        if is_pure_block(block):
            self.b.block.extend(block)
            return self.emit_binary("land" if is_and else "lor", left, right)
        result = self.b.tmp(bool_, "and" if is_and else "or")
        self.b.assign(result, left)
        block.append(ir.Op(result, "copy", (right,), {}, self.b.loc))
        then, else_ = (block, []) if is_and else ([], block)
        self.b.emit(ir.If(result, then, else_, self.b.loc))
        return result

    # ---- visitors: atoms

    def visit_Constant(self, node: ast.Constant):
        v = node.value
        if isinstance(v, (bool, int, float)):
            return Literal(v)
        if v is None or isinstance(v, str):
            return v
        self.error(
            f"constants of type {type(v).__name__} are not supported in kernels", self.loc(node)
        )

    def visit_Name(self, node: ast.Name):
        return self.lookup_name(node.id, node)

    def visit_Attribute(self, node: ast.Attribute):
        base = self.visit(node.value)
        loc = self.loc(node)
        if isinstance(base, KernelObject):
            return BoundMethod(base, node.attr)
        if isinstance(base, Var) and isinstance(base.type, ArrayType):
            self.error(
                f"arrays have no attribute {node.attr!r} in kernels",
                loc,
                hint="pass sizes as scalar arguments",
            )
        if isinstance(base, (Var, Const, Literal, tuple, Awaitable)) or base is None:
            self.error(f"values have no attribute {node.attr!r} in kernels", loc)
        try:
            return self.from_python(getattr(base, node.attr), node)
        except AttributeError:
            self.error(f"{base!r} has no attribute {node.attr!r}", loc)

    def visit_Tuple(self, node: ast.Tuple):
        return tuple(self.visit(e) for e in node.elts)

    def visit_Subscript(self, node: ast.Subscript):
        base = self.visit(node.value)
        loc = self.loc(node)
        if isinstance(node.slice, ast.Slice):
            self.error("slices are not supported in kernels", loc, hint="index one element: a[i]")
        if isinstance(base, Var) and isinstance(base.type, ArrayType):
            if isinstance(node.slice, ast.Tuple):
                self.error("arrays are 1-D: compute a flat index", loc, hint="a[i * n + j]")
            index = self.index_value(self.visit(node.slice), loc)
            return self.b.op("load", base, index, order="weak", scope="device")
        key = self.visit(node.slice)
        if isinstance(base, tuple):
            i = self.const_int(key, loc, "a tuple index")
            if not -len(base) <= i < len(base):
                self.error(f"tuple index {i} out of range for {len(base)} values", loc)
            return base[i]
        if isinstance(base, (Var, Const, Literal, KernelObject, Awaitable)) or base is None:
            self.error("only arrays and tuples can be indexed", loc)
        if isinstance(key, Literal):
            key = key.value
        if isinstance(key, (Var, Const)):
            self.error("a Python object can only be indexed by compile-time constants", loc)
        try:
            return self.from_python(base[key], node)
        except Exception as err:  # indexing a user's Python object at compile time
            self.error(f"cannot index {base!r} with {key!r}: {err}", loc)

    # ---- visitors: operators

    def visit_BinOp(self, node: ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            sym = _SYMBOLS.get(type(node.op), type(node.op).__name__)
            self.error(f"operator {sym} is not supported in kernels", self.loc(node))
        return self.binary(op, self.visit(node.left), self.visit(node.right), self.loc(node))

    def visit_UnaryOp(self, node: ast.UnaryOp):
        op = {ast.Not: "not", ast.USub: "neg", ast.UAdd: "pos", ast.Invert: "invert"}
        return self.unary(op[type(node.op)], self.visit(node.operand), self.loc(node))

    def visit_Compare(self, node: ast.Compare):
        loc = self.loc(node)
        for op in node.ops:
            if type(op) not in _CMPOPS:
                sym = _SYMBOLS.get(type(op), type(op).__name__)
                self.error(
                    f"operator {sym!r} is not supported in kernels",
                    loc,
                    hint="compare values with == != < <= > >=",
                )
        left = self.visit(node.left)
        right = self.visit(node.comparators[0])
        result = self.binary(_CMPOPS[type(node.ops[0])], left, right, loc)
        prev = right
        for op, comparator in zip(node.ops[1:], node.comparators[1:], strict=False):
            # a < b < c is (a < b) and (b < c), b evaluated once, c only if needed

            def next_test(op=op, comparator=comparator, left=prev):
                nonlocal prev
                prev = self.visit(comparator)
                return self.binary(_CMPOPS[type(op)], left, prev, loc)

            result = self.short_circuit(True, result, next_test, loc)
        return result

    def visit_BoolOp(self, node: ast.BoolOp):
        is_and = isinstance(node.op, ast.And)
        acc = self.truth(self.visit(node.values[0]), self.loc(node.values[0]))
        for operand in node.values[1:]:

            def right(operand=operand):
                return self.truth(self.visit(operand), self.loc(operand))

            acc = self.short_circuit(is_and, acc, right, self.loc(node))
        return acc

    def visit_IfExp(self, node: ast.IfExp):
        loc = self.loc(node)
        cond = self.truth(self.visit(node.test), loc)
        if isinstance(cond, (Literal, Const)):
            return self.visit(node.body if cond.value else node.orelse)
        then, a = self.build_block(lambda: self.scalar(self.visit(node.body), loc, "the if arm"))
        else_, b = self.build_block(
            lambda: self.scalar(self.visit(node.orelse), loc, "the else arm")
        )
        if isinstance(a, Literal) and isinstance(b, Literal):
            a = self.literal_const(a, loc)
        t = self._arm_type(a, b, loc)
        then_value = self.emit_into(then, lambda: self.cast(a, t, loc))
        else_value = self.emit_into(else_, lambda: self.cast(b, t, loc))
        if is_pure_block(then) and is_pure_block(else_):
            self.b.block.extend(then + else_)
            return self.b.op("select", cond, then_value, else_value)
        result = self.b.tmp(t, "sel")
        then.append(ir.Op(result, "copy", (then_value,), {}, self.b.loc))
        else_.append(ir.Op(result, "copy", (else_value,), {}, self.b.loc))
        self.b.emit(ir.If(cond, then, else_, loc))
        return result

    def _arm_type(self, a, b, loc: Loc | None) -> ScalarType:
        """The type of `a if c else b`: the operand typing of a binary operator."""
        if isinstance(a, Literal):
            a = self._adapt(a, b.type, loc)
        elif isinstance(b, Literal):
            b = self._adapt(b, a.type, loc)
        return common_type(a.type, b.type)

    # ---- visitors: calls and awaits

    def _call_arguments(self, node: ast.Call, loc: Loc) -> tuple[list, dict]:
        for a in node.args:
            if isinstance(a, ast.Starred):
                self.error("star-arguments (*args) are not supported in kernels", loc)
        for k in node.keywords:
            if k.arg is None:
                self.error("**kwargs arguments are not supported in kernels", loc)
        return [self.visit(a) for a in node.args], {
            k.arg: self.visit(k.value) for k in node.keywords
        }

    def visit_Call(self, node: ast.Call):
        loc = self.loc(node)
        func = self.visit(node.func)
        if isinstance(func, BoundMethod):
            args, kwargs = self._call_arguments(node, loc)
            return func.obj.call_method(self, func.name, args, kwargs, loc)
        if isinstance(func, DeviceFunction):
            if not func.is_async and node is self._await_operand:
                self.error(
                    f"{func.name} is not async: call it without await",
                    loc,
                    hint=f"or make it `async def {func.name}`",
                )
            args, kwargs = self._call_arguments(node, loc)
            bound = self.bind_arguments(func, args, kwargs, loc)
            return AsyncCall(bound) if func.is_async else self.inline(bound)
        entry = lookup_builtin(func)
        if entry is not None:
            if entry.lazy:
                self._call_arguments_shape(node, loc)
                kwargs = {k.arg: k.value for k in node.keywords}
                return entry.handler(self, list(node.args), kwargs, loc)
            args, kwargs = self._call_arguments(node, loc)
            return entry.handler(self, args, kwargs, loc)
        self._unsupported_call(func, node, loc)

    def _call_arguments_shape(self, node: ast.Call, loc: Loc) -> None:
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            self.error("star-arguments are not supported in kernels", loc)

    def _unsupported_call(self, func, node: ast.Call, loc: Loc):
        name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or repr(func)
        root = self._root_fn
        if (
            func is root
            or getattr(func, "fn", None) is root
            or (getattr(func, "__wrapped__", None) is root)
        ):
            self.error(f"recursion is not supported in kernels: {name} calls itself", loc)
        if getattr(func, "fn", None) is not None and callable(func):
            self.error(
                f"{name} is a kernel: kernels cannot call kernels",
                loc,
                hint="move the shared code into an @aw.func function",
            )
        if isinstance(func, (Var, Const, Literal, tuple, KernelObject, Awaitable)) or func is None:
            self.error(f"{self.source_text(node.func)} is not callable", loc)
        if isinstance(func, type):
            self.error(f"constructing {name} objects is not supported in kernels", loc)
        module = getattr(func, "__module__", None)
        if module == "builtins":
            self.error(f"the Python builtin {name}() is not supported in kernels", loc)
        if callable(func):
            self.error(
                f"{name} is a plain Python function and cannot be called from kernels",
                loc,
                hint="mark it @aw.func to compile it for the device",
            )
        self.error(f"{name} is not callable", loc)

    def visit_Await(self, node: ast.Await):
        loc = self.loc(node)
        if not self.frame.is_async:
            self.error(
                "await is only allowed in async functions",
                loc,
                hint=f"make it `async def {self.frame.name}`",
            )
        if self._in_poll:
            self.error("await cannot appear inside a wait condition", loc)
        saved, self._await_operand = self._await_operand, node.value
        try:
            future = self.visit(node.value)
        finally:
            self._await_operand = saved
        if not isinstance(future, Awaitable):
            shown = self.source_text(node.value)
            self.error(
                f"cannot await {shown}: it is not a future",
                loc,
                hint="await an async @aw.func call, aw.until/sleep/yield_now/join/select, "
                "or a primitive's wait",
            )
        self.awaits_emitted += 1
        return future.emit_await(self, loc)
