"""`@aw.kernel`: argument checks, specialisation, the kernel cache, and launch.

A `KernelFunction` wraps the user's Python function. Indexing it with a launch
shape (`kern[grid]`, `kern[grid, warps]`) and calling it checks every argument
before anything reaches a device, compiles (frontend -> passes -> emitter) on a
cache miss, and runs on the chosen backend. Compiled kernels are cached in
memory always and on disk for the device backends, keyed by the compiler
version, the source of the kernel and its callees, argument types and options.
After a first launch succeeds, repeated launches of a fully annotated kernel go
through a plan the backend binds for that grid (`Backend.bind`, or `_Bound.plan`).
"""

from __future__ import annotations

import hashlib
import inspect
import pickle
import types as pytypes
from dataclasses import dataclass

import numpy as np

from .. import __version__
from . import config as _config
from . import ir
from .backend import EXECUTORS, PROGRESS_MODES, BuildOptions
from .errors import WatchdogTimeout
from .types import ArrayType, ScalarType, bool_, f32, from_dtype, i32, i64

_OPTION_NAMES = ("backend", "warp_width", "warps", "progress", "executor", "arch",
                 "watchdog_ns", "device", "subgroup")


@dataclass
class CompiledKernel:
    """What `specialize` returns: the IR before and after the passes, and the artefact."""

    name: str
    options: BuildOptions
    logical: ir.Kernel
    lowered: ir.Kernel
    artefact: object  # PTX text, SPIR-V bytes, or the lowered IR for sim

    @property
    def ir(self) -> str:
        return ir.print_kernel(self.logical)

    @property
    def lowered_ir(self) -> str:
        return ir.print_kernel(self.lowered)

    @property
    def asm(self) -> str:
        """Readable artefact: PTX text, SPIR-V disassembly, or the lowered IR."""
        if isinstance(self.artefact, str):
            return self.artefact
        if isinstance(self.artefact, (bytes, bytearray)):
            from ..backends.vulkan.spirv_val import disassemble

            return disassemble(bytes(self.artefact))
        return ir.print_kernel(self.lowered)


# ------------------------------------------------------------------ arguments


def _array_dtype(value):
    """The numpy dtype of an array-like argument, or None if it is not an array."""
    if isinstance(value, np.generic):  # numpy scalars carry a dtype and shape () too
        return None
    if isinstance(value, np.ndarray):
        return value.dtype
    cai = getattr(value, "__cuda_array_interface__", None)
    if cai is not None:
        return np.dtype(cai["typestr"])
    dt = getattr(value, "dtype", None)
    if dt is not None and hasattr(value, "shape"):
        try:
            return np.dtype(str(dt).replace("torch.", ""))
        except TypeError:
            return None
    return None


def _infer_type(value, pname: str):
    """The kernel type of an argument with no annotation on its parameter."""
    if isinstance(value, (ArrayType, ScalarType)):
        return value
    dt = _array_dtype(value)
    if dt is not None:
        return ArrayType(from_dtype(dt))
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        if isinstance(value, np.integer):
            return from_dtype(value.dtype)
        return i32 if -(2**31) <= value < 2**31 else i64
    if isinstance(value, np.floating):
        return from_dtype(value.dtype)
    if isinstance(value, float):
        return f32
    raise TypeError(f"argument {pname!r}: cannot pass {type(value).__name__} to a kernel "
                    "(pass a numpy array, a device array, or a bool/int/float)")


def check_argument(value, t, pname: str, kname: str):
    """Raise TypeError/ValueError when `value` cannot be passed as a `t` parameter."""
    where = f"{kname}() argument {pname!r}"
    if isinstance(t, ArrayType):
        dt = _array_dtype(value)
        if dt is None:
            raise TypeError(f"{where} must be an array of {t.elem} "
                            f"(numpy.{t.elem.dtype}), got {type(value).__name__}")
        if dt != t.elem.dtype:
            raise TypeError(f"{where} must have dtype {t.elem.dtype} ({t.elem}), got {dt}; "
                            f"convert with .astype(numpy.{t.elem.dtype})")
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) != 1:
            raise ValueError(f"{where} must be 1-D, got shape {tuple(shape)}; pass .ravel()")
        if isinstance(value, np.ndarray) and not value.flags.c_contiguous:
            raise ValueError(f"{where} must be contiguous; pass numpy.ascontiguousarray(...)")
        if isinstance(value, np.ndarray) and not value.flags.writeable:
            raise ValueError(f"{where} is read-only; kernels may write their arrays")
        return value
    if _array_dtype(value) is not None:
        raise TypeError(f"{where} is a scalar {t}, got an array")
    if t.is_bool:
        if not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{where} must be a bool, got {type(value).__name__}")
        return np.bool_(value)
    if t.is_int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"{where} must be an integer ({t}), got {type(value).__name__}")
        lo, hi = t.limits
        if not lo <= int(value) <= hi:
            raise ValueError(f"{where}={value} does not fit in {t} [{lo}, {hi}]")
        return t.dtype.type(value)
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        raise TypeError(f"{where} must be a number ({t}), got {type(value).__name__}")
    return t.dtype.type(value)


# ------------------------------------------------------------------ cache keys


def _device_functions():
    from .lang import DeviceFunction

    return DeviceFunction


def _is_constant(value) -> bool:
    """Values the frontend reads as compile-time constants (they belong in the cache key)."""
    if isinstance(value, tuple):
        return all(_is_constant(v) for v in value)
    return isinstance(value, (bool, int, float, np.generic))


def source_fingerprint(fn) -> str:
    """Hash of the kernel's source, its callees' sources and the constants they read
    (module globals and captured variables)."""
    DeviceFunction = _device_functions()
    h = hashlib.sha256()
    seen: set = set()

    def visit(f):
        if id(f) in seen:
            return
        seen.add(id(f))
        try:
            h.update(inspect.getsource(f).encode())
        except (OSError, TypeError):
            h.update(f.__code__.co_code)
        codes = [f.__code__]
        while codes:
            code = codes.pop()
            codes += [c for c in code.co_consts if isinstance(c, pytypes.CodeType)]
            for name in code.co_names:
                g = f.__globals__.get(name)
                if isinstance(g, DeviceFunction):
                    visit(g.fn)
                elif _is_constant(g):
                    h.update(f"{name}={g!r};".encode())
        for name, cell in zip(f.__code__.co_freevars, f.__closure__ or (), strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            if isinstance(value, DeviceFunction):
                visit(value.fn)
            elif _is_constant(value):
                h.update(f"{name}={value!r};".encode())

    visit(fn)
    return h.hexdigest()


_BUILD_ID: str | None = None


def compiler_build_id() -> str:
    """Hash of the compiler's own sources: a changed compiler never reuses old kernels."""
    global _BUILD_ID
    if _BUILD_ID is None:
        from pathlib import Path

        h = hashlib.sha256(__version__.encode())
        root = Path(__file__).resolve().parent.parent
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode())
            h.update(path.read_bytes())
        _BUILD_ID = h.hexdigest()[:16]
    return _BUILD_ID


def _cache_key(fp: str, types_: tuple, options: BuildOptions) -> str:
    text = repr((compiler_build_id(), fp, types_, options.key()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


# ------------------------------------------------------------------ the kernel


class KernelFunction:
    """A compiled-on-demand kernel; see the module docstring."""

    def __init__(self, fn, **options):
        bad = set(options) - set(_OPTION_NAMES)
        if bad:
            raise TypeError(f"unknown kernel option(s): {', '.join(sorted(bad))}; "
                            f"known: {', '.join(_OPTION_NAMES)}")
        if "progress" in options and options["progress"] not in PROGRESS_MODES:
            raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}")
        if "executor" in options and options["executor"] not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}")
        self.fn = fn
        self.name = fn.__name__
        self.options = options
        self.signature = inspect.signature(fn)
        try:  # `from __future__ import annotations` leaves strings: evaluate them as Python does
            self.annotations = inspect.get_annotations(fn, eval_str=True)
        except Exception as e:
            raise TypeError(f"kernel {fn.__name__}: cannot evaluate its annotations: {e}") from e
        self._param_list = list(self.signature.parameters.values())
        annotated = [self.annotations.get(q.name) for q in self._param_list]
        # every parameter typed by its annotation: the launch path needs no inference
        self._static_types = (tuple(annotated) if all(
            isinstance(t, (ArrayType, ScalarType)) for t in annotated) else None)
        self._fingerprint: str | None = None
        self._cache: dict = {}
        self._launch_memo: dict = {}
        self._launchers: dict = {}  # kern[...] with exact ints -> its Launcher, validated once
        self._bound: dict = {}  # (warps, id(Config)) -> _Bound: the path of repeated launches
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<asyncwarp kernel {self.name} {self.options or ''}>"

    def __call__(self, *args, **kwargs):
        raise TypeError(f"launch a kernel with a grid: {self.name}[blocks](...) or "
                        f"{self.name}[blocks, warps](...)")

    def with_options(self, **options) -> KernelFunction:
        """A handle on the same source with other build options.

        Handles share the compiled-kernel cache: its key covers every option.
        """
        k = KernelFunction(self.fn, **{**self.options, **options})
        k._fingerprint = self._fingerprint
        k._cache = self._cache
        return k

    def __getitem__(self, shape) -> Launcher:
        # Only exact ints are cache keys: True == 1 and 4.0 == 4 hash alike but are refused.
        key = None
        if type(shape) is int or (type(shape) is tuple and len(shape) == 2
                                  and type(shape[0]) is int and type(shape[1]) is int):
            hit = self._launchers.get(shape)
            if hit is not None:
                return hit
            key = shape
        if not isinstance(shape, tuple):
            shape = (shape,)
        if not 1 <= len(shape) <= 2:
            raise TypeError(f"{self.name}[...] takes blocks or (blocks, warps), got {shape!r}")
        grid = shape[0]
        warps = shape[1] if len(shape) == 2 else None
        for what, v in (("blocks", grid), ("warps", warps)):
            if v is None and what == "warps":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{self.name}[...]: {what} must be a positive int, got {v!r}")
        launcher = Launcher(self, int(grid), None if warps is None else int(warps))
        if key is not None:
            if len(self._launchers) >= _MAX_CACHED:  # many launch shapes: start over
                self._launchers.clear()
            self._launchers[key] = launcher
        return launcher

    # --- compilation

    def _params(self):
        return self._param_list

    def arg_types(self, values) -> tuple:
        params = self._params()
        if self._static_types is not None and len(values) == len(params):
            return self._static_types
        if len(values) != len(params):
            raise TypeError(f"{self.name}() takes {len(params)} argument(s) "
                            f"({', '.join(p.name for p in params)}), got {len(values)}")
        out = []
        for p, v in zip(params, values, strict=True):
            ann = self.annotations.get(p.name, inspect.Parameter.empty)
            if ann is inspect.Parameter.empty:
                out.append(_infer_type(v, p.name))
            elif isinstance(ann, (ArrayType, ScalarType)):
                out.append(ann)
            else:
                raise TypeError(f"{self.name}(): parameter {p.name!r} is annotated {ann!r}; "
                                "use aw.Array[aw.f32] or a scalar type such as aw.i32")
        return tuple(out)

    def build_options(self, **override) -> BuildOptions:
        """Resolve backend, W, H, progress and arch for one build."""
        from .. import backends

        cfg = _config.current()
        opts = {**self.options, **{k: v for k, v in override.items() if v is not None}}
        device = opts.pop("device", cfg.device)
        backend_name = backends.resolve(opts.pop("backend", None) or cfg.backend, device)
        W = _config._check_warp_width(opts.pop("warp_width", None) or cfg.warp_width)
        subgroup = opts.pop("subgroup", None)
        progress = opts.pop("progress", None) or cfg.progress
        arch = opts.pop("arch", None)
        caps = None
        if backend_name == "sim":
            subgroup = subgroup or cfg.sim_subgroup or W
        elif backend_name == "cuda":
            subgroup = 32
            if arch is None:
                caps = backends.get("cuda", device).caps()
                arch = caps.arch
        elif subgroup is None:
            caps = backends.get(backend_name, device).caps()
            from ..backends.vulkan.runtime import choose_subgroup

            subgroup = choose_subgroup(caps, W)
        if progress == "auto":
            progress = self._auto_progress(backend_name, device, caps, W, subgroup)
        spins = None
        if backend_name == "vulkan":
            caps = caps or backends.get(backend_name, device).caps()
            if caps.extra.get("loop_iteration_limit"):
                spins = 0  # bounded waits would spend the device's loop budget
        return BuildOptions(backend=backend_name, warp_width=W, subgroup=subgroup,
                            progress=progress, arch=arch, barrier_test_spins=spins, **opts)

    @staticmethod
    def _auto_progress(backend_name, device, caps, W: int, subgroup: int) -> str:
        """independent where warps of a block are known or measured to make progress,
        else cooperative (core/progress.py says which facts count).

        The lowering never needs lanes of one warp to make progress independently
        (divergent awaits get per-lane state machines), but when H > W several
        logical warps share one hardware subgroup and cannot wait on each other.
        """
        from .. import backends
        from .progress import guarantees

        if caps is None:
            if backend_name == "cuda":  # building PTX without a driver: sm_70+ guarantees it
                return "independent"
            if backend_name != "sim":
                caps = backends.get(backend_name, device).caps()
        if caps is None:
            caps = backends.get("sim", device).caps()
        warp_progress = bool(guarantees(caps).get("warp")) and subgroup <= W
        return "independent" if warp_progress else "cooperative"

    def compile(self, types_: tuple, options: BuildOptions) -> CompiledKernel:
        """Frontend -> passes -> emitter for one set of argument types, cached."""
        if self._fingerprint is None:
            self._fingerprint = source_fingerprint(self.fn)
        key = _cache_key(self._fingerprint, types_, options)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        cfg = _config.current()
        path = cfg.cache_dir / f"{self.name}-{key}.pkl"
        disk = cfg.disk_cache and options.backend != "sim"
        if disk and path.exists():
            try:
                compiled = pickle.loads(path.read_bytes())
                self._cache[key] = compiled
                return compiled
            except Exception:  # a stale or truncated entry is rebuilt, never trusted
                path.unlink(missing_ok=True)
        compiled = self._build(types_, options)
        self._cache[key] = compiled
        if disk:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(pickle.dumps(compiled))
                tmp.replace(path)
            except OSError:
                pass  # a read-only cache directory only costs compile time
        return compiled

    def _build(self, types_: tuple, options: BuildOptions) -> CompiledKernel:
        from .. import backends
        from .frontend import compile_function
        from .passes.pipeline import lower

        logical = compile_function(self.fn, list(types_), warp_width=options.warp_width)
        lowered = lower(logical, options)
        if options.backend == "sim":
            artefact = lowered
        elif options.backend == "cuda":
            from ..backends.cuda.ptx import emit_ptx

            artefact = emit_ptx(lowered, options.arch or "sm_70")
        else:
            artefact = backends.get(options.backend, self._device()).compile(lowered, options)
        return CompiledKernel(self.name, options, logical, lowered, artefact)

    def _device(self):
        return self.options.get("device", _config.current().device)

    def specialize(self, *args_or_types, **options) -> CompiledKernel:
        """Compile without launching; arguments may be values or types (aw.Array[aw.f32])."""
        bad = set(options) - set(_OPTION_NAMES)
        if bad:
            raise TypeError(f"specialize() got unknown option(s): {', '.join(sorted(bad))}")
        types_ = self.arg_types(list(args_or_types))
        return self.compile(types_, self.build_options(**options))

    def ir(self, *args_or_types, **options) -> str:
        """The logical IR text for these argument types."""
        return self.specialize(*args_or_types, **options).ir


class Launcher:
    """`kern[grid, warps]`: calling it checks the arguments, compiles if needed, and runs."""

    def __init__(self, kernel: KernelFunction, grid: int, warps: int | None):
        self.kernel = kernel
        self.grid = grid
        self.warps = warps

    def prepare(self, args, **options):
        k = self.kernel
        types_ = k.arg_types(list(args))
        params = k._params()
        checked = [check_argument(v, t, p.name, k.name)
                   for v, t, p in zip(args, types_, params, strict=True)]
        if options:
            opts = k.build_options(warps=self.warps or k.options.get("warps"), **options)
            return k.compile(types_, opts), checked
        # Hot path of a repeated launch: resolving options and hashing the cache key
        # cost more than the launch itself, so remember them per argument types and
        # configuration (the frozen Config itself: aw.init() replaces it).
        memo_key = (types_, self.warps, _config.current())
        hit = k._launch_memo.get(memo_key)
        if hit is None:
            opts = k.build_options(warps=self.warps or k.options.get("warps"))
            hit = k._launch_memo[memo_key] = k.compile(types_, opts)
        return hit, checked

    def __call__(self, *args):
        # Hot path of a repeated launch of a fully annotated kernel: the plan bound after
        # the first launch of this configuration and grid checks and packs the values
        # itself, or declines (NotImplemented) and the full path below runs instead.
        k = self.kernel
        if k._static_types is not None:
            # keyed by the Config's id, which the entry keeps alive: hashing it costs more
            cfg = _config.current()
            bound = k._bound.get((self.warps, id(cfg)))
            if bound is not None and bound.cfg is cfg:
                plan = bound.plans.get(self.grid)
                if plan is not None:
                    result = plan(args)
                    if result is not NotImplemented:
                        return result
        return self._launch(args)

    def _launch(self, args):
        """Check every argument, compile if needed and run; then bind a plan for next time."""
        from .. import backends

        cfg = _config.current()
        compiled, checked = self.prepare(args)
        backend = backends.get(compiled.options.backend, self.kernel._device())
        result = run_compiled(compiled, self.grid, checked, backend)
        if self.kernel._static_types is not None:
            self._bind(cfg, compiled, backend)
        return result

    def _bind(self, cfg, compiled: CompiledKernel, backend) -> None:
        # Bound only after a launch succeeded: a first launch reports its errors (bad
        # arguments, compile errors, residency) in the same order as every other.
        k = self.kernel
        key = (self.warps, id(cfg))
        bound = k._bound.get(key)
        if bound is None or bound.cfg is not cfg or bound.compiled is not compiled:
            if len(k._bound) >= _MAX_CACHED:
                k._bound.clear()
            bound = k._bound[key] = _Bound(cfg, compiled, backend)
        if self.grid not in bound.plans:
            if len(bound.plans) >= _MAX_CACHED:
                bound.plans.clear()
            bound.plans[self.grid] = bound.plan(k, self.grid)


_MAX_CACHED = 256  # launchers, configurations or grids remembered per kernel


class _Bound:
    """A kernel's compiled form and backend for one (warps, Config), and its plan per grid."""

    def __init__(self, cfg, compiled: CompiledKernel, backend):
        self.cfg = cfg  # kept alive, so its id (the key in KernelFunction._bound) stays its own
        self.compiled = compiled
        self.backend = backend
        self.plans: dict = {}

    def plan(self, kernel: KernelFunction, grid: int):
        """The backend's bound plan (Backend.bind), else one that checks and calls run_compiled."""
        compiled, backend = self.compiled, self.backend
        bind = getattr(backend, "bind", None)
        # the watchdog's hidden report array is allocated and decoded by run_compiled
        if bind is not None and not compiled.lowered.attrs.get("hidden_params"):
            try:
                return bind(compiled, grid)
            except Exception:  # the same launch just succeeded: keep to its path
                pass
        types_, params, name = kernel._static_types, kernel._params(), kernel.name

        def checked_plan(args):
            if len(args) != len(types_):
                return NotImplemented
            checked = [check_argument(v, t, p.name, name)
                       for v, t, p in zip(args, types_, params, strict=True)]
            return run_compiled(compiled, grid, checked, backend)

        return checked_plan


def run_compiled(compiled: CompiledKernel, grid: int, args: list, backend, **launch_kw):
    """Launch with hidden parameters (the watchdog's report array) appended and decoded."""
    hidden = compiled.lowered.attrs.get("hidden_params", [])
    # a hidden parameter's length may depend on the grid (the watchdog has a word per warp)
    extra = [np.zeros(n(grid) if callable(n) else n, dtype=from_name(t).dtype)
             for _, n, t in hidden]
    result = backend.launch(compiled.artefact, compiled.lowered, compiled.options, grid,
                            list(args) + extra, **launch_kw)
    if hidden:
        from .passes.lower_async import decode_watchdog

        pending = decode_watchdog(compiled.lowered, extra[0], grid)
        if pending:
            raise WatchdogTimeout(
                f"kernel {compiled.name} stopped by its watchdog after "
                f"{compiled.options.watchdog_ns} ns; pending:\n  " + "\n  ".join(pending),
                pending)
    return result


def from_name(name: str) -> ScalarType:
    from .types import BY_NAME

    return BY_NAME[name]


def kernel(fn=None, **options):
    """Decorator: `@aw.kernel` or `@aw.kernel(warps=4, progress="cooperative")`."""
    if fn is None:
        return lambda f: KernelFunction(f, **options)
    if not callable(fn):
        raise TypeError("@aw.kernel decorates a function")
    return KernelFunction(fn, **options)
