"""lower_f64_math: f64 exp, log, sin, cos and pow rewritten as plain IR arithmetic.

Runs after lower_async and before fold_lanes for backends without 64-bit
transcendentals (Vulkan: GLSL.std.450 has none). The algorithms are those of
backends/cuda/ptx_math.py, made exact without fma by Cody-Waite constants with
short mantissas and double-double (Dekker/Knuth) error-free transformations.
"""

from __future__ import annotations

import dataclasses
import math

from .. import ir
from ..ir import Const, Value
from ..types import ScalarType, bool_, f64, i32, i64, u64

# Accuracy (tests/test_lower_math.py compares with numpy): relative error below 1e-13
# (measured: exp, log, sin, cos within 1 ulp of numpy) for
#   exp  every f64; results overflow to inf past ~709.78 and underflow through the
#        subnormals to 0 (a subnormal result is within one unit of its last place);
#   log  every f64: log(+-0) = -inf, log(x < 0) = NaN, log(inf) = inf;
#   sin, cos  |x| < 2^31, where the reduction is exact; past it the result is NaN
#        (not a wrong number: ptx_math.py's lose accuracy past about 2^30);
#   pow  C's pow (numpy.power) over every f64 pair; b*log|a| is a double-double, so
#        the error grows with |b log a| only to about 2e-15 (18 ulp) near 709.
# Every step relies on core/ops.py's rule that each float add/sub/mul is rounded on
# its own (IEEE round-to-nearest; the emitters forbid contraction into fma).
INF = float("inf")
NAN = float("nan")
LN2_HI, LN2_LO = 6.93147180369123816490e-01, 1.90821492927058770002e-10  # fdlibm's split
INV_LN2 = 1.0 / math.log(2.0)
SQRT2 = math.sqrt(2.0)
TWO_OVER_PI = 2.0 / math.pi
EXP_CLAMP = 1000.0  # exp(x) is 0 / inf well before |x| = 1000; keeps 2^k two normal factors
SINCOS_EXACT_LIMIT = 2.0**31  # |x| below this: every product j * piece of pi/2 is exact
_SPLITTER = 2.0**27 + 1.0  # Veltkamp: splits a double into two 26-bit halves
_EXP_TERMS = 13  # exp r = sum r^n / n!, |r| <= ln2 / 2: the next term is < 2^-57
_ATANH_TERMS = 10  # log m = 2 atanh z = 2 (z + z^3/3 + ... + z^21/21), |z| <= 0.1716
_SIN_TERMS = 8  # sin r = r + r^3 (S1 + r^2 S2 + ...), |r| <= pi/4 (+ rounding)
_COS_TERMS = 8  # cos r = 1 + r^2 (C1 + r^2 C2 + ...)
_PIECE_BITS = 22  # a 31-bit j times a 22-bit piece fits a 53-bit significand
_PIECES = 7  # 22 * 7 bits of pi/2: the truncation error times j is below 2^-120


def pi_fixed(bits: int) -> int:
    """floor(pi * 2^bits), by Machin's formula pi = 16 atan(1/5) - 4 atan(1/239)."""
    guard = 32
    one = 1 << (bits + guard)

    def atan_inv(n: int) -> int:  # atan(1/n) * one, by its alternating series
        total, power, k, sign = 0, one // n, 1, 1
        while power:
            total += sign * (power // k)
            power //= n * n
            k, sign = k + 2, -sign
        return total

    return (16 * atan_inv(5) - 4 * atan_inv(239)) >> guard


def _pio2_pieces() -> tuple[float, ...]:
    """pi/2 cut at fixed bit positions into pieces of at most _PIECE_BITS bits each.

    Piece 0 holds the bits of weight 2^0 .. 2^-21, piece 1 those of 2^-22 .. 2^-43,
    and so on; fixed positions are what make the first two subtractions exact.
    """
    total = _PIECE_BITS * _PIECES - 1  # fractional bits kept
    rest = pi_fixed(total - 1)  # floor(pi/2 * 2^total)
    pieces = []
    for n in range(_PIECES):
        shift = total - _PIECE_BITS * (n + 1) + 1
        chunk = (rest >> shift) << shift
        rest -= chunk
        pieces.append(math.ldexp(float(chunk >> shift), shift - total))
    return tuple(pieces)


PIO2_PIECES = _pio2_pieces()


class _Arith:
    """f64 arithmetic appended to a builder, so each expansion reads like its formula."""

    def __init__(self, builder: ir.Builder, hint: str):
        self.b = builder
        self.hint = hint

    def _op(self, opcode: str, *args, type: ScalarType = f64) -> ir.Var:
        args = tuple(a if isinstance(a, (ir.Var, Const)) else Const(float(a), f64) for a in args)
        return self.b.op(opcode, *args, dst=self.b.tmp(type, self.hint))

    def add(self, a, b):
        return self._op("add", a, b)

    def sub(self, a, b):
        return self._op("sub", a, b)

    def mul(self, a, b):
        return self._op("mul", a, b)

    def div(self, a, b):
        return self._op("div", a, b)

    def neg(self, a):
        return self._op("neg", a)

    def abs(self, a):
        return self._op("abs", a)

    def floor(self, a):
        return self._op("floor", a)

    def min(self, a, b):
        return self._op("min", a, b)

    def max(self, a, b):
        return self._op("max", a, b)

    def cmp(self, opcode: str, a, b) -> ir.Var:
        return self._op(opcode, a, b, type=bool_)

    def both(self, p: Value, q: Value) -> ir.Var:
        return self._op("land", p, q, type=bool_)

    def either(self, p: Value, q: Value) -> ir.Var:
        return self._op("lor", p, q, type=bool_)

    def negation(self, p: Value) -> ir.Var:
        return self._op("lnot", p, type=bool_)

    def select(self, cond: Value, if_true, if_false) -> ir.Var:
        return self._op("select", cond, if_true, if_false)

    def is_nan(self, a) -> ir.Var:
        # From the bits, not `a != a`: a driver that assumes no NaNs may fold that
        # comparison away (NVIDIA's Vulkan driver lost NaNs through pow this way).
        bits = self.convert("bitcast", a, u64)
        magnitude = self.b.op("band", bits, Const(0x7FFF_FFFF_FFFF_FFFF, u64),
                              dst=self.b.tmp(u64, self.hint))
        return self.cmp("gt", magnitude, Const(0x7FF0_0000_0000_0000, u64))

    def convert(self, opcode: str, a: Value, t: ScalarType) -> ir.Var:
        return self.b.op(opcode, a, dst=self.b.tmp(t, self.hint))

    def int_op(self, opcode: str, a: Value, b: int) -> ir.Var:
        return self.b.op(opcode, a, Const(b, a.type), dst=self.b.tmp(a.type, self.hint))

    def horner(self, x, coeffs: list[float]) -> ir.Value:
        """coeffs[0] + x * (coeffs[1] + x * (...))."""
        acc: Value = Const(coeffs[-1], f64)
        for c in reversed(coeffs[:-1]):
            acc = self.add(self.mul(x, acc), c)
        return acc

    def two_sum(self, a, b) -> tuple[ir.Var, ir.Var]:
        """s + e == a + b exactly, s = fl(a + b) (Knuth's TwoSum, any magnitudes)."""
        s = self.add(a, b)
        b_part = self.sub(s, a)
        a_part = self.sub(s, b_part)
        return s, self.add(self.sub(a, a_part), self.sub(b, b_part))

    def split(self, a) -> tuple[ir.Var, ir.Var]:
        """a == hi + lo with 26-bit halves (Veltkamp); NaN when |a| > 2^996 overflows."""
        c = self.mul(a, _SPLITTER)
        hi = self.sub(c, self.sub(c, a))
        return hi, self.sub(a, hi)

    def two_prod(self, a, b) -> tuple[ir.Var, ir.Var]:
        """p + e == a * b exactly, p = fl(a * b) (Dekker's product, no fma needed)."""
        p = self.mul(a, b)
        a_hi, a_lo = self.split(a)
        b_hi, b_lo = self.split(b)
        e = self.add(self.sub(self.mul(a_hi, b_hi), p), self.mul(a_hi, b_lo))
        e = self.add(self.add(e, self.mul(a_lo, b_hi)), self.mul(a_lo, b_lo))
        return p, e


def _pow2(m: _Arith, k: ir.Var) -> ir.Var:
    """2^k for an integral f64 k in the normal exponent range, built from its bits."""
    biased = m.convert("cast", m.add(k, 1023.0), i64)
    return m.convert("bitcast", m.int_op("shl", biased, 52), f64)


def _exp(m: _Arith, x: Value, x_lo: Value | None = None) -> ir.Var:
    """exp(x + x_lo) = 2^k exp r, k = rint(x / ln2), r = x + x_lo - k ln2, |r| <= ln2/2."""
    clamped = m.min(m.max(x, -EXP_CLAMP), EXP_CLAMP)
    k = m.floor(m.add(m.mul(clamped, INV_LN2), 0.5))
    # |k| <= 1443 has 11 bits and LN2_HI 32, so k * LN2_HI is exact. So is the
    # subtraction: for k != 0, |x| > 1/4 puts x on a grid of 2^-54 or coarser, which
    # k LN2_HI (a multiple of 2^-32) shares, and the difference, below 0.35, fits.
    r_hi = m.sub(clamped, m.mul(k, LN2_HI))
    r_lo = m.mul(k, LN2_LO)
    r_lo = m.neg(r_lo) if x_lo is None else m.sub(x_lo, r_lo)
    r = m.add(r_hi, r_lo)
    tail = m.horner(r, [1.0 / math.factorial(n) for n in range(2, _EXP_TERMS + 1)])
    p = m.add(m.add(m.mul(m.mul(r, r), tail), r), 1.0)
    # 2^k as two normal factors (|k| <= 1443 would not fit one), so a result that
    # ends up subnormal is rounded once, by the last multiply.
    k1 = m.floor(m.mul(k, 0.5))
    y = m.mul(m.mul(p, _pow2(m, k1)), _pow2(m, m.sub(k, k1)))
    return m.select(m.is_nan(x), x, y)  # min/max dropped a NaN: put it back


def _log_parts(m: _Arith, x: Value) -> tuple[ir.Var, ir.Var]:
    """log x as hi + lo (about 2^-60 relative) for finite x > 0; garbage elsewhere.

    x = m 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh z, z = (m-1)/(m+1),
    with z kept as a double-double so that pow can use the extra bits.
    """
    tiny = m.cmp("lt", x, 2.0**-1022)  # subnormal: scale into the normal range
    normal = m.select(tiny, m.mul(x, 2.0**54), x)
    bits = m.convert("bitcast", normal, u64)
    biased = m.convert("cast", m.int_op("shr", bits, 52), f64)
    e = m.sub(biased, m.select(tiny, 1023.0 + 54.0, 1023.0))
    fraction = m.int_op("bor", m.int_op("band", bits, 0x000F_FFFF_FFFF_FFFF), 0x3FF0 << 48)
    mant = m.convert("bitcast", fraction, f64)  # the significand, in [1, 2)
    big = m.cmp("gt", mant, SQRT2)
    mant = m.select(big, m.mul(mant, 0.5), mant)
    e = m.select(big, m.add(e, 1.0), e)
    f = m.sub(mant, 1.0)  # exact (Sterbenz)
    s_hi = m.add(mant, 1.0)
    s_lo = m.sub(mant, m.sub(s_hi, 1.0))  # Fast2Sum (1 has the larger exponent): exact
    z = m.div(f, s_hi)
    p, p_err = m.two_prod(z, s_hi)
    remainder = m.sub(m.sub(m.sub(f, p), p_err), m.mul(z, s_lo))  # f - z (m + 1)
    z_lo = m.div(remainder, s_hi)
    z2 = m.mul(z, z)
    series = m.horner(z2, [1.0 / (2 * n + 3) for n in range(_ATANH_TERMS)])
    twice = m.add(z, z)
    tail = m.mul(m.mul(twice, z2), series)  # 2 (z^3/3 + z^5/5 + ...)
    tail = m.add(tail, m.mul(m.add(z2, z2), z_lo))  # z_lo's part of it: d(2z^3/3) = 2z^2 dz
    # e has at most 11 bits and LN2_HI 32: e * LN2_HI is exact, and TwoSum keeps the
    # rounding error of adding 2z to it.
    hi, err = m.two_sum(m.mul(e, LN2_HI), twice)
    lo = m.add(err, m.add(m.mul(e, LN2_LO), m.add(m.add(z_lo, z_lo), tail)))
    return m.two_sum(hi, lo)


def _log_specials(m: _Arith, x: Value, y: ir.Var) -> ir.Var:
    """log's values at inf, +-0, negatives and NaN (C's log, as numpy)."""
    y = m.select(m.cmp("eq", x, INF), INF, y)
    y = m.select(m.cmp("eq", x, 0.0), -INF, y)
    y = m.select(m.cmp("lt", x, 0.0), NAN, y)
    return m.select(m.is_nan(x), x, y)


def _log(m: _Arith, x: Value) -> ir.Var:
    hi, _ = _log_parts(m, x)
    return _log_specials(m, x, hi)


def _sincos(m: _Arith, x: Value, want_cos: bool) -> ir.Var:
    """Reduce by the nearest multiple j of pi/2 (Cody-Waite), then polynomials by quadrant.

    |j| < 2^31 has 31 bits, so j times each 22-bit piece of pi/2 is exact. x - j P0 is
    exact by Sterbenz; the result minus j P1 is on the grid of min(ulp x, 2^-43) and
    below 1, so exact too. The rest is summed as a double-double: absolute error about
    2^-108, which keeps 1e-13 relative even where x is within 2^-60 of a multiple.
    """
    j = m.floor(m.add(m.mul(x, TWO_OVER_PI), 0.5))
    products = [m.mul(j, piece) for piece in PIO2_PIECES]
    r = m.sub(m.sub(x, products[0]), products[1])
    hi, lo = m.two_sum(r, m.neg(products[2]))
    hi, err = m.two_sum(hi, m.neg(products[3]))
    lo = m.add(lo, err)
    for product in products[4:]:
        lo = m.sub(lo, product)
    hi, lo = m.two_sum(hi, lo)
    z = m.mul(hi, hi)
    sin_c = [(-1) ** (i + 1) / math.factorial(2 * i + 3) for i in range(_SIN_TERMS)]
    cos_c = [(-1) ** (i + 1) / math.factorial(2 * i + 2) for i in range(_COS_TERMS)]
    # sin(hi + lo) ~ sin hi + lo (1 - hi^2/2); cos(hi + lo) ~ cos hi - lo hi.
    sin_lo = m.sub(lo, m.mul(m.mul(z, 0.5), lo))
    sin_r = m.add(hi, m.add(m.mul(m.mul(hi, z), m.horner(z, sin_c)), sin_lo))
    cos_r = m.add(1.0, m.sub(m.mul(z, m.horner(z, cos_c)), m.mul(hi, lo)))
    # Quadrant q = j mod 4: sin x = sin r, cos r, -sin r, -cos r; cos x is sin at q + 1.
    q = m.convert("cast", m.sub(j, m.mul(m.floor(m.mul(j, 0.25)), 4.0)), i32)
    if want_cos:
        q = m.int_op("add", q, 1)
    odd = m.cmp("ne", m.int_op("band", q, 1), Const(0, i32))
    negative = m.cmp("ne", m.int_op("band", q, 2), Const(0, i32))
    v = m.select(odd, cos_r, sin_r)
    v = m.select(negative, m.neg(v), v)
    # Past the exact range the reduction would be garbage: say so with NaN (inf too).
    size = m.abs(x)
    v = m.select(m.cmp("ge", size, SINCOS_EXACT_LIMIT), NAN, v)
    # Below 2^-27, sin x rounds to x and cos x to 1; this also keeps sin(-0) = -0.
    return m.select(m.cmp("lt", size, 2.0**-27), 1.0 if want_cos else x, v)


def _pow(m: _Arith, a: Value, b: Value) -> ir.Var:
    """|a|^b = exp(b log|a|) with b log|a| as a double-double, then C's special cases."""
    mag = m.abs(a)
    log_hi, log_lo = _log_parts(m, mag)
    log_hi = _log_specials(m, mag, log_hi)
    t_hi, t_err = m.two_prod(b, log_hi)
    t_lo = m.add(t_err, m.mul(b, log_lo))
    # Where exp saturates anyway, or the split overflowed (|b| > 2^996: NaN), drop t_lo.
    usable = m.both(m.cmp("lt", m.abs(t_hi), EXP_CLAMP), m.cmp("lt", m.abs(t_lo), 1.0))
    r = _exp(m, t_hi, m.select(usable, t_lo, 0.0))
    is_int = m.cmp("eq", m.floor(b), b)  # inf counts as an (even) integer
    half = m.mul(b, 0.5)
    odd = m.both(is_int, m.cmp("ne", m.floor(half), half))
    sign_bit = m.cmp("lt", m.convert("bitcast", a, i64), Const(0, i64))  # -0 counts
    r = m.select(m.both(sign_bit, odd), m.neg(r), r)
    # A finite negative base to a non-integer power has no real value.
    finite_negative = m.both(m.cmp("lt", a, 0.0), m.cmp("gt", a, -INF))
    r = m.select(m.both(finite_negative, m.negation(is_int)), NAN, r)
    # NaN in, NaN out, said explicitly rather than trusted to flow through the
    # arithmetic above; then a^0 = 1 and 1^b = 1 even for NaN; (-1)^(+-inf) = 1.
    r = m.select(m.either(m.is_nan(a), m.is_nan(b)), NAN, r)
    unit_inf = m.both(m.cmp("eq", mag, 1.0), m.cmp("eq", m.abs(b), INF))
    one = m.either(m.either(m.cmp("eq", b, 0.0), m.cmp("eq", a, 1.0)), unit_inf)
    return m.select(one, 1.0, r)


_EXPANSIONS = {
    "exp": _exp,
    "log": _log,
    "sin": lambda m, x: _sincos(m, x, want_cos=False),
    "cos": lambda m, x: _sincos(m, x, want_cos=True),
    "pow": _pow,
}


def lower_f64_math(kernel: ir.Kernel) -> ir.Kernel:
    """A new kernel where every f64 exp/log/sin/cos/pow is plain arithmetic.

    The input is left unchanged (statements without such ops are shared); f32 ops
    stay, since every backend has them. Works at the logical and lowered stages.
    """
    body = _block(kernel.body)
    return ir.Kernel(kernel.name, list(kernel.params), body, kernel.loc, dict(kernel.attrs))


def _block(block: list) -> list:
    out: list = []
    for stmt in block:
        if isinstance(stmt, ir.Op) and stmt.opcode in _EXPANSIONS and stmt.dst.type == f64:
            out += _expand(stmt)
        else:
            out.append(_rewrite_nested(stmt))
    return out


def _rewrite_nested(stmt: ir.Stmt) -> ir.Stmt:
    """stmt with its nested blocks rewritten (a copy where anything may change)."""
    if isinstance(stmt, ir.If):
        return dataclasses.replace(stmt, then=_block(stmt.then), else_=_block(stmt.else_))
    if isinstance(stmt, ir.Loop):
        return dataclasses.replace(
            stmt, header=_block(stmt.header), body=_block(stmt.body), latch=_block(stmt.latch)
        )
    if isinstance(stmt, ir.Suspend):
        return dataclasses.replace(stmt, poll=_block(stmt.poll))
    if isinstance(stmt, (ir.Join, ir.Select)):
        return dataclasses.replace(stmt, branches=[_block(b) for b in stmt.branches])
    return stmt


def _expand(op: ir.Op) -> list:
    """The statements computing `op` into op.dst; op.dst is written last, so it may
    also be an operand (`x = exp(x)`)."""
    builder = ir.Builder()
    builder.loc = op.loc
    result = _EXPANSIONS[op.opcode](_Arith(builder, op.opcode), *op.args)
    builder.emit(ir.Op(op.dst, "copy", (result,), {}, op.loc))
    return builder.block
