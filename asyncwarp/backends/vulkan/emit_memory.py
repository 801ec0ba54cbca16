"""SPIR-V lowering of memory ops: loads, stores, atomics, fences, barriers, timer.

Under the Vulkan memory model (SPV_KHR_vulkan_memory_model, core in SPIR-V 1.5)
plain accesses are private unless marked NonPrivatePointer, and release/acquire
make writes available/visible only with MakeAvailable/MakeVisible semantics; the
lowering sets both so that ordered ops order the plain ones as ops.py intends.
Floats are stored as same-width uints so that every atomic applies to them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ...core import ir
from ...core.ops import ORDERS, SCOPES
from ...core.types import bool_, u32, u64
from .emit_arith import MIN_MAX, bool_to_number, farith

if TYPE_CHECKING:
    from .emit import ArrayRef, KernelEmitter

SCOPE = {"warp": "Subgroup", "block": "Workgroup", "device": "Device"}
# Every ordered op orders both global and block memory, as on PTX, where a release
# fence covers all state spaces.
STORAGE_SEMANTICS = ("UniformMemory", "WorkgroupMemory")
FENCE_SEMANTICS = ("AcquireRelease", "MakeAvailable", "MakeVisible", *STORAGE_SEMANTICS)
# op -> (signed/float-bits opcode, unsigned opcode).
INT_ATOMICS = {
    "add": ("OpAtomicIAdd", "OpAtomicIAdd"),
    "min": ("OpAtomicSMin", "OpAtomicUMin"),
    "max": ("OpAtomicSMax", "OpAtomicUMax"),
    "and": ("OpAtomicAnd", "OpAtomicAnd"),
    "or": ("OpAtomicOr", "OpAtomicOr"),
    "xor": ("OpAtomicXor", "OpAtomicXor"),
    "exchange": ("OpAtomicExchange", "OpAtomicExchange"),
}
BOOL_ATOMICS = frozenset({"and", "or", "xor", "exchange"})


def _order_scope(op: ir.Op, default_order: str) -> tuple[str, str]:
    order = op.attrs.get("order", default_order)
    scope = op.attrs.get("scope", "device")
    if order not in ORDERS or scope not in SCOPES:
        raise RuntimeError(f"{op.opcode}: bad order/scope {order!r}/{scope!r} at {op.loc}")
    return order, scope


def _acquires(order: str, access: str) -> bool:
    return order in ("acquire", "acq_rel", "seq_cst") and access in ("load", "rmw")


def _releases(order: str, access: str) -> bool:
    return order in ("release", "acq_rel", "seq_cst") and access in ("store", "rmw")


def semantics(e: KernelEmitter, order: str, access: str) -> int:
    """MemorySemantics for an access of kind load, store or rmw. The Vulkan memory model
    has no SequentiallyConsistent (spirv-val rejects it there): seq_cst is acq_rel."""
    acquire, release = _acquires(order, access), _releases(order, access)
    if acquire and release:
        names = ("AcquireRelease", "MakeAvailable", "MakeVisible")
    elif acquire:
        names = ("Acquire", "MakeVisible")
    elif release:
        names = ("Release", "MakeAvailable")
    else:
        return e.semantics()  # Relaxed
    return e.semantics(*names, *STORAGE_SEMANTICS)


def ordered(
    e: KernelEmitter, order: str, access: str, atomic: Callable[[int], int | None]
) -> int | None:
    """Emit `atomic(semantics_id)` with the ordering of `order`.

    With e.subgroup_fences (a driver workaround, see emit_spirv) the atomic is relaxed
    and the ordering comes from Subgroup-scope fences around it: a release fence before,
    an acquire fence after (fence-atomic synchronization).
    """
    if not e.subgroup_fences:
        return atomic(semantics(e, order, access))
    if _releases(order, access):
        memory_fence(e, "Subgroup", "Release", "MakeAvailable")
    result = atomic(e.semantics())
    if _acquires(order, access):
        memory_fence(e, "Subgroup", "Acquire", "MakeVisible")
    return result


def memory_fence(e: KernelEmitter, scope: str, *order: str) -> None:
    if e.subgroup_fences:
        scope = "Subgroup"
    e.emit("OpMemoryBarrier", e.scope(scope), e.semantics(*order, *STORAGE_SEMANTICS))


def element_pointer(e: KernelEmitter, ref: ArrayRef, index: ir.Value) -> int:
    ptr_type = e.b.type_pointer(ref.storage_class, ref.raw_type)
    idx = e.value(index)
    if ref.is_buffer:  # member 0 of the block struct, then the element
        return e.emit("OpAccessChain", ptr_type, ref.var, e.const(0, u32), idx)
    return e.emit("OpAccessChain", ptr_type, ref.var, idx)


def to_raw(e: KernelEmitter, ref: ArrayRef, value: int) -> int:
    if ref.elem.is_bool:
        word = bool_to_number(e, value, u32)
        return word if ref.raw is not None else e.emit("OpUConvert", ref.raw_type, word)
    if ref.elem.is_float:
        return e.emit("OpBitcast", ref.raw_type, value)
    return value


def from_raw(e: KernelEmitter, ref: ArrayRef, raw: int) -> int:
    if ref.elem.is_bool:
        word = raw if ref.raw is not None else e.emit("OpUConvert", e.ty(u32), raw)
        return e.emit("OpINotEqual", e.ty(bool_), word, e.const(0, u32))
    if ref.elem.is_float:
        return e.emit("OpBitcast", e.ty(ref.elem), raw)
    return raw


def _atomic_access(e: KernelEmitter, op: ir.Op, ref: ArrayRef) -> None:
    if ref.raw is None:
        raise e.fail(
            op,
            f"{op.opcode} with order {op.attrs.get('order', 'relaxed')!r} on a bool array in "
            "global memory: Vulkan has no 8-bit atomics",
            "store flags in an aw.u32 or aw.i32 array",
        )
    if ref.raw.bits == 64:
        e.b.require_capability("Int64Atomics")


def lower_load(e: KernelEmitter, op: ir.Op) -> int:
    ref = e.array(op.args[0])
    ptr = element_pointer(e, ref, op.args[1])
    order, scope = _order_scope(op, "weak")
    if order == "weak":
        raw = e.emit("OpLoad", ref.raw_type, ptr, "NonPrivatePointer")
    else:
        _atomic_access(e, op, ref)
        scope_id = e.scope(SCOPE[scope])
        raw = ordered(
            e, order, "load", lambda sem: e.emit("OpAtomicLoad", ref.raw_type, ptr, scope_id, sem)
        )
    return from_raw(e, ref, raw)


def lower_store(e: KernelEmitter, op: ir.Op) -> None:
    ref = e.array(op.args[0])
    ptr = element_pointer(e, ref, op.args[1])
    raw = to_raw(e, ref, e.value(op.args[2]))
    order, scope = _order_scope(op, "weak")
    if order == "weak":
        e.emit("OpStore", ptr, raw, "NonPrivatePointer")
    else:
        _atomic_access(e, op, ref)
        scope_id = e.scope(SCOPE[scope])
        ordered(e, order, "store", lambda sem: e.emit("OpAtomicStore", ptr, scope_id, sem, raw))


def lower_atomic(e: KernelEmitter, op: ir.Op) -> int:
    ref = e.array(op.args[0])
    kind = op.attrs.get("op")
    if kind not in INT_ATOMICS:
        raise RuntimeError(f"atomic op {kind!r} at {op.loc} is not one of {tuple(INT_ATOMICS)}")
    elem = ref.elem
    if (elem.is_bool and kind not in BOOL_ATOMICS) or (
        elem.is_float and kind in BOOL_ATOMICS - {"exchange"}
    ):
        raise e.fail(op, f"atomic {kind} is not defined on {elem} arrays")
    _atomic_access(e, op, ref)
    order, scope = _order_scope(op, "relaxed")
    ptr = element_pointer(e, ref, op.args[1])
    value = e.value(op.args[2])
    if elem.is_float and kind != "exchange":

        def update(current: int) -> int:
            if kind == "add":
                return farith(e, "OpFAdd", elem, current, value)
            return e.glsl(elem, MIN_MAX[kind][2], current, value)  # NMin/NMax: minNum

        return from_raw(e, ref, cas_loop(e, ref, ptr, SCOPE[scope], order, update))
    opname = INT_ATOMICS[kind][0 if elem.is_signed or not elem.is_int else 1]
    raw = to_raw(e, ref, value)
    scope_id = e.scope(SCOPE[scope])
    old = ordered(
        e, order, "rmw", lambda sem: e.emit(opname, ref.raw_type, ptr, scope_id, sem, raw)
    )
    return from_raw(e, ref, old)


def cas_loop(
    e: KernelEmitter, ref: ArrayRef, ptr: int, scope: str, order: str, update: Callable[[int], int]
) -> int:
    """Atomic read-modify-write by compare-exchange on the bit pattern (portable: needs
    no float-atomic extension). Returns the raw old value. The loop's atomics are
    relaxed; the order comes from fences around it (a release fence before, an acquire
    fence after: C++'s fence-atomic synchronization, which the Vulkan model shares).
    This keeps barriers out of the loop, which is divergent by nature."""
    b = e.b
    scope_id = e.scope(scope)
    if _releases(order, "rmw"):
        memory_fence(e, scope, "Release", "MakeAvailable")
    relaxed = e.semantics()
    expected = e.local(ref.raw_type, "cas_expected")
    b.op("OpStore", expected, b.op("OpAtomicLoad", ref.raw_type, ptr, scope_id, relaxed))
    header, body, continue_target, merge = (b.new_id() for _ in range(4))
    e.branch(header)
    e.label(header)
    b.op("OpLoopMerge", merge, continue_target, "None")
    e.branch(body)
    e.label(body)
    seen = b.op("OpLoad", ref.raw_type, expected)
    desired = to_raw(e, ref, update(from_raw(e, ref, seen)))
    got = b.op(
        "OpAtomicCompareExchange", ref.raw_type, ptr, scope_id, relaxed, relaxed, desired, seen
    )
    b.op("OpStore", expected, got)
    done = b.op("OpIEqual", e.ty(bool_), got, seen)
    e.terminate("OpBranchConditional", done, merge, continue_target)  # a break or a continue
    e.label(continue_target)
    e.branch(header)
    e.label(merge)
    if _acquires(order, "rmw"):
        memory_fence(e, scope, "Acquire", "MakeVisible")
    return b.op("OpLoad", ref.raw_type, expected)


def lower_atomic_cas(e: KernelEmitter, op: ir.Op) -> int:
    """Compare-exchange. Floats compare by bit pattern (so -0.0 != 0.0 and a NaN matches
    itself), as CUDA's atomicCAS on the integer view does."""
    ref = e.array(op.args[0])
    _atomic_access(e, op, ref)
    order, scope = _order_scope(op, "relaxed")
    ptr = element_pointer(e, ref, op.args[1])
    expected = to_raw(e, ref, e.value(op.args[2]))
    desired = to_raw(e, ref, e.value(op.args[3]))
    scope_id = e.scope(SCOPE[scope])

    def compare_exchange(sem: int) -> int:
        # On failure only the acquire half applies (spec: Unequal must not be a release).
        unequal = e.semantics() if e.subgroup_fences else semantics(e, order, "load")
        return e.emit(
            "OpAtomicCompareExchange", ref.raw_type, ptr, scope_id, sem, unequal, desired, expected
        )

    return from_raw(e, ref, ordered(e, order, "rmw", compare_exchange))


def lower_fence(e: KernelEmitter, op: ir.Op) -> None:
    _, scope = _order_scope(op, "acq_rel")
    memory_fence(e, SCOPE[scope], "AcquireRelease", "MakeAvailable", "MakeVisible")


def control_barrier(e: KernelEmitter, scope: str) -> None:
    """Execution and memory barrier at `scope`: an acq_rel fence of all memory at that
    scope too (ops.py barrier, and sg_barrier for warp_sync)."""
    scope_id = e.scope(scope)
    e.emit("OpControlBarrier", scope_id, scope_id, e.semantics(*FENCE_SEMANTICS))


def lower_barrier(e: KernelEmitter, op: ir.Op) -> None:
    control_barrier(e, "Workgroup")


def lower_block_all(e: KernelEmitter, op: ir.Op) -> int:
    """One workgroup barrier per call. Each subgroup votes (OpGroupNonUniformAll) and its
    invocations store the verdict in the subgroup's own word; after the barrier lane i
    reads words i, i + H, ... and the subgroup votes again. Every call rewrites all its
    words before its barrier, so nothing needs initialising; calls alternate between two
    sets of words, so one call's writes never meet the previous call's reads (those
    happen before the barrier in between). Cooperative executors run one per round."""
    uint, boolean = e.ty(u32), e.ty(bool_)
    groups = -(-e.block_size // e.subgroup)
    words = e.global_var(
        "block_all_words", "Workgroup", e.b.type_array(uint, 2 * groups), "block_all_words"
    )
    if "block_all_half" not in e.cache:
        e.cache["block_all_half"] = e.local(uint, "block_all_half", e.const(0, u32))
    half_var = e.cache["block_all_half"]
    half = e.emit("OpLoad", uint, half_var)
    e.emit("OpStore", half_var, e.emit("OpBitwiseXor", uint, half, e.const(1, u32)))
    base = e.emit("OpIMul", uint, half, e.const(groups, u32))
    ptr_t = e.b.type_pointer("Workgroup", uint)
    scope, relaxed, subgroup = e.scope("Workgroup"), e.semantics(), e.scope("Subgroup")

    def word(index: int) -> int:
        return e.emit("OpAccessChain", ptr_t, words, e.emit("OpIAdd", uint, base, index))

    verdict = e.emit("OpGroupNonUniformAll", boolean, subgroup, e.value(op.args[0]))
    mine = word(e.builtin("SubgroupId"))
    e.emit("OpAtomicStore", mine, scope, relaxed, bool_to_number(e, verdict, u32))
    control_barrier(e, "Workgroup")
    lane = e.builtin("SubgroupLocalInvocationId")
    ok = e.const(True, bool_)
    for start in range(0, groups, e.subgroup):
        i = e.emit("OpIAdd", uint, lane, e.const(start, u32))
        inside = e.emit("OpULessThan", boolean, i, e.const(groups, u32))
        seen = e.emit("OpAtomicLoad", uint, word(e.select(u32, inside, i, e.const(0, u32))),
                      scope, relaxed)  # fmt: skip
        fine = e.emit("OpINotEqual", boolean, seen, e.const(0, u32))
        ok = e.emit(
            "OpLogicalAnd", boolean, ok,
            e.emit("OpLogicalOr", boolean, e.emit("OpLogicalNot", boolean, inside), fine),
        )  # fmt: skip
    return e.emit("OpGroupNonUniformAll", boolean, subgroup, ok)


def lower_timer(e: KernelEmitter, op: ir.Op) -> int:
    """OpReadClockKHR at Device scope when the device has shaderDeviceClock; otherwise
    a per-invocation counter: no time, only monotone within the invocation."""
    if e.shader_clock:
        device = e.const(e.b.enumerant("Scope", "Device").value, u32)  # a clock scope, not memory
        return e.emit("OpReadClockKHR", e.ty(u64), device)
    if "timer" not in e.cache:
        e.cache["timer"] = e.local(e.ty(u64), "timer_counter", e.const(0, u64))
    counter = e.cache["timer"]
    ticks = e.emit("OpIAdd", e.ty(u64), e.emit("OpLoad", e.ty(u64), counter), e.const(1, u64))
    e.emit("OpStore", counter, ticks)
    return ticks


def lower_nothing(e: KernelEmitter, op: ir.Op) -> None:
    """sleep has no SPIR-V counterpart (it is a hint); shared_alloc is declared up front."""
    return None


HANDLERS = {
    "load": lower_load,
    "store": lower_store,
    "atomic": lower_atomic,
    "atomic_cas": lower_atomic_cas,
    "fence": lower_fence,
    "barrier": lower_barrier,
    "block_all": lower_block_all,
    "timer": lower_timer,
    "sleep": lower_nothing,
    "shared_alloc": lower_nothing,
}
