"""PTX lowering of memory ops: loads, stores, atomics, fences, block barriers, sleep.

IR orders and scopes (core/ops.py) map onto the PTX ISA's "Memory Consistency
Model": weak accesses are plain ld/st; ordered ones carry .relaxed, .acquire or
.release with a scope, and seq_cst adds a `fence.sc` in front, as the C++
mapping of libcu++ does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...core import ir
from ...core.errors import CompileError
from .ptx_ops import MEM_SUFFIX, SUFFIX, TEMP_CLASS, bits

if TYPE_CHECKING:  # pragma: no cover
    from .ptx import PtxEmitter

# PTX has no warp scope; .cta is the narrowest scope that contains a warp, so it
# is sound for warp-scope orderings (PTX ISA, memory model "Scope").
SCOPE = {"warp": "cta", "block": "cta", "device": "gpu"}
# order -> (fence before the access, the access's semantics, fence after)
LOAD_ORDER = {
    "weak": (None, None, None),
    "relaxed": (None, "relaxed", None),
    "acquire": (None, "acquire", None),
    "release": ("fence.acq_rel", "relaxed", None),
    "acq_rel": ("fence.acq_rel", "acquire", None),
    "seq_cst": ("fence.sc", "acquire", None),
}
STORE_ORDER = {
    "weak": (None, None, None),
    "relaxed": (None, "relaxed", None),
    "release": (None, "release", None),
    "acquire": (None, "relaxed", "fence.acq_rel"),
    "acq_rel": (None, "release", "fence.acq_rel"),
    "seq_cst": ("fence.sc", "relaxed", None),
}
RMW_ORDER = {
    "weak": (None, "relaxed", None),
    "relaxed": (None, "relaxed", None),
    "acquire": (None, "acquire", None),
    "release": (None, "release", None),
    "acq_rel": (None, "acq_rel", None),
    "seq_cst": ("fence.sc", "acq_rel", None),
}
# atom operation per IR atomic kind and type class ({u}: unsigned suffix of the
# size; PTX atom.add has no .s64 form, and two's-complement addition is the same
# for both signs). None: emulated with a compare-and-swap loop.
ATOMIC = {
    "add": {"int": "add.u{n}", "float": "add.{t}"},  # f64 add: sm_60+
    "min": {"int": "min.{t}", "float": None},
    "max": {"int": "max.{t}", "float": None},
    "and": {"int": "and.b{n}"},
    "or": {"int": "or.b{n}"},
    "xor": {"int": "xor.b{n}"},
    "exchange": {"int": "exch.b{n}", "float": "exch.b{n}"},
}
SLEEP_MAX_NS = 1_000_000


def _attrs(op: ir.Op) -> tuple[str, str]:
    order = op.attrs.get("order", "weak")
    scope = op.attrs.get("scope", "device")
    if scope not in SCOPE:
        raise CompileError(f"unknown memory scope {scope!r} (use warp, block or device)", op.loc)
    return order, SCOPE[scope]


def _ordered(table: dict, order: str, loc) -> tuple:
    try:
        return table[order]
    except KeyError:
        raise CompileError(f"unknown memory order {order!r}", loc) from None


def address(e: PtxEmitter, arr: ir.Var, idx: ir.Value) -> str:
    """`[addr]` of arr[idx]: global addresses are 64-bit, shared ones 32-bit."""
    base = e.operand(arr)
    size = arr.type.elem.nbytes
    shared = arr.type.space == "shared"
    if isinstance(idx, ir.Const):
        offset = int(idx.value) * size
        if -(2**31) <= offset < 2**31:
            return f"[{base}+{offset}]"
    i = e.operand(idx)
    if shared:
        if idx.type.bits == 64:
            narrow = e.tmp("b32")
            e.ins(f"cvt.u32.u64 {narrow}, {i}")
            i = narrow
        addr = e.tmp("b32")
        e.ins(f"mad.lo.u32 {addr}, {i}, {size}, {base}")
        return f"[{addr}]"
    addr = e.tmp("b64")
    if idx.type.bits == 64:
        e.ins(f"mad.lo.u64 {addr}, {i}, {size}, {base}")
    else:
        e.ins(f"mul.wide.{SUFFIX[idx.type.name]} {addr}, {i}, {size}")
        e.ins(f"add.u64 {addr}, {addr}, {base}")
    return f"[{addr}]"


def _qualifiers(sem: str | None, scope: str, space: str) -> str:
    return f".{sem}.{scope}.{space}" if sem else f".{space}"


def lower_load(e: PtxEmitter, op: ir.Op) -> None:
    arr, idx = op.args
    order, scope = _attrs(op)
    before, sem, _ = _ordered(LOAD_ORDER, order, op.loc)
    addr = address(e, arr, idx)
    if before:
        e.ins(f"{before}.{scope}")
    q = _qualifiers(sem, scope, arr.type.space)
    elem = arr.type.elem
    if elem.is_bool:  # one byte per element, nonzero is true
        byte = e.tmp("b16")
        e.ins(f"ld{q}.u8 {byte}, {addr}")
        e.ins(f"setp.ne.u16 {e.reg(op.dst)}, {byte}, 0")
    else:
        e.ins(f"ld{q}.{MEM_SUFFIX[elem.name]} {e.reg(op.dst)}, {addr}")


def lower_store(e: PtxEmitter, op: ir.Op) -> None:
    arr, idx, value = op.args
    order, scope = _attrs(op)
    before, sem, after = _ordered(STORE_ORDER, order, op.loc)
    addr = address(e, arr, idx)
    elem = arr.type.elem
    if elem.is_bool:
        v = e.tmp("b16")
        e.ins(f"selp.u16 {v}, 1, 0, {e.operand(value)}")
    else:
        v = e.operand(value)
    if before:
        e.ins(f"{before}.{scope}")
    e.ins(f"st{_qualifiers(sem, scope, arr.type.space)}.{MEM_SUFFIX[elem.name]} {addr}, {v}")
    if after:
        e.ins(f"{after}.{scope}")


def _atomic_type(op: ir.Op, elem) -> ir.ScalarType:
    if elem.is_bool:
        raise CompileError(
            "atomics on bool arrays are not supported by the CUDA backend "
            "(PTX has no 8-bit atomics)",
            op.loc,
            hint="store flags in an i32 or u32 array",
        )
    return elem


def lower_atomic(e: PtxEmitter, op: ir.Op) -> None:
    arr, idx, value = op.args
    elem = _atomic_type(op, arr.type.elem)
    kind = op.attrs.get("op")
    if kind not in ATOMIC:
        raise CompileError(
            f"unknown atomic operation {kind!r} (use one of {', '.join(ATOMIC)})", op.loc
        )
    entry = ATOMIC[kind]
    cls = "float" if elem.is_float else "int"
    if cls not in entry:
        raise CompileError(f"atomic {kind} is not defined on {elem} values", op.loc)
    order, scope = _attrs(op)
    before, sem, _ = _ordered(RMW_ORDER, order, op.loc)
    addr = address(e, arr, idx)
    if before:
        e.ins(f"{before}.{scope}")
    space = arr.type.space
    if entry[cls] is None:
        _cas_loop(e, op, addr, f".{sem}.{scope}.{space}", f".relaxed.{scope}.{space}", elem, value)
        return
    ptx_op = entry[cls].format(t=SUFFIX[elem.name], n=elem.bits)
    e.ins(f"atom.{sem}.{scope}.{space}.{ptx_op} {e.reg(op.dst)}, {addr}, {e.operand(value)}")


def _cas_loop(e: PtxEmitter, op: ir.Op, addr: str, rmw: str, peek: str, elem, value) -> None:
    """Float atomic min/max: retry a compare-and-swap of the bit pattern until it sticks.

    min/max.f32 return the non-NaN operand, so a NaN in memory is replaced, as
    IEEE minNum asks (core/ops.py).
    """
    ty, b = SUFFIX[elem.name], bits(elem)
    old, new, seen, again = (e.tmp_for(elem), e.tmp_for(elem), e.tmp_for(elem), e.tmp("pred"))
    retry = e.label("cas")
    v = e.operand(value)
    e.ins(f"ld{peek}.{b} {old}, {addr}")
    e.place(retry)
    e.ins(f"{op.attrs['op']}.{ty} {new}, {old}, {v}")
    e.ins(f"atom{rmw}.cas.{b} {seen}, {addr}, {old}, {new}")
    e.ins(f"setp.ne.{b} {again}, {seen}, {old}")
    e.ins(f"mov.{b} {old}, {seen}")
    e.ins(f"@{again} bra {retry}")
    e.ins(f"mov.{ty} {e.reg(op.dst)}, {old}")


def lower_atomic_cas(e: PtxEmitter, op: ir.Op) -> None:
    """Compare-and-swap; float elements compare their bit patterns (so NaN can match)."""
    arr, idx, expected, desired = op.args
    elem = _atomic_type(op, arr.type.elem)
    order, scope = _attrs(op)
    before, sem, _ = _ordered(RMW_ORDER, order, op.loc)
    addr = address(e, arr, idx)
    if before:
        e.ins(f"{before}.{scope}")
    e.ins(
        f"atom.{sem}.{scope}.{arr.type.space}.cas.{bits(elem)} {e.reg(op.dst)}, {addr}, "
        f"{e.operand(expected)}, {e.operand(desired)}"
    )


# Phase barriers are mbarriers (PTX ISA "mbarrier", sm_80+); the pipeline rewrites
# them into atomics for older targets (core/passes/lower_phase_barriers.py).
def _mbarrier(e: PtxEmitter, op: ir.Op) -> str:
    if e.sm < 80:
        raise CompileError(f"{op.opcode} needs sm_80 or newer (mbarrier), not {e.arch}", op.loc)
    return address(e, op.args[0], op.args[1])


def lower_pbar_init(e: PtxEmitter, op: ir.Op) -> None:
    e.ins(f"mbarrier.init.shared::cta.b64 {_mbarrier(e, op)}, {int(op.attrs['count'])}")


def lower_pbar_arrive(e: PtxEmitter, op: ir.Op) -> None:
    # .release.cta is the default semantics of mbarrier.arrive
    state = e.tmp("b64")
    e.ins(f"mbarrier.arrive.shared::cta.b64 {state}, {_mbarrier(e, op)}")


def lower_pbar_test(e: PtxEmitter, op: ir.Op) -> None:
    # .acquire.cta by default. try_wait (sm_90) may suspend the thread for a
    # hardware-chosen time before answering, which wakes a waiter sooner than a
    # nanosleep backoff; test_wait (sm_80) answers at once.
    addr = _mbarrier(e, op)
    parity = e.tmp("b32")
    e.ins(f"mov.b32 {parity}, {e.operand(op.args[2])}")
    kind = "try_wait" if e.sm >= 90 else "test_wait"
    e.ins(f"mbarrier.{kind}.parity.shared::cta.b64 {e.reg(op.dst)}, {addr}, {parity}")


def lower_fence(e: PtxEmitter, op: ir.Op) -> None:
    order, scope = _attrs(op)
    kind = "sc" if order == "seq_cst" else "acq_rel"
    e.ins(f"fence.{kind}.{scope}")


def lower_barrier(e: PtxEmitter, op: ir.Op) -> None:
    # bar.sync orders the memory accesses of the participating threads (PTX ISA,
    # "bar"): a block-scope acq_rel fence, as core/ops.py asks.
    e.ins("bar.sync 0")


def lower_block_all(e: PtxEmitter, op: ir.Op) -> None:
    e.ins(f"bar.red.and.pred {e.reg(op.dst)}, 0, {e.operand(op.args[0])}")


def lower_shared_alloc(e: PtxEmitter, op: ir.Op) -> None:
    """Nothing to run: the array's address is set in the prologue (SharedLayout)."""


def lower_sleep(e: PtxEmitter, op: ir.Op) -> None:
    """nanosleep.u32 (sm_70+) with the request clamped to [0, 1 ms]; none for <= 0.

    The executors ask for 0 where they only name a pending wait (every cooperative
    round): emitting no instruction there took the cooperative channel ping-pong
    on an H100 from 2,518 to 2,334 ns per round trip (benchmarks/NOTES.md).
    """
    (amount,) = op.args
    if isinstance(amount, ir.Const):
        ns = min(max(int(amount.value), 0), SLEEP_MAX_NS)
        if ns > 0:
            e.ins(f"nanosleep.u32 {ns}")
        return
    t = amount.type
    ty, cls = SUFFIX[t.name], TEMP_CLASS[t.name]
    clamped = e.tmp(cls)
    if t.is_signed:
        e.ins(f"max.{ty} {clamped}, {e.operand(amount)}, 0")
        e.ins(f"min.{ty} {clamped}, {clamped}, {SLEEP_MAX_NS}")
    else:
        e.ins(f"min.{ty} {clamped}, {e.operand(amount)}, {SLEEP_MAX_NS}")
    if t.bits == 64:
        narrow = e.tmp("b32")
        e.ins(f"cvt.u32.u64 {narrow}, {clamped}")
        clamped = narrow
    asleep = e.tmp("pred")
    e.ins(f"setp.ne.u32 {asleep}, {clamped}, 0")
    e.ins(f"@{asleep} nanosleep.u32 {clamped}")


MEMORY_HANDLERS = {
    "load": lower_load,
    "store": lower_store,
    "atomic": lower_atomic,
    "atomic_cas": lower_atomic_cas,
    "fence": lower_fence,
    "pbar_init": lower_pbar_init,
    "pbar_arrive": lower_pbar_arrive,
    "pbar_test": lower_pbar_test,
    "barrier": lower_barrier,
    "block_all": lower_block_all,
    "shared_alloc": lower_shared_alloc,
    "sleep": lower_sleep,
}
