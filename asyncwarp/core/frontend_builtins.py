"""The synchronous builtins of the kernel language, registered in the frontend's builtin table.

Execution-model reads, warp collectives, math, casts (`aw.f32(x)`, `int(x)`),
the Python builtins kernels may call (abs, min, max), block memory, ordered
loads and stores, fences and atomics. Each handler checks its arguments and
emits the logical IR ops of core.ops.
"""

from __future__ import annotations

import builtins
import inspect

from . import lang
from .frontend_hooks import Literal, register_builtin
from .frontend_types import ARRAY_ELEMS
from .ops import ORDERS, SCOPES
from .types import SCALAR_TYPES, ScalarType, bool_, f32, from_dtype, i32


def bind_stub(fe, stub, args: list, kwargs: dict, loc) -> dict:
    """Bind a call's arguments to the parameters of an `aw.*` stub (defaults applied)."""
    sig = inspect.signature(stub)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as err:
        fe.error(f"aw.{stub.__name__}(): {err}", loc)
    bound.apply_defaults()
    return bound.arguments


def _no_arguments(fe, name: str, args: list, kwargs: dict, loc) -> None:
    if args or kwargs:
        fe.error(f"{name}() takes no arguments", loc)


# ---- execution model and warp collectives ---------------------------------------------


def _special(opcode: str):
    def handler(fe, args, kwargs, loc):
        _no_arguments(fe, f"aw.{opcode}", args, kwargs, loc)
        return fe.b.op(opcode)

    return handler


for _stub in (lang.lane, lang.warp_id, lang.block_id, lang.num_warps, lang.num_blocks):
    register_builtin(_stub)(_special(_stub.__name__))


@register_builtin(lang.warp_sync)
def _warp_sync(fe, args, kwargs, loc):
    _no_arguments(fe, "aw.warp_sync", args, kwargs, loc)
    fe.b.op("warp_sync")


def numeric(fe, x, loc, what: str):
    """A number operand: literals typed by default, bools counted as i32 (0/1)."""
    x = fe.value(x, None, loc, what=what)
    return fe.cast(x, i32) if x.type.is_bool else x


def predicate(fe, x, loc, what: str):
    """A bool operand; integers are tested with `!= 0`."""
    x = fe.value(x, None, loc, what=what)
    if x.type.is_float:
        fe.error(f"{what} must be a bool, not {x.type}", loc, hint="compare it: x != 0.0")
    return fe.truth(x, loc)


def integer(fe, x, loc, what: str):
    x = fe.value(x, None, loc, what=what)
    if not x.type.is_int:
        fe.error(f"{what} must be an integer, not {x.type}", loc, hint="cast it: aw.i32(...)")
    return x


def _reduction(opcode: str):
    def handler(fe, args, kwargs, loc):
        a = bind_stub(fe, getattr(lang, opcode), args, kwargs, loc)
        return fe.b.op(opcode, numeric(fe, a["x"], loc, f"the operand of aw.{opcode}"))

    return handler


for _name in ("warp_sum", "warp_min", "warp_max", "warp_prefix_sum"):
    register_builtin(getattr(lang, _name))(_reduction(_name))


def _shuffle(opcode: str, lane_arg: str):
    def handler(fe, args, kwargs, loc):
        a = bind_stub(fe, getattr(lang, opcode), args, kwargs, loc)
        x = fe.value(a["x"], None, loc, what=f"the value of aw.{opcode}")
        source = integer(fe, a[lane_arg], loc, f"the {lane_arg} of aw.{opcode}")
        return fe.b.op(opcode, x, source)

    return handler


register_builtin(lang.shuffle)(_shuffle("shuffle", "src"))
register_builtin(lang.shuffle_xor)(_shuffle("shuffle_xor", "mask"))


def _vote(opcode: str):
    def handler(fe, args, kwargs, loc):
        a = bind_stub(fe, getattr(lang, opcode), args, kwargs, loc)
        return fe.b.op(opcode, predicate(fe, a["pred"], loc, f"the predicate of aw.{opcode}"))

    return handler


for _name in ("ballot", "warp_any", "warp_all"):
    register_builtin(getattr(lang, _name))(_vote(_name))


# ---- math and casts ----------------------------------------------------------------------


def _float_math(opcode: str):
    def handler(fe, args, kwargs, loc):
        a = bind_stub(fe, getattr(lang, opcode), args, kwargs, loc)
        x = fe.scalar(a["x"], loc, f"the argument of aw.{opcode}")
        if isinstance(x, Literal) and not isinstance(x.value, bool):
            x = fe.cast(x, f32)
        elif isinstance(x, Literal) or not x.type.is_float:
            shown = x.value if isinstance(x, Literal) else x.type
            fe.error(
                f"aw.{opcode} needs a float argument, not {shown}",
                loc,
                hint=f"cast it: aw.{opcode}(aw.f32(x))",
            )
        return fe.b.op(opcode, x)

    return handler


for _name in ("sqrt", "exp", "log", "sin", "cos", "floor", "ceil"):
    register_builtin(getattr(lang, _name))(_float_math(_name))


@register_builtin(lang.popcount)
def _popcount(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.popcount, args, kwargs, loc)
    return fe.b.op("popcount", integer(fe, a["x"], loc, "the argument of aw.popcount"))


def _cast_to(t: ScalarType, label: str):
    def handler(fe, args, kwargs, loc):
        if kwargs or len(args) != 1:
            fe.error(f"{label}() takes exactly one value", loc)
        if t.is_bool:
            return fe.truth(args[0], loc)
        return fe.cast(args[0], t, loc)

    return handler


for _t in SCALAR_TYPES:
    register_builtin(_t)(_cast_to(_t, f"aw.{_t.name}"))
register_builtin(builtins.int, name="int")(_cast_to(i32, "int"))
register_builtin(builtins.float, name="float")(_cast_to(f32, "float"))
register_builtin(builtins.bool, name="bool")(_cast_to(bool_, "bool"))


@register_builtin(builtins.abs, name="abs")
def _abs(fe, args, kwargs, loc):
    if kwargs or len(args) != 1:
        fe.error("abs() takes exactly one value", loc)
    x = fe.scalar(args[0], loc, "the argument of abs()")
    if isinstance(x, Literal):
        return Literal(abs(x.value))
    return fe.emit_unary("abs", numeric(fe, x, loc, "the argument of abs()"))


def _min_max(opcode: str):
    def handler(fe, args, kwargs, loc):
        if kwargs or len(args) < 2:
            fe.error(f"{opcode}() takes two or more values in kernels", loc)
        result = args[0]
        for x in args[1:]:
            result = fe.binary(opcode, result, x, loc)
        return result

    return handler


register_builtin(builtins.min, name="min")(_min_max("min"))
register_builtin(builtins.max, name="max")(_min_max("max"))


def _rejected(message: str, hint: str = ""):
    def handler(fe, args, kwargs, loc):
        fe.error(message, loc, hint=hint)

    return handler


register_builtin(builtins.range, name="range")(
    _rejected(
        "range() is only supported as the iterable of a for loop", "write: for i in range(n): ..."
    )
)
register_builtin(builtins.len, name="len")(
    _rejected(
        "len() is not supported in kernels: arrays do not carry their length",
        "pass the length as a scalar argument",
    )
)
register_builtin(builtins.print, name="print")(
    _rejected("print() is not supported in kernels", "write values to an output array")
)


# ---- memory --------------------------------------------------------------------------------


def element_type(fe, dtype, loc, what: str = "the element type") -> ScalarType:
    """An array element type from aw.f32 / np.float32 / a numpy dtype."""
    if not isinstance(dtype, ScalarType):
        try:
            dtype = from_dtype(dtype)
        except (TypeError, ValueError):
            fe.error(f"{what} must be a scalar type such as aw.f32, not {dtype!r}", loc)
    if dtype not in ARRAY_ELEMS:
        fe.error(
            f"arrays of {dtype} are not supported",
            loc,
            hint="store flags as aw.u32 or aw.i32 (0/1)",
        )
    return dtype


@register_builtin(lang.shared)
def _shared(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.shared, args, kwargs, loc)
    elem = element_type(fe, a["dtype"], loc, "the dtype of aw.shared")
    n = fe.const_int(a["n"], loc, "the size of aw.shared")
    if n <= 0:
        fe.error(f"the size of aw.shared must be positive, got {n}", loc)
    array = fe.shared_alloc(elem, n, "smem")
    fe._unnamed_shared.add(array)  # named after the variable it is assigned to
    return array


@register_builtin(lang.barrier)
def _barrier(fe, args, kwargs, loc):
    _no_arguments(fe, "aw.barrier", args, kwargs, loc)
    fe.b.op("barrier")


_LOAD_ORDERS = ("weak", "relaxed", "acquire", "seq_cst")
_STORE_ORDERS = ("weak", "relaxed", "release", "seq_cst")
_RMW_ORDERS = ("relaxed", "acquire", "release", "acq_rel", "seq_cst")


def memory_order(fe, order, allowed: tuple, what: str, loc) -> str:
    if not isinstance(order, str):
        fe.error(f"order= of {what} must be a string constant such as 'acquire'", loc)
    if order not in ORDERS:
        fe.error(f"unknown memory order {order!r}", loc, hint=f"one of {', '.join(ORDERS)}")
    if order not in allowed:
        fe.error(
            f"{what} cannot have order {order!r}",
            loc,
            hint=f"{what} takes one of {', '.join(allowed)}",
        )
    return order


def memory_scope(fe, scope, what: str, loc) -> str:
    if not isinstance(scope, str) or scope not in SCOPES:
        fe.error(f"scope= of {what} must be one of {', '.join(SCOPES)}, not {scope!r}", loc)
    return scope


def _element_value(fe, array, v, loc, what: str):
    return fe.value(v, array.type.elem, loc, what=what)


@register_builtin(lang.load)
def _load(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.load, args, kwargs, loc)
    array = fe.array(a["arr"], loc, "the array of aw.load")
    index = fe.index_value(a["i"], loc)
    order = memory_order(fe, a["order"], _LOAD_ORDERS, "aw.load", loc)
    scope = memory_scope(fe, a["scope"], "aw.load", loc)
    return fe.b.op("load", array, index, order=order, scope=scope)


@register_builtin(lang.store)
def _store(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.store, args, kwargs, loc)
    array = fe.array(a["arr"], loc, "the array of aw.store")
    index = fe.index_value(a["i"], loc)
    value = _element_value(fe, array, a["v"], loc, "the value of aw.store")
    order = memory_order(fe, a["order"], _STORE_ORDERS, "aw.store", loc)
    scope = memory_scope(fe, a["scope"], "aw.store", loc)
    fe.b.op("store", array, index, value, order=order, scope=scope)


@register_builtin(lang.fence)
def _fence(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.fence, args, kwargs, loc)
    fe.b.op("fence", scope=memory_scope(fe, a["scope"], "aw.fence", loc))


# atomics whose operation needs integer elements (float min/max are not portable atomics)
_INTEGER_ATOMICS = ("min", "max", "and", "or", "xor")


def _atomic(kind: str):
    stub = getattr(lang, f"atomic_{kind}")
    name = f"aw.{stub.__name__}"

    def handler(fe, args, kwargs, loc):
        a = bind_stub(fe, stub, args, kwargs, loc)
        array = fe.array(a["arr"], loc, f"the array of {name}")
        if kind in _INTEGER_ATOMICS and not array.type.elem.is_int:
            fe.error(
                f"{name} needs an integer array, not {array.type}",
                loc,
                hint="use an aw.atomic_cas loop for floats",
            )
        index = fe.index_value(a["i"], loc)
        value = _element_value(fe, array, a["v"], loc, f"the value of {name}")
        order = memory_order(fe, a["order"], _RMW_ORDERS, name, loc)
        scope = memory_scope(fe, a["scope"], name, loc)
        return fe.b.op("atomic", array, index, value, op=kind, order=order, scope=scope)

    register_builtin(stub)(handler)


for _kind in ("add", "min", "max", "and", "or", "xor", "exchange"):
    _atomic(_kind)


@register_builtin(lang.atomic_cas)
def _atomic_cas(fe, args, kwargs, loc):
    a = bind_stub(fe, lang.atomic_cas, args, kwargs, loc)
    array = fe.array(a["arr"], loc, "the array of aw.atomic_cas")
    index = fe.index_value(a["i"], loc)
    expected = _element_value(fe, array, a["expected"], loc, "expected= of aw.atomic_cas")
    desired = _element_value(fe, array, a["desired"], loc, "desired= of aw.atomic_cas")
    order = memory_order(fe, a["order"], _RMW_ORDERS, "aw.atomic_cas", loc)
    scope = memory_scope(fe, a["scope"], "aw.atomic_cas", loc)
    return fe.b.op("atomic_cas", array, index, expected, desired, order=order, scope=scope)
