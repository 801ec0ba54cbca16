"""Tests of the SPIR-V builder, the emitter and spirv_val.

Every hand-built lowered kernel (each op, each type, orders and scopes, subgroup
ops at H in {8, 32, 64}, control-flow shapes) must pass spirv-val for vulkan1.2
and vulkan1.3; a few kernels also run on the local Vulkan device (lavapipe in CI)
and are compared with numpy on random data, outputs poisoned first.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from asyncwarp.backends.vulkan import spirv_val
from asyncwarp.backends.vulkan.emit import emit_spirv
from asyncwarp.backends.vulkan.spirv import SpirvBuilder
from asyncwarp.backends.vulkan.spirv_val import SpirvValidationError, disassemble, validate
from asyncwarp.core import ir
from asyncwarp.core.errors import BackendUnavailable, CompileError
from asyncwarp.core.ir import Break, Builder, Const, Continue, If, Loop, Op, Var
from asyncwarp.core.types import ArrayType, ScalarType, bool_, f32, f64, i32, i64, u32, u64

ENVS = ("vulkan1.2", "vulkan1.3")
INTS = (i32, u32, i64, u64)
FLOATS = (f32, f64)
NUMBERS = INTS + FLOATS
SCALARS = (bool_, *NUMBERS)
ORDERS = ("relaxed", "acquire", "release", "acq_rel", "seq_cst")
SCOPES = ("warp", "block", "device")


def lowered(params: list, body: list, *, H: int = 32, W: int = 32, warps: int = 2) -> ir.Kernel:
    """A kernel with the attrs passes.pipeline.lower gives (docs/internals.md)."""
    cluster = min(W, H)
    attrs = {
        "warp_width": W,
        "subgroup": H,
        "fold": W // H if H < W else 1,
        "warps": warps,
        "block_size": warps * cluster,
        "progress": "cooperative",
        "executor": "block_on",
    }
    return ir.Kernel("k", params, body, attrs=attrs)


def valid(kernel: ir.Kernel, **options) -> bytes:
    """Emit for every target env and validate; returns the vulkan1.2 module."""
    for env in ENVS:
        validate(emit_spirv(kernel, env, **options), env)
    return emit_spirv(kernel, **options)


def capabilities(module: bytes) -> set[str]:
    return set(re.findall(r"OpCapability (\w+)", disassemble(module)))


def gid(b: Builder, H: int, block_size: int) -> Var:
    """block_id * block_size + sg_id * H + sg_lane: a unique index per invocation."""
    lane, sg, block = b.op("sg_lane"), b.op("sg_id"), b.op("block_id")
    local = b.op("add", b.op("mul", sg, Const(H, i32)), lane)
    return b.op("add", b.op("mul", block, Const(block_size, i32)), local)


def arr(name: str, t: ScalarType, space: str = "global") -> Var:
    return Var(name, ArrayType(t, space))


# ---------------------------------------------------------------- spirv_val


def test_validation_error_shows_message_and_disassembly():
    b = SpirvBuilder((1, 5))
    b.require_capability("Shader")
    b.op("OpMemoryModel", "Logical", "GLSL450", section="memory_model")
    void = b.type_void()
    fn = b.begin_function(void, b.type_function(void))
    b.op("OpIAdd", b.type_int(32, True), 999, 998)  # undefined ids
    b.op("OpReturn")
    b.end_function()
    b.op("OpEntryPoint", "GLCompute", fn, "main", section="entry_points")
    with pytest.raises(SpirvValidationError) as info:
        validate(b.to_words(), "vulkan1.2")
    assert "999" in info.value.message
    assert "> " in info.value.context and "OpIAdd" in info.value.context
    with pytest.raises(ValueError, match="target_env"):
        validate(b.to_words(), "vulkan9")


def test_missing_spirv_tools_names_the_package(monkeypatch):
    monkeypatch.setattr(spirv_val.shutil, "which", lambda name: None)
    with pytest.raises(BackendUnavailable, match="spirv-tools"):
        validate(b"\0" * 20)


# ---------------------------------------------------------------- pure ops


def _pure_ops_kernel(t: ScalarType) -> ir.Kernel:
    """Every pure op that applies to t, results stored to one output array per type."""
    x, y = arr("x", t), arr("y", t)
    outs: dict[ScalarType, Var] = {}
    b = Builder()
    i = gid(b, 32, 64)
    a, c = b.op("load", x, i), b.op("load", y, i)

    def keep(v: Var) -> None:
        if v.type not in outs:
            outs[v.type] = arr(f"out_{v.type}", v.type)
        b.op("store", outs[v.type], i, v)

    for opcode in ("eq", "ne", "lt", "le", "gt", "ge"):
        keep(b.op(opcode, a, c))
    p = b.op("lt", a, c)
    keep(b.op("select", p, a, c))
    for dst in SCALARS:
        keep(b.op("cast", a, type=dst))
    if t.is_bool:
        for opcode in ("land", "lor"):
            keep(b.op(opcode, a, c))
        keep(b.op("lnot", a))
    else:
        for opcode in ("add", "sub", "mul", "min", "max", "floordiv", "mod"):
            keep(b.op(opcode, a, c))
        keep(b.op("neg", a))
        keep(b.op("abs", a))
    if t.is_int:
        for opcode in ("band", "bor", "bxor", "shl", "shr"):
            keep(b.op(opcode, a, c))
        keep(b.op("bnot", a))
        keep(b.op("popcount", a))
    if t.is_float:
        keep(b.op("div", a, c))
        names = ("sqrt", "floor", "ceil") + (("exp", "log", "sin", "cos") if t == f32 else ())
        for opcode in names:
            keep(b.op(opcode, a))
        if t == f32:
            keep(b.op("pow", a, c))
    keep(b.op("copy", a))
    return lowered([x, y, *outs.values()], b.block)


@pytest.mark.parametrize("t", SCALARS, ids=str)
def test_pure_ops_validate(t):
    caps = capabilities(valid(_pure_ops_kernel(t)))
    assert {"Shader", "VulkanMemoryModel", "Int64", "Float64"} <= caps  # casts reach 64 bits
    assert not any(c.startswith("GroupNonUniform") and c != "GroupNonUniform" for c in caps)


def test_64_bit_capabilities_only_when_used():
    out, x = arr("out", i32), arr("x", i32)
    b = Builder()
    i = gid(b, 32, 64)
    b.op("store", out, i, b.op("add", b.op("load", x, i), Const(1, i32)))
    caps = capabilities(valid(lowered([out, x], b.block)))
    assert not caps & {"Int64", "Float64", "Int64Atomics", "StorageBuffer8BitAccess"}
    assert caps == {"Shader", "VulkanMemoryModel", "GroupNonUniform"}


@pytest.mark.parametrize("opcode", ["exp", "log", "sin", "cos", "pow"])
def test_f64_transcendentals_are_compile_errors(opcode):
    x = arr("x", f64)
    b = Builder()
    b.loc = ir.Loc("kern.py", 12, 8, "    y = aw.exp(x[0])")
    v = b.op("load", x, Const(0, i32))
    b.op(opcode, *([v, v] if opcode == "pow" else [v]))
    with pytest.raises(CompileError, match=f"{opcode} on f64") as info:
        emit_spirv(lowered([x], b.block))
    assert "kern.py:12:8" in str(info.value) and "aw.f32" in str(info.value)


# ---------------------------------------------------------------- control flow


def _loop(b: Builder, i: Var, n, body: list, latch_step: int = 1) -> None:
    """for i in range(0, n): body"""
    b.assign(i, Const(0, i32))
    header = b.nested()
    cond = header.op("lt", i, n)
    latch = b.nested()
    latch.op("add", i, Const(latch_step, i32), dst=i)
    b.emit(Loop(header.block, cond, body, latch.block))


def _cf_nested_ifs(b, x, acc):
    inner = b.nested()
    inner.op("add", acc, Const(1, i32), dst=acc)
    c2 = inner.op("gt", x, Const(3, i32))
    inner.emit(If(c2, [], [Op(acc, "copy", (Const(9, i32),))]))  # empty then, non-empty else
    c1 = b.op("gt", x, Const(0, i32))
    b.emit(If(c1, inner.block, [Op(acc, "copy", (Const(-1, i32),))]))


def _cf_break_continue_in_ifs(b, x, acc):
    j = Var("j", i32)
    body = b.nested()
    skip = body.op("eq", body.op("mod", j, Const(3, i32)), Const(0, i32))
    body.emit(If(skip, [Continue()], []))
    stop = body.op("gt", acc, x)
    body.emit(If(stop, [Break()], []))
    body.op("add", acc, j, dst=acc)
    _loop(b, j, Const(20, i32), body.block)


def _cf_both_arms_leave(b, x, acc):
    j = Var("j", i32)
    body = b.nested()
    odd = body.op("eq", body.op("band", j, Const(1, i32)), Const(1, i32))
    then = body.nested()
    then.op("add", acc, Const(1, i32), dst=acc)
    then.emit(Continue())
    then.op("add", acc, Const(100, i32), dst=acc)  # dead: after continue
    body.emit(If(odd, then.block, [Break()]))  # merge block unreachable
    _loop(b, j, x, body.block)


def _cf_nested_loops_early_exit(b, x, acc):
    """The frontend's `return` lowering: a body loop without condition, a flag, re-breaks."""
    i, j, done = Var("i", i32), Var("j", i32), Var("done", bool_)
    fn = b.nested()
    fn.assign(done, Const(False, bool_))
    outer = fn.nested()
    inner = outer.nested()
    hit = inner.op("eq", inner.op("mul", i, j), x)
    found = inner.nested()
    found.op("add", i, j, dst=acc)
    found.assign(done, Const(True, bool_))
    found.emit(Break())
    inner.emit(If(hit, found.block, []))
    _loop(outer, j, Const(5, i32), inner.block)
    outer.emit(If(done, [Break()], []))
    _loop(fn, i, Const(5, i32), outer.block)
    fn.emit(If(done, [Break()], []))
    fn.assign(acc, Const(-1, i32))
    fn.emit(Break())
    b.emit(Loop([], None, fn.block, []))


def _cf_unconditional_break(b, x, acc):
    """Body ends in break: the continue target is unreachable; code after is dead."""
    body = b.nested()
    body.op("add", acc, x, dst=acc)
    body.emit(Break())
    body.op("add", acc, x, dst=acc)
    b.emit(Loop([], None, body.block, [Op(acc, "copy", (Const(0, i32),))]))


def _cf_header_code_and_continue_in_header(b, x, acc):
    """Loop header with an If (a break inside it) before the exit test."""
    j = Var("j", i32)
    b.assign(j, Const(0, i32))
    header = b.nested()
    big = header.op("gt", acc, Const(50, i32))
    header.emit(If(big, [Break()], []))
    cond = header.op("lt", j, x)
    body = b.nested()
    body.op("add", acc, j, dst=acc)
    latch = b.nested()
    latch.op("add", j, Const(1, i32), dst=j)
    b.emit(Loop(header.block, cond, body.block, latch.block))


def _cf_loop_in_latch_and_deep_nesting(b, x, acc):
    i, j, k = Var("i", i32), Var("j", i32), Var("k", i32)
    deepest = b.nested()
    odd = deepest.op("eq", deepest.op("band", k, Const(1, i32)), Const(1, i32))
    deepest.emit(If(odd, [If(odd, [Continue()], [Break()])], []))  # leave from nested selections
    deepest.op("add", acc, k, dst=acc)
    middle = b.nested()
    _loop(middle, k, j, deepest.block)
    outer = b.nested()
    _loop(outer, j, Const(3, i32), middle.block)
    latch_loop = b.nested()
    _loop(latch_loop, k, Const(2, i32), [Op(acc, "sub", (acc, Const(1, i32)))])
    b.assign(i, Const(0, i32))
    cond_block = b.nested()
    cond = cond_block.op("lt", i, x)
    latch_loop.op("add", i, Const(1, i32), dst=i)
    b.emit(Loop(cond_block.block, cond, outer.block, latch_loop.block))


def _cf_infinite_loop_with_exit_through_if(b, x, acc):
    """No exit test, body only leaves through a break inside an else arm."""
    body = b.nested()
    body.op("add", acc, Const(1, i32), dst=acc)
    small = body.op("lt", acc, x)
    body.emit(If(small, [Continue()], [Break()]))
    b.emit(Loop([], None, body.block, []))


CONTROL_FLOW = {
    "nested_ifs": _cf_nested_ifs,
    "break_continue_in_ifs": _cf_break_continue_in_ifs,
    "both_arms_leave": _cf_both_arms_leave,
    "nested_loops_early_exit": _cf_nested_loops_early_exit,
    "unconditional_break": _cf_unconditional_break,
    "header_code": _cf_header_code_and_continue_in_header,
    "loop_in_latch_deep_nesting": _cf_loop_in_latch_and_deep_nesting,
    "infinite_loop_exit_in_if": _cf_infinite_loop_with_exit_through_if,
}


def _control_flow_kernel(shape: str, H: int = 32) -> ir.Kernel:
    out, xs = arr("out", i32), arr("x", i32)
    b = Builder()
    i = gid(b, H, 2 * H)
    x = b.op("load", xs, i)
    acc = Var("acc", i32)
    b.assign(acc, Const(0, i32))
    CONTROL_FLOW[shape](b, x, acc)
    b.op("store", out, i, acc)
    return lowered([out, xs], b.block, H=H, W=H)


@pytest.mark.parametrize("shape", CONTROL_FLOW)
def test_control_flow_shapes_validate(shape):
    valid(_control_flow_kernel(shape))


def test_break_in_latch_is_a_compile_error():
    b = Builder()
    j = Var("j", i32)
    loc = ir.Loc("kern.py", 7, 4)
    b.emit(Loop([], Const(True, bool_), [], [Break(loc)]))
    with pytest.raises(CompileError, match="latch") as info:
        emit_spirv(lowered([j], b.block))
    assert "kern.py:7:4" in str(info.value)


def test_debug_lines_and_names():
    out = arr("out", f32)
    b = Builder()
    b.loc = ir.Loc("kern.py", 3, 4)
    speed = Var("speed", f32)
    b.assign(speed, Const(2.5, f32))
    b.op("store", out, Const(0, i32), speed)
    text = disassemble(valid(lowered([out], b.block)))
    assert 'OpString "kern.py"' in text and "OpLine" in text
    assert 'OpName %speed "speed"' in text and 'OpName %out "out"' in text


def test_variables_start_at_zero():
    """As in the interpreter: a variable read before any write holds 0."""
    out = arr("out", f32)
    b = Builder()
    never_written = Var("never_written", f32)
    b.op("store", out, Const(0, i32), never_written)
    text = disassemble(valid(lowered([out], b.block)))
    null = re.search(r"%(\w+) = OpConstantNull %float", text)
    assert null and re.search(rf"%never_written = OpVariable %\w+ Function %{null.group(1)}", text)


# ---------------------------------------------------------------- memory


def _memory_kernel(t: ScalarType, space: str) -> ir.Kernel:
    """Weak and ordered loads/stores at every order and scope, every atomic, cas, fences."""
    data, out = arr("data", t), arr("out", t)
    b = Builder()
    i = gid(b, 32, 64)
    target = data
    if space == "shared":
        target = arr("tile", t, "shared")
        b.emit(Op(target, "shared_alloc", (), {"n": 64}))
    local = b.op("band", i, Const(63, i32))
    v = b.op("load", data, i)
    b.op("store", target, local, v)
    results = [b.op("load", target, local)]
    ordered = not (t.is_bool and space == "global")  # no 8-bit atomics for global bools
    for order in ORDERS if ordered else ():
        for scope in SCOPES:
            results.append(b.op("load", target, local, order=order, scope=scope))
            b.op("store", target, local, v, order=order, scope=scope)
    kinds = ("and", "or", "xor", "exchange") if t.is_bool else ("add", "min", "max", "exchange")
    kinds += ("and", "or", "xor") if t.is_int else ()
    for kind in kinds if ordered else ():
        for order, scope in zip(ORDERS, SCOPES * 2, strict=False):
            results.append(b.op("atomic", target, local, v, op=kind, order=order, scope=scope))
    if ordered:
        results.append(
            b.op("atomic_cas", target, local, v, results[0], order="acq_rel", scope="block")
        )
    for scope in SCOPES:
        b.op("fence", scope=scope)
    b.op("barrier")
    for r in results:
        b.op("store", out, i, r)
    return lowered([data, out], b.block)


@pytest.mark.parametrize("subgroup_fences", [False, True], ids=["fences", "subgroup_fences"])
@pytest.mark.parametrize("space", ["global", "shared"])
@pytest.mark.parametrize("t", SCALARS, ids=str)
def test_memory_ops_validate(t, space, subgroup_fences):
    module = valid(_memory_kernel(t, space), subgroup_fences=subgroup_fences)
    caps = capabilities(module)
    assert ("Int64Atomics" in caps) == (t.bits == 64)
    assert ("StorageBuffer8BitAccess" in caps) == t.is_bool
    ordered = not (t.is_bool and space == "global")  # no 8-bit atomics: weak accesses only
    assert ("VulkanMemoryModelDeviceScope" in caps) == (ordered or not subgroup_fences)
    text = disassemble(module)
    assert "SequentiallyConsistent" not in text  # not allowed with the Vulkan memory model
    if subgroup_fences:
        assert not re.search(r"OpMemoryBarrier %uint_[12] ", text)  # Device=1, Workgroup=2


def test_atomics_on_global_bool_arrays_are_compile_errors():
    flags = arr("flags", bool_)
    b = Builder()
    b.loc = ir.Loc("kern.py", 5, 0)
    b.op(
        "atomic", flags, Const(0, i32), Const(True, bool_), op="or", order="relaxed", scope="device"
    )
    with pytest.raises(CompileError, match="8-bit atomics") as info:
        emit_spirv(lowered([flags], b.block))
    assert "aw.u32" in str(info.value)


def test_block_all_barrier_timer_sleep_validate():
    out, ticks = arr("out", bool_), arr("ticks", u64)
    b = Builder()
    i = gid(b, 32, 64)
    p = b.op("gt", i, Const(3, i32))
    first = b.op("block_all", p)
    second = b.op("block_all", b.op("lnot", first))  # back to back: must not race
    b.op("sg_barrier")
    t0 = b.op("timer")
    b.op("sleep", Const(1000, i32))
    b.op("store", ticks, i, b.op("sub", b.op("timer"), t0))
    b.op("store", out, i, b.op("land", first, second))
    kernel = lowered([out, ticks], b.block)
    clock = capabilities(valid(kernel, shader_clock=True))
    counter = capabilities(valid(kernel, shader_clock=False))
    assert "ShaderClockKHR" in clock and "ShaderClockKHR" not in counter
    assert "SPV_KHR_shader_clock" in disassemble(emit_spirv(kernel, shader_clock=True))


# ---------------------------------------------------------------- subgroup ops


def _subgroup_kernel(t: ScalarType, H: int, W: int) -> ir.Kernel:
    cluster = min(W, H)
    x, out = arr("x", t), arr("out", t)
    masks, flags = arr("masks", u64), arr("flags", bool_)
    b = Builder()
    i = gid(b, H, 2 * cluster)
    v = b.op("load", x, i)
    results = [b.op("sg_shuffle", v, b.op("bxor", b.op("sg_lane"), Const(1, i32)))]
    if not t.is_bool:
        for kind in ("add", "min", "max"):
            results.append(b.op("sg_reduce", v, op=kind, cluster=cluster))
            for inclusive in (True, False):
                results.append(b.op("sg_scan", v, op=kind, inclusive=inclusive, cluster=cluster))
    for r in results:
        b.op("store", out, i, r)
    p = b.op("ne", v, v) if not t.is_bool else v
    b.op("store", masks, i, b.op("sg_ballot", p, cluster=cluster))
    b.op(
        "store",
        flags,
        i,
        b.op("land", b.op("sg_any", p, cluster=cluster), b.op("sg_all", p, cluster=cluster)),
    )
    return lowered([x, out, masks, flags], b.block, H=H, W=W)


@pytest.mark.parametrize("H", [8, 32, 64])
@pytest.mark.parametrize("t", SCALARS, ids=str)
def test_subgroup_ops_validate(t, H, W):
    caps = capabilities(valid(_subgroup_kernel(t, H, W)))
    assert {"GroupNonUniformShuffle", "GroupNonUniformBallot"} <= caps
    if not t.is_bool:
        assert "GroupNonUniformArithmetic" in caps or "GroupNonUniformClustered" in caps
    # Clustered reductions only when the logical warp is narrower than the subgroup.
    assert ("GroupNonUniformClustered" in caps) == (W < H and not t.is_bool)
    assert ("GroupNonUniformVote" in caps) == (W >= H)


# ---------------------------------------------------------------- ABI and contract errors


def test_argument_abi_bindings_and_push_constant_offsets():
    a, b_, c = arr("a", f32), arr("b", i64), arr("c", bool_)
    n, flag, scale, big = Var("n", i32), Var("flag", bool_), Var("scale", f64), Var("big", u32)
    b = Builder()
    i = gid(b, 32, 64)
    x = b.op("cast", b.op("load", a, i), type=f64)
    y = b.op("select", flag, b.op("mul", x, scale), x)
    b.op("store", a, i, b.op("cast", y, type=f32))
    b.op("store", b_, i, b.op("cast", b.op("add", n, b.op("cast", big, type=i32)), type=i64))
    b.op("store", c, i, flag)
    text = disassemble(valid(lowered([a, n, b_, flag, scale, c, big], b.block)))
    bindings = re.findall(r"OpDecorate %(\w+) Binding (\d+)", text)
    assert bindings == [("a", "0"), ("b", "1"), ("c", "2")]
    offsets = re.findall(r"OpMemberDecorate %\w+ (\d) Offset (\d+)", text)
    assert ("0", "0") in offsets and ("1", "4") in offsets  # n: i32, flag: bool as u32
    assert ("2", "8") in offsets and ("3", "16") in offsets  # scale: f64 aligned 8, big: u32
    assert "OpDecorate %_runtimearr_long ArrayStride 8" in text
    assert "LocalSize 64 1 1" in text and 'OpEntryPoint GLCompute %main "main"' in text


def test_unlowered_input_is_an_internal_error():
    b = Builder()
    b.op("lane")
    with pytest.raises(RuntimeError, match="fold_lanes"):
        emit_spirv(lowered([], b.block))
    suspend = ir.Suspend([], Var("ready", bool_), "wait")
    with pytest.raises(RuntimeError, match="lower_async"):
        emit_spirv(lowered([], [suspend]))
    with pytest.raises(RuntimeError, match="not lowered"):
        emit_spirv(ir.Kernel("k", [], []))
    with pytest.raises(ValueError, match="target_env"):
        emit_spirv(lowered([], []), "vulkan1.1")


def test_array_aliases_resolve_and_conflicts_are_errors():
    a, c = arr("a", i32), arr("c", i32)
    alias = Var("alias", ArrayType(i32))
    b = Builder()
    b.assign(alias, a)
    b.op("store", alias, Const(0, i32), Const(5, i32))
    valid(lowered([a, c], b.block))
    b.assign(alias, c)
    with pytest.raises(CompileError, match="more than one array"):
        emit_spirv(lowered([a, c], b.block))


# ---------------------------------------------------------------- execution on the device
#
# A few kernels run on the local Vulkan device through the runtime (lavapipe in CI),
# their results compared with numpy; they check semantics spirv-val cannot.


@pytest.fixture(scope="module")
def device():
    from asyncwarp.backends.vulkan.runtime import VulkanRuntime

    runtime = VulkanRuntime()
    yield runtime
    runtime.close()


def run(device, kernel: ir.Kernel, arrays: list[np.ndarray], grid: int, **options) -> None:
    """Dispatch `kernel` on `grid` blocks; arrays are bound in order and read back in place."""
    spirv = valid(kernel, **options)
    pipeline = device.pipeline(
        spirv, num_buffers=len(arrays), subgroup_size=kernel.attrs["subgroup"], name="test"
    )
    buffers = [device.to_device(a) for a in arrays]
    device.dispatch(pipeline, grid, buffers, readback=buffers)
    for a, buf in zip(arrays, buffers, strict=True):
        buf.read(out=a)


def _elementwise(opcode: str, in_types: list, out_type: ScalarType, H: int, **attrs) -> ir.Kernel:
    ins = [arr(f"in{k}", t) for k, t in enumerate(in_types)]
    out = arr("out", out_type)
    b = Builder()
    i = gid(b, H, 64)
    values = [b.op("load", x, i) for x in ins]
    r = b.op(opcode, *values, type=out_type if opcode == "cast" else None, **attrs)
    b.op("store", out, i, r)
    return lowered([out, *ins], b.block, H=H, W=H, warps=64 // H)


def _poisoned(n: int, t: ScalarType) -> np.ndarray:
    if t.is_float:
        return np.full(n, np.nan, t.dtype)
    return np.full(n, 0xDEADBEEF if t.bits == 32 else 0x5A5A5A5A5A5A5A5A, np.uint64).astype(t.dtype)


def _wrap(values: list[int], t: ScalarType) -> np.ndarray:
    mask = (1 << t.bits) - 1
    return np.array([v & mask for v in values], dtype=np.uint64).astype(t.dtype)


def _int_inputs(rng, t: ScalarType, n: int) -> np.ndarray:
    info = np.iinfo(t.dtype)
    x = rng.integers(info.min, info.max, n, dtype=t.dtype, endpoint=True)
    x[n // 2 :] = rng.integers(-20 if t.is_signed else 0, 20, n - n // 2).astype(t.dtype)
    x[:4] = [0, info.max, info.min, 1]
    return x


@pytest.mark.device
@pytest.mark.parametrize("t", INTS, ids=str)
def test_integer_division_and_shifts_follow_python(device, t):
    """floordiv/mod by zero, MIN // -1, negative operands; shifts by >= the width."""
    H, n = device.caps.subgroup_size, 256
    rng = np.random.default_rng(7)
    a, c = _int_inputs(rng, t, n), _int_inputs(rng, t, n)
    c[4:8] = 0
    if t.is_signed:
        c[8:12] = -1
    pairs = list(zip(a.tolist(), c.tolist(), strict=True))
    expected = {
        "floordiv": _wrap([0 if y == 0 else x // y for x, y in pairs], t),
        "mod": _wrap([x if y == 0 else x % y for x, y in pairs], t),
    }
    shift = (np.arange(n) % (t.bits + 6)).astype(t.dtype)
    bits = [(s & ((1 << t.bits) - 1)) for s in shift.tolist()]
    expected["shl"] = _wrap(
        [0 if s >= t.bits else x << s for x, s in zip(a.tolist(), bits, strict=True)], t
    )
    expected["shr"] = _wrap(
        [(-(x < 0) if s >= t.bits else x >> s) for x, s in zip(a.tolist(), bits, strict=True)], t
    )
    for opcode, want in expected.items():
        out = _poisoned(n, t)
        rhs = shift if opcode in ("shl", "shr") else c
        run(device, _elementwise(opcode, [t, t], t, H), [out, a, rhs], grid=n // 64)
        np.testing.assert_array_equal(out, want, err_msg=opcode)


@pytest.mark.device
@pytest.mark.parametrize("dst", INTS, ids=str)
def test_float_to_int_casts_saturate(device, dst):
    H, n = device.caps.subgroup_size, 128
    rng = np.random.default_rng(8)
    for src in FLOATS:
        x = (rng.standard_normal(n) * 2.0 ** rng.integers(0, 70, n)).astype(src.dtype)
        x[:6] = [np.nan, np.inf, -np.inf, -0.7, 2.0**dst.bits, -(2.0**dst.bits)]
        info = np.iinfo(dst.dtype)
        want = np.array(
            [
                0
                if v != v
                else info.max
                if v >= info.max
                else info.min
                if v <= info.min
                else int(v)
                for v in x.tolist()
            ],
            dtype=dst.dtype,
        )
        out = _poisoned(n, dst)
        run(device, _elementwise("cast", [src], dst, H), [out, x], grid=n // 64)
        np.testing.assert_array_equal(out, want, err_msg=f"{src} -> {dst}")


@pytest.mark.device
def test_float_ops_match_numpy(device):
    H, n = device.caps.subgroup_size, 128
    rng = np.random.default_rng(9)
    a = (rng.standard_normal(n) * 8).astype(np.float32)
    c = (rng.standard_normal(n) * 8).astype(np.float32)
    a[:4], c[:4] = [np.nan, 1.0, -2.0, 0.0], [3.0, np.nan, 3.0, -1.0]
    cases = {
        "min": np.fmin(a, c),
        "max": np.fmax(a, c),
        "floordiv": np.floor(a / c),
        "mod": a - np.floor(a / c) * c,
    }
    with np.errstate(divide="ignore"):
        cases["pow"] = np.power(a, np.round(c))  # integral exponents: negative bases too
    for opcode, want in cases.items():
        out = _poisoned(n, f32)
        rhs = np.round(c) if opcode == "pow" else c
        run(device, _elementwise(opcode, [f32, f32], f32, H), [out, a, rhs], grid=n // 64)
        # pow: a few ulp (ops.py); the rest are exactly rounded.
        rtol = 1e-5 if opcode == "pow" else 0
        np.testing.assert_allclose(out, want, rtol=rtol, equal_nan=True, err_msg=opcode)


@pytest.mark.device
@pytest.mark.parametrize(
    "shape", ["break_continue_in_ifs", "both_arms_leave", "nested_loops_early_exit"]
)
def test_control_flow_runs(device, shape):
    H, n = device.caps.subgroup_size, 2 * device.caps.subgroup_size * 4
    x = np.random.default_rng(10).integers(-3, 30, n).astype(np.int32)

    def reference(v: int) -> int:
        acc = 0
        if shape == "break_continue_in_ifs":
            for j in range(20):
                if j % 3 == 0:
                    continue
                if acc > v:
                    break
                acc += j
        elif shape == "both_arms_leave":
            for j in range(v):
                if j & 1:
                    acc += 1
                    continue
                break
        else:
            hits = [(i, j) for i in range(5) for j in range(5) if i * j == v]
            acc = sum(hits[0]) if hits else -1
        return acc

    out = _poisoned(n, i32)
    run(device, _control_flow_kernel(shape, H), [out, x], grid=4)
    np.testing.assert_array_equal(out, [reference(v) for v in x.tolist()])


@pytest.mark.device
def test_subgroup_ops_run(device, W):
    """Reduce, scans (native and, for clusters below H, by shuffles), ballot, any/all."""
    H = device.caps.subgroup_size
    cluster = min(W, H)
    n = 128  # two blocks of 64 invocations (_elementwise's block)
    rng = np.random.default_rng(11)
    x = rng.integers(-50, 50, n).astype(np.int32)
    p = rng.integers(0, 2, n).astype(bool)
    p[:cluster] = True
    for c in sorted({cluster, max(cluster // 2, 1)}):
        groups = x.reshape(-1, c)
        cases = {
            ("sg_scan", True): np.cumsum(groups, axis=1),
            ("sg_scan", False): np.cumsum(groups, axis=1) - groups,
        }
        if c == H:  # lavapipe has no GroupNonUniformClustered: reductions below H only validate
            cases[("sg_reduce", None)] = np.repeat(groups.sum(axis=1), c)
        for (opcode, inclusive), want in cases.items():
            attrs = {"op": "add", "cluster": c} | (
                {} if inclusive is None else {"inclusive": inclusive}
            )
            out = _poisoned(n, i32)
            run(device, _elementwise(opcode, [i32], i32, H, **attrs), [out, x], grid=n // 64)
            np.testing.assert_array_equal(
                out.reshape(-1), want.reshape(-1), err_msg=f"{opcode} {c}"
            )
        bits = (p.reshape(-1, c).astype(np.uint64) << np.arange(c, dtype=np.uint64)).sum(axis=1)
        out = _poisoned(n, u64)
        run(
            device,
            _elementwise("sg_ballot", [bool_], u64, H, cluster=c),
            [out, p],
            grid=n // 64,
        )
        np.testing.assert_array_equal(out, np.repeat(bits.astype(np.uint64), c))
        for opcode, fold in (("sg_any", np.any), ("sg_all", np.all)):
            out = np.full(n, 0x5A, np.uint8)  # poison: neither 0 nor 1
            kernel = _elementwise(opcode, [bool_], bool_, H, cluster=c)
            run(device, kernel, [out.view(bool), p], grid=n // 64)
            want = np.repeat(fold(p.reshape(-1, c), axis=1), c)
            np.testing.assert_array_equal(out, want.astype(np.uint8), err_msg=opcode)


@pytest.mark.device
@pytest.mark.parametrize("t", [i32, u64, f32, f64], ids=str)
def test_atomics_run(device, t):
    """Every invocation adds, mins and maxes into four counters (floats by CAS loops)."""
    H, n = device.caps.subgroup_size, 256
    rng = np.random.default_rng(12)
    x = (
        rng.integers(1, 1000, n).astype(t.dtype)
        if t.is_int
        else np.round(rng.standard_normal(n) * 8, 2).astype(t.dtype)
    )
    counters, values = arr("counters", t), arr("x", t)
    b = Builder()
    i = gid(b, H, 64)
    v = b.op("load", values, i)
    slot = b.op("band", i, Const(3, i32))
    b.op("atomic", counters, slot, v, op="add", order="acq_rel", scope="device")
    b.op(
        "atomic",
        counters,
        b.op("add", slot, Const(4, i32)),
        v,
        op="min",
        order="relaxed",
        scope="device",
    )
    b.op(
        "atomic",
        counters,
        b.op("add", slot, Const(8, i32)),
        v,
        op="max",
        order="seq_cst",
        scope="block",
    )
    kernel = lowered([counters, values], b.block, H=H, W=H, warps=64 // H)
    start = np.array([3] * 4 + [2000] * 4 + [0] * 4, dtype=t.dtype)
    got = start.copy()
    run(device, kernel, [got, x], grid=n // 64)
    by_slot = x.reshape(-1, 4).T
    want = np.concatenate(
        [start[:4] + by_slot.sum(axis=1), by_slot.min(axis=1), by_slot.max(axis=1)]
    )
    np.testing.assert_allclose(got, want.astype(t.dtype), rtol=1e-5)


@pytest.mark.device
def test_ordered_atomics_in_divergent_loops_run(device):
    """Lane-dependent trip counts with acquire/release atomics in the loop: with
    subgroup_fences no invocation is lost (lavapipe needs it, see emit_spirv)."""
    H, n = device.caps.subgroup_size, 128
    counts = np.random.default_rng(13).integers(0, 12, n).astype(np.int32)
    total, trips = arr("total", i32), arr("trips", i32)
    b = Builder()
    i = gid(b, H, 64)
    j = Var("j", i32)
    body = b.nested()
    body.op(
        "atomic", total, Const(0, i32), Const(1, i32), op="add", order="acq_rel", scope="device"
    )
    body.op("load", total, Const(1, i32), order="acquire", scope="block")
    _loop(b, j, b.op("load", trips, i), body.block)
    kernel = lowered([total, trips], b.block, H=H, W=H, warps=64 // H)
    got = np.zeros(2, np.int32)
    run(device, kernel, [got, counts], grid=n // 64, subgroup_fences=True)
    assert got[0] == counts.sum()


@pytest.mark.device
def test_block_all_and_shared_memory_run(device):
    H, n = device.caps.subgroup_size, 128
    x = np.random.default_rng(14).standard_normal(n).astype(np.float32)
    x[70] = -1.0  # block 1 has a non-positive value only here
    x[:64] = np.abs(x[:64]) + 0.5
    xs, out, votes = arr("x", f32), arr("out", f32), arr("votes", i32)
    tile = arr("tile", f32, "shared")
    b = Builder()
    i = gid(b, H, 64)
    local = b.op("add", b.op("mul", b.op("sg_id"), Const(H, i32)), b.op("sg_lane"))
    b.emit(Op(tile, "shared_alloc", (), {"n": 64}))
    v = b.op("load", xs, i)
    b.op("store", tile, local, v)
    all_positive = b.op("block_all", b.op("gt", v, Const(0.0, f32)))
    again = b.op("block_all", all_positive)  # consecutive block_alls must not race
    neighbour = b.op("load", tile, b.op("band", b.op("add", local, Const(1, i32)), Const(63, i32)))
    b.op("store", out, i, neighbour)
    vote = b.op(
        "add",
        b.op("cast", all_positive, type=i32),
        b.op("mul", b.op("cast", again, type=i32), Const(2, i32)),
    )
    b.op("store", votes, i, vote)
    kernel = lowered([xs, out, votes], b.block, H=H, W=H, warps=64 // H)
    got, got_votes = _poisoned(n, f32), _poisoned(n, i32)
    run(device, kernel, [x, got, got_votes], grid=2)
    np.testing.assert_array_equal(got, np.concatenate([np.roll(x[:64], -1), np.roll(x[64:], -1)]))
    np.testing.assert_array_equal(got_votes, np.repeat([3, 0], 64))
