"""Property tests: integer and float semantics of the language agree with Python on every backend.

Hypothesis draws whole arrays of operands (edge values included); each example
is one launch, compared element by element with Python's own arithmetic, which
the language follows (README: floor division, remainders, clamped shifts).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import asyncwarp as aw

N = 64  # one or two warps of operands per example

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@aw.kernel
def int_ops(a: aw.Array[aw.i64], b: aw.Array[aw.i64], out: aw.Array[aw.i64], n: aw.i32):
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        x = a[i]
        y = b[i]
        out[6 * i + 0] = x // y
        out[6 * i + 1] = x % y
        out[6 * i + 2] = x * y + (x - y)
        out[6 * i + 3] = x << (y & 127)
        out[6 * i + 4] = x >> (y & 127)
        out[6 * i + 5] = min(x, y) ^ max(x, -y)


def _wrap(v: int) -> int:
    return (v + 2**63) % 2**64 - 2**63


def int_reference(a, b):
    out = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        s = y & 127
        out += [
            0 if y == 0 else _wrap(x // y),
            x if y == 0 else _wrap(x % y),
            _wrap(x * y + (x - y)),
            0 if s >= 64 else _wrap(x << s),
            (-1 if x < 0 else 0) if s >= 64 else x >> s,
            _wrap(min(x, y) ^ max(x, _wrap(-y))),
        ]
    return np.array(out, dtype=np.int64)


i64s = st.one_of(
    st.sampled_from([0, 1, -1, 2, -2, 63, 64, 2**31, -(2**31), 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-1000, 1000),
)


@SETTINGS
@given(a=st.lists(i64s, min_size=N, max_size=N), b=st.lists(i64s, min_size=N, max_size=N))
def test_int64_semantics_follow_python(run, W, a, b):
    a, b = np.array(a, np.int64), np.array(b, np.int64)
    out = np.full(6 * N, 0x5EED, np.int64)
    run(int_ops, -(-N // W), a, b, out, N)
    np.testing.assert_array_equal(out, int_reference(a, b))


@aw.kernel
def float_to_int(x: aw.Array[aw.f32], out: aw.Array[aw.i32], n: aw.i32):
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        out[i] = aw.i32(x[i])


@SETTINGS
@given(x=st.lists(st.floats(width=32, allow_nan=True, allow_infinity=True),
                  min_size=N, max_size=N))
def test_float_to_int_truncates_saturates_and_maps_nan_to_zero(run, W, x):
    x = np.array(x, np.float32)
    out = np.full(N, 0x5EED, np.int32)
    run(float_to_int, -(-N // W), x, out, N)
    lo, hi = -(2**31), 2**31 - 1
    want = [0 if np.isnan(v) else int(max(lo, min(hi, np.trunc(np.float64(v))))) for v in x]
    np.testing.assert_array_equal(out, np.array(want, np.int32))
