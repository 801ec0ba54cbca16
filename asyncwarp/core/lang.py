"""The names kernels call (`aw.lane()`, `aw.warp_sum`, `aw.shared`, `aw.until`, ...).

These are host-side stubs: the frontend (core.frontend) recognises each one by
identity and emits IR for it, so calling one on the host is a TypeError.
`func` marks a Python function as a device function that kernels may call.
"""

from __future__ import annotations

import functools
import inspect


def _host_call(name: str):
    raise TypeError(f"aw.{name} can only be used inside @aw.kernel / @aw.func code")


class _WarpWidth:
    """`aw.WARP`: the logical warp width W, a compile-time i32 constant inside kernels."""

    def __repr__(self) -> str:
        return "aw.WARP"

    def __index__(self) -> int:
        _host_call("WARP")


WARP = _WarpWidth()


# ---- execution model (SIMT) ------------------------------------------------------------


def lane():
    """The calling lane's index in its logical warp, 0..W-1."""
    _host_call("lane")


def warp_id():
    """The calling warp's index in its block."""
    _host_call("warp_id")


def block_id():
    """The calling block's index in the grid."""
    _host_call("block_id")


def num_warps():
    """Logical warps per block."""
    _host_call("num_warps")


def num_blocks():
    """Blocks in the grid."""
    _host_call("num_blocks")


# ---- warp collectives: every lane of the warp must reach them together ----------------


def warp_sum(x):
    """The sum of x over the W lanes of the warp (the same on every lane)."""
    _host_call("warp_sum")


def warp_min(x):
    """The minimum of x over the warp."""
    _host_call("warp_min")


def warp_max(x):
    """The maximum of x over the warp."""
    _host_call("warp_max")


def warp_prefix_sum(x):
    """Inclusive prefix sum of x over lanes 0..lane."""
    _host_call("warp_prefix_sum")


def shuffle(x, src):
    """The value of x on lane `src mod W`."""
    _host_call("shuffle")


def shuffle_xor(x, mask):
    """The value of x on lane `(lane ^ mask) mod W`."""
    _host_call("shuffle_xor")


def ballot(pred):
    """A u64 mask whose bit i is pred on lane i."""
    _host_call("ballot")


def warp_any(pred):
    """Whether pred holds on any lane of the warp."""
    _host_call("warp_any")


def warp_all(pred):
    """Whether pred holds on every lane of the warp."""
    _host_call("warp_all")


def warp_sync():
    """The lanes of the warp meet; their memory effects are ordered (warp-scope fence)."""
    _host_call("warp_sync")


# ---- math --------------------------------------------------------------------------------


def sqrt(x):
    """Square root of a float."""
    _host_call("sqrt")


def exp(x):
    """e ** x for a float."""
    _host_call("exp")


def log(x):
    """Natural logarithm of a float."""
    _host_call("log")


def sin(x):
    """Sine of a float (radians)."""
    _host_call("sin")


def cos(x):
    """Cosine of a float (radians)."""
    _host_call("cos")


def floor(x):
    """Largest integral float <= x."""
    _host_call("floor")


def ceil(x):
    """Smallest integral float >= x."""
    _host_call("ceil")


def popcount(x):
    """The number of set bits of an integer (an i32)."""
    _host_call("popcount")


# ---- memory ------------------------------------------------------------------------------


def shared(dtype, n):
    """A block-memory array of n elements of dtype (n a compile-time constant)."""
    _host_call("shared")


def barrier():
    """Every lane of the block meets here; a block-scope acq_rel fence."""
    _host_call("barrier")


def load(arr, i, order="relaxed", scope="device"):
    """An atomic (ordered) load of arr[i]."""
    _host_call("load")


def store(arr, i, v, order="relaxed", scope="device"):
    """An atomic (ordered) store of v to arr[i]."""
    _host_call("store")


def fence(scope="device"):
    """An acq_rel fence at the given scope."""
    _host_call("fence")


def atomic_add(arr, i, v, order="relaxed", scope="device"):
    """arr[i] += v atomically; returns the old value."""
    _host_call("atomic_add")


def atomic_min(arr, i, v, order="relaxed", scope="device"):
    """arr[i] = min(arr[i], v) atomically (integers); returns the old value."""
    _host_call("atomic_min")


def atomic_max(arr, i, v, order="relaxed", scope="device"):
    """arr[i] = max(arr[i], v) atomically (integers); returns the old value."""
    _host_call("atomic_max")


def atomic_and(arr, i, v, order="relaxed", scope="device"):
    """arr[i] &= v atomically; returns the old value."""
    _host_call("atomic_and")


def atomic_or(arr, i, v, order="relaxed", scope="device"):
    """arr[i] |= v atomically; returns the old value."""
    _host_call("atomic_or")


def atomic_xor(arr, i, v, order="relaxed", scope="device"):
    """arr[i] ^= v atomically; returns the old value."""
    _host_call("atomic_xor")


def atomic_exchange(arr, i, v, order="relaxed", scope="device"):
    """arr[i] = v atomically; returns the old value."""
    _host_call("atomic_exchange")


def atomic_cas(arr, i, expected, desired, order="relaxed", scope="device"):
    """If arr[i] == expected, set it to desired; returns the old value."""
    _host_call("atomic_cas")


# ---- async -------------------------------------------------------------------------------


def until(cond):
    """`await aw.until(cond)`: suspend until cond (re-evaluated at each poll) holds."""
    _host_call("until")


def sleep(ns):
    """`await aw.sleep(ns)`: suspend for at least ns nanoseconds of the device clock."""
    _host_call("sleep")


def yield_now():
    """`await aw.yield_now()`: suspend once, letting other tasks run."""
    _host_call("yield_now")


def join(*futures, warps=None):
    """`await aw.join(f1, f2, ...)`: run the futures concurrently; a tuple of their results.

    `warps=(n1, n2, ...)` gives each future its own number of warps (warp specialisation).
    """
    _host_call("join")


def select(*futures):
    """`await aw.select(f1, f2, ...)`: the first future to finish; `(index, value)`."""
    _host_call("select")


# ---- device functions --------------------------------------------------------------------


class DeviceFunction:
    """A Python function (sync or async) that kernels call; the frontend inlines it.

    Keeps the function, its source text, file, first line and globals, so that
    compile errors inside it point at the right place.
    """

    def __init__(self, fn):
        if isinstance(fn, DeviceFunction):
            fn = fn.fn
        if not inspect.isfunction(fn):
            raise TypeError(f"@aw.func decorates a function (def or async def), not {fn!r}")
        try:
            lines, first_line = inspect.getsourcelines(fn)
        except (OSError, TypeError) as err:
            raise TypeError(
                f"cannot read the source of {fn.__qualname__} ({err}); "
                "define @aw.func functions in a .py file"
            ) from None
        self.fn = fn
        self.name: str = fn.__name__
        self.is_async: bool = inspect.iscoroutinefunction(fn)
        self.source: str = "".join(lines)
        self.file: str = fn.__code__.co_filename
        self.first_line: int = first_line
        self.globals: dict = fn.__globals__
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        raise TypeError(f"aw.func {self.name} can only be called inside @aw.kernel / @aw.func code")

    def __repr__(self) -> str:
        kind = "async " if self.is_async else ""
        return f"<aw.func {kind}{self.name} at {self.file}:{self.first_line}>"


def func(fn) -> DeviceFunction:
    """Decorator: make `fn` callable from kernels (it is inlined at each call)."""
    return DeviceFunction(fn)


__all__ = [
    "WARP",
    "lane",
    "warp_id",
    "block_id",
    "num_warps",
    "num_blocks",
    "warp_sum",
    "warp_min",
    "warp_max",
    "warp_prefix_sum",
    "shuffle",
    "shuffle_xor",
    "ballot",
    "warp_any",
    "warp_all",
    "warp_sync",
    "sqrt",
    "exp",
    "log",
    "sin",
    "cos",
    "floor",
    "ceil",
    "popcount",
    "shared",
    "barrier",
    "load",
    "store",
    "fence",
    "atomic_add",
    "atomic_min",
    "atomic_max",
    "atomic_and",
    "atomic_or",
    "atomic_xor",
    "atomic_exchange",
    "atomic_cas",
    "until",
    "sleep",
    "yield_now",
    "join",
    "select",
    "DeviceFunction",
    "func",
]
