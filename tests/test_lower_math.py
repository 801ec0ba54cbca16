"""passes.lower_math: f64 exp/log/sin/cos/pow as plain IR arithmetic, against numpy.

The pass is forced on the interpreter (sim) and runs by default on Vulkan
(lavapipe here); inputs cover wide ranges and the special values (signed zeros,
infinities, NaN, subnormals, huge and tiny), outputs are poisoned with a value no
branch produces.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from conftest import BACKENDS

import asyncwarp as aw
from asyncwarp.backends.cuda import ptxas
from asyncwarp.backends.cuda.ptx import emit_ptx
from asyncwarp.core import interpreter, ir
from asyncwarp.core.backend import BuildOptions
from asyncwarp.core.passes.lower_math import (
    PIO2_PIECES,
    SINCOS_EXACT_LIMIT,
    lower_f64_math,
    pi_fixed,
)
from asyncwarp.core.passes.pipeline import lower
from asyncwarp.core.types import ArrayType, f32, f64, i32, i64, u32, u64
from asyncwarp.core.verify import verify

RTOL = 1e-13  # the pass's contract (lower_math.py)
SUBNORMAL_ATOL = 2.0**-1074  # a subnormal result is within one unit of its last place
POISON = -1.2345e-77  # no function below produces it for these inputs
MATH = ("exp", "log", "sin", "cos", "pow")
ENGINES = [
    pytest.param(b, marks=[pytest.mark.device] if b != "sim" else []) for b in ("sim", "vulkan")
]

# Doubles within 2^-60 .. 2^-55 of a multiple of pi/2 (convergents of pi/2 * 2^-e with
# 53-bit numerators, |x| < 2^31): the reduction's hardest inputs.
HARD_TRIG = [
    45.553093477052, 91.106186954104, 182.212373908208, 364.424747816416, 728.849495632832,
    1457.698991265664, 14461176.67027838, 28922353.34055676, 57844706.68111352,
    115689413.36222704, 231378826.72445408, 462757653.44890815, 925515306.8978163,
]  # fmt: skip


@aw.kernel
def transcendentals(
    ex: aw.Array[aw.f64],
    lx: aw.Array[aw.f64],
    tx: aw.Array[aw.f64],
    px: aw.Array[aw.f64],
    py: aw.Array[aw.f64],
    out: aw.Array[aw.f64],
    n: aw.i32,
):
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        out[5 * i + 0] = aw.exp(ex[i])
        out[5 * i + 1] = aw.log(lx[i])
        out[5 * i + 2] = aw.sin(tx[i])
        out[5 * i + 3] = aw.cos(tx[i])
        out[5 * i + 4] = px[i] ** py[i]


@aw.kernel
def nested(x: aw.Array[aw.f64], y: aw.Array[aw.f32], out: aw.Array[aw.f64], n: aw.i32):
    """Math in a loop, in divergent branches, reassigning its own operand; f32 beside."""
    i = aw.block_id() * aw.WARP + aw.lane()
    if i < n:
        a = x[i]
        for _ in range(3):
            a = aw.cos(a) + aw.f64(aw.exp(y[i]))
        if x[i] > 0.0:
            a = aw.log(a + 2.0)
        else:
            a = (a + 2.0) ** 3.5
        out[i] = a


def _specials() -> dict:
    tiny, sub = 2.0**-1022, 5e-324
    nan, inf = float("nan"), float("inf")
    common = [0.0, -0.0, inf, -inf, nan, sub, -sub, 1e-300, tiny, 1e308, -1e308]
    return {
        "exp": common + [709.78, 709.79, -708.39, -740.0, -744.5, -745.0, -745.2, 0.34657,
                         -0.34658, 1.0, -1.0, 2.0**-30, 100.5, -100.5],
        "log": common + [-1.0, 1e-310, tiny - sub, 1.7976931348623157e308, 1.0,
                         np.nextafter(1.0, 0.0), np.nextafter(1.0, 2.0), math.sqrt(2.0),
                         np.nextafter(math.sqrt(2.0), 0.0), math.sqrt(0.5), 2.0, 0.5, math.e,
                         1.0 + 1e-10, 1.0 - 1e-10],
        "trig": common + [2.0**-27, -(2.0**-27), 2.0**-26, 1e-8, math.pi / 4, math.pi / 2,
                          -math.pi / 2, math.pi, 1.5 * math.pi, 2 * math.pi, 1e5, 1e9,
                          SINCOS_EXACT_LIMIT - 1, -(SINCOS_EXACT_LIMIT - 0.5),
                          SINCOS_EXACT_LIMIT, 1e10]
                + HARD_TRIG + [-x for x in HARD_TRIG],
    }  # fmt: skip


def _pow_specials() -> tuple[list, list]:
    """Every pairing of C99's special bases and exponents, then edges of the range."""
    nan, inf, sub = float("nan"), float("inf"), 5e-324
    # fmt: off
    bases = [0.0, -0.0, 1.0, -1.0, inf, -inf, nan, 0.5, -0.5, 2.0, -2.0, sub, -sub, 1e300,
             -1e-300, 10.0]
    powers = [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, inf, -inf, nan, 1e300,
              -1e300, 1e-300, 2.0**53 + 2, 2.0**53 - 1, 1023.5]
    # overflow and underflow edges, exact powers, negative bases to integers
    edges = [(2.0, 1024.0), (2.0, 1023.0), (2.0, -1074.0), (2.0, -1075.0), (10.0, 308.0),
             (10.0, -323.0), (-2.0, 1023.0), (-2.5, 7.0), (-3.0, -5.0), (-1.5, 100.0),
             (1.0000001, 7e9), (0.999999, 7e8), (7.0, 364.0), (0.1, 320.0), (1e-300, 1.1)]
    # fmt: on
    xs = [b for b in bases for _ in powers] + [x for x, _ in edges]
    ys = [p for _ in bases for p in powers] + [y for _, y in edges]
    return xs, ys


def _inputs(rng: np.random.Generator, n: int) -> tuple:
    """Random values over each function's whole range, special values first."""
    q = n // 4
    ex = np.concatenate([rng.uniform(-750, 720, n - q), rng.uniform(-5, 5, q)])
    lx = np.concatenate([
        np.exp(rng.uniform(-745, 709, n - 2 * q)),
        rng.uniform(0, 3, q),
        rng.uniform(0, 1, q) * 2.0**-1022,  # subnormals
    ])  # fmt: skip
    tx = np.concatenate([
        rng.uniform(-1, 1, n - q) * 2.0 ** rng.uniform(-40, 31, n - q),
        rng.uniform(-10, 10, q),
    ])  # fmt: skip
    px = np.exp(rng.uniform(-50, 50, n))
    py = rng.uniform(-15, 15, n)
    negative = rng.random(n) < 0.25  # negative bases to integral powers
    px[negative] *= -1
    py[negative] = np.rint(py[negative])
    for arr, values in zip((ex, lx, tx), _specials().values(), strict=True):
        arr[: len(values)] = values
    xs, ys = _pow_specials()
    px[: len(xs)], py[: len(ys)] = xs, ys
    # spread the specials over warps, lanes and folded copies (px, py stay paired)
    pair = rng.permutation(n)
    ex, lx, tx = (a[rng.permutation(n)] for a in (ex, lx, tx))
    return ex, lx, tx, px[pair], py[pair]


def reference(ex, lx, tx, px, py) -> np.ndarray:
    """numpy's values; sin/cos are NaN past the exact range (the pass's documented limit)."""
    with np.errstate(all="ignore"):
        past = np.abs(tx) >= SINCOS_EXACT_LIMIT
        return np.stack([
            np.exp(ex),
            np.log(lx),
            np.where(past, np.nan, np.sin(tx)),
            np.where(past, np.nan, np.cos(tx)),
            np.power(px, py),
        ], axis=1)  # fmt: skip


def assert_close(got: np.ndarray, want: np.ndarray, inputs: tuple, what: str) -> None:
    """Same NaNs, infinities and signs of zero; finite values within RTOL (or a subnormal ulp)."""
    with np.errstate(all="ignore"):
        nan = np.isnan(want) & np.isnan(got)
        exact = (got == want) & ((want != 0) | (np.signbit(got) == np.signbit(want)))
        finite = np.isfinite(got) & np.isfinite(want)
        err = np.where(finite, np.abs(got - want), np.inf)
        close = finite & (err <= np.maximum(RTOL * np.abs(want), SUBNORMAL_ATOL))
        close &= (want != 0) | (np.signbit(got) == np.signbit(want))
    bad = np.flatnonzero(~(nan | exact | close))
    if bad.size:
        rows = [
            f"  input {tuple(float(a[i]) for a in inputs)}: got {got[i]!r}, numpy {want[i]!r}"
            for i in bad[:8]
        ]
        raise AssertionError(f"{what}: {bad.size} of {got.size} wrong\n" + "\n".join(rows))


def _launch(kern, engine: str, W: int, grid: int, args: list) -> None:
    """Vulkan runs the pass by default; on sim it is forced (H = W/4: folded lanes too)."""
    if engine not in BACKENDS:
        pytest.skip(f"the {engine} backend is not available here")
    if engine == "vulkan":
        kern.with_options(backend="vulkan", warp_width=W)[grid](*args)
        return
    compiled = kern.specialize(*args, backend="sim", warp_width=W, subgroup=W // 4)
    lowered = lower(compiled.logical, compiled.options, verify_each=True, expand_f64_math=True)
    assert not _f64_math_left(lowered)
    interpreter.run(lowered, grid, args)


def _f64_math_left(kernel: ir.Kernel) -> list:
    return [
        s.opcode
        for s in kernel.walk()
        if isinstance(s, ir.Op) and s.opcode in MATH and s.dst.type == f64
    ]


# ------------------------------------------------------------------ behaviour


@pytest.mark.parametrize("engine", ENGINES)
def test_transcendentals_match_numpy(engine, W, rng):
    n = 16 * 32
    inputs = _inputs(rng, n)
    out = np.full(5 * n, POISON)
    _launch(transcendentals, engine, W, n // W, [*inputs, out, n])
    got, want = out.reshape(n, 5), reference(*inputs)
    ex, lx, tx, px, py = inputs
    for column, (name, args) in enumerate(
        zip(MATH, [(ex,), (lx,), (tx,), (tx,), (px, py)], strict=True)
    ):
        assert_close(got[:, column], want[:, column], args, f"{name} on {engine}, W={W}")


@pytest.mark.parametrize("engine", ENGINES)
def test_math_in_loops_and_branches(engine, W, rng):
    n = 2 * W
    x = rng.uniform(-20, 20, n)
    y = rng.uniform(-2, 1, n).astype(np.float32)
    out = np.full(n, POISON)
    _launch(nested, engine, W, n // W, [x, y, out, n])
    want = x.copy()
    for _ in range(3):
        # f32 exp: the backend's own (within a few f32 ulp of numpy's)
        want = np.cos(want) + np.exp(y).astype(np.float64)
    want = np.where(x > 0, np.log(want + 2.0), (want + 2.0) ** 3.5)
    np.testing.assert_allclose(out, want, rtol=1e-6)


@aw.func
async def later_sin(v: aw.f64) -> aw.f64:
    await aw.yield_now()
    return aw.sin(v)


@aw.kernel
async def async_math(x: aw.Array[aw.f64], out: aw.Array[aw.f64], n: aw.i32):
    i = aw.block_id() * aw.WARP + aw.lane()
    v = x[min(i, n - 1)]
    a, b = await aw.join(later_sin(v), later_sin(v * 2.0))
    if i < n:
        out[i] = a + aw.exp(b)


@pytest.mark.parametrize("engine", ENGINES)
def test_math_in_async_code(engine, W, rng):
    n = W
    x = rng.uniform(-4, 4, n)
    out = np.full(n, POISON)
    _launch(async_math, engine, W, 1, [x, out, n])
    assert_close(out, np.sin(x) + np.exp(np.sin(2 * x)), (x,), f"async on {engine}")


def test_pass_also_rewrites_join_branches_before_lower_async(rng):
    """The pipeline runs it after lower_async, but it is valid on logical IR with joins."""
    x, out = rng.uniform(-4, 4, 32), np.full(32, POISON)
    compiled = async_math.specialize(x, out, 32, backend="sim", warp_width=32)
    before = ir.print_kernel(compiled.logical)
    expanded = lower_f64_math(compiled.logical)
    assert ir.print_kernel(compiled.logical) == before  # the input is left alone
    assert _f64_math_left(compiled.logical) == ["sin", "sin", "exp"]
    assert _f64_math_left(expanded) == []
    verify(expanded, "logical")
    interpreter.run(lower(expanded, compiled.options), 1, [x, out, 32])
    assert_close(out, np.sin(x) + np.exp(np.sin(2 * x)), (x,), "expanded before lower_async")


# ------------------------------------------------------------------ the pass and the pipeline


def _logical(kern, backend: str, W: int = 32):
    n = 4 * W
    args = [np.zeros(n) for _ in range(5)] + [np.zeros(5 * n), n]
    return kern.specialize(*args, backend=backend, warp_width=W)


def test_pipeline_expands_only_for_vulkan_unless_asked():
    compiled = _logical(transcendentals, "sim")
    sim = lower(compiled.logical, compiled.options)
    assert sorted(_f64_math_left(sim)) == sorted(MATH)  # numpy's, on the interpreter
    cuda = lower(compiled.logical, BuildOptions(backend="cuda", progress="independent"))
    assert sorted(_f64_math_left(cuda)) == sorted(MATH)  # ptx_math.py's sequences
    vulkan = lower(compiled.logical, BuildOptions(backend="vulkan", progress="cooperative"))
    assert _f64_math_left(vulkan) == []
    kept = lower(
        compiled.logical,
        BuildOptions(backend="vulkan", progress="cooperative"),
        expand_f64_math=False,
    )
    assert sorted(_f64_math_left(kept)) == sorted(MATH)


def test_f32_math_is_left_to_the_backend():
    compiled = nested.specialize(
        np.zeros(32), np.zeros(32, np.float32), np.zeros(32), 32, backend="sim"
    )
    expanded = lower_f64_math(compiled.logical)
    left = [
        (s.opcode, s.dst.type) for s in expanded.walk() if isinstance(s, ir.Op) and s.opcode in MATH
    ]
    assert left == [("exp", f32)]
    verify(expanded, "logical")


def test_expansion_uses_only_plain_arithmetic():
    expanded = lower_f64_math(_logical(transcendentals, "sim").logical)
    used = {s.opcode for s in expanded.walk() if isinstance(s, ir.Op)}
    transcendental = {"exp", "log", "sin", "cos", "pow", "sqrt"}
    assert not used & transcendental
    assert {"bitcast", "floor", "select"} <= used


def test_expanded_module_passes_spirv_val():
    from asyncwarp.backends.vulkan.emit import emit_spirv
    from asyncwarp.backends.vulkan.spirv_val import validate

    logical = _logical(transcendentals, "sim", W=64).logical
    options = BuildOptions(backend="vulkan", warp_width=64, subgroup=8, progress="cooperative")
    lowered = lower(logical, options, verify_each=True)
    for env in ("vulkan1.2", "vulkan1.3"):
        validate(emit_spirv(lowered, env), env)


def test_expanded_kernel_assembles_with_ptxas():
    """The expansion (bitcast included) is valid PTX too, though CUDA keeps ptx_math.py."""
    try:
        path = ptxas.find_ptxas()
    except ptxas.PtxasNotFound as e:
        pytest.fail(f"ptxas is required: {e}")
    logical = _logical(transcendentals, "sim").logical
    options = BuildOptions(backend="cuda", progress="independent", arch="sm_70")
    lowered = lower(logical, options, expand_f64_math=True)
    text = emit_ptx(lowered, "sm_70")
    assert "mov.b64" in text and "ex2" not in text
    ptxas.assemble(text, ptxas.nearest_target("sm_70", path), path)


# ------------------------------------------------------------------ constants


def test_pi_by_machin_matches_its_hex_expansion():
    # pi's first 72 fractional hex digits (the Blowfish P-array is made of them)
    digits = "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89452821E6"
    assert pi_fixed(4 * len(digits)) == int("3" + digits, 16)


def test_pieces_of_pi_over_2_are_short_and_sum_to_it():
    exact = Fraction(pi_fixed(400), 2**401)
    assert abs(exact - sum(Fraction(p) for p in PIO2_PIECES)) < Fraction(1, 2**150)
    for n, piece in enumerate(PIO2_PIECES):
        f = Fraction(piece)
        assert f.denominator <= 2 ** (22 * (n + 1) - 1)  # on the grid of its bit positions
        assert f.numerator < 2**22  # at most 22 significant bits: j * piece is exact


# ------------------------------------------------------------------ the bitcast op

WIDTH_PAIRS = [
    (s, d) for s in (i32, u32, f32, i64, u64, f64) for d in (i32, u32, f32, i64, u64, f64)
    if s != d and s.bits == d.bits
]  # fmt: skip


def _bitcast_kernel(src, dst, H: int) -> ir.Kernel:
    x, out = ir.Var("x", ArrayType(src)), ir.Var("out", ArrayType(dst))
    b = ir.Builder()
    i = b.op("add", b.op("mul", b.op("block_id"), ir.Const(H, i32)), b.op("sg_lane"))
    v = b.op("load", x, i, order="weak", scope="device")
    b.op("store", out, i, b.op("bitcast", v, type=dst), order="weak", scope="device")
    attrs = dict(warp_width=H, subgroup=H, fold=1, warps=1, block_size=H,
                 progress="cooperative", executor="block_on")  # fmt: skip
    return ir.Kernel("bitcast", [out, x], b.block, attrs=attrs)


def _random_bits(rng, t, n: int) -> np.ndarray:
    unsigned = np.uint32 if t.bits == 32 else np.uint64
    raw = rng.integers(0, np.iinfo(unsigned).max, n, dtype=unsigned, endpoint=True)
    raw[:4] = [0, 1, 1 << (t.bits - 1), (1 << t.bits) - 1]  # +0, the tiniest, -0, a NaN
    return raw.view(t.dtype)


def test_bitcast_verifier_rules():
    x = ir.Var("x", f64)
    for dst, ok in ((u64, True), (i64, True), (i32, False), (f32, False)):
        b = ir.Builder()
        b.op("bitcast", x, type=dst)
        kernel = ir.Kernel("k", [x], b.block, attrs={"warp_width": 32})
        if ok:
            verify(kernel)
        else:
            with pytest.raises(RuntimeError, match="bitcast needs"):
                verify(kernel)


def test_bitcast_reinterprets_bits_everywhere(rng):
    """Interpreter, Vulkan (OpBitcast) and PTX (mov.b32/b64) agree with numpy's view."""
    path = ptxas.find_ptxas()
    runtime = None
    if "vulkan" in BACKENDS:
        from asyncwarp.backends.vulkan.emit import emit_spirv
        from asyncwarp.backends.vulkan.runtime import VulkanRuntime

        runtime = VulkanRuntime()
    try:
        for src, dst in WIDTH_PAIRS:
            H = runtime.caps.subgroup_size if runtime else 32
            x = _random_bits(rng, src, 4 * H)
            want = x.view(dst.dtype)
            kernel = _bitcast_kernel(src, dst, H)
            verify(kernel, "lowered")
            out = np.full(x.nbytes, 0x5A, np.uint8).view(dst.dtype)
            interpreter.run(kernel, 4, [out, x])
            np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
            ptx = emit_ptx(_bitcast_kernel(src, dst, 32), "sm_70")
            ptxas.assemble(ptx, ptxas.nearest_target("sm_70", path), path)
            if runtime is not None:
                pipeline = runtime.pipeline(
                    emit_spirv(kernel), num_buffers=2, subgroup_size=H, name="bitcast"
                )
                out[:] = np.full(x.nbytes, 0x5A, np.uint8).view(dst.dtype)
                buffers = [runtime.to_device(a) for a in (out, x)]
                runtime.dispatch(pipeline, 4, buffers, readback=buffers)
                buffers[0].read(out=out)
                np.testing.assert_array_equal(out.view(np.uint8), want.view(np.uint8))
    finally:
        if runtime is not None:
            runtime.close()
