"""PTX emission: hand-built lowered kernels are emitted and assembled by ptxas, no GPU needed.

The kernels cover every lowered opcode, every scalar type, memory orders and
scopes, global and shared memory, structured control flow with Break/Continue
and big (dynamic) shared memory, for sm_70, sm_80 and sm_90. ptxas must be
present: these tests fail, not skip, without it. Behaviour on a GPU is tested
in test_cuda_runtime.py.
"""

from __future__ import annotations

import re

import pytest

import asyncwarp as aw
from asyncwarp.backends.cuda import ptxas
from asyncwarp.backends.cuda.backend import CudaBackend
from asyncwarp.backends.cuda.ptx import ROTATED_HEADER_OPS, dynamic_shared_bytes, emit_ptx
from asyncwarp.core import ir
from asyncwarp.core.backend import BuildOptions
from asyncwarp.core.errors import CompileError
from asyncwarp.core.ops import COLLECTIVE, info, opcodes
from asyncwarp.core.passes.fold_lanes import fold_lanes
from asyncwarp.core.types import SCALAR_TYPES, ArrayType, bool_, f32, f64, i32, i64, u32, u64

ARCHS = ("sm_70", "sm_80", "sm_90")
ORDERS = ("weak", "relaxed", "acquire", "release", "acq_rel", "seq_cst")
SCOPES = ("warp", "block", "device")
NUMS = (i32, u32, i64, u64, f32, f64)
LOGICAL_ONLY = {"lane", "warp_id", "num_warps"}


@pytest.fixture(scope="module")
def ptxas_path() -> str:
    try:
        return ptxas.find_ptxas()
    except ptxas.PtxasNotFound as e:
        pytest.fail(f"ptxas is required for the PTX tests: {e}")


def assemble(k: ir.Kernel, arch: str, path: str) -> str:
    text = emit_ptx(k, arch)
    ptxas.assemble(text, ptxas.nearest_target(arch, path), path)
    return text


def C(value, t=i32) -> ir.Const:
    return ir.Const(value, t)


def arr(name, t, space="global") -> ir.Var:
    return ir.Var(name, ArrayType(t, space))


def kernel(name, params, build, warps=2, loc=ir.NO_LOC) -> ir.Kernel:
    b = ir.Builder()
    build(b)
    return ir.Kernel(
        name,
        params,
        b.block,
        loc,
        attrs={
            "warp_width": 32,
            "subgroup": 32,
            "fold": 1,
            "warps": warps,
            "block_size": 32 * warps,
        },
    )


def thread_index(b: ir.Builder):
    """The invocation's index in the grid (blocks of 64)."""
    in_block = b.op("add", b.op("mul", b.op("sg_id"), C(32)), b.op("sg_lane"))
    return b.op("add", b.op("mul", b.op("block_id"), C(64)), in_block)


# ---------------------------------------------------------------- kernels


def pure_kernel(t) -> ir.Kernel:
    """Every pure op defined on t, with variables and literals as operands."""
    x, out = arr("x", t), arr("out", t)
    flags, casts = arr("flags", bool_), {u: arr(f"to_{u}", u) for u in SCALAR_TYPES}

    def build(b):
        i = thread_index(b)
        a = b.op("load", x, i)
        c = b.op("load", x, b.op("add", i, C(1)))
        k = C(True if t.is_bool else 3 if t.is_int else 2.5, t)
        results = []
        if t.is_bool:
            results += [b.op(o, a, c) for o in ("land", "lor")] + [b.op("lnot", a)]
        else:
            results += [
                b.op(o, a, c) for o in ("add", "sub", "mul", "min", "max", "floordiv", "mod")
            ]
            results += [b.op("sub", k, a), b.op("floordiv", a, k), b.op("neg", a), b.op("abs", a)]
        if t.is_float:
            results += [b.op(o, a, c) for o in ("div", "pow")]
            results += [b.op(o, a) for o in ("sqrt", "exp", "log", "sin", "cos", "floor", "ceil")]
        if t.is_int:
            results += [b.op(o, a, c) for o in ("band", "bor", "bxor", "shl", "shr")]
            results += [
                b.op("shl", a, C(70, t)),
                b.op("shr", a, C(-1 if t.is_signed else 99, t)),
                b.op("bnot", a),
            ]
            b.op("store", casts[i32], i, b.op("popcount", a))
        for r in results:
            b.op("store", out, i, r)
        for cmp in ("eq", "ne", "lt", "le", "gt", "ge"):
            b.op("store", flags, i, b.op(cmp, a, c))
            b.op("store", flags, i, b.op(cmp, k, a))
        b.op("store", out, i, b.op("select", b.op("lt", a, c), a, k))
        copy = b.tmp(t, "copy")
        b.assign(copy, a)
        b.op("store", out, i, copy)
        for u, dst in casts.items():
            b.op("store", dst, i, b.op("cast", a, type=u))
            b.op("store", dst, i, b.op("cast", k, type=u))
            if u != t and not t.is_bool and not u.is_bool and u.bits == t.bits:
                b.op("store", dst, i, b.op("bitcast", a, type=u))
                b.op("store", dst, i, b.op("bitcast", k, type=u))

    return kernel(f"pure_{t}", [x, out, flags, *casts.values()], build)


def control_flow_kernel() -> ir.Kernel:
    """Nested If/else, a for-style Loop with Continue and Break, a Loop without exit test."""
    out, n, enabled = arr("out", i32), ir.Var("n", i32), ir.Var("enabled", bool_)

    def build(b):
        i = thread_index(b)
        acc, j = b.tmp(i32, "acc"), b.tmp(i32, "j")
        b.assign(acc, C(0))
        b.assign(j, C(0))
        header, body, latch = b.nested(), b.nested(), b.nested()
        going = header.op("lt", j, n)
        skip, stop = body.nested(), body.nested()
        skip.emit(ir.Continue())
        stop.emit(ir.Break())
        odd = body.op("eq", body.op("band", j, C(1)), C(1))
        body.emit(ir.If(odd, skip.block, []))
        body.assign(acc, body.op("add", acc, j))
        body.emit(ir.If(body.op("gt", acc, C(100)), stop.block, []))
        latch.assign(j, latch.op("add", j, C(1)))
        b.emit(ir.Loop(header.block, going, body.block, latch.block))
        forever = b.nested()
        inner = forever.nested()
        inner.emit(ir.Break())
        forever.assign(acc, forever.op("mul", acc, C(3)))
        forever.emit(ir.If(forever.op("gt", acc, C(10**6)), inner.block, []))
        forever.emit(ir.If(enabled, [], inner.block))
        b.emit(ir.Loop([], None, forever.block, []))
        then, other = b.nested(), b.nested()
        then.op("store", out, i, acc)
        other.op("store", out, i, C(-1))
        b.emit(ir.If(b.op("lt", i, n), then.block, other.block))
        b.emit(ir.If(C(True, bool_), [], []))

    return kernel("control_flow", [out, n, enabled], build)


def memory_kernel(t, space) -> ir.Kernel:
    """Loads and stores in every order and scope, with i32, u32, i64 and literal indices."""
    g = arr("g", t)
    params = [g, ir.Var("k64", i64), ir.Var("ku", u32)]

    def build(b):
        data = g
        if space == "shared":
            data = arr("s", t, "shared")
            b.emit(ir.Op(data, "shared_alloc", (), {"n": 96}))
        i = thread_index(b)
        indices = [i, params[1], params[2], C(5)]
        alias = ir.Var("alias", data.type)  # arrays may be copied (aliases)
        b.assign(alias, data)
        v = b.op("load", alias, i)
        for order in ORDERS:
            for scope in SCOPES:
                idx = indices[(ORDERS.index(order) + SCOPES.index(scope)) % len(indices)]
                b.op("store", data, idx, v, order=order, scope=scope)
                v = b.op("load", data, idx, order=order, scope=scope)
        b.op("store", g, i, v)

    return kernel(f"memory_{space}_{t}", params, build)


def atomics_kernel(t) -> ir.Kernel:
    g = arr("g", t)
    kinds = ["add", "min", "max", "exchange"] + (["and", "or", "xor"] if t.is_int else [])

    def build(b):
        s = arr("s", t, "shared")
        b.emit(ir.Op(s, "shared_alloc", (), {"n": 32}))
        i = thread_index(b)
        v = b.op("load", g, i)
        for n, kind in enumerate(kinds):
            order = ORDERS[n % len(ORDERS)]
            for mem, scope in ((g, "device"), (s, "block")):
                v = b.op("atomic", mem, C(n), v, op=kind, order=order, scope=scope)
        for order in ("relaxed", "seq_cst"):
            v = b.op("atomic_cas", g, C(1), v, b.op("add", v, C(1, t)), order=order, scope="device")
        b.op("store", g, i, v)

    return kernel(f"atomics_{t}", [g], build)


def sync_kernel() -> ir.Kernel:
    """Fences, barriers, block_all, timer and sleep."""
    out, flags = arr("out", u64), arr("flags", bool_)
    ns32, ns64 = ir.Var("ns", i32), ir.Var("ns64", u64)

    def build(b):
        i = thread_index(b)
        t0 = b.op("timer")
        for order in ("acq_rel", "seq_cst"):
            for scope in SCOPES:
                b.op("fence", scope=scope, order=order)
        b.op("barrier")
        b.op("sg_barrier")
        b.op("store", flags, i, b.op("block_all", b.op("lt", i, C(40))))
        b.op("store", flags, i, b.op("block_all", C(True, bool_)))
        b.op("sleep", ns32)
        b.op("sleep", ns64)
        b.op("sleep", C(5_000_000))
        b.op("store", out, i, b.op("sub", b.op("timer"), t0))
        b.op("store", out, i, b.op("cast", b.op("num_blocks"), type=u64))

    return kernel("sync", [out, flags, ns32, ns64], build)


def subgroup_kernel(t) -> ir.Kernel:
    x, out, masks = arr("x", t), arr("out", t), arr("masks", u64)
    srcs = ir.Var("src", i64)

    def build(b):
        i = thread_index(b)
        v = b.op("load", x, i)
        p = b.op("ne", v, v) if t.is_bool else b.op("lt", v, C(1, t))
        if not t.is_bool:
            for kind in ("add", "min", "max"):
                for cluster in (32, 16, 1):
                    v = b.op("sg_reduce", v, op=kind, cluster=cluster)
            for inclusive in (True, False):
                for cluster in (32, 8):
                    v = b.op("sg_scan", v, op="add", inclusive=inclusive, cluster=cluster)
            v = b.op("sg_scan", v, op="max", inclusive=False, cluster=32)
        v = b.op("sg_shuffle", v, b.op("sub", C(31), b.op("sg_lane")))
        v = b.op("sg_shuffle", v, srcs)
        v = b.op("sg_shuffle", v, C(3))
        b.op("store", out, i, v)
        for cluster in (32, 4):
            b.op("store", masks, i, b.op("sg_ballot", p, cluster=cluster))
            for vote in ("sg_any", "sg_all"):
                b.op("store", masks, i, b.op("cast", b.op(vote, p, cluster=cluster), type=u64))

    return kernel(f"subgroup_{t}", [x, out, masks, srcs], build)


def shared_kernel(n_bytes_each: int, count: int = 2) -> ir.Kernel:
    out = arr("out", f64)

    def build(b):
        i = thread_index(b)
        blocks = []
        for c in range(count):
            s = arr(f"s{c}", f64, "shared")
            b.emit(ir.Op(s, "shared_alloc", (), {"n": n_bytes_each // 8}))
            blocks.append(s)
        b.op("store", blocks[0], i, C(1.5, f64))
        b.op("barrier")
        b.op("store", out, i, b.op("load", blocks[-1], b.op("sub", C(63), i)))

    return kernel(f"shared_{n_bytes_each}x{count}", [out], build)


def phase_barrier_kernel() -> ir.Kernel:
    """mbarrier init / arrive / test (sm_80+), the ops of single-warp channels."""
    flags = arr("flags", bool_)
    parity = ir.Var("parity", i32)

    def build(b):
        bars = arr("bars", u64, "shared")
        b.emit(ir.Op(bars, "shared_alloc", (), {"n": 2}))
        i = thread_index(b)
        b.op("pbar_init", bars, C(0), count=64)
        b.op("barrier")
        b.op("pbar_arrive", bars, C(0), count=64)
        b.op("store", flags, i, b.op("pbar_test", bars, C(0), parity, count=64))
        b.op("store", flags, i, b.op("pbar_test", bars, i, C(1), count=64))

    return kernel("phase_barriers", [flags, parity], build)


KERNELS = {
    **{f"pure_{t}": (pure_kernel, t) for t in SCALAR_TYPES},
    "control_flow": (control_flow_kernel,),
    **{
        f"memory_{s}_{t}": (memory_kernel, t, s) for t in SCALAR_TYPES for s in ("global", "shared")
    },
    **{f"atomics_{t}": (atomics_kernel, t) for t in NUMS},
    "sync": (sync_kernel,),
    **{f"subgroup_{t}": (subgroup_kernel, t) for t in SCALAR_TYPES},
    "shared_static": (shared_kernel, 1024, 3),
    "shared_dynamic": (shared_kernel, 40 * 1024, 2),
}


def build(name: str) -> ir.Kernel:
    fn, *args = KERNELS[name]
    return fn(*args)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", list(KERNELS))
def test_kernels_assemble(name, arch, ptxas_path):
    text = assemble(build(name), arch, ptxas_path)
    assert f".target {arch}" in text and ".version 8.0" in text
    assert text.count(".visible .entry") == 1


@pytest.mark.parametrize("arch", ARCHS)
def test_phase_barriers_are_mbarriers_from_sm_80(arch, ptxas_path):
    k = phase_barrier_kernel()
    if arch == "sm_70":
        with pytest.raises(CompileError, match="needs sm_80 or newer"):
            emit_ptx(k, arch)
        return
    text = assemble(k, arch, ptxas_path)
    assert "mbarrier.init.shared::cta.b64" in text and "mbarrier.arrive" in text
    assert ("mbarrier.try_wait.parity" if arch == "sm_90" else "mbarrier.test_wait.parity") in text


def test_every_lowered_opcode_is_covered():
    kernels = [build(name) for name in KERNELS] + [phase_barrier_kernel()]
    used = {s.opcode for k in kernels for s in k.walk() if isinstance(s, ir.Op)}
    lowered = {o for o in opcodes() if info(o).category != COLLECTIVE} - LOGICAL_ONLY
    assert lowered - used == set()


def test_folded_logical_kernels_assemble(W, ptxas_path, rng):
    """A logical kernel through fold_lanes(kernel, 32, warps), as the pipeline delivers it."""
    x, out, bal = arr("x", f32), arr("out", f32), arr("bal", u64)
    b = ir.Builder()
    lane = b.op("lane")
    g = b.op("add", b.op("mul", b.op("warp_id"), C(W)), lane)
    v = b.op("load", x, g)
    v = b.op("add", b.op("warp_sum", v), b.op("warp_prefix_sum", v))
    v = b.op("shuffle_xor", b.op("shuffle", v, b.op("sub", C(W - 1), lane)), C(5))
    b.op("store", bal, g, b.op("ballot", b.op("gt", v, C(0.0, f32))))
    b.op("store", out, g, b.op("warp_max", v))
    logical = ir.Kernel("folded", [x, out, bal], b.block, attrs={"warp_width": W, "warps": 2})
    lowered = fold_lanes(logical, 32, 2, {})
    assert lowered.attrs["block_size"] == 64
    for arch in ARCHS:
        assemble(lowered, arch, ptxas_path)


# ---------------------------------------------------------------- what the text says


def reduce_kernel(t, cluster) -> ir.Kernel:
    x = arr("x", t)
    return kernel(
        "r",
        [x],
        lambda b: b.op(
            "store", x, C(0), b.op("sg_reduce", b.op("load", x, C(1)), op="add", cluster=cluster)
        ),
    )


def test_redux_sync_only_from_sm_80():
    k = reduce_kernel(i32, 32)
    for arch, expected in (("sm_70", False), ("sm_75", False), ("sm_80", True), ("sm_90", True)):
        assert ("redux.sync.add.s32" in emit_ptx(k, arch)) is expected, arch
    for t, cluster in ((f32, 32), (i64, 32), (i32, 16)):  # no redux form: butterfly shuffles
        text = emit_ptx(reduce_kernel(t, cluster), "sm_90")
        assert "redux.sync" not in text and "shfl.sync.bfly.b32" in text


def test_parameter_abi_and_source_lines():
    params = [arr("a", f32), ir.Var("flag", bool_), ir.Var("n", i64), ir.Var("x", f64)]
    loc = ir.Loc("/src/kern.py", 12)

    def build(b):
        b.loc = loc
        b.op("store", params[0], C(0), C(1.0, f32))

    text = emit_ptx(kernel("abi", params, build, loc=loc), "sm_80")
    decls = re.findall(r"\.param \.(\w+) abi_param_\d", text)
    assert decls == ["u64", "u32", "s64", "f64"]
    assert "cvta.to.global.u64" in text
    assert "// kern.py:12: store(%a, 0:i32, 1.0:f32)" in text
    assert ".maxntid 64, 1, 1" in text


def test_shared_memory_static_and_dynamic():
    small = emit_ptx(build("shared_static"), "sm_80")
    assert dynamic_shared_bytes(small) == 0 and ".shared .align 16 .b8 smem_s0_" in small
    big = emit_ptx(build("shared_dynamic"), "sm_90")
    assert ".extern .shared .align 16 .b8 aw_dynamic_smem[]" in big
    assert dynamic_shared_bytes(big) == 80 * 1024


def test_float_to_int_casts_guard_nan():
    x, y = arr("x", f64), arr("y", i64)
    k = kernel(
        "c", [x, y], lambda b: b.op("store", y, C(0), b.op("cast", b.op("load", x, C(0)), type=i64))
    )
    text = emit_ptx(k, "sm_90")
    assert "setp.nan.f64" in text and "cvt.rzi.s64.f64" in text


# ---------------------------------------------------------------- errors


def test_unsupported_arch_is_a_value_error():
    with pytest.raises(ValueError, match="sm_70, sm_75, sm_80, sm_86, sm_89, sm_90"):
        emit_ptx(build("sync"), "sm_61")


def test_subgroup_other_than_32_is_rejected():
    k = build("sync")
    k.attrs["subgroup"] = 8
    with pytest.raises(ValueError, match="subgroup=32"):
        emit_ptx(k, "sm_80")


@pytest.mark.parametrize(
    "elem,kind,match",
    [
        (bool_, "add", "bool arrays"),
        (f32, "and", "not defined on f32"),
        (i32, "nand", "unknown atomic"),
    ],
)
def test_unsupported_atomics_are_compile_errors(elem, kind, match):
    g = arr("g", elem)
    loc = ir.Loc("kern.py", 7, 4)

    def body(b):
        b.loc = loc
        b.op("atomic", g, C(0), C(1, elem), op=kind, order="relaxed", scope="device")

    with pytest.raises(CompileError, match=match) as e:
        emit_ptx(kernel("a", [g], body), "sm_80")
    assert "kern.py:7" in str(e.value)


def test_block_memory_over_the_architecture_limit_is_a_compile_error():
    with pytest.raises(CompileError, match="exceeds"):
        emit_ptx(shared_kernel(64 * 1024, 2), "sm_75")


def test_bad_cluster_is_a_compile_error():
    with pytest.raises(CompileError, match="cluster 64"):
        emit_ptx(reduce_kernel(i32, 64), "sm_80")


def test_unlowered_ir_is_an_internal_error():
    x = arr("x", i32)
    with pytest.raises(RuntimeError, match="fold_lanes"):
        emit_ptx(kernel("l", [x], lambda b: b.op("store", x, C(0), b.op("lane"))))
    ready = ir.Var("ready", bool_)
    with pytest.raises(RuntimeError, match="lowered first"):
        emit_ptx(kernel("s", [], lambda b: b.emit(ir.Suspend([], ready, "wait"))))


# ---------------------------------------------------------------- loops and fixed values


@aw.kernel
def _lane_sums(y: aw.Array[aw.i32], n: aw.i32):
    acc = 0
    for i in range(n):
        acc += aw.lane() + aw.block_id() * i + aw.warp_id()
    y[aw.block_id() * aw.WARP + aw.lane()] = acc


def _lane_sums_ptx() -> str:
    return _lane_sums.specialize(aw.Array[aw.i32], aw.i32, backend="cuda", arch="sm_90").artefact


def test_fixed_special_registers_are_read_once_at_the_entry(ptxas_path):
    text = _lane_sums_ptx()
    first_loop = text.index("$L_loop")
    for special in ("%laneid", "%ctaid.x", "%tid.x"):
        reads = [m.start() for m in re.finditer(rf", {re.escape(special)};", text)]
        assert len(reads) == 1 and reads[0] < first_loop, special
    ptxas.assemble(text, "sm_90", ptxas_path)


def test_short_loop_headers_are_rotated(ptxas_path):
    text = _lane_sums_ptx()
    loop = text[text.index("$L_loop") : re.search(r"^\$L_endloop_\d+:", text, re.M).start()]
    # the exit test runs at the top once, then at the bottom: no jump back to the top
    assert "$L_body" in loop and "bra $L_loop" not in loop
    assert len(re.findall(r"setp\.lt\.s32", loop)) == 2
    ptxas.assemble(text, "sm_90", ptxas_path)
    # a header longer than ROTATED_HEADER_OPS stays at the top, jumped back to
    n = ir.Var("n", i32)

    def long_header(b):
        i = b.tmp(i32, "i")
        b.assign(i, C(0))
        hb = b.nested()
        t = i
        for _ in range(ROTATED_HEADER_OPS):
            t = hb.op("add", t, C(1))
        latch = b.nested()
        latch.assign(i, latch.op("add", i, C(1)))
        b.emit(ir.Loop(hb.block, hb.op("lt", t, n), [], latch.block))

    long = emit_ptx(kernel("long_header", [n], long_header), "sm_90")
    assert "$L_body" not in long and "bra $L_loop" in long
    ptxas.assemble(long, "sm_90", ptxas_path)


# ---------------------------------------------------------------- ptxas and the backend


def test_ptxas_errors_point_at_the_ptx_line(ptxas_path):
    bad = emit_ptx(build("sync"), "sm_80").replace("bar.sync 0;", "bar.sync %nonsense;")
    with pytest.raises(ptxas.PtxasError, match=r"\| bar\.sync %nonsense;"):
        ptxas.assemble(bad, "sm_80", ptxas_path)


def test_ptxas_lookup(ptxas_path):
    assert "sm_80" in ptxas.supported_archs(ptxas_path)
    assert ptxas.nearest_target("sm_70", ptxas_path) in ("sm_70", "sm_72", "sm_75")
    with pytest.raises(ptxas.PtxasNotFound, match="nvidia-cuda-nvcc"):
        ptxas.find_ptxas("/nonexistent/ptxas")
    with pytest.raises(ptxas.PtxasError, match="cannot generate code for sm_1"):
        ptxas.assemble("", "sm_1", ptxas_path)


def test_backend_compiles_without_a_gpu(ptxas_path):
    backend = CudaBackend(0)
    k = build("control_flow")
    text = backend.compile(k, BuildOptions(backend="cuda", arch="sm_86"))
    assert ".target sm_86" in text
    ok, reason = backend.available()
    if not ok:
        assert "pip install" in reason or "driver" in reason
        assert ".target sm_70" in backend.compile(k, BuildOptions(backend="cuda"))
