"""Helpers shared by the conformance cases: global lane indexing and litmus bookkeeping.

Device helpers are `@aw.func`s (inlined into every kernel that calls them);
host helpers turn raw outcome codes written by litmus kernels into histograms.
"""

import numpy as np

import asyncwarp as aw
from asyncwarp.core.backend import DeviceCaps

from ..case import CaseContext


@aw.func
def global_lane():
    """This lane's index in the whole grid: blocks of num_warps warps of WARP lanes."""
    return aw.block_id() * aw.num_warps() * aw.WARP + aw.warp_id() * aw.WARP + aw.lane()


@aw.func
def global_warp():
    """This warp's index in the whole grid."""
    return aw.block_id() * aw.num_warps() + aw.warp_id()


def lanes(ctx: CaseContext, blocks: int, warps: int = 1) -> int:
    """Number of lanes of a launch of `blocks` x `warps` at the context's warp width."""
    return blocks * warps * ctx.W


def count_outcomes(
    ctx: CaseContext,
    test: str,
    codes: np.ndarray,
    names: dict[int, str],
    forbidden: tuple[int, ...] = (),
) -> None:
    """Record a litmus histogram from per-instance outcome codes.

    Every code must be one of `names` (a code outside it means an instance
    was never written, or the kernel wrote garbage: the case fails). Every
    named outcome is entered, observed or not, so reports show the full space.
    """
    codes = np.asarray(codes).ravel()
    unknown = ~np.isin(codes, list(names))
    if unknown.any():
        first = codes[np.flatnonzero(unknown)[0]]
        ctx.expect(
            False,
            f"litmus {test}: {int(unknown.sum())} of {codes.size} instances "
            f"have no valid outcome (first: {first})",
        )
    for code, name in names.items():
        ctx.count(test, name, int((codes == code).sum()), forbidden=code in forbidden)


def check_permutation(ctx: CaseContext, got: np.ndarray, n: int, what: str) -> None:
    """Expect `got` to hold each of 0..n-1 exactly once (tickets, slots, orders)."""
    ctx.expect_equal(
        np.sort(np.asarray(got).astype(np.int64)), np.arange(n, dtype=np.int64), what=what
    )


def expect_equal_nan(ctx: CaseContext, got: np.ndarray, want: np.ndarray, what: str) -> None:
    """expect_equal where a NaN in `want` must be matched by a NaN (any payload) in `got`."""
    got, want = np.asarray(got), np.asarray(want)
    nan = np.isnan(want)
    ctx.expect(
        got.shape == want.shape and bool(np.isnan(got[nan]).all()),
        f"{what}: {int((~np.isnan(got[nan])).sum())} elements that should be NaN are not",
    )
    ctx.expect_equal(got[~nan], want[~nan], what=what)


def device_caps(ctx: CaseContext) -> DeviceCaps:
    """The DeviceCaps of the context's backend and device (what its runtime probed)."""
    from asyncwarp import backends

    return backends.get(ctx.backend, ctx.device).caps()
