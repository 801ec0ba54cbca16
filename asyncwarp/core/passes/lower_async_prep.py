"""Analyses and rewrites that prepare logical IR for the async lowering (core.passes.lower_async).

Which statements await, the lane-uniformity of contexts, `continue` under a
lane-divergent branch rewritten into a flag, nested joins mapped onto warp
ranges (executor "static"), and the warp-group barrier that mapping shares with
`aw.Barrier`.
"""

from __future__ import annotations

import copy
from collections import Counter

from .. import ir
from ..errors import CompileError
from ..ops import COLLECTIVE, SYNC, info
from ..types import ArrayType, ScalarType, bool_, i32, u32

ASYNC_NODES = (ir.Suspend, ir.Join, ir.Select)
UNIFORM = ir.WARP_UNIFORM  # the machines only tell warp-uniform from divergent
DIVERGENT = ir.DIVERGENT


# ------------------------------------------------------------------ queries


def has_async(stmt: ir.Stmt) -> bool:
    """Whether `stmt` is or contains a Suspend, Join or Select."""
    if isinstance(stmt, ASYNC_NODES):
        return True
    return any(block_has_async(b) for b in ir.child_blocks(stmt))


def block_has_async(block: list) -> bool:
    return any(isinstance(s, ASYNC_NODES) for s in ir.walk(block))


def escapes(stmt: ir.Stmt) -> bool:
    """Whether a Break/Continue in `stmt` leaves the innermost loop around `stmt`."""
    if isinstance(stmt, (ir.Break, ir.Continue)):
        return True
    if isinstance(stmt, ir.If):
        return any(escapes(s) for s in stmt.then + stmt.else_)
    return False


def poll_has_collectives(poll: list) -> bool:
    """A poll with warp collectives (channels) is run by all lanes together on every poll."""
    return any(
        isinstance(s, ir.Op) and info(s.opcode).category == COLLECTIVE for s in ir.walk(poll)
    )


def first_sync(block: list) -> ir.Op | None:
    """The first block barrier (`barrier`, `block_all`) nested anywhere in `block`."""
    for s in ir.walk(block):
        if isinstance(s, ir.Op) and info(s.opcode).category == SYNC:
            return s
    return None


def stmt_level(stmt: ir.Stmt, ctx: int) -> int:
    """The level of the context inside `stmt` (If/Loop: their level, at least the outer one).

    Suspend/Join/Select take the level of the context they sit in: an await in
    warp-uniform code completes per lane but moves the warp on together.
    """
    if isinstance(stmt, (ir.If, ir.Loop)):
        if stmt.level is None:
            raise RuntimeError(
                f"{stmt.loc}: {type(stmt).__name__} has no uniformity level; "
                "run core.uniformity before lower_async"
            )
        return max(ctx, stmt.level)
    return ctx


def ensure_levels(kernel: ir.Kernel) -> dict:
    """The level of every variable (core.uniformity), which also sets the nodes' levels."""
    from .. import uniformity

    return uniformity.analyze(kernel)


# ------------------------------------------------------------------ continue flags


def rewrite_continues(block: list, ctx: int, b: ir.Builder) -> list:
    """Copy `block`, turning `continue`s of awaiting warp-uniform loops into a flag.

    After a `continue` under a lane-divergent branch the rest of the loop body
    runs in that branch's context (internals.md, Uniformity), so an await there
    is a per-lane wait. The rest is rewritten into `if not continued: rest`, a
    divergent If the lowering turns into a per-lane state machine.
    """
    out = []
    for s in block:
        if isinstance(s, ir.If):
            lvl = stmt_level(s, ctx)
            s2 = copy.copy(s)
            s2.then = rewrite_continues(s.then, lvl, b)
            s2.else_ = rewrite_continues(s.else_, lvl, b)
            out.append(s2)
        elif isinstance(s, ir.Loop):
            lvl = stmt_level(s, ctx)
            s2 = copy.copy(s)
            s2.header = rewrite_continues(s.header, lvl, b)
            s2.body = rewrite_continues(s.body, lvl, b)
            s2.latch = rewrite_continues(s.latch, lvl, b)
            if lvl < DIVERGENT and block_has_async(s2.body) and _divergent_continue(s2.body, lvl):
                flag = b.tmp(bool_, "continued")
                body, _ = _flag_continues(s2.body, flag, b)
                s2.body = [ir.Op(flag, "copy", (ir.Const(False, bool_),), {}, s.loc)] + body
            out.append(s2)
        elif isinstance(s, (ir.Join, ir.Select)):
            s2 = copy.copy(s)
            s2.branches = [rewrite_continues(br, ctx, b) for br in s.branches]
            out.append(s2)
        else:
            out.append(s)
    return out


def _divergent_continue(block: list, ctx: int) -> bool:
    for s in block:
        if isinstance(s, ir.Continue) and ctx >= DIVERGENT:
            return True
        if isinstance(s, ir.If):
            lvl = stmt_level(s, ctx)
            if _divergent_continue(s.then, lvl) or _divergent_continue(s.else_, lvl):
                return True
    return False


def _flag_continues(block: list, flag: ir.Var, b: ir.Builder) -> tuple[list, bool]:
    out: list = []
    for i, s in enumerate(block):
        if isinstance(s, ir.Continue):
            out.append(ir.Op(flag, "copy", (ir.Const(True, bool_),), {}, s.loc))
            return out, True
        if isinstance(s, ir.If) and escapes(s):
            s2 = copy.copy(s)
            s2.then, _ = _flag_continues(s.then, flag, b)
            s2.else_, _ = _flag_continues(s.else_, flag, b)
            out.append(s2)
            rest, _ = _flag_continues(block[i + 1 :], flag, b)
            if rest:
                go_on = b.tmp(bool_, "not_continued")
                out.append(ir.Op(go_on, "lnot", (flag,), {}, s.loc))
                out.append(ir.If(go_on, rest, [], s.loc, DIVERGENT))
            return out, True
        out.append(s)
    return out, False


# ------------------------------------------------------------------ warp ranges


def join_split(join: ir.Join) -> tuple[int, ...] | None:
    """The `warps=` split of a join (None if not given), checked against its branches."""
    split = getattr(join, "warps", None)
    if split is None:
        return None
    split = tuple(split)
    if len(split) != len(join.branches) or any(
        not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in split
    ):
        raise CompileError(
            f"join(..., warps={split!r}) needs one positive warp count per branch "
            f"({len(join.branches)} branches)",
            join.loc,
        )
    return split


def warp_in_range(b: ir.Builder, start: int, end: int) -> ir.Var:
    """`start <= warp_id() < end` (warp-uniform)."""
    w = b.op("warp_id")
    lo = b.op("ge", w, ir.Const(start, i32))
    hi = b.op("lt", w, ir.Const(end, i32))
    return b.op("land", lo, hi)


def count_reads(block: list) -> Counter:
    """How often each Var is read in `block` (operands and conditions)."""
    reads: Counter = Counter()
    for s in ir.walk(block):
        values = s.args if isinstance(s, ir.Op) else ()
        if isinstance(s, (ir.If, ir.Loop)):
            values = (s.cond,)
        elif isinstance(s, ir.Suspend):
            values = (s.ready,)
        reads.update(v for v in values if isinstance(v, ir.Var))
    return reads


def _assigned(block: list) -> list[ir.Var]:
    seen: dict[ir.Var, None] = {}
    for s in ir.walk(block):
        dst = s.dst if isinstance(s, ir.Op) else s.index if isinstance(s, ir.Select) else None
        if isinstance(dst, ir.Var) and isinstance(dst.type, ScalarType):
            seen[dst] = None
    return list(seen)


class BlockMemory:
    """Block memory the lowering adds: warp-group barriers and results of warp-mapped joins.

    A warp-mapped join runs each branch on its own warps, but the code after it
    runs on every warp and reads the branches' results (the await's value):
    each branch's first warp stores the variables it assigned that are read
    outside the branch, and every warp loads them once the join is complete.
    """

    def __init__(self, kernel_reads: Counter, levels: dict, W: int):
        self.kernel_reads, self.levels, self.W = kernel_reads, levels, W
        self.words = ir.Var("join_barriers", ArrayType(u32, "shared"))
        self.barriers = 0
        self.allocs: list[ir.Op] = []

    def new_barrier(self) -> int:
        self.barriers += 1
        return 2 * (self.barriers - 1)

    def share_results(self, branches: list, firsts: list, b: ir.Builder) -> tuple[list, list]:
        """(branches with their result stores appended, the loads for after the join)."""
        out, loads = [], b.nested()
        for branch, first in zip(branches, firsts, strict=True):
            inside = count_reads(branch)
            shared = [v for v in _assigned(branch) if self.kernel_reads[v] > inside[v]]
            if not shared:
                out.append(branch)
                continue
            sb = b.nested()
            for var in shared:
                self._share(var, sb, loads)
            cond = b.nested()
            mine = cond.op("eq", cond.op("warp_id"), ir.Const(first, i32))
            out.append(list(branch) + cond.block + [ir.If(mine, sb.block, [], b.loc)])
        return out, loads.block

    def _share(self, var: ir.Var, store: ir.Builder, load: ir.Builder) -> None:
        # A warp-uniform value takes one slot (and stays uniform when loaded); a
        # per-lane one takes W. Block memory has no bool: it travels as u32.
        uniform = self.levels.get(var, ir.DIVERGENT) <= ir.WARP_UNIFORM
        elem = u32 if var.type.is_bool else var.type
        slots = ir.Var(f"{var.name}_result", ArrayType(elem, "shared"))
        self.allocs.append(ir.Op(slots, "shared_alloc", (), {"n": 1 if uniform else self.W}))
        mem = {"order": "weak", "scope": "block"}
        value: ir.Value = var
        if var.type.is_bool:
            value = store.op("select", var, ir.Const(1, u32), ir.Const(0, u32))
        if uniform:
            lb = store.nested()
            lb.op("store", slots, ir.Const(0, i32), value, **mem)
            store.emit(ir.If(store.op("eq", store.op("lane"), ir.Const(0, i32)), lb.block, []))
            got = load.op("load", slots, ir.Const(0, i32), **mem)
        else:
            store.op("store", slots, store.op("lane"), value, **mem)
            got = load.op("load", slots, load.op("lane"), **mem)
        if var.type.is_bool:
            got = load.op("ne", got, ir.Const(0, u32))
        load.assign(var, got)

    def prologue(self, b: ir.Builder) -> None:
        """The allocations, and the barrier words zeroed behind a block barrier."""
        for op in self.allocs:
            b.emit(ir.Op(op.dst, op.opcode, op.args, op.attrs, b.loc))
        if not self.barriers:
            return
        b.emit(ir.Op(self.words, "shared_alloc", (), {"n": 2 * self.barriers}, b.loc))
        first = b.op(
            "land",
            b.op("eq", b.op("warp_id"), ir.Const(0, i32)),
            b.op("eq", b.op("lane"), ir.Const(0, i32)),
        )
        zb = b.nested()
        for k in range(2 * self.barriers):
            zb.op(
                "store", self.words, ir.Const(k, i32), ir.Const(0, u32), order="weak", scope="block"
            )
        b.emit(ir.If(first, zb.block, [], b.loc))
        b.op("barrier")


def map_static_joins(stmts: list, start: int, end: int, b: ir.Builder, memory: BlockMemory) -> list:
    """Map the joins with `warps=` among `stmts` (a branch on warps [start, end)) onto warps.

    Each branch of such a join gets its own sub-range; the code after it waits
    on a warp-group barrier of the range's warps (a block barrier would also
    stop the warps of the other branches), then reads the branches' results.
    """
    out: list = []
    for s in stmts:
        split = join_split(s) if isinstance(s, ir.Join) else None
        if split is None:
            out.append(s)
            continue
        if sum(split) != end - start:
            raise CompileError(
                f"join(..., warps={split}) splits {sum(split)} warps, but this branch runs on "
                f"{end - start} warp(s)",
                s.loc,
                hint=f"make the counts add up to {end - start}, or leave warps= out to run "
                "the branches interleaved on each warp",
            )
        cb = b.nested()
        cb.loc = s.loc
        firsts = [start + sum(split[:k]) for k in range(len(split))]
        branches, loads = memory.share_results(s.branches, firsts, cb)
        for branch, first, n in zip(branches, firsts, split, strict=True):
            inner = map_static_joins(branch, first, first + n, b, memory)
            cond = warp_in_range(cb, first, first + n)
            cb.emit(ir.If(cond, inner, [], s.loc, UNIFORM))
        emit_group_barrier(
            cb,
            memory.words,
            memory.new_barrier(),
            end - start,
            f"the other branches of the join on warps {start}..{end - 1}",
        )
        out += cb.block + loads
    return out


def emit_group_barrier(
    b: ir.Builder, words: ir.Var, base: int, count: int | ir.Value, what: str
) -> None:
    """Arrive at, then await, a barrier of `count` warps kept in words[base], words[base+1].

    words[base] counts arrivals, words[base+1] is the generation. Lane 0 reads
    the generation before it arrives (it cannot move before this warp arrives),
    and the last arrival resets the count and publishes generation + 1 with a
    release store; every lane acquire-loads the generation until it moves. Must
    be emitted in warp-uniform context.
    """
    idx_count, idx_gen = ir.Const(base, i32), ir.Const(base + 1, i32)
    b.op("warp_sync")  # every lane's writes before lane 0's arrival (a release for the warp)
    lane0 = b.op("eq", b.op("lane"), ir.Const(0, i32))
    seen = b.tmp(u32, "bar_gen")
    b.assign(seen, ir.Const(0, u32))
    lb = b.nested()
    g = lb.op("load", words, idx_gen, order="acquire", scope="block")
    old = lb.op(
        "atomic", words, idx_count, ir.Const(1, u32), op="add", order="acq_rel", scope="block"
    )
    if isinstance(count, int):
        last_arrival: ir.Value = ir.Const(count - 1, u32)
    elif isinstance(count, ir.Const):
        last_arrival = ir.Const(int(count.value) - 1, u32)
    else:
        last_arrival = lb.op("sub", count, ir.Const(1, u32))
    last = lb.op("eq", old, last_arrival)
    rb = lb.nested()
    rb.op("store", words, idx_count, ir.Const(0, u32), order="relaxed", scope="block")
    rb.op(
        "store", words, idx_gen, rb.op("add", g, ir.Const(1, u32)), order="release", scope="block"
    )
    lb.emit(ir.If(last, rb.block, [], b.loc))
    lb.assign(seen, g)
    b.emit(ir.If(lane0, lb.block, [], b.loc))
    gen = b.op("shuffle", seen, ir.Const(0, i32))
    pb = b.nested()
    now = pb.op("load", words, idx_gen, order="acquire", scope="block")
    ready = pb.op("ne", now, gen)
    b.emit(ir.Suspend(pb.block, ready, f"barrier: waiting for {what}", b.loc))
