"""Compiles lowered IR into closures and walks it for one subgroup with lane masks.

`compile_program` turns each op into a small closure over register slots (the
op's constants and numpy implementation resolved once) and each If/Loop into a
node of a tree; `run_block` is the generator that executes a tree for one
subgroup and an active-lane mask, yielding to the scheduler in core.interpreter
at scheduling points.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
from numpy import count_nonzero

from . import interpreter_memory as mem
from . import interpreter_ops as sem
from . import ir
from .errors import DeadlockError
from .ops import COLLECTIVE, DECL, MEMORY, info
from .types import ArrayType, ScalarType

# Node kinds of the compiled tree.
RUN, SCHED, IF, LOOP, BREAK, CONTINUE, BARRIER, SLEEP = range(8)
# What a subgroup yields to the scheduler.
YIELD_POINT, YIELD_BARRIER, YIELD_SLEEP = range(3)

SLEEP_CAP_NS = 100_000  # one `sleep` advances the virtual clock by at most this
_LOGICAL_SPECIALS = ("lane", "warp_id", "num_warps")


@dataclass
class Program:
    """A lowered kernel compiled for the interpreter; reusable across launches."""

    kernel: ir.Kernel
    code: tuple
    H: int
    block_size: int
    nslots: int
    param_slots: list
    slot_dtypes: list  # np.dtype for scalar slots, None for arrays
    scalar_slots: list = field(default_factory=list)


class LoopFrame:
    """The lanes of the innermost running loop that took `continue` this iteration."""

    __slots__ = ("continued",)

    def __init__(self):
        self.continued = None


class _Compiler:
    def __init__(self, kernel: ir.Kernel):
        self.kernel = kernel
        attrs = kernel.attrs
        if "subgroup" not in attrs or "block_size" not in attrs:
            raise RuntimeError(
                f"kernel {kernel.name!r} is not lowered (attrs subgroup/block_size missing): "
                "run passes.fold_lanes before the interpreter"
            )
        self.H = int(attrs["subgroup"])
        if self.H < 1 or self.H & (self.H - 1):
            raise RuntimeError(f"subgroup size {self.H} is not a power of two")
        self.slots: dict[ir.Var, int] = {}
        self.dtypes: list = []

    # -- slots and operands

    def slot(self, var: ir.Var) -> int:
        s = self.slots.get(var)
        if s is None:
            s = self.slots[var] = len(self.dtypes)
            self.dtypes.append(var.type.dtype if isinstance(var.type, ScalarType) else None)
        return s

    def getter(self, value):
        if isinstance(value, ir.Const):
            c = value.type.dtype.type(value.value)
            return lambda regs: c
        if isinstance(value, ir.Var):
            return operator.itemgetter(self.slot(value))
        raise RuntimeError(f"bad operand {value!r}")

    # -- tree

    def block(self, stmts: list, in_latch: bool = False) -> tuple:
        nodes: list = []
        run: list = []
        for s in stmts:
            if isinstance(s, ir.Op):
                kind, payload = self.op(s)
                if kind == RUN:
                    run.append(payload)
                    continue
                if run:
                    nodes.append((RUN, tuple(run)))
                    run = []
                nodes.append(payload)
                continue
            if run:
                nodes.append((RUN, tuple(run)))
                run = []
            if isinstance(s, ir.If):
                nodes.append(
                    (
                        IF,
                        self.getter(s.cond),
                        self.block(s.then, in_latch),
                        self.block(s.else_, in_latch),
                    )
                )
            elif isinstance(s, ir.Loop):
                cond = None if s.cond is None else self.getter(s.cond)
                nodes.append(
                    (
                        LOOP,
                        self.block(s.header),
                        cond,
                        self.block(s.body),
                        self.block(s.latch, in_latch=True),
                        s,
                    )
                )
            elif isinstance(s, ir.Break):
                nodes.append((BREAK,))
            elif isinstance(s, ir.Continue):
                if in_latch:
                    raise RuntimeError(f"{s.loc}: `continue` inside a loop latch")
                nodes.append((CONTINUE,))
            else:
                raise RuntimeError(
                    f"{s.loc}: {type(s).__name__} reached the interpreter; "
                    "the async lowering must remove it first"
                )
        if run:
            nodes.append((RUN, tuple(run)))
        return tuple(nodes)

    def op(self, op: ir.Op):
        """(RUN, closure) for plain ops, or (SCHED, node) for scheduling points."""
        opc = op.opcode
        cat = info(opc).category
        if cat == COLLECTIVE or opc in _LOGICAL_SPECIALS:
            raise RuntimeError(
                f"{op.loc}: logical op {opc!r} reached the interpreter; run passes.fold_lanes first"
            )
        if opc in ("barrier", "block_all"):
            pred = self.getter(op.args[0]) if op.args else None
            dst = None if op.dst is None else self.slot(op.dst)
            return SCHED, (BARRIER, pred, dst, op)
        if opc == "sleep":
            return SCHED, (SLEEP, self.getter(op.args[0]), op)
        fn = mem.compile_memory(self, op) if cat in (MEMORY, DECL) else None
        if fn is None:
            fn = self.compute(op)
        if mem.is_scheduling_point(op):
            return SCHED, (SCHED, fn, op)
        return RUN, fn

    def compute(self, op: ir.Op):
        """Pure, special, subgroup and timer ops: compute a vector, write active lanes."""
        opc = op.opcode
        H = self.H
        if op.dst is None:
            if opc == "sg_barrier":
                return lambda sg, mask, full: None
            raise RuntimeError(f"{op.loc}: op {opc!r} without a result")
        dst = self.slot(op.dst)
        if isinstance(op.dst.type, ArrayType):
            if opc != "copy":
                raise RuntimeError(f"{op.loc}: {opc!r} cannot produce an array")
            src = self.getter(op.args[0])

            def copy_array(sg, mask, full):
                sg.regs[dst] = src(sg.regs)

            return copy_array
        dtype = op.dst.type.dtype
        gets = [self.getter(a) for a in op.args]
        impl = _special_or_subgroup(opc, op.attrs, H, gets)
        if impl is None:
            arg_types = tuple(a.type for a in op.args)
            impl = _lift(sem.make_pure(opc, arg_types, op.dst.type), gets)

        def run_op(sg, mask, full):
            res = impl(sg, mask)
            regs = sg.regs
            if res.dtype is not dtype and res.dtype != dtype:
                res = res.astype(dtype)
            if full:
                regs[dst] = res if res.ndim else np.full(H, res, dtype=dtype)
            else:
                regs[dst] = np.where(mask, res, regs[dst])

        return run_op


def _lift(fn, gets):
    """Adapt an operand-vector function to the (sg, mask) calling convention.

    Results are arrays, or numpy scalars when every operand is a constant.
    """
    if len(gets) == 1:
        (g0,) = gets
        return lambda sg, mask: fn(g0(sg.regs))
    if len(gets) == 2:
        g0, g1 = gets
        return lambda sg, mask: fn(g0(sg.regs), g1(sg.regs))
    if len(gets) == 3:
        g0, g1, g2 = gets
        return lambda sg, mask: fn(g0(sg.regs), g1(sg.regs), g2(sg.regs))
    raise RuntimeError(f"unexpected operand count {len(gets)}")


def _vec(value, H: int) -> np.ndarray:
    return value if np.ndim(value) else np.full(H, value)


def _special_or_subgroup(opc: str, attrs: dict, H: int, gets):
    """Implementations of ops that read the subgroup's state rather than only operands."""
    if opc == "sg_lane":
        return lambda sg, mask: sg.lane
    if opc == "sg_id":
        return lambda sg, mask: np.int32(sg.sg_id)
    if opc == "block_id":
        return lambda sg, mask: np.int32(sg.block.index)
    if opc == "num_blocks":
        return lambda sg, mask: np.int32(sg.machine.grid)
    if opc == "timer":
        return lambda sg, mask: np.uint64(sg.machine.clock())
    if not opc.startswith("sg_"):
        return None
    cluster = int(attrs.get("cluster", H))
    if cluster < 1 or cluster > H or cluster & (cluster - 1):
        raise RuntimeError(f"{opc}: cluster {cluster} must be a power of two <= H={H}")
    g0 = gets[0]
    if opc == "sg_reduce":
        kind = attrs.get("op", "add")
        return lambda sg, mask: sem.sg_reduce(_vec(g0(sg.regs), H), mask, kind, cluster)
    if opc == "sg_scan":
        kind, inclusive = attrs.get("op", "add"), bool(attrs.get("inclusive", True))
        return lambda sg, mask: sem.sg_scan(_vec(g0(sg.regs), H), mask, kind, inclusive, cluster)
    if opc == "sg_shuffle":
        g1 = gets[1]
        return lambda sg, mask: sem.sg_shuffle(_vec(g0(sg.regs), H), g1(sg.regs), H)
    table = {"sg_ballot": sem.sg_ballot, "sg_any": sem.sg_any, "sg_all": sem.sg_all}
    if opc in table:
        fn = table[opc]
        return lambda sg, mask: fn(_vec(g0(sg.regs), H), mask, cluster)
    raise RuntimeError(f"the interpreter has no implementation of opcode {opc!r}")


def compile_program(kernel: ir.Kernel) -> Program:
    """Compile a lowered kernel (attrs subgroup and block_size set) for `interpreter.run`."""
    c = _Compiler(kernel)
    param_slots = [c.slot(p) for p in kernel.params]
    code = c.block(kernel.body)
    scalar_slots = [i for i, d in enumerate(c.dtypes) if d is not None]
    return Program(
        kernel,
        code,
        c.H,
        int(kernel.attrs["block_size"]),
        len(c.dtypes),
        param_slots,
        c.dtypes,
        scalar_slots,
    )


# ------------------------------------------------------------------ the walker


def run_block(code: tuple, sg, mask: np.ndarray):
    """Execute `code` for the lanes in `mask`; returns the lanes that fall through (or None)."""
    machine = sg.machine
    H = mask.shape[0]
    full = count_nonzero(mask) == H
    for node in code:
        kind = node[0]
        if kind == RUN:
            fns = node[1]
            for fn in fns:
                fn(sg, mask, full)
            machine.steps += len(fns)
        elif kind == SCHED:
            node[1](sg, mask, full)
            machine.steps += 1
            sg.where = node[2]
            yield YIELD_POINT
        elif kind == IF:
            mask = yield from _run_if(node, sg, mask)
            if mask is None:
                return None
            full = count_nonzero(mask) == H
        elif kind == LOOP:
            yield from _run_loop(node, sg, mask)
        elif kind == BREAK:
            return None
        elif kind == CONTINUE:
            frame = sg.loops[-1]
            frame.continued = mask if frame.continued is None else frame.continued | mask
            return None
        elif kind == BARRIER:
            yield from _run_barrier(node, sg, mask)
        else:  # SLEEP
            _sleep(node, sg, mask)
            yield YIELD_SLEEP
    return mask


def _run_if(node, sg, mask):
    cond = node[1](sg.regs)
    if np.ndim(cond) == 0:
        taken = node[2] if cond else node[3]
        return (yield from run_block(taken, sg, mask))
    then_mask = mask & cond
    else_mask = mask & ~cond
    then_out = else_out = None
    if count_nonzero(then_mask):
        then_out = yield from run_block(node[2], sg, then_mask)
    if count_nonzero(else_mask):
        else_out = yield from run_block(node[3], sg, else_mask)
    if then_out is None:
        return else_out
    if else_out is None:
        return then_out
    return then_out | else_out


def _run_loop(node, sg, entry: np.ndarray):
    _, header, cond, body, latch, stmt = node
    frame = LoopFrame()
    sg.loops.append(frame)
    active = entry
    while True:
        frame.continued = None
        m = yield from run_block(header, sg, active)
        if m is not None and cond is not None:
            m = m & cond(sg.regs)
            if not count_nonzero(m):
                m = None
        if m is not None:
            m = yield from run_block(body, sg, m)
        if frame.continued is not None:
            m = frame.continued if m is None else m | frame.continued
        if m is None:
            break
        m = yield from run_block(latch, sg, m)
        if m is None:
            break
        active = m
        sg.where = stmt
        yield YIELD_POINT  # every back-edge is a scheduling point
    sg.loops.pop()
    # Break/Continue reach the innermost loop only, so every lane that entered leaves here.
    return entry


def _run_barrier(node, sg, mask):
    _, pred, dst, op = node
    sg.machine.steps += 1
    sg.where = op
    if not np.array_equal(mask, sg.live_mask):
        lanes = np.flatnonzero(sg.live_mask & ~mask).tolist()
        raise DeadlockError(
            f"kernel {sg.machine.name!r}: {op.loc}: {op.opcode} reached by part of subgroup "
            f"{sg.sg_id} of block {sg.block.index} (invocations {lanes} are not here): "
            "a barrier must be reached by every invocation of the block",
            [sg.describe()],
        )
    if pred is not None:
        p = pred(sg.regs)
        sg.barrier_pred = bool(np.all(p | ~mask)) if np.ndim(p) else bool(p)
    else:
        sg.barrier_pred = True
    yield YIELD_BARRIER
    if dst is not None:
        sg.regs[dst] = np.full(sg.lane.shape[0], sg.barrier_result, dtype=np.bool_)


def _sleep(node, sg, mask) -> None:
    _, ns_get, op = node
    machine = sg.machine
    machine.steps += 1
    ns = np.asarray(ns_get(sg.regs))
    if ns.ndim:
        ns = ns[mask]
    longest = int(ns.max()) if ns.size else 0
    machine.sleep_ns += min(max(longest, 0), SLEEP_CAP_NS)
    sg.where = op
    sg.fingerprint = (id(op), mask.tobytes(), sg.registers_digest(), machine.mem_version)
