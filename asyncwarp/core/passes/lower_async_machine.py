"""State machines for async code, and the in-place form of independent progress.

Part of core.passes.lower_async. A `Machine` is a task's code cut at its
suspension points into segments, dispatched by a Loop over
`If(state == k, segment_k)`; `emit_dispatch` runs one poll pass of it. The
frames are the Vars themselves, so nothing leaves registers and the control
flow stays structured (SPIR-V needs that). `InPlace` lowers warp-uniform code
for progress "independent": waits spin where they are.
"""

from __future__ import annotations

import copy
import itertools
import re

from .. import ir
from ..errors import CompileError
from ..ops import PURE, SPECIAL, info
from ..types import bool_, i32, u32
from .lower_async_prep import (
    DIVERGENT,
    UNIFORM,
    escapes,
    has_async,
    poll_has_collectives,
    stmt_level,
)

DONE = -1  # the state of a finished machine
BACKOFF_MIN_NS = 32  # independent spins: sleep doubles from this ...
BACKOFF_MAX_NS = 1024  # ... up to this (1 us), and restarts after progress
# Cooperative rounds: passes over a warp's task before the block barrier. More than
# one lets a wait that another warp satisfies meanwhile complete in the same round
# (where warps do run concurrently) instead of costing a barrier; the count is
# bounded, so every warp still reaches the barrier where they do not.
COOPERATIVE_PASSES = 4
UNKNOWN_WAIT = 0xFFFFFFFF  # watchdog slot of a pending warp that recorded no wait
_TRUE, _FALSE = ir.Const(True, bool_), ir.Const(False, bool_)


class Lowering:
    """Per-kernel state of the async lowering: names, wait ids, the shared registers.

    `waiting_on` (u32, per lane) holds the id of the last wait found not ready in
    the current poll pass; drivers name it in their single `sleep` per pass
    (the interpreter spots a spinning subgroup by two identical consecutive
    sleeps, so one sleep per pass keeps its deadlock detector working) and the
    watchdog reports it. `ticks` counts completed waits, so independent drivers
    can restart their backoff after progress.
    """

    def __init__(self, progress: str, kernel: ir.Kernel, levels: dict | None = None):
        self.progress = progress
        self.levels = levels or {}  # Var -> uniformity level (core.uniformity)
        self.names = ir.Builder()
        self.names.loc = kernel.loc
        # Names are for printing only; start past the kernel's own numbered names.
        self.names._names = itertools.count(_last_number(kernel) + 1)
        self.waits: dict[int, ir.Suspend] = {}
        self.waiting_on = ir.Var("waiting_on", u32)
        self.ticks = ir.Var("ticks", u32) if progress == "independent" else None

    def builder(self, block: list, loc: ir.Loc | None = None) -> ir.Builder:
        b = self.names.nested()
        b.block = block
        if loc is not None:
            b.loc = loc
        return b

    def wait_id(self, s: ir.Suspend) -> int:
        wid = len(self.waits) + 1  # 0 means "no wait"
        self.waits[wid] = s
        return wid

    def describe(self, wid: int) -> str:
        s = self.waits[wid]
        file = s.loc.file.replace("\\", "/").rsplit("/", 1)[-1]
        return f"{s.what} at {file}:{s.loc.line}" if s.loc.line else s.what

    def init_registers(self, b: ir.Builder) -> None:
        b.assign(self.waiting_on, ir.Const(0, u32))
        if self.ticks is not None:
            b.assign(self.ticks, ir.Const(0, u32))

    def sleep_naming_wait(self, b: ir.Builder, waits: list, ns: ir.Value) -> None:
        """One `sleep(ns) {what}` naming the warp's pending wait (the highest id among lanes)."""
        w = b.op("warp_max", self.waiting_on)
        for wid in waits:
            s = self.waits[wid]
            sb = b.nested()
            sb.loc = s.loc
            sb.op("sleep", ns, what=self.describe(wid))
            b.emit(ir.If(b.op("eq", w, ir.Const(wid, u32)), sb.block, [], s.loc))
        fb = b.nested()
        fb.op("sleep", ns, what="a wait of this warp")
        b.emit(ir.If(b.op("eq", w, ir.Const(0, u32)), fb.block, [], b.loc))


def _last_number(kernel: ir.Kernel) -> int:
    names = [p.name for p in kernel.params]
    for s in kernel.walk():
        for v in (getattr(s, "dst", None), getattr(s, "ready", None), getattr(s, "index", None)):
            if isinstance(v, ir.Var):
                names.append(v.name)
    numbers = [int(m.group(1)) for n in names if (m := re.search(r"(\d+)$", n))]
    return max(numbers, default=-1)


class Label:
    """A state number, fixed when its segment starts (so states follow program order)."""

    __slots__ = ("id", "entry", "refs")

    def __init__(self, entry: list):
        self.id: int | None = None
        self.entry = entry  # (Var, Const) pairs assigned on every transition into the state
        self.refs: list[ir.Op] = []


class Machine:
    """A resumable task: `state` (DONE when finished), its segments and the waits inside."""

    def __init__(self, level: int, state: ir.Var, pending: ir.Var):
        self.level = level
        self.state = state
        self.pending = pending
        self.segments: list[tuple[Label, list]] = []
        self.waits: list[int] = []


class MachineBuilder:
    """Cuts structured code into the segments of one Machine (sub-machines recursively)."""

    def __init__(self, lw: Lowering, level: int, name: str):
        self.lw = lw
        b = lw.names
        self.m = Machine(level, b.tmp(i32, f"{name}_state"), b.tmp(bool_, f"{name}_pending"))
        self.cur: ir.Builder | None = None
        self.loops: list[tuple[Label, Label]] = []  # (exit, latch) of the loops being cut
        self.labels: list[Label] = []

    def build(self, stmts: list, ctx: int) -> Machine:
        self._start(self._label())
        self.block(stmts, ctx)
        if self.cur is not None:
            self.cur.assign(self.m.state, ir.Const(DONE, i32))
        for label in self.labels:
            if label.refs and label.id is None:
                raise RuntimeError("async lowering: a jump to a state that has no segment")
            for op in label.refs:
                op.args = (ir.Const(label.id, i32),)
        return self.m

    # -- states and jumps

    def _label(self, entry: list | None = None) -> Label:
        label = Label(entry or [])
        self.labels.append(label)
        return label

    def _start(self, label: Label) -> None:
        label.id = len(self.m.segments)
        block: list = []
        self.m.segments.append((label, block))
        self.cur = self.lw.builder(block)

    def _goto(self, label: Label, b: ir.Builder) -> None:
        for var, value in label.entry:
            b.assign(var, value)
        op = ir.Op(self.m.state, "copy", (ir.Const(DONE, i32),), {}, b.loc)  # id patched later
        label.refs.append(op)
        b.emit(op)

    def _jump(self, label: Label) -> None:
        self._goto(label, self.cur)
        self.cur = None

    def _branch(self, cond: ir.Value, then: Label, else_: Label, loc: ir.Loc) -> None:
        tb, eb = self.cur.nested(), self.cur.nested()
        self._goto(then, tb)
        self._goto(else_, eb)
        self.cur.emit(ir.If(cond, tb.block, eb.block, loc))
        self.cur = None

    def _finish_or_pend(self, fin: ir.Value, loc: ir.Loc) -> None:
        nxt = self._label()
        tb, fb = self.cur.nested(), self.cur.nested()
        self._goto(nxt, tb)
        fb.assign(self.m.pending, _TRUE)
        self.cur.emit(ir.If(fin, tb.block, fb.block, loc))
        self._start(nxt)

    # -- statements

    def block(self, stmts: list, ctx: int) -> None:
        for s in stmts:
            if self.cur is None:
                return  # unreachable after a break/continue
            cutting = bool(self.loops) and escapes(s)
            if not (cutting or has_async(s)):
                if escapes(s):
                    raise RuntimeError(
                        f"{s.loc}: async lowering: a break/continue leaves a "
                        "lane-divergent state machine"
                    )
                self.cur.emit(s)
                continue
            self.cur.loc = s.loc
            lvl = stmt_level(s, ctx)
            if self.m.level < DIVERGENT and lvl >= DIVERGENT:
                self._divergent(s)
            elif isinstance(s, ir.Suspend):
                self._suspend(s)
            elif isinstance(s, ir.If):
                self._if(s, lvl)
            elif isinstance(s, ir.Loop):
                self._loop(s, lvl)
            elif isinstance(s, ir.Break):
                self._jump(self.loops[-1][0])
            elif isinstance(s, ir.Continue):
                self._jump(self.loops[-1][1])
            elif isinstance(s, ir.Join):
                self._join(s, ctx)
            elif isinstance(s, ir.Select):
                self._select(s, ctx)
            else:
                raise RuntimeError(f"async lowering: cannot cut {type(s).__name__}")

    def _suspend(self, s: ir.Suspend) -> None:
        uniform = self.m.level < DIVERGENT
        collective = poll_has_collectives(s.poll)
        if collective and not uniform:
            raise CompileError(
                f"`{s.what}` is a warp collective wait, but it sits in lane-divergent code",
                s.loc,
                hint="await channels, semaphores and other warp-level primitives where "
                "every lane of the warp reaches the await together",
            )
        wid = self.lw.wait_id(s)
        self.m.waits.append(wid)
        # Warp-uniform context: each lane completes on its own (a ready lane is not
        # polled again) and the warp moves on when all are; a poll with collectives
        # is run by every lane every time instead.
        lane_ready = self.lw.names.tmp(bool_, "lane_ready") if uniform and not collective else None
        state = self._label([(lane_ready, _FALSE)] if lane_ready is not None else [])
        self._jump(state)
        self._start(state)
        b = self.cur
        b.loc = s.loc
        if lane_ready is not None:
            pb = b.nested()
            pb.block.extend(s.poll)
            pb.assign(lane_ready, s.ready)
            b.emit(ir.If(b.op("lnot", lane_ready), pb.block, [], s.loc))
            ready = b.op("warp_all", lane_ready)
        else:
            b.block.extend(s.poll)
            ready = b.op("warp_all", s.ready) if uniform else s.ready
        nxt = self._label()
        tb, fb = b.nested(), b.nested()
        self._goto(nxt, tb)
        if self.lw.ticks is not None:
            tb.assign(self.lw.ticks, tb.op("add", self.lw.ticks, ir.Const(1, u32)))
        fb.assign(self.lw.waiting_on, ir.Const(wid, u32))
        fb.assign(self.m.pending, _TRUE)
        b.emit(ir.If(ready, tb.block, fb.block, s.loc))
        self._start(nxt)

    def _if(self, s: ir.If, lvl: int) -> None:
        then, join = self._label(), self._label()
        else_ = self._label() if s.else_ else join
        self._branch(s.cond, then, else_, s.loc)
        self._start(then)
        self.block(s.then, lvl)
        if self.cur is not None:
            self._jump(join)
        if s.else_:
            self._start(else_)
            self.block(s.else_, lvl)
            if self.cur is not None:
                self._jump(join)
        self._start(join)

    def _loop(self, s: ir.Loop, lvl: int) -> None:
        head = self._label()
        self._jump(head)
        self._start(head)
        self.block(s.header, lvl)
        body, latch, exit_ = self._label(), self._label(), self._label()
        if self.cur is not None:
            if s.cond is None:
                self._jump(body)
            else:
                self._branch(s.cond, body, exit_, s.loc)
        self.loops.append((exit_, latch))
        self._start(body)
        self.block(s.body, lvl)
        if self.cur is not None:
            self._jump(latch)
        self.loops.pop()
        self._start(latch)
        self.block(s.latch, lvl)
        if self.cur is not None:
            self._jump(head)
        self._start(exit_)

    def _sub_machines(self, branches: list, level: int, ctx: int, name: str) -> list[Machine]:
        subs = []
        for i, branch in enumerate(branches):
            sub = MachineBuilder(self.lw, level, f"{name}{i}").build(branch, ctx)
            self.m.waits += sub.waits
            subs.append(sub)
        return subs

    def _enter(self, subs: list[Machine]) -> ir.Builder:
        state = self._label([(sub.state, ir.Const(0, i32)) for sub in subs])
        self._jump(state)
        self._start(state)
        return self.cur

    def _divergent(self, s: ir.Stmt) -> None:
        """A lane-divergent statement that awaits: a per-lane machine, until every lane is done."""
        (sub,) = self._sub_machines([[s]], DIVERGENT, DIVERGENT, "lanes")
        b = self._enter([sub])
        b.block += emit_dispatch(sub, self.lw)
        fin = b.op("warp_all", b.op("eq", sub.state, ir.Const(DONE, i32)))
        self._finish_or_pend(fin, s.loc)

    def _join(self, s: ir.Join, ctx: int) -> None:
        subs = self._sub_machines(s.branches, self.m.level, ctx, "join_branch")
        b = self._enter(subs)
        self._finish_or_pend(emit_join_poll(b, subs, self.lw, s.loc), s.loc)

    def _select(self, s: ir.Select, ctx: int) -> None:
        subs = self._sub_machines(s.branches, self.m.level, ctx, "select_branch")
        b = self._enter(subs)
        won = emit_select_poll(b, subs, s.index, self.lw)
        self._finish_or_pend(won, s.loc)


def emit_select_poll(b: ir.Builder, subs: list[Machine], index: ir.Var, lw: Lowering) -> ir.Var:
    """Poll the branches in order until one is done; later ones are not polled (dropped)."""
    won = b.tmp(bool_, "select_won")
    b.assign(won, _FALSE)
    for i, sub in enumerate(subs):
        pb = b.nested()
        pb.block += emit_dispatch(sub, lw)
        wb = pb.nested()
        wb.assign(won, _TRUE)
        wb.assign(index, ir.Const(i, index.type))
        pb.emit(ir.If(pb.op("eq", sub.state, ir.Const(DONE, i32)), wb.block, [], b.loc))
        b.emit(ir.If(b.op("lnot", won), pb.block, [], b.loc))
    return won


def emit_join_poll(b: ir.Builder, subs: list[Machine], lw: Lowering, loc: ir.Loc) -> ir.Value:
    """Poll every branch that is not done yet; the value says whether all are done."""
    fin: ir.Value = _TRUE
    for sub in subs:
        running = b.op("ne", sub.state, ir.Const(DONE, i32))
        b.emit(ir.If(running, emit_dispatch(sub, lw), [], loc))
        done = b.op("eq", sub.state, ir.Const(DONE, i32))
        fin = done if fin is _TRUE else b.op("land", fin, done)
    return fin


def emit_dispatch(m: Machine, lw: Lowering) -> list:
    """One poll pass: run segments until the machine is done or pending."""
    b = lw.builder([])
    b.assign(m.pending, _FALSE)
    hb = b.nested()
    live = hb.op("ne", m.state, ir.Const(DONE, i32))
    go = hb.op("land", live, hb.op("lnot", m.pending))
    body = lw.builder([])
    for label, segment in m.segments:
        if label.id != 0 and not label.refs:
            continue  # never entered (e.g. the exit of a loop without one)
        is_k = body.op("eq", m.state, ir.Const(label.id, i32))
        body.emit(ir.If(is_k, segment, [], b.loc))
    b.emit(ir.Loop(hb.block, go, body.block, [], b.loc))
    return b.block


def _reads_only_registers(poll: list) -> bool:
    """Whether a poll is straight-line pure arithmetic on registers and fixed values (lane,
    warp and block ids) that reads no value it assigns itself: nothing another agent, time,
    or the poll's previous run can change between two polls."""
    written = {s.dst for s in poll if isinstance(s, ir.Op) and s.dst is not None}
    assigned: set = set()
    for s in poll:
        if not (isinstance(s, ir.Op) and info(s.opcode).category in (PURE, SPECIAL)):
            return False
        if any(a in written and a not in assigned for a in s.args):
            return False  # carried from the previous poll
        if s.dst is not None:
            assigned.add(s.dst)
    return True


def emit_backoff(b: ir.Builder, backoff: ir.Var) -> None:
    doubled = b.op("mul", backoff, ir.Const(2, i32))
    b.assign(backoff, b.op("min", doubled, ir.Const(BACKOFF_MAX_NS, i32)))


class InPlace:
    """Independent progress: warp-uniform code keeps its shape and each wait spins in place.

    A wait spins as `Loop(header=[poll], cond=not ready, body=[sleep(backoff)])`.
    Joins, selects and lane-divergent code that awaits become machines driven
    by such a loop, so their branches and lanes interleave on the warp.
    """

    def __init__(self, lw: Lowering):
        self.lw = lw

    def block(self, stmts: list, ctx: int) -> list:
        out: list = []
        for s in stmts:
            if not has_async(s):
                out.append(s)
                continue
            lvl = stmt_level(s, ctx)
            b = self.lw.builder(out, s.loc)
            if lvl >= DIVERGENT:
                sub = MachineBuilder(self.lw, DIVERGENT, "lanes").build([s], DIVERGENT)
                self._drive(b, [sub], "lanes")
            elif isinstance(s, ir.Suspend):
                self._spin(b, s)
            elif isinstance(s, ir.If):
                s2 = copy.copy(s)
                s2.then, s2.else_ = self.block(s.then, lvl), self.block(s.else_, lvl)
                out.append(s2)
            elif isinstance(s, ir.Loop):
                s2 = copy.copy(s)
                s2.header = self.block(s.header, lvl)
                s2.body = self.block(s.body, lvl)
                s2.latch = self.block(s.latch, lvl)
                out.append(s2)
            elif isinstance(s, (ir.Join, ir.Select)):
                subs = [
                    MachineBuilder(self.lw, UNIFORM, f"branch{i}").build(br, ctx)
                    for i, br in enumerate(s.branches)
                ]
                index = s.index if isinstance(s, ir.Select) else None
                self._drive(b, subs, "select" if index is not None else "join", index)
            else:
                raise RuntimeError(f"async lowering: cannot lower {type(s).__name__} in place")
        return out

    def _spin(self, b: ir.Builder, s: ir.Suspend) -> None:
        lw = self.lw
        wid = lw.wait_id(s)
        if _reads_only_registers(s.poll):
            self._wait_forever_unless(b, s, wid)
            return
        backoff = b.tmp(i32, "backoff")
        b.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        hb = b.nested()
        if lw.levels.get(s.ready, ir.DIVERGENT) <= ir.WARP_UNIFORM:
            # every lane computes the same readiness: no lane can be ready before the
            # others, so neither the per-lane guard nor the warp vote is needed
            hb.block.extend(s.poll)
            ready = s.ready
        elif poll_has_collectives(s.poll):
            hb.block.extend(s.poll)
            ready = hb.op("warp_all", s.ready)
        else:
            lane_ready = b.tmp(bool_, "lane_ready")
            b.assign(lane_ready, _FALSE)
            pb = hb.nested()
            pb.block.extend(s.poll)
            pb.assign(lane_ready, s.ready)
            hb.emit(ir.If(hb.op("lnot", lane_ready), pb.block, [], s.loc))
            ready = hb.op("warp_all", lane_ready)
        again = hb.op("lnot", ready)
        bb = b.nested()
        bb.op("sleep", backoff, what=lw.describe(wid))
        emit_backoff(bb, backoff)
        b.emit(ir.Loop(hb.block, again, bb.block, [], s.loc))

    def _wait_forever_unless(self, b: ir.Builder, s: ir.Suspend, wid) -> None:
        """A poll that reads only registers (`aw.until(i >= k)`) gives the same answer every
        time: evaluate it once, and if the warp is not ready, sleep forever (the hang the
        spin would be, which the interpreter reports as a deadlock). No loop leads back
        from the wait to the code after it, so ptxas keeps that code's loop as tight as
        without the await (benchmarks/NOTES.md, sixth round)."""
        b.block.extend(s.poll)
        ready = s.ready
        if self.lw.levels.get(s.ready, ir.DIVERGENT) > ir.WARP_UNIFORM:
            ready = b.op("warp_all", s.ready)
        hang = b.nested()
        backoff = hang.tmp(i32, "backoff")
        hang.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        sleep = hang.nested()
        sleep.op("sleep", backoff, what=self.lw.describe(wid))
        emit_backoff(sleep, backoff)
        hang.emit(ir.Loop([], None, sleep.block, [], s.loc))
        b.emit(ir.If(b.op("lnot", ready), hang.block, [], s.loc))

    def _drive(
        self, b: ir.Builder, subs: list[Machine], kind: str, index: ir.Var | None = None
    ) -> None:
        lw = self.lw
        for sub in subs:
            b.assign(sub.state, ir.Const(0, i32))
        backoff = b.tmp(i32, "backoff")
        b.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        hb = b.nested()
        ticks0 = hb.op("copy", lw.ticks)
        hb.assign(lw.waiting_on, ir.Const(0, u32))
        if kind == "select":
            fin = emit_select_poll(hb, subs, index, lw)
        else:
            fin = emit_join_poll(hb, subs, lw, b.loc)
            if kind == "lanes":
                fin = hb.op("warp_all", fin)
        again = hb.op("lnot", fin)
        bb = b.nested()
        moved = bb.op("warp_any", bb.op("ne", lw.ticks, ticks0))
        rb, sb = bb.nested(), bb.nested()
        rb.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        lw.sleep_naming_wait(sb, [w for sub in subs for w in sub.waits], backoff)
        emit_backoff(sb, backoff)
        bb.emit(ir.If(moved, rb.block, sb.block, b.loc))
        b.emit(ir.Loop(hb.block, again, bb.block, [], b.loc))
