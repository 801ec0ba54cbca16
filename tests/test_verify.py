"""The IR verifier: valid IR passes at its stage; each kind of broken IR is named precisely."""

from __future__ import annotations

import pytest

import asyncwarp as aw
from asyncwarp.core import ir
from asyncwarp.core.frontend import compile_function
from asyncwarp.core.ir import Const, Loc, Var
from asyncwarp.core.types import ArrayType, bool_, f32, i32, u32, u64
from asyncwarp.core.verify import verify

LOC = Loc("kernel.py", 7, 4, "    x = y")
GLOBAL_F32 = ArrayType(f32, "global")


def kernel(body, params=(), **attrs):
    return ir.Kernel("k", list(params), body, attrs=attrs)


def op(dst, opcode, *args, **attrs):
    return ir.Op(dst, opcode, tuple(args), attrs, LOC)


def broken(k, *fragments, stage="logical"):
    with pytest.raises(RuntimeError) as info:
        verify(k, stage)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---------------------------------------------------------------- valid IR


def test_frontend_output_is_valid(W):
    @aw.func
    async def fetch(a, i):
        await aw.sleep(10)
        return a[i]

    async def k(out: aw.Array[aw.f32], a: aw.Array[aw.f32], n: aw.i32):
        buf = aw.shared(aw.f32, aw.WARP)
        i = aw.lane()
        buf[i] = a[i] if i < n else 0.0
        aw.barrier()
        for j in range(n):
            if j > 3:
                break
            out[j] = aw.warp_sum(buf[j])
        v, w = await aw.join(fetch(a, i), fetch(a, 0))
        await aw.until(aw.atomic_add(out, 0, 1.0) >= 0.0)
        out[i] = v + w + aw.sqrt(aw.f32(aw.ballot(i > 2)))

    k_ir = compile_function(k, [aw.Array[aw.f32], aw.Array[aw.f32], aw.i32], warp_width=W)
    verify(k_ir, "logical")


def test_valid_lowered_ir():
    b = ir.Builder()
    out = Var("out", GLOBAL_F32)
    lane = b.op("sg_lane")
    x = b.op("cast", lane, type=f32)
    total = b.op("sg_reduce", x, op="add", cluster=8)
    done = b.op("block_all", b.op("gt", total, Const(0.0, f32)))
    b.emit(ir.Loop([], None, [ir.If(done, [ir.Break()], [])], []))
    b.op("store", out, lane, total, order="weak", scope="device")
    verify(kernel(b.block, [out], subgroup=8), "lowered")


def test_select_arms_must_match_each_other():
    c = Var("c", bool_)
    x = Var("x", f32)
    good = kernel([op(c, "copy", Const(True, bool_)), op(x, "copy", Const(1.0, f32)),
                   op(Var("s", f32), "select", c, x, Const(0.0, f32))])  # fmt: skip
    verify(good)
    bad = kernel([op(c, "copy", Const(True, bool_)), op(x, "copy", Const(1.0, f32)),
                  op(Var("s", f32), "select", c, x, Const(0, i32))])  # fmt: skip
    broken(bad, "operand 2", "'same1'")


# ---------------------------------------------------------------- ops


def test_message_names_the_op_its_operand_types_and_location():
    x = Var("x", bool_)
    k = kernel([op(x, "copy", Const(True, bool_)), op(Var("y", bool_), "add", x, x)])
    message = broken(k, "kernel.py:7:4", "add(%x: bool, %x: bool)", "operand 0", "'num'")
    assert message.startswith("IR verifier (logical, kernel k)")


def test_arity_and_unknown_opcodes():
    x = Var("x", i32)
    broken(kernel([op(x, "add", Const(1, i32))]), "add takes 2 operands, got 1")
    broken(kernel([op(x, "frobnicate", Const(1, i32))]), "unknown IR opcode 'frobnicate'")


def test_destination_rules():
    x = Var("x", i32)
    broken(kernel([op(None, "add", Const(1, i32), Const(2, i32))]), "needs a destination")
    broken(kernel([op(x, "fence", scope="device")]), "has no result but has a destination")
    broken(kernel([op(Var("b", f32), "lt", Const(1, i32), Const(2, i32))]),
           "the result should be bool, but the destination is f32")  # fmt: skip
    broken(kernel([op(Var("s", u32), "add", Const(1, i32), Const(2, i32))]),
           "the result should be i32")  # fmt: skip
    broken(kernel([op(Var("c", GLOBAL_F32), "cast", Const(1, i32))]),
           "array variables are defined only by parameters and shared_alloc")  # fmt: skip


def test_shared_alloc_rules():
    shared = Var("s", ArrayType(f32, "shared"))
    verify(kernel([op(shared, "shared_alloc", n=4)]))
    broken(kernel([op(Var("s", ArrayType(f32, "shared")), "shared_alloc", n=0)]), "n > 0")
    broken(kernel([op(Var("s", f32), "shared_alloc", n=4)]), "must define a shared array")
    broken(kernel([op(shared, "shared_alloc", n=4), op(shared, "shared_alloc", n=4)]),
           "defined twice")  # fmt: skip


def test_memory_attributes():
    a = Var("a", ArrayType(u32, "global"))
    v = Var("v", u32)

    def load(**attrs):
        return kernel([op(v, "load", a, Const(0, i32), **attrs)], [a])

    verify(load(order="acquire", scope="block"))
    broken(load(scope="block"), "load needs attrs order")
    broken(load(order="release", scope="block"), "load cannot have order 'release'")
    broken(load(order="relaxed"), "load needs attrs scope")
    store = op(None, "store", a, Const(0, i32), Const(1, u32), order="acquire", scope="device")
    broken(kernel([store], [a]), "store cannot have order 'acquire'")
    atomic = op(v, "atomic", a, Const(0, i32), Const(1, u32), op="nand", order="relaxed",
                scope="device")  # fmt: skip
    broken(kernel([atomic], [a]), "atomic needs attrs op")
    fa = Var("f", GLOBAL_F32)
    xor = op(Var("o", f32), "atomic", fa, Const(0, i32), Const(1.0, f32), op="xor",
             order="relaxed", scope="device")  # fmt: skip
    broken(kernel([xor], [fa]), "atomic xor needs an integer array")
    broken(kernel([op(None, "fence")]), "fence needs attrs scope")


def test_operand_values():
    x = Var("x", i32)
    broken(kernel([op(x, "add", Var("ghost", i32), Const(1, i32))]), "%ghost is used but never")
    broken(kernel([op(x, "add", Const(2**40, i32), Const(1, i32))]), "not a valid i32")
    broken(kernel([op(x, "add", 3, Const(1, i32))]), "neither a Var nor a Const")


def test_subgroup_cluster():
    x = Var("x", f32)
    lane = Var("l", i32)
    body = [op(lane, "sg_lane"), op(x, "cast", lane)]
    broken(kernel(body + [op(Var("r", f32), "sg_reduce", x, op="add", cluster=6)]),
           "a power of two", stage="lowered")  # fmt: skip
    broken(kernel(body + [op(Var("r", f32), "sg_reduce", x, op="add", cluster=16)],
                  subgroup=8), "larger than the subgroup", stage="lowered")  # fmt: skip
    broken(kernel(body + [op(Var("r", f32), "sg_reduce", x, op="mul", cluster=8)]),
           "op in add|min|max", stage="lowered")  # fmt: skip


# ---------------------------------------------------------------- control flow


def test_break_placement():
    verify(kernel([ir.Loop([], None, [ir.If(Const(True, bool_), [ir.Break()], [])], [])]))
    broken(kernel([ir.Break(LOC)]), "break outside the header or body of a loop")
    broken(kernel([ir.Loop([], None, [ir.Break()], [ir.Continue(LOC)])]),
           "continue outside")  # fmt: skip
    ready = Var("r", bool_)
    suspend = ir.Suspend([op(ready, "copy", Const(True, bool_)), ir.Break(LOC)], ready, "w", LOC)
    broken(kernel([ir.Loop([], None, [suspend], [])]), "across a wait")


def test_conditions_must_be_bool():
    x = Var("x", i32)
    broken(kernel([op(x, "copy", Const(1, i32)), ir.If(x, [], [], LOC)]), "is i32, not bool")
    broken(kernel([ir.Loop([], Const(1, i32), [], [], LOC)]), "not bool")
    ready = Var("r", i32)
    bad_suspend = ir.Suspend([op(ready, "copy", Const(1, i32))], ready, "w", LOC)
    broken(kernel([bad_suspend]), "ready must be a bool Var")
    unset = ir.Suspend([], Var("r", bool_), "w", LOC)
    broken(kernel([unset]), "its poll never sets ready")
    bad_select = ir.Select([[]], Var("i", f32), LOC)
    broken(kernel([bad_select]), "index must be an integer Var")


# ---------------------------------------------------------------- stages


def test_logical_stage_rejects_subgroup_ops():
    broken(kernel([op(Var("l", i32), "sg_lane")]), "sg_lane is a physical subgroup op")
    x = Var("x", f32)
    body = [op(x, "copy", Const(1.0, f32)), op(Var("r", f32), "sg_reduce", x, op="add",
                                               cluster=8)]  # fmt: skip
    broken(kernel(body), "only after fold_lanes")


def test_lowered_stage_rejects_logical_ops_and_async_nodes():
    x = Var("x", f32)
    broken(kernel([op(Var("l", i32), "lane")]), "lane is a logical-warp op", stage="lowered")
    body = [op(x, "copy", Const(1.0, f32)), op(Var("s", f32), "warp_sum", x)]
    broken(kernel(body), "warp_sum is a logical-warp op", stage="lowered")
    broken(kernel([op(None, "warp_sync")]), "warp_sync", stage="lowered")
    ready = Var("r", bool_)
    suspend = ir.Suspend([op(ready, "copy", Const(True, bool_))], ready, "w", LOC)
    broken(kernel([suspend]), "async constructs must be gone", stage="lowered")
    broken(kernel([ir.Join([[]], LOC)]), "Join", stage="lowered")
    with pytest.raises(ValueError, match="stage must be one of"):
        verify(kernel([]), "optimized")


def test_params():
    a = Var("a", ArrayType(f32, "shared"))
    broken(kernel([], [a]), "must be global")
    p = Var("p", u64)
    broken(kernel([], [p, p]), "appears twice")
