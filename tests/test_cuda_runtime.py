"""The CUDA backend on a GPU: hand-built lowered kernels run by the driver, checked with numpy.

Every lowered opcode runs on random data (special values included) against a
numpy or pure-Python reference of core/ops.py's semantics; outputs are
poisoned first. Skipped, with the reason, where no NVIDIA driver is present.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from asyncwarp.backends.cuda import runtime

_OK, _WHY = runtime.available()
if not _OK:
    pytest.skip(runtime.NO_DRIVER if runtime.NO_DRIVER in _WHY else _WHY, allow_module_level=True)

from asyncwarp.backends.cuda.backend import CudaBackend  # noqa: E402
from asyncwarp.core import ir  # noqa: E402
from asyncwarp.core.backend import BuildOptions  # noqa: E402
from asyncwarp.core.passes.fold_lanes import fold_lanes  # noqa: E402
from asyncwarp.core.types import (  # noqa: E402
    SCALAR_TYPES,
    ArrayType,
    ScalarType,
    bool_,
    f32,
    f64,
    i32,
    i64,
    u32,
    u64,
)

WARPS = 2
BLOCK = WARPS * 32
N = 300  # not a multiple of the block: the tail is guarded
GRID = -(-N // BLOCK)
INTS = (i32, u32, i64, u64)
FLOATS = (f32, f64)
NUMS = INTS + FLOATS
BACKEND = CudaBackend(0)
OPTIONS = BuildOptions(backend="cuda", warps=WARPS)


def C(value, t=i32) -> ir.Const:
    return ir.Const(value, t)


def arr(name, t, space="global") -> ir.Var:
    return ir.Var(name, ArrayType(t, space))


def kernel(name, params, build, warps=WARPS) -> ir.Kernel:
    b = ir.Builder()
    build(b)
    return ir.Kernel(
        name,
        params,
        b.block,
        attrs={
            "warp_width": 32,
            "subgroup": 32,
            "fold": 1,
            "warps": warps,
            "block_size": warps * 32,
        },
    )


def launch(k: ir.Kernel, grid: int, *args, arch=None, **kw):
    """Compile for `arch` (default: the device's) and run; PTX for older targets runs too."""
    options = BuildOptions(backend="cuda", warps=WARPS, arch=arch)
    return BACKEND.launch(BACKEND.compile(k, options), k, options, grid, list(args), **kw)


def global_index(b: ir.Builder, block=BLOCK):
    lane_in_block = b.op("add", b.op("mul", b.op("sg_id"), C(32)), b.op("sg_lane"))
    return b.op("add", b.op("mul", b.op("block_id"), C(block)), lane_in_block)


def poison(n, dtype) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return np.full(n, np.nan, dtype=dt)
    if dt.kind == "b":
        return np.zeros(n, dtype=dt)
    return np.full(n, np.iinfo(dt).max - 0x1234, dtype=dt)


def sample(t: ScalarType, n: int, rng, special=True) -> np.ndarray:
    """Random values of t, with the edge cases (extremes, 0, -1, NaN, inf, -0) mixed in."""
    if t.is_bool:
        return rng.random(n) < 0.5
    if t.is_int:
        lim = np.iinfo(t.dtype)
        v = rng.integers(lim.min, lim.max, n, dtype=t.dtype, endpoint=True)
        small = rng.integers(-70 if t.is_signed else 0, 70, n).astype(t.dtype)
        v = np.where(rng.random(n) < 0.5, small, v)
        edges = [0, 1, lim.max, lim.min, 2, 63, 64] + ([-1, -2] if t.is_signed else [])
    else:
        v = (rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)).astype(t.dtype)
        edges = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-40 if t is f32 else 1e-310]
    if special:
        at = rng.choice(n, len(edges), replace=False)
        v[at] = np.array(edges, dtype=object if t.is_int else np.float64).astype(t.dtype)
    return v


def scalar_type_of(a: np.ndarray) -> ScalarType:
    return next(t for t in SCALAR_TYPES if t.dtype == a.dtype)


def run_map(fn, inputs: list, out_t: ScalarType, n=N) -> np.ndarray:
    """out[i] = fn(builder, x0[i], x1[i], ...) on the GPU."""
    ins = [arr(f"x{k}", scalar_type_of(a)) for k, a in enumerate(inputs)]
    out, count = arr("out", out_t), ir.Var("n", i32)

    def build(b):
        i = global_index(b)
        body = b.nested()
        body.op("store", out, i, fn(body, *[body.op("load", a, i) for a in ins]))
        b.emit(ir.If(b.op("lt", i, count), body.block, []))

    result = poison(n, out_t.dtype)
    launch(kernel("map", ins + [out, count], build), -(-n // BLOCK), *inputs, result, np.int32(n))
    return result


# ---------------------------------------------------------------- integer semantics


def _wrap(v: int, t: ScalarType) -> int:
    v &= (1 << t.bits) - 1
    return v - (1 << t.bits) if t.is_signed and v >> (t.bits - 1) else v


def _shift_amount(b: int, t: ScalarType) -> int:
    return b & ((1 << t.bits) - 1)  # read as unsigned: negative amounts are huge


INT_BINARY = {
    "add": lambda a, b, t: a + b,
    "sub": lambda a, b, t: a - b,
    "mul": lambda a, b, t: a * b,
    "min": lambda a, b, t: min(a, b),
    "max": lambda a, b, t: max(a, b),
    "band": lambda a, b, t: a & b,
    "bor": lambda a, b, t: a | b,
    "bxor": lambda a, b, t: a ^ b,
    "floordiv": lambda a, b, t: 0 if b == 0 else a // b,
    "mod": lambda a, b, t: a if b == 0 else a % b,
    "shl": lambda a, b, t: 0 if _shift_amount(b, t) >= t.bits else a << _shift_amount(b, t),
    "shr": lambda a, b, t: a >> min(_shift_amount(b, t), t.bits),
}
INT_UNARY = {
    "neg": lambda a, t: -a,
    "abs": lambda a, t: abs(a),
    "bnot": lambda a, t: ~a,
}


@pytest.mark.parametrize("t", INTS, ids=str)
@pytest.mark.parametrize("opcode", INT_BINARY)
def test_integer_binary_ops(opcode, t, rng):
    a, b = sample(t, N, rng), sample(t, N, rng)
    if opcode in ("shl", "shr"):
        b = np.where(rng.random(N) < 0.8, rng.integers(0, t.bits + 3, N), b).astype(t.dtype)
    if opcode in ("floordiv", "mod"):
        b[:8] = [0, -1 if t.is_signed else 1, 0, 3, 7, 1, 2, 5]
        a[:8] = [5, np.iinfo(t.dtype).min, 0, -7 if t.is_signed else 7, 7, 0, 9, 11]
    got = run_map(lambda bb, x, y: bb.op(opcode, x, y), [a, b], t)
    want = [_wrap(INT_BINARY[opcode](int(x), int(y), t), t) for x, y in zip(a, b, strict=True)]
    np.testing.assert_array_equal(got, np.array(want, dtype=object).astype(t.dtype))


@pytest.mark.parametrize("t", INTS, ids=str)
@pytest.mark.parametrize("opcode", [*INT_UNARY, "popcount"])
def test_integer_unary_ops(opcode, t, rng):
    a = sample(t, N, rng)
    out_t = i32 if opcode == "popcount" else t
    got = run_map(lambda bb, x: bb.op(opcode, x), [a], out_t)
    if opcode == "popcount":
        want = [bin(int(x) & ((1 << t.bits) - 1)).count("1") for x in a]
    else:
        want = [_wrap(INT_UNARY[opcode](int(x), t), t) for x in a]
    np.testing.assert_array_equal(got, np.array(want, dtype=object).astype(out_t.dtype))


# ---------------------------------------------------------------- float semantics (exact)

FLOAT_EXACT = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "min": np.fmin,
    "max": np.fmax,
    "floordiv": lambda a, b: np.floor(a / b),
    "mod": lambda a, b: a - np.floor(a / b) * b,
}


@pytest.mark.parametrize("t", FLOATS, ids=str)
@pytest.mark.parametrize("opcode", FLOAT_EXACT)
def test_float_binary_ops_are_ieee_exact(opcode, t, rng):
    a, b = sample(t, N, rng), sample(t, N, rng)
    got = run_map(lambda bb, x, y: bb.op(opcode, x, y), [a, b], t)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, FLOAT_EXACT[opcode](a, b).astype(t.dtype))


@pytest.mark.parametrize("t", FLOATS, ids=str)
@pytest.mark.parametrize("opcode", ["neg", "abs", "sqrt", "floor", "ceil"])
def test_float_unary_ops_are_exact(opcode, t, rng):
    a = sample(t, N, rng)
    ref = {"neg": np.negative, "abs": np.abs, "sqrt": np.sqrt, "floor": np.floor, "ceil": np.ceil}[
        opcode
    ]
    got = run_map(lambda bb, x: bb.op(opcode, x), [a], t)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, ref(a))


# ---------------------------------------------------------------- transcendentals

MATH_REF = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "pow": np.power}
# Bounds on the error, in ulp of the f32 result (core/ops.py: "a few ulp"). pow
# goes through lg2/ex2.approx, so its error grows with |b log2 a| (<= 20 here).
F32_ULP = {"exp": 2, "log": 4, "sin": 2, "cos": 2, "pow": 32}


def _math_inputs(opcode, t, rng):
    if opcode == "pow":
        a = rng.uniform(-10, 10, N)
        b = np.where(rng.random(N) < 0.3, rng.integers(-6, 7, N), rng.uniform(-6, 6, N))
        a[:12] = [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 2.0, -2.0, 0.5, -8.0, 1.0]
        b[:12] = [2.0, 3.0, np.nan, np.inf, -1.0, 3.0, 0.0, np.nan, 0.5, -np.inf, 1 / 3, 7.0]
        return [a.astype(t.dtype), b.astype(t.dtype)]
    lo, hi = {"exp": (-80, 80), "log": (0, 1e4), "sin": (-1e4, 1e4), "cos": (-1e4, 1e4)}[opcode]
    x = rng.uniform(lo, hi, N)
    x[: N // 4] = rng.uniform(-4, 4, N // 4) if opcode != "log" else rng.uniform(0.5, 2, N // 4)
    x[:8] = [0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-30]
    if t is f64 and opcode == "exp":
        x[8:12] = [700.0, -740.0, 710.0, -746.0]  # overflow and gradual underflow
    return [x.astype(t.dtype)]


@pytest.mark.parametrize("t", FLOATS, ids=str)
@pytest.mark.parametrize("opcode", list(MATH_REF))
def test_transcendentals(opcode, t, rng):
    inputs = _math_inputs(opcode, t, rng)
    got = run_map(lambda bb, *xs: bb.op(opcode, *xs), inputs, t)
    with np.errstate(all="ignore"):
        ref = MATH_REF[opcode](*(x.astype(np.float64) for x in inputs))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg="NaN positions")
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(got[~finite & ~np.isnan(ref)], ref[~finite & ~np.isnan(ref)])
    g, r = got[finite].astype(np.float64), ref[finite]
    if t is f32:
        ulp = np.spacing(np.abs(r).astype(np.float32)).astype(np.float64)
        err = np.abs(g - r) / ulp
        assert err.max() <= F32_ULP[opcode], f"{opcode}: {err.max():.1f} ulp"
    else:
        atol = 1e-15 if opcode in ("sin", "cos") else 1e-300  # results near a zero
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=atol)


# ---------------------------------------------------------------- comparisons, casts, bools


@pytest.mark.parametrize("t", SCALAR_TYPES, ids=str)
@pytest.mark.parametrize("opcode", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons(opcode, t, rng):
    a, b = sample(t, N, rng), sample(t, N, rng)
    b[::3] = a[::3]  # equal pairs
    got = run_map(lambda bb, x, y: bb.op(opcode, x, y), [a, b], bool_)
    ref = {
        "eq": np.equal,
        "ne": np.not_equal,
        "lt": np.less,
        "le": np.less_equal,
        "gt": np.greater,
        "ge": np.greater_equal,
    }[opcode]
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, ref(a, b))


def _cast_ref(a: np.ndarray, src: ScalarType, dst: ScalarType) -> np.ndarray:
    if src.is_float and dst.is_int:  # truncate, saturate, NaN -> 0
        lim = np.iinfo(dst.dtype)
        out = []
        for x in a.astype(np.float64):
            out.append(
                0
                if math.isnan(x)
                else lim.max
                if x >= lim.max + 1
                else lim.min
                if x <= lim.min - 1
                else math.trunc(x)
            )
        return np.array(out, dtype=object).astype(dst.dtype)
    with np.errstate(all="ignore"):
        return a.astype(dst.dtype)


@pytest.mark.parametrize("dst", SCALAR_TYPES, ids=str)
@pytest.mark.parametrize("src", SCALAR_TYPES, ids=str)
def test_casts(src, dst, rng):
    a = sample(src, N, rng)
    if src.is_float and dst.is_int:  # values near the limits of the target too
        lim = np.iinfo(dst.dtype)
        a[-6:] = np.array([lim.max * 2.0, lim.min * 2.0 - 10, 1e30, -1e30, 3.7, -3.7]).astype(
            src.dtype
        )
    got = run_map(lambda bb, x: bb.op("cast", x, type=dst), [a], dst)
    np.testing.assert_array_equal(got, _cast_ref(a, src, dst))


@pytest.mark.parametrize("opcode", ["land", "lor", "lnot", "select_bool"])
def test_bool_logic(opcode, rng):
    a, b, c = (sample(bool_, N, rng) for _ in range(3))
    if opcode == "lnot":
        got = run_map(lambda bb, x: bb.op("lnot", x), [a], bool_)
        np.testing.assert_array_equal(got, ~a)
    elif opcode == "select_bool":
        got = run_map(lambda bb, x, y, z: bb.op("select", x, y, z), [a, b, c], bool_)
        np.testing.assert_array_equal(got, np.where(a, b, c))
    else:
        got = run_map(lambda bb, x, y: bb.op(opcode, x, y), [a, b], bool_)
        np.testing.assert_array_equal(got, (a & b) if opcode == "land" else (a | b))


@pytest.mark.parametrize("t", SCALAR_TYPES, ids=str)
def test_select_and_constants(t, rng):
    cond, a = sample(bool_, N, rng), sample(t, N, rng)
    k = {"bool": True, "f32": 2.5, "f64": -1e300}.get(t.name, 7)
    got = run_map(lambda bb, c, x: bb.op("select", c, x, C(k, t)), [cond, a], t)
    np.testing.assert_array_equal(got, np.where(cond, a, np.array(k).astype(t.dtype)))


# ---------------------------------------------------------------- control flow


def test_loops_with_break_and_continue(rng):
    """acc = sum of j in [0, x % 23) skipping multiples of 3, stopping once acc > 40."""
    x = rng.integers(0, 1000, N).astype(np.int32)

    def body(b, v):
        limit = b.op("mod", v, C(23))
        acc, j = b.tmp(i32, "acc"), b.tmp(i32, "j")
        b.assign(acc, C(0))
        b.assign(j, C(0))
        header, loop_body, latch = b.nested(), b.nested(), b.nested()
        going = header.op("lt", j, limit)
        skip = loop_body.nested()
        skip.emit(ir.Continue())
        loop_body.emit(
            ir.If(loop_body.op("eq", loop_body.op("mod", j, C(3)), C(0)), skip.block, [])
        )
        loop_body.assign(acc, loop_body.op("add", acc, j))
        stop = loop_body.nested()
        stop.emit(ir.Break())
        loop_body.emit(ir.If(loop_body.op("gt", acc, C(40)), stop.block, []))
        latch.assign(j, latch.op("add", j, C(1)))
        b.emit(ir.Loop(header.block, going, loop_body.block, latch.block))
        return acc

    def ref(v):
        acc = 0
        for j in range(v % 23):
            if j % 3 == 0:
                continue
            acc += j
            if acc > 40:
                break
        return acc

    got = run_map(body, [x], i32)
    np.testing.assert_array_equal(got, [ref(int(v)) for v in x])


# ---------------------------------------------------------------- subgroup ops


def run_lanes(fn, inputs: list, out_t: ScalarType, grid=2, arch=None) -> np.ndarray:
    """Like run_map but with every lane active (collectives need whole warps)."""
    n = grid * BLOCK
    ins = [arr(f"x{k}", scalar_type_of(a)) for k, a in enumerate(inputs)]
    out = arr("out", out_t)

    def build(b):
        i = global_index(b)
        b.op("store", out, i, fn(b, *[b.op("load", a, i) for a in ins]))

    result = poison(n, out_t.dtype)
    launch(kernel("lanes", ins + [out], build), grid, *inputs, result, arch=arch)
    return result


def _by_cluster(x, cluster):
    return x.reshape(-1, cluster)


@pytest.mark.parametrize("arch", [None, "sm_70"])  # sm_70: butterflies instead of redux.sync
@pytest.mark.parametrize("cluster", [32, 8])
@pytest.mark.parametrize("kind", ["add", "min", "max"])
@pytest.mark.parametrize("t", NUMS, ids=str)
def test_sg_reduce(t, kind, cluster, arch, rng):
    x = sample(t, 2 * BLOCK, rng, special=t.is_int)
    reduce = lambda b, v: b.op("sg_reduce", v, op=kind, cluster=cluster)  # noqa: E731
    got = run_lanes(reduce, [x], t, arch=arch)
    c = _by_cluster(x, cluster)
    ufunc = {
        "add": np.add,
        "min": np.fmin if t.is_float else np.minimum,
        "max": np.fmax if t.is_float else np.maximum,
    }[kind]
    want = np.repeat(ufunc.reduce(c, axis=1, dtype=t.dtype), cluster)
    if t.is_float and kind == "add":
        np.testing.assert_allclose(got, want, rtol=1e-5 if t is f32 else 1e-12, atol=1e-3)
    else:
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("inclusive", [True, False])
@pytest.mark.parametrize("cluster", [32, 4])
@pytest.mark.parametrize("t", [i32, u64, f32, f64], ids=str)
def test_sg_scan(t, cluster, inclusive, rng):
    x = sample(t, 2 * BLOCK, rng, special=False)
    got = run_lanes(
        lambda b, v: b.op("sg_scan", v, op="add", inclusive=inclusive, cluster=cluster), [x], t
    )
    inc = np.cumsum(_by_cluster(x, cluster), axis=1, dtype=t.dtype)
    want = (
        inc
        if inclusive
        else np.concatenate([np.zeros((inc.shape[0], 1), t.dtype), inc[:, :-1]], axis=1)
    )
    if t.is_float:
        np.testing.assert_allclose(got, want.ravel(), rtol=1e-5 if t is f32 else 1e-12, atol=1e-3)
    else:
        np.testing.assert_array_equal(got, want.ravel())


@pytest.mark.parametrize("kind", ["min", "max"])
def test_sg_scan_min_max(kind, rng):
    x = sample(i64, 2 * BLOCK, rng)
    got = run_lanes(lambda b, v: b.op("sg_scan", v, op=kind, inclusive=True, cluster=16), [x], i64)
    ufunc = np.minimum if kind == "min" else np.maximum
    np.testing.assert_array_equal(got, ufunc.accumulate(_by_cluster(x, 16), axis=1).ravel())


@pytest.mark.parametrize("t", SCALAR_TYPES, ids=str)
@pytest.mark.parametrize("src_t", [i32, u64], ids=str)
def test_sg_shuffle(t, src_t, rng):
    x = sample(t, 2 * BLOCK, rng)
    src = rng.integers(0, 100, 2 * BLOCK).astype(src_t.dtype)  # taken mod 32
    got = run_lanes(lambda b, v, s: b.op("sg_shuffle", v, s), [x, src], t)
    warp_base = (np.arange(2 * BLOCK) // 32) * 32
    np.testing.assert_array_equal(got, x[warp_base + src.astype(np.int64) % 32])


@pytest.mark.parametrize("cluster", [32, 8, 1])
def test_sg_votes(cluster, rng):
    p = rng.random(2 * BLOCK) < 0.7
    p[:cluster] = True  # one cluster all true, one all false
    p[cluster : 2 * cluster] = False
    c = _by_cluster(p, cluster)
    bal = run_lanes(lambda b, v: b.op("sg_ballot", v, cluster=cluster), [p], u64)
    weights = (1 << np.arange(cluster, dtype=np.uint64)).astype(np.uint64)
    want = np.repeat((c.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64), cluster)
    np.testing.assert_array_equal(bal, want)
    any_ = run_lanes(lambda b, v: b.op("sg_any", v, cluster=cluster), [p], bool_)
    np.testing.assert_array_equal(any_, np.repeat(c.any(axis=1), cluster))
    all_ = run_lanes(lambda b, v: b.op("sg_all", v, cluster=cluster), [p], bool_)
    np.testing.assert_array_equal(all_, np.repeat(c.all(axis=1), cluster))


def test_logical_warps_folded_onto_warps(W, rng):
    """A logical kernel (lane, warp_sum, prefix sum, shuffle, ballot) folded for W on H=32."""
    warps, grid = 2, 3
    x_arr = arr("x", i32)
    outs = {
        name: arr(name, u64 if name == "bal" else i32) for name in ("sum", "scan", "shf", "bal")
    }
    n = warps * W * grid

    def build(b):
        lane, warp = b.op("lane"), b.op("warp_id")
        w = b.op("add", b.op("mul", b.op("block_id"), b.op("num_warps")), warp)
        g = b.op("add", b.op("mul", w, C(W)), lane)
        v = b.op("load", x_arr, g)
        res = {
            "sum": b.op("warp_sum", v),
            "scan": b.op("warp_prefix_sum", v),
            "shf": b.op("shuffle", v, b.op("sub", C(W - 1), lane)),
            "bal": b.op("ballot", b.op("gt", v, C(0))),
        }
        for name, value in res.items():
            b.op("store", outs[name], g, value)

    logical = ir.Builder()
    build(logical)
    k = ir.Kernel(
        "folded", [x_arr, *outs.values()], logical.block, attrs={"warp_width": W, "warps": warps}
    )
    lowered = fold_lanes(k, 32, warps, {})
    x = rng.integers(-50, 50, n).astype(np.int32)
    got = {name: poison(n, np.uint64 if name == "bal" else np.int32) for name in outs}
    options = BuildOptions(backend="cuda", warp_width=W, warps=warps)
    BACKEND.launch(BACKEND.compile(lowered, options), lowered, options, grid, [x, *got.values()])
    warp_of = x.reshape(-1, W)
    np.testing.assert_array_equal(got["sum"], np.repeat(warp_of.sum(axis=1), W))
    np.testing.assert_array_equal(got["scan"], np.cumsum(warp_of, axis=1).ravel())
    np.testing.assert_array_equal(got["shf"], warp_of[:, ::-1].ravel())
    bits = (warp_of > 0).astype(np.uint64) << np.arange(W, dtype=np.uint64)
    np.testing.assert_array_equal(got["bal"], np.repeat(np.bitwise_or.reduce(bits, axis=1), W))


# ---------------------------------------------------------------- memory


ATOMIC_REF = {
    "add": np.add,
    "min": np.minimum,
    "max": np.maximum,
    "and": np.bitwise_and,
    "or": np.bitwise_or,
    "xor": np.bitwise_xor,
}
SLOTS = 4


def _run_atomic(kind, t, values, init, order="relaxed", scope="device"):
    mem, vals, olds, count = arr("mem", t), arr("vals", t), arr("olds", t), ir.Var("n", i32)

    def build(b):
        i = global_index(b)
        body = b.nested()
        v = body.op("load", vals, i)
        old = body.op(
            "atomic", mem, body.op("mod", i, C(SLOTS)), v, op=kind, order=order, scope=scope
        )
        body.op("store", olds, i, old)
        b.emit(ir.If(b.op("lt", i, count), body.block, []))

    memory, old_values = init.copy(), poison(len(values), t.dtype)
    launch(
        kernel("atomics", [mem, vals, olds, count], build),
        -(-len(values) // BLOCK),
        memory,
        values,
        old_values,
        np.int32(len(values)),
    )
    return memory, old_values


# Bitwise atomics are integer-only (floats are a CompileError, tested in test_ptx).
ATOMIC_CASES = [
    (t, kind)
    for t in NUMS
    for kind in ATOMIC_REF.keys() | {"exchange"}
    if t.is_int or kind not in ("and", "or", "xor")
]


@pytest.mark.parametrize(
    "order,scope", [("relaxed", "device"), ("acq_rel", "block"), ("seq_cst", "device")]
)
@pytest.mark.parametrize("t,kind", sorted(ATOMIC_CASES, key=str), ids=str)
def test_atomics(t, kind, order, scope, rng):
    values = sample(t, N, rng, special=False)
    init = sample(t, SLOTS, rng, special=False)
    if t.is_float:
        init[0] = np.nan  # min/max (minNum) replace a NaN in memory
    memory, olds = _run_atomic(kind, t, values, init, order, scope)
    for s in range(SLOTS):
        mine = values[s::SLOTS]
        if kind == "exchange":  # the old values and the final one are the inputs, permuted
            seen = np.sort(np.append(olds[s::SLOTS], memory[s]))
            np.testing.assert_array_equal(seen, np.sort(np.append(mine, init[s])))
        elif t.is_float and kind == "add":
            np.testing.assert_allclose(
                memory[s], init[s] + mine.astype(np.float64).sum(), rtol=1e-4
            )
        else:
            ufunc = ATOMIC_REF[kind]
            if t.is_float:
                ufunc = np.fmin if kind == "min" else np.fmax
            want = ufunc.reduce(np.append(init[s], mine).astype(t.dtype), dtype=t.dtype)
            np.testing.assert_array_equal(memory[s], want)


def test_atomic_add_returns_distinct_old_values():
    memory, olds = _run_atomic("add", u32, np.ones(N, np.uint32), np.zeros(SLOTS, np.uint32))
    for s in range(SLOTS):
        np.testing.assert_array_equal(np.sort(olds[s::SLOTS]), np.arange(len(olds[s::SLOTS])))
        assert memory[s] == len(olds[s::SLOTS])


@pytest.mark.parametrize("order", ["relaxed", "seq_cst"])
@pytest.mark.parametrize("t", [i32, u64, f32, f64], ids=str)
def test_atomic_cas_has_one_winner_per_slot(t, order, rng):
    """Every lane swaps its id into its slot if the slot still holds the initial value."""
    mem, first, olds, count = arr("mem", t), arr("first", t), arr("olds", t), ir.Var("n", i32)

    def build(b):
        i = global_index(b)
        body = b.nested()
        slot = body.op("mod", i, C(SLOTS))
        expected = body.op("load", first, slot)
        mine = body.op("cast", i, type=t)
        swapped = body.op("atomic_cas", mem, slot, expected, mine, order=order, scope="device")
        body.op("store", olds, i, swapped)
        b.emit(ir.If(b.op("lt", i, count), body.block, []))

    init = (10**6 + rng.permutation(SLOTS)).astype(t.dtype)  # no lane has such an id
    memory, old_values = init.copy(), poison(N, t.dtype)
    launch(
        kernel("cas", [mem, first, olds, count], build), GRID, memory, init, old_values, np.int32(N)
    )
    for s in range(SLOTS):
        mine = old_values[s::SLOTS]
        winners = np.flatnonzero(mine == init[s])
        assert len(winners) == 1
        assert memory[s] == winners[0] * SLOTS + s  # the winner's id
        np.testing.assert_array_equal(np.delete(mine, winners), memory[s])


@pytest.mark.parametrize("n_shared", [100, 16384])  # 16384 f32 = 64 KiB: dynamic, opted in
def test_shared_memory_and_barrier(n_shared, rng):
    """Each block writes its slice reversed into block memory, then reads it back."""
    x, out = arr("x", f32), arr("out", f32)
    smem = arr("smem", f32, "shared")

    def build(b):
        b.emit(ir.Op(smem, "shared_alloc", (), {"n": n_shared}))
        t = b.op("add", b.op("mul", b.op("sg_id"), C(32)), b.op("sg_lane"))
        base = b.op("mul", b.op("block_id"), C(BLOCK))
        pos = b.op("sub", C(n_shared - 1), t)
        b.op("store", smem, pos, b.op("load", x, b.op("add", base, t)))
        b.op("barrier")
        mirrored = b.op("sub", C(n_shared - 1), b.op("sub", C(BLOCK - 1), t))
        b.op("store", out, b.op("add", base, t), b.op("load", smem, mirrored))

    data = rng.standard_normal(GRID * BLOCK).astype(np.float32)
    result = poison(GRID * BLOCK, np.float32)
    launch(kernel("smem", [x, out], build), GRID, data, result)
    np.testing.assert_array_equal(result, data.reshape(GRID, BLOCK)[:, ::-1].ravel())


def test_block_all_and_shared_atomics(rng):
    x, out = arr("x", i32), arr("out", i32)
    counter = arr("counter", i32, "shared")

    def build(b):
        b.emit(ir.Op(counter, "shared_alloc", (), {"n": 1}))
        t = b.op("add", b.op("mul", b.op("sg_id"), C(32)), b.op("sg_lane"))
        first = b.nested()
        first.op("store", counter, C(0), C(0))
        b.emit(ir.If(b.op("eq", t, C(0)), first.block, []))
        b.op("barrier")
        b.op("atomic", counter, C(0), C(1), op="add", order="relaxed", scope="block")
        v = b.op("load", x, b.op("add", b.op("mul", b.op("block_id"), C(BLOCK)), t))
        every = b.op("block_all", b.op("gt", v, C(0)))
        count = b.op("load", counter, C(0))
        b.op("store", out, b.op("add", b.op("mul", b.op("block_id"), C(2)), C(0)), count)
        b.op(
            "store",
            out,
            b.op("add", b.op("mul", b.op("block_id"), C(2)), C(1)),
            b.op("cast", every, type=i32),
        )

    data = rng.integers(1, 100, 3 * BLOCK).astype(np.int32)
    data[BLOCK + 5] = -3  # block 1 has one non-positive value
    result = poison(6, np.int32)
    launch(kernel("block_all", [x, out], build), 3, data, result)
    np.testing.assert_array_equal(result, [BLOCK, 1, BLOCK, 0, BLOCK, 1])


def test_message_passing_between_warps_with_release_acquire(rng):
    """Warp 0 writes data then a release flag; warp 1 spins (bounded) on an acquire load."""
    data, flag, out = arr("data", i32), arr("flag", i32), arr("out", i32)

    def build(b):
        w, lane = b.op("sg_id"), b.op("sg_lane")
        blk = b.op("block_id")
        slot = b.op("add", b.op("mul", blk, C(32)), lane)
        producer, consumer = b.nested(), b.nested()
        producer.op("store", data, slot, producer.op("add", slot, C(1000)))
        producer.op("store", flag, slot, C(1), order="release", scope="device")
        seen, tries = consumer.tmp(i32, "seen"), consumer.tmp(i32, "tries")
        consumer.assign(tries, C(0))
        header, body, latch = consumer.nested(), consumer.nested(), consumer.nested()
        go = header.op("lt", tries, C(10_000_000))
        body.assign(seen, body.op("load", flag, slot, order="acquire", scope="device"))
        done = body.nested()
        done.emit(ir.Break())
        body.emit(ir.If(body.op("ne", seen, C(0)), done.block, []))
        latch.assign(tries, latch.op("add", tries, C(1)))
        consumer.emit(ir.Loop(header.block, go, body.block, latch.block))
        consumer.op("store", out, slot, consumer.op("load", data, slot))
        b.emit(ir.If(b.op("eq", w, C(0)), producer.block, consumer.block))

    grid = 4
    result, flags = poison(grid * 32, np.int32), np.zeros(grid * 32, np.int32)
    launch(kernel("mp", [data, flag, out], build), grid, poison(grid * 32, np.int32), flags, result)
    np.testing.assert_array_equal(result, np.arange(grid * 32) + 1000)


def test_timer_and_sleep():
    out = arr("out", u64)

    def build(b):
        i = global_index(b)
        t0 = b.op("timer")
        b.op("sleep", b.op("mul", b.op("sg_lane"), C(100)))
        b.op("fence", scope="device", order="seq_cst")
        b.op("sg_barrier")
        b.op("store", out, i, b.op("sub", b.op("timer"), t0))

    result = poison(BLOCK, np.uint64)
    launch(kernel("clock", [out], build), 1, result)
    assert (result < 10**9).all()  # monotone: no wrap-around from a negative difference


# ---------------------------------------------------------------- runtime


def _copy_kernel(t=f32):
    x, y = arr("x", t), arr("y", t)

    def build(b):
        i = global_index(b)
        b.op("store", y, i, b.op("mul", b.op("load", x, i), C(2.0 if t.is_float else 2, t)))

    return kernel("twice", [x, y], build)


def test_device_arrays_timing_and_interface(rng):
    data = rng.standard_normal(BLOCK).astype(np.float32)
    x, y = runtime.to_device(data), runtime.to_device(poison(BLOCK, np.float32))
    ms = launch(_copy_kernel(), 1, x, y, timed=True)
    assert isinstance(ms, float) and ms > 0
    np.testing.assert_array_equal(y.numpy(), data * 2)
    assert y.__cuda_array_interface__["data"][0] == y.ptr
    x.close()
    x.close()  # idempotent


def test_cuda_array_interface_is_zero_copy(rng):
    class Foreign:  # only the interface, as CuPy or numba expose it
        def __init__(self, a):
            self.a = a
            self.__cuda_array_interface__ = a.__cuda_array_interface__

    data = rng.standard_normal(BLOCK).astype(np.float32)
    x, y = runtime.to_device(data), runtime.empty(BLOCK, np.float32)
    launch(_copy_kernel(), 1, Foreign(x), Foreign(y))
    np.testing.assert_array_equal(y.numpy(), data * 2)


def test_cooperative_launch_checks_residency(rng):
    data = rng.standard_normal(BLOCK * 2).astype(np.float32)
    out = poison(BLOCK * 2, np.float32)
    launch(_copy_kernel(), 2, data, out, cooperative=True)
    np.testing.assert_array_equal(out, data * 2)
    with pytest.raises(ValueError, match="cooperative"):
        launch(_copy_kernel(), 10**6, data, out, cooperative=True)


@pytest.mark.parametrize(
    "bad,error,match",
    [
        ([np.zeros(BLOCK, np.float64), np.zeros(BLOCK, np.float32)], TypeError, "dtype float32"),
        ([np.zeros((2, BLOCK), np.float32), np.zeros(BLOCK, np.float32)], ValueError, "1-D"),
        (
            [np.zeros(2 * BLOCK, np.float32)[::2], np.zeros(BLOCK, np.float32)],
            ValueError,
            "contiguous",
        ),
        ([np.zeros(BLOCK, np.float32)], TypeError, "2 argument"),
        ([[1.0] * BLOCK, np.zeros(BLOCK, np.float32)], TypeError, "must be an array"),
    ],
)
def test_bad_arguments_fail_before_launch(bad, error, match):
    before = bad[-1].copy() if isinstance(bad[-1], np.ndarray) else None
    with pytest.raises(error, match=match):
        launch(_copy_kernel(), 1, *bad)
    if before is not None:
        np.testing.assert_array_equal(bad[-1], before)


def test_bad_scalars_fail_before_launch():
    out, n, flag = arr("out", i32), ir.Var("n", i32), ir.Var("flag", bool_)
    k = kernel("scalars", [out, n, flag], lambda b: None)
    with pytest.raises(ValueError, match="does not fit"):
        launch(k, 1, np.zeros(4, np.int32), 2**40, True)
    with pytest.raises(TypeError, match="must be a bool"):
        launch(k, 1, np.zeros(4, np.int32), 3, 1)
    with pytest.raises(TypeError, match="integer"):
        launch(k, 1, np.zeros(4, np.int32), 3.5, True)


def test_jit_errors_carry_the_driver_log():
    with pytest.raises(runtime.CudaError, match="cuModuleLoadDataEx"):
        runtime.get_device().function(".version 8.0\n.target sm_70\nnot ptx", "k")


def test_caps_describe_the_device():
    caps = BACKEND.caps()
    assert caps.arch in ("sm_70", "sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
    assert caps.subgroup_size == 32 and caps.timer
    assert caps.progress == {"lane": True, "warp": True, "block": False}
    assert caps.shared_memory_bytes >= 48 * 1024


@pytest.mark.parametrize("lib", ["cupy", "torch"])
def test_zero_copy_from_cupy_and_torch(lib, rng):
    mod = pytest.importorskip(lib, reason=f"{lib} is not installed")
    data = rng.standard_normal(BLOCK).astype(np.float32)
    if lib == "cupy":
        x, y = mod.asarray(data), mod.full(BLOCK, mod.nan, dtype=mod.float32)
        launch(_copy_kernel(), 1, x, y)
        result = mod.asnumpy(y)
    else:
        if not mod.cuda.is_available():
            pytest.skip("torch has no CUDA device")
        x = mod.from_numpy(data).cuda()
        y = mod.full((BLOCK,), float("nan"), device="cuda")
        launch(_copy_kernel(), 1, x, y)
        result = y.cpu().numpy()
        with pytest.raises(TypeError, match="dtype float32"):
            launch(_copy_kernel(), 1, x.double(), y)
    np.testing.assert_array_equal(result, data * 2)


def test_waits_between_blocks_launch_cooperatively():
    """aw.Event waits need every block resident: launched cooperatively, refused when too big."""
    from test_kernel import event_chain

    k = event_chain.with_options(backend="cuda")
    flags = np.zeros(64, np.int32)
    out = np.full(64 * 32, -1, np.int32)
    k[64](flags, out)
    np.testing.assert_array_equal(out, np.repeat(np.arange(64), 32))
    big = 10**6
    with pytest.raises(ValueError, match="launch at most"):
        k[big](np.zeros(big, np.int32), np.zeros(big * 32, np.int32))
