"""Function scopes of the frontend: source locations, names, return lowering, @aw.func inlining.

Every compiled function (the kernel, each inlined call) gets a `Frame`: its
source, globals and local bindings, and the state of its `return`s. Calls bind
arguments as Python does (keywords and defaults are fine, star parameters are
not); scalars are copied into fresh variables, arrays and kernel objects are
passed by reference, and a constant argument stays compile-time when the body
never assigns its parameter. Names resolve to locals, then the captured
variables of an enclosing Python function, then globals and builtins. Returns
follow docs/internals.md: when a function has a return that is not in tail
position, its body sits in `Loop(header=[], cond=None, body=[..., Break()])`,
`return x` assigns the result variables and breaks, and from inside user loops
it sets a flag that each enclosing loop tests after it ends.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import inspect
import textwrap
from dataclasses import dataclass, field

from . import ir
from .errors import CompileError
from .frontend_hooks import Awaitable, KernelObject, Literal
from .frontend_types import adapt_literal
from .ir import Const, Loc, Var
from .lang import DeviceFunction
from .types import ArrayType, ScalarType, bool_, f32, i32

# Python annotations that name our scalar types
_PY_ANNOTATIONS = {int: i32, float: f32, bool: bool_}


@dataclass(frozen=True)
class SourceInfo:
    """Where a function's source came from, to turn AST positions into `Loc`s."""

    file: str
    first_line: int  # file line of the first source line (a decorator or the def)
    col_shift: int  # columns textwrap.dedent removed
    lines: tuple  # the original source lines
    text: str  # the dedented source that was parsed

    def loc(self, node: ast.AST) -> Loc:
        row = node.lineno - 1
        line = self.lines[row] if 0 <= row < len(self.lines) else ""
        col = node.col_offset
        if not line.isascii():  # ast columns count UTF-8 bytes
            dedented = line[self.col_shift :]
            col = len(dedented.encode()[:col].decode(errors="replace"))
        return Loc(self.file, self.first_line + row, col + self.col_shift, line.rstrip("\n"))

    def segment(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.text, node) or ast.unparse(node)


def parse_function(fn, what: str) -> tuple[ast.FunctionDef | ast.AsyncFunctionDef, SourceInfo]:
    """The `def` node of a Python function and the source info for its locations."""
    try:
        lines, first_line = inspect.getsourcelines(fn)
    except (OSError, TypeError) as err:
        raise CompileError(
            f"cannot read the source of {what} {getattr(fn, '__qualname__', fn)!r} ({err})",
            hint="define kernels and @aw.func functions in a .py file",
        ) from None
    file = fn.__code__.co_filename
    source = "".join(lines)
    text = textwrap.dedent(source)
    col_shift = len(lines[0].rstrip("\n")) - len(text.splitlines()[0])
    info = SourceInfo(file, first_line, col_shift, tuple(lines), text)
    try:
        tree = ast.parse(text)
    except SyntaxError as err:
        loc = Loc(file, first_line + (err.lineno or 1) - 1, 0, "")
        raise CompileError(f"cannot parse {what} {fn.__qualname__}: {err.msg}", loc) from None
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        raise CompileError(
            f"{what} {fn.__qualname__} must be a def or async def function",
            Loc(file, first_line, 0, lines[0]),
            hint="lambdas cannot be kernels or device functions",
        )
    return node, info


def closure_values(fn) -> dict:
    """The free variables a nested Python function captured (read like globals)."""
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        with contextlib.suppress(ValueError):  # an empty cell: not assigned yet
            out[name] = cell.cell_contents
    return out


# ---------------------------------------------------------------- AST facts about returns


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _walk_own(stmts: list):
    """The nodes of stmts, not descending into nested functions or classes."""
    todo = list(stmts)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))


def _returns_in(stmts: list) -> list:
    found = [n for n in _walk_own(stmts) if isinstance(n, ast.Return)]
    return sorted(found, key=lambda n: (n.lineno, n.col_offset))


def _breaks_loop(stmts: list) -> bool:
    """Whether a `break` in stmts leaves the loop whose body they are."""
    for s in stmts:
        if isinstance(s, ast.Break):
            return True
        if isinstance(s, ast.If) and (_breaks_loop(s.body) or _breaks_loop(s.orelse)):
            return True
    return False


def always_returns(stmts: list) -> bool:
    """Whether every path through stmts ends in a return."""
    for s in stmts:
        if isinstance(s, ast.Return):
            return True
        if isinstance(s, ast.If) and always_returns(s.body) and always_returns(s.orelse):
            return True
        is_forever = isinstance(s, ast.While) and isinstance(s.test, ast.Constant) and s.test.value
        if is_forever and not _breaks_loop(s.body):
            return True
    return False


def restructure_tail(stmts: list) -> list:
    """`if c: ...return` followed by more code, in tail position, as `if c: ... else: rest`.

    This is Python's meaning (the rest only runs when the branch did not
    return) and keeps early returns in tail position, where they need no loop.
    """
    for i, s in enumerate(stmts[:-1]):
        if not isinstance(s, ast.If):
            continue
        rest = stmts[i + 1 :]
        if always_returns(s.body):
            new = ast.If(test=s.test, body=s.body, orelse=s.orelse + rest)
        elif s.orelse and always_returns(s.orelse):
            new = ast.If(test=s.test, body=s.body + rest, orelse=s.orelse)
        else:
            continue
        return stmts[:i] + [ast.copy_location(new, s)]
    return stmts


def needs_return_loop(stmts: list, tail: bool) -> bool:
    """Whether a return in stmts is not in tail position (so the body needs the return loop)."""
    if tail:
        stmts = restructure_tail(stmts)
    for i, s in enumerate(stmts):
        last = tail and i == len(stmts) - 1
        if isinstance(s, ast.Return) and not last:
            return True
        if isinstance(s, ast.If) and (
            needs_return_loop(s.body, last) or needs_return_loop(s.orelse, last)
        ):
            return True
        if isinstance(s, (ast.While, ast.For)) and _returns_in([s]):
            return True
        if isinstance(s, (ast.Return, ast.Break, ast.Continue)):
            break
    return False


def stored_names(stmts: list) -> set[str]:
    """Names that statements assign (not looking into nested functions)."""
    return {
        n.id
        for n in _walk_own(stmts)
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))
    }


def assigned_names(fdef: ast.AST) -> set[str]:
    """Names a function assigns anywhere, parameters included (Python's rule for locals)."""
    params = fdef.args.posonlyargs + fdef.args.args + fdef.args.kwonlyargs
    return {a.arg for a in params} | stored_names(fdef.body)


# ---------------------------------------------------------------- frames


@dataclass(eq=False)
class ReturnState:
    """How `return` is lowered in one function (see the module docstring)."""

    needs_loop: bool = False
    flag: Var | None = None  # set when returning from inside a user loop
    results: object = None  # Var or nested tuple of Vars, declared by the first `return x`
    first_loc: Loc | None = None
    annotation: ScalarType | None = None


@dataclass(eq=False)
class Frame:
    """One function being compiled: its names and return state."""

    name: str
    source: SourceInfo
    globals: dict
    closure: dict
    is_async: bool
    is_kernel: bool
    local_names: set
    var_prefix: str = ""
    bindings: dict = field(default_factory=dict)
    declared: dict = field(default_factory=dict)  # `x: aw.f32` without a value: name -> type
    ret: ReturnState = field(default_factory=ReturnState)
    loop_depth: int = 0


@dataclass(eq=False)
class BoundCall:
    """A device-function call whose arguments are bound (evaluated and copied)."""

    fn: DeviceFunction
    bindings: dict
    prefix: str
    loc: Loc


def _fits_literal(lit: Literal, t) -> bool:
    try:
        return adapt_literal(lit, t, strict=True) is not None
    except ValueError:
        return False


def _is_frontend_value(x) -> bool:
    return isinstance(x, (Var, Const, Literal, KernelObject, Awaitable, tuple, str)) or x is None


class ScopeMixin:
    """Name resolution, binding, function bodies and inlining for FunctionCompiler."""

    @property
    def frame(self) -> Frame:
        return self._frames[-1]

    @contextlib.contextmanager
    def _in_frame(self, frame: Frame):
        self._frames.append(frame)
        saved_tail = self._tail
        try:
            yield frame
        finally:
            self._frames.pop()
            self._tail = saved_tail

    def loc(self, node: ast.AST) -> Loc:
        """The source location of an AST node of the function being compiled."""
        return self.frame.source.loc(node)

    def source_text(self, node: ast.AST) -> str:
        """The source text of an AST node (for messages such as a wait's description)."""
        return self.frame.source.segment(node)

    # ---- names

    def lookup_name(self, name: str, node: ast.AST):
        frame = self.frame
        if name in frame.bindings:
            return frame.bindings[name]
        if name in frame.local_names:
            self.error(
                f"variable {name!r} is used before it is assigned",
                self.loc(node),
                hint="assign it before this point: its first assignment also fixes its type",
            )
        for scope in (frame.closure, frame.globals, builtins.__dict__):
            if name in scope:
                return self.from_python(scope[name], node)
        self.error(f"name {name!r} is not defined", self.loc(node))

    def new_local(self, name: str, t, loc: Loc) -> Var:
        var = Var(self.frame.var_prefix + name, t)
        self.frame.bindings[name] = var
        self._named.add(var)
        self._first_loc[var] = loc
        return var

    def bind_name(self, name: str, value, node: ast.AST) -> None:
        """`name = value`: a copy into the name's variable, or a compile-time binding."""
        loc = self.loc(node)
        bindings = self.frame.bindings
        current = bindings.get(name)
        is_array = isinstance(value, Var) and isinstance(value.type, ArrayType)
        if is_array or isinstance(value, KernelObject) or not _is_frontend_value(value):
            if current is value:
                return
            if isinstance(current, Var) and isinstance(current.type, ScalarType):
                self.error(
                    f"{name!r} holds a {current.type} value and cannot be rebound to {value!r}",
                    loc,
                    hint="use another name",
                )
            if current is not None:
                self.error(
                    f"{name!r} is already bound at compile time and cannot be reassigned",
                    loc,
                    hint="arrays and kernel objects (channels, barriers, types) are bound "
                    "once: use another name",
                )
            if is_array and value in self._unnamed_shared:
                value.name = self.frame.var_prefix + name
                self._unnamed_shared.discard(value)
            bindings[name] = value
            return
        if isinstance(value, tuple):
            self.error(
                f"cannot assign a tuple of {len(value)} values to {name!r}",
                loc,
                hint="unpack it: a, b = ...",
            )
        if current is None:
            declared = self.frame.declared.get(name)
            v = self.value(value, declared, loc, what=f"the value assigned to {name!r}")
            self.b.assign(self.new_local(name, v.type, loc), v)
            return
        if not (isinstance(current, Var) and isinstance(current.type, ScalarType)):
            self.error(f"{name!r} is bound to {current!r} and cannot hold a value", loc)
        self.b.assign(current, self.coerce_assign(value, current, loc))

    def coerce_assign(self, value, var: Var, loc: Loc):
        """value as var's type for an assignment; the type of a variable never changes."""
        v = self.scalar(value, loc, "the assigned value")
        if isinstance(v, Literal) or v.type == var.type:
            return self.value(v, var.type, loc, what=f"the value assigned to {var.name!r}")
        first = self._first_loc.get(var)
        where = f" (first assigned at line {first.line})" if first else ""
        self.error(
            f"{var.name!r} is {var.type}{where}, but this assigns a {v.type} value",
            loc,
            hint=f"cast the value with aw.{var.type.name}(...), or make {var.name!r} a "
            f"{v.type} where it is first assigned",
        )

    # ---- function bodies and returns

    def compile_body(self, fdef: ast.AST) -> None:
        frame = self.frame
        returns = _returns_in(fdef.body)
        with_value = [r for r in returns if r.value is not None]
        bare = [r for r in returns if r.value is None]
        if frame.is_kernel and with_value:
            self.error(
                "a kernel cannot return a value",
                self.loc(with_value[0]),
                hint="write results to an array argument",
            )
        if with_value and bare:
            self.error(
                f"{frame.name} returns a value at line {self.loc(with_value[0]).line}, "
                "so every return in it must return a value",
                self.loc(bare[0]),
            )
        if with_value and not always_returns(fdef.body):
            self.error(
                f"{frame.name} returns a value but can reach its end without a return",
                self.loc(fdef),
                hint="add a return at the end of the function",
            )
        frame.ret.needs_loop = needs_return_loop(fdef.body, tail=True)
        loops = [n for n in _walk_own(fdef.body) if isinstance(n, (ast.For, ast.While))]
        if any(_returns_in(n.body) for n in loops):
            frame.ret.flag = Var(frame.var_prefix + "returned", bool_)
            self.b.assign(frame.ret.flag, Const(False, bool_))
        if not frame.ret.needs_loop:
            self.compile_block(fdef.body, tail=True)
            return
        block: list = []
        # the return loop runs its body once: the kernel's top level stays top level in it
        with self._redirect(block, nested=not frame.is_kernel):
            self.compile_block(fdef.body, tail=True)
            self.b.emit(ir.Break(self.loc(fdef)))
        self.b.emit(ir.Loop([], None, block, [], self.loc(fdef)))

    def set_result(self, value, loc: Loc) -> None:
        ret = self.frame.ret
        if ret.results is None:
            ret.results = self._declare_results(value, loc, ret.annotation)
            ret.first_loc = loc
        self._assign_results(ret.results, value, loc)

    def _declare_results(self, value, loc: Loc, annotation):
        if isinstance(value, tuple):
            return tuple(self._declare_results(v, loc, None) for v in value)
        v = self.value(value, annotation, loc, what="the returned value")
        var = Var(self.frame.var_prefix + "ret", v.type)
        self._first_loc[var] = loc
        if annotation is None and isinstance(self.scalar(value, loc), Literal):
            self._literal_results[var] = []  # typed by the first non-literal return, if any
        return var

    def _assign_results(self, results, value, loc: Loc) -> None:
        first = self.frame.ret.first_loc
        if isinstance(results, tuple) != isinstance(value, tuple) or (
            isinstance(results, tuple) and len(results) != len(value)
        ):
            shape = f"{len(results)} values" if isinstance(results, tuple) else "one value"
            self.error(
                f"{self.frame.name} returns {shape} at line {first.line}; "
                "every return must return the same number of values",
                loc,
            )
        if isinstance(results, tuple):
            for r, v in zip(results, value, strict=False):
                self._assign_results(r, v, loc)
            return
        v = self.scalar(value, loc, "the returned value")
        pending = self._literal_results.get(results)
        if pending is not None and not isinstance(v, Literal):
            self._retype_literal_result(results, pending, v.type)
        if not isinstance(v, Literal) and v.type != results.type:
            self.error(
                f"{self.frame.name} returns {results.type} at line {first.line} but {v.type} here",
                loc,
                hint=f"cast the value: aw.{results.type.name}(...)",
            )
        self.b.assign(results, self.value(v, results.type, loc, what="the returned value"))
        if pending is not None and isinstance(v, Literal):
            pending.append((self.b.block[-1], v))

    def _retype_literal_result(self, var: Var, pending: list, t) -> None:
        """`if x < 0: return 0` then `return x` with x f32: the 0 was an f32 all along."""
        del self._literal_results[var]
        if t == var.type:
            return
        consts = [adapt_literal(lit, t, strict=True) if _fits_literal(lit, t) else None
                  for _, lit in pending]  # fmt: skip
        if any(c is None for c in consts):
            return  # a literal that cannot take the type: the mismatch is reported
        var.type = t
        for (copy, _), c in zip(pending, consts, strict=True):
            copy.args = (c,)

    # ---- device functions

    def annotations(self, fn, loc: Loc) -> dict:
        try:
            return inspect.get_annotations(fn, eval_str=True)
        except Exception as err:  # a user's annotation failed to evaluate: report it
            self.error(f"cannot evaluate the annotations of {fn.__qualname__}: {err}", loc)

    def bind_arguments(self, df: DeviceFunction, args: list, kwargs: dict, loc: Loc) -> BoundCall:
        """Bind a call's arguments to df's parameters: scalars are copied, arrays shared."""
        sig = inspect.signature(df.fn)
        for p in sig.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                self.error(
                    f"{df.name} has a star parameter ({p}): not supported in device functions",
                    loc,
                )
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as err:
            self.error(f"bad arguments for {df.name}(): {err}", loc)
        given = set(bound.arguments)
        bound.apply_defaults()
        anns = self.annotations(df.fn, loc)
        reassigned = stored_names(self.parse(df.fn, "device function")[0].body)
        count = self._inline_counts.get(df.name, 0)
        self._inline_counts[df.name] = count + 1
        prefix = f"{df.name}_" if count == 0 else f"{df.name}{count}_"
        bindings = {}
        for name, val in bound.arguments.items():
            if name not in given:
                val = self.from_python(val, None)
            ann = anns.get(name)
            bindings[name] = self._bind_param(df, name, val, ann, prefix, loc, name in reassigned)
        return BoundCall(df, bindings, prefix, loc)

    def _bind_param(self, df, name: str, val, ann, prefix: str, loc: Loc, reassigned: bool):
        what = f"argument {name!r} of {df.name}()"
        ann = _PY_ANNOTATIONS.get(ann, ann) if isinstance(ann, type) else ann
        if isinstance(val, Var) and isinstance(val.type, ArrayType):
            if isinstance(ann, ScalarType) or (
                isinstance(ann, ArrayType) and ann.elem != val.type.elem
            ):
                self.error(f"{what} is a {val.type} array but is annotated {ann}", loc)
            return val  # arrays are passed by reference
        if isinstance(val, Awaitable):
            self.error(
                f"{what} is a future: futures cannot be passed to functions",
                loc,
                hint="await it first, or pass its inputs",
            )
        if isinstance(val, KernelObject) or not _is_frontend_value(val):
            return val
        if isinstance(ann, ArrayType):
            self.error(f"{what} is annotated {ann} but gets a scalar", loc)
        v = self.value(val, ann if isinstance(ann, ScalarType) else None, loc, what=what)
        if isinstance(val, (Literal, Const)) and not reassigned:
            # a constant argument stays compile-time (literals keep adapting to their uses:
            # `clamp(x, 0, 1)` compares an f32 x with 0.0), unless the body assigns it
            return v if isinstance(ann, ScalarType) else val
        var = Var(prefix + name, v.type)
        self._named.add(var)
        self._first_loc[var] = loc
        self.b.assign(var, v)
        return var

    def inline(self, call: BoundCall):
        """Compile the body of a bound call at the insertion point; its result (or None)."""
        df = call.fn
        if any(f is df.fn for f in self._call_stack):
            chain = [f.__name__ for f in self._call_stack]
            chain = chain[chain.index(df.name) :] + [df.name]
            self.error(
                f"recursion is not supported in kernels: {' -> '.join(chain)}",
                call.loc,
                hint="rewrite the recursion as a loop",
            )
        fdef, src = self.parse(df.fn, "device function")
        frame = Frame(
            name=df.name,
            source=src,
            globals=df.globals,
            closure=closure_values(df.fn),
            is_async=df.is_async,
            is_kernel=False,
            local_names=assigned_names(fdef),
            var_prefix=call.prefix,
            bindings=dict(call.bindings),
        )
        ret_ann = self.annotations(df.fn, call.loc).get("return")
        ret_ann = _PY_ANNOTATIONS.get(ret_ann, ret_ann) if isinstance(ret_ann, type) else ret_ann
        if isinstance(ret_ann, ScalarType):
            frame.ret.annotation = ret_ann
        self._call_stack.append(df.fn)
        try:
            with self._in_frame(frame):
                self.compile_body(fdef)
        finally:
            self._call_stack.pop()
        return frame.ret.results

    def parse(self, fn, what: str):
        if fn not in self._parsed:
            self._parsed[fn] = parse_function(fn, what)
        return self._parsed[fn]
