"""asyncwarp: async/await for GPU kernels, from Python, on every vendor.

    import asyncwarp as aw

    @aw.kernel
    def saxpy(y: aw.Array[aw.f32], x: aw.Array[aw.f32], a: aw.f32, n: aw.i32):
        i = aw.block_id() * aw.num_warps() * aw.WARP + aw.warp_id() * aw.WARP + aw.lane()
        if i < n:
            y[i] = a * x[i] + y[i]

    saxpy[blocks, warps](y, x, 2.0, n)

See README.md for the language, the async primitives and the backends.
"""

__version__ = "0.1.0"

from .core.config import init  # noqa: E402
from .core.errors import (  # noqa: E402
    AsyncWarpError,
    BackendUnavailable,
    CompileError,
    DeadlockError,
    WatchdogTimeout,
)
from .core.explore import ExploreReport, explore  # noqa: E402
from .core.kernel import CompiledKernel, KernelFunction, kernel  # noqa: E402
from .core.lang import *  # noqa: E402,F401,F403  (the names used inside kernels)
from .core.lang import __all__ as _lang_names  # noqa: E402
from .core.primitives import Barrier, Channel, Event, Semaphore  # noqa: E402
from .core.types import Array, bool_, f32, f64, i32, i64, u32, u64  # noqa: E402

__all__ = [
    "__version__", "init", "kernel", "KernelFunction", "CompiledKernel", "explore",
    "ExploreReport", "Array", "bool_", "i32", "u32", "i64", "u64", "f32", "f64",
    "Channel", "Barrier", "Semaphore", "Event", "AsyncWarpError", "BackendUnavailable",
    "CompileError", "DeadlockError", "WatchdogTimeout", *_lang_names,
]
