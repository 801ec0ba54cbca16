"""Uniformity analysis: which values and control flow are block-uniform, warp-uniform or divergent.

Runs on logical and lowered IR (before and after passes.fold_lanes). `analyze`
gives every variable a level (ir.BLOCK_UNIFORM < WARP_UNIFORM < DIVERGENT) and
sets `.level` on each If/Loop/Suspend/Join/Select; `check` also rejects warp
collectives and joins outside warp-uniform control flow and block barriers
outside block-uniform control flow, naming the construct that made it divergent.

Rules (docs/internals.md "Uniformity"), flow-insensitive, iterated to a fixed point:
- constants, parameters, block_id, num_blocks, num_warps, shared_alloc, block_all:
  block-uniform; warp_id (sg_id), the clock, reductions, ballot, any/all (and
  their sg_* forms): warp-uniform, or block-uniform when their operand is;
  lane (sg_lane), prefix sums (sg_scan), atomics: divergent; a shuffle of a
  warp-uniform value keeps its level, one from a warp-uniform source lane is
  warp-uniform; other pure ops: the highest level of their operands.
- A load has the level of its index. Assumption: lanes that read one address
  together (one warp at a warp-uniform index, the whole block at a block-uniform
  one) see one value: true for inputs and for data published before a barrier;
  a racy program breaks it and the analysis cannot tell.
- A variable has the highest level of every value assigned to it and of every
  context it is assigned in. A context is as divergent as the conditions of the
  enclosing If/Loop, the jumps before it in its loop body (code after a
  divergent break/continue runs on some lanes only), and the exits of its loop
  (a loop with a divergent break, or a return lowered to one, is divergent as a
  whole). Join/Select branches and wait polls run per warp (warp-uniform at
  least); a poll whose readiness is divergent and that has no collective runs
  per lane (divergent).
- `.level` of a node is the level of the code inside it: the highest of its
  enclosing context and its own condition, exits or readiness.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import ir
from .errors import CompileError
from .ir import BLOCK_UNIFORM, DIVERGENT, WARP_UNIFORM, Const, Var
from .ops import COLLECTIVE, SYNC, info

_BLOCK_SOURCES = ("block_id", "num_blocks", "num_warps", "shared_alloc", "block_all")
_WARP_SOURCES = ("warp_id", "sg_id", "timer")
_DIVERGENT_SOURCES = ("lane", "sg_lane", "atomic", "atomic_cas", "warp_prefix_sum", "sg_scan")
_REDUCTIONS = (
    "warp_sum", "warp_min", "warp_max", "ballot", "warp_any", "warp_all",
    "sg_reduce", "sg_ballot", "sg_any", "sg_all",
)  # fmt: skip
_SHUFFLES = ("shuffle", "sg_shuffle")

# how values and ops are named in messages
_NAMES = {
    "lane": "aw.lane()",
    "warp_id": "aw.warp_id()",
    "sg_lane": "the subgroup lane index (sg_lane)",
    "sg_id": "the subgroup index (sg_id)",
    "atomic": "an atomic",
    "atomic_cas": "aw.atomic_cas",
    "warp_prefix_sum": "aw.warp_prefix_sum",
    "sg_scan": "a subgroup scan",
    "timer": "the clock",
    "barrier": "aw.barrier()",
    "warp_sync": "aw.warp_sync()",
}


def _op_name(opcode: str) -> str:
    if opcode in _NAMES:
        return _NAMES[opcode]
    return f"aw.{opcode}" if info(opcode).category == COLLECTIVE else opcode


@dataclass(frozen=True)
class Ctx:
    """The uniformity of a control context and, above block-uniform, why."""

    level: int
    why: str = ""  # "the if at line 12 depends on aw.lane() (line 11)"
    where: str = ""  # the construct alone: "the if at line 12"


@dataclass(frozen=True)
class _Jump:
    kind: str  # "break" or "continue"
    loc: ir.Loc
    ctx: Ctx


_TOP = Ctx(BLOCK_UNIFORM)


class _Analysis:
    def __init__(self, kernel: ir.Kernel, checking: bool = False):
        self.kernel = kernel
        self.levels: dict[Var, int] = {p: BLOCK_UNIFORM for p in kernel.params}
        self.why: dict[Var, str] = {}
        self.node_ctx: dict = {}  # Loop -> the Ctx of its exits, once raised
        self.changed = False
        self.checking = checking  # reject misplaced collectives and barriers
        self.rejecting = False  # set for the last pass, once the levels are final

    def run(self) -> None:
        self.changed = True
        while self.changed:
            self.changed = False
            self.block(self.kernel.body, _TOP)
        if self.checking:
            self.rejecting = True
            self.block(self.kernel.body, _TOP)

    # ---- values

    def level(self, v) -> int:
        if isinstance(v, Const) or v is None:
            return BLOCK_UNIFORM
        return self.levels.get(v, BLOCK_UNIFORM)

    def reason(self, v) -> str:
        return self.why.get(v, "a uniform value") if isinstance(v, Var) else "a constant"

    def raise_to(self, var: Var, level: int, origin, at: ir.Op | None = None) -> None:
        """Raise var to level; `origin` says why (described only when the level rises)."""
        old = self.levels.get(var)
        if old is not None and level <= old:
            return
        self.levels[var] = level
        self.changed = True
        if level > BLOCK_UNIFORM:
            self.why[var] = self.describe(origin, at)

    def describe(self, origin, at: ir.Op | None) -> str:
        """Why a value is not uniform: it comes from an operand, a source op or a context."""
        if isinstance(origin, str):
            return origin
        if isinstance(origin, Var):
            return self.reason(origin)
        if isinstance(origin, Ctx):
            return f"a value assigned inside {origin.where} (line {at.loc.line})"
        if origin.opcode == "load":
            return f"a load at an index that depends on {self.reason(origin.args[1])}"
        return f"{_op_name(origin.opcode)} (line {origin.loc.line})"

    def op_level(self, op: ir.Op) -> tuple[int, object]:
        """The level of op's result and its origin (an operand Var, or op as a source)."""
        code = op.opcode
        if code in _BLOCK_SOURCES:
            return BLOCK_UNIFORM, None
        if code in _WARP_SOURCES:
            return WARP_UNIFORM, op
        if code in _DIVERGENT_SOURCES:
            return DIVERGENT, op
        if code in _REDUCTIONS:
            x = op.args[0]
            return min(self.level(x), WARP_UNIFORM), x
        if code in _SHUFFLES or code == "shuffle_xor":
            x, src = op.args
            if self.level(x) <= WARP_UNIFORM:
                return self.level(x), x
            if code != "shuffle_xor" and self.level(src) <= WARP_UNIFORM:
                return WARP_UNIFORM, op
            return DIVERGENT, op
        if code == "load":
            return self.level(op.args[1]), op
        best, origin = BLOCK_UNIFORM, None
        for a in op.args:
            if isinstance(a, Var) and self.levels.get(a, BLOCK_UNIFORM) > best:
                best, origin = self.levels[a], a
        return best, origin

    # ---- statements

    def block(self, block: list, ctx: Ctx) -> list[_Jump]:
        jumps: list[_Jump] = []
        for stmt in block:
            found = self.stmt(stmt, ctx)
            for j in found:
                if j.ctx.level > ctx.level:
                    where = f"the {j.kind} at line {j.loc.line}"
                    ctx = Ctx(
                        j.ctx.level, f"{where} is taken by some lanes only: {j.ctx.why}", where
                    )
            jumps += found
        return jumps

    def stmt(self, s, ctx: Ctx) -> list[_Jump]:
        if isinstance(s, ir.Op):
            self.op(s, ctx)
        elif isinstance(s, ir.If):
            return self.if_(s, ctx)
        elif isinstance(s, ir.Loop):
            self.loop(s, ctx)
        elif isinstance(s, (ir.Break, ir.Continue)):
            return [_Jump("break" if isinstance(s, ir.Break) else "continue", s.loc, ctx)]
        elif isinstance(s, ir.Suspend):
            self.suspend(s, ctx)
        elif isinstance(s, (ir.Join, ir.Select)):
            self.join(s, ctx)
        else:
            raise RuntimeError(f"uniformity: unknown IR statement {s!r}")
        return []

    def op(self, op: ir.Op, ctx: Ctx) -> None:
        if self.rejecting:
            self.check_op(op, ctx)
        if op.dst is None:
            return
        level, origin = self.op_level(op)
        if ctx.level > level:
            level, origin = ctx.level, ctx
        self.raise_to(op.dst, level, origin, op)

    def check_op(self, op: ir.Op, ctx: Ctx) -> None:
        category = info(op.opcode).category
        name = _op_name(op.opcode)
        if category == COLLECTIVE and ctx.level > WARP_UNIFORM:
            raise CompileError(
                f"{name} must be reached by all lanes of a warp together, but here {ctx.why}",
                op.loc,
                hint=f"call {name} where every lane of the warp runs (before the branch), or "
                "make the condition warp-uniform (e.g. with aw.warp_any / aw.ballot)",
            )
        if category == SYNC and ctx.level > BLOCK_UNIFORM:
            raise CompileError(
                f"{name} must be reached by every warp of the block together, but here {ctx.why}",
                op.loc,
                hint="move it out of the branch or loop: a barrier that some warps skip "
                "deadlocks the block",
            )

    def if_(self, s: ir.If, ctx: Ctx) -> list[_Jump]:
        cond = self.level(s.cond)
        inner = ctx
        if cond > ctx.level:
            where = f"the if at line {s.loc.line}"
            inner = Ctx(cond, f"{where} depends on {self.reason(s.cond)}", where)
        s.level = inner.level
        return self.block(s.then, inner) + self.block(s.else_, inner)

    def loop(self, s: ir.Loop, ctx: Ctx) -> None:
        exits = self.node_ctx.get(s)
        inner = exits if exits is not None and exits.level > ctx.level else ctx
        jumps = self.block(s.header, inner) + self.block(s.body, inner)
        self.block(s.latch, inner)
        where = f"the loop at line {s.loc.line}"
        best = ctx
        if self.level(s.cond) > best.level:
            why = f"{where} has an exit test that depends on {self.reason(s.cond)}"
            best = Ctx(self.level(s.cond), why, where)
        for j in jumps:
            if j.kind == "break" and j.ctx.level > best.level:
                why = f"{where} is left early by some lanes: the break at line {j.loc.line}"
                best = Ctx(j.ctx.level, f"{why}, where {j.ctx.why}", where)
        if exits is None or best.level > exits.level:
            self.node_ctx[s] = best
            self.changed = True
        s.level = max(self.node_ctx[s].level, ctx.level)

    def suspend(self, s: ir.Suspend, ctx: Ctx) -> None:
        where = f"the wait at line {s.loc.line}"
        has_collective = any(
            isinstance(x, ir.Op) and info(x.opcode).category == COLLECTIVE for x in ir.walk(s.poll)
        )
        poll = ctx
        if not has_collective and self.level(s.ready) == DIVERGENT and ctx.level < DIVERGENT:
            why = f"{where} polls per lane: its readiness depends on {self.reason(s.ready)}"
            poll = Ctx(DIVERGENT, why, where)
        elif ctx.level < WARP_UNIFORM:
            poll = Ctx(WARP_UNIFORM, f"{where} is polled by each warp on its own", where)
        self.block(s.poll, poll)
        s.level = max(ctx.level, self.level(s.ready))

    def join(self, s, ctx: Ctx) -> None:
        kind = "aw.join" if isinstance(s, ir.Join) else "aw.select"
        if self.rejecting and ctx.level > WARP_UNIFORM:
            raise CompileError(
                f"{kind} must be awaited by all lanes of a warp together, but here {ctx.why}",
                s.loc,
                hint="await it where every lane of the warp runs",
            )
        inner = ctx
        if ctx.level < WARP_UNIFORM:
            where = f"the {kind[3:]} at line {s.loc.line}"
            inner = Ctx(WARP_UNIFORM, f"{where} runs its branches on separate warps", where)
        for branch in s.branches:
            self.block(branch, inner)
        s.level = ctx.level
        if isinstance(s, ir.Select):
            why = f"the winner of the select (line {s.loc.line})"
            self.raise_to(s.index, max(ctx.level, WARP_UNIFORM), why)


def analyze(kernel: ir.Kernel) -> dict[Var, int]:
    """The level of every variable; sets `.level` on the kernel's control-flow nodes."""
    analysis = _Analysis(kernel)
    analysis.run()
    return analysis.levels


def check(kernel: ir.Kernel) -> dict[Var, int]:
    """`analyze`, then reject collectives, joins and barriers in too divergent control flow."""
    analysis = _Analysis(kernel, checking=True)
    analysis.run()
    return analysis.levels
