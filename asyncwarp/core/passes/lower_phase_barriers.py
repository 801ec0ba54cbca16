"""Phase barriers (pbar_* ops) as atomics on an arrival counter, for targets without them.

Runs after lower_async and before fold_lanes wherever the emitter has no native phase barrier (every
target but CUDA sm_80+, where they are mbarriers). Each barrier becomes one u32
word counting arrivals since pbar_init; the current phase is `arrivals / count`
(count is a power of two, so the division stays exact when the counter wraps).
An arrival is an atomic add with release order; a test loads the counter with
acquire order (up to TEST_SPINS times while the phase is incomplete, as
mbarrier.try_wait waits a bounded while), and since the adds form a release
sequence, seeing the phase complete synchronises with every arrival of it.
"""

from __future__ import annotations

from dataclasses import replace

from .. import ir
from ..errors import CompileError
from ..types import ArrayType, i32, u32

OPS = ("pbar_init", "pbar_arrive", "pbar_test")
# Loads a pbar_test makes before it answers "not yet" (bounded, so it stays correct where
# warps get no forward progress from each other).
TEST_SPINS = 32


def uses_phase_barriers(kernel: ir.Kernel) -> bool:
    return any(isinstance(s, ir.Op) and s.opcode in OPS for s in kernel.walk())


def lower_phase_barriers(kernel: ir.Kernel, spins: int | None = None) -> ir.Kernel:
    """A new kernel whose pbar_* ops and their u64 barrier arrays are u32 counters.

    spins: loads a test makes before it answers "not yet" (None: TEST_SPINS; 0: one).
    """
    spins = TEST_SPINS if spins is None else spins
    if spins < 0:
        raise ValueError(f"spins must be >= 0, not {spins}")
    counters: dict[ir.Var, ir.Var] = {}

    def counter(arr: ir.Var) -> ir.Var:
        if arr not in counters:
            counters[arr] = ir.Var(f"{arr.name}_arrivals", ArrayType(u32, "shared"))
        return counters[arr]

    barriers = {s.args[0] for s in kernel.walk() if isinstance(s, ir.Op) and s.opcode in OPS}

    def block(stmts: list) -> list:
        out: list = []
        for s in stmts:
            if isinstance(s, ir.Op):
                out += op(s)
            elif isinstance(s, ir.If):
                out.append(replace(s, then=block(s.then), else_=block(s.else_)))
            elif isinstance(s, ir.Loop):
                out.append(
                    replace(s, header=block(s.header), body=block(s.body), latch=block(s.latch))
                )
            elif isinstance(s, (ir.Suspend, ir.Join, ir.Select)):
                raise RuntimeError("lower_phase_barriers runs after lower_async")
            else:
                out.append(s)
        return out

    def op(s: ir.Op) -> list:
        if s.opcode == "shared_alloc" and s.dst in barriers:
            return [ir.Op(counter(s.dst), "shared_alloc", (), dict(s.attrs), s.loc)]
        if s.opcode not in OPS:
            return [s]
        arr, idx = s.args[0], s.args[1]
        count = int(s.attrs.get("count", 0))
        if count < 1 or count & (count - 1):
            raise CompileError(f"{s.opcode} needs a power-of-two count, got {count}", s.loc)
        b = ir.Builder()
        b.loc = s.loc
        words = counter(arr)
        if s.opcode == "pbar_init":
            b.op("store", words, idx, ir.Const(0, u32), order="weak", scope="block")
        elif s.opcode == "pbar_arrive" and s.attrs.get("warp"):
            # the whole warp arrives: its lanes' accesses before lane 0 adds W for all
            W = int(kernel.attrs.get("warp_width", 32))
            b.op("warp_sync")
            lb = b.nested()
            lb.op("atomic", words, idx, ir.Const(W, u32), op="add", order="release", scope="block")
            b.emit(ir.If(b.op("eq", b.op("lane"), ir.Const(0, i32)), lb.block, [], s.loc))
        elif s.opcode == "pbar_arrive":
            b.op("atomic", words, idx, ir.Const(1, u32), op="add", order="release", scope="block")
        else:
            # Like mbarrier.try_wait, a test waits a bounded while for the phase before it
            # answers (`spins` more loads): a hand-off that completes meanwhile costs no
            # trip round the poll loop, its backoff sleeps or a cooperative round's barrier.
            want = s.args[2]
            if want.type != i32:
                want = b.op("cast", want, type=i32)

            def test(tb: ir.Builder) -> None:
                arrivals = tb.op("load", words, idx, order="acquire", scope="block")
                phase = tb.op("shr", arrivals, ir.Const(count.bit_length() - 1, u32))
                parity = tb.op("cast", tb.op("band", phase, ir.Const(1, u32)), type=i32)
                tb.emit(ir.Op(s.dst, "ne", (parity, want), {}, s.loc))

            if spins == 0:
                test(b)
                return b.block
            tries = b.tmp(i32, "pbar_tries")
            b.assign(tries, ir.Const(0, i32))
            hb = b.nested()
            test(hb)
            waiting = hb.op("lnot", s.dst)
            more = hb.op("land", waiting, hb.op("lt", tries, ir.Const(spins, i32)))
            bb = b.nested()
            bb.assign(tries, bb.op("add", tries, ir.Const(1, i32)))
            b.emit(ir.Loop(hb.block, more, bb.block, [], s.loc))
        return b.block

    return ir.Kernel(
        kernel.name, list(kernel.params), block(kernel.body), kernel.loc, dict(kernel.attrs)
    )


__all__ = ["lower_phase_barriers", "uses_phase_barriers"]
