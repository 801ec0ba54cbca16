"""Numpy implementations of the IR's value semantics, for the reference interpreter.

Each pure opcode maps to a function over lane vectors that follows core.ops'
normative rules exactly (wrap-around, Python floor division, clamped shifts,
saturating casts, minNum/maxNum); subgroup ops work on one subgroup's vectors
with an active-lane mask and a cluster size. Callers run under
`np.errstate(all="ignore")`: wrap-around and IEEE specials are the semantics,
not accidents to warn about.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .types import ScalarType

_UNSIGNED_OF = {
    np.dtype(np.int32): np.dtype(np.uint32),
    np.dtype(np.int64): np.dtype(np.uint64),
    np.dtype(np.uint32): np.dtype(np.uint32),
    np.dtype(np.uint64): np.dtype(np.uint64),
}
_FLOAT_BITS = {np.dtype(np.float32): np.dtype(np.uint32), np.dtype(np.float64): np.dtype(np.uint64)}


def _as_unsigned(a: np.ndarray) -> np.ndarray:
    """Reinterpret an integer vector's bits as unsigned of the same width."""
    return np.asarray(a).view(_UNSIGNED_OF[np.asarray(a).dtype])


# ------------------------------------------------------------------ integer division


def _int_floordiv(a, b):
    # ops: "Integer division by zero gives 0 (floordiv)". numpy's floor_divide
    # already rounds toward -inf and maps INT_MIN // -1 to INT_MIN (wrap).
    zero = b == 0
    return np.where(zero, 0, a // np.where(zero, 1, b)).astype(np.result_type(a, b))


def _int_mod(a, b):
    # ops: "... and a (mod)"; the remainder takes the sign of the divisor.
    zero = b == 0
    return np.where(zero, a, a % np.where(zero, 1, b)).astype(np.result_type(a, b))


def _float_floordiv(a, b):
    return np.floor(a / b)


def _float_mod(a, b):
    # ops: "on floats ... mod = a - floor(a / b) * b" (not C fmod, not numpy's mod).
    return a - np.floor(a / b) * b


# ------------------------------------------------------------------ shifts


def _shl(a, b):
    # ops: "shl by >= bits gives 0"; the amount is read as unsigned, so a
    # negative amount is a huge one. Shift the unsigned bits: no signed overflow.
    a = np.asarray(a)
    bits = a.dtype.itemsize * 8
    amount = _as_unsigned(np.asarray(b).astype(a.dtype))
    ua = _as_unsigned(a)
    shifted = np.left_shift(ua, np.minimum(amount, bits - 1).astype(ua.dtype))
    return np.where(amount >= bits, 0, shifted).astype(ua.dtype).view(a.dtype)


def _shr(a, b):
    # ops: "shr of signed by >= bits gives 0 or -1, of unsigned gives 0";
    # arithmetic for signed (numpy's >> on signed is arithmetic).
    a = np.asarray(a)
    bits = a.dtype.itemsize * 8
    amount = _as_unsigned(np.asarray(b).astype(a.dtype))
    clamped = np.minimum(amount, bits - 1).astype(a.dtype)
    shifted = np.right_shift(a, clamped)
    if a.dtype.kind == "i":
        return shifted
    return np.where(amount >= bits, 0, shifted).astype(a.dtype)


def _popcount(a):
    # np.bitwise_count counts the bits of |a| for signed inputs: count the
    # two's-complement bits instead.
    return np.bitwise_count(_as_unsigned(np.asarray(a))).astype(np.int32)


# ------------------------------------------------------------------ casts


def make_cast(src: ScalarType, dst: ScalarType) -> Callable:
    """The conversion src -> dst of ops' `cast` rules."""
    dtype = dst.dtype
    if dst.is_bool:
        return lambda a: np.asarray(a) != 0
    if src.is_float and dst.is_int:
        info = np.iinfo(dtype)
        # Powers of two, exact in f64: t >= hi_excl saturates to max, t < lo to min.
        hi_excl = float(int(info.max) + 1)
        lo = float(int(info.min))

        def float_to_int(a):
            t = np.trunc(np.asarray(a, dtype=np.float64))
            over = t >= hi_excl
            under = t < lo
            bad = over | under | np.isnan(t)
            r = np.where(bad, 0.0, t).astype(dtype)
            r = np.where(over, info.max, r)
            return np.where(under, info.min, r).astype(dtype)

        return float_to_int
    # int -> int wraps, int/bool -> float rounds to nearest, f64 <-> f32 rounds.
    return lambda a: np.asarray(a).astype(dtype)


# ------------------------------------------------------------------ the pure table


def _minmax(is_float: bool, take_min: bool) -> Callable:
    # ops: "min/max on floats: if one operand is NaN the other is returned (minNum)".
    if is_float:
        return np.fmin if take_min else np.fmax
    return np.minimum if take_min else np.maximum


def make_pure(opcode: str, arg_types: tuple, dst_type: ScalarType) -> Callable:
    """The lane-vector implementation of a pure opcode for these operand types."""
    t0 = arg_types[0] if arg_types else None
    is_float = isinstance(t0, ScalarType) and t0.is_float
    if opcode == "cast":
        return make_cast(t0, dst_type)
    if opcode == "bitcast":  # ops: same bit width, so a numpy view reinterprets the bits
        return lambda a: np.asarray(a, dtype=t0.dtype).view(dst_type.dtype)
    if opcode in ("floordiv", "mod"):
        if is_float:
            return _float_floordiv if opcode == "floordiv" else _float_mod
        return _int_floordiv if opcode == "floordiv" else _int_mod
    if opcode in ("min", "max"):
        return _minmax(is_float, opcode == "min")
    try:
        return _PURE[opcode]
    except KeyError:
        raise RuntimeError(f"the interpreter has no implementation of opcode {opcode!r}") from None


_PURE: dict[str, Callable] = {
    "add": np.add,
    "sub": np.subtract,
    "mul": np.multiply,
    "div": np.divide,
    "pow": np.power,
    "neg": np.negative,
    "abs": np.abs,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "log": np.log,
    "sin": np.sin,
    "cos": np.cos,
    "floor": np.floor,
    "ceil": np.ceil,
    "popcount": _popcount,
    "band": np.bitwise_and,
    "bor": np.bitwise_or,
    "bxor": np.bitwise_xor,
    "bnot": np.invert,
    "shl": _shl,
    "shr": _shr,
    "eq": np.equal,
    "ne": np.not_equal,
    "lt": np.less,
    "le": np.less_equal,
    "gt": np.greater,
    "ge": np.greater_equal,
    "land": np.logical_and,
    "lor": np.logical_or,
    "lnot": np.logical_not,
    "select": np.where,
    "copy": lambda a: a,
}


# ------------------------------------------------------------------ subgroup ops


def _identity(op: str, dtype: np.dtype):
    """The neutral element that inactive lanes contribute to a reduction or scan."""
    if op == "add":
        return dtype.type(0)
    if dtype.kind == "f":
        return dtype.type(np.nan)  # fmin/fmax ignore NaN: minNum's neutral element
    info = np.iinfo(dtype)
    return dtype.type(info.max if op == "min" else info.min)


_REDUCER = {
    ("add", False): np.add,
    ("add", True): np.add,
    ("min", False): np.minimum,
    ("min", True): np.fmin,
    ("max", False): np.maximum,
    ("max", True): np.fmax,
}


def sg_reduce(x: np.ndarray, mask: np.ndarray, op: str, cluster: int) -> np.ndarray:
    """Combine the active lanes of each cluster; every lane gets its cluster's result."""
    dtype = x.dtype
    v = np.where(mask, x, _identity(op, dtype)).reshape(-1, cluster)
    ufunc = _REDUCER[(op, dtype.kind == "f")]
    r = ufunc.reduce(v, axis=1, dtype=dtype)
    return np.repeat(r, cluster)


def sg_scan(x: np.ndarray, mask: np.ndarray, op: str, inclusive: bool, cluster: int) -> np.ndarray:
    """Prefix combination within each cluster over active lanes (inclusive or exclusive)."""
    dtype = x.dtype
    ident = _identity(op, dtype)
    v = np.where(mask, x, ident).reshape(-1, cluster)
    ufunc = _REDUCER[(op, dtype.kind == "f")]
    inc = ufunc.accumulate(v, axis=1, dtype=dtype)
    if inclusive:
        return inc.reshape(-1)
    exc = np.empty_like(inc)
    exc[:, 0] = ident
    exc[:, 1:] = inc[:, :-1]
    return exc.reshape(-1)


def sg_shuffle(x: np.ndarray, src, H: int) -> np.ndarray:
    """Lane i reads invocation src[i] (taken modulo H, H a power of two)."""
    idx = np.bitwise_and(np.broadcast_to(src, x.shape), H - 1).astype(np.intp)
    return x[idx]


def sg_ballot(p: np.ndarray, mask: np.ndarray, cluster: int) -> np.ndarray:
    """u64 per lane: bit i is the predicate of active lane i of the lane's cluster."""
    bits = (p & mask).reshape(-1, cluster).astype(np.uint64)
    weights = np.left_shift(np.uint64(1), np.arange(cluster, dtype=np.uint64))
    r = np.bitwise_or.reduce(bits * weights, axis=1)
    return np.repeat(r, cluster)


def sg_any(p: np.ndarray, mask: np.ndarray, cluster: int) -> np.ndarray:
    return np.repeat((p & mask).reshape(-1, cluster).any(axis=1), cluster)


def sg_all(p: np.ndarray, mask: np.ndarray, cluster: int) -> np.ndarray:
    return np.repeat((p | ~mask).reshape(-1, cluster).all(axis=1), cluster)


# ------------------------------------------------------------------ atomics (one lane)


def make_atomic_rmw(kind: str, dtype: np.dtype) -> Callable:
    """old, v -> new value of `atomic {op: kind}` on numpy scalars of dtype."""
    is_float = dtype.kind == "f"
    if kind in ("and", "or", "xor") and is_float:
        raise RuntimeError(f"atomic {kind} on a float array reached the interpreter")
    table = {
        "add": lambda old, v: old + v,
        "min": (lambda old, v: np.fmin(old, v)) if is_float else min,
        "max": (lambda old, v: np.fmax(old, v)) if is_float else max,
        "and": lambda old, v: old & v,
        "or": lambda old, v: old | v,
        "xor": lambda old, v: old ^ v,
        "exchange": lambda old, v: v,
    }
    try:
        return table[kind]
    except KeyError:
        raise RuntimeError(f"unknown atomic op {kind!r}") from None


def bits_view(a: np.ndarray) -> np.ndarray:
    """Floats as their raw bits (atomic_cas compares bit patterns, like atom.cas)."""
    return a.view(_FLOAT_BITS[a.dtype]) if a.dtype.kind == "f" else a


# ------------------------------------------------------------------ block memory poison


def poisoned(n: int, dtype: np.dtype) -> np.ndarray:
    """Fresh block memory: NaN for floats, a 0xDEADBEEF byte pattern for integers."""
    if dtype.kind == "f":
        return np.full(n, np.nan, dtype=dtype)
    if dtype.kind == "b":
        return np.ones(n, dtype=dtype)
    pattern = np.frombuffer(b"\xef\xbe\xad\xde" * (dtype.itemsize // 4), dtype=dtype)
    return np.full(n, pattern[0], dtype=dtype)
