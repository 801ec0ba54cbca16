"""Extension points of the frontend: the builtin table, compile-time objects and awaitables.

core.frontend looks every called Python object up in one table (`register_builtin`);
its own `aw.*` builtins and core.primitives (channels, barriers, ...) register here.

What handlers see. A handler is `handler(fe, args, kwargs, loc)`; `fe` is the
frontend's per-kernel compiler (see core.frontend.FunctionCompiler for what it
offers: `fe.b`, `fe.value`, `fe.const_int`, `fe.shared_alloc`, `fe.build_block`,
`fe.error`, ...). Arguments arrive as frontend values:
- `ir.Var` / `ir.Const`: runtime values (scalars, or arrays as `Var`s of ArrayType);
- `Literal`: a compile-time number not yet given a type (`3`, `2.5`, a global
  constant); turn it into an IR value with `fe.value(x, type)` or read it with
  `fe.const_int(x, ...)`; never put a Literal into an `ir.Op` directly;
- `KernelObject`, `Awaitable`, tuples of values, None;
- any other compile-time Python object as itself (`aw.f32`, `"acquire"`).
With `lazy=True` the handler gets the argument AST nodes instead and evaluates
them with `fe.eval(node)` when and where it wants (`aw.until` re-evaluates its
condition inside the poll block). A handler returns a frontend value.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import CompileError
from .ir import Loc
from .types import ScalarType, bool_, f32, i32, i64, u64


@dataclass(frozen=True)
class Literal:
    """A compile-time number (Python bool/int/float) whose IR type is chosen by its use.

    `x * 2` with x f32 makes the 2 an f32; alone, ints are i32 (i64, then u64,
    if they do not fit), floats f32 and bools bool (`default_type`).
    """

    value: bool | int | float

    @property
    def default_type(self) -> ScalarType:
        v = self.value
        if isinstance(v, bool):
            return bool_
        if isinstance(v, float):
            return f32
        if -(2**31) <= v < 2**31:
            return i32
        if -(2**63) <= v < 2**63:
            return i64
        if 0 <= v < 2**64:
            return u64
        raise CompileError(f"integer literal {v} does not fit in 64 bits")

    def __repr__(self) -> str:
        return f"Literal({self.value!r})"


class KernelObject:
    """A compile-time object a kernel-local name is bound to (a channel, a barrier, ...).

    It is not an IR value: binding it to a name is done once (rebinding the name
    is a CompileError), passing it to an @aw.func binds the parameter to the same
    object, and `obj.m(args)` in kernel code calls `call_method(fe, "m", args,
    kwargs, loc)`, which emits IR through `fe` and returns a frontend value (an
    `Awaitable` for methods that are awaited, such as `ch.recv()`).
    """

    #: shown in error messages, e.g. "aw.Channel"
    kind: str = "kernel object"

    def call_method(self, fe, name: str, args: list, kwargs: dict, loc: Loc) -> Any:
        fe.error(f"{self.kind} has no method {name!r}", loc)

    def __repr__(self) -> str:
        return f"<{self.kind}>"


class Awaitable:
    """What `await` accepts: emits the IR for waiting on it at the current insertion point.

    `emit_await(fe, loc)` appends statements to `fe.b` (typically an `ir.Suspend`,
    or an inlined async body) and returns the awaited value (a Value, a tuple or
    None). join/select call it inside `fe.build_block(...)` to make a branch, so
    it must emit everything it needs (setup included) into the current block;
    work that belongs to the creation of the future (argument evaluation) is done
    when the Awaitable is made. An Awaitable is awaited at most once.
    """

    #: shown in error messages, e.g. "aw.sleep(...)"
    describe: str = "future"

    def emit_await(self, fe, loc: Loc) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


Handler = Callable[..., Any]


@dataclass(frozen=True)
class Builtin:
    """A table entry: the handler for one Python object called inside kernels."""

    stub: Any
    handler: Handler
    lazy: bool = False
    name: str = ""


_BUILTINS: dict[int, Builtin] = {}


def register_builtin(stub: Any, *, lazy: bool = False, name: str | None = None):
    """Decorator: `handler(fe, args, kwargs, loc)` implements calls of `stub` in kernels.

    `stub` is matched by identity (an `aw.*` function, a class such as
    `aw.Channel`, a scalar type, a Python builtin). `lazy=True` passes the
    argument AST nodes instead of evaluated values. Registering a stub twice
    replaces the earlier handler.
    """

    def decorate(handler: Handler) -> Handler:
        label = name or _default_name(stub)
        _BUILTINS[id(stub)] = Builtin(stub, handler, lazy, label)
        return handler

    return decorate


def lookup_builtin(obj: Any) -> Builtin | None:
    """The table entry for `obj`, or None."""
    entry = _BUILTINS.get(id(obj))
    # ids are reused after garbage collection: the entry holds the stub, so compare it
    if entry is not None and entry.stub is obj:
        return entry
    return None


def _default_name(stub: Any) -> str:
    if isinstance(stub, ScalarType):
        return f"aw.{stub.name}"
    module = getattr(stub, "__module__", "") or ""
    name = getattr(stub, "__name__", repr(stub))
    if module.startswith("asyncwarp"):
        return f"aw.{name}"
    return name
