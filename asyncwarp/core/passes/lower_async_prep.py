"""Analyses and rewrites that prepare logical IR for the async lowering (core.passes.lower_async).

Which statements await, the lane-uniformity of contexts, `continue` under a
lane-divergent branch rewritten into a flag, nested joins mapped onto warp
ranges (executor "static"), and the warp-group barrier that mapping shares with
`aw.Barrier`.
"""

from __future__ import annotations

import copy

from .. import ir
from ..errors import CompileError
from ..ops import COLLECTIVE, SYNC, info
from ..types import ArrayType, bool_, i32, u32

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


def ensure_levels(kernel: ir.Kernel) -> None:
    """Run core.uniformity when the kernel's If/Loop nodes carry no levels yet."""
    if any(isinstance(s, (ir.If, ir.Loop)) and s.level is None for s in kernel.walk()):
        from .. import uniformity

        uniformity.check(kernel)


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


class GroupBarriers:
    """Block memory for the warp-group barriers of statically mapped joins: two u32 each."""

    def __init__(self) -> None:
        self.words = ir.Var("join_barriers", ArrayType(u32, "shared"))
        self.count = 0

    def new(self) -> int:
        self.count += 1
        return 2 * (self.count - 1)

    def prologue(self, b: ir.Builder) -> None:
        """Allocate and zero the words, then a block barrier (before anything awaits)."""
        if not self.count:
            return
        b.emit(ir.Op(self.words, "shared_alloc", (), {"n": 2 * self.count}, b.loc))
        first = b.op(
            "land",
            b.op("eq", b.op("warp_id"), ir.Const(0, i32)),
            b.op("eq", b.op("lane"), ir.Const(0, i32)),
        )
        zb = b.nested()
        for k in range(2 * self.count):
            zb.op(
                "store", self.words, ir.Const(k, i32), ir.Const(0, u32), order="weak", scope="block"
            )
        b.emit(ir.If(first, zb.block, [], b.loc))
        b.op("barrier")


def map_static_joins(
    stmts: list, start: int, end: int, b: ir.Builder, barriers: GroupBarriers
) -> list:
    """Map the joins with `warps=` among `stmts` (a branch on warps [start, end)) onto warps.

    Each branch of such a join gets its own sub-range; the code after it waits
    on a warp-group barrier of the range's warps (a block barrier would also
    stop the warps of the other branches).
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
        at = start
        for branch, n in zip(s.branches, split, strict=True):
            inner = map_static_joins(branch, at, at + n, b, barriers)
            cond = warp_in_range(cb, at, at + n)
            cb.emit(ir.If(cond, inner, [], s.loc, UNIFORM))
            at += n
        emit_group_barrier(
            cb,
            barriers.words,
            barriers.new(),
            end - start,
            f"the other branches of the join on warps {start}..{end - 1}",
        )
        out += cb.block
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
