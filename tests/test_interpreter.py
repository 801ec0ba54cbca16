"""The reference interpreter on hand-built lowered IR: op semantics, masks, memory, scheduling."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from asyncwarp.core import interpreter, ir
from asyncwarp.core.errors import DeadlockError, WatchdogTimeout
from asyncwarp.core.types import ArrayType, ScalarType, bool_, f32, f64, i32, i64, u32, u64
from asyncwarp.core.verify import verify

INTS = (i32, u32, i64, u64)
RELAXED = {"order": "relaxed", "scope": "device"}
FLOATS = (f32, f64)


def C(value, t=i32) -> ir.Const:
    return ir.Const(value, t)


def arr(name: str, t: ScalarType, space: str = "global") -> ir.Var:
    return ir.Var(name, ArrayType(t, space))


def load(b: ir.Builder, array: ir.Var, index, order="weak", scope=None) -> ir.Var:
    scope = scope or ("block" if array.type.space == "shared" else "device")
    return b.op("load", array, index, order=order, scope=scope)


def store(b: ir.Builder, array: ir.Var, index, value, order="weak", scope=None) -> None:
    scope = scope or ("block" if array.type.space == "shared" else "device")
    b.op("store", array, index, value, order=order, scope=scope)


def lowered(params, block, H, block_size, name="k", check=True) -> ir.Kernel:
    """A hand-built lowered kernel, verified like the output of passes.fold_lanes."""
    attrs = {"subgroup": H, "block_size": block_size, "warp_width": 32, "fold": 1, "warps": 1}
    kernel = ir.Kernel(name, params, block, attrs=attrs)
    if check:
        verify(kernel, "lowered")
    return kernel


def global_index(b: ir.Builder, H: int, block_size: int) -> tuple[ir.Var, ir.Var]:
    """(index of the invocation in the grid, index in its block)."""
    tid = b.op("add", b.op("mul", b.op("sg_id"), C(H)), b.op("sg_lane"))
    base = b.op("mul", b.op("block_id"), C(block_size))
    return b.op("add", base, tid), tid


def poison(n: int, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    if dt.kind == "b":
        return np.zeros(n, dtype=dt)
    return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)


# ---------------------------------------------------------------- arithmetic semantics


def wrap(x: int, t: ScalarType) -> int:
    m = 1 << t.bits
    x %= m
    return x - m if t.is_signed and x >= m // 2 else x


def int_samples(t: ScalarType, rng, n: int = 64) -> np.ndarray:
    info = np.iinfo(t.dtype)
    edge = [0, 1, 2, 3, 7, 31, 32, 33, 63, 64, 65, info.max, info.max - 1, info.min]
    if t.is_signed:
        edge += [-1, -2, -7, -31, -32, -64, info.min + 1]
    rand = rng.integers(info.min, info.max, n - len(edge), dtype=t.dtype, endpoint=True)
    return np.concatenate([np.array(edge, dtype=t.dtype), rand])


def float_samples(t: ScalarType, rng, n: int = 64) -> np.ndarray:
    edge = [0.0, -0.0, 1.0, -1.0, 1.5, -2.5, 0.1, 3.0, np.nan, np.inf, -np.inf, 1e30, -1e-30, 7.0]
    rand = rng.standard_normal(n - len(edge)) * 10.0 ** rng.integers(-3, 4, n - len(edge))
    return np.concatenate([edge, rand]).astype(t.dtype)


INT_REFS = {
    "add": lambda a, b, t: wrap(a + b, t),
    "sub": lambda a, b, t: wrap(a - b, t),
    "mul": lambda a, b, t: wrap(a * b, t),
    "floordiv": lambda a, b, t: 0 if b == 0 else wrap(a // b, t),
    "mod": lambda a, b, t: a if b == 0 else wrap(a % b, t),
    "min": lambda a, b, t: min(a, b),
    "max": lambda a, b, t: max(a, b),
    "band": lambda a, b, t: wrap(a & b, t),
    "bor": lambda a, b, t: wrap(a | b, t),
    "bxor": lambda a, b, t: wrap(a ^ b, t),
    "shl": lambda a, b, t: 0 if b % (1 << t.bits) >= t.bits else wrap(a << (b % (1 << t.bits)), t),
    "shr": lambda a, b, t: (
        (-1 if a < 0 else 0) if b % (1 << t.bits) >= t.bits else a >> (b % (1 << t.bits))
    ),
    "eq": lambda a, b, t: a == b,
    "ne": lambda a, b, t: a != b,
    "lt": lambda a, b, t: a < b,
    "le": lambda a, b, t: a <= b,
    "gt": lambda a, b, t: a > b,
    "ge": lambda a, b, t: a >= b,
}
INT_UNARY_REFS = {
    "neg": lambda a, t: wrap(-a, t),
    "abs": lambda a, t: wrap(abs(a), t),
    "bnot": lambda a, t: wrap(~a, t),
    "popcount": lambda a, t: bin(a % (1 << t.bits)).count("1"),
}


def run_elementwise(
    opcode: str, types: list, inputs: list, out_type: ScalarType, H=32, attrs=None, cast_to=None
) -> np.ndarray:
    """out[i] = opcode(inputs[0][i], ...) through a lowered kernel of 2 blocks."""
    n = len(inputs[0])
    block_size = n // 2
    ins = [arr(f"in{j}", t) for j, t in enumerate(types)]
    out = arr("out", out_type)
    b = ir.Builder()
    g, _ = global_index(b, H, block_size)
    vals = [load(b, a, g) for a in ins]
    r = b.op(opcode, *vals, type=cast_to, **(attrs or {}))
    store(b, out, g, r)
    k = lowered(ins + [out], b.block, H, block_size)
    result = poison(n, out_type.dtype)
    interpreter.run(k, 2, [*inputs, result])
    return result


@pytest.mark.parametrize("t", INTS, ids=str)
@pytest.mark.parametrize("opcode", sorted(INT_REFS))
def test_integer_binary_ops_follow_python_semantics_with_wraparound(opcode, t):
    rng = np.random.default_rng(zlib.crc32(f"{opcode}{t}".encode()))
    a = int_samples(t, rng)
    b = int_samples(t, rng)[::-1].copy()
    b[:8] = [0, -1 if t.is_signed else 1, 0, 1, 31, 32, 64, 5]  # zero divisors, shift limits
    rtype = bool_ if opcode in ("eq", "ne", "lt", "le", "gt", "ge") else t
    got = run_elementwise(opcode, [t, t], [a, b], rtype)
    ref = [INT_REFS[opcode](int(x), int(y), t) for x, y in zip(a, b, strict=True)]
    np.testing.assert_array_equal(got, np.array(ref, dtype=rtype.dtype))


@pytest.mark.parametrize("t", INTS, ids=str)
@pytest.mark.parametrize("opcode", sorted(INT_UNARY_REFS))
def test_integer_unary_ops(opcode, t):
    a = int_samples(t, np.random.default_rng(7))
    rtype = i32 if opcode == "popcount" else t
    got = run_elementwise(opcode, [t], [a], rtype)
    ref = [INT_UNARY_REFS[opcode](int(x), t) for x in a]
    np.testing.assert_array_equal(got, np.array(ref, dtype=rtype.dtype))


def min_num(a, b, take_min):
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return min(a, b) if take_min else max(a, b)


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_float_binary_ops_are_ieee_in_their_own_precision(t):
    rng = np.random.default_rng(11)
    a = float_samples(t, rng)
    b = float_samples(t, rng)[::-1].copy()
    with np.errstate(all="ignore"):
        refs = {
            "add": a + b,
            "sub": a - b,
            "mul": a * b,
            "div": a / b,
            "floordiv": np.floor(a / b),
            "mod": a - np.floor(a / b) * b,
            "pow": np.power(np.abs(a), b),
            "min": np.array(
                [min_num(x, y, True) for x, y in zip(a, b, strict=True)], dtype=t.dtype
            ),
            "max": np.array(
                [min_num(x, y, False) for x, y in zip(a, b, strict=True)], dtype=t.dtype
            ),
        }
    for opcode, ref in refs.items():
        lhs = np.abs(a) if opcode == "pow" else a
        got = run_elementwise(opcode, [t, t], [lhs, b], t)
        assert got.dtype == t.dtype
        np.testing.assert_array_equal(got, ref.astype(t.dtype), err_msg=opcode)


@pytest.mark.parametrize("t", FLOATS, ids=str)
def test_float_unary_ops(t):
    a = float_samples(t, np.random.default_rng(12))
    exact = {"neg": np.negative, "abs": np.abs, "floor": np.floor, "ceil": np.ceil}
    for opcode, fn in exact.items():
        np.testing.assert_array_equal(run_elementwise(opcode, [t], [a], t), fn(a), err_msg=opcode)
    pos = np.abs(a) + t.dtype.type(0.5)
    a_small = np.clip(a, -50, 50)
    with np.errstate(all="ignore"):
        for opcode, x in [
            ("sqrt", pos),
            ("log", pos),
            ("exp", a_small),
            ("sin", a_small),
            ("cos", a_small),
        ]:
            ref = getattr(np, opcode)(x.astype(np.float64)).astype(t.dtype)
            got = run_elementwise(opcode, [t], [x], t)
            assert got.dtype == t.dtype
            np.testing.assert_allclose(got, ref, rtol=4e-7 if t is f32 else 1e-15, err_msg=opcode)


def cast_ref(x, src: ScalarType, dst: ScalarType):
    if dst.is_bool:
        return bool(x != 0)
    if src.is_float and dst.is_int:
        if math.isnan(x):
            return 0
        info = np.iinfo(dst.dtype)
        if math.isinf(x):
            return int(info.max) if x > 0 else int(info.min)
        return max(int(info.min), min(int(info.max), math.trunc(x)))
    if dst.is_int:
        return wrap(int(x), dst)
    return dst.dtype.type(float(x) if src.is_float else int(x))


CAST_TYPES = (bool_, i32, u32, i64, u64, f32, f64)


@pytest.mark.parametrize("src", CAST_TYPES, ids=str)
def test_casts_truncate_saturate_and_wrap(src):
    rng = np.random.default_rng(13)
    if src.is_bool:
        a = rng.integers(0, 2, 64).astype(bool)
    elif src.is_float:
        a = float_samples(src, rng)
        a[14:20] = [3e9, -3e9, 2.0**63, -(2.0**63), 2.0**64, 4294967295.5]
        a[20:26] = [-0.7, 0.7, -1.99, 2.5, 127.9, -128.9]
    else:
        a = int_samples(src, rng)
        if src.bits == 64:  # keep int -> float exact in f64 so one rounding decides
            a[20:] = rng.integers(-(2**40) if src.is_signed else 0, 2**40, 44)
    for dst in CAST_TYPES:
        got = run_elementwise("cast", [src], [a], dst, cast_to=dst)
        ref = np.array([cast_ref(x.item(), src, dst) for x in a], dtype=dst.dtype)
        np.testing.assert_array_equal(got, ref, err_msg=f"{src} -> {dst}")


def test_select_and_logical_ops_on_bools():
    rng = np.random.default_rng(3)
    p, q = rng.integers(0, 2, (2, 64)).astype(bool)
    x, y = rng.integers(-1000, 1000, (2, 64)).astype(np.int32)
    np.testing.assert_array_equal(run_elementwise("land", [bool_, bool_], [p, q], bool_), p & q)
    np.testing.assert_array_equal(run_elementwise("lor", [bool_, bool_], [p, q], bool_), p | q)
    np.testing.assert_array_equal(run_elementwise("lnot", [bool_], [p], bool_), ~p)
    np.testing.assert_array_equal(run_elementwise("eq", [bool_, bool_], [p, q], bool_), p == q)
    got = run_elementwise("select", [bool_, i32, i32], [p, x, y], i32)
    np.testing.assert_array_equal(got, np.where(p, x, y))


# ---------------------------------------------------------------- control flow with masks


def divergent_control_kernel(H: int, block_size: int) -> ir.Kernel:
    """out[g] = f(a[g]) with nested ifs and a loop with continue and break (see reference)."""
    a, out = arr("a", i32), arr("out", i32)
    b = ir.Builder()
    g, _ = global_index(b, H, block_size)
    x = load(b, a, g)
    y = ir.Var("y", i32)
    pos = b.op("gt", x, C(0))
    then, inner_then, inner_else, else_ = b.nested(), b.nested(), b.nested(), b.nested()
    inner_then.assign(y, inner_then.op("mul", x, C(3)))
    inner_else.assign(y, inner_else.op("add", x, C(7)))
    odd = then.op("ne", then.op("band", x, C(1)), C(0))
    then.emit(ir.If(odd, inner_then.block, inner_else.block))
    else_.assign(y, else_.op("neg", x))
    b.emit(ir.If(pos, then.block, else_.block))
    # for j in range(x & 15): if j == 3: continue; if j * j > (x & 63): break; y += j
    j = ir.Var("j", i32)
    b.assign(j, C(0))
    trips = b.op("band", x, C(15))
    limit = b.op("band", x, C(63))
    head, body, latch = b.nested(), b.nested(), b.nested()
    go = head.op("lt", j, trips)
    skip, stop = body.nested(), body.nested()
    skip.emit(ir.Continue())
    body.emit(ir.If(body.op("eq", j, C(3)), skip.block, []))
    stop.emit(ir.Break())
    body.emit(ir.If(body.op("gt", body.op("mul", j, j), limit), stop.block, []))
    body.assign(y, body.op("add", y, j))
    latch.assign(j, latch.op("add", j, C(1)))
    b.emit(ir.Loop(head.block, go, body.block, latch.block))
    store(b, out, g, y)
    return lowered([a, out], b.block, H, block_size)


def control_reference(x: int) -> int:
    y = (x * 3 if x & 1 else x + 7) if x > 0 else -x
    for j in range(x & 15):
        if j == 3:
            continue
        if j * j > (x & 63):
            break
        y += j
    return y


@pytest.mark.parametrize("H", [4, 8, 32, 64])
def test_nested_ifs_and_loops_with_break_and_continue(H):
    block_size = 64
    rng = np.random.default_rng(H)
    a = rng.integers(-200, 200, 3 * block_size).astype(np.int32)
    out = poison(a.size, np.int32)
    interpreter.run(divergent_control_kernel(H, block_size), 3, [a, out])
    np.testing.assert_array_equal(out, [control_reference(int(x)) for x in a])


def test_partial_last_subgroup_leaves_missing_invocations_inactive():
    H, block_size, grid = 8, 20, 3  # 3 subgroups per block, the last with 4 invocations
    a, out = arr("a", i32), arr("out", i32)
    b = ir.Builder()
    tid = b.op("add", b.op("mul", b.op("sg_id"), C(H)), b.op("sg_lane"))
    slot = b.op("add", b.op("mul", b.op("block_id"), C(3 * H)), tid)
    store(b, out, slot, b.op("add", load(b, a, slot), C(1)))
    k = lowered([a, out], b.block, H, block_size)
    rng = np.random.default_rng(5)
    av = rng.integers(0, 100, grid * 3 * H).astype(np.int32)
    o = poison(av.size, np.int32)
    stats = interpreter.run(k, grid, [av, o])
    written = (np.arange(av.size) % (3 * H)) < block_size
    np.testing.assert_array_equal(o[written], av[written] + 1)
    assert np.all(o[~written] == poison(1, np.int32)[0])
    assert len(stats.finish_order) == grid * 3


# ---------------------------------------------------------------- block memory and barriers


@pytest.mark.parametrize("scheduler", ["round_robin", "random", "unfair"])
def test_block_memory_reverse_across_subgroups_with_barrier(scheduler):
    H, block_size, grid = 8, 32, 3
    a, out = arr("a", f32), arr("out", f32)
    b = ir.Builder()
    s = ir.Var("s", ArrayType(f32, "shared"))
    b.emit(ir.Op(s, "shared_alloc", (), {"n": block_size}))
    g, tid = global_index(b, H, block_size)
    store(b, s, tid, load(b, a, g))
    b.op("barrier")
    src = b.op("sub", C(block_size - 1), tid)
    store(b, out, g, load(b, s, src))
    k = lowered([a, out], b.block, H, block_size)
    av = np.random.default_rng(1).standard_normal(grid * block_size).astype(np.float32)
    o = poison(av.size, np.float32)
    interpreter.run(k, grid, [av, o], scheduler=scheduler, seed=4)
    np.testing.assert_array_equal(o, av.reshape(grid, -1)[:, ::-1].reshape(-1))


def test_block_memory_starts_poisoned_and_is_per_block():
    H, block_size = 8, 16
    out = arr("out", u32)
    b = ir.Builder()
    s = ir.Var("s", ArrayType(u32, "shared"))
    b.emit(ir.Op(s, "shared_alloc", (), {"n": block_size}))
    g, tid = global_index(b, H, block_size)
    store(b, out, g, load(b, s, tid))  # read before any write: garbage
    b.op("barrier")
    store(b, s, tid, b.op("cast", b.op("block_id"), type=u32))
    k = lowered([out], b.block, H, block_size)
    o = np.zeros(2 * block_size, np.uint32)
    interpreter.run(k, 2, [o])
    assert np.all(o == 0xDEADBEEF)  # block 1 does not see block 0's writes


def test_block_all_ands_the_predicate_over_the_block():
    H, block_size, grid = 8, 24, 4
    a, out = arr("a", i32), arr("out", bool_)
    b = ir.Builder()
    g, _ = global_index(b, H, block_size)
    r = b.op("block_all", b.op("gt", load(b, a, g), C(0)))
    store(b, out, g, r)
    k = lowered([a, out], b.block, H, block_size)
    av = np.random.default_rng(2).integers(1, 50, grid * block_size).astype(np.int32)
    av[block_size + 5] = -1  # block 1 fails
    av[3 * block_size + 23] = 0  # block 3 fails in its last invocation
    o = np.zeros(av.size, bool)
    interpreter.run(k, grid, [av, o], scheduler="random", seed=9)
    np.testing.assert_array_equal(o, np.repeat(av.reshape(grid, -1).min(axis=1) > 0, block_size))


# ---------------------------------------------------------------- atomics


def test_histogram_with_atomic_add_across_blocks():
    H, block_size, grid, bins = 32, 64, 8, 16
    a, hist = arr("a", i32), arr("hist", u32)
    b = ir.Builder()
    g, _ = global_index(b, H, block_size)
    binno = b.op("mod", load(b, a, g), C(bins))
    b.op("atomic", hist, binno, C(1, u32), op="add", order="relaxed", scope="device")
    k = lowered([a, hist], b.block, H, block_size)
    av = np.random.default_rng(21).integers(-1000, 1000, grid * block_size).astype(np.int32)
    h = np.zeros(bins, np.uint32)
    interpreter.run(k, grid, [av, h], scheduler="random", seed=3)
    np.testing.assert_array_equal(h, np.bincount(av % bins, minlength=bins))


ATOMIC_REFS = {
    "add": lambda old, v: old + v,
    "min": min,
    "max": max,
    "and": lambda old, v: old & v,
    "or": lambda old, v: old | v,
    "xor": lambda old, v: old ^ v,
    "exchange": lambda old, v: v,
}


ATOMIC_CASES = [
    (kind, t)
    for t in (i32, u64, f32)
    for kind in sorted(ATOMIC_REFS)
    if t.is_int or kind not in ("and", "or", "xor")
]  # bitwise kinds: integers only


@pytest.mark.parametrize(("kind", "t"), ATOMIC_CASES, ids=lambda v: str(v))
def test_atomics_run_lane_by_lane_in_lane_order_and_return_old(kind, t):
    H = 16
    a, cell, olds = arr("a", t), arr("cell", t), arr("olds", t)
    b = ir.Builder()
    lane = b.op("sg_lane")
    odd = b.op("ne", b.op("band", lane, C(1)), C(0))
    then = b.nested()  # only odd lanes are active: inactive lanes must not take part
    old = then.op(
        "atomic", cell, C(0), load(then, a, lane), op=kind, order="relaxed", scope="device"
    )
    store(then, olds, lane, old)
    b.emit(ir.If(odd, then.block, []))
    k = lowered([a, cell, olds], b.block, H, H)
    rng = np.random.default_rng(31)
    av = (rng.integers(1, 1000, H) if t.is_int else rng.standard_normal(H)).astype(t.dtype)
    c = np.array([av[0] + 3], dtype=t.dtype)
    o = poison(H, t.dtype)
    interpreter.run(k, 1, [av, c, o])
    cur = c.dtype.type(av[0] + 3)
    for lane in range(1, H, 2):
        assert o[lane] == cur, lane
        cur = c.dtype.type(ATOMIC_REFS[kind](cur, av[lane]))
    assert c[0] == cur
    np.testing.assert_array_equal(o[0::2], poison(H // 2, t.dtype))  # inactive lanes: no result


def test_cas_loop_counter_counts_every_invocation():
    H, block_size, grid = 8, 32, 4
    counter, tickets = arr("counter", i64), arr("tickets", i64)
    b = ir.Builder()
    g, _ = global_index(b, H, block_size)
    head, body = b.nested(), b.nested()
    seen = load(body, counter, C(0), order="relaxed", scope="device")
    new = body.op("add", seen, C(1, i64))
    old = body.op("atomic_cas", counter, C(0), seen, new, order="acq_rel", scope="device")
    won = body.nested()
    store(won, tickets, g, old)
    won.emit(ir.Break())
    body.emit(ir.If(body.op("eq", old, seen), won.block, []))
    b.emit(ir.Loop(head.block, None, body.block, []))
    k = lowered([counter, tickets], b.block, H, block_size)
    for scheduler in ("round_robin", "random"):
        c = np.zeros(1, np.int64)
        t = poison(grid * block_size, np.int64)
        interpreter.run(k, grid, [c, t], scheduler=scheduler, seed=5)
        assert c[0] == grid * block_size
        np.testing.assert_array_equal(np.sort(t), np.arange(grid * block_size))


def test_cas_on_floats_compares_bit_patterns():
    cell, out = arr("cell", f32), arr("out", f32)
    b = ir.Builder()
    old = b.op("atomic_cas", cell, C(0), C(float("nan"), f32), C(2.5, f32), **RELAXED)
    store(b, out, b.op("sg_lane"), old)
    k = lowered([cell, out], b.block, 4, 1)
    c = np.array([np.nan], np.float32)
    o = poison(4, np.float32)
    interpreter.run(k, 1, [c, o])
    assert c[0] == 2.5 and np.isnan(o[0])


# ---------------------------------------------------------------- subgroup ops


def subgroup_kernel(opcode: str, H: int, x_type: ScalarType, with_src=False, **attrs):
    x_arr, out = (
        arr("x", x_type),
        arr(
            "out",
            bool_ if opcode in ("sg_any", "sg_all") else (u64 if opcode == "sg_ballot" else x_type),
        ),
    )
    src_arr = arr("src", i32)
    b = ir.Builder()
    lane = b.op("sg_lane")
    x = load(b, x_arr, lane)
    args = (x, load(b, src_arr, lane)) if with_src else (x,)
    store(b, out, lane, b.op(opcode, *args, **attrs))
    return lowered([x_arr, src_arr, out], b.block, H, H), out.type.elem.dtype


SUBGROUP_SIZES = [4, 8, 32, 64, 128]


def clusters(H: int) -> list:
    return sorted({1, 2, min(4, H), H // 2, min(32, H), min(64, H)})


@pytest.mark.parametrize("H", SUBGROUP_SIZES)
def test_clustered_reduce_and_scan(H):
    rng = np.random.default_rng(H + 100)
    xi = rng.integers(-(2**31), 2**31, H, dtype=np.int64).astype(np.int32)  # sums wrap
    xf = rng.standard_normal(H).astype(np.float32)
    xf[H // 2] = np.nan  # minNum ignores the NaN
    src = np.zeros(H, np.int32)
    for c in clusters(H):
        groups_i = xi.reshape(-1, c).astype(np.int64)
        for op, fn in (("add", np.sum), ("min", np.min), ("max", np.max)):
            k, dt = subgroup_kernel("sg_reduce", H, i32, op=op, cluster=c)
            o = poison(H, dt)
            interpreter.run(k, 1, [xi, src, o])
            ref = np.repeat(fn(groups_i, axis=1), c).astype(np.int64).astype(np.int32)
            np.testing.assert_array_equal(o, ref, err_msg=f"{op} cluster {c}")
        for op, fn in (("min", np.fmin), ("max", np.fmax)):
            k, dt = subgroup_kernel("sg_reduce", H, f32, op=op, cluster=c)
            o = poison(H, dt)
            interpreter.run(k, 1, [xf, src, o])
            ref = np.repeat(fn.reduce(xf.reshape(-1, c), axis=1), c)
            np.testing.assert_array_equal(o, ref, err_msg=f"f32 {op} cluster {c}")
        for inclusive in (True, False):
            k, dt = subgroup_kernel("sg_scan", H, i32, op="add", inclusive=inclusive, cluster=c)
            o = poison(H, dt)
            interpreter.run(k, 1, [xi, src, o])
            inc = np.cumsum(groups_i, axis=1)
            ref = inc if inclusive else inc - groups_i
            np.testing.assert_array_equal(o, ref.reshape(-1).astype(np.int32))


@pytest.mark.parametrize("H", SUBGROUP_SIZES)
def test_shuffle_ballot_any_all(H):
    rng = np.random.default_rng(H + 200)
    x = rng.integers(-100, 100, H).astype(np.int32)
    src = rng.integers(0, H, H).astype(np.int32)
    k, dt = subgroup_kernel("sg_shuffle", H, i32, with_src=True)
    o = poison(H, dt)
    interpreter.run(k, 1, [x, src, o])
    np.testing.assert_array_equal(o, x[src])
    p = (x > 0).astype(bool)
    for c in clusters(H):
        if c > 64:
            continue
        k, dt = subgroup_kernel("sg_ballot", H, bool_, cluster=c)
        o = poison(H, dt)
        interpreter.run(k, 1, [p, src, o])
        weights = [1 << i for i in range(c)]
        ref = [
            sum(w for w, bit in zip(weights, grp, strict=True) if bit) for grp in p.reshape(-1, c)
        ]
        np.testing.assert_array_equal(o, np.repeat(np.array(ref, dtype=np.uint64), c))
        for opcode, fn in (("sg_any", np.any), ("sg_all", np.all)):
            k, dt = subgroup_kernel(opcode, H, bool_, cluster=c)
            o = poison(H, dt)
            interpreter.run(k, 1, [p, src, o])
            np.testing.assert_array_equal(o, np.repeat(fn(p.reshape(-1, c), axis=1), c))


def test_subgroup_ops_see_only_active_lanes():
    H = 8
    x_arr, sums, bal = arr("x", i32), arr("sums", i32), arr("bal", u64)
    b = ir.Builder()
    lane = b.op("sg_lane")
    x = load(b, x_arr, lane)
    then = b.nested()
    store(then, sums, lane, then.op("sg_reduce", x, op="add", cluster=H))
    store(then, bal, lane, then.op("sg_ballot", C(True, bool_), cluster=H))
    b.emit(ir.If(b.op("lt", lane, C(5)), then.block, []))
    k = lowered([x_arr, sums, bal], b.block, H, H)
    xv = np.arange(10, 10 + H, dtype=np.int32)
    s, bl = poison(H, np.int32), poison(H, np.uint64)
    interpreter.run(k, 1, [xv, s, bl])
    np.testing.assert_array_equal(s[:5], np.full(5, xv[:5].sum()))
    np.testing.assert_array_equal(bl[:5], np.full(5, 0b11111, np.uint64))
    assert np.all(s[5:] == poison(1, np.int32)[0])


# ---------------------------------------------------------------- scheduling and deadlocks


def spin_wait_kernel(waiter: int, what: str = "the flag set by the other subgroup"):
    """Subgroup `waiter` spins (with sleep) on a flag that the other subgroup sets."""
    H = 32
    flag, data, out = arr("flag", u32), arr("data", i32), arr("out", i32)
    b = ir.Builder()
    lane = b.op("sg_lane")
    is_waiter = b.op("eq", b.op("sg_id"), C(waiter))
    wait, send = b.nested(), b.nested()
    body = wait.nested()
    seen = load(body, flag, C(0), order="acquire", scope="block")
    done = body.nested()
    done.emit(ir.Break())
    body.emit(ir.If(body.op("ne", seen, C(0, u32)), done.block, []))
    body.loc = ir.Loc("spin.py", 12, 8, "        aw.sleep(100)")
    body.op("sleep", C(100), what=what)
    wait.emit(ir.Loop([], None, body.block, []))
    store(wait, out, lane, wait.op("add", load(wait, data, lane), C(1)))
    store(send, data, lane, send.op("mul", lane, C(7)))
    store(send, flag, C(0), C(1, u32), order="release", scope="block")
    b.emit(ir.If(is_waiter, wait.block, send.block))
    k = lowered([flag, data, out], b.block, H, 2 * H, name="spin_wait")
    return k, (lambda: [np.zeros(1, np.uint32), poison(H, np.int32), poison(H, np.int32)])


@pytest.mark.parametrize("scheduler", ["round_robin", "random"])
@pytest.mark.parametrize("waiter", [0, 1])
def test_spin_wait_between_subgroups_completes_on_fair_schedulers(scheduler, waiter):
    k, make_args = spin_wait_kernel(waiter)
    for seed in range(3):
        args = make_args()
        interpreter.run(k, 1, args, scheduler=scheduler, seed=seed)
        np.testing.assert_array_equal(args[2], np.arange(32) * 7 + 1)


def test_unfair_scheduler_deadlocks_when_the_waiter_runs_first():
    k, make_args = spin_wait_kernel(waiter=0, what="flag 0 of block 0")
    with pytest.raises(DeadlockError) as err:
        interpreter.run(k, 1, make_args(), scheduler="unfair")
    msg = str(err.value)
    assert "spin_wait" in msg and "block 0 subgroup 0" in msg
    assert "spin.py:12" in msg and "flag 0 of block 0" in msg
    assert err.value.pending[0]["subgroup"] == 0
    # With the setter first, the same unfair schedule completes.
    k, make_args = spin_wait_kernel(waiter=1)
    args = make_args()
    stats = interpreter.run(k, 1, args, scheduler="unfair")
    np.testing.assert_array_equal(args[2], np.arange(32) * 7 + 1)
    assert stats.finish_order == [(0, 0), (0, 1)]


@pytest.mark.parametrize("scheduler", ["round_robin", "random"])
def test_everyone_spinning_on_a_flag_nobody_sets_is_a_deadlock(scheduler):
    flag = arr("flag", u32)
    b = ir.Builder()
    body = b.nested()
    seen = load(body, flag, C(0), order="acquire", scope="device")
    done = body.nested()
    done.emit(ir.Break())
    body.emit(ir.If(body.op("ne", seen, C(0, u32)), done.block, []))
    body.op("sleep", C(50), what="a flag nobody sets")
    b.emit(ir.Loop([], None, body.block, []))
    k = lowered([flag], b.block, 8, 16, name="stuck")
    with pytest.raises(DeadlockError) as err:
        interpreter.run(k, 2, [np.zeros(1, np.uint32)], scheduler=scheduler, seed=1)
    assert len(err.value.pending) == 4 and "a flag nobody sets" in str(err.value)


def barrier_kernel(condition: str) -> ir.Kernel:
    b = ir.Builder()
    lhs = b.op("sg_id") if condition == "subgroup" else b.op("sg_lane")
    then = b.nested()
    then.loc = ir.Loc("bar.py", 7, 4)
    then.op("barrier")
    b.emit(ir.If(b.op("eq", lhs, C(0)), then.block, []))
    return lowered([], b.block, 8, 16, name="bad_barrier")


@pytest.mark.parametrize("scheduler", ["round_robin", "random", "unfair"])
def test_barrier_skipped_by_a_subgroup_is_a_deadlock(scheduler):
    with pytest.raises(DeadlockError, match=r"bad_barrier.*barrier") as err:
        interpreter.run(barrier_kernel("subgroup"), 1, [], scheduler=scheduler, seed=2)
    assert "bar.py:7" in str(err.value)


def test_barrier_reached_by_part_of_a_subgroup_is_a_deadlock():
    with pytest.raises(DeadlockError, match=r"bar\.py:7:4: barrier reached by part of subgroup"):
        interpreter.run(barrier_kernel("lane"), 1, [])


def test_watchdog_stops_a_loop_that_never_yields_to_sleep():
    x = ir.Var("x", i32)
    b = ir.Builder()
    b.assign(x, C(0))
    body = b.nested()
    body.assign(x, body.op("add", x, C(1)))
    b.emit(ir.Loop([], None, body.block, [], ir.Loc("loop.py", 3, 4)))
    k = lowered([], b.block, 4, 8, name="forever")
    with pytest.raises(WatchdogTimeout, match=r"forever.*max_steps=5000(.|\n)*loop\.py:3"):
        interpreter.run(k, 1, [], max_steps=5000)
    with pytest.raises(WatchdogTimeout, match="watchdog budget of 3000 ns"):
        interpreter.run(k, 1, [], watchdog_ns=3000)


def test_timer_is_monotone_and_sleep_advances_it():
    out = arr("out", u64)
    b = ir.Builder()
    start = b.op("timer")
    now = ir.Var("now", u64)
    body = b.nested()
    body.assign(now, body.op("timer"))
    late = body.nested()
    late.emit(ir.Break())
    body.emit(ir.If(body.op("gt", now, body.op("add", start, C(50_000, u64))), late.block, []))
    body.op("sleep", C(1000))  # the timer read keeps the fingerprint changing: no deadlock
    b.emit(ir.Loop([], None, body.block, []))
    store(b, out, b.op("sg_lane"), b.op("sub", now, start))
    k = lowered([out], b.block, 4, 4)
    o = np.zeros(4, np.uint64)
    stats = interpreter.run(k, 1, [o], scheduler="unfair")
    assert np.all(o > 50_000) and np.all(o < 60_000)
    assert stats.clock_ns >= 50_000


def test_schedulers_interleave_differently_and_random_is_reproducible():
    k = divergent_control_kernel(8, 32)
    a = np.random.default_rng(8).integers(-200, 200, 64).astype(np.int32)
    orders = {}
    for scheduler, seed in [
        ("round_robin", 0),
        ("unfair", 0),
        ("random", 1),
        ("random", 1),
        ("random", 2),
    ]:
        o = poison(64, np.int32)
        stats = interpreter.run(k, 2, [a, o], scheduler=scheduler, seed=seed)
        np.testing.assert_array_equal(o, [control_reference(int(x)) for x in a])
        orders.setdefault((scheduler, seed), []).append(stats)
    assert orders[("unfair", 0)][0].finish_order == [(b, s) for b in range(2) for s in range(4)]
    assert orders[("unfair", 0)][0].switches == 7
    assert orders[("round_robin", 0)][0].switches > 8
    first, again = orders[("random", 1)]
    assert first.finish_order == again.finish_order and first.steps == again.steps


# ---------------------------------------------------------------- errors


def test_out_of_bounds_index_names_kernel_line_and_index():
    a, out = arr("a", i32), arr("out", i32)
    b = ir.Builder()
    lane = b.op("sg_lane")
    far = b.op("add", lane, C(30))
    ok = b.nested()  # lanes 0 and 1 read a[30], a[31]: in bounds; others are inactive
    store(ok, out, lane, load(ok, a, far))
    b.emit(ir.If(b.op("lt", lane, C(2)), ok.block, []))
    b.loc = ir.Loc("oob.py", 9, 4)
    store(b, out, lane, load(b, a, far))
    k = lowered([a, out], b.block, 8, 8, name="oob")
    av = np.arange(32, dtype=np.int32)
    o = poison(8, np.int32)
    with pytest.raises(IndexError, match=r"oob.*oob\.py:9:4: load index 32 .*'a' of length 32"):
        interpreter.run(k, 1, [av, o])
    np.testing.assert_array_equal(o[:2], [30, 31])


def test_launch_arguments_are_checked():
    k = divergent_control_kernel(8, 16)
    good = [np.zeros(16, np.int32), np.zeros(16, np.int32)]
    with pytest.raises(TypeError, match="takes 2 arguments"):
        interpreter.run(k, 1, good[:1])
    with pytest.raises(TypeError, match="'a' .* int32, got ndarray float32"):
        interpreter.run(k, 1, [np.zeros(16, np.float32), good[1]])
    with pytest.raises(ValueError, match="scheduler"):
        interpreter.run(k, 1, good, scheduler="fifo")
    with pytest.raises(ValueError, match="grid"):
        interpreter.run(k, 0, good)
    n = ir.Var("n", u32)
    scalar = lowered([n], [], 8, 8)
    with pytest.raises(ValueError, match="out of range"):
        interpreter.run(scalar, 1, [-1])
    with pytest.raises(TypeError, match="integer"):
        interpreter.run(scalar, 1, [1.5])
    interpreter.run(scalar, 1, [np.uint32(7)])


def test_only_lowered_ir_runs():
    b = ir.Builder()
    b.op("lane")
    with pytest.raises(RuntimeError, match="not lowered"):
        interpreter.run(ir.Kernel("k", [], b.block, attrs={"warp_width": 32}), 1, [])
    with pytest.raises(RuntimeError, match="logical op 'lane'.*fold_lanes"):
        interpreter.run(lowered([], b.block, 8, 8, check=False), 1, [])


def test_scalar_parameters_are_uniform_vectors_of_their_type():
    x, out = ir.Var("x", f32), arr("out", f32)
    n = ir.Var("n", i64)
    b = ir.Builder()
    lane = b.op("sg_lane")
    v = b.op("mul", x, b.op("cast", b.op("add", b.op("cast", lane, type=i64), n), type=f32))
    store(b, out, lane, v)
    k = lowered([x, n, out], b.block, 8, 8)
    o = poison(8, np.float32)
    interpreter.run(k, 1, [0.5, 2**40, o])
    np.testing.assert_array_equal(o, np.float32(0.5) * (np.arange(8) + 2**40).astype(np.float32))
