"""PTX lowering of subgroup ops on an NVIDIA warp of 32 lanes: reduce, scan, shuffle, votes.

They use the full member mask 0xffffffff, valid because the IR only places them
in warp-uniform control flow (core/uniformity.py), and on sm_70+ the .sync forms
reconverge lanes that independent scheduling let drift apart (PTX ISA,
"shfl.sync"); a clustered op (cluster < 32) acts on aligned groups of lanes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import ir
from ...core.errors import CompileError
from .ptx_ops import BINARY, SUFFIX, immediate, template

if TYPE_CHECKING:  # pragma: no cover
    from .ptx import PtxEmitter

FULL_MASK = "0xffffffff"
WARP = 32
# The identity of each reduction, for the first lane of an exclusive scan. For
# float min/max it is NaN: minNum ignores a NaN operand (the interpreter agrees).
_IDENTITY = {
    "add": lambda t: 0.0 if t.is_float else 0,
    "min": lambda t: float("nan") if t.is_float else _int_limits(t)[1],
    "max": lambda t: float("nan") if t.is_float else _int_limits(t)[0],
}


def _int_limits(t) -> tuple[int, int]:
    if t.is_signed:
        return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1
    return 0, (1 << t.bits) - 1


def _cluster(op: ir.Op) -> int:
    c = int(op.attrs.get("cluster", WARP))
    if c < 1 or c > WARP or c & (c - 1):
        raise CompileError(
            f"{op.opcode}: cluster {c} must be a power of two in 1..32 on "
            "NVIDIA (a warp has 32 lanes)",
            op.loc,
        )
    return c


def _combine(op: ir.Op) -> str:
    kind = op.attrs.get("op", "add")
    if kind not in _IDENTITY:
        raise CompileError(f"{op.opcode}: unknown operation {kind!r} (use add, min or max)", op.loc)
    return kind


def shuffle(
    e: PtxEmitter, mode: str, t, src: str, lane: str, c: int, valid: str | None = None
) -> str:
    """shfl.sync of a value of any scalar type: 64-bit values move as two 32-bit halves.

    `c` packs the clamp value (bits 0-4) and the segment mask (bits 8-12) (PTX ISA,
    "shfl.sync"); `valid`, if given, receives whether the source lane was in range.
    """
    out = e.tmp_for(t)
    guard = f"|{valid}" if valid else ""
    if t.is_bool:
        word = e.tmp("b32")
        e.ins(f"selp.u32 {word}, 1, 0, {src}")
        e.ins(f"shfl.sync.{mode}.b32 {word}{guard}, {word}, {lane}, {c}, {FULL_MASK}")
        e.ins(f"setp.ne.u32 {out}, {word}, 0")
    elif t.bits == 64:
        lo, hi = e.tmp("b32"), e.tmp("b32")
        e.ins(f"mov.b64 {{{lo}, {hi}}}, {src}")
        e.ins(f"shfl.sync.{mode}.b32 {lo}{guard}, {lo}, {lane}, {c}, {FULL_MASK}")
        e.ins(f"shfl.sync.{mode}.b32 {hi}, {hi}, {lane}, {c}, {FULL_MASK}")
        e.ins(f"mov.b64 {out}, {{{lo}, {hi}}}")
    else:
        e.ins(f"shfl.sync.{mode}.b32 {out}{guard}, {src}, {lane}, {c}, {FULL_MASK}")
    return out


def lower_reduce(e: PtxEmitter, op: ir.Op) -> None:
    (x,) = op.args
    t, kind, cluster = x.type, _combine(op), _cluster(op)
    d = e.reg(op.dst)
    src = e.in_register(x)
    # redux.sync (sm_80+) reduces 32-bit integers over the member mask in one
    # instruction (PTX ISA, "redux.sync"); it has no clustered or 64-bit/float form.
    if e.sm >= 80 and cluster == WARP and t.is_int and t.bits == 32:
        e.ins(f"redux.sync.{kind}.{SUFFIX[t.name]} {d}, {src}, {FULL_MASK}")
        return
    ins = template(BINARY, kind, t, op.loc)
    acc = e.tmp_for(t)
    e.ins(f"mov.{SUFFIX[t.name]} {acc}, {src}")
    # Butterfly: after the steps for lane masks 1, 2, .., cluster/2 every lane of a
    # cluster holds the same combination of all of them (lane ^ m stays in the cluster).
    step = 1
    while step < cluster:
        other = shuffle(e, "bfly", t, acc, str(step), 0x1F)
        e.ins(f"{ins} {acc}, {acc}, {other}")
        step *= 2
    e.ins(f"mov.{SUFFIX[t.name]} {d}, {acc}")


def lower_scan(e: PtxEmitter, op: ir.Op) -> None:
    """Hillis-Steele scan with shfl.sync.up, segmented to the cluster."""
    (x,) = op.args
    t, kind, cluster = x.type, _combine(op), _cluster(op)
    inclusive = bool(op.attrs.get("inclusive", True))
    ins = template(BINARY, kind, t, op.loc)
    # For .up the clamp is 0 and the segment mask keeps sources in the lane's cluster.
    c = (WARP - cluster) << 8
    acc = e.tmp_for(t)
    e.ins(f"mov.{SUFFIX[t.name]} {acc}, {e.in_register(x)}")
    step = 1
    while step < cluster:
        valid = e.tmp("pred")
        other = shuffle(e, "up", t, acc, str(step), c, valid)
        e.ins(f"@{valid} {ins} {acc}, {acc}, {other}")
        step *= 2
    d = e.reg(op.dst)
    if inclusive:
        e.ins(f"mov.{SUFFIX[t.name]} {d}, {acc}")
        return
    valid = e.tmp("pred")
    prev = shuffle(e, "up", t, acc, "1", c, valid)
    ident = immediate(_IDENTITY[kind](t), t)
    e.ins(f"selp.{SUFFIX[t.name]} {d}, {prev}, {ident}, {valid}")


def lower_shuffle(e: PtxEmitter, op: ir.Op) -> None:
    """Value of lane `src` of the warp (only its low 5 bits count: src mod 32)."""
    x, src = op.args
    lane = e.in_register(src)
    if src.type.bits == 64:
        narrow = e.tmp("b32")
        e.ins(f"cvt.u32.u64 {narrow}, {lane}")
        lane = narrow
    out = shuffle(e, "idx", x.type, e.in_register(x), lane, 0x1F)
    ty = "pred" if x.type.is_bool else SUFFIX[x.type.name]
    e.ins(f"mov.{ty} {e.reg(op.dst)}, {out}")


def _cluster_ballot(e: PtxEmitter, op: ir.Op, cluster: int) -> str:
    """The ballot of the lane's cluster, in the low `cluster` bits of a .b32."""
    mask = e.tmp("b32")
    e.ins(f"vote.sync.ballot.b32 {mask}, {e.operand(op.args[0])}, {FULL_MASK}")
    if cluster < WARP:
        first = e.tmp("b32")
        lane = e.fixed("sg_lane")
        e.ins(f"and.b32 {first}, {lane}, {WARP - cluster}")  # ~(cluster-1) within 5 bits
        e.ins(f"shr.b32 {mask}, {mask}, {first}")
        e.ins(f"and.b32 {mask}, {mask}, {(1 << cluster) - 1}")
    return mask


def lower_ballot(e: PtxEmitter, op: ir.Op) -> None:
    mask = _cluster_ballot(e, op, _cluster(op))
    e.ins(f"cvt.u64.u32 {e.reg(op.dst)}, {mask}")


def lower_vote(e: PtxEmitter, op: ir.Op) -> None:
    cluster = _cluster(op)
    d = e.reg(op.dst)
    kind = "any" if op.opcode == "sg_any" else "all"
    if cluster == WARP:
        e.ins(f"vote.sync.{kind}.pred {d}, {e.operand(op.args[0])}, {FULL_MASK}")
        return
    mask = _cluster_ballot(e, op, cluster)
    if kind == "any":
        e.ins(f"setp.ne.u32 {d}, {mask}, 0")
    else:
        e.ins(f"setp.eq.u32 {d}, {mask}, {(1 << cluster) - 1}")


def lower_sg_barrier(e: PtxEmitter, op: ir.Op) -> None:
    # bar.warp.sync also orders memory among the participating lanes (PTX ISA, "bar.warp.sync").
    e.ins(f"bar.warp.sync {FULL_MASK}")


SUBGROUP_HANDLERS = {
    "sg_reduce": lower_reduce,
    "sg_scan": lower_scan,
    "sg_shuffle": lower_shuffle,
    "sg_ballot": lower_ballot,
    "sg_any": lower_vote,
    "sg_all": lower_vote,
    "sg_barrier": lower_sg_barrier,
}
