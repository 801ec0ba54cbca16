"""Resumable tasks: polls that run a task's own structured code, for the state-machine executors.

Part of core.passes.lower_async. A flat `Machine` (lower_async_machine) cuts a
task at every suspension point, so each step of a loop that awaits pays trips
round the state dispatch. A `ResumableTask` keeps the task's code as written
(the fast path: a ready await costs its poll and a branch) and adds one resume
path per suspension point: the rest of the code from that point, where each loop
around the point is finished from there and then run again whole. A pending
wait records its point in `state`, raises `pending` and leaves: a `break` out of
each loop around it, and the code after it is skipped. Values stay in registers
across polls, as in a flat Machine. Tasks this form does not cover (an await in
a loop's header or latch, or too many points for the code it would copy) keep
the flat Machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .. import ir
from ..types import bool_, i32, u32
from .lower_async_machine import (
    DONE,
    Lowering,
    MachineBuilder,
    emit_dispatch,
    emit_join_poll,
    emit_select_poll,
)
from .lower_async_prep import (
    DIVERGENT,
    UNIFORM,
    escapes,
    has_async,
    poll_has_collectives,
    stmt_level,
)

# The resume paths copy the loops around each point; past these bounds the copies
# would cost more compile time and code than the dispatch they save.
MAX_POINTS = 16
MAX_COPIED_STMTS = 4000
_TRUE, _FALSE = ir.Const(True, bool_), ir.Const(False, bool_)
_BREAK, _CONTINUE = 1, 2  # values of `flow` in resume paths (0: straight on)


@dataclass(eq=False)
class _Point:
    """A place a poll can stop at: an await, a join/select, or a lane-divergent statement."""

    stmt: ir.Stmt
    ctx: int
    path: list  # (stmts, index, ctx) from the task's top level down to the point
    id: int = 0  # its state number (1, 2, ...)
    wid: int | None = None  # wait id of a Suspend (named in reports)
    entry: list = field(default_factory=list)  # run when the point is reached afresh
    poll: list = field(default_factory=list)  # run on every poll of the point
    ready: ir.Value = _TRUE


class ResumableTask:
    """What a flat Machine offers its driver (`state`, `pending`, `waits`), run structured."""

    def __init__(self, lw: Lowering, stmts: list, ctx: int, points: list[_Point]):
        self.lw = lw
        names = lw.names
        self.state = names.tmp(i32, "task_point")
        self.pending = names.tmp(bool_, "task_pending")
        self.flow: ir.Var | None = None  # made when a resume path holds a break/continue
        self.waits: list[int] = []
        self.points = {id(p.stmt): p for p in points}
        for k, p in enumerate(points, 1):
            p.id = k
            self._prepare(p)
        self.paths = [(p, self._resume(p)) for p in points]
        self.fresh = self._gen(stmts, ctx, loop=False)

    # -- the driver's interface

    def dispatch(self) -> list:
        """One poll: run from the recorded point until the task is done or pending."""
        b = self.lw.builder([])
        b.assign(self.pending, _FALSE)
        if self.flow is not None:
            b.assign(self.flow, ir.Const(0, i32))
        chain = self.fresh
        for p, code in reversed(self.paths):
            cb = b.nested()
            is_p = cb.op("eq", self.state, ir.Const(p.id, i32))
            cb.emit(ir.If(is_p, code, chain, p.stmt.loc))
            chain = cb.block
        cb = self.lw.builder(chain)
        db = cb.nested()
        db.assign(self.state, ir.Const(DONE, i32))
        cb.emit(ir.If(cb.op("lnot", self.pending), db.block, []))
        b.emit(ir.If(b.op("ne", self.state, ir.Const(DONE, i32)), chain, []))
        return b.block

    # -- points

    def _prepare(self, p: _Point) -> None:
        lw, s = self.lw, p.stmt
        b = lw.builder([], s.loc)
        if stmt_level(s, p.ctx) >= DIVERGENT:  # a per-lane machine until every lane is done
            sub = MachineBuilder(lw, DIVERGENT, "lanes").build([s], DIVERGENT)
            self.waits += sub.waits
            p.entry = [ir.Op(sub.state, "copy", (ir.Const(0, i32),), {}, s.loc)]
            b.block += emit_dispatch(sub, lw)
            p.ready = b.op("warp_all", b.op("eq", sub.state, ir.Const(DONE, i32)))
        elif isinstance(s, ir.Suspend):
            p.wid = lw.wait_id(s)
            self.waits.append(p.wid)
            if lw.levels.get(s.ready, DIVERGENT) <= UNIFORM:
                # every lane computes the same readiness, so none is ready before the others
                b.block += s.poll
                p.ready = s.ready
            elif poll_has_collectives(s.poll):
                b.block += s.poll
                p.ready = b.op("warp_all", s.ready)
            else:  # each lane completes on its own and is not polled again
                lane_ready = lw.names.tmp(bool_, "lane_ready")
                p.entry = [ir.Op(lane_ready, "copy", (_FALSE,), {}, s.loc)]
                pb = b.nested()
                pb.block += s.poll
                pb.assign(lane_ready, s.ready)
                b.emit(ir.If(b.op("lnot", lane_ready), pb.block, [], s.loc))
                p.ready = b.op("warp_all", lane_ready)
        else:
            kind = "join" if isinstance(s, ir.Join) else "select"
            subs = []
            for i, branch in enumerate(s.branches):
                sub = MachineBuilder(lw, UNIFORM, f"{kind}_branch{i}").build(branch, p.ctx)
                self.waits += sub.waits
                subs.append(sub)
            p.entry = [ir.Op(sub.state, "copy", (ir.Const(0, i32),), {}, s.loc) for sub in subs]
            if isinstance(s, ir.Select):
                p.ready = emit_select_poll(b, subs, s.index, lw)
            else:
                p.ready = emit_join_poll(b, subs, lw, s.loc)
        p.poll = b.block

    def _poll(self, p: _Point, loop: bool) -> list:
        """The point's poll; when not ready, record it and leave (`break` inside a loop)."""
        b = self.lw.builder([], p.stmt.loc)
        b.block += _clone(p.poll)
        rb, pb = b.nested(), b.nested()
        if self.lw.ticks is not None:
            rb.assign(self.lw.ticks, rb.op("add", self.lw.ticks, ir.Const(1, u32)))
        if p.wid is not None:
            pb.assign(self.lw.waiting_on, ir.Const(p.wid, u32))
        pb.assign(self.pending, _TRUE)
        pb.assign(self.state, ir.Const(p.id, i32))
        if loop:
            pb.emit(ir.Break(p.stmt.loc))
        b.emit(ir.If(p.ready, rb.block, pb.block, p.stmt.loc))
        return b.block

    # -- code generation

    def _gen(self, stmts: list, ctx: int, loop: bool) -> list:
        """`stmts` as straight code. loop: a real Loop of this copy encloses them, so a pending
        point breaks out of it; otherwise (a resume path's linear code) a break/continue sets
        `flow`, and whatever follows a statement that may leave is guarded."""
        out: list = []
        for i, s in enumerate(stmts):
            leaves = True
            if id(s) in self.points:
                p = self.points[id(s)]
                out += _clone(p.entry) + self._poll(p, loop)
            elif isinstance(s, ir.If) and (has_async(s) or (not loop and escapes(s))):
                lvl = stmt_level(s, ctx)
                then, else_ = self._gen(s.then, lvl, loop), self._gen(s.else_, lvl, loop)
                out.append(replace(s, then=then, else_=else_))
            elif isinstance(s, ir.Loop) and has_async(s):
                out.append(self._loop(s, stmt_level(s, ctx)))
                if loop:
                    out.append(ir.If(self.pending, [ir.Break(s.loc)], [], s.loc))
            elif not loop and isinstance(s, (ir.Break, ir.Continue)):
                flow = _BREAK if isinstance(s, ir.Break) else _CONTINUE
                out.append(ir.Op(self._flow(), "copy", (ir.Const(flow, i32),), {}, s.loc))
            else:
                out += _clone([s])
                leaves = False
            if leaves and not loop and i + 1 < len(stmts):
                return self._guarded(out, stmts[i + 1 :], ctx)
        return out

    def _loop(self, s: ir.Loop, lvl: int) -> ir.Loop:
        body = self._gen(s.body, lvl, loop=True)
        return replace(s, header=_clone(s.header), body=body, latch=_clone(s.latch))

    def _flow(self) -> ir.Var:
        if self.flow is None:
            self.flow = self.lw.names.tmp(i32, "flow")
        return self.flow

    def _resume(self, p: _Point) -> list:
        """Continue from point p: the rest of each enclosing list, innermost first; a loop
        around the point runs its latch and then again whole, unless the rest broke out."""
        stmts, index, ctx = p.path[-1]
        code = self._guarded(self._poll(p, loop=False), stmts[index + 1 :], ctx)
        for depth in range(len(p.path) - 1, 0, -1):
            outer, at, octx = p.path[depth - 1]
            owner = outer[at]
            if isinstance(owner, ir.Loop):
                b = self.lw.builder(code, owner.loc)
                flow = self._flow()
                again = b.op(
                    "land",
                    b.op("lnot", self.pending),
                    b.op("ne", flow, ir.Const(_BREAK, i32)),
                )
                lb = b.nested()
                lb.assign(flow, ir.Const(0, i32))
                lb.block += _clone(owner.latch)
                lb.emit(self._loop(owner, stmt_level(owner, octx)))
                b.emit(ir.If(again, lb.block, [], owner.loc))
                b.assign(flow, ir.Const(0, i32))
            code = self._guarded(code, outer[at + 1 :], octx)
        return code

    def _guarded(self, code: list, rest: list, ctx: int) -> list:
        """`code`, then `rest` as linear code unless the task is pending or broke out."""
        if not rest:
            return code
        b = self.lw.builder(code, rest[0].loc)
        go = b.op("lnot", self.pending)
        if self.flow is not None:
            go = b.op("land", go, b.op("eq", self.flow, ir.Const(0, i32)))
        b.emit(ir.If(go, self._gen(rest, ctx, loop=False), [], rest[0].loc))
        return code


def build_task(lw: Lowering, stmts: list, ctx: int):
    """The task as a ResumableTask where that form covers it, else as a flat Machine."""
    points = _points(stmts, ctx, [])
    if points is not None and len(points) <= MAX_POINTS:
        copied = _size(stmts) * (1 + sum(1 for p in points if len(p.path) > 1))
        if copied <= MAX_COPIED_STMTS:
            return ResumableTask(lw, stmts, ctx, points)
    return MachineBuilder(lw, UNIFORM, "task").build(stmts, ctx)


def task_poll(task, lw: Lowering) -> list:
    """One poll pass of a task built by build_task."""
    if isinstance(task, ResumableTask):
        return task.dispatch()
    return emit_dispatch(task, lw)


def _points(stmts: list, ctx: int, path: list) -> list[_Point] | None:
    """The points of a warp-uniform task in program order; None if the form does not fit."""
    found: list[_Point] = []
    for i, s in enumerate(stmts):
        if not has_async(s):
            continue
        here = path + [(stmts, i, ctx)]
        lvl = stmt_level(s, ctx)
        if lvl >= DIVERGENT or isinstance(s, (ir.Suspend, ir.Join, ir.Select)):
            found.append(_Point(s, ctx, here))
            continue
        if isinstance(s, ir.Loop):
            if any(has_async(h) for h in s.header + s.latch):
                return None
            inner = _points(s.body, lvl, here)
            if inner is None:
                return None
            found += inner
        elif isinstance(s, ir.If):
            for branch in (s.then, s.else_):
                inner = _points(branch, lvl, here)
                if inner is None:
                    return None
                found += inner
        else:
            return None
    return found


def _size(stmts: list) -> int:
    return sum(1 for _ in ir.walk(stmts))


def _clone(stmts: list) -> list:
    """A copy of the statements (Vars and Consts shared), so each copy is its own code."""
    out = []
    for s in stmts:
        if isinstance(s, ir.Op):
            out.append(replace(s, attrs=dict(s.attrs)))
        elif isinstance(s, ir.If):
            out.append(replace(s, then=_clone(s.then), else_=_clone(s.else_)))
        elif isinstance(s, ir.Loop):
            out.append(
                replace(s, header=_clone(s.header), body=_clone(s.body), latch=_clone(s.latch))
            )
        elif isinstance(s, (ir.Break, ir.Continue)):
            out.append(replace(s))
        else:
            raise RuntimeError(f"{s.loc}: cannot copy {type(s).__name__} into a resume path")
    return out


__all__ = ["ResumableTask", "build_task", "task_poll"]
