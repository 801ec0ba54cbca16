"""Loads, stores, atomics, fences and block memory for the reference interpreter.

Memory is sequentially consistent here: every access happens when its op
runs, so the interesting orderings come from where the scheduler switches
subgroups (ordered accesses, atomics and fences are scheduling points). Indices
are bounds-checked for active lanes only; atomics of one op run lane by lane in
lane order, as ops.py requires.
"""

from __future__ import annotations

import numpy as np

from . import interpreter_ops as sem
from . import ir

_SCHEDULING_OPS = ("atomic", "atomic_cas", "fence", "timer", "sg_barrier", "pbar_arrive",
                   "pbar_test")


def is_scheduling_point(op: ir.Op) -> bool:
    """Ops after which the scheduler may switch subgroups (weak loads/stores are not)."""
    if op.opcode in _SCHEDULING_OPS:
        return True
    if op.opcode in ("load", "store"):
        return op.attrs.get("order", "weak") != "weak"
    return False


def _index_error(sg, op: ir.Op, idx: np.ndarray, bad: np.ndarray, n: int) -> IndexError:
    lane = int(np.flatnonzero(bad)[0])
    name = op.args[0].name if isinstance(op.args[0], ir.Var) else "array"
    return IndexError(
        f"kernel {sg.machine.name!r}: {op.loc}: {op.opcode} index {int(idx[lane])} is out of "
        f"bounds for {name!r} of length {n} (block {sg.block.index}, subgroup {sg.sg_id}, "
        f"invocation {lane})"
    )


def _checked_indices(sg, op, arr, idx, mask, full) -> np.ndarray:
    """The lanes' indices as a vector; raises IndexError for an active lane out of bounds."""
    idx = np.asarray(idx)
    H = sg.lane.shape[0]
    if idx.ndim == 0:
        idx = np.full(H, idx)
    n = arr.shape[0]
    bad = (idx < 0) | (idx >= n)
    if not full:
        bad &= mask
    if bad.any():
        raise _index_error(sg, op, idx, bad, n)
    if not full:
        # Inactive lanes may hold any index: point them at element 0 (never read back).
        idx = np.where(mask, idx, 0)
    return idx


def _write(regs, dst, res, mask, full, dtype) -> None:
    if full:
        regs[dst] = res
    else:
        regs[dst] = np.where(mask, res, regs[dst]).astype(dtype, copy=False)


def compile_memory(c, op: ir.Op):
    """A closure for a memory or declaration op, or None if `op` is not one."""
    opc = op.opcode
    if opc == "fence":
        # A sequentially consistent interpreter needs no fence; it only marks a switch point.
        return lambda sg, mask, full: None
    if opc == "shared_alloc":
        return _shared_alloc(c, op)
    if opc in ("pbar_init", "pbar_arrive", "pbar_test"):
        return _phase_barrier(c, op)
    if opc not in ("load", "store", "atomic", "atomic_cas"):
        return None
    arr_get = c.getter(op.args[0])
    idx_get = c.getter(op.args[1])
    elem = op.args[0].type.elem
    dtype = elem.dtype
    if opc == "load":
        dst = c.slot(op.dst)

        def load(sg, mask, full):
            regs = sg.regs
            arr = arr_get(regs)
            idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full)
            _write(regs, dst, arr[idx], mask, full, dtype)

        return load
    val_get = c.getter(op.args[2])
    if opc == "store":

        def store(sg, mask, full):
            regs = sg.regs
            arr = arr_get(regs)
            idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full)
            vals = np.broadcast_to(np.asarray(val_get(regs), dtype=dtype), idx.shape)
            if not full:
                idx, vals = idx[mask], vals[mask]
            old = arr[idx]
            arr[idx] = vals
            if np.any(sem.bits_view(old) != sem.bits_view(np.ascontiguousarray(vals))):
                sg.machine.mem_version += 1

        return store
    dst = None if op.dst is None else c.slot(op.dst)
    if opc == "atomic":
        rmw = sem.make_atomic_rmw(op.attrs.get("op", "add"), dtype)

        def atomic(sg, mask, full):
            regs = sg.regs
            arr = arr_get(regs)
            idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full).tolist()
            vals = np.broadcast_to(np.asarray(val_get(regs), dtype=dtype), (len(idx),))
            out = np.zeros(len(idx), dtype=dtype)
            changed = False
            for lane in range(len(idx)) if full else np.flatnonzero(mask).tolist():
                j = idx[lane]
                old = arr[j]
                new = rmw(old, vals[lane])
                arr[j] = new
                out[lane] = old
                changed = changed or new != old
            if changed:
                sg.machine.mem_version += 1
            if dst is not None:
                _write(regs, dst, out, mask, full, dtype)

        return atomic
    desired_get = c.getter(op.args[3])

    def atomic_cas(sg, mask, full):
        regs = sg.regs
        arr = arr_get(regs)
        idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full).tolist()
        n = len(idx)
        bits = sem.bits_view(arr)  # a view: writes reach arr
        expected = sem.bits_view(np.broadcast_to(np.asarray(val_get(regs), dtype=dtype), (n,)))
        desired = sem.bits_view(np.broadcast_to(np.asarray(desired_get(regs), dtype=dtype), (n,)))
        out = np.zeros(n, dtype=bits.dtype)
        changed = False
        for lane in range(n) if full else np.flatnonzero(mask).tolist():
            j = idx[lane]
            old = bits[j]
            if old == expected[lane]:
                bits[j] = desired[lane]
                changed = changed or desired[lane] != old
            out[lane] = old
        if changed:
            sg.machine.mem_version += 1
        if dst is not None:
            _write(regs, dst, out.view(dtype), mask, full, dtype)

    return atomic_cas


def _phase_barrier(c, op: ir.Op):
    """pbar_* natively (kernels lowered for CUDA sm_80+): each element counts the arrivals
    since pbar_init, so the current phase is arrivals // count, as in
    passes.lower_phase_barriers."""
    arr_get, idx_get = c.getter(op.args[0]), c.getter(op.args[1])
    count = int(op.attrs["count"])
    opc = op.opcode

    if opc == "pbar_test":
        parity_get, dst = c.getter(op.args[2]), c.slot(op.dst)

        def test(sg, mask, full):
            regs = sg.regs
            arr = arr_get(regs)
            idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full)
            phase = arr[idx].astype(np.uint64) // np.uint64(count)
            done = (phase & np.uint64(1)).astype(np.int64) != np.asarray(parity_get(regs))
            _write(regs, dst, done, mask, full, np.bool_)

        return test

    def update(sg, mask, full):
        regs = sg.regs
        arr = arr_get(regs)
        idx = _checked_indices(sg, op, arr, idx_get(regs), mask, full)
        for lane in range(len(idx)) if full else np.flatnonzero(mask).tolist():
            arr[idx[lane]] = 0 if opc == "pbar_init" else arr[idx[lane]] + 1
        sg.machine.mem_version += 1

    return update


def _shared_alloc(c, op: ir.Op):
    if op.dst is None or not isinstance(op.dst.type, ir.ArrayType):
        raise RuntimeError(f"{op.loc}: shared_alloc needs an array-typed result")
    n = int(op.attrs["n"])
    dtype = op.dst.type.elem.dtype
    dst = c.slot(op.dst)
    key = id(op)

    def shared_alloc(sg, mask, full):
        # One array per block and declaration, poisoned: real block memory starts as garbage.
        shared = sg.block.shared
        arr = shared.get(key)
        if arr is None:
            arr = shared[key] = sem.poisoned(n, dtype)
        sg.regs[dst] = arr

    return shared_alloc
