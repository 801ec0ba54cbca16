"""PTX sequences for the transcendental ops: exp, log, sin, cos, pow (f32 and f64).

PTX has fast approximations only for f32 (ex2/lg2/sin/cos.approx) and nothing
for f64, so each op is a short software sequence: argument reduction, a
truncated Taylor polynomial, and selects for the special values.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ...core import ir
from ...core.types import ScalarType, f64
from .ptx_ops import SUFFIX, immediate

if TYPE_CHECKING:  # pragma: no cover
    from .ptx import PtxEmitter

# Accuracy measured on an H100 against numpy (tests/test_cuda_runtime.py): f32 exp
# <= 2 ulp, log <= 4, sin/cos <= 2 (reduced in f64), pow about one ulp per unit of
# |b log2 a| (ex2/lg2.approx: the fast path core/ops.py allows); f64 all within
# 2e-15 relative, where core/ops.py asks for 1e-12.
INF = float("inf")
NAN = float("nan")
LOG2E_HI, LOG2E_LO = 1.4426950216293335, 1.925963033500011e-08  # f32 split of log2(e)
LN2 = math.log(2.0)
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split
TWO_OVER_PI = 2.0 / math.pi
PIO2 = (1.5707963267948966, 6.123233995736766e-17, -1.4973849048591698e-33)  # pi/2 = sum
SQRT2 = math.sqrt(2.0)
# sin r = r + r^3 * (S1 + r^2 S2 + ...), cos r = 1 + r^2 (C1 + r^2 C2 + ...), |r| <= pi/4.
_SIN = {32: 4, 64: 8}  # terms after r: the next one is < 2^-24 / 2^-60 of the sum
_COS = {32: 5, 64: 8}
_EXP64_TERMS = 13  # exp r = sum r^n / n!, |r| <= ln2 / 2
_ATANH64_TERMS = 10  # log m = 2 atanh s = 2 (s + s^3/3 + ... + s^21/21), |s| <= 0.1716
_ATANH32_TERMS = 4


class _Seq:
    """Typed helpers over the emitter, so each sequence reads like the formula it is."""

    def __init__(self, e: PtxEmitter, t: ScalarType):
        self.e, self.t, self.ty = e, t, SUFFIX[t.name]

    def k(self, value: float) -> str:
        return immediate(value, self.t)

    def new(self) -> str:
        return self.e.tmp_for(self.t)

    def op(self, ins: str, *srcs: str) -> str:
        d = self.new()
        self.e.ins(f"{ins}.{self.ty} {d}, {', '.join(srcs)}")
        return d

    def fma(self, a: str, b: str, c: str) -> str:
        return self.op("fma.rn", a, b, c)

    def horner(self, x: str, coeffs: list[float]) -> str:
        """coeffs[0] + x * (coeffs[1] + x * (...)), by fma."""
        acc = self.k(coeffs[-1])
        for c in reversed(coeffs[:-1]):
            acc = self.fma(x, acc, self.k(c))
        return acc

    def test(self, cmp: str, a: str, b: str) -> str:
        p = self.e.tmp("pred")
        self.e.ins(f"setp.{cmp}.{self.ty} {p}, {a}, {b}")
        return p

    def select(self, if_true: str, if_false: str, cond: str) -> str:
        return self.op("selp", if_true, if_false, cond)


def _exp32(s: _Seq, x: str) -> str:
    """2^(x log2 e) by ex2.approx, corrected by the rounding error of x*log2(e)."""
    t = s.op("mul.rn", x, s.k(LOG2E_HI))
    err = s.fma(x, s.k(LOG2E_HI), s.op("neg", t))
    err = s.fma(x, s.k(LOG2E_LO), err)
    r = s.op("ex2.approx", t)
    fixed = s.fma(r, s.op("mul.rn", err, s.k(LN2)), r)  # 2^(t+err) ~ 2^t (1 + err ln2)
    # Where ex2 over- or underflows the correction would turn inf*0 into NaN.
    in_range = s.test("lt", s.op("abs", t), s.k(126.0))
    return s.select(fixed, r, in_range)


def _exp64(s: _Seq, x: str) -> str:
    """exp x = 2^k exp r with k = rint(x / ln2), r = x - k ln2, |r| <= ln2/2."""
    e = s.e
    xc = s.op("min", s.op("max", x, s.k(-1000.0)), s.k(1000.0))  # exp is 0 / inf past that
    k = s.op("cvt.rni.f64", s.op("mul.rn", xc, s.k(1.0 / LN2)))
    r = s.fma(k, s.k(-LN2_HI), xc)
    r = s.fma(k, s.k(-LN2_LO), r)
    p = s.horner(r, [1.0 / math.factorial(n) for n in range(_EXP64_TERMS + 1)])
    # 2^k as two normal factors 2^k1 * 2^k2 (|k| <= 1443), so results that end
    # up subnormal are rounded once, by the last multiply.
    ki, k1, k2 = e.tmp("b32"), e.tmp("b32"), e.tmp("b32")
    e.ins(f"cvt.rzi.s32.f64 {ki}, {k}")
    e.ins(f"shr.s32 {k1}, {ki}, 1")
    e.ins(f"sub.s32 {k2}, {ki}, {k1}")
    y = p
    for half in (k1, k2):
        biased, scale = e.tmp("b64"), e.tmp("f64")
        e.ins(f"cvt.s64.s32 {biased}, {half}")
        e.ins(f"add.s64 {biased}, {biased}, 1023")
        e.ins(f"shl.b64 {biased}, {biased}, 52")
        e.ins(f"mov.b64 {scale}, {biased}")
        y = s.op("mul.rn", y, scale)
    return s.select(x, y, s.test("nan", x, x))  # min/max dropped a NaN: put it back


def _log32(s: _Seq, x: str) -> str:
    """lg2.approx * ln2, and near 1 (where that loses relative accuracy) 2 atanh(f/(2+f))."""
    far = s.op("mul.rn", s.op("lg2.approx", x), s.k(LN2))
    f = s.op("sub.rn", x, s.k(1.0))
    near = _atanh2(s, s.op("div.rn", f, s.op("add.rn", f, s.k(2.0))), _ATANH32_TERMS)
    return s.select(near, far, s.test("lt", s.op("abs", f), s.k(0.25)))


def _atanh2(s: _Seq, z: str, terms: int) -> str:
    """2 atanh z = 2 (z + z^3/3 + z^5/5 + ...)."""
    z2 = s.op("mul.rn", z, z)
    p = s.op("mul.rn", s.horner(z2, [1.0 / (2 * n + 3) for n in range(terms)]), z2)
    twice = s.op("add.rn", z, z)
    return s.fma(twice, p, twice)


def _log64(s: _Seq, x: str) -> str:
    """log x = e ln2 + log m, x = m 2^e with m in [sqrt(1/2), sqrt(2))."""
    e = s.e
    tiny = s.test("lt", x, s.k(2.0**-1022))  # subnormal: scale into the normal range
    xn = s.select(s.op("mul.rn", x, s.k(2.0**54)), x, tiny)
    bits_, exp_, mant = e.tmp("b64"), e.tmp("b32"), e.tmp("b64")
    e.ins(f"mov.b64 {bits_}, {xn}")
    wide = e.tmp("b64")
    e.ins(f"shr.u64 {wide}, {bits_}, 52")
    e.ins(f"cvt.u32.u64 {exp_}, {wide}")
    e.ins(f"sub.s32 {exp_}, {exp_}, 1023")
    e.ins(f"@{tiny} sub.s32 {exp_}, {exp_}, 54")
    e.ins(f"and.b64 {mant}, {bits_}, 0x000FFFFFFFFFFFFF")
    e.ins(f"or.b64 {mant}, {mant}, 0x3FF0000000000000")  # m in [1, 2)
    m = s.new()
    e.ins(f"mov.b64 {m}, {mant}")
    big = s.test("gt", m, s.k(SQRT2))
    m = s.select(s.op("mul.rn", m, s.k(0.5)), m, big)
    e.ins(f"@{big} add.s32 {exp_}, {exp_}, 1")
    z = s.op("div.rn", s.op("sub.rn", m, s.k(1.0)), s.op("add.rn", m, s.k(1.0)))
    log_m = _atanh2(s, z, _ATANH64_TERMS)
    ed = s.new()
    e.ins(f"cvt.rn.f64.s32 {ed}, {exp_}")
    y = s.fma(ed, s.k(LN2_HI), s.fma(ed, s.k(LN2_LO), log_m))
    y = s.select(s.k(INF), y, s.test("eq", x, s.k(INF)))
    y = s.select(s.k(-INF), y, s.test("eq", x, s.k(0.0)))
    y = s.select(s.k(NAN), y, s.test("lt", x, s.k(0.0)))
    return s.select(x, y, s.test("nan", x, x))


def _sincos(s: _Seq, x: str, want_cos: bool) -> str:
    """Reduce by the nearest multiple j of pi/2, then sin/cos polynomials by quadrant.

    The reduction runs in f64 for both widths (three-part pi/2 for f64, Cody and
    Waite), accurate for |x| below about 2^30.
    """
    e, n = s.e, s.t.bits
    d = _Seq(e, f64)
    xd = x
    if n == 32:
        xd = d.new()
        e.ins(f"cvt.f64.f32 {xd}, {x}")
    j = d.op("cvt.rni.f64", d.op("mul.rn", xd, d.k(TWO_OVER_PI)))
    r = xd
    for part in PIO2 if n == 64 else PIO2[:2]:
        r = d.fma(j, d.k(-part), r)
    if n == 32:
        narrow = s.new()
        e.ins(f"cvt.rn.f32.f64 {narrow}, {r}")
        r = narrow
    r2 = s.op("mul.rn", r, r)
    sin_c = [(-1) ** (i + 1) / math.factorial(2 * i + 3) for i in range(_SIN[n])]
    cos_c = [(-1) ** (i + 1) / math.factorial(2 * i + 2) for i in range(_COS[n])]
    sin_r = s.fma(s.op("mul.rn", r2, r), s.horner(r2, sin_c), r)
    cos_r = s.fma(r2, s.horner(r2, cos_c), s.k(1.0))
    # Quadrant q = j mod 4: sin x = sin r, cos r, -sin r, -cos r; cos x is sin at q + 1.
    q, odd, neg = e.tmp("b32"), e.tmp("pred"), e.tmp("pred")
    e.ins(f"cvt.rzi.s32.f64 {q}, {j}")
    if want_cos:
        e.ins(f"add.s32 {q}, {q}, 1")
    bit = e.tmp("b32")
    e.ins(f"and.b32 {bit}, {q}, 1")
    e.ins(f"setp.ne.u32 {odd}, {bit}, 0")
    e.ins(f"and.b32 {bit}, {q}, 2")
    e.ins(f"setp.ne.u32 {neg}, {bit}, 0")
    v = s.select(cos_r, sin_r, odd)
    return s.select(s.op("neg", v), v, neg)


def _pow(s: _Seq, a: str, b: str) -> str:
    """|a|^b by exp(b log|a|), then the signs and special cases of C's pow."""
    e, n = s.e, s.t.bits
    mag = s.op("abs", a)
    if n == 32:
        r = s.op("ex2.approx", s.op("mul.rn", b, s.op("lg2.approx", mag)))
    else:
        r = _exp64(s, s.op("mul.rn", b, _log64(s, mag)))
    trunc = f"cvt.rzi.{s.ty}"
    is_int = s.test("eq", s.op(trunc, b), b)  # inf counts as an (even) integer
    half = s.op("mul.rn", b, s.k(0.5))
    odd = s.test("ne", s.op(trunc, half), half)
    e.ins(f"and.pred {odd}, {odd}, {is_int}")
    sign, negative = e.tmp(f"b{n}"), e.tmp("pred")
    e.ins(f"mov.b{n} {sign}, {a}")
    e.ins(f"setp.lt.s{n} {negative}, {sign}, 0")  # the sign bit, so -0 counts
    e.ins(f"and.pred {negative}, {negative}, {odd}")
    r = s.select(s.op("neg", r), r, negative)
    # A finite negative base to a non-integer power has no real value.
    bad, finite_neg = s.test("lt", a, s.k(0.0)), s.test("gt", a, s.k(-INF))
    e.ins(f"and.pred {bad}, {bad}, {finite_neg}")
    e.ins(f"and.pred {bad}, {bad}, !{is_int}")
    r = s.select(s.k(NAN), r, bad)
    # x^0 = 1 and 1^y = 1 even for NaN; (-1)^(+-inf) = 1.
    one = s.test("eq", b, s.k(0.0))
    unit_base = s.test("eq", mag, s.k(1.0))
    unit_inf = s.test("eq", s.op("abs", b), s.k(INF))
    e.ins(f"and.pred {unit_inf}, {unit_inf}, {unit_base}")
    e.ins(f"or.pred {one}, {one}, {unit_inf}")
    e.ins(f"or.pred {one}, {one}, {s.test('eq', a, s.k(1.0))}")
    return s.select(s.k(1.0), r, one)


_UNARY = {
    "exp": {32: _exp32, 64: _exp64},
    "log": {32: _log32, 64: _log64},
    "sin": {32: lambda s, x: _sincos(s, x, False), 64: lambda s, x: _sincos(s, x, False)},
    "cos": {32: lambda s, x: _sincos(s, x, True), 64: lambda s, x: _sincos(s, x, True)},
}


def lower_math(e: PtxEmitter, op: ir.Op) -> None:
    t = op.dst.type
    s = _Seq(e, t)
    if op.opcode == "pow":
        a, b = (e.in_register(v) for v in op.args)
        result = _pow(s, a, b)
    else:
        result = _UNARY[op.opcode][t.bits](s, e.in_register(op.args[0]))
    e.ins(f"mov.{s.ty} {e.reg(op.dst)}, {result}")


MATH_HANDLERS = {name: lower_math for name in ("exp", "log", "sin", "cos", "pow")}
