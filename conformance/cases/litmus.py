"""Memory-model litmus tests: message passing, store buffering, load buffering, coherence.

Each lane of each iteration is one instance on its own memory locations, so
no instance needs resetting or waiting: the two threads of a test are two
warps of a block (block scope) or two blocks (device scope), and they run
through the instances concurrently. Even lanes of the second thread meet the
first thread on the same instance at the same time (where weak behaviours
show); odd lanes walk the instances backwards, so early and late observations
both occur. Outcomes are counted into histograms;
only outcomes the model forbids are marked forbidden (relaxed variants mark
none: every outcome is allowed there, and what a device shows is a finding).
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import count_outcomes

MP_OUTCOMES = {0: "flag=0 data=0", 1: "flag=0 data=1", 2: "flag=1 data=0", 3: "flag=1 data=1"}
PAIR_OUTCOMES = {0: "r0=0 r1=0", 1: "r0=0 r1=1", 2: "r0=1 r1=0", 3: "r0=1 r1=1"}
CORR_OUTCOMES = {3 * a + b: f"r0={a} r1={b}" for a in range(3) for b in range(3)}
ITERATIONS = 200  # per launch on a device; the interpreter runs ctx.iterations() of them


@aw.func
def instance(role_block: aw.i32, it: aw.i32, iters: aw.i32, second: aw.bool_):
    """The memory slot of this lane at iteration `it` (see the module docstring)."""
    k = it
    if second and aw.lane() % 2 == 1:
        k = iters - 1 - it
    return (role_block * iters + k) * aw.WARP + aw.lane()


# ------------------------------------------------------------------ message passing


@aw.kernel
def mp_block_relacq(
    data: aw.Array[aw.i32], flag: aw.Array[aw.i32], out: aw.Array[aw.i32], iters: aw.i32
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            data[k] = 1
            aw.store(flag, k, 1, order="release", scope="block")
        else:
            k = instance(b, it, iters, True)
            f = aw.load(flag, k, order="acquire", scope="block")
            d = data[k]
            out[k] = f * 2 + d


@aw.kernel
def mp_block_relaxed(
    data: aw.Array[aw.i32], flag: aw.Array[aw.i32], out: aw.Array[aw.i32], iters: aw.i32
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            aw.store(data, k, 1, order="relaxed", scope="block")
            aw.store(flag, k, 1, order="relaxed", scope="block")
        else:
            k = instance(b, it, iters, True)
            f = aw.load(flag, k, order="relaxed", scope="block")
            d = aw.load(data, k, order="relaxed", scope="block")
            out[k] = f * 2 + d


@aw.kernel
def mp_device_relacq(
    data: aw.Array[aw.i32], flag: aw.Array[aw.i32], out: aw.Array[aw.i32], iters: aw.i32
):
    pair = aw.block_id() // 2
    for it in range(iters):
        if aw.block_id() % 2 == 0:
            k = instance(pair, it, iters, False)
            data[k] = 1
            aw.store(flag, k, 1, order="release", scope="device")
        else:
            k = instance(pair, it, iters, True)
            f = aw.load(flag, k, order="acquire", scope="device")
            d = data[k]
            out[k] = f * 2 + d


@aw.kernel
def mp_device_fences(
    data: aw.Array[aw.i32], flag: aw.Array[aw.i32], out: aw.Array[aw.i32], iters: aw.i32
):
    pair = aw.block_id() // 2
    for it in range(iters):
        if aw.block_id() % 2 == 0:
            k = instance(pair, it, iters, False)
            aw.store(data, k, 1, order="relaxed", scope="device")
            aw.fence(scope="device")
            aw.store(flag, k, 1, order="relaxed", scope="device")
        else:
            k = instance(pair, it, iters, True)
            f = aw.load(flag, k, order="relaxed", scope="device")
            aw.fence(scope="device")
            d = aw.load(data, k, order="relaxed", scope="device")
            out[k] = f * 2 + d


def _message_passing(
    ctx: CaseContext, kern, test: str, device_scope: bool, stale_forbidden: bool
) -> None:
    iters = ctx.iterations(ITERATIONS)
    pairs = 4 if device_scope else 2  # instances run in parallel: pairs of blocks or blocks
    n = pairs * iters * ctx.W
    data, flag = np.zeros(n, np.int32), np.zeros(n, np.int32)
    out = ctx.poisoned(n, np.int32)
    if device_scope:
        ctx.run(kern, 2 * pairs, data, flag, out, iters)
    else:
        ctx.run(kern, pairs, data, flag, out, iters, warps=2)
    ctx.expect(bool((data == 1).all() and (flag == 1).all()), f"{test}: writer incomplete")
    # MP: seeing the flag but not the data is forbidden once release/acquire (or
    # fence-fence) synchronisation at a scope covering both threads orders them
    count_outcomes(ctx, test, out, MP_OUTCOMES, forbidden=(2,) if stale_forbidden else ())


@case("litmus")
def mp_relaxed_block(ctx: CaseContext) -> None:
    """message passing, relaxed stores/loads between two warps: every outcome allowed"""
    _message_passing(ctx, mp_block_relaxed, "MP relaxed (block)", False, False)


@case("litmus")
def mp_release_acquire_block(ctx: CaseContext) -> None:
    """message passing, release/acquire at block scope between warps: stale data forbidden"""
    _message_passing(ctx, mp_block_relacq, "MP rel/acq (block)", False, True)


@case("litmus")
def mp_release_acquire_device(ctx: CaseContext) -> None:
    """message passing, release/acquire at device scope between blocks: stale data forbidden"""
    _message_passing(ctx, mp_device_relacq, "MP rel/acq (device)", True, True)


@case("litmus")
def mp_fences_device(ctx: CaseContext) -> None:
    """message passing with relaxed accesses and device-scope fences: stale data forbidden"""
    _message_passing(ctx, mp_device_fences, "MP fences (device)", True, True)


# ------------------------------------------------------------------ store and load buffering


@aw.kernel
def sb_relaxed(
    x: aw.Array[aw.i32],
    y: aw.Array[aw.i32],
    r0: aw.Array[aw.i32],
    r1: aw.Array[aw.i32],
    iters: aw.i32,
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            aw.store(x, k, 1, order="relaxed", scope="block")
            r0[k] = aw.load(y, k, order="relaxed", scope="block")
        else:
            k = instance(b, it, iters, True)
            aw.store(y, k, 1, order="relaxed", scope="block")
            r1[k] = aw.load(x, k, order="relaxed", scope="block")


@aw.kernel
def sb_seq_cst(
    x: aw.Array[aw.i32],
    y: aw.Array[aw.i32],
    r0: aw.Array[aw.i32],
    r1: aw.Array[aw.i32],
    iters: aw.i32,
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            aw.store(x, k, 1, order="seq_cst", scope="block")
            r0[k] = aw.load(y, k, order="seq_cst", scope="block")
        else:
            k = instance(b, it, iters, True)
            aw.store(y, k, 1, order="seq_cst", scope="block")
            r1[k] = aw.load(x, k, order="seq_cst", scope="block")


@aw.kernel
def lb_relaxed(
    x: aw.Array[aw.i32],
    y: aw.Array[aw.i32],
    r0: aw.Array[aw.i32],
    r1: aw.Array[aw.i32],
    iters: aw.i32,
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            r0[k] = aw.load(x, k, order="relaxed", scope="block")
            aw.store(y, k, 1, order="relaxed", scope="block")
        else:
            k = instance(b, it, iters, True)
            r1[k] = aw.load(y, k, order="relaxed", scope="block")
            aw.store(x, k, 1, order="relaxed", scope="block")


@aw.kernel
def lb_acq_rel(
    x: aw.Array[aw.i32],
    y: aw.Array[aw.i32],
    r0: aw.Array[aw.i32],
    r1: aw.Array[aw.i32],
    iters: aw.i32,
):
    b = aw.block_id()
    for it in range(iters):
        if aw.warp_id() == 0:
            k = instance(b, it, iters, False)
            r0[k] = aw.load(x, k, order="acquire", scope="block")
            aw.store(y, k, 1, order="release", scope="block")
        else:
            k = instance(b, it, iters, True)
            r1[k] = aw.load(y, k, order="acquire", scope="block")
            aw.store(x, k, 1, order="release", scope="block")


def _two_thread(ctx: CaseContext, kern, test: str, forbidden: tuple[int, ...]) -> None:
    iters = ctx.iterations(ITERATIONS)
    blocks = 2
    n = blocks * iters * ctx.W
    x, y = np.zeros(n, np.int32), np.zeros(n, np.int32)
    r0, r1 = ctx.poisoned(n, np.int32), ctx.poisoned(n, np.int32)
    ctx.run(kern, blocks, x, y, r0, r1, iters, warps=2)
    ctx.expect(bool((x == 1).all() and (y == 1).all()), f"{test}: a store is missing")
    ctx.expect(
        bool(np.isin(r0, (0, 1)).all() and np.isin(r1, (0, 1)).all()),
        f"{test}: a load returned neither the initial nor the stored value",
    )
    count_outcomes(ctx, test, r0 * 2 + r1, PAIR_OUTCOMES, forbidden=forbidden)


@case("litmus")
def sb_relaxed_block(ctx: CaseContext) -> None:
    """store buffering, relaxed: r0=r1=0 is allowed (and real hardware shows it)"""
    _two_thread(ctx, sb_relaxed, "SB relaxed (block)", ())


@case("litmus")
def sb_seq_cst_block(ctx: CaseContext) -> None:
    """store buffering, seq_cst stores and loads: r0=r1=0 is forbidden (not on Vulkan)"""
    if ctx.backend == "vulkan":
        # The Vulkan memory model has no sequentially consistent order: it treats
        # SequentiallyConsistent semantics as AcquireRelease, under which SB's r0=r1=0
        # is allowed. The outcomes are still counted.
        ctx.note("seq_cst", "acq_rel on Vulkan (the memory model has no SC order)")
        _two_thread(ctx, sb_seq_cst, "SB seq_cst=acq_rel (block)", ())
    else:
        _two_thread(ctx, sb_seq_cst, "SB seq_cst (block)", (0,))


@case("litmus")
def lb_relaxed_block(ctx: CaseContext) -> None:
    """load buffering, relaxed: r0=r1=1 is allowed by the model"""
    _two_thread(ctx, lb_relaxed, "LB relaxed (block)", ())


@case("litmus")
def lb_acquire_release_block(ctx: CaseContext) -> None:
    """load buffering, acquire loads and release stores: r0=r1=1 is forbidden"""
    _two_thread(ctx, lb_acq_rel, "LB acq/rel (block)", (3,))


# ------------------------------------------------------------------ coherence


@aw.kernel
def corr(x: aw.Array[aw.i32], r0: aw.Array[aw.i32], r1: aw.Array[aw.i32], iters: aw.i32):
    pair = aw.block_id() // 2
    for it in range(iters):
        if aw.block_id() % 2 == 0:
            k = instance(pair, it, iters, False)
            aw.store(x, k, 1, order="relaxed", scope="device")
            aw.store(x, k, 2, order="relaxed", scope="device")
        else:
            k = instance(pair, it, iters, True)
            r0[k] = aw.load(x, k, order="relaxed", scope="device")
            r1[k] = aw.load(x, k, order="relaxed", scope="device")


@case("litmus")
def corr_device(ctx: CaseContext) -> None:
    """coherence read-read: two reads of one location never go back in its write order"""
    iters = ctx.iterations(ITERATIONS)
    pairs = 4
    n = pairs * iters * ctx.W
    x = np.zeros(n, np.int32)
    r0, r1 = ctx.poisoned(n, np.int32), ctx.poisoned(n, np.int32)
    ctx.run(corr, 2 * pairs, x, r0, r1, iters)
    ctx.expect(bool((x == 2).all()), "CoRR: the last write did not stick (coherence of writes)")
    ctx.expect(
        bool(np.isin(r0, (0, 1, 2)).all() and np.isin(r1, (0, 1, 2)).all()),
        "CoRR: a load returned a value never written",
    )
    # per location, writes are ordered 0 -> 1 -> 2; a later read may not see an older one
    stale = tuple(3 * a + b for a in range(3) for b in range(3) if b < a)
    count_outcomes(ctx, "CoRR (device)", r0 * 3 + r1, CORR_OUTCOMES, forbidden=stale)
