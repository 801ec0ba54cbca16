"""The async lowering: futures (Suspend/Join/Select) -> warp tasks run by an executor.

Runs after the uniformity check and before fold_lanes. A top-level join maps
its branches onto warps; every other await becomes part of a state machine
(core.passes.lower_async_machine) or, with progress "independent", a spin in
place. docs/async.md states the semantics; this module keeps to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import ir
from ..backend import EXECUTORS
from ..errors import CompileError
from ..ops import SYNC, info
from ..types import ArrayType, bool_, i32, u32, u64
from .lower_async_machine import (
    BACKOFF_MIN_NS,
    COOPERATIVE_PASSES,
    DONE,
    UNKNOWN_WAIT,
    InPlace,
    Lowering,
    Machine,
    emit_backoff,
)
from .lower_async_prep import (
    UNIFORM,
    BlockMemory,
    count_reads,
    ensure_levels,
    first_sync,
    has_async,
    join_split,
    map_static_joins,
    rewrite_continues,
    warp_in_range,
)
from .lower_async_resume import build_task, task_poll

PROGRESS = ("independent", "cooperative")
WATCHDOG_PARAM = "__watchdog"


@dataclass(frozen=True)
class WatchdogWords:
    """Length of the `__watchdog` array for a grid: word 0 is the fired flag, then one per warp.

    Layout (u32): [0] = 1 once any warp timed out; [1 + block * warps + warp] =
    the id of the wait that warp was pending on (a key of
    `kernel.attrs["wait_states"]`), 0 if it was not pending, 0xFFFFFFFF if it
    was pending on a wait it could not name.
    """

    warps: int

    def __call__(self, grid: int) -> int:
        return 1 + int(grid) * self.warps


@dataclass
class _Phase:
    """Top-level code between block barriers: tasks (warp range or None for every warp)."""

    tasks: list = field(default_factory=list)  # (range | None, stmts, ctx)
    join: ir.Join | None = None


def lower_async(
    kernel: ir.Kernel, *, progress: str, executor: str, warps: int | None, watchdog_ns: int = 0
) -> ir.Kernel:
    """Lower the async constructs of `kernel` (levels set by core.uniformity) into plain IR.

    progress: "independent" or "cooperative" (already resolved from "auto").
    executor: "block_on" or "static" (nested joins with warps= mapped onto warps).
    warps: the launch's warps per block, or None to take it from a top-level join.
    watchdog_ns > 0 adds the hidden `__watchdog` array parameter (see WatchdogWords).
    """
    if progress not in PROGRESS:
        raise ValueError(
            f"progress must be resolved to one of {PROGRESS} before lower_async, not {progress!r}"
        )
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
    if warps is not None and (isinstance(warps, bool) or not isinstance(warps, int) or warps < 1):
        raise ValueError(f"warps must be a positive int or None, not {warps!r}")
    if (
        isinstance(watchdog_ns, bool)
        or not isinstance(watchdog_ns, (int, np.integer))
        or watchdog_ns < 0
    ):
        raise ValueError(f"watchdog_ns must be a non-negative int, not {watchdog_ns!r}")
    levels = ensure_levels(kernel)
    lw = Lowering(progress, kernel, levels)
    body = rewrite_continues(kernel.body, ir.BLOCK_UNIFORM, lw.names)
    items = _split_phases(body)
    n_warps = _resolve_warps(items, warps)
    memory = BlockMemory(count_reads(body), levels, kernel.attrs.get("warp_width", 32))
    items = _assign_warp_ranges(items, executor, lw, memory)

    params = list(kernel.params)
    attrs = dict(kernel.attrs)
    watchdog = None
    if watchdog_ns:
        watchdog = ir.Var(WATCHDOG_PARAM, ArrayType(u32, "global"))
        params.append(watchdog)
        attrs["hidden_params"] = [(WATCHDOG_PARAM, WatchdogWords(n_warps), "u32")]
    emitter = _Emitter(lw, n_warps, int(watchdog_ns), watchdog, kernel.loc)
    b = lw.builder([], kernel.loc)
    memory.prologue(b)
    lw.init_registers(b)
    b.block += emitter.phases(items)
    attrs.update(
        warps=n_warps,
        progress=progress,
        executor=executor,
        wait_states={wid: lw.describe(wid) for wid in lw.waits},
    )
    return ir.Kernel(kernel.name, params, b.block, kernel.loc, attrs)


def decode_watchdog(kernel: ir.Kernel, array: np.ndarray, grid: int) -> list[str] | None:
    """The pending waits the watchdog recorded ("block 3 warp 1: until ... at f.py:12").

    None when it did not fire. `array` is the `__watchdog` buffer after the launch.
    """
    words = np.asarray(array)
    if words.size == 0 or int(words[0]) == 0:
        return None
    n_warps = int(kernel.attrs["warps"])
    states = kernel.attrs.get("wait_states", {})
    lines = []
    for block in range(int(grid)):
        for warp in range(n_warps):
            slot = 1 + block * n_warps + warp
            wid = int(words[slot]) if slot < words.size else 0
            if wid == UNKNOWN_WAIT:
                lines.append(f"block {block} warp {warp}: pending (wait not recorded)")
            elif wid:
                lines.append(f"block {block} warp {warp}: {states.get(wid, f'wait #{wid}')}")
    return lines or ["the watchdog fired, but no warp recorded a pending wait"]


# ------------------------------------------------------------------ phases


def _split_phases(body: list) -> list:
    """Top-level statements -> block code (lists) and _Phases.

    A task runs from a statement that awaits to the next top-level barrier or
    top-level join; the barrier stays block code between phases (every warp
    reaches it after finishing its task). Barriers inside a task cannot be
    reached by every warp together, so they are rejected.
    """
    items: list = []
    task: _Phase | None = None
    for s in body:
        if isinstance(s, ir.Join):
            task = None
            _reject_barriers(s.branches, "a branch of a join")
            items.append(_Phase(join=s))
        elif isinstance(s, ir.Op) and info(s.opcode).category == SYNC:
            task = None
            items.append([s])
        elif task is None and not has_async(s):
            if items and isinstance(items[-1], list):
                items[-1].append(s)
            else:
                items.append([s])
        else:
            _reject_barriers([[s]], "code that runs after an await")
            if task is None:
                task = _Phase()
                task.tasks.append((None, [], ir.BLOCK_UNIFORM))
                items.append(task)
            task.tasks[0][1].append(s)
    return items


def _reject_barriers(blocks: list, where: str) -> None:
    for block in blocks:
        op = first_sync(block)
        if op is not None:
            raise CompileError(
                f"{op.opcode}() in {where}: a block barrier needs every warp of the block, "
                "and here each warp runs its own task",
                op.loc,
                hint="put the barrier at the kernel's top level, or wait on an "
                "aw.Barrier(count) with `await bar.wait()`",
            )


def _resolve_warps(items: list, warps: int | None) -> int:
    """The warps per block: the launch's, or what the top-level joins imply (they must agree)."""
    need = None
    for item in items:
        if not isinstance(item, _Phase) or item.join is None:
            continue
        join = item.join
        split = join_split(join)
        total = sum(split) if split else len(join.branches)
        if warps is not None and split and total != warps:
            raise CompileError(
                f"join(..., warps={split}) runs on {total} warps, but the kernel is launched "
                f"with {warps} warps per block",
                join.loc,
                hint=f"launch with kern[grid, {total}] or change warps= to add up to {warps}",
            )
        if warps is not None and not split and warps != total:
            more = warps > total
            raise CompileError(
                f"this top-level join has {total} branches (one warp each), but the kernel is "
                f"launched with {warps} warps per block",
                join.loc,
                hint=(
                    f"say how to share the warps, e.g. join(..., warps=("
                    f"{', '.join(str(n) for n in [warps - total + 1] + [1] * (total - 1))}))"
                    if more
                    else f"launch with kern[grid, {total}] or leave warps out"
                ),
            )
        if need is not None and total != need:
            raise CompileError(
                f"this top-level join runs on {total} warps, an earlier one on {need}; every "
                "top-level join of a kernel must use all its warps",
                join.loc,
                hint="give each join a warps=(...) split that adds up to the same count",
            )
        need = total
    return warps or need or 1


def _assign_warp_ranges(items: list, executor: str, lw: Lowering, memory: BlockMemory) -> list:
    """Give each branch of a top-level join its warps; the results follow as block code."""
    out: list = []
    for item in items:
        out.append(item)
        if not isinstance(item, _Phase) or item.join is None:
            continue
        join = item.join
        split = join_split(join) or (1,) * len(join.branches)
        firsts = [sum(split[:k]) for k in range(len(split))]
        b = lw.builder([], join.loc)
        branches, loads = memory.share_results(join.branches, firsts, b)
        for branch, first, n in zip(branches, firsts, split, strict=True):
            if executor == "static":
                branch = map_static_joins(branch, first, first + n, lw.names, memory)
            item.tasks.append(((first, first + n), branch, UNIFORM))
        if loads:
            out.append(loads)  # every warp reads the results once the join is complete
    return out


# ------------------------------------------------------------------ executors


class _Emitter:
    """Emits each phase with the executor for the progress mode (and the watchdog)."""

    def __init__(
        self, lw: Lowering, n_warps: int, watchdog_ns: int, watchdog: ir.Var | None, loc: ir.Loc
    ):
        self.lw = lw
        self.n_warps = n_warps
        self.watchdog_ns = watchdog_ns
        self.watchdog = watchdog
        self.loc = loc
        self.in_place = lw.progress == "independent" and not watchdog_ns

    def phases(self, items: list) -> list:
        b = self.lw.builder([], self.loc)
        for i, item in enumerate(items):
            if isinstance(item, list):
                b.block += item
                continue
            loc = item.join.loc if item.join is not None else item.tasks[0][1][0].loc
            b.loc = loc
            if self.in_place:
                for rng, stmts, ctx in item.tasks:
                    code = InPlace(self.lw).block(stmts, ctx)
                    self._in_range(b, rng, code, loc)
                if item.join is not None and i + 1 < len(items):
                    b.op("barrier")  # the code after a join runs once every branch finished
                continue
            machines = [
                (rng, build_task(self.lw, stmts, ctx))
                for rng, stmts, ctx in item.tasks
            ]
            done = self._drive(b, machines)
            if self.watchdog is not None:
                self._report(b, done)
                rest = self.phases(items[i + 1 :])
                if rest:
                    # A warp that timed out skips the rest; block_all makes that block-uniform.
                    finished = b.op("block_all", done)
                    b.emit(ir.If(finished, rest, [], loc))
                break
        return b.block

    def _in_range(self, b: ir.Builder, rng, code: list, loc: ir.Loc) -> None:
        if rng is None:
            b.block += code
        else:
            b.emit(ir.If(warp_in_range(b, *rng), code, [], loc))

    def _drive(self, b: ir.Builder, machines: list[tuple]) -> ir.Var:
        """Poll the warp's task until done: rounds with a block barrier (cooperative), or a
        per-warp loop with backoff (independent with a watchdog). Returns the `done` flag."""
        lw = self.lw
        cooperative = lw.progress == "cooperative"
        for _, m in machines:
            b.assign(m.state, ir.Const(0, i32))
        done = b.tmp(bool_, "task_done")
        b.assign(done, ir.Const(False, bool_))
        stop = done
        if self.watchdog is not None:
            stop = b.tmp(bool_, "task_stop")
            b.assign(stop, ir.Const(False, bool_))
            t_start = b.op("timer")
        if not cooperative:
            backoff = b.tmp(i32, "backoff")
            b.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        hb = b.nested()
        pb = hb.nested()  # one poll pass of this warp's task
        ticks0 = None if cooperative else pb.op("copy", lw.ticks)
        pb.assign(lw.waiting_on, ir.Const(0, u32))
        for rng, m in machines:
            code = task_poll(m, lw)
            cb = lw.builder(code, b.loc)
            cb.assign(done, cb.op("eq", m.state, ir.Const(DONE, i32)))
            self._in_range(pb, rng, code, b.loc)
        if cooperative:
            nb = pb.nested()
            lw.sleep_naming_wait(nb, _waits(machines), ir.Const(0, i32))
            pb.emit(ir.If(pb.op("lnot", done), nb.block, [], b.loc))
        if self.watchdog is not None:
            elapsed = pb.op("sub", pb.op("timer"), t_start)
            late = pb.op("warp_any", pb.op("gt", elapsed, ir.Const(self.watchdog_ns, u64)))
            pb.assign(stop, pb.op("lor", done, late))
        if cooperative:
            # up to COOPERATIVE_PASSES passes while the task is pending, then the barrier
            passes = hb.tmp(i32, "passes")
            hb.assign(passes, ir.Const(0, i32))
            ih = hb.nested()
            more = ih.op(
                "land",
                ih.op("lnot", stop),
                ih.op("lt", passes, ir.Const(COOPERATIVE_PASSES, i32)),
            )
            pb.assign(passes, pb.op("add", passes, ir.Const(1, i32)))
            hb.emit(ir.Loop(ih.block, more, pb.block, [], b.loc))
            again = hb.op("lnot", hb.op("block_all", stop))
            b.emit(ir.Loop(hb.block, again, [], [], b.loc))
            return done
        hb.block += pb.block
        again = hb.op("lnot", stop)
        bb = b.nested()
        moved = bb.op("warp_any", bb.op("ne", lw.ticks, ticks0))
        rb, sb = bb.nested(), bb.nested()
        rb.assign(backoff, ir.Const(BACKOFF_MIN_NS, i32))
        lw.sleep_naming_wait(sb, _waits(machines), backoff)
        emit_backoff(sb, backoff)
        bb.emit(ir.If(moved, rb.block, sb.block, b.loc))
        b.emit(ir.Loop(hb.block, again, bb.block, [], b.loc))
        return done

    def _report(self, b: ir.Builder, done: ir.Var) -> None:
        """A warp that stopped unfinished writes its pending wait id and raises the flag."""
        rb = b.nested()
        w = rb.op("warp_max", self.lw.waiting_on)
        unnamed = rb.op("eq", w, ir.Const(0, u32))
        code = rb.op("select", unnamed, ir.Const(UNKNOWN_WAIT, u32), w)
        lb = rb.nested()
        base = lb.op("mul", lb.op("block_id"), ir.Const(self.n_warps, i32))
        slot = lb.op("add", lb.op("add", base, lb.op("warp_id")), ir.Const(1, i32))
        lb.op("store", self.watchdog, slot, code, order="relaxed", scope="device")
        lb.op(
            "store",
            self.watchdog,
            ir.Const(0, i32),
            ir.Const(1, u32),
            order="relaxed",
            scope="device",
        )
        rb.emit(ir.If(rb.op("eq", rb.op("lane"), ir.Const(0, i32)), lb.block, [], b.loc))
        b.emit(ir.If(b.op("lnot", done), rb.block, [], b.loc))


def _waits(machines: list[tuple]) -> list[int]:
    return [w for _, m in machines for w in m.waits]


__all__ = ["lower_async", "decode_watchdog", "WatchdogWords", "Machine", "WATCHDOG_PARAM"]
