"""The opcode table of the IR: operands, result types, categories and semantics.

One entry per opcode. The interpreter, the verifier, the uniformity analysis
and both emitters read this table; a new op is added here first. Semantics
below are normative: the interpreter implements them exactly and the emitters
must match it (tests compare all of them against numpy).

Arithmetic semantics (the README repeats them for users):
- add/sub/mul on integers wrap (two's complement); floats are IEEE round-to-nearest.
- div is float division only (the frontend converts integer operands of `/` to f32,
  or f64 when either operand is 64-bit).
- floordiv/mod on integers follow Python: floor division, remainder has the sign
  of the divisor; on floats, floordiv = floor(a / b), mod = a - floor(a / b) * b.
  Integer division by zero gives 0 (floordiv) and a (mod), on every backend.
- shl/shr: the shift amount is clamped to the bit width (shl by >= bits gives 0;
  shr of signed by >= bits gives 0 or -1, of unsigned gives 0). shr is arithmetic
  for signed, logical for unsigned.
- cast float -> int truncates toward zero, saturates at the target's limits,
  NaN -> 0; int -> float rounds to nearest; to bool is `!= 0`; bool -> number is 0/1.
- min/max on floats: if one operand is NaN the other is returned (IEEE minNum).
- sqrt/exp/log/sin/cos/pow: f32 results within a few ulp (the GPU's fast paths);
  f64 are correctly rounded on the interpreter and within 1e-12 relative elsewhere.
- popcount returns i32.

Memory and atomics: `order` is one of weak (plain indexing), relaxed, acquire,
release, acq_rel, seq_cst; `scope` one of warp, block, device. Atomics return the
old value. Out-of-bounds indices are a program error (the interpreter raises
IndexError naming the line; devices do not check).

Warp collectives (logical IR) act on the W lanes of a logical warp and must be
reached by all of them together (warp-uniform control flow). After
passes.fold_lanes they are replaced by subgroup ops on physical lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import ArrayType, ScalarType, bool_, i32, u64

ORDERS = ("weak", "relaxed", "acquire", "release", "acq_rel", "seq_cst")
SCOPES = ("warp", "block", "device")
ATOMIC_KINDS = ("add", "min", "max", "and", "or", "xor", "exchange")

# categories
PURE = "pure"  # no side effects, result depends only on operands
SPECIAL = "special"  # reads an execution-model register (lane, block id, ...)
COLLECTIVE = "collective"  # logical warp collective: needs a warp-uniform context
SUBGROUP = "subgroup"  # physical subgroup op (after fold_lanes)
MEMORY = "memory"  # loads, stores, atomics, fences
SYNC = "sync"  # block barrier: needs a block-uniform context
DECL = "decl"  # declarations (shared memory)
ASYNC = "async"  # executor support (timer, sleep)


@dataclass(frozen=True)
class OpInfo:
    name: str
    nargs: int  # -1 = variable
    category: str
    doc: str
    # operand classes, one per operand: 'num' any non-bool scalar, 'int', 'float',
    # 'bool', 'scalar' any scalar, 'arr', 'idx' (integer index), 'same' = type of operand 0,
    # 'same1' = type of operand 1
    operands: tuple = ()
    result: str = "same"  # 'same' (type of operand 0), 'bool', 'i32', 'u64', 'elem', 'none', 'dst'


_TABLE: dict[str, OpInfo] = {}


def _def(name, nargs, category, doc, operands=(), result="same"):
    _TABLE[name] = OpInfo(name, nargs, category, doc, tuple(operands), result)


# ---- pure arithmetic
for _n, _d in [("add", "a + b"), ("sub", "a - b"), ("mul", "a * b"),
               ("min", "minimum"), ("max", "maximum")]:
    _def(_n, 2, PURE, _d, ("num", "same"))
_def("div", 2, PURE, "float division", ("float", "same"))
_def("floordiv", 2, PURE, "Python floor division", ("num", "same"))
_def("mod", 2, PURE, "Python remainder (sign of divisor)", ("num", "same"))
_def("pow", 2, PURE, "a ** b for floats", ("float", "same"))
_def("neg", 1, PURE, "-a", ("num",))
_def("abs", 1, PURE, "|a|", ("num",))
for _n in ("sqrt", "exp", "log", "sin", "cos", "floor", "ceil"):
    _def(_n, 1, PURE, f"{_n}(a), floats only", ("float",))
_def("popcount", 1, PURE, "number of set bits", ("int",), "i32")
for _n, _d in [("band", "a & b"), ("bor", "a | b"), ("bxor", "a ^ b")]:
    _def(_n, 2, PURE, _d, ("int", "same"))
_def("bnot", 1, PURE, "~a", ("int",))
_def("shl", 2, PURE, "a << b (amount clamped to width)", ("int", "same"))
_def("shr", 2, PURE, "a >> b (arithmetic if signed)", ("int", "same"))
for _n in ("eq", "ne", "lt", "le", "gt", "ge"):
    _def(_n, 2, PURE, f"comparison {_n}", ("scalar", "same"), "bool")
_def("land", 2, PURE, "logical and (both evaluated)", ("bool", "bool"), "bool")
_def("lor", 2, PURE, "logical or (both evaluated)", ("bool", "bool"), "bool")
_def("lnot", 1, PURE, "logical not", ("bool",), "bool")
_def("select", 3, PURE, "c ? a : b", ("bool", "scalar", "same1"), "a1")
_def("cast", 1, PURE, "convert to dst.type (see module doc)", ("scalar",), "dst")
_def("copy", 1, PURE, "dst = a", ("any",), "same")
_def("bitcast", 1, PURE, "the bits of a reinterpreted as dst.type (same bit width)", ("num",),
     "dst")

# ---- execution model
_def("lane", 0, SPECIAL, "logical lane in its warp, 0..W-1", (), "i32")
_def("warp_id", 0, SPECIAL, "logical warp index in the block", (), "i32")
_def("num_warps", 0, SPECIAL, "logical warps per block", (), "i32")
_def("block_id", 0, SPECIAL, "block index in the grid", (), "i32")
_def("num_blocks", 0, SPECIAL, "blocks in the grid", (), "i32")

# ---- logical warp collectives (before fold_lanes)
for _n in ("warp_sum", "warp_min", "warp_max", "warp_prefix_sum"):
    _def(_n, 1, COLLECTIVE, f"{_n} over the W lanes (prefix sum is inclusive)", ("num",))
_def("shuffle", 2, COLLECTIVE, "value of lane (src mod W)", ("scalar", "int"))
_def("shuffle_xor", 2, COLLECTIVE, "value of lane (lane ^ mask) mod W", ("scalar", "int"))
_def("ballot", 1, COLLECTIVE, "u64 mask, bit i = pred of lane i", ("bool",), "u64")
_def("warp_any", 1, COLLECTIVE, "any lane's pred", ("bool",), "bool")
_def("warp_all", 1, COLLECTIVE, "every lane's pred", ("bool",), "bool")

# ---- physical subgroup ops (after fold_lanes). attrs: cluster (power of two <= H)
_def("sg_lane", 0, SPECIAL, "invocation index in its subgroup, 0..H-1", (), "i32")
_def("sg_id", 0, SPECIAL, "subgroup index in the block", (), "i32")
_def("sg_reduce", 1, SUBGROUP, "attrs op in add|min|max: reduce over the lane's cluster",
     ("num",))
_def("sg_scan", 1, SUBGROUP, "attrs op=add, inclusive: bool: scan within the cluster",
     ("num",))
_def("sg_shuffle", 2, SUBGROUP, "value of subgroup invocation src (0..H-1)",
     ("scalar", "int"))
_def("sg_ballot", 1, SUBGROUP, "u64, bit i = pred of lane i of the lane's cluster",
     ("bool",), "u64")
_def("sg_any", 1, SUBGROUP, "any pred within the cluster", ("bool",), "bool")
_def("sg_all", 1, SUBGROUP, "every pred within the cluster", ("bool",), "bool")

# ---- memory. attrs: order, scope (and op for atomic)
_def("load", 2, MEMORY, "arr[idx]", ("arr", "idx"), "elem")
_def("store", 3, MEMORY, "arr[idx] = v", ("arr", "idx", "elem"), "none")
_def("atomic", 3, MEMORY, "attrs op in ATOMIC_KINDS; returns the old value",
     ("arr", "idx", "elem"), "elem")
_def("atomic_cas", 4, MEMORY, "if arr[idx] == expected: arr[idx] = desired; returns old",
     ("arr", "idx", "elem", "elem"), "elem")
# Phase barriers in block memory (arr: a shared u64 array, one barrier per element;
# attrs count: the arrivals that complete a phase, a power of two). Phases are
# numbered from 0; the count-th arrival of a phase completes it. pbar_arrive has
# release, pbar_test acquire semantics at block scope; pbar_arrive with attrs
# warp=True is reached by every lane of the warp together (one arrival each), which
# lets the counter form add W once. CUDA sm_80+ runs them as mbarriers;
# passes.lower_phase_barriers rewrites them into atomics elsewhere.
_def("pbar_init", 2, MEMORY, "attrs count: arr[idx] starts phase 0 (before a barrier)",
     ("arr", "idx"), "none")
_def("pbar_arrive", 2, MEMORY, "attrs count: one arrival on arr[idx] (release)",
     ("arr", "idx"), "none")
_def("pbar_test", 3, MEMORY, "attrs count: whether the last phase of parity `parity` "
     "(0 or 1) before the current one is complete (acquire)", ("arr", "idx", "int"), "bool")
_def("fence", 0, MEMORY, "attrs scope: an acq_rel fence", (), "none")
_def("barrier", 0, SYNC, "block barrier; also a block-scope acq_rel fence", (), "none")
_def("block_all", 1, SYNC, "a barrier that also returns whether pred holds on every "
     "invocation of the block", ("bool",), "bool")
_def("warp_sync", 0, COLLECTIVE, "the lanes of a warp meet; their memory effects are "
     "ordered (a warp-scope acq_rel fence)", (), "none")
_def("sg_barrier", 0, SUBGROUP, "the invocations of a subgroup meet (after fold_lanes)",
     (), "none")
_def("shared_alloc", 0, DECL, "attrs n: a block-memory array of dst's element type", (),
     "dst")

# ---- executor support
_def("timer", 0, ASYNC, "a nanosecond clock (u64), monotone within a kernel", (), "u64")
_def("sleep", 1, ASYNC, "hint: pause this lane about `ns` nanoseconds (no semantics)",
     ("int",), "none")


def info(opcode: str) -> OpInfo:
    try:
        return _TABLE[opcode]
    except KeyError:
        raise RuntimeError(f"unknown IR opcode {opcode!r}") from None


def opcodes() -> list[str]:
    return sorted(_TABLE)


def result_type(opcode: str, args, attrs) -> ScalarType | ArrayType | None:
    """The result type of an op from its operands (None for ops without a result).

    'dst' results (cast, shared_alloc) need an explicit type: the builder raises.
    """
    rule = info(opcode).result
    if rule == "none":
        return None
    if rule == "same":
        return args[0].type
    if rule == "a1":
        return args[1].type
    if rule == "bool":
        return bool_
    if rule == "i32":
        return i32
    if rule == "u64":
        return u64
    if rule == "elem":
        return args[0].type.elem
    raise RuntimeError(f"op {opcode!r} needs an explicit result type")


def operand_ok(cls: str, t, first, second=None) -> bool:
    """Whether type t fits operand class cls; `first`/`second` are operands 0 and 1's types."""
    if cls == "any":
        return True
    if cls == "same":
        return t == first
    if cls == "same1":  # the type of operand 1 (select's arms)
        return t == second
    if cls == "arr":
        return isinstance(t, ArrayType)
    if cls == "elem":
        return isinstance(first, ArrayType) and t == first.elem
    if not isinstance(t, ScalarType):
        return False
    return {
        "scalar": True,
        "num": not t.is_bool,
        "int": t.is_int,
        "idx": t.is_int,
        "float": t.is_float,
        "bool": t.is_bool,
    }[cls]
