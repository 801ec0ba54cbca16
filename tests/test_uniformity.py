"""Uniformity analysis: value levels, control-flow levels, and the errors `check` raises."""

from __future__ import annotations

import inspect

import pytest

import asyncwarp as aw
from asyncwarp.core import ir, uniformity
from asyncwarp.core.errors import CompileError
from asyncwarp.core.frontend import compile_function
from asyncwarp.core.ir import BLOCK_UNIFORM, DIVERGENT, WARP_UNIFORM, Const, Var
from asyncwarp.core.types import bool_, f32, i32, u64

F32 = aw.Array[aw.f32]
I32 = aw.Array[aw.i32]


def compile_(fn, *types, W=32):
    return compile_function(fn, list(types), warp_width=W)


def levels_by_name(kernel) -> dict[str, int]:
    return {v.name: level for v, level in uniformity.analyze(kernel).items()}


def line_of(fn, text: str) -> int:
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


def rejected(fn, *types, W=32) -> CompileError:
    kernel = compile_(fn, *types, W=W)
    with pytest.raises(CompileError) as info:
        uniformity.check(kernel)
    return info.value


# ---------------------------------------------------------------- value levels


def test_sources_and_propagation(W):
    def k(a: I32, n: aw.i32):
        b = aw.block_id() + n + aw.num_warps() + aw.num_blocks()
        w = aw.warp_id() * 2
        d = aw.lane() + b
        s = aw.warp_sum(d)
        t = aw.warp_sum(b)
        p = aw.warp_prefix_sum(w)
        old = aw.atomic_add(a, 0, 1)
        u = a[b]
        v = a[w]
        x = a[d]
        a[0] = b + w + d + s + t + p + old + u + v + x

    levels = levels_by_name(compile_(k, I32, aw.i32, W=W))
    B, W_, D = BLOCK_UNIFORM, WARP_UNIFORM, DIVERGENT
    expected = {"b": B, "w": W_, "d": D, "s": W_, "t": B, "p": D, "old": D, "u": B, "v": W_,
                "x": D, "a": B, "n": B}  # fmt: skip
    assert {name: levels[name] for name in expected} == expected


def test_shuffles_and_votes():
    def k(a: I32):
        d = aw.lane()
        w = aw.warp_id()
        from_uniform_lane = aw.shuffle(d, w)
        from_any_lane = aw.shuffle(d, d)
        of_uniform = aw.shuffle_xor(w, 3)
        xor_divergent = aw.shuffle_xor(d, 1)
        mask = aw.ballot(d > 3)
        anyone = aw.warp_any(d > 3)
        a[d] = from_uniform_lane + from_any_lane + of_uniform + xor_divergent
        a[0] = aw.i32(mask) + aw.i32(anyone)

    levels = levels_by_name(compile_(k, I32))
    assert levels["from_uniform_lane"] == WARP_UNIFORM
    assert levels["from_any_lane"] == DIVERGENT
    assert levels["of_uniform"] == WARP_UNIFORM
    assert levels["xor_divergent"] == DIVERGENT
    assert levels["mask"] == WARP_UNIFORM and levels["anyone"] == WARP_UNIFORM


def test_assignment_in_divergent_control_flow_is_flow_insensitive():
    def k(a: I32, n: aw.i32):
        x = 0
        y = n  # uniform here, but assigned again below under a lane condition
        if aw.lane() < 4:
            x = 1
            y = 2
        a[0] = x + y

    levels = levels_by_name(compile_(k, I32, aw.i32))
    assert levels["x"] == DIVERGENT and levels["y"] == DIVERGENT


def test_loop_carried_values_reach_a_fixed_point():
    def k(a: I32, n: aw.i32):
        x = 0
        y = 0
        for _ in range(n):
            y = x  # uses x before its divergent assignment below
            x = aw.lane()
        a[0] = y

    assert levels_by_name(compile_(k, I32, aw.i32))["y"] == DIVERGENT


# ---------------------------------------------------------------- control-flow levels


def test_node_levels(W):
    def k(a: I32, n: aw.i32):
        if n > 0:
            a[0] = 1
        if aw.warp_id() == 0:
            a[1] = 1
        if aw.lane() == 0:
            if n > 0:  # uniform condition, divergent context
                a[2] = 1
        for i in range(n):
            a[i] = i
        for j in range(aw.lane()):
            a[j] = j

    kernel = compile_(k, I32, aw.i32, W=W)
    uniformity.analyze(kernel)
    ifs = [s for s in kernel.walk() if isinstance(s, ir.If)]
    assert [s.level for s in ifs] == [BLOCK_UNIFORM, WARP_UNIFORM, DIVERGENT, DIVERGENT]
    loops = [s for s in kernel.walk() if isinstance(s, ir.Loop)]
    assert [s.level for s in loops] == [BLOCK_UNIFORM, DIVERGENT]
    assert "if %t" in ir.print_kernel(kernel) and "[divergent]" in ir.print_kernel(kernel)


def test_divergent_break_makes_the_loop_divergent():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            for j in range(n):  # the inner loop only
                if aw.lane() == j:
                    break
                a[j] = i
            a[i] = 0

    kernel = compile_(k, I32, aw.i32)
    levels = levels_by_name(kernel)
    outer, inner = [s for s in kernel.walk() if isinstance(s, ir.Loop)]
    assert outer.level == BLOCK_UNIFORM and inner.level == DIVERGENT
    assert levels["i"] == BLOCK_UNIFORM and levels["j"] == DIVERGENT


def test_divergent_return_of_a_device_function_is_a_divergent_loop():
    kernel = compile_(returns_from_loop_kernel, I32, aw.i32)
    levels = levels_by_name(kernel)
    assert levels["find_ret"] == DIVERGENT
    wrapper = [s for s in kernel.body if isinstance(s, ir.Loop)][0]
    assert wrapper.cond is None and wrapper.level == DIVERGENT


@aw.func
def find(a, n):
    for i in range(n):
        if a[i] == aw.lane():
            return i
    return -1


def returns_from_loop_kernel(a: I32, n: aw.i32):
    a[0] = find(a, n)


# ---------------------------------------------------------------- what check accepts


def test_accepted_programs(W):
    def k(a: I32, n: aw.i32):
        x = a[aw.lane()]
        if aw.warp_id() == 0:
            a[0] = aw.warp_sum(x)
        if aw.block_id() == 0:
            aw.barrier()
        for i in range(n):  # uniform trip count: collectives and barriers are fine
            x += aw.shuffle(x, i)
            aw.barrier()
        while aw.warp_any(x > 0):  # a warp-uniform exit test
            x -= 1
            a[1] = aw.warp_max(x)
        if aw.lane() < 3:
            a[2] = x  # divergent code without collectives
        a[3] = aw.warp_sum(x)  # reconverged after the if

    uniformity.check(compile_(k, I32, aw.i32, W=W))


def test_collective_after_a_divergent_loop_is_accepted():
    def k(a: I32, n: aw.i32):
        x = 0
        for i in range(n):
            if a[i] == aw.lane():
                break
            x += 1
        a[0] = aw.warp_sum(x)

    uniformity.check(compile_(k, I32, aw.i32))


# ---------------------------------------------------------------- what check rejects


def test_collective_under_a_lane_condition(W):
    def k(a: I32):
        x = a[aw.lane()]
        if aw.lane() < 4:
            a[0] = aw.warp_sum(x)

    err = rejected(k, I32, W=W)
    sum_line = line_of(k, "aw.warp_sum(x)")
    if_line = line_of(k, "if aw.lane() < 4")
    assert err.loc.line == sum_line and str(err).startswith(f"{err.loc.file}:{sum_line}:")
    assert f"the if at line {if_line} depends on aw.lane() (line {if_line})" in err.message
    assert "aw.warp_sum must be reached by all lanes of a warp together" in err.message
    assert "warp-uniform" in err.hint


def test_barrier_under_a_warp_condition():
    def k(a: I32):
        if aw.warp_id() == 0:
            aw.barrier()

    err = rejected(k, I32)
    assert err.loc.line == line_of(k, "aw.barrier()")
    assert "aw.barrier() must be reached by every warp of the block" in err.message
    assert f"the if at line {line_of(k, 'if aw.warp_id')} depends on aw.warp_id()" in err.message


def test_collective_after_a_divergent_break():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            if a[i] == aw.lane():
                break
            a[i] = aw.warp_sum(i)

    err = rejected(k, I32, aw.i32)
    assert err.loc.line == line_of(k, "aw.warp_sum(i)")
    assert f"the break at line {line_of(k, 'break')}" in err.message


def test_collective_after_a_divergent_continue():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            if aw.lane() == i:
                continue
            a[i] = aw.warp_sum(i)
        a[0] = aw.warp_sum(n)  # after the loop every lane is back

    err = rejected(k, I32, aw.i32)
    assert err.loc.line == line_of(k, "a[i] = aw.warp_sum(i)")
    assert f"the continue at line {line_of(k, 'continue')} is taken by some lanes" in err.message


def test_collective_in_a_loop_with_a_divergent_trip_count():
    def k(a: I32):
        for i in range(aw.lane()):
            a[i] = aw.warp_sum(i)

    err = rejected(k, I32)
    assert f"the loop at line {line_of(k, 'for i in')} has an exit test" in err.message


def test_collective_before_a_divergent_break_in_the_same_loop():
    def k(a: I32, n: aw.i32):
        for i in range(n):
            a[i] = aw.warp_sum(i)  # later iterations run without the lanes that left
            if a[i] == aw.lane():
                break

    err = rejected(k, I32, aw.i32)
    assert err.loc.line == line_of(k, "aw.warp_sum(i)")
    assert "is left early by some lanes" in err.message


def test_collective_after_a_divergent_return():
    kernel = compile_(collective_after_return_kernel, I32)
    with pytest.raises(CompileError) as info:
        uniformity.check(kernel)
    assert info.value.loc.line == line_of(lane_filter, "aw.warp_max")
    assert f"line {line_of(lane_filter, 'if aw.lane()')}" in info.value.message


@aw.func
def lane_filter(x):
    if aw.lane() > 8:
        return x
    return aw.warp_max(x)


def collective_after_return_kernel(a: I32):
    a[0] = lane_filter(a[1])


def test_join_in_divergent_control_flow():
    @aw.func
    async def nap():
        await aw.sleep(10)

    async def k(a: I32):
        if aw.lane() == 0:
            await aw.join(nap(), nap())

    err = rejected(k, I32)
    assert "aw.join must be awaited by all lanes of a warp together" in err.message


# ---------------------------------------------------------------- async nodes


def test_async_levels():
    @aw.func
    async def read(a):
        await aw.sleep(5)
        return a[0]

    async def k(a: I32):
        await aw.until(a[0] > 0)
        await aw.until(a[aw.lane()] > 0)
        i, v = await aw.select(read(a), read(a))
        x, y = await aw.join(read(a), read(a))
        a[1] = i + v + x + y

    kernel = compile_(k, I32)
    levels = uniformity.check(kernel)
    uniform_wait, lane_wait = [s for s in kernel.body if isinstance(s, ir.Suspend)]
    assert uniform_wait.level == WARP_UNIFORM  # each warp polls on its own
    assert lane_wait.level == DIVERGENT
    assert all(levels[op.dst] == DIVERGENT for op in lane_wait.poll)
    select = next(s for s in kernel.walk() if isinstance(s, ir.Select))
    join = next(s for s in kernel.walk() if isinstance(s, ir.Join))
    assert select.level == BLOCK_UNIFORM and join.level == BLOCK_UNIFORM
    assert levels[select.index] == WARP_UNIFORM
    by_name = {v.name: lvl for v, lvl in levels.items()}
    assert by_name["i"] == WARP_UNIFORM and by_name["x"] == WARP_UNIFORM


def test_barrier_inside_a_join_branch_is_rejected():
    @aw.func
    async def sync_up():
        await aw.yield_now()
        aw.barrier()

    async def k(a: I32):
        await aw.join(sync_up(), sync_up())

    err = rejected(k, I32)
    assert "runs its branches on separate warps" in err.message


# ---------------------------------------------------------------- lowered IR


def test_lowered_subgroup_ops_count_as_their_logical_counterparts():
    b = ir.Builder()
    out = Var("out", ir.ArrayType(f32, "global"))
    sl = b.op("sg_lane")
    sid = b.op("sg_id")
    red = b.op("sg_reduce", b.op("cast", sl, type=f32), op="add", cluster=32)
    scan = b.op("sg_scan", sl, op="add", inclusive=True, cluster=32)
    vote = b.op("sg_ballot", b.op("lt", sl, Const(3, i32)), cluster=32)
    bcast = b.op("sg_shuffle", sl, sid)
    cond = b.op("eq", red, Const(0.0, f32))
    b.emit(ir.If(cond, [ir.Op(None, "barrier", (), {})], []))
    b.op("store", out, sl, red, order="weak", scope="device")
    kernel = ir.Kernel("lowered", [out], b.block, attrs={"subgroup": 32})
    levels = uniformity.analyze(kernel)
    assert levels[sl] == DIVERGENT and levels[sid] == WARP_UNIFORM
    assert levels[red] == WARP_UNIFORM and levels[scan] == DIVERGENT
    assert levels[vote] == WARP_UNIFORM and levels[bcast] == WARP_UNIFORM
    assert vote.type == u64
    with pytest.raises(CompileError, match="reached by every warp"):
        uniformity.check(kernel)


def test_block_all_result_is_block_uniform():
    b = ir.Builder()
    done = b.op("block_all", b.op("lt", b.op("sg_lane"), Const(1, i32)))
    loop_body = [ir.Op(None, "barrier", (), {}), ir.If(done, [ir.Break()], [])]
    b.emit(ir.Loop([], None, loop_body, []))
    kernel = ir.Kernel("rounds", [], b.block)
    levels = uniformity.check(kernel)
    assert levels[done] == BLOCK_UNIFORM and done.type == bool_
