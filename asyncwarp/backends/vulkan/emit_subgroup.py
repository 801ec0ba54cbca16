"""SPIR-V lowering of the execution-model specials and the physical subgroup ops.

Clustered ops combine the lanes [c*cluster, (c+1)*cluster) (docs/internals.md).
A cluster equal to the subgroup size H uses the plain group operations; smaller
clusters use ClusteredReduce (GroupNonUniformClustered) for reductions, and
shuffles for scans, which SPIR-V has no clustered form of.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import ir
from ...core.types import ScalarType, bool_, i32, u32, u64
from .emit_arith import farith, int_to_int
from .emit_memory import control_barrier

if TYPE_CHECKING:
    from .emit import KernelEmitter

# reduce/scan op -> OpGroupNonUniform* for (signed, unsigned, float) operands.
GROUP_OPS = {
    "add": ("OpGroupNonUniformIAdd", "OpGroupNonUniformIAdd", "OpGroupNonUniformFAdd"),
    "min": ("OpGroupNonUniformSMin", "OpGroupNonUniformUMin", "OpGroupNonUniformFMin"),
    "max": ("OpGroupNonUniformSMax", "OpGroupNonUniformUMax", "OpGroupNonUniformFMax"),
}
SPECIALS = {
    "sg_lane": "SubgroupLocalInvocationId",
    "sg_id": "SubgroupId",
    "block_id": "WorkgroupId",
    "num_blocks": "NumWorkgroups",
}


def _group_op(op: ir.Op, t: ScalarType) -> str:
    kind = op.attrs.get("op", "add")
    if kind not in GROUP_OPS:
        raise RuntimeError(f"{op.opcode} op {kind!r} at {op.loc} is not one of {tuple(GROUP_OPS)}")
    return GROUP_OPS[kind][2 if t.is_float else 0 if t.is_signed else 1]


def _cluster(e: KernelEmitter, op: ir.Op) -> int:
    cluster = int(op.attrs.get("cluster", e.subgroup))
    if cluster & (cluster - 1) or not 1 <= cluster <= e.subgroup:
        raise RuntimeError(
            f"{op.opcode} cluster {cluster} at {op.loc}: not a power of two <= H={e.subgroup}"
        )
    return cluster


def lane_u32(e: KernelEmitter) -> int:
    return e.builtin("SubgroupLocalInvocationId")


def lower_special(e: KernelEmitter, op: ir.Op) -> int:
    return e.emit("OpBitcast", e.ty(i32), e.builtin(SPECIALS[op.opcode]))


def lower_reduce(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    cluster = _cluster(e, op)
    value = e.value(op.args[0])
    subgroup = e.scope("Subgroup")
    opname = _group_op(op, t)
    if cluster == e.subgroup:
        return e.emit(opname, e.ty(t), subgroup, "Reduce", value)
    return e.emit(opname, e.ty(t), subgroup, "ClusteredReduce", value, e.const(cluster, u32))


def _identity(op: ir.Op, t: ScalarType):
    kind = op.attrs.get("op", "add")
    if kind == "add":
        return 0.0 if t.is_float else 0
    if t.is_float:
        return float("inf") if kind == "min" else float("-inf")
    if t.is_signed:
        return (1 << (t.bits - 1)) - 1 if kind == "min" else -(1 << (t.bits - 1))
    return (1 << t.bits) - 1 if kind == "min" else 0


def _combine(e: KernelEmitter, op: ir.Op, t: ScalarType, a: int, b: int) -> int:
    kind = op.attrs.get("op", "add")
    if kind == "add":
        return farith(e, "OpFAdd", t, a, b) if t.is_float else e.emit("OpIAdd", e.ty(t), a, b)
    names = {"min": ("SMin", "UMin", "NMin"), "max": ("SMax", "UMax", "NMax")}[kind]
    return e.glsl(t, names[2 if t.is_float else 0 if t.is_signed else 1], a, b)


def shuffle(e: KernelEmitter, t: ScalarType, value: int, source_lane: int) -> int:
    """OpGroupNonUniformShuffle; its Id must be an unsigned integer (spec)."""
    return e.emit("OpGroupNonUniformShuffle", e.ty(t), e.scope("Subgroup"), value, source_lane)


def lower_scan(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    cluster = _cluster(e, op)
    inclusive = bool(op.attrs.get("inclusive", True))
    value = e.value(op.args[0])
    if cluster == e.subgroup:
        group = "InclusiveScan" if inclusive else "ExclusiveScan"
        return e.emit(_group_op(op, t), e.ty(t), e.scope("Subgroup"), group, value)
    # Hillis-Steele within the cluster: log2(cluster) shuffle-and-combine steps.
    uint, boolean = e.ty(u32), e.ty(bool_)
    lane = lane_u32(e)
    position = e.emit("OpBitwiseAnd", uint, lane, e.const(cluster - 1, u32))
    acc, step = value, 1
    while step < cluster:
        has_source = e.emit("OpUGreaterThanEqual", boolean, position, e.const(step, u32))
        source = e.select(u32, has_source, e.emit("OpISub", uint, lane, e.const(step, u32)), lane)
        earlier = shuffle(e, t, acc, source)
        acc = e.select(t, has_source, _combine(e, op, t, earlier, acc), acc)
        step *= 2
    if inclusive:
        return acc
    # Exclusive: the inclusive result of the previous lane, identity at the cluster start.
    first = e.emit("OpIEqual", boolean, position, e.const(0, u32))
    previous = shuffle(
        e, t, acc, e.select(u32, first, lane, e.emit("OpISub", uint, lane, e.const(1, u32)))
    )
    return e.select(t, first, e.const(_identity(op, t), t), previous)


def lower_shuffle(e: KernelEmitter, op: ir.Op) -> int:
    t = op.args[0].type
    source_t = op.args[1].type
    source = e.value(op.args[1])
    if source_t != u32:
        source = int_to_int(e, source, source_t, u32)
    # Reading an invocation >= H is undefined: wrap the index, like the hardware does.
    source = e.emit("OpBitwiseAnd", e.ty(u32), source, e.const(e.subgroup - 1, u32))
    return shuffle(e, t, e.value(op.args[0]), source)


def cluster_ballot(e: KernelEmitter, predicate: int, cluster: int) -> int:
    """The predicate bits of the lane's cluster as a u64, bit i = lane i of the cluster.
    OpGroupNonUniformBallot gives a uvec4 whose bit k (word k / 32) is invocation k."""
    if cluster > 64:
        raise RuntimeError(f"sg_ballot cluster {cluster} does not fit in 64 bits")
    uint, ulong = e.ty(u32), e.ty(u64)
    mask = e.emit(
        "OpGroupNonUniformBallot", e.b.type_vector(uint, 4), e.scope("Subgroup"), predicate
    )
    # The cluster's first invocation; None when it is invocation 0 (one cluster).
    first = None
    if cluster < e.subgroup:
        first = e.emit("OpBitwiseAnd", uint, lane_u32(e), e.const(~(cluster - 1) & 0xFFFFFFFF, u32))

    def word(offset: int) -> int:
        """The ballot word holding the cluster's bits from 32 * offset on."""
        if first is None or e.subgroup <= 32:
            return e.emit("OpCompositeExtract", uint, mask, offset)
        index = e.emit("OpShiftRightLogical", uint, first, e.const(5, u32))
        if offset:
            index = e.emit("OpIAdd", uint, index, e.const(offset, u32))
        return e.emit("OpVectorExtractDynamic", uint, mask, index)

    low = word(0)
    if cluster < 32:
        if first is not None:
            low = e.emit(
                "OpShiftRightLogical",
                uint,
                low,
                e.emit("OpBitwiseAnd", uint, first, e.const(31, u32)),
            )
        low = e.emit("OpBitwiseAnd", uint, low, e.const((1 << cluster) - 1, u32))
    bits = e.emit("OpUConvert", ulong, low)
    if cluster == 64:
        high = e.emit("OpUConvert", ulong, word(1))
        bits = e.emit(
            "OpBitwiseOr", ulong, bits, e.emit("OpShiftLeftLogical", ulong, high, e.const(32, u32))
        )
    return bits


def lower_ballot(e: KernelEmitter, op: ir.Op) -> int:
    return cluster_ballot(e, e.value(op.args[0]), _cluster(e, op))


def lower_vote(e: KernelEmitter, op: ir.Op) -> int:
    cluster = _cluster(e, op)
    predicate = e.value(op.args[0])
    boolean = e.ty(bool_)
    if cluster == e.subgroup:
        opname = "OpGroupNonUniformAny" if op.opcode == "sg_any" else "OpGroupNonUniformAll"
        return e.emit(opname, boolean, e.scope("Subgroup"), predicate)
    bits = cluster_ballot(e, predicate, cluster)
    if op.opcode == "sg_any":
        return e.emit("OpINotEqual", boolean, bits, e.const(0, u64))
    return e.emit("OpIEqual", boolean, bits, e.const((1 << cluster) - 1, u64))


def lower_sg_barrier(e: KernelEmitter, op: ir.Op) -> None:
    control_barrier(e, "Subgroup")


HANDLERS = {
    **dict.fromkeys(SPECIALS, lower_special),
    "sg_reduce": lower_reduce,
    "sg_scan": lower_scan,
    "sg_shuffle": lower_shuffle,
    "sg_ballot": lower_ballot,
    "sg_any": lower_vote,
    "sg_all": lower_vote,
    "sg_barrier": lower_sg_barrier,
}
