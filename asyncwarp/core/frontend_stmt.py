"""Statements of the kernel language: assignments, if, while, for-range, break, continue, return.

A FunctionCompiler mixin that emits structured IR: `ir.If`, and `ir.Loop` in
the shape of docs/internals.md. `for i in range(a, b, s)` counts in a hidden
variable, so that assigning `i` in the body does not change the iteration and
`i` keeps its last value after the loop, as in Python:
`ctr = a; Loop(header=[c = ctr < b], cond=c, body=[i = ctr; ...], latch=[ctr = ctr + s])`
(`ctr > b` for a negative constant step; a step known only at run time selects
the test by its sign).
"""

from __future__ import annotations

import ast
import builtins
import functools

from . import ir
from .frontend_expr import _BINOPS
from .frontend_hooks import Awaitable, Literal
from .frontend_scope import _PY_ANNOTATIONS, _returns_in, restructure_tail, stored_names
from .frontend_types import common_type
from .ir import Const, Var
from .types import ArrayType, ScalarType, bool_


class StmtMixin:
    """Statement visitors of FunctionCompiler."""

    def compile_block(self, stmts: list, tail: bool = False) -> None:
        """Compile statements at the insertion point; `tail`: nothing runs after them."""
        if tail:
            stmts = restructure_tail(stmts)
        for i, stmt in enumerate(stmts):
            self._tail = tail and i == len(stmts) - 1
            self.visit(stmt)
            if isinstance(stmt, (ast.Return, ast.Break, ast.Continue)):
                break  # the rest of the block is unreachable
        self._tail = False

    # ---- assignments

    def visit_Assign(self, node: ast.Assign) -> None:
        value = self.visit(node.value)
        for target in node.targets:
            self.assign(target, value)

    def assign(self, target: ast.AST, value) -> None:
        """Assign a frontend value to an assignment target (name, a[i], or a tuple of them)."""
        if isinstance(target, ast.Name):
            self.bind_name(target.id, value, target)
        elif isinstance(target, (ast.Tuple, ast.List)):
            self._unpack(target, value)
        elif isinstance(target, ast.Subscript):
            array, index = self._element(target)
            what = f"the value stored to a {array.type} array"
            stored = self.value(value, array.type.elem, self.loc(target), what=what)
            self.b.op("store", array, index, stored, order="weak", scope="device")
        elif isinstance(target, ast.Attribute):
            self.error("assigning to attributes is not supported in kernels", self.loc(target))
        else:
            self.generic_visit(target)

    def _element(self, target: ast.Subscript):
        loc = self.loc(target)
        array = self.array(self.visit(target.value), loc, "the indexed value")
        if isinstance(target.slice, (ast.Slice, ast.Tuple)):
            self.error("only single elements a[i] of 1-D arrays can be assigned", loc)
        return array, self.index_value(self.visit(target.slice), loc)

    def _snapshot(self, value):
        """A copy of a named variable, so that `a, b = b, a` reads both before writing."""
        if isinstance(value, tuple):
            return tuple(self._snapshot(v) for v in value)
        if isinstance(value, Var) and value in self._named and isinstance(value.type, ScalarType):
            tmp = self.b.tmp(value.type, value.name.rsplit("_", 1)[-1])
            self.b.assign(tmp, value)
            return tmp
        return value

    def _unpack(self, target: ast.Tuple | ast.List, value) -> None:
        loc = self.loc(target)
        if any(isinstance(e, ast.Starred) for e in target.elts):
            self.error("starred assignment targets are not supported in kernels", loc)
        if not isinstance(value, tuple):
            self.error(f"cannot unpack {self._describe(value)} into {len(target.elts)} names", loc)
        if len(value) != len(target.elts):
            self.error(f"cannot unpack {len(value)} values into {len(target.elts)} names", loc)
        values = self._snapshot(value) if len(value) > 1 else value
        for position, (element, v) in enumerate(zip(target.elts, values, strict=False)):
            if v is None:
                if isinstance(element, ast.Name) and element.id == "_":
                    continue
                self.error(
                    f"value {position + 1} of the tuple is absent (its future returns nothing)",
                    self.loc(element),
                    hint="unpack it into _",
                )
            self.assign(element, v)

    def _describe(self, value) -> str:
        if isinstance(value, Awaitable):
            return f"{value.describe} (a future: add await)"
        if value is None:
            return "a call that returns nothing"
        return "a single value"

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        loc = self.loc(node)
        op = _BINOPS.get(type(node.op))
        if op is None:
            self.error("this augmented assignment is not supported in kernels", loc)
        target = node.target
        if isinstance(target, ast.Name):
            current = self.lookup_name(target.id, target)
            if not (isinstance(current, Var) and isinstance(current.type, ScalarType)):
                self.error(f"{target.id!r} is not a scalar variable", loc)
            result = self.binary(op, current, self.visit(node.value), loc)
            self.b.assign(current, self.coerce_assign(result, current, loc))
        elif isinstance(target, ast.Subscript):
            # a[i] += v: a and i evaluated once; a plain load and store, not an atomic
            array, index = self._element(target)
            old = self.b.op("load", array, index, order="weak", scope="device")
            result = self.binary(op, old, self.visit(node.value), loc)
            stored = self.value(result, array.type.elem, loc, what="the updated element")
            self.b.op("store", array, index, stored, order="weak", scope="device")
        else:
            self.error("only names and array elements can be updated in place", loc)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        loc = self.loc(node)
        if not isinstance(node.target, ast.Name):
            self.error("annotated assignments need a plain name", loc)
        t = self.visit(node.annotation)
        t = _PY_ANNOTATIONS.get(t, t) if isinstance(t, type) else t
        name = node.target.id
        if isinstance(t, ArrayType):
            if node.value is not None:
                value = self.array(self.visit(node.value), loc, f"the value of {name!r}")
                if value.type.elem != t.elem:
                    self.error(f"{name!r} is annotated {t} but is a {value.type} array", loc)
                self.bind_name(name, value, node.target)
            return
        if not isinstance(t, ScalarType):
            self.error(
                f"the annotation of {name!r} is not a type",
                loc,
                hint="annotate with a scalar type such as aw.f32",
            )
        current = self.frame.bindings.get(name)
        if current is not None and not (isinstance(current, Var) and current.type == t):
            shown = current.type if isinstance(current, Var) else current
            self.error(f"{name!r} is already {shown}, it cannot be declared {t}", loc)
        if node.value is None:
            if current is None:
                self.frame.declared[name] = t  # typed by its first assignment
            return
        value = self.value(self.visit(node.value), t, loc, what=f"the value of {name!r}")
        var = current if current is not None else self.new_local(name, t, loc)
        self.b.assign(var, value)

    # ---- control flow

    def visit_If(self, node: ast.If) -> None:
        tail = self._tail
        cond = self.truth(self.visit(node.test), self.loc(node.test))
        if isinstance(cond, (Literal, Const)):  # decided at compile time: one branch only
            self.compile_block(node.body if cond.value else node.orelse, tail)
            return
        then, _ = self.build_block(lambda: self.compile_block(node.body, tail))
        else_, _ = self.build_block(lambda: self.compile_block(node.orelse, tail))
        self.b.emit(ir.If(cond, then, else_, self.loc(node)))

    def _loop_body(self, stmts: list, prologue=None) -> list:
        def body():
            if prologue is not None:
                prologue()
            self.frame.loop_depth += 1
            try:
                self.compile_block(stmts)
            finally:
                self.frame.loop_depth -= 1

        return self.build_block(body)[0]

    def _after_loop(self, node: ast.AST) -> None:
        """A return inside the loop set the frame's flag and broke out: break again."""
        flag = self.frame.ret.flag
        if flag is not None and _returns_in(node.body):
            loc = self.loc(node)
            self.b.emit(ir.If(flag, [ir.Break(loc)], [], loc))

    def visit_While(self, node: ast.While) -> None:
        loc = self.loc(node)
        if node.orelse:
            self.error("while ... else is not supported in kernels", loc)
        header, cond = self.build_block(
            lambda: self.truth(self.visit(node.test), self.loc(node.test))
        )
        if isinstance(cond, (Literal, Const)):
            if not cond.value:
                self.b.block.extend(header)  # the test runs once; the body never
                return
            cond = None
        self.b.emit(ir.Loop(header, cond, self._loop_body(node.body), [], loc))
        self._after_loop(node)

    def visit_For(self, node: ast.For) -> None:
        loc = self.loc(node)
        if node.orelse:
            self.error("for ... else is not supported in kernels", loc)
        if not isinstance(node.target, ast.Name):
            self.error("a for loop needs one loop variable: for i in range(n)", loc)
        it = node.iter
        if not (isinstance(it, ast.Call) and self.visit(it.func) is builtins.range):
            self.error(
                "for loops can only iterate over range(...)",
                loc,
                hint="arrays do not carry their length: for i in range(n): ... a[i]",
            )
        if (
            it.keywords
            or not 1 <= len(it.args) <= 3
            or any(isinstance(a, ast.Starred) for a in it.args)
        ):
            self.error("range() takes 1 to 3 integer arguments", loc)
        args = [self.scalar(self.visit(a), self.loc(a), "a range() argument") for a in it.args]
        for a in args:
            is_int = type(a.value) is int if isinstance(a, Literal) else a.type.is_int
            if not is_int:
                shown = a.value if isinstance(a, Literal) else a.type
                self.error(
                    f"range() needs integers, not {shown!r}", loc, hint="cast it: aw.i32(...)"
                )
        start, stop, step = {
            1: lambda: (Literal(0), args[0], Literal(1)),
            2: lambda: (args[0], args[1], Literal(1)),
            3: lambda: tuple(args),
        }[len(args)]()
        name = node.target.id
        current = self.frame.bindings.get(name)
        if current is None:
            typed = [a.type for a in (start, stop, step) if not isinstance(a, Literal)]
            if not typed:
                typed = [self.literal_const(a, loc).type for a in (start, stop, step)]
            t = self.frame.declared.get(name) or functools.reduce(common_type, typed)
            var = self.new_local(name, t, loc)
        elif isinstance(current, Var) and isinstance(current.type, ScalarType):
            var, t = current, current.type
            if not t.is_int:
                self.error(f"loop variable {name!r} is {t}; range() counts in integers", loc)
        else:
            self.error(f"{name!r} is bound to {current!r} and cannot be a loop variable", loc)
        changed = stored_names(node.body)
        start, stop, step = (self._range_value(x, t, loc, changed) for x in (start, stop, step))
        if isinstance(step, Const) and step.value == 0:
            self.error("range() step must not be zero", loc)
        counter = Var(self.frame.var_prefix + name + "_ctr", t)
        self.b.assign(counter, start)
        positive = None
        if not isinstance(step, Const):
            positive = self.b.op("gt", step, Const(0, t))

        def test():
            if positive is None:
                return self.b.op("lt" if step.value > 0 else "gt", counter, stop)
            below, above = self.b.op("lt", counter, stop), self.b.op("gt", counter, stop)
            return self.b.op("select", positive, below, above)

        header, cond = self.build_block(test)
        body = self._loop_body(node.body, prologue=lambda: self.b.assign(var, counter))
        latch, _ = self.build_block(lambda: self.b.op("add", counter, step, dst=counter))
        self.b.emit(ir.Loop(header, cond, body, latch, loc))
        self._after_loop(node)

    def _range_value(self, x, t: ScalarType, loc, changed: set):
        """A range() argument of the loop's type, copied if it is a variable the body assigns."""
        x = self._adapt(x, t, loc) if isinstance(x, Literal) else x
        x = self.cast(x, t, loc)
        bindings = self.frame.bindings
        if isinstance(x, Var) and any(bindings.get(name) is x for name in changed):
            copy = self.b.tmp(t, "bound")
            self.b.assign(copy, x)
            return copy
        return x

    def visit_Break(self, node: ast.Break) -> None:
        self.b.emit(ir.Break(self.loc(node)))

    def visit_Continue(self, node: ast.Continue) -> None:
        self.b.emit(ir.Continue(self.loc(node)))

    def visit_Return(self, node: ast.Return) -> None:
        tail = self._tail
        loc = self.loc(node)
        self._kernel_returned |= self.frame.is_kernel
        if node.value is not None:
            self.set_result(self.visit(node.value), loc)
        if tail:
            return  # nothing follows: no jump needed
        frame = self.frame
        if frame.loop_depth > 0:
            self.b.assign(frame.ret.flag, Const(True, bool_))
        self.b.emit(ir.Break(loc))

    def visit_Expr(self, node: ast.Expr) -> None:
        v = node.value
        if isinstance(v, ast.Constant) and (isinstance(v.value, str) or v.value is Ellipsis):
            return  # docstrings and `...`
        result = self.visit(v)
        if isinstance(result, Awaitable):
            self.error(
                f"{result.describe} is never awaited: add await",
                self.loc(node),
                hint="futures only run when awaited (alone, or in aw.join / aw.select)",
            )

    def visit_Pass(self, node: ast.Pass) -> None:
        pass
