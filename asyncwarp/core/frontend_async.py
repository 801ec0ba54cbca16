"""The async forms of the kernel language as Awaitables: async calls, until, sleep, yield_now,
join and select.

Each lowers to the logical IR of docs/internals.md when awaited: a leaf wait is
an `ir.Suspend` whose poll block computes a fresh `ready` bool; join and select
are `ir.Join` / `ir.Select` with one branch block per future, built by
awaiting the future inside `fe.build_block`.
"""

from __future__ import annotations

from . import ir, lang
from .frontend_hooks import Awaitable, Literal, register_builtin
from .ir import Const, Loc
from .types import ScalarType, bool_, i32, u64


class AsyncCall(Awaitable):
    """`f(args)` for an async @aw.func: arguments bound at the call, body inlined when awaited."""

    def __init__(self, call):
        self.call = call
        self.describe = f"coroutine {call.fn.name}(...)"

    def emit_await(self, fe, loc: Loc):
        return fe.inline(self.call)


class Until(Awaitable):
    """`aw.until(cond)`: ready when cond, re-evaluated at every poll, holds."""

    def __init__(self, cond_node, text: str):
        self.cond_node = cond_node
        self.text = text
        self.describe = f"aw.until({text})"

    def emit_await(self, fe, loc: Loc):
        block, ready = fe.build_poll(lambda: fe.truth(fe.eval(self.cond_node), loc))
        fe.b.emit(ir.Suspend(block, ready, f"until {self.text}", loc))


class Sleep(Awaitable):
    """`aw.sleep(ns)`: ready once the device clock advanced ns since the await began."""

    def __init__(self, ns, text: str):
        self.ns = ns
        self.text = text
        self.describe = f"aw.sleep({text})"

    def emit_await(self, fe, loc: Loc):
        start = fe.b.op("timer")

        def poll():
            elapsed = fe.b.op("sub", fe.b.op("timer"), start)
            return fe.b.op("ge", elapsed, self.ns)

        block, ready = fe.build_poll(poll)
        fe.b.emit(ir.Suspend(block, ready, f"sleep({self.text})", loc))


class YieldNow(Awaitable):
    """`aw.yield_now()`: pending at its first poll, ready at the second."""

    describe = "aw.yield_now()"

    def emit_await(self, fe, loc: Loc):
        polled = fe.b.tmp(bool_, "yielded")
        fe.b.assign(polled, Const(False, bool_))

        def poll():
            ready = fe.b.tmp(bool_, "ready")
            fe.b.assign(ready, polled)
            fe.b.assign(polled, Const(True, bool_))
            return ready

        block, ready = fe.build_poll(poll)
        fe.b.emit(ir.Suspend(block, ready, "yield_now", loc))


def _branch_value(fe, value, loc: Loc):
    """A future's result as IR values (literals typed), keeping tuples and None."""
    if isinstance(value, tuple):
        return tuple(_branch_value(fe, v, loc) for v in value)
    if value is None:
        return None
    return fe.value(value, None, loc, what="the future's result")


class Join(Awaitable):
    """`aw.join(f1, f2, ...)`: all futures concurrently; a tuple of their results.

    A future without a result leaves None at its position (unpack it into `_`).
    `warps=(n1, n2, ...)` is stored on the `ir.Join` node as `join.warps`.
    """

    def __init__(self, futures: list, warps: tuple | None):
        self.futures = futures
        self.warps = warps
        self.describe = "aw.join(...)"

    def emit_await(self, fe, loc: Loc):
        branches, results = [], []
        # a join at the kernel's top level gives each branch its own warps (warps=, or one)
        mapped = fe.at_kernel_top_level()
        join = fe.new_join()
        for i, future in enumerate(self.futures):
            warps = (self.warps[i] if self.warps else 1) if mapped else None
            with fe.in_task(join, i, warps):
                block, result = fe.build_block(lambda future=future: future.emit_await(fe, loc))
            branches.append(block)
            results.append(fe.emit_into(block, lambda r=result: _branch_value(fe, r, loc)))
        node = ir.Join(branches, loc)
        if self.warps is not None:
            node.warps = self.warps
        fe.b.emit(node)
        return tuple(results)


class Select(Awaitable):
    """`aw.select(f1, f2, ...)`: the first future to finish; `(index, value)`.

    Futures that give a value must all give one type; value-less futures (a
    timeout) may race them, and when one wins the value is zero of that type. If
    no future gives a value, the value is None.
    """

    def __init__(self, futures: list):
        self.futures = futures
        self.describe = "aw.select(...)"

    def emit_await(self, fe, loc: Loc):
        branches, results = [], []
        for future in self.futures:
            block, result = fe.build_block(lambda future=future: future.emit_await(fe, loc))
            branches.append(block)
            results.append(fe.emit_into(block, lambda r=result: _branch_value(fe, r, loc)))
        if any(isinstance(r, tuple) for r in results):
            fe.error(
                "aw.select over futures that return tuples is not supported",
                loc,
                hint="return a single value from each future",
            )
        value = None
        types = {r.type for r in results if r is not None}
        if len(types) > 1:
            shown = ", ".join("nothing" if r is None else str(r.type) for r in results)
            fe.error(
                f"the futures of aw.select that return a value must all return one type "
                f"(they return {shown})",
                loc,
                hint="wrap a future in an async @aw.func that returns a value of the "
                "common type",
            )
        if types:
            # A value-less future (a timeout) may race valued ones; when it wins, the
            # value is zero of the common type, so `(index, value)` is always defined.
            vtype = types.pop()
            value = fe.b.tmp(vtype, "selected")
            for block, r in zip(branches, results, strict=False):
                src = r if r is not None else fe.constant(0, vtype)
                block.append(ir.Op(value, "copy", (src,), {}, loc))
        index = fe.b.tmp(i32, "winner")
        fe.b.emit(ir.Select(branches, index, loc))
        return (index, value)


# ---------------------------------------------------------------- builtin handlers


def _one_argument(fe, name: str, args: list, kwargs: dict, loc: Loc):
    if kwargs or len(args) != 1:
        fe.error(f"aw.{name} takes exactly one argument", loc)
    return args[0]


@register_builtin(lang.until, lazy=True)
def _until(fe, args, kwargs, loc):
    node = _one_argument(fe, "until", args, kwargs, loc)
    return Until(node, fe.source_text(node))


@register_builtin(lang.sleep, lazy=True)
def _sleep(fe, args, kwargs, loc):
    node = _one_argument(fe, "sleep", args, kwargs, loc)
    ns = fe.scalar(fe.eval(node), loc, "the sleep duration")
    if isinstance(ns, Literal):
        ns = fe.value(ns, u64, loc, what="the sleep duration (nanoseconds)")
    elif isinstance(ns.type, ScalarType) and ns.type.is_int:
        ns = fe.cast(ns, u64, loc)
    else:
        fe.error(
            f"aw.sleep takes integer nanoseconds, not {ns.type}", loc, hint="cast it: aw.u64(...)"
        )
    return Sleep(ns, fe.source_text(node))


@register_builtin(lang.yield_now)
def _yield_now(fe, args, kwargs, loc):
    if args or kwargs:
        fe.error("aw.yield_now takes no arguments", loc)
    return YieldNow()


def _futures(fe, name: str, args: list, loc: Loc) -> list:
    if not args:
        fe.error(f"aw.{name} needs at least one future", loc)
    for i, a in enumerate(args):
        if not isinstance(a, Awaitable):
            fe.error(
                f"argument {i + 1} of aw.{name} is not a future",
                loc,
                hint="pass calls of async @aw.func functions or waits such as aw.sleep(...)",
            )
    return list(args)


@register_builtin(lang.join)
def _join(fe, args, kwargs, loc):
    futures = _futures(fe, "join", args, loc)
    unknown = set(kwargs) - {"warps"}
    if unknown:
        fe.error(f"aw.join has no argument {sorted(unknown)[0]!r}", loc)
    warps = kwargs.get("warps")
    if warps is not None:
        if not isinstance(warps, tuple) or len(warps) != len(futures):
            fe.error(f"warps= must be a tuple of {len(futures)} warp counts, one per future", loc)
        warps = tuple(fe.const_int(w, loc, "a warp count") for w in warps)
        if any(w <= 0 for w in warps):
            fe.error(f"warp counts must be positive, got {warps}", loc)
    return Join(futures, warps)


@register_builtin(lang.select)
def _select(fe, args, kwargs, loc):
    if kwargs:
        fe.error("aw.select takes no keyword arguments", loc)
    return Select(_futures(fe, "select", args, loc))
