"""Language cases: arithmetic per type, casts, comparisons, logic, loops, device functions, math.

One element per lane; references are numpy implementations of the semantics
fixed in asyncwarp.core.ops (Python floor division, clamped shifts, saturating
casts, IEEE minNum).
"""

import numpy as np

import asyncwarp as aw

from ..case import CaseContext, case
from ._common import expect_equal_nan, global_lane, lanes

# Module constants read by kernels: compile-time constants (internals: a global
# int/float that is not a bool is folded into the kernel).
SCALE = 3
BIAS = 0.25
UNROLL = 4

INT_DTYPES = ("int32", "uint32", "int64", "uint64")


# ------------------------------------------------------------------ integer arithmetic


@aw.kernel
def int_arith(a, b, out, n: aw.i32):
    i = global_lane()
    if i < n:
        x = a[i]
        y = b[i]
        out[8 * i + 0] = x + y
        out[8 * i + 1] = x - y
        out[8 * i + 2] = x * y
        out[8 * i + 3] = x // y
        out[8 * i + 4] = x % y
        out[8 * i + 5] = -x
        out[8 * i + 6] = abs(x)
        out[8 * i + 7] = (x & y) | (x ^ ~y)


def _int_operands(ctx: CaseContext, dt: np.dtype, n: int) -> tuple[np.ndarray, np.ndarray]:
    info = np.iinfo(dt)
    # full-range operands for the wrapping ops; the divisor mixes small values
    # of both signs (and zero) so floor division and modulo see every sign case
    a = ctx.rng.integers(info.min + 1, info.max, n, dtype=dt, endpoint=True)
    a[: n // 4] = ctx.rng.integers(-50 if info.min else 0, 50, n // 4)
    b = ctx.rng.integers(-9 if info.min else 0, 10, n).astype(dt)
    b[n // 2 :] = ctx.rng.integers(info.min + 1, info.max, n - n // 2, dtype=dt, endpoint=True)
    return a, b


def _int_arith_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        one = np.ones_like(b)
        safe = np.where(b == 0, one, b)
        # ops doc: integer division by zero gives 0 (floordiv) and a (mod)
        fdiv = np.where(b == 0, np.zeros_like(a), a // safe)
        mod = np.where(b == 0, a, a % safe)
        cols = [a + b, a - b, a * b, fdiv, mod, -a, np.abs(a), (a & b) | (a ^ ~b)]
    return np.stack(cols, axis=1).ravel()


def _register_int_arith(dtype: str) -> None:
    def run(ctx: CaseContext) -> None:
        dt = np.dtype(dtype)
        n = lanes(ctx, 2, 2) - 5  # a partial last warp: lanes past n must not write
        a, b = _int_operands(ctx, dt, n)
        out = ctx.poisoned(8 * n, dt)
        ctx.run(int_arith, 2, a, b, out, n, warps=2)
        ctx.expect_equal(out, _int_arith_reference(a, b), what=f"{dtype} arithmetic")

    run.__doc__ = (
        f"{dtype}: wrapping + - *, Python // and % of negatives and by zero, neg, abs, bitwise ops"
    )
    case("language", f"int_arith_{dtype}")(run)


for _dtype in INT_DTYPES:
    _register_int_arith(_dtype)


# ------------------------------------------------------------------ float arithmetic


@aw.kernel
def float_arith(a, b, out, n: aw.i32):
    i = global_lane()
    if i < n:
        x = a[i]
        y = b[i]
        out[7 * i + 0] = x + y
        out[7 * i + 1] = x - y
        out[7 * i + 2] = x * y
        out[7 * i + 3] = x / y
        out[7 * i + 4] = x // y
        out[7 * i + 5] = x % y
        out[7 * i + 6] = -x * 2 + 1


def _register_float_arith(dtype: str) -> None:
    def run(ctx: CaseContext) -> None:
        dt = np.dtype(dtype)
        n = lanes(ctx, 2, 1)
        a = ctx.rng.uniform(-100, 100, n).astype(dt)
        b = ctx.rng.uniform(-10, 10, n).astype(dt)
        b[np.abs(b) < 0.01] = 0.5
        out = ctx.poisoned(7 * n, dt)
        ctx.run(float_arith, 2, a, b, out, n)
        # ops doc: float floordiv = floor(a / b), mod = a - floor(a / b) * b
        q = a / b
        fl = np.floor(q)
        want = np.stack(
            [a + b, a - b, a * b, q, fl, a - fl * b, -a * dt.type(2) + dt.type(1)], axis=1
        ).ravel()
        tol = 1e-5 if dt == np.float32 else 1e-12
        got = out.reshape(n, 7)
        ref = want.reshape(n, 7)
        # floor(a/b) is exact unless a/b sits within rounding of an integer
        ctx.expect_equal(got[:, 4], ref[:, 4], what=f"{dtype} //")
        ctx.expect_close(got, ref, rtol=tol, atol=tol * 100, what=f"{dtype} arithmetic")

    run.__doc__ = f"{dtype}: + - * /, Python // and % (floor semantics), negation"
    case("language", f"float_arith_{dtype}")(run)


for _dtype in ("float32", "float64"):
    _register_float_arith(_dtype)


# ------------------------------------------------------------------ shifts


@aw.kernel
def shifts(x, s, out, n: aw.i32):
    i = global_lane()
    if i < n:
        out[2 * i] = x[i] << s[i]
        out[2 * i + 1] = x[i] >> s[i]


def _shift_reference(x: np.ndarray, s: np.ndarray) -> np.ndarray:
    bits = x.dtype.itemsize * 8
    signed = x.dtype.kind == "i"
    small = np.where(s >= bits, 0, s).astype(x.dtype)
    with np.errstate(all="ignore"):
        # ops doc: amounts >= width give 0 (shl, logical shr) or the sign (arithmetic shr)
        shl = np.where(s >= bits, 0, x << small).astype(x.dtype)
        sign = np.where(x < 0, -1, 0).astype(x.dtype) if signed else np.zeros_like(x)
        shr = np.where(s >= bits, sign, x >> small).astype(x.dtype)
    return np.stack([shl, shr], axis=1).ravel()


@case("language")
def shifts_clamped(ctx: CaseContext) -> None:
    """<< and >> on i32/u32/i64/u64: arithmetic vs logical, amounts >= the width clamp"""
    n = lanes(ctx, 1, 2)
    for dtype in INT_DTYPES:
        dt = np.dtype(dtype)
        info = np.iinfo(dt)
        x = ctx.rng.integers(info.min, info.max, n, dtype=dt, endpoint=True)
        s = ctx.rng.integers(0, dt.itemsize * 8 + 8, n).astype(dt)
        out = ctx.poisoned(2 * n, dt)
        ctx.run(shifts, 1, x, s, out, n, warps=2)
        ctx.expect_equal(out, _shift_reference(x, s), what=f"{dtype} shifts")


# ------------------------------------------------------------------ casts


@aw.kernel
def float_casts(
    x: aw.Array[aw.f32],
    oi: aw.Array[aw.i32],
    ou: aw.Array[aw.u32],
    ol: aw.Array[aw.i64],
    od: aw.Array[aw.f64],
    n: aw.i32,
):
    i = global_lane()
    if i < n:
        v = x[i]
        oi[2 * i] = aw.i32(v)
        oi[2 * i + 1] = int(v)
        ou[i] = aw.u32(v)
        ol[i] = aw.i64(v)
        od[i] = aw.f64(v)


@aw.kernel
def int_casts(
    k: aw.Array[aw.i64], of: aw.Array[aw.f32], oi: aw.Array[aw.i32], ou: aw.Array[aw.u64], n: aw.i32
):
    i = global_lane()
    if i < n:
        v = k[i]
        w = aw.i32(v)
        of[i] = aw.f32(w)
        oi[3 * i] = w
        oi[3 * i + 1] = aw.i32(aw.u32(w) >> 1)
        oi[3 * i + 2] = aw.i32(aw.bool_(w)) + aw.i32(bool(v & 1)) * 2
        ou[i] = aw.u64(w)


def _saturate(x: np.ndarray, dt: np.dtype) -> np.ndarray:
    info = np.iinfo(dt)
    t = np.trunc(x.astype(np.float64))
    out = np.zeros(x.shape, dtype=dt)
    ok = ~np.isnan(t) & (t > float(info.min) - 1) & (t < float(info.max) + 1)
    with np.errstate(all="ignore"):
        out[ok] = t[ok].astype(dt)
    out[~np.isnan(t) & (t >= float(info.max) + 1)] = info.max
    out[~np.isnan(t) & (t <= float(info.min) - 1)] = info.min
    return out  # NaN -> 0


@case("language")
def casts_saturating(ctx: CaseContext) -> None:
    """float -> int truncates toward zero, saturates, NaN -> 0; int -> float/int/bool casts"""
    n = lanes(ctx, 2)
    x = ctx.rng.uniform(-5e9, 5e9, n).astype(np.float32)
    x[:16] = [
        np.nan,
        np.inf,
        -np.inf,
        -0.7,
        0.7,
        -1.5,
        2.5,
        3e9,
        -3e9,
        1e19,
        -1e19,
        4.3e9,
        2147483520.0,
        -2147483648.0,
        -1.0,
        0.0,
    ]
    x[16 : n // 2] = ctx.rng.uniform(-1000, 1000, n // 2 - 16).astype(np.float32)
    oi, ou = ctx.poisoned(2 * n, np.int32), ctx.poisoned(n, np.uint32)
    ol, od = ctx.poisoned(n, np.int64), ctx.poisoned(n, np.float64)
    ctx.run(float_casts, 2, x, oi, ou, ol, od, n)
    want_i = _saturate(x, np.dtype(np.int32))
    ctx.expect_equal(oi[0::2], want_i, what="aw.i32(f32)")
    ctx.expect_equal(oi[1::2], want_i, what="int(f32)")
    ctx.expect_equal(ou, _saturate(x, np.dtype(np.uint32)), what="aw.u32(f32)")
    ctx.expect_equal(ol, _saturate(x, np.dtype(np.int64)), what="aw.i64(f32)")
    expect_equal_nan(ctx, od, x.astype(np.float64), what="aw.f64(f32)")

    k = ctx.rng.integers(-(2**40), 2**40, n, dtype=np.int64)
    k[:6] = [0, 1, -1, 2**31, 2**24 + 1, -(2**31) - 1]
    of, oi3, ou64 = (
        ctx.poisoned(n, np.float32),
        ctx.poisoned(3 * n, np.int32),
        ctx.poisoned(n, np.uint64),
    )
    ctx.run(int_casts, 2, k, of, oi3, ou64, n)
    w = k.astype(np.int32)  # i64 -> i32 keeps the low 32 bits (two's complement)
    ctx.expect_equal(oi3[0::3], w, what="aw.i32(i64)")
    ctx.expect_equal(of, w.astype(np.float32), what="aw.f32(i32) rounds to nearest")
    ctx.expect_equal(
        oi3[1::3], (w.view(np.uint32) >> 1).astype(np.int32), what="aw.u32(i32) reinterprets"
    )
    ctx.expect_equal(
        oi3[2::3], (w != 0).astype(np.int32) + 2 * (k & 1).astype(np.int32), what="bool casts"
    )
    ctx.expect_equal(ou64, w.astype(np.uint64), what="aw.u64(i32) sign-extends")


# ------------------------------------------------------------------ comparisons and logic


@aw.kernel
def comparisons(a, b, c, out: aw.Array[aw.i32], n: aw.i32):
    i = global_lane()
    if i < n:
        x = a[i]
        y = b[i]
        z = c[i]
        bits = aw.i32(x < y) | (aw.i32(x <= y) << 1) | (aw.i32(x > y) << 2)
        bits = bits | (aw.i32(x >= y) << 3) | (aw.i32(x == y) << 4) | (aw.i32(x != y) << 5)
        bits = bits | (aw.i32(x < y <= z) << 6) | (aw.i32(x == y == z) << 7)
        bits = bits | (aw.i32(not x < z) << 8) | (aw.i32(y > x > z >= y) << 9)
        out[i] = bits


def _comparison_reference(x, y, z) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        parts = [
            x < y,
            x <= y,
            x > y,
            x >= y,
            x == y,
            x != y,
            (x < y) & (y <= z),
            (x == y) & (y == z),
            ~(x < z),
            (y > x) & (x > z) & (z >= y),
        ]
    return sum(p.astype(np.int32) << k for k, p in enumerate(parts)).astype(np.int32)


@case("language")
def comparisons_and_chains(ctx: CaseContext) -> None:
    """< <= > >= == != and chains on f32 (NaN: only != holds), u32 above 2**31, i64"""
    n = lanes(ctx, 2)
    for dtype in ("float32", "uint32", "int64"):
        dt = np.dtype(dtype)
        pool = (
            ctx.rng.integers(0, 2**32, 12) if dt.kind == "u" else ctx.rng.integers(-4, 4, 12)
        ).astype(dt)
        if dt.kind == "f":
            pool[0] = np.nan
        a, b, c = (ctx.rng.choice(pool, n) for _ in range(3))
        out = ctx.poisoned(n, np.int32)
        ctx.run(comparisons, 2, a, b, c, out, n)
        ctx.expect_equal(out, _comparison_reference(a, b, c), what=f"{dtype} comparisons")


@aw.kernel
def logic(
    x: aw.Array[aw.f32], k: aw.Array[aw.i32], out: aw.Array[aw.i32], n: aw.i32, flag: aw.bool_
):
    i = global_lane()
    r = 0
    # short-circuit: x[i] must not be read for lanes past n (it would be out of bounds)
    if i < n and x[i] > 0.5:
        r = r | 1
    if i >= n or x[i] < -0.5:
        r = r | 2
    if i < n:
        if not k[i]:
            r = r | 4
        if k[i] and flag:
            r = r | 8
        if (x[i] > 0.0 or k[i] > 2) and not (x[i] > 0.9):
            r = r | 16
        v = x[i] if k[i] > 0 else -x[i]
        if v > 0.25:
            r = r | 32
    out[i] = r


@case("language")
def logic_short_circuit(ctx: CaseContext) -> None:
    """and/or/not with short-circuit (no out-of-bounds load), int truthiness, bool param, ?:"""
    total = lanes(ctx, 2, 2)
    n = total - 7
    x = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    k = ctx.rng.integers(-1, 5, n).astype(np.int32)
    for flag in (True, False):
        out = ctx.poisoned(total, np.int32)
        ctx.run(logic, 2, x, k, out, n, flag, warps=2)
        v = np.where(k > 0, x, -x)
        want = (
            (x > 0.5) * 1
            | (x < -0.5) * 2
            | (k == 0) * 4
            | ((k != 0) & flag) * 8
            | (((x > 0) | (k > 2)) & ~(x > 0.9)) * 16
            | (v > 0.25) * 32
        ).astype(np.int32)
        want = np.concatenate([want, np.full(total - n, 2, np.int32)])
        ctx.expect_equal(out, want, what=f"logic (flag={flag})")


@aw.kernel
def conditional_expr(x: aw.Array[aw.f32], out: aw.Array[aw.f32], n: aw.i32):
    i = global_lane()
    # the loaded arm is evaluated only where the condition holds (lanes past n read nothing)
    v = x[i] if i < n else -1.0
    w = v * 2.0 if v > 0.0 else (v - 1.0 if v > -0.5 else 0.0)
    out[i] = max(v, w) if i % 3 == 0 else min(v, w)


@case("language")
def conditional_expressions(ctx: CaseContext) -> None:
    """a if c else b: nested, with a load in one arm guarded by the condition"""
    total = lanes(ctx, 2)
    n = total - 3
    x = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    out = ctx.poisoned(total, np.float32)
    ctx.run(conditional_expr, 2, x, out, n)
    v = np.concatenate([x, np.full(3, -1.0, np.float32)])
    w = np.where(v > 0, v * 2, np.where(v > -0.5, v - 1, 0)).astype(np.float32)
    i = np.arange(total)
    ctx.expect_equal(out, np.where(i % 3 == 0, np.maximum(v, w), np.minimum(v, w)))


# ------------------------------------------------------------------ loops


@aw.kernel
def loops(x: aw.Array[aw.i32], out: aw.Array[aw.i32], n: aw.i32, step: aw.i32, back: aw.i32):
    i = global_lane()
    if i < n:
        # while with a divergent trip count and a break (Collatz steps, capped)
        v = x[i]
        steps = 0
        while v != 1:
            if steps >= 60:
                break
            v = v // 2 if v % 2 == 0 else 3 * v + 1
            steps += 1
        out[5 * i] = steps
        # for with continue: sum of j < x[i] % 40 that are not multiples of 3
        acc = 0
        for j in range(x[i] % 40):
            if j % 3 == 0:
                continue
            acc += j
        out[5 * i + 1] = acc
        # constant negative step
        acc = 0
        for j in range(x[i] % 17, -3, -2):
            acc = acc * 3 + j
        out[5 * i + 2] = acc
        # steps known only at run time (positive, then negative)
        acc = 0
        for j in range(i % 5, x[i] % 50, step):
            acc += j
        for j in range(x[i] % 23, 0, back):
            acc = acc - j
        out[5 * i + 3] = acc
        # nested loops, break out of the inner one only
        acc = 0
        for a in range(UNROLL):
            for b in range(10):
                if b > a + x[i] % 4:
                    break
                acc += a * b
        out[5 * i + 4] = acc


def _loops_reference(x: np.ndarray, step: int, back: int) -> np.ndarray:
    rows = []
    for i, v0 in enumerate(x.tolist()):
        v, steps = v0, 0
        while v != 1 and steps < 60:
            v = v // 2 if v % 2 == 0 else 3 * v + 1
            steps += 1
        s1 = sum(j for j in range(v0 % 40) if j % 3)
        s2 = 0
        for j in range(v0 % 17, -3, -2):
            s2 = s2 * 3 + j
        s3 = sum(range(i % 5, v0 % 50, step)) - sum(range(v0 % 23, 0, back))
        s4 = sum(a * b for a in range(UNROLL) for b in range(10) if b <= a + v0 % 4)
        rows.append([steps, s1, s2, s3, s4])
    return np.array(rows, dtype=np.int64).astype(np.int32).ravel()


@case("language")
def loops_break_continue(ctx: CaseContext) -> None:
    """while/for with break and continue, divergent trip counts, negative and run-time steps"""
    n = lanes(ctx, 1, 2)
    x = ctx.rng.integers(1, 200, n).astype(np.int32)
    out = ctx.poisoned(5 * n, np.int32)
    ctx.run(loops, 1, x, out, n, 3, -4, warps=2)
    ctx.expect_equal(out, _loops_reference(x, 3, -4), what="loops")


# ------------------------------------------------------------------ returns and functions


@aw.kernel
def early_return(x: aw.Array[aw.f32], out: aw.Array[aw.f32], n: aw.i32):
    i = global_lane()
    if i >= n:
        return
    if x[i] < 0.0:
        out[i] = 0.0
        return
    for k in range(4):
        if x[i] < 0.2 * (k + 1):
            out[i] = aw.f32(k)
            return
    out[i] = x[i]


@case("language")
def early_return_in_kernel(ctx: CaseContext) -> None:
    """return before the end of a kernel, also from inside a loop; lanes past n write nothing"""
    total = lanes(ctx, 2, 2)
    n = total - 9
    x = ctx.rng.uniform(-0.5, 1.5, n).astype(np.float32)
    out = ctx.poisoned(total, np.float32)
    ctx.run(early_return, 2, x, out, n, warps=2)
    want = np.where(x < 0, 0, x).astype(np.float32)
    for k in range(3, -1, -1):
        want = np.where((x >= 0) & (x < np.float32(0.2) * (k + 1)), np.float32(k), want)
    ctx.expect_equal(out[:n], want, what="written elements")
    ctx.expect(bool(np.isnan(out[n:]).all()), "lanes past n wrote to the output")


@aw.func
def div_mod(a, b):
    if b == 0:
        return 0, a
    return a // b, a % b


@aw.func
def first_multiple(start, base, limit):
    for k in range(limit):
        if (start + k) % base == 0:
            return k
    return -1


@aw.func
def scaled(v):
    q, r = div_mod(v, 7)
    return q * SCALE + r, first_multiple(v, 5 + r, 6)


@aw.kernel
def device_functions(x: aw.Array[aw.i32], out: aw.Array[aw.i32], y: aw.Array[aw.f32], n: aw.i32):
    i = global_lane()
    if i < n:
        a, b = scaled(x[i])
        q, r = div_mod(x[i], i % 4)
        out[4 * i] = a
        out[4 * i + 1] = b
        out[4 * i + 2] = q
        out[4 * i + 3] = r
        y[i] = aw.f32(x[i]) * SCALE + BIAS


@case("language")
def device_functions_tuples(ctx: CaseContext) -> None:
    """@aw.func with tuple returns, early returns from loops, nested calls, module constants"""
    n = lanes(ctx, 2)
    x = ctx.rng.integers(-100, 100, n).astype(np.int32)
    out = ctx.poisoned(4 * n, np.int32)
    y = ctx.poisoned(n, np.float32)
    ctx.run(device_functions, 2, x, out, y, n)
    rows = []
    for i, v in enumerate(x.tolist()):
        q, r = v // 7, v % 7
        base = 5 + r
        first = next((k for k in range(6) if (v + k) % base == 0), -1)
        d = i % 4
        rows.append([q * SCALE + r, first, v // d if d else 0, v % d if d else v])
    ctx.expect_equal(out, np.array(rows, dtype=np.int32).ravel(), what="integer results")
    ctx.expect_equal(
        y,
        x.astype(np.float32) * np.float32(SCALE) + np.float32(BIAS),
        what="float with module constants",
    )


@aw.kernel
def augmented(acc: aw.Array[aw.f32], x: aw.Array[aw.f32], cnt: aw.Array[aw.i32], n: aw.i32):
    i = global_lane()
    if i < n:
        acc[i] += x[i]
        acc[i] *= 2.0
        cnt[i] -= 3
        cnt[i] <<= 1
        cnt[i] ^= i


@case("language")
def augmented_assignment(ctx: CaseContext) -> None:
    """a[i] += v and friends on array elements (read-modify-write on prefilled data)"""
    n = lanes(ctx, 2)
    acc0 = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    cnt0 = ctx.rng.integers(-1000, 1000, n).astype(np.int32)
    x = ctx.rng.uniform(-1, 1, n).astype(np.float32)
    acc, cnt = acc0.copy(), cnt0.copy()
    ctx.run(augmented, 2, acc, x, cnt, n)
    ctx.expect_equal(acc, (acc0 + x) * np.float32(2), what="f32 += *=")
    ctx.expect_equal(cnt, ((cnt0 - 3) << 1) ^ np.arange(n, dtype=np.int32), what="i32 -= <<= ^=")


# ------------------------------------------------------------------ math


@aw.kernel
def algebraic_fns(x, out, n: aw.i32):
    i = global_lane()
    if i < n:
        a = x[i]
        out[4 * i + 0] = aw.sqrt(abs(a))
        out[4 * i + 1] = aw.floor(a * 3.0)
        out[4 * i + 2] = aw.ceil(a * 3.0)
        out[4 * i + 3] = a**3


@aw.kernel
def transcendental_fns(x, y, out, n: aw.i32):
    i = global_lane()
    if i < n:
        a = x[i]
        out[5 * i + 0] = aw.exp(a)
        out[5 * i + 1] = aw.log(abs(a) + 0.5)
        out[5 * i + 2] = aw.sin(a)
        out[5 * i + 3] = aw.cos(a)
        out[5 * i + 4] = (abs(a) + 0.5) ** y[i]


def _math_tolerance(dt: np.dtype) -> dict:
    # ops doc: f32 math within a few ulp (GPU fast paths); f64 within 1e-12 relative
    return dict(rtol=2e-5, atol=2e-6) if dt == np.float32 else dict(rtol=1e-12, atol=1e-14)


def _check_algebraic(ctx: CaseContext, dt: np.dtype) -> None:
    n = lanes(ctx, 2)
    x = ctx.rng.uniform(-3, 3, n).astype(dt)
    out = ctx.poisoned(4 * n, dt)
    ctx.run(algebraic_fns, 2, x, out, n)
    three = dt.type(3)
    want = np.stack([np.sqrt(np.abs(x)), np.floor(x * three), np.ceil(x * three), x * x * x], 1)
    ctx.expect_close(out.reshape(n, 4), want, **_math_tolerance(dt), what=f"{dt} sqrt/floor/...")


def _check_transcendental(ctx: CaseContext, dt: np.dtype) -> None:
    n = lanes(ctx, 2)
    x = ctx.rng.uniform(-3, 3, n).astype(dt)
    y = ctx.rng.uniform(-2, 2, n).astype(dt)
    out = ctx.poisoned(5 * n, dt)
    ctx.run(transcendental_fns, 2, x, y, out, n)
    base = np.abs(x) + dt.type(0.5)
    want = np.stack([np.exp(x), np.log(base), np.sin(x), np.cos(x), base**y], axis=1)
    ctx.expect_close(out.reshape(n, 5), want, **_math_tolerance(dt), what=f"{dt} exp/log/...")


@case("language")
def math_float32(ctx: CaseContext) -> None:
    """float32: sqrt floor ceil ** 3 exp log sin cos pow, within a few ulp"""
    _check_algebraic(ctx, np.dtype(np.float32))
    _check_transcendental(ctx, np.dtype(np.float32))


@case("language")
def math_float64(ctx: CaseContext) -> None:
    """float64: sqrt floor ceil and ** 3 within 1e-12 relative"""
    _check_algebraic(ctx, np.dtype(np.float64))


@case("language")
def math_float64_transcendental(ctx: CaseContext) -> None:
    """float64: exp log sin cos pow within 1e-12 relative (a backend may lack them: skip)"""
    try:
        _check_transcendental(ctx, np.dtype(np.float64))
    except aw.CompileError as e:
        if ctx.backend == "sim":  # the reference interpreter implements every op
            raise
        ctx.skip(f"the backend refuses f64 transcendentals: {e.message}")


@aw.kernel
def bit_and_minmax(
    u: aw.Array[aw.u32],
    s: aw.Array[aw.i64],
    f: aw.Array[aw.f32],
    oi: aw.Array[aw.i32],
    of: aw.Array[aw.f32],
    n: aw.i32,
):
    i = global_lane()
    if i < n:
        a = aw.i32(s[i] % 1000)
        b = aw.i32(u[i] % 1000) - 500
        oi[6 * i + 0] = aw.popcount(u[i])
        oi[6 * i + 1] = aw.popcount(s[i])
        oi[6 * i + 2] = min(a, b)
        oi[6 * i + 3] = max(a, b, 100)
        oi[6 * i + 4] = abs(b)
        oi[6 * i + 5] = aw.i32(min(u[i], aw.u32(3000000000)) >> 8)
        x = f[2 * i]
        y = f[2 * i + 1]
        of[3 * i + 0] = min(x, y)
        of[3 * i + 1] = max(x, y, -0.5)
        of[3 * i + 2] = abs(x)


@case("language")
def popcount_min_max_abs(ctx: CaseContext) -> None:
    """popcount on u32 and negative i64; min/max with 2 and 3 args (floats: NaN loses); abs"""
    n = lanes(ctx, 2)
    u = ctx.rng.integers(0, 2**32, n, dtype=np.uint32)
    s = ctx.rng.integers(-(2**62), 2**62, n, dtype=np.int64)
    f = ctx.rng.uniform(-1, 1, 2 * n).astype(np.float32)
    f[ctx.rng.choice(2 * n, n // 4, replace=False)] = np.nan
    oi, of = ctx.poisoned(6 * n, np.int32), ctx.poisoned(3 * n, np.float32)
    ctx.run(bit_and_minmax, 2, u, s, f, oi, of, n)
    a = (s % 1000).astype(np.int32)
    b = (u % 1000).astype(np.int32) - 500
    want_i = (
        np.stack(
            [
                np.bitwise_count(u),
                np.bitwise_count(s.view(np.uint64)),
                np.minimum(a, b),
                np.maximum(np.maximum(a, b), 100),
                np.abs(b),
                (np.minimum(u, np.uint32(3000000000)) >> 8).astype(np.int32),
            ],
            axis=1,
        )
        .astype(np.int32)
        .ravel()
    )
    ctx.expect_equal(oi, want_i, what="integer popcount/min/max/abs")
    x, y = f[0::2], f[1::2]
    # ops doc: float min/max return the other operand when one is NaN (IEEE minNum)
    want_f = np.stack(
        [np.fmin(x, y), np.fmax(np.fmax(x, y), np.float32(-0.5)), np.abs(x)], axis=1
    ).ravel()
    expect_equal_nan(ctx, of, want_f, what="float min/max/abs")
