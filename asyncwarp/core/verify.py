"""The IR verifier: structural and type checks, run after the frontend and after every pass.

`verify(kernel, stage)` checks each op against its core.ops entry (arity,
operand classes, result type, attributes), the placement of Break/Continue,
where arrays come from, and which ops may appear at the stage ("logical":
before passes.fold_lanes, no sg_* ops; "lowered": what emitters receive, no
logical specials, collectives or async nodes). A failure is a compiler bug, so
it raises RuntimeError naming the op, its operand types and its source line.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import ir
from .ir import Const, Var
from .ops import ATOMIC_KINDS, COLLECTIVE, ORDERS, SCOPES, SUBGROUP, info, operand_ok
from .types import ArrayType, ScalarType, bool_, i32, u64

STAGES = ("logical", "lowered")

_LOGICAL_SPECIALS = ("lane", "warp_id", "num_warps")
_LOWERED_SPECIALS = ("sg_lane", "sg_id")
_MEMORY_ORDERS = {
    "load": ("weak", "relaxed", "acquire", "seq_cst"),
    "store": ("weak", "relaxed", "release", "seq_cst"),
    "atomic": ("relaxed", "acquire", "release", "acq_rel", "seq_cst"),
    "atomic_cas": ("relaxed", "acquire", "release", "acq_rel", "seq_cst"),
}
_FIXED_RESULTS = {"bool": bool_, "i32": i32, "u64": u64}


def _describe(op: ir.Op) -> str:
    """`file:line:col: %dst: type = opcode(%a: type, ...) {attrs}` for messages."""
    args = ", ".join(f"{a!r}: {getattr(a, 'type', '?')}" for a in op.args)
    lhs = f"{op.dst!r}: {op.dst.type} = " if op.dst is not None else ""
    attrs = " {" + ", ".join(f"{k}={v}" for k, v in sorted(op.attrs.items())) + "}"
    return f"{op.loc}: {lhs}{op.opcode}({args}){attrs if op.attrs else ''}"


class _Verifier:
    def __init__(self, kernel: ir.Kernel, stage: str):
        self.kernel = kernel
        self.stage = stage
        self.arrays: set[Var] = set()  # array Vars with a definition (params, shared_alloc)
        self.defined: set[Var] = set()  # every Var with a definition

    def fail(self, where, problem: str):
        """where: an ir.Op (described only now: verification is on every pass) or a string."""
        if isinstance(where, ir.Op):
            where = _describe(where)
        raise RuntimeError(
            f"IR verifier ({self.stage}, kernel {self.kernel.name}): {where}: {problem}"
        )

    def run(self) -> None:
        names = set()
        for p in self.kernel.params:
            if not isinstance(p, Var) or not isinstance(p.type, (ScalarType, ArrayType)):
                self.fail("params", f"parameter {p!r} is not a typed Var")
            if p in names:
                self.fail("params", f"parameter {p!r} appears twice")
            names.add(p)
            if isinstance(p.type, ArrayType):
                if p.type.space != "global":
                    self.fail("params", f"array parameter {p!r} must be global, not {p.type}")
                self.arrays.add(p)
            self.defined.add(p)
        # definitions first, so that uses may precede them in program order (loops)
        for s in ir.walk(self.kernel.body):
            self.collect(s)
        self.block(self.kernel.body, in_loop=False)

    def collect(self, s) -> None:
        if isinstance(s, ir.Op) and s.dst is not None:
            if isinstance(s.dst.type, ArrayType):
                if s.opcode != "shared_alloc":
                    self.fail(
                        s,
                        "array variables are defined only by parameters and shared_alloc",
                    )
                if s.dst in self.arrays:
                    self.fail(s, f"array {s.dst!r} is defined twice")
                self.arrays.add(s.dst)
            self.defined.add(s.dst)
        elif isinstance(s, ir.Select):
            self.defined.add(s.index)

    # ---- control flow

    def block(self, block: list, in_loop: bool) -> None:
        if not isinstance(block, list):
            self.fail("block", f"a block must be a list of statements, not {block!r}")
        for s in block:
            self.stmt(s, in_loop)

    def stmt(self, s, in_loop: bool) -> None:
        if isinstance(s, ir.Op):
            self.op(s)
        elif isinstance(s, ir.If):
            self.condition(s.cond, f"{s.loc}: if", allow_none=False)
            self.block(s.then, in_loop)
            self.block(s.else_, in_loop)
        elif isinstance(s, ir.Loop):
            self.block(s.header, in_loop=True)
            self.condition(s.cond, f"{s.loc}: loop", allow_none=True)
            self.block(s.body, in_loop=True)
            # the latch runs after `continue`: a jump from it has no target (SPIR-V's
            # continue construct may not branch to its own loop's merge or header)
            self.block(s.latch, in_loop=False)
        elif isinstance(s, (ir.Break, ir.Continue)):
            if not in_loop:
                kind = type(s).__name__.lower()
                self.fail(
                    f"{s.loc}: {kind}",
                    f"{kind} outside the header or body of a loop "
                    "(or across a wait, join or select)",
                )
        elif isinstance(s, (ir.Suspend, ir.Join, ir.Select)):
            self.async_node(s)
        else:
            self.fail("block", f"unknown IR statement {s!r}")

    def async_node(self, s) -> None:
        kind = type(s).__name__
        if self.stage == "lowered":
            self.fail(f"{s.loc}: {kind}", "async constructs must be gone after lower_async")
        if isinstance(s, ir.Suspend):
            if not isinstance(s.ready, Var) or s.ready.type != bool_:
                self.fail(
                    f"{s.loc}: suspend {s.what!r}", f"ready must be a bool Var, not {s.ready!r}"
                )
            if s.ready not in self.defined:
                self.fail(f"{s.loc}: suspend {s.what!r}", "its poll never sets ready")
            self.block(s.poll, in_loop=False)
            return
        if not s.branches:
            self.fail(f"{s.loc}: {kind}", "has no branches")
        if isinstance(s, ir.Select) and (
            not isinstance(s.index, Var)
            or not isinstance(s.index.type, ScalarType)
            or not s.index.type.is_int
        ):
            self.fail(f"{s.loc}: select", f"index must be an integer Var, not {s.index!r}")
        for branch in s.branches:
            self.block(branch, in_loop=False)

    def condition(self, cond, where, allow_none: bool) -> None:
        if cond is None and allow_none:
            return
        self.value(cond, where)
        if cond.type != bool_:
            self.fail(where, f"the condition {cond!r} is {cond.type}, not bool")

    def value(self, v, where) -> None:
        if isinstance(v, Const):
            self.constant(v, where)
        elif isinstance(v, Var):
            if not isinstance(v.type, (ScalarType, ArrayType)):
                self.fail(where, f"{v!r} has no valid type ({v.type!r})")
            if v not in self.defined:
                self.fail(where, f"{v!r} is used but never assigned")
        else:
            self.fail(where, f"operand {v!r} is neither a Var nor a Const")

    def constant(self, c: Const, where) -> None:
        t, v = c.type, c.value
        kind = type(v)
        if (
            kind is bool
            and t is bool_
            or kind is float
            and isinstance(t, ScalarType)
            and (t.kind == "float")
        ):
            return  # the common cases, checked without the numeric tower
        number = isinstance(v, (numbers.Real, np.number)) and not isinstance(v, (bool, np.bool_))
        integral = isinstance(v, (numbers.Integral, np.integer)) and number
        ok = isinstance(t, ScalarType) and (
            (t.is_bool and (isinstance(v, (bool, np.bool_)) or (integral and v in (0, 1))))
            or (t.is_float and number)
            or (t.is_int and integral and _fits(int(v), t))
        )
        if not ok:
            self.fail(where, f"constant {v!r} is not a valid {t}")

    # ---- ops

    def op(self, op: ir.Op) -> None:
        where = op
        try:
            spec = info(op.opcode)
        except RuntimeError as err:
            self.fail(where, str(err))
        self.stage_rules(op, spec, where)
        if spec.nargs >= 0 and len(op.args) != spec.nargs:
            self.fail(where, f"{op.opcode} takes {spec.nargs} operands, got {len(op.args)}")
        for a in op.args:
            self.value(a, where)
        first = op.args[0].type if op.args else None
        second = op.args[1].type if len(op.args) > 1 else None
        for i, (cls, a) in enumerate(zip(spec.operands, op.args, strict=False)):
            if not operand_ok(cls, a.type, first, second):
                self.fail(where, f"operand {i} ({a!r}: {a.type}) is not of class {cls!r}")
        self.result(op, spec, where)
        self.attributes(op, where)

    def stage_rules(self, op: ir.Op, spec, where) -> None:
        if self.stage == "logical":
            if spec.category == SUBGROUP or op.opcode in _LOWERED_SPECIALS:
                self.fail(
                    where,
                    f"{op.opcode} is a physical subgroup op: it appears only after fold_lanes",
                )
        elif op.opcode in _LOGICAL_SPECIALS or spec.category == COLLECTIVE:
            self.fail(where, f"{op.opcode} is a logical-warp op: fold_lanes must replace it")

    def result(self, op: ir.Op, spec, where) -> None:
        rule = spec.result
        if rule == "none":
            if op.dst is not None:
                self.fail(where, f"{op.opcode} has no result but has a destination")
            return
        if op.dst is None:
            self.fail(where, f"{op.opcode} needs a destination variable")
        t = op.dst.type
        expected = None
        if rule == "same":
            expected = op.args[0].type
        elif rule == "a1":
            expected = op.args[1].type
        elif rule in _FIXED_RESULTS:
            expected = _FIXED_RESULTS[rule]
        elif rule == "elem":
            expected = op.args[0].type.elem
        elif op.opcode == "shared_alloc":
            n = op.attrs.get("n")
            if not isinstance(t, ArrayType) or t.space != "shared":
                self.fail(where, f"shared_alloc must define a shared array, not {t}")
            if type(n) is not int or n <= 0:
                self.fail(where, f"shared_alloc needs attrs n > 0, got {n!r}")
            return
        elif not isinstance(t, ScalarType):
            self.fail(where, f"{op.opcode} must define a scalar, not {t}")
            return
        elif op.opcode == "bitcast" and (t.is_bool or t.bits != op.args[0].type.bits):
            self.fail(where, f"bitcast needs a non-bool result of the operand's width, not {t}")
        if expected is not None and t != expected:
            self.fail(where, f"the result should be {expected}, but the destination is {t}")

    def attributes(self, op: ir.Op, where) -> None:
        attrs = op.attrs
        code = op.opcode
        if code in _MEMORY_ORDERS:
            order = attrs.get("order")
            if order not in ORDERS:
                self.fail(where, f"{code} needs attrs order in {ORDERS}, got {order!r}")
            if order not in _MEMORY_ORDERS[code]:
                self.fail(where, f"{code} cannot have order {order!r}")
        if code in _MEMORY_ORDERS or code == "fence":
            if attrs.get("scope") not in SCOPES:
                self.fail(
                    where, f"{code} needs attrs scope in {SCOPES}, got {attrs.get('scope')!r}"
                )
        if code == "atomic":
            kind = attrs.get("op")
            if kind not in ATOMIC_KINDS:
                self.fail(where, f"atomic needs attrs op in {ATOMIC_KINDS}, got {kind!r}")
            if kind in ("and", "or", "xor") and not op.args[0].type.elem.is_int:
                self.fail(where, f"atomic {kind} needs an integer array")
        if code in ("sg_reduce", "sg_scan", "sg_ballot", "sg_any", "sg_all"):
            self.cluster(op, where)
        if code == "sg_reduce" and attrs.get("op") not in ("add", "min", "max"):
            self.fail(where, f"sg_reduce needs attrs op in add|min|max, got {attrs.get('op')!r}")
        if code == "sg_scan" and attrs.get("op", "add") != "add":
            self.fail(where, f"sg_scan supports op=add only, got {attrs.get('op')!r}")

    def cluster(self, op: ir.Op, where) -> None:
        cluster = op.attrs.get("cluster")
        if type(cluster) is not int or cluster <= 0 or cluster & (cluster - 1):
            self.fail(where, f"{op.opcode} needs attrs cluster, a power of two, got {cluster!r}")
        subgroup = self.kernel.attrs.get("subgroup")
        if subgroup is not None and cluster > subgroup:
            self.fail(where, f"cluster {cluster} is larger than the subgroup ({subgroup})")


def _fits(v: int, t: ScalarType) -> bool:
    if t.is_signed:
        return -(2 ** (t.bits - 1)) <= v < 2 ** (t.bits - 1)
    return 0 <= v < 2**t.bits


def verify(kernel: ir.Kernel, stage: str = "logical") -> None:
    """Check `kernel` at `stage` ("logical" or "lowered"); RuntimeError on the first problem."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, not {stage!r}")
    _Verifier(kernel, stage).run()
