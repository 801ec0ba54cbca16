"""fold_lanes: one logical kernel folded for every (W, H) gives the logical results.

Kernels are built by hand in logical IR, folded for W in {32, 64} and H in
{4, ..., 128}, run on the reference interpreter and compared with numpy
references computed from the logical semantics (warps of W lanes).
"""

from __future__ import annotations

import numpy as np
import pytest

from asyncwarp.core import interpreter, ir
from asyncwarp.core.ops import COLLECTIVE, info
from asyncwarp.core.passes.fold_lanes import fold_lanes
from asyncwarp.core.types import ArrayType, bool_, f32, i32, u32, u64
from asyncwarp.core.verify import verify

SUBGROUPS = [4, 8, 16, 32, 64, 128]
WIDTHS = [32, 64]


def C(value, t=i32) -> ir.Const:
    return ir.Const(value, t)


def arr(name, t, space="global") -> ir.Var:
    return ir.Var(name, ArrayType(t, space))


def load(b: ir.Builder, array: ir.Var, index, order="weak", scope=None) -> ir.Var:
    scope = scope or ("block" if array.type.space == "shared" else "device")
    return b.op("load", array, index, order=order, scope=scope)


def store(b: ir.Builder, array: ir.Var, index, value, order="weak", scope=None) -> None:
    scope = scope or ("block" if array.type.space == "shared" else "device")
    b.op("store", array, index, value, order=order, scope=scope)


def poison(n, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    if dt.kind == "b":
        return np.zeros(n, dtype=dt)
    return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)


def logical_index(b: ir.Builder, W: int):
    """(lane, warp, (block * warps + warp) * W + lane) in logical IR."""
    lane, warp = b.op("lane"), b.op("warp_id")
    w = b.op("add", b.op("mul", b.op("block_id"), b.op("num_warps")), warp)
    return lane, warp, b.op("add", b.op("mul", w, C(W)), lane)


def fold_and_run(kernel: ir.Kernel, H: int, warps: int, grid: int, args: list, levels=None):
    verify(kernel, "logical")
    folded = fold_lanes(kernel, H, warps, {} if levels is None else levels)
    verify(folded, "lowered")
    for s in folded.walk():
        if isinstance(s, ir.Op):
            assert info(s.opcode).category != COLLECTIVE, s.opcode
            assert s.opcode not in ("lane", "warp_id", "num_warps"), s.opcode
    interpreter.run(folded, grid, args, scheduler="random", seed=H)
    return folded


# ---------------------------------------------------------------- collectives in uniform code


def collectives_kernel(W: int) -> tuple[ir.Kernel, list]:
    a, fa = arr("a", i32), arr("fa", f32)
    k_src, m_xor = ir.Var("k_src", i32), ir.Var("m_xor", u32)
    names = [
        "sum",
        "min",
        "max",
        "scan",
        "shf",
        "shu",
        "shc",
        "bcast",
        "xor",
        "xord",
        "xorc",
        "any",
        "all",
        "usum",
        "uscan",
        "ushf",
        "fmin",
    ]
    outs = {n: arr(n, f32 if n == "fmin" else i32) for n in names}
    outs["bal"] = arr("bal", u64)
    b = ir.Builder()
    lane, warp, g = logical_index(b, W)
    x = load(b, a, g)
    res = {
        "sum": b.op("warp_sum", x),
        "min": b.op("warp_min", x),
        "max": b.op("warp_max", x),
        "scan": b.op("warp_prefix_sum", x),
        "shf": b.op("shuffle", x, b.op("add", b.op("mul", lane, C(5)), C(3))),
        "shu": b.op("shuffle", x, k_src),
        "shc": b.op("shuffle", x, C(-W - 2)),
        "bcast": b.op("shuffle", x, warp),
        "xor": b.op("shuffle_xor", x, m_xor),
        "xord": b.op("shuffle_xor", x, b.op("mul", b.op("band", lane, C(3)), C(9))),
        "xorc": b.op("shuffle_xor", x, C(W + 3)),
        "any": b.op("cast", b.op("warp_any", b.op("gt", x, C(90))), type=i32),
        "all": b.op("cast", b.op("warp_all", b.op("gt", x, C(-95))), type=i32),
        "usum": b.op("warp_sum", b.op("add", warp, C(3))),
        "uscan": b.op("warp_prefix_sum", b.op("add", warp, C(2))),
        "ushf": b.op("shuffle", b.op("mul", warp, C(11)), lane),
        "fmin": b.op("warp_min", load(b, fa, g)),
        "bal": b.op("ballot", b.op("gt", x, C(0))),
    }
    b.op("warp_sync")
    for name, v in res.items():
        store(b, outs[name], g, v)
    kern = ir.Kernel(
        "collectives", [a, fa, k_src, m_xor, *outs.values()], b.block, attrs={"warp_width": W}
    )
    return kern, list(outs)


def collectives_reference(x: np.ndarray, fx: np.ndarray, k_src: int, m: int, W: int) -> dict:
    xw = x.reshape(-1, W).astype(np.int64)
    lane = np.arange(W)
    warp = np.arange(xw.shape[0]) % (xw.shape[0] // 2)  # grid of 2 blocks
    rows = np.arange(xw.shape[0])[:, None]
    rep = lambda v: np.repeat(np.asarray(v)[:, None], W, axis=1)  # noqa: E731
    ballot = [sum(1 << j for j in range(W) if row[j] > 0) for row in xw]
    fmin = np.fmin.reduce(fx.reshape(-1, W), axis=1)
    ref = {
        "sum": rep(xw.sum(1)),
        "min": rep(xw.min(1)),
        "max": rep(xw.max(1)),
        "scan": np.cumsum(xw, 1),
        "shf": xw[rows, (lane * 5 + 3) % W],
        "shu": rep(xw[:, k_src % W]),
        "shc": rep(xw[:, W - 2]),
        "bcast": xw[rows, rep(warp % W)],
        "xor": xw[rows, (lane ^ m) % W],
        "xord": xw[rows, lane ^ ((lane & 3) * 9) % W],
        "xorc": xw[rows, lane ^ 3],
        "any": rep((xw > 90).any(1)),
        "all": rep((xw > -95).all(1)),
        "usum": rep((warp + 3) * W),
        "uscan": (rep(warp) + 2) * (lane + 1),
        "ushf": rep(warp * 11),
        "fmin": rep(fmin),
        "bal": rep(np.array(ballot, dtype=np.uint64)),
    }
    return {k: v.reshape(-1) for k, v in ref.items()}


@pytest.mark.parametrize("H", SUBGROUPS)
@pytest.mark.parametrize("warp_width", WIDTHS)
def test_collectives_fold_to_the_logical_results(warp_width, H):
    W, warps, grid = warp_width, 3, 2
    n = grid * warps * W
    rng = np.random.default_rng(W * 1000 + H)
    x = rng.integers(-100, 100, n).astype(np.int32)
    fx = rng.standard_normal(n).astype(np.float32)
    fx[::7] = np.nan  # warp_min is minNum: NaN lanes are ignored
    k_src, m = -3, int(rng.integers(W // 2, W))  # a mask with bits above H crosses copies
    kern, names = collectives_kernel(W)
    outs = [
        poison(n, np.uint64 if nm == "bal" else (np.float32 if nm == "fmin" else np.int32))
        for nm in names
    ]
    fold_and_run(kern, H, warps, grid, [x, fx, np.int32(k_src), np.uint32(m), *outs])
    ref = collectives_reference(x, fx, k_src, m, W)
    for name, got in zip(names, outs, strict=True):
        np.testing.assert_array_equal(got, ref[name].astype(got.dtype), err_msg=name)


# ---------------------------------------------------------------- divergent control flow


def control_kernel(W: int, warps: int) -> ir.Kernel:
    a, out, counter, tickets = arr("a", i32), arr("out", i32), arr("counter", i32), arr("tk", i32)
    n = ir.Var("n", i32)
    b = ir.Builder()
    lane, warp, g = logical_index(b, W)
    x = load(b, a, g)
    y, acc, s, j, i = (ir.Var(v, i32) for v in ("y", "acc", "s", "j", "i"))
    # if x > 0: y = x * 2 if x & 1 else x + 5   else: y = -x
    then, t2, e2, else_ = b.nested(), b.nested(), b.nested(), b.nested()
    t2.assign(y, t2.op("mul", x, C(2)))
    e2.assign(y, e2.op("add", x, C(5)))
    then.emit(ir.If(then.op("ne", then.op("band", x, C(1)), C(0)), t2.block, e2.block))
    else_.assign(y, else_.op("neg", x))
    b.emit(ir.If(b.op("gt", x, C(0)), then.block, else_.block))
    # divergent loop: for j in range(x & 7): if j == 2: continue; if j*j > x & 31: break; acc += j
    b.assign(acc, C(0))
    b.assign(j, C(0))
    head, body, latch = b.nested(), b.nested(), b.nested()
    go = head.op("lt", j, head.op("band", x, C(7)))
    cont, brk = body.nested(), body.nested()
    cont.emit(ir.Continue())
    body.emit(ir.If(body.op("eq", j, C(2)), cont.block, []))
    brk.emit(ir.Break())
    body.emit(ir.If(body.op("gt", body.op("mul", j, j), body.op("band", x, C(31))), brk.block, []))
    body.assign(acc, body.op("add", acc, j))
    latch.assign(j, latch.op("add", j, C(1)))
    b.emit(ir.Loop(head.block, go, body.block, latch.block))
    # uniform loop with collectives and divergent continues after them: for i in range(n):
    #   s += warp_sum(x + i); if (x + i) & 1: {if (x + i) & 2: continue; s += 3}; s += x * i
    b.assign(s, C(0))
    b.assign(i, C(0))
    head, body, latch = b.nested(), b.nested(), b.nested()
    go = head.op("lt", i, n)
    xi = body.op("add", x, i)
    body.assign(s, body.op("add", s, body.op("warp_sum", xi)))
    odd, cont = body.nested(), body.nested()
    cont.emit(ir.Continue())
    odd.emit(ir.If(odd.op("ne", odd.op("band", xi, C(2)), C(0)), cont.block, []))
    odd.assign(s, odd.op("add", s, C(3)))
    body.emit(ir.If(body.op("ne", body.op("band", xi, C(1)), C(0)), odd.block, []))
    body.assign(s, body.op("add", s, body.op("mul", x, i)))
    latch.assign(i, latch.op("add", i, C(1)))
    b.emit(ir.Loop(head.block, go, body.block, latch.block))
    # a loop with a uniform condition but a divergent break becomes divergent
    k2 = ir.Var("k2", i32)
    b.assign(k2, C(0))
    head, body, latch = b.nested(), b.nested(), b.nested()
    go = head.op("lt", k2, n)
    brk = body.nested()
    brk.emit(ir.Break())
    body.emit(
        ir.If(body.op("gt", body.op("add", x, body.op("mul", k2, C(20))), C(60)), brk.block, [])
    )
    latch.assign(k2, latch.op("add", k2, C(1)))
    b.emit(ir.Loop(head.block, go, body.block, latch.block))
    # warp-uniform branch with collectives in it
    w = ir.Var("w", i32)
    then, else_ = b.nested(), b.nested()
    then.assign(w, then.op("warp_max", x))
    else_.assign(w, else_.op("warp_min", x))
    b.emit(ir.If(b.op("eq", b.op("band", warp, C(1)), C(1)), then.block, else_.block))
    # atomics in uniform code: every logical lane takes a ticket
    ticket = b.op("atomic", counter, C(0), C(1), op="add", order="relaxed", scope="device")
    store(b, tickets, g, ticket)
    # block memory across warps: reverse the block
    sm = ir.Var("sm", ArrayType(i32, "shared"))
    b.emit(ir.Op(sm, "shared_alloc", (), {"n": warps * W}))
    tid = b.op("add", b.op("mul", warp, C(W)), lane)
    store(b, sm, tid, x)
    b.op("barrier")
    z = load(b, sm, b.op("sub", C(warps * W - 1), tid))
    everyone = b.op("cast", b.op("block_all", b.op("gt", x, C(-95))), type=i32)
    total = b.op(
        "add",
        b.op("add", b.op("add", y, b.op("mul", acc, C(1000))), s),
        b.op("mul", b.op("add", w, z), C(7)),
    )
    total = b.op(
        "add", b.op("add", total, b.op("mul", k2, C(100_000))), b.op("mul", everyone, C(1 << 24))
    )
    store(b, out, g, total)
    return ir.Kernel("control", [a, n, out, counter, tickets], b.block, attrs={"warp_width": W})


def control_reference(x: np.ndarray, n: int, W: int, warps: int) -> np.ndarray:
    xw = x.reshape(-1, W).astype(np.int64)
    out = np.zeros_like(xw)
    for r, row in enumerate(xw):
        warp = r % warps
        block = x.reshape(-1, warps * W)[r // warps].astype(np.int64)
        everyone = int((block > -95).all())
        w = row.max() if warp & 1 else row.min()
        for lane, v in enumerate(row):
            y = (v * 2 if v & 1 else v + 5) if v > 0 else -v
            acc = 0
            for j in range(v & 7):
                if j == 2:
                    continue
                if j * j > (v & 31):
                    break
                acc += j
            s = 0
            for i in range(n):
                s += (row + i).sum()
                if (v + i) & 1:
                    if (v + i) & 2:
                        continue
                    s += 3
                s += v * i
            k2 = next((k for k in range(n) if v + 20 * k > 60), n)
            z = block[::-1][warp * W + lane]
            out[r, lane] = y + acc * 1000 + s + (w + z) * 7 + k2 * 100_000 + everyone * (1 << 24)
    return out.reshape(-1).astype(np.int32)


@pytest.mark.parametrize("H", SUBGROUPS)
@pytest.mark.parametrize("warp_width", WIDTHS)
def test_divergent_control_flow_folds_to_the_logical_results(warp_width, H):
    W, warps, grid, n_iter = warp_width, 2, 2, 3
    total = grid * warps * W
    x = np.random.default_rng(W + H).integers(-100, 100, total).astype(np.int32)
    out, counter, tickets = poison(total, np.int32), np.zeros(1, np.int32), poison(total, np.int32)
    fold_and_run(control_kernel(W, warps), H, warps, grid, [x, n_iter, out, counter, tickets])
    np.testing.assert_array_equal(out, control_reference(x, n_iter, W, warps))
    assert counter[0] == total
    np.testing.assert_array_equal(np.sort(tickets), np.arange(total))


def test_scalar_parameter_reassigned_in_divergent_code_gets_copies():
    W, H = 32, 8
    n, out = ir.Var("n", i32), arr("out", i32)
    b = ir.Builder()
    lane, _, g = logical_index(b, W)
    then = b.nested()
    then.assign(n, then.op("add", n, lane))
    b.emit(ir.If(b.op("ne", b.op("band", lane, C(1)), C(0)), then.block, []))
    store(b, out, g, n)
    kern = ir.Kernel("param", [n, out], b.block, attrs={"warp_width": W})
    o = poison(W, np.int32)
    folded = fold_and_run(kern, H, 1, 1, [40, o])
    np.testing.assert_array_equal(o, 40 + np.where(np.arange(W) & 1, np.arange(W), 0))
    assert folded.params[0] is n


# ---------------------------------------------------------------- the lowered form


@pytest.mark.parametrize(
    ("warp_width", "H", "fold", "block_size"),
    [(32, 8, 4, 24), (64, 64, 1, 192), (32, 64, 1, 96), (64, 4, 16, 12)],
)
def test_attrs_follow_the_lowered_ir_contract(warp_width, H, fold, block_size):
    W = warp_width
    kern, _ = collectives_kernel(W)
    folded = fold_lanes(kern, H, 3, {})
    assert folded.attrs == {
        "warp_width": W,
        "subgroup": H,
        "fold": fold,
        "warps": 3,
        "block_size": block_size,
    }
    clusters = {
        s.attrs["cluster"] for s in folded.walk() if isinstance(s, ir.Op) and "cluster" in s.attrs
    }
    assert clusters == {min(W, H)}


def test_input_kernel_is_not_mutated_and_divergent_vars_get_named_copies():
    kern = control_kernel(32, 2)
    before = ir.print_kernel(kern)
    folded = fold_lanes(kern, 8, 2, {})
    assert ir.print_kernel(kern) == before
    text = ir.print_kernel(folded)
    assert "%acc#3" in text and "%acc#4" not in text and "#0: bool = copy(false)" in text
    assert "%n#" not in text  # uniform values stay single


def test_levels_mark_extra_variables_divergent():
    W = 32
    out = arr("out", u32)
    b = ir.Builder()
    _, _, g = logical_index(b, W)
    t = b.op("timer")
    store(b, out, g, b.op("cast", t, type=u32))
    kern = ir.Kernel("lv", [out], b.block, attrs={"warp_width": W})
    plain = ir.print_kernel(fold_lanes(kern, 8, 1, {}))
    marked = ir.print_kernel(fold_lanes(kern, 8, 1, {t: ir.DIVERGENT}))
    assert f"%{t.name}#3" in marked and f"%{t.name}#" not in plain


def test_default_levels_fold_a_simple_kernel():
    W, H = 64, 16
    a, out = arr("a", i32), arr("out", i32)
    b = ir.Builder()
    lane, _, g = logical_index(b, W)
    x = load(b, a, g)
    store(b, out, g, b.op("add", x, b.op("warp_sum", x)))
    kern = ir.Kernel("simple", [a, out], b.block, attrs={"warp_width": W})
    folded = fold_lanes(kern, H, 1)
    xv = np.random.default_rng(4).integers(-50, 50, W).astype(np.int32)
    o = poison(W, np.int32)
    interpreter.run(folded, 1, [xv, o])
    np.testing.assert_array_equal(o, xv + xv.sum())


# ---------------------------------------------------------------- malformed input


def test_collective_in_divergent_branch_is_rejected():
    W = 32
    b = ir.Builder()
    lane = b.op("lane")
    then = b.nested()
    then.loc = ir.Loc("k.py", 5, 8)
    then.op("warp_sum", lane)
    b.emit(ir.If(b.op("lt", lane, C(3)), then.block, []))
    kern = ir.Kernel("bad", [], b.block, attrs={"warp_width": W})
    with pytest.raises(RuntimeError, match=r"k\.py:5:8: warp_sum in divergent control flow"):
        fold_lanes(kern, 8, 1, {})
    fold_lanes(kern, 32, 1, {})  # H >= W needs no replication: nothing to reject here


def test_async_constructs_and_folded_kernels_are_rejected():
    ready = ir.Var("ready", bool_)
    kern = ir.Kernel("a", [], [ir.Suspend([], ready, "x")], attrs={"warp_width": 32})
    with pytest.raises(RuntimeError, match="lower_async must run first"):
        fold_lanes(kern, 8, 1, {})
    b = ir.Builder()
    b.op("sg_lane")
    with pytest.raises(RuntimeError, match="already folded"):
        fold_lanes(ir.Kernel("f", [], b.block, attrs={"warp_width": 32}), 8, 1, {})
    with pytest.raises(ValueError, match="power of two"):
        fold_lanes(ir.Kernel("g", [], [], attrs={"warp_width": 32}), 12, 1, {})
    with pytest.raises(ValueError, match="warps"):
        fold_lanes(ir.Kernel("g", [], [], attrs={"warp_width": 32}), 8, 0, {})
