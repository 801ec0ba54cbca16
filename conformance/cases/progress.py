"""Forward-progress probes: does a lane (warp, block) that spins let another one run?

Two parties play a three-step ping-pong on flags: A sets f0, waits for f1, sets
f2; B waits for f0, sets f1, waits for f2. If the device runs one party to
completion before the other (no forward progress between them) at least one
wait fails whichever party goes first; only concurrent progress lets all
three waits succeed. Every wait is a bounded spin (an iteration budget), so a
missing guarantee is a finding (`ctx.note`), never a hang. A probe fails only
when its own results are inconsistent.
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import device_caps

SPIN_BUDGET = 20000  # iterations of a spin before a wait gives up (scaled on the interpreter)


@aw.func
def spin_until_set(flags, k, budget):
    """Spin (bounded) until flags[k] != 0: 1 if it was seen set, 0 if the budget ran out."""
    n = 0
    while aw.load(flags, k, order="acquire", scope="device") == 0 and n < budget:
        n += 1
    return aw.i32(n < budget)


@aw.func
def party_a(flags, ok, base, budget):
    aw.store(flags, base, 1, order="release", scope="device")
    ok[base] = spin_until_set(flags, base + 1, budget)
    aw.store(flags, base + 2, 1, order="release", scope="device")


@aw.func
def party_b(flags, ok, base, budget):
    ok[base + 1] = spin_until_set(flags, base, budget)
    aw.store(flags, base + 1, 1, order="release", scope="device")
    ok[base + 2] = spin_until_set(flags, base + 2, budget)


@aw.kernel
def lane_probe(flags: aw.Array[aw.i32], ok: aw.Array[aw.i32], budget: aw.i32):
    # lanes 0 and 1 of warp 0 of block 0 play; they sit in different arms of one branch
    if aw.block_id() == 0 and aw.warp_id() == 0:
        if aw.lane() == 0:
            party_a(flags, ok, 0, budget)
        elif aw.lane() == 1:
            party_b(flags, ok, 0, budget)


@aw.kernel
def warp_probe(flags: aw.Array[aw.i32], ok: aw.Array[aw.i32], budget: aw.i32):
    # lane 0 of warps 0 and 1 of one block play; the rest of each warp idles
    if aw.lane() == 0:
        if aw.warp_id() == 0:
            party_a(flags, ok, 0, budget)
        else:
            party_b(flags, ok, 0, budget)


@aw.kernel
def block_probe(flags: aw.Array[aw.i32], ok: aw.Array[aw.i32], budget: aw.i32):
    # lane 0 of blocks 0 and 1 play through global memory
    if aw.lane() == 0:
        if aw.block_id() == 0:
            party_a(flags, ok, 0, budget)
        else:
            party_b(flags, ok, 0, budget)


@aw.kernel
def shared_warp_probe(ok: aw.Array[aw.i32], budget: aw.i32):
    flags = aw.shared(aw.i32, 4)
    if aw.warp_id() == 0 and aw.lane() < 4:
        flags[aw.lane()] = 0
    aw.barrier()
    if aw.lane() == 0:
        if aw.warp_id() == 0:
            aw.store(flags, 0, 1, order="release", scope="block")
            ok[0] = spin_shared(flags, 1, budget)
            aw.store(flags, 2, 1, order="release", scope="block")
        else:
            ok[1] = spin_shared(flags, 0, budget)
            aw.store(flags, 1, 1, order="release", scope="block")
            ok[2] = spin_shared(flags, 2, budget)
    aw.barrier()
    if aw.warp_id() == 0 and aw.lane() < 3:
        ok[3 + aw.lane()] = flags[aw.lane()]


@aw.func
def spin_shared(flags, k, budget):
    n = 0
    while aw.load(flags, k, order="acquire", scope="block") == 0 and n < budget:
        n += 1
    return aw.i32(n < budget)


def _judge(ctx: CaseContext, scope: str, ok: np.ndarray, flags_set: np.ndarray) -> None:
    """Check the probe's own consistency, then record what it found."""
    ctx.expect(bool(np.isin(ok, (0, 1)).all()), f"{scope} probe: waits not all recorded: {ok}")
    ctx.expect(
        bool((flags_set == 1).all()),
        f"{scope} probe: a party did not finish its steps (flags {flags_set})",
    )
    found = bool(ok.all())
    ctx.note(scope, found)
    claimed = device_caps(ctx).progress.get(scope)
    ctx.note(f"{scope}_claimed", bool(claimed))
    if claimed and not found:
        ctx.note(
            f"{scope}_mismatch",
            f"the device claims this guarantee but the probe saw waits {ok.tolist()} fail",
        )


def _budget(ctx: CaseContext) -> int:
    return ctx.iterations(SPIN_BUDGET)


@case("progress")
def lanes_of_a_warp(ctx: CaseContext) -> None:
    """probe: a lane spinning in one arm of a branch, its partner lane in the other"""
    flags, ok = np.zeros(3, np.int32), ctx.poisoned(3, np.int32)
    ctx.run(lane_probe, 1, flags, ok, _budget(ctx))
    _judge(ctx, "lane", ok, flags)


@case("progress")
def warps_of_a_block(ctx: CaseContext) -> None:
    """probe: two warps of one block ping-pong through global memory"""
    flags, ok = np.zeros(3, np.int32), ctx.poisoned(3, np.int32)
    ctx.run(warp_probe, 1, flags, ok, _budget(ctx), warps=2)
    _judge(ctx, "warp", ok, flags)


@case("progress")
def warps_through_block_memory(ctx: CaseContext) -> None:
    """probe: two warps of one block ping-pong through block memory (block scope)"""
    ok = ctx.poisoned(6, np.int32)
    ctx.run(shared_warp_probe, 1, ok, _budget(ctx), warps=2)
    ctx.expect(bool(np.isin(ok[:3], (0, 1)).all()), f"warp probe: waits not recorded: {ok}")
    ctx.expect(bool((ok[3:] == 1).all()), f"warp probe: a party did not finish: {ok[3:]}")
    found = bool(ok[:3].all())
    ctx.note("warp_block_memory", found)


@case("progress")
def blocks_of_a_grid(ctx: CaseContext) -> None:
    """probe: two blocks ping-pong through global memory (needs co-resident blocks)"""
    flags, ok = np.zeros(3, np.int32), ctx.poisoned(3, np.int32)
    ctx.run(block_probe, 2, flags, ok, _budget(ctx))
    _judge(ctx, "block", ok, flags)
