"""The frontend: Python kernels (sync and async) to logical IR, checked on the IR produced."""

from __future__ import annotations

import numpy as np
import pytest

import asyncwarp as aw
from asyncwarp import lane as imported_lane
from asyncwarp.core import frontend, ir, uniformity
from asyncwarp.core.frontend import Awaitable, KernelObject, compile_function, register_builtin
from asyncwarp.core.types import from_dtype
from asyncwarp.core.verify import verify

F32 = aw.Array[aw.f32]
I32 = aw.Array[aw.i32]
U32 = aw.Array[aw.u32]

SCALE = 3  # module constants are compile-time values
RATE = 0.5
DEBUG = False
NP_SCALE = np.float32(1.5)


def build(fn, *types, W=32):
    """Compile, then verify and analyse: everything the frontend emits must be valid IR."""
    k = compile_function(fn, list(types), warp_width=W)
    verify(k, "logical")
    uniformity.analyze(k)
    return k


def ops(k, opcode=None):
    found = [s for s in k.walk() if isinstance(s, ir.Op)]
    return [s for s in found if opcode is None or s.opcode == opcode]


def nodes(k, kind):
    return [s for s in k.walk() if isinstance(s, kind)]


def text(k):
    return ir.print_kernel(k)


# ---------------------------------------------------------------- kernels and params


def test_params_in_order_and_warp_width(W):
    def saxpy(y: F32, x: F32, a: aw.f32, n: aw.i32):
        i = aw.block_id() * aw.num_warps() * aw.WARP + aw.warp_id() * aw.WARP + aw.lane()
        if i < n:
            y[i] = a * x[i] + y[i]

    k = build(saxpy, F32, F32, aw.f32, aw.i32, W=W)
    assert k.name == "saxpy"
    assert [(p.name, p.type) for p in k.params] == [
        ("y", F32), ("x", F32), ("a", aw.f32), ("n", aw.i32)
    ]  # fmt: skip
    assert k.attrs["warp_width"] == W
    assert f"mul(%t2, {W}:i32)" in text(k)  # aw.WARP is the constant W
    assert [o.attrs for o in ops(k, "load")] == [{"order": "weak", "scope": "device"}] * 2
    assert len(ops(k, "store")) == 1 and len(nodes(k, ir.If)) == 1


def test_unannotated_params_take_the_given_types_and_name():
    def k(a, n):
        a[0] = n

    kern = compile_function(k, [U32, aw.u32], warp_width=32, name="renamed")
    assert kern.name == "renamed" and kern.params[1].type == aw.u32
    assert kern.loc.line > 0 and kern.loc.file.endswith("test_frontend.py")


def test_ops_carry_source_locations():
    def k(a: F32):
        a[aw.lane()] = 1.0

    line = k.__code__.co_firstlineno + 1
    store = ops(build(k, F32), "store")[0]
    assert store.loc.line == line and store.loc.file.endswith("test_frontend.py")
    assert "a[aw.lane()] = 1.0" in store.loc.text


# ---------------------------------------------------------------- typing


def test_literals_adapt_to_the_typed_operand():
    def k(f: F32, u: aw.Array[aw.u64], x: aw.f32, i: aw.u64):
        f[0] = x * 2
        u[0] = i + 1
        f[1] = x + 0.5

    t = text(build(k, F32, aw.Array[aw.u64], aw.f32, aw.u64))
    assert "mul(%x, 2.0:f32)" in t
    assert "add(%i, 1:u64)" in t
    assert "add(%x, 0.5:f32)" in t
    assert "cast" not in t


def test_literal_default_types():
    def k(a: F32):
        small = 7
        big = 2**40
        huge = 2**63
        frac = 0.25
        flag = True
        a[0] = frac + aw.f32(small + big + huge + flag)

    t = text(build(k, F32))
    assert "%small: i32 = copy(7:i32)" in t
    assert "%big: i64 = copy(1099511627776:i64)" in t
    assert "%huge: u64 = copy(9223372036854775808:u64)" in t
    assert "%frac: f32 = copy(0.25:f32)" in t
    assert "%flag: bool = copy(true)" in t


@pytest.mark.parametrize(
    "ta, tb, expected",
    [
        (aw.i32, aw.f32, aw.f32),
        (aw.u32, aw.i64, aw.i64),
        (aw.i32, aw.u32, aw.u32),
        (aw.f32, aw.f64, aw.f64),
        (aw.bool_, aw.bool_, aw.i32),
        (aw.u64, aw.i64, aw.u64),
    ],
)
def test_binary_operands_promote(ta, tb, expected):
    def k(out: aw.Array[aw.f64], a, b):
        out[0] = aw.f64(a + b)

    kern = build(k, aw.Array[aw.f64], ta, tb)
    (add,) = ops(kern, "add")
    assert add.dst.type == expected
    casts = [o for o in ops(kern, "cast") if o.dst.type == expected]
    assert len(casts) == (ta != expected) + (tb != expected)


def test_true_division_converts_integers_to_float():
    def k(out: F32, wide: aw.Array[aw.f64], i: aw.i32, j: aw.i32, n: aw.i64):
        out[0] = i / j
        wide[0] = n / j
        out[1] = aw.f32(i // j + i % j)

    kern = build(k, F32, aw.Array[aw.f64], aw.i32, aw.i32, aw.i64)
    divs = ops(kern, "div")
    assert [d.dst.type for d in divs] == [aw.f32, aw.f64]
    assert ops(kern, "floordiv")[0].dst.type == aw.i32 and ops(kern, "mod")


def test_power_by_constant_is_multiplication():
    def k(out: F32, x: aw.f32, y: aw.f32, n: I32):
        out[0] = x**3
        out[1] = x**0
        out[2] = x**y
        out[3] = x**0.5
        n[0] = n[1] ** 2
        n[2] = 2**10

    kern = build(k, F32, aw.f32, aw.f32, I32)
    t = text(kern)
    assert len(ops(kern, "mul")) == 3  # x*x, x*(x*x), n*n
    assert "store(%out, 1:i32, 1.0:f32)" in t
    assert [o.args[1] for o in ops(kern, "pow")] == [kern.params[2], ir.Const(0.5, aw.f32)]
    assert "store(%n, 2:i32, 1024:i32)" in t


def test_bitwise_shift_and_bool_operators():
    def k(a: U32, p: aw.bool_, q: aw.bool_):
        x = a[0]
        a[1] = (x & 0xFF) | (x ^ 3) | ~x
        a[2] = x << 4 >> 1
        if p & q or p ^ q:
            a[3] = 1

    kern = build(k, U32, aw.bool_, aw.bool_)
    codes = [o.opcode for o in ops(kern)]
    for opcode in ("band", "bor", "bxor", "bnot", "shl", "shr", "land", "ne", "lor"):
        assert opcode in codes, opcode
    assert ops(kern, "shl")[0].args[1] == ir.Const(4, aw.u32)


def test_signed_literal_bit_patterns_adapt_in_bitwise_operators():
    def k(a: I32):
        a[0] = a[0] & 0xFFFF0000

    (band,) = ops(build(k, I32), "band")
    assert band.args[1] == ir.Const(-65536, aw.i32)


def test_comparison_chain_evaluates_the_middle_once():
    def k(a: I32, lo: aw.i32, hi: aw.i32):
        if lo < a[0] < hi:
            a[1] = 1

    kern = build(k, I32, aw.i32, aw.i32)
    assert len(ops(kern, "load")) == 1
    assert [o.opcode for o in ops(kern) if o.dst and o.dst.type == aw.bool_] == [
        "lt", "lt", "land"
    ]  # fmt: skip


def test_and_or_short_circuit_only_when_needed():
    def pure(a: I32, n: aw.i32):
        if aw.lane() < n and aw.lane() > 2 or n == 0:
            a[0] = 1

    def guarded(a: I32, n: aw.i32):
        i = aw.lane()
        if i < n and a[i] > 0:  # the load must not run for i >= n
            a[0] = 1

    kp = build(pure, I32, aw.i32)
    assert len(nodes(kp, ir.If)) == 1 and ops(kp, "land") and ops(kp, "lor")
    kg = build(guarded, I32, aw.i32)
    outer = [s for s in kg.body if isinstance(s, ir.If)][0]
    assert [o.opcode for o in outer.then if isinstance(o, ir.Op)][0] == "load"


def test_truthiness_and_not():
    def k(a: I32, f: aw.f32, n: aw.i32):
        if not n or f:
            a[0] = 1

    t = text(build(k, I32, aw.f32, aw.i32))
    assert "ne(%n, 0:i32)" in t and "lnot" in t and "ne(%f, 0.0:f32)" in t


def test_conditional_expression_select_or_if():
    def k(a: F32, c: aw.bool_, x: aw.f32):
        a[0] = x if c else 0
        a[1] = a[2] if c else 1.0

    kern = build(k, F32, aw.bool_, aw.f32)
    (sel,) = ops(kern, "select")
    assert sel.args[1:] == (kern.params[2], ir.Const(0.0, aw.f32))
    assert len(nodes(kern, ir.If)) == 1  # the arm with a load is not speculated


def test_casts():
    def k(a: U32, f: F32, x: aw.f32, i: aw.i32):
        a[0] = aw.u32(x)
        f[0] = float(i)
        a[1] = aw.u32(int(x))
        a[2] = aw.u32(bool(i))
        a[3] = aw.u32(-1)
        f[1] = aw.f32(3)

    kern = build(k, U32, F32, aw.f32, aw.i32)
    t = text(kern)
    assert [c.dst.type for c in ops(kern, "cast")][:3] == [aw.u32, aw.f32, aw.i32]
    assert "store(%a, 3:i32, 4294967295:u32)" in t
    assert "store(%f, 1:i32, 3.0:f32)" in t
    assert "ne(%i, 0:i32)" in t


def test_variable_type_is_fixed_by_the_first_assignment():
    def k(a: F32):
        x = 0.0
        x = 1  # an int literal adapts to the float variable
        x += 2
        y: aw.u32 = 5
        z: aw.f64
        z = 1.5
        a[0] = x + aw.f32(y) + aw.f32(z)

    t = text(build(k, F32))
    assert "%x: f32 = copy(1.0:f32)" in t and "add(%x, 2.0:f32)" in t
    assert "%y: u32 = copy(5:u32)" in t and "%z: f64 = copy(1.5:f64)" in t


def test_unary_minus_and_constant_folding():
    def k(a: I32, u: U32):
        a[0] = -(2**31)
        a[1] = -a[2]
        u[0] = aw.WARP * 4 - 1

    t = text(build(k, I32, U32))
    assert "store(%a, 0:i32, -2147483648:i32)" in t
    assert "neg(" in t
    assert "store(%u, 0:i32, 127:u32)" in t


# ---------------------------------------------------------------- statements


def test_if_elif_else():
    def k(a: I32, n: aw.i32):
        if n < 0:
            a[0] = -1
        elif n == 0:
            a[0] = 0
        else:
            a[0] = 1

    kern = build(k, I32, aw.i32)
    (outer,) = [s for s in kern.body if isinstance(s, ir.If)]
    inner = [s for s in outer.else_ if isinstance(s, ir.If)]
    assert len(inner) == 1 and inner[0].else_
    assert outer.loc.line + 2 == inner[0].loc.line


def test_compile_time_conditions_compile_one_branch(W):
    def k(a: I32):
        if aw.WARP == 64:
            a[0] = 64
        else:
            a[0] = 32
        if DEBUG:
            a[1] = aw.lane() // 0

    kern = build(k, I32, W=W)
    assert not nodes(kern, ir.If)
    assert ops(kern, "store")[0].args[2] == ir.Const(W, aw.i32)


def test_while_loops():
    def k(a: I32, n: aw.i32):
        i = 0
        while i < n:
            i += 1
        while True:
            i -= 1
            if i < 0:
                break
        while False:
            a[5] = 5
        a[0] = i

    kern = build(k, I32, aw.i32)
    first, second = nodes(kern, ir.Loop)
    assert first.cond is not None and first.cond.type == aw.bool_ and first.header
    assert second.cond is None and not second.header
    assert len(ops(kern, "store")) == 1


def test_for_range_shapes():
    def k(a: I32, n: aw.i32, s: aw.i32, m: aw.u32):
        for i in range(n):
            a[i] = i
        for j in range(10, 0, -2):
            a[j] = j
        for q in range(0, n, s):
            a[q] = q
        for r in range(m):
            a[0] = aw.i32(r)

    kern = build(k, I32, aw.i32, aw.i32, aw.u32)
    loops = nodes(kern, ir.Loop)
    tests = [[o.opcode for o in lp.header] for lp in loops]
    assert tests[0] == ["lt"] and tests[1] == ["gt"]
    assert tests[2] == ["lt", "gt", "select"]  # the sign of a run-time step picks the test
    assert loops[3].header[0].args[0].type == aw.u32
    # the body starts by copying the hidden counter into the loop variable
    first = loops[0].body[0]
    assert first.opcode == "copy" and first.dst.name == "i" and first.args[0].name == "i_ctr"
    assert [o.opcode for o in loops[0].latch] == ["add"]
    assert loops[1].latch[0].args[1] == ir.Const(-2, aw.i32)


def test_for_loop_bound_is_read_once():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            n = n - 1
            a[i] = n

    kern = build(k, I32, aw.i32)
    (loop,) = nodes(kern, ir.Loop)
    bound = loop.header[0].args[1]
    assert bound is not kern.params[1] and bound.name.startswith("bound")


def test_break_and_continue():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            if i == 3:
                continue
            if a[i] < 0:
                break
            a[i] = 0

    kern = build(k, I32, aw.i32)
    assert len(nodes(kern, ir.Break)) == 1 and len(nodes(kern, ir.Continue)) == 1


# ---------------------------------------------------------------- device functions


@aw.func
def square(x):
    return x * x


@aw.func
def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@aw.func
def divmod_(a, b):
    return a // b, a % b


@aw.func
def first_negative(a, n):
    for i in range(n):
        if a[i] < 0:
            return i
    return -1


@aw.func
def scaled(x, factor=2, *, offset=0.0):
    return x * factor + offset


@aw.func
def fill(a, v: aw.f32):
    a[aw.lane()] = v


def test_inlined_calls_copy_arguments_and_get_fresh_variables():
    def k(a: F32):
        a[0] = square(a[1]) + square(a[2])

    kern = build(k, F32)
    names = [o.dst.name for o in ops(kern, "copy")]
    assert names == ["square_x", "square_ret", "square1_x", "square1_ret"]
    assert not nodes(kern, ir.Loop)


def test_early_returns_in_tail_position_need_no_loop():
    def k(a: F32, x: aw.f32):
        a[0] = clamp(x, 0.0, 1.0)

    kern = build(k, F32, aw.f32)
    assert not nodes(kern, ir.Loop) and len(nodes(kern, ir.If)) == 2
    assert [o.dst.name for o in ops(kern, "copy")].count("clamp_ret") == 3


def test_constant_arguments_stay_compile_time():
    def k(a: F32, x: aw.f32):
        a[0] = clamp(x, 0, 1)  # int literals compare with an f32: they become 0.0 and 1.0

    kern = build(k, F32, aw.f32)
    assert ops(kern, "lt")[0].args[1] == ir.Const(0.0, aw.f32)


def test_return_inside_a_loop_uses_the_return_loop_and_flag():
    def k(a: I32, n: aw.i32):
        a[0] = first_negative(a, n)

    kern = build(k, I32, aw.i32)
    outer, inner = nodes(kern, ir.Loop)
    assert outer.cond is None and isinstance(outer.body[-1], ir.Break)
    flag = [o for o in ops(kern, "copy") if o.dst.name == "first_negative_returned"]
    assert [o.args[0] for o in flag] == [ir.Const(False, aw.bool_), ir.Const(True, aw.bool_)]
    after = [s for s in outer.body if isinstance(s, ir.If)][0]
    assert after.cond.name == "first_negative_returned" and isinstance(after.then[0], ir.Break)


def test_kernel_early_return_inside_a_loop():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            if a[i] == 0:
                return
        a[0] = 1

    kern = build(k, I32, aw.i32)
    assert isinstance(kern.body[-1], ir.Loop) and kern.body[-1].cond is None


def test_tuple_returns_and_unpacking():
    def k(a: I32, x: aw.i32, y: aw.i32):
        q, r = divmod_(x, y)
        a[0] = q
        a[1] = r
        q, r = r, q  # both read before either is written
        a[2] = q

    kern = build(k, I32, aw.i32, aw.i32)
    copies = [(o.dst.name, o.args[0]) for o in ops(kern, "copy")]
    swap = copies[-4:]
    assert swap[2][0] == "q" and swap[2][1].name != "r"
    assert swap[3][0] == "r" and swap[3][1].name != "q"


def test_keyword_arguments_defaults_and_annotations():
    def k(a: F32, x: aw.f32):
        a[0] = scaled(x) + scaled(x, 3, offset=1.0)
        fill(a, 1)

    kern = build(k, F32, aw.f32)
    t = text(kern)
    assert "mul(%scaled_x, 2.0:f32)" in t and "mul(%scaled1_x, 3.0:f32)" in t
    offsets = [o.args[1] for o in ops(kern, "add")][:2]
    assert offsets == [ir.Const(0.0, aw.f32), ir.Const(1.0, aw.f32)]  # default, then keyword
    assert ops(kern, "store")[-1].args[2] == ir.Const(1.0, aw.f32)  # annotated v: f32


def test_arrays_are_passed_by_reference():
    def k(a: F32):
        fill(a, 2.0)

    kern = build(k, F32)
    assert ops(kern, "store")[0].args[0] is kern.params[0]


# ---------------------------------------------------------------- names


def test_globals_closures_and_imported_names():
    local_offset = 4

    def k(a: F32, i: I32):
        a[0] = SCALE * RATE + NP_SCALE
        i[0] = local_offset + imported_lane()

    kern = build(k, F32, I32)
    t = text(kern)
    assert "store(%a, 0:i32, 3.0:f32)" not in t  # f32 + f32 is left to the device
    assert "add(1.5:f32, 1.5:f32)" in t
    assert "add(4:i32, %t" in t and ops(kern, "lane")


def test_arrays_and_shared_memory():
    def k(a: F32):
        i = aw.lane()
        buf = aw.shared(aw.f32, aw.WARP * 4)
        buf[i] = a[i]
        a[i] += buf[i + 1]
        flags = aw.shared(np.uint32, 8)
        flags[0] = 1

    kern = build(k, F32, W=64)
    first, second = kern.body[:2]
    assert first.opcode == "shared_alloc" and first.attrs == {"n": 256}
    assert first.dst.name == "buf" and first.dst.type == ir.ArrayType(aw.f32, "shared")
    assert second.dst.name == "flags" and second.dst.type.elem == aw.u32
    assert [o.opcode for o in ops(kern)].count("load") == 3


# ---------------------------------------------------------------- builtins


def test_execution_model_and_collectives():
    def k(a: I32, f: F32, u: aw.Array[aw.u64]):
        x = a[aw.lane()]
        a[0] = aw.lane() + aw.warp_id() + aw.block_id() + aw.num_warps() + aw.num_blocks()
        a[1] = aw.warp_sum(x) + aw.warp_min(x) + aw.warp_max(x) + aw.warp_prefix_sum(x)
        f[0] = aw.shuffle(f[1], 3) + aw.shuffle_xor(f[2], 1)
        u[0] = aw.ballot(x)  # ints are tested with != 0
        if aw.warp_any(x > 0) and aw.warp_all(x < 9):
            a[2] = aw.warp_sum(x > 0)  # bools are counted as i32
        aw.warp_sync()

    kern = build(k, I32, F32, aw.Array[aw.u64])
    codes = [o.opcode for o in ops(kern)]
    for opcode in ("lane", "warp_id", "block_id", "num_warps", "num_blocks", "warp_sum",
                   "warp_min", "warp_max", "warp_prefix_sum", "shuffle", "shuffle_xor",
                   "ballot", "warp_any", "warp_all", "warp_sync"):  # fmt: skip
        assert opcode in codes, opcode
    assert ops(kern, "ballot")[0].args[0].type == aw.bool_
    assert ops(kern, "warp_sum")[1].args[0].type == aw.i32


def test_math_and_python_builtins():
    def k(f: F32, a: I32, x: aw.f32, i: aw.i32, j: aw.i32):
        f[0] = aw.sqrt(x) + aw.exp(x) + aw.log(x) + aw.sin(x) + aw.cos(x)
        f[1] = aw.floor(x) + aw.ceil(x) + aw.sqrt(2)
        a[0] = aw.popcount(i) + abs(i) + min(i, j, 3) + max(i, j) + abs(-4)

    kern = build(k, F32, I32, aw.f32, aw.i32, aw.i32)
    codes = [o.opcode for o in ops(kern)]
    for opcode in ("sqrt", "exp", "log", "sin", "cos", "floor", "ceil", "popcount", "abs"):
        assert opcode in codes
    assert codes.count("min") == 2 and codes.count("max") == 1
    assert ops(kern, "sqrt")[1].args[0] == ir.Const(2.0, aw.f32)
    assert "4:i32" in text(kern)


def test_memory_builtins_carry_order_and_scope():
    def k(a: U32, f: F32):
        v = aw.load(a, 0, order="acquire", scope="block")
        aw.store(a, 1, v, order="release")
        aw.fence(scope="block")
        aw.barrier()
        old = aw.atomic_add(a, 2, 1)
        aw.atomic_min(a, 2, old)
        aw.atomic_max(a, 2, 7, "acq_rel", "device")
        aw.atomic_and(a, 3, 1)
        aw.atomic_or(a, 3, 2)
        aw.atomic_xor(a, 3, 4, order="seq_cst")
        aw.atomic_exchange(f, 0, 1.5)
        aw.atomic_add(f, 1, 2)
        aw.atomic_cas(a, 4, 0, 1, order="acquire", scope="warp")

    kern = build(k, U32, F32)
    load = ops(kern, "load")[0]
    assert load.attrs == {"order": "acquire", "scope": "block"}
    assert ops(kern, "store")[0].attrs == {"order": "release", "scope": "device"}
    assert ops(kern, "fence")[0].attrs == {"scope": "block"} and ops(kern, "barrier")
    atomics = ops(kern, "atomic")
    assert [a.attrs["op"] for a in atomics] == [
        "add", "min", "max", "and", "or", "xor", "exchange", "add"
    ]  # fmt: skip
    assert atomics[0].args[2] == ir.Const(1, aw.u32)  # the literal adapts to the element
    assert atomics[2].attrs["order"] == "acq_rel"
    assert atomics[7].args[2] == ir.Const(2.0, aw.f32)
    cas = ops(kern, "atomic_cas")[0]
    assert cas.args[2:] == (ir.Const(0, aw.u32), ir.Const(1, aw.u32))
    assert cas.attrs == {"order": "acquire", "scope": "warp"}


# ---------------------------------------------------------------- async


@aw.func
async def produce(a, i):
    await aw.sleep(100)
    return a[i] * 2.0


@aw.func
async def wait_flag(flags):
    await aw.until(flags[0] != 0)


def test_await_until_is_a_suspend_with_its_condition():
    async def k(a: I32):
        await aw.until(a[0] > 0 and aw.lane() < 3)
        a[1] = 1

    kern = build(k, I32)
    (s,) = nodes(kern, ir.Suspend)
    assert s.what == "until a[0] > 0 and aw.lane() < 3"
    assert s.ready.type == aw.bool_ and s.poll[-1].dst is s.ready
    assert [o.opcode for o in s.poll][0] == "load"  # re-evaluated at every poll


def test_await_sleep_reads_the_clock():
    async def k(a: I32, n: aw.u32):
        await aw.sleep(n * 10)

    kern = build(k, I32, aw.u32)
    (s,) = nodes(kern, ir.Suspend)
    start = [o for o in kern.body if isinstance(o, ir.Op) and o.opcode == "timer"]
    assert len(start) == 1 and s.what == "sleep(n * 10)"
    assert [o.opcode for o in s.poll] == ["timer", "sub", "ge"]
    assert s.poll[2].args[1].type == aw.u64


def test_await_yield_now_is_ready_on_the_second_poll():
    async def k(a: I32):
        await aw.yield_now()

    kern = build(k, I32)
    (s,) = nodes(kern, ir.Suspend)
    flag = kern.body[0].dst
    assert kern.body[0].args[0] == ir.Const(False, aw.bool_)
    assert [(o.dst, o.args[0]) for o in s.poll] == [
        (s.ready, flag), (flag, ir.Const(True, aw.bool_))
    ]  # fmt: skip
    assert s.what == "yield_now"


def test_await_async_function_inlines_its_body():
    async def k(a: F32, flags: I32):
        await wait_flag(flags)
        a[0] = await produce(a, 1)

    kern = build(k, F32, I32)
    assert [s.what for s in nodes(kern, ir.Suspend)] == ["until flags[0] != 0", "sleep(100)"]
    assert ops(kern, "store")[0].args[2].name == "produce_ret"


def test_join_builds_one_branch_per_future():
    async def k(a: F32, flags: I32):
        if aw.warp_id() < 2:
            x, _, y = await aw.join(produce(a, 0), wait_flag(flags), produce(a, 1),
                                    warps=(1, 2, 1))  # fmt: skip
            a[2] = x + y

    kern = build(k, F32, I32)
    (j,) = nodes(kern, ir.Join)
    assert len(j.branches) == 3 and j.warps == (1, 2, 1)
    assert [s.what for b in j.branches for s in b if isinstance(s, ir.Suspend)] == [
        "sleep(100)", "until flags[0] != 0", "sleep(100)"
    ]  # fmt: skip
    add = ops(kern, "add")[-1]
    assert [v.name for v in add.args] == ["x", "y"]


def test_select_gives_the_winner_index_and_value():
    async def k(a: F32, out: I32):
        i, v = await aw.select(produce(a, 0), produce(a, 1))
        out[0] = i
        a[0] = v
        j, _ = await aw.select(aw.sleep(10), aw.yield_now())
        out[1] = j

    kern = build(k, F32, I32)
    first, second = nodes(kern, ir.Select)
    assert first.index.type == aw.i32 and len(first.branches) == 2
    for branch in first.branches:
        last = branch[-1]
        assert last.opcode == "copy" and last.dst.type == aw.f32
    assert first.branches[0][-1].dst is first.branches[1][-1].dst
    assert not any(isinstance(s, ir.Op) and s.opcode == "copy" and s.dst.name.startswith(
        "selected") for b in second.branches for s in b)  # fmt: skip


# ---------------------------------------------------------------- extension hooks


def _my_counter(start):
    raise TypeError("host")


def _my_wait(cond):
    raise TypeError("host")


class Counter(KernelObject):
    kind = "test counter"

    def __init__(self, fe, start):
        self.cell = fe.shared_alloc(aw.i32, 1, "counter")
        fe.b.op("store", self.cell, fe.constant(0, aw.i32), fe.value(start, aw.i32),
                order="relaxed", scope="block")  # fmt: skip

    def call_method(self, fe, name, args, kwargs, loc):
        if name == "bump":
            return fe.b.op("atomic", self.cell, fe.constant(0, aw.i32),
                           fe.value(args[0], aw.i32, loc), op="add", order="relaxed",
                           scope="block")  # fmt: skip
        if name == "zero":
            return Zero(self)
        return super().call_method(fe, name, args, kwargs, loc)


class Zero(Awaitable):
    describe = "counter.zero()"

    def __init__(self, counter):
        self.counter = counter

    def emit_await(self, fe, loc):
        def poll():
            v = fe.b.op("load", self.counter.cell, fe.constant(0, aw.i32), order="acquire",
                        scope="block")  # fmt: skip
            return fe.binary("eq", v, 0, loc)

        block, ready = fe.build_poll(poll)
        fe.b.emit(ir.Suspend(block, ready, "counter zero", loc))
        return 7


@register_builtin(_my_counter)
def _counter_handler(fe, args, kwargs, loc):
    assert fe.at_kernel_top_level() and not fe.has_awaited() and fe.warp_width in (32, 64)
    return Counter(fe, args[0])


@aw.func
def bump_twice(c):
    c.bump(1)
    return c.bump(1)


def test_kernel_objects_and_custom_awaitables():
    async def k(a: I32):
        c = _my_counter(5)
        same = c
        a[0] = bump_twice(same)
        a[1] = await c.zero()

    kern = build(k, I32)
    assert kern.body[0].opcode == "shared_alloc" and kern.body[0].dst.name == "counter"
    assert len(ops(kern, "atomic")) == 2
    (s,) = nodes(kern, ir.Suspend)
    assert s.what == "counter zero"
    assert ops(kern, "store")[-1].args[2] == ir.Const(7, aw.i32)
    assert frontend.lookup_builtin(_my_counter).handler is _counter_handler


def test_lazy_builtins_get_the_argument_syntax():
    seen = {}

    @register_builtin(_my_wait, lazy=True)
    def handler(fe, args, kwargs, loc):
        seen["text"] = fe.source_text(args[0])
        return fe.eval(args[0])

    def k(a: I32):
        a[0] = _my_wait(a[1] + 1)

    build(k, I32)
    assert seen["text"] == "a[1] + 1"


def test_docstrings_and_pass_are_ignored():
    def k(a: I32):
        """A kernel with a docstring."""
        pass
        ...

    assert build(k, I32).body == []


def _probe():
    raise TypeError("host")


def test_top_level_tracking_for_primitives():
    seen = []

    @register_builtin(_probe)
    def handler(fe, args, kwargs, loc):
        seen.append((fe.at_kernel_top_level(), fe.has_awaited(), fe.in_async))

    async def k(a: I32, n: aw.i32):
        _probe()
        for i in range(n):
            _probe()
            if a[i] == 0:
                return
        await aw.yield_now()
        _probe()

    build(k, I32, aw.i32)
    assert seen == [(True, False, True), (False, False, True), (False, True, True)]


@aw.func
def relu(x):
    if x < 0:
        return 0  # typed by the other return: an f32 zero for an f32 x
    return x


def test_literal_returns_take_the_type_of_the_other_returns():
    def k(a: F32, i: I32):
        a[0] = relu(a[1])
        i[0] = relu(i[1])

    kern = build(k, F32, I32)
    rets = [o for o in ops(kern, "copy") if o.dst.name.endswith("_ret")]
    assert [(r.dst.type, r.args[0]) for r in rets if isinstance(r.args[0], ir.Const)] == [
        (aw.f32, ir.Const(0.0, aw.f32)), (aw.i32, ir.Const(0, aw.i32))
    ]  # fmt: skip


SIZES = (4, 8)


def test_decorated_kernels_tuple_constants_and_annotated_arrays():
    @aw.kernel
    def k(a: F32):
        buf: aw.Array[aw.f32] = aw.shared(aw.f32, SIZES[1])
        buf[0] = a[SIZES[0]]

    kern = build(k, F32)  # the @aw.kernel line is ignored; its function is compiled
    assert kern.name == "k" and kern.body[0].attrs == {"n": 8}
    assert ops(kern, "load")[0].args[1] == ir.Const(4, aw.i32)


# ---------------------------------------------------------------- behaviour (reference interpreter)


def execute(fn, W, *args, warps=1):
    """Compile fn for W, lower it (H = W) and run one block on the reference interpreter."""
    from asyncwarp.core import interpreter
    from asyncwarp.core.backend import BuildOptions
    from asyncwarp.core.passes.pipeline import lower

    types = [aw.Array[from_dtype(a.dtype)] if isinstance(a, np.ndarray)
             else from_dtype(np.asarray(a).dtype) for a in args]  # fmt: skip
    kernel = build(fn, *types, W=W)
    options = BuildOptions(warp_width=W, warps=warps, subgroup=W, progress="independent")
    interpreter.run(lower(kernel, options), 1, list(args))


@aw.func
def py_divmod(a, b):
    return a // b, a % b


def test_integer_arithmetic_follows_python(W, rng):
    def k(out: I32, f: F32, x: I32, y: I32):
        i = aw.lane()
        q, r = py_divmod(x[i], y[i])
        out[4 * i] = q
        out[4 * i + 1] = r
        out[4 * i + 2] = (x[i] << 3) ^ (y[i] >> 1) | 5
        out[4 * i + 3] = x[i] ** 3 - abs(y[i]) + min(x[i], y[i], 7)
        f[i] = x[i] / y[i] + 0.5

    x = rng.integers(-1000, 1000, W).astype(np.int32)
    y = rng.integers(1, 50, W).astype(np.int32) * rng.choice([-1, 1], W).astype(np.int32)
    out = np.full(4 * W, -0x5EADBEE, np.int32)
    f = np.full(W, np.nan, np.float32)
    execute(k, W, out, f, x, y)
    np.testing.assert_array_equal(out[0::4], x // y)
    np.testing.assert_array_equal(out[1::4], x % y)
    np.testing.assert_array_equal(out[2::4], (x << 3) ^ (y >> 1) | 5)
    want = x.astype(np.int64) ** 3 - abs(y) + np.minimum(np.minimum(x, y), 7)
    np.testing.assert_array_equal(out[3::4], want.astype(np.int32))
    np.testing.assert_allclose(f, (x / y + 0.5).astype(np.float32), rtol=1e-6)


def test_loops_returns_and_short_circuits_follow_python(W, rng):
    def k(out: I32, a: I32, n: aw.i32):
        i = aw.lane()
        total = 0
        for j in range(i, -1, -3):  # negative constant step
            total += j
        for j in range(0, n, n // 4 - 2):  # a step known only at run time
            total += 1
            j = 100  # does not change the iteration
        steps = 0
        while steps < i and not (steps > 5 and a[steps] < 0):
            steps += 1
        out[3 * i] = total
        out[3 * i + 1] = first_negative(a, i) if i < n and a[i] > -1000 else -7
        out[3 * i + 2] = steps

    a = rng.integers(-20, 100, W).astype(np.int32)
    out = np.full(3 * W, -0x5EADBEE, np.int32)
    n = np.int32(W // 2 + 3)
    execute(k, W, out, a, n)
    lanes = np.arange(W)
    step = int(n) // 4 - 2
    want_total = [sum(range(i, -1, -3)) + len(range(0, int(n), step)) for i in lanes]
    np.testing.assert_array_equal(out[0::3], want_total)

    def first_neg(i):
        return next((j for j in range(i) if a[j] < 0), -1)

    np.testing.assert_array_equal(out[1::3], [first_neg(i) if i < n else -7 for i in lanes])

    def steps_of(i):
        s = 0
        while s < i and not (s > 5 and a[s] < 0):
            s += 1
        return s

    np.testing.assert_array_equal(out[2::3], [steps_of(i) for i in lanes])


def test_casts_and_literal_typing_follow_the_documented_rules(W, rng):
    def k(out: U32, f: F32, x: F32, u: U32):
        i = aw.lane()
        out[3 * i] = aw.u32(x[i])  # truncates toward zero, saturates at 0
        out[3 * i + 1] = u[i] - 1  # wraps around in u32
        out[3 * i + 2] = aw.u32(aw.warp_sum(aw.i32(x[i] > 0.0)))
        f[i] = clamp(x[i] * 2, -1, 1) if u[i] & 1 else relu(x[i])

    x = (rng.standard_normal(W) * 10).astype(np.float32)
    u = rng.integers(0, 4, W).astype(np.uint32)
    out = np.full(3 * W, 0xDEADBEEF, np.uint32)
    f = np.full(W, np.nan, np.float32)
    execute(k, W, out, f, x, u)
    np.testing.assert_array_equal(out[0::3], np.where(x > 0, np.trunc(x), 0).astype(np.uint32))
    np.testing.assert_array_equal(out[1::3], u - np.uint32(1))
    np.testing.assert_array_equal(out[2::3], np.full(W, (x > 0).sum(), np.uint32))
    want = np.where(u & 1, np.clip(x * 2, -1, 1), np.maximum(x, 0)).astype(np.float32)
    np.testing.assert_array_equal(f, want)
