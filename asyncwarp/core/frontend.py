"""The frontend: a Python kernel function (sync or async) to the logical IR of docs/internals.md.

`compile_function` parses the function's source, walks it with an
`ast.NodeVisitor` (`FunctionCompiler`) and reports every unsupported construct
or type mistake as a `CompileError` at file:line:col. Expressions, statements
and scopes live in frontend_expr / frontend_stmt / frontend_scope; the builtins
(and core.primitives) plug in through `register_builtin`.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
from collections.abc import Callable
from typing import Any, NoReturn

from . import ir
from .errors import CompileError
from .frontend_expr import ExprMixin
from .frontend_hooks import Awaitable, KernelObject, Literal, lookup_builtin, register_builtin
from .frontend_scope import Frame, ScopeMixin, assigned_names, closure_values, parse_function
from .frontend_stmt import StmtMixin
from .frontend_types import ARRAY_ELEMS
from .ir import Loc, Var
from .types import ArrayType, ScalarType, Type, bool_

__all__ = [
    "compile_function",
    "FunctionCompiler",
    "register_builtin",
    "lookup_builtin",
    "KernelObject",
    "Awaitable",
    "Literal",
]

# what each AST node without a visitor is called in "construct X is not supported"
_CONSTRUCTS = {
    "Dict": ("dict literals", ""),
    "List": ("list literals", "use aw.shared(dtype, n) for a block-memory array"),
    "Set": ("set literals", ""),
    "ListComp": ("list comprehensions", "write a for loop"),
    "SetComp": ("set comprehensions", "write a for loop"),
    "DictComp": ("dict comprehensions", "write a for loop"),
    "GeneratorExp": ("generator expressions", "write a for loop"),
    "Lambda": ("lambdas", "define a module-level @aw.func function"),
    "FunctionDef": ("nested functions (closures)", "define it at module level with @aw.func"),
    "AsyncFunctionDef": ("nested functions (closures)", "define it at module level with @aw.func"),
    "ClassDef": ("class definitions", ""),
    "With": ("with statements", ""),
    "AsyncWith": ("async with statements", ""),
    "Try": ("try statements", "kernels cannot raise or catch exceptions"),
    "TryStar": ("try statements", "kernels cannot raise or catch exceptions"),
    "Raise": ("raise statements", "kernels cannot raise exceptions"),
    "Assert": ("assert statements", "check conditions on the host, or write a flag to an array"),
    "Global": ("global statements", "kernels cannot assign module variables"),
    "Nonlocal": ("nonlocal statements", ""),
    "Yield": ("generators (yield)", "use async def and await"),
    "YieldFrom": ("generators (yield from)", "use async def and await"),
    "Import": ("imports", "import at module level"),
    "ImportFrom": ("imports", "import at module level"),
    "JoinedStr": ("f-strings", "kernels have no strings"),
    "FormattedValue": ("f-strings", "kernels have no strings"),
    "Starred": ("star-arguments", ""),
    "Delete": ("del statements", ""),
    "AsyncFor": ("async for loops", "await inside a for loop over range()"),
    "Match": ("match statements", "use if/elif"),
    "NamedExpr": ("assignment expressions (:=)", "assign on a separate line"),
    "Slice": ("slices", "index one element: a[i]"),
}


class FunctionCompiler(ScopeMixin, StmtMixin, ExprMixin, ast.NodeVisitor):
    """Compiles one kernel (and the @aw.func calls it inlines) into IR; `fe` in handlers.

    What builtins and core.primitives may use:
    - `fe.b`: the `ir.Builder` at the current insertion point; `fe.warp_width` (W);
    - `fe.error(msg, loc, hint="")`: raise a CompileError;
    - `fe.value(x, type=None, loc, what)`, `fe.cast(x, type)`, `fe.truth(x, loc)`,
      `fe.const_int(x, loc, what)`, `fe.constant(value, type)`, `fe.array(x, loc)`,
      `fe.index_value(x, loc)`, `fe.binary(op, a, b, loc)`: values and operators;
    - `fe.shared_alloc(elem, n, hint) -> Var`: a block-memory array, hoisted to the
      top of the kernel;
    - `fe.build_block(fn) -> (block, result)`: run fn with the builder writing a
      fresh block; `fe.emit_into(block, fn)`: append to an existing one;
    - `fe.build_poll(fn) -> (block, ready)`: a Suspend poll block (awaits are
      rejected inside it); fn returns the readiness, `ready` is a fresh bool Var;
    - `fe.eval(node)`, `fe.source_text(node)`, `fe.loc(node)` for lazy handlers;
    - `fe.at_kernel_top_level()`: the insertion point is the kernel's own
      straight-line body (no enclosing branch, loop, wait or inlined function);
      `fe.has_awaited()`: an await was compiled already; `fe.in_async`: the
      function being compiled is async;
    - `fe.task_path`: which concurrent task the insertion point belongs to (see
      `in_task`); `fe.single_warp_channels`: the channels (by creation index) that
      this compilation may give the one-sender one-receiver protocol.
    """

    def __init__(
        self,
        warp_width: int,
        single_warp_channels: frozenset = frozenset(),
        uniform_message_channels: frozenset = frozenset(),
    ):
        self.warp_width = warp_width
        self.single_warp_channels = single_warp_channels
        self.uniform_message_channels = uniform_message_channels
        # channel creation index -> {"send": {task paths}, "recv": {task paths}}
        self.channel_users: dict[int, dict[str, set]] = {}
        # channel creation index -> the values its sends carry (for uniform_messages)
        self.channel_values: dict[int, list] = {}
        self.channels_created = 0
        self.task_path: tuple = ()
        self._joins = 0
        self.b = ir.Builder()
        self.awaits_emitted = 0
        self._hoisted: list = []
        self._frames: list[Frame] = []
        self._call_stack: list = []
        self._parsed: dict = {}
        self._inline_counts: dict[str, int] = {}
        self._named: set[Var] = set()  # Vars bound to source names (params, locals)
        self._first_loc: dict[Var, Loc] = {}
        self._literal_results: dict[Var, list] = {}  # result Vars assigned only literals so far
        self._unnamed_shared: set[Var] = set()
        self._nesting = 0  # enclosing blocks of the insertion point (branches, loops, waits)
        self._kernel_returned = False  # a kernel-level return was compiled before this point
        self._in_poll = 0
        self._tail = False
        self._await_operand = None
        self._root_fn = None

    # ---- services for builtins and primitives

    def error(self, message: str, loc: Loc | None = None, hint: str = "") -> NoReturn:
        """Raise a CompileError at loc (default: the expression being compiled)."""
        raise CompileError(message, loc if loc is not None else self.b.loc, hint)

    @property
    def in_async(self) -> bool:
        return self.frame.is_async

    def at_kernel_top_level(self) -> bool:
        """The insertion point is the kernel's own straight-line body: no branch, loop,
        wait or inlined function around it, and no return before it."""
        return self._nesting == 0 and len(self._frames) == 1 and not self._kernel_returned

    def has_awaited(self) -> bool:
        """Whether an await was compiled before the insertion point."""
        return self.awaits_emitted > 0

    def eval(self, node: ast.AST) -> Any:
        """Evaluate an expression AST node to a frontend value at the insertion point."""
        return self.visit(node)

    @contextlib.contextmanager
    def _redirect(self, block: list, nested: bool = True):
        saved = self.b.block
        self.b.block = block
        self._nesting += nested
        try:
            yield block
        finally:
            self.b.block = saved
            self._nesting -= nested

    def new_join(self) -> int:
        """A number for a join being compiled (task paths name its branches by it)."""
        self._joins += 1
        return self._joins

    @contextlib.contextmanager
    def in_task(self, join: int, branch: int, warps: int | None):
        """Compile a join branch: a task of its own. `warps` is the branch's warp count
        for a warp-mapped (top-level) join, None for a join whose branches share warps."""
        saved = self.task_path
        self.task_path = saved + ((join, branch, warps),)
        try:
            yield
        finally:
            self.task_path = saved

    def note_channel_value(self, channel: int, value) -> None:
        """Record a value a send on the channel carries."""
        self.channel_values.setdefault(channel, []).append(value)

    def note_channel_use(self, channel: int, role: str) -> None:
        """Record that the task at the insertion point sends or receives on a channel."""
        users = self.channel_users.setdefault(channel, {"send": set(), "recv": set()})
        users[role].add(self.task_path)

    def build_block(self, fn: Callable[[], Any]) -> tuple[list, Any]:
        """Run fn with the builder writing a fresh block; the block and fn's result."""
        block: list = []
        with self._redirect(block):
            result = fn()
        return block, result

    def emit_into(self, block: list, fn: Callable[[], Any]) -> Any:
        """Run fn with the builder appending to an existing block; fn's result."""
        with self._redirect(block):
            return fn()

    def build_poll(self, fn: Callable[[], Any]) -> tuple[list, Var]:
        """The poll block of an `ir.Suspend` and its `ready` Var; fn returns the readiness.

        Awaits are rejected inside; `ready` is fresh, so it is set by the block alone.
        """
        self._in_poll += 1
        try:
            block, ready = self.build_block(fn)
        finally:
            self._in_poll -= 1
        ready = self.value(ready, bool_, self.b.loc, what="the readiness of a wait")
        produced = [s.dst for s in block if isinstance(s, ir.Op)]
        if isinstance(ready, Var) and ready not in self._named and ready in produced:
            return block, ready
        fresh = self.b.tmp(ready.type, "ready")
        block.append(ir.Op(fresh, "copy", (ready,), {}, self.b.loc))
        return block, fresh

    def shared_alloc(self, elem: ScalarType, n: int, hint: str = "smem") -> Var:
        """A block-memory array of n elems; its shared_alloc is hoisted to the kernel's top."""
        if elem not in ARRAY_ELEMS:
            self.error(
                f"block-memory arrays of {elem} are not supported",
                self.b.loc,
                hint="use aw.u32 or aw.i32 for flags",
            )
        if not isinstance(n, int) or n <= 0:
            self.error(f"a block-memory array needs a positive compile-time size, got {n!r}")
        array = Var(hint, ArrayType(elem, "shared"))
        self._hoisted.append(ir.Op(array, "shared_alloc", (), {"n": n}, self.b.loc))
        return array

    # ---- the visitor

    def visit(self, node: ast.AST) -> Any:
        if not hasattr(node, "lineno"):
            return super().visit(node)
        saved = self.b.loc
        self.b.loc = self.loc(node)
        try:
            return super().visit(node)
        finally:
            self.b.loc = saved

    def generic_visit(self, node: ast.AST) -> NoReturn:
        kind = type(node).__name__
        what, hint = _CONSTRUCTS.get(kind, (kind, ""))
        self.error(
            f"construct {what} is not supported in kernels",
            self.loc(node) if hasattr(node, "lineno") else self.b.loc,
            hint=hint or "see the README for the supported Python subset",
        )

    # ---- the kernel

    def compile_kernel(self, fn, arg_types: list, name: str | None) -> ir.Kernel:
        fdef, src = parse_function(fn, "kernel")
        self._root_fn = fn
        frame = Frame(
            name=fn.__name__,
            source=src,
            globals=fn.__globals__,
            closure=closure_values(fn),
            is_async=isinstance(fdef, ast.AsyncFunctionDef),
            is_kernel=True,
            local_names=assigned_names(fdef),
        )
        with self._in_frame(frame):
            params = self._kernel_params(fn, fdef, arg_types)
            self.compile_body(fdef)
        body = self._hoisted + self.b.block
        kernel_name = name or fn.__name__
        return ir.Kernel(kernel_name, params, body, src.loc(fdef), {"warp_width": self.warp_width})

    def _kernel_params(self, fn, fdef: ast.AST, arg_types: list) -> list[Var]:
        args = fdef.args
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs or args.defaults:
            self.error(
                "kernel parameters must be plain positional parameters",
                self.loc(fdef),
                hint="no defaults, *args, **kwargs or keyword-only parameters",
            )
        if len(arg_types) != len(args.args):
            raise ValueError(
                f"kernel {fn.__name__} has {len(args.args)} parameters but "
                f"{len(arg_types)} argument types were given"
            )
        anns = self.annotations(fn, self.loc(fdef))
        params = []
        for arg, t in zip(args.args, arg_types, strict=False):
            loc = self.loc(arg)
            if not isinstance(t, (ScalarType, ArrayType)):
                raise TypeError(f"argument type of {arg.arg!r} must be a Type, not {t!r}")
            ann = anns.get(arg.arg)
            if ann is not None:
                if not isinstance(ann, (ScalarType, ArrayType)):
                    self.error(
                        f"the annotation of parameter {arg.arg!r} is not a type: {ann!r}",
                        loc,
                        hint="annotate arrays as aw.Array[aw.f32] and scalars as aw.i32, "
                        "aw.f32, ...",
                    )
                if ann != t:
                    self.error(f"parameter {arg.arg!r} is annotated {ann} but gets {t}", loc)
            if isinstance(t, ArrayType):
                if t.space != "global":
                    raise TypeError(f"kernel array parameter {arg.arg!r} must be global: {t}")
                if t.elem not in ARRAY_ELEMS:
                    self.error(
                        f"parameter {arg.arg!r}: arrays of {t.elem} are not supported",
                        loc,
                        hint="pass flags as u32 or i32 arrays",
                    )
            var = Var(arg.arg, t)
            self.frame.bindings[arg.arg] = var
            self._named.add(var)
            self._first_loc[var] = loc
            params.append(var)
        return params


def compile_function(
    fn, arg_types: list[Type], *, warp_width: int, name: str | None = None
) -> ir.Kernel:
    """The logical IR of the kernel function `fn` for the given parameter types and W.

    Raises CompileError (with file:line:col and the source line) for anything
    the kernel language does not support; compiler frames are left out of its
    traceback.
    """
    if warp_width not in (32, 64):
        raise ValueError(f"warp_width must be 32 or 64, not {warp_width!r}")
    if not inspect.isfunction(fn):
        fn = getattr(fn, "fn", fn)  # a DeviceFunction or a kernel wrapper
    if not inspect.isfunction(fn):
        raise TypeError(f"compile_function needs a Python function, not {fn!r}")
    try:
        fe = FunctionCompiler(warp_width)
        kernel = fe.compile_kernel(fn, list(arg_types), name)
        single = single_warp_channels(fe.channel_users)
        # Compile again, now knowing which channels have one warp per side. Their
        # messages start as one word each (compact) and keep it while every send is
        # warp-uniform; a compact receive is itself uniform, so messages relayed from
        # one such channel to another qualify. Each round only drops channels.
        uniform = single
        while single:
            fe = FunctionCompiler(warp_width, single, uniform)
            kernel = fe.compile_kernel(fn, list(arg_types), name)
            assert single_warp_channels(fe.channel_users) == single, "channel use changed"
            confirmed = uniform_messages(kernel, fe.channel_values) & uniform
            if confirmed == uniform:
                break
            uniform = confirmed
        return kernel
    except CompileError as err:
        raise err.with_traceback(None) from None


def uniform_messages(kernel: ir.Kernel, values: dict[int, list]) -> frozenset:
    """The channels whose every send carries a warp-uniform value (a slot number, a
    flag): their messages take one word of block memory instead of W."""
    from . import uniformity

    levels = uniformity.analyze(kernel)

    def uniform(v) -> bool:
        return isinstance(v, ir.Const) or levels.get(v, ir.DIVERGENT) <= ir.WARP_UNIFORM

    return frozenset(ch for ch, vs in values.items() if all(uniform(v) for v in vs))


def single_warp_channels(users: dict[int, dict[str, set]]) -> frozenset:
    """The channels whose sends all come from one task and whose receives all come from
    one task, each of those tasks running on a single warp.

    Such a channel needs no atomic reservation: each side keeps its own position.
    A task is a branch of a warp-mapped (top-level) join with one warp, or a branch of
    a join nested inside one; a select's futures belong to the task that awaits it
    (it completes at most one of them).
    """

    def one_warp_task(paths: set) -> bool:
        if len(paths) > 1:
            return False
        return all(path and path[0][2] == 1 for path in paths)

    return frozenset(
        ch for ch, roles in users.items() if all(one_warp_task(p) for p in roles.values())
    )


# The builtins register themselves in the table on import.
from . import frontend_async as _frontend_async  # noqa: E402, F401
from . import frontend_builtins as _frontend_builtins  # noqa: E402, F401

try:
    from . import primitives  # noqa: E402, F401 (registers Channel, Barrier, ...)
except ModuleNotFoundError as _err:
    if _err.name != "asyncwarp.core.primitives":
        raise
