"""The CUDA runtime over cuda-python's driver API: devices, modules, memory, launch, timing.

Every driver call goes through `check`, which raises `CudaError` naming the
call, the driver's error and the kernel. The driver JIT-compiles the PTX of
ptx.py (cuModuleLoadDataEx, its log captured into the error); arguments are
numpy arrays (copied in and back), device arrays of any producer (DLPack or
__cuda_array_interface__, zero-copy) and scalars. `CudaLaunchPlan` is the cheap
path of a repeated launch: one kernel and grid resolved once, arguments packed in place.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np

from ...core import ir
from ...core.backend import DeviceCaps
from ...core.types import ArrayType
from . import interop
from .ptx import SUPPORTED_ARCHS, block_size, dynamic_shared_bytes, entry_name

NO_DRIVER = "no NVIDIA driver (libcuda) on this machine"
INSTALL = "pip install asyncwarp[cuda]"
STATIC_SHARED_BYTES = 48 * 1024
_JIT_LOG_BYTES = 16384
_FAULT_HINT = (
    "the kernel faulted on the GPU (an out-of-bounds index is the usual cause; run it on "
    "the sim backend to find the line); this process's CUDA context cannot be used again"
)
# CUresult values of a launch made while another context was current (cuda.h's
# CUDA_ERROR_INVALID_CONTEXT, _INVALID_HANDLE, _CONTEXT_IS_DESTROYED): a plan that
# skipped cuCtxSetCurrent re-activates its context and retries once.
_STALE_CONTEXT = frozenset((201, 400, 709))
# The CudaDevice whose context this thread made current last (see CudaDevice.ensure_active).
_active = threading.local()


class CudaError(RuntimeError):
    """A driver call failed: carries the call, the CUresult name and string, and the kernel."""

    def __init__(
        self, call: str, code: int, name: str, text: str, kernel: str | None = None, log: str = ""
    ):
        self.call, self.code, self.error_name, self.text = call, code, name, text
        self.kernel, self.log = kernel, log
        where = f" (kernel {kernel})" if kernel else ""
        message = f"{call} failed{where}: {name}: {text}"
        if log:
            message += f"\n{log.strip()}"
        super().__init__(message)


_drv = None


def driver():
    """cuda.bindings.driver, imported on first use (cuda-python >= 12.6; older: cuda.cuda)."""
    global _drv
    if _drv is None:
        try:
            from cuda.bindings import driver as drv
        except ImportError:
            try:
                from cuda import cuda as drv  # cuda-python < 12.6
            except ImportError:
                raise ImportError(f"cuda-python is not installed: {INSTALL}") from None
        _drv = drv
    return _drv


def check(result, call: str, kernel: str | None = None, log: str = ""):
    """Unpack a driver call's (CUresult, *values); raise CudaError if it failed."""
    drv = driver()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != drv.CUresult.CUDA_SUCCESS:
        name = drv.cuGetErrorName(err)[1]
        text = drv.cuGetErrorString(err)[1]
        raise CudaError(
            call,
            int(err),
            name.decode() if name else str(err),
            text.decode() if text else "",
            kernel,
            log,
        )
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def available(ordinal: int = 0) -> tuple[bool, str]:
    """(usable, reason): whether cuda-python, a driver and device `ordinal` are present."""
    try:
        drv = driver()
    except ImportError as e:
        return False, str(e)
    try:
        err = drv.cuInit(0)[0]
    except Exception:  # cuda-python raises when libcuda.so itself cannot be loaded
        return False, f"{NO_DRIVER}; install an NVIDIA driver to use the cuda backend"
    if err != drv.CUresult.CUDA_SUCCESS:
        name = drv.cuGetErrorName(err)[1].decode()
        return False, f"the NVIDIA driver is present but cuInit failed with {name}"
    count = check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
    if ordinal >= count:
        return False, f"CUDA device {ordinal} does not exist ({count} device(s) present)"
    version = _version(check(drv.cuDriverGetVersion(), "cuDriverGetVersion"))
    return True, f"NVIDIA driver for CUDA {version}, {count} device(s)"


def _version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}"


def arch_for(major: int, minor: int) -> str:
    """The newest supported PTX target a device of compute capability major.minor runs."""
    cc = major * 10 + minor
    fitting = [a for a in SUPPORTED_ARCHS if int(a[3:]) <= cc]
    if not fitting:
        raise ValueError(
            f"compute capability {major}.{minor} is older than sm_70, the oldest "
            "the CUDA backend supports (independent thread scheduling is needed)"
        )
    return fitting[-1]


class DeviceArray:
    """A 1-D array in device memory; freed on close() or garbage collection.

    It exposes __cuda_array_interface__, so CuPy, PyTorch and numba can use it
    without a copy.
    """

    def __init__(self, n: int, dtype, device: CudaDevice | None = None):
        self.device = device or get_device(0)
        self.dtype = np.dtype(dtype)
        self.shape = (int(n),)
        self.ptr = 0
        self.device.activate()
        # cuMemAlloc rejects 0 bytes; an empty array still gets a valid address.
        self.ptr = int(check(driver().cuMemAlloc(max(self.nbytes, 1)), "cuMemAlloc"))

    @property
    def size(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DeviceArray({self.size}, {self.dtype}, ptr=0x{self.ptr:x})"

    @property
    def __cuda_array_interface__(self) -> dict:
        return {
            "shape": self.shape,
            "typestr": self.dtype.str,
            "data": (self.ptr, False),
            "strides": None,
            "version": 3,
            "stream": None,
        }

    def copy_from(self, host: np.ndarray) -> DeviceArray:
        host = np.ascontiguousarray(host, dtype=self.dtype)
        if host.shape != self.shape:
            raise ValueError(f"cannot copy shape {host.shape} into a device array of {self.shape}")
        self.device.copy_in(self.ptr, host)
        return self

    def numpy(self) -> np.ndarray:
        """A host copy of the contents."""
        out = np.empty(self.shape, self.dtype)
        self.device.copy_out(out, self.ptr)
        return out

    def close(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self.device.activate()
            check(driver().cuMemFree(ptr), "cuMemFree")

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the driver may already be gone
            pass


class _Args:
    """Kernel parameters packed for cuLaunchKernel, and what to copy back afterwards."""

    def __init__(self):
        self.buffers: list[np.ndarray] = []  # one per parameter, holding its value
        self.keep: list = []  # DLPack capsules and foreign arrays alive until the launch ends
        self.host: list[tuple[int, np.ndarray]] = []  # (parameter slot, numpy array) to stage
        self.staged: list[DeviceArray] = []  # their device copies, freed after the launch
        self.external = False  # an array from another producer: synchronize first

    def pointer_array(self) -> np.ndarray:
        return np.array([b.ctypes.data for b in self.buffers], dtype=np.uint64)


class CudaDevice:
    """One GPU: its primary context, a stream, the modules loaded on it, its capabilities."""

    def __init__(self, ordinal: int = 0):
        drv = driver()
        check(drv.cuInit(0), "cuInit")
        count = check(drv.cuDeviceGetCount(), "cuDeviceGetCount")
        if not 0 <= ordinal < count:
            raise ValueError(f"CUDA device {ordinal} does not exist ({count} device(s) present)")
        self.ordinal = ordinal
        self.handle = check(drv.cuDeviceGet(ordinal), "cuDeviceGet")
        self.context = check(drv.cuDevicePrimaryCtxRetain(self.handle), "cuDevicePrimaryCtxRetain")
        self.activate()
        self.stream = check(drv.cuStreamCreate(0), "cuStreamCreate")
        self._functions: dict[tuple[str, str], object] = {}
        self._by_object: dict[tuple[int, str], tuple[str, object]] = {}
        self._modules: dict[str, object] = {}
        self.caps = self._probe()

    def activate(self) -> None:
        check(driver().cuCtxSetCurrent(self.context), "cuCtxSetCurrent")
        _active.device = self

    def ensure_active(self) -> None:
        """activate() unless this thread's last activation was this device's.

        Another library may have switched contexts since: launches that skip the
        call retry after activate() when the driver says the context was wrong.
        """
        if getattr(_active, "device", None) is not self:
            self.activate()

    def _attr(self, name: str) -> int:
        drv = driver()
        attr = getattr(drv.CUdevice_attribute, f"CU_DEVICE_ATTRIBUTE_{name}")
        return int(check(drv.cuDeviceGetAttribute(attr, self.handle), "cuDeviceGetAttribute"))

    def _probe(self) -> DeviceCaps:
        drv = driver()
        name = check(drv.cuDeviceGetName(256, self.handle), "cuDeviceGetName")
        major = self._attr("COMPUTE_CAPABILITY_MAJOR")
        minor = self._attr("COMPUTE_CAPABILITY_MINOR")
        version = _version(check(drv.cuDriverGetVersion(), "cuDriverGetVersion"))
        return DeviceCaps(
            backend="cuda",
            name=name.split(b"\0", 1)[0].decode(),
            vendor="NVIDIA",
            driver=version,
            subgroup_size=self._attr("WARP_SIZE"),
            subgroup_sizes=(32, 32),
            shared_memory_bytes=self._attr("MAX_SHARED_MEMORY_PER_BLOCK_OPTIN"),
            max_block_threads=self._attr("MAX_THREADS_PER_BLOCK"),
            arch=arch_for(major, minor),
            # Independent thread scheduling (sm_70+) lets lanes of a warp wait on one
            # another; warps of a block always progress; blocks only when co-resident.
            progress={"lane": major >= 7, "warp": True, "block": False},
            timer=True,
            extra={
                "compute_capability": f"{major}.{minor}",
                "sm_count": self._attr("MULTIPROCESSOR_COUNT"),
                "cooperative_launch": bool(self._attr("COOPERATIVE_LAUNCH")),
            },
        )

    # ------------------------------------------------------------ memory

    def copy_in(self, dst: int, host: np.ndarray) -> None:
        if host.nbytes:
            check(
                driver().cuMemcpyHtoDAsync(dst, host.ctypes.data, host.nbytes, self.stream),
                "cuMemcpyHtoDAsync",
            )
            self.synchronize("cuMemcpyHtoDAsync")

    def copy_out(self, host: np.ndarray, src: int) -> None:
        if host.nbytes:
            check(
                driver().cuMemcpyDtoHAsync(host.ctypes.data, src, host.nbytes, self.stream),
                "cuMemcpyDtoHAsync",
            )
            self.synchronize("cuMemcpyDtoHAsync")

    def synchronize(self, after: str = "cuStreamSynchronize", kernel: str | None = None) -> None:
        check(
            driver().cuStreamSynchronize(self.stream), f"cuStreamSynchronize after {after}", kernel
        )

    # ------------------------------------------------------------ modules

    def function(self, ptx: str, name: str, dynamic_shared: int = 0):
        """The kernel `name` of a PTX module, JIT-compiled and loaded once per context."""
        # hot path: the same PTX string object as last time needs no hashing
        hit = self._by_object.get((id(ptx), name))
        if hit is not None and hit[0] is ptx:
            return hit[1]
        key = hashlib.sha256(ptx.encode()).hexdigest()
        fn = self._functions.get((key, name))
        if fn is not None:
            self._by_object[(id(ptx), name)] = (ptx, fn)
            return fn
        drv = driver()
        self.activate()
        module = self._modules.get(key)
        if module is None:
            opt = drv.CUjit_option
            error_log, info_log = bytearray(_JIT_LOG_BYTES), bytearray(_JIT_LOG_BYTES)
            options = [
                opt.CU_JIT_ERROR_LOG_BUFFER,
                opt.CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                opt.CU_JIT_INFO_LOG_BUFFER,
                opt.CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
            ]
            values = [error_log, _JIT_LOG_BYTES, info_log, _JIT_LOG_BYTES]
            result = drv.cuModuleLoadDataEx(ptx.encode() + b"\0", len(options), options, values)
            log = error_log.split(b"\0", 1)[0].decode(errors="replace")
            module = check(result, "cuModuleLoadDataEx (PTX JIT)", name, log)
            self._modules[key] = module
        fn = check(drv.cuModuleGetFunction(module, name.encode()), "cuModuleGetFunction", name)
        if dynamic_shared > STATIC_SHARED_BYTES:
            limit = self.caps.shared_memory_bytes
            if dynamic_shared > limit:
                raise ValueError(
                    f"kernel {name} needs {dynamic_shared} bytes of block memory; "
                    f"{self.caps.name} allows {limit} per block"
                )
            attr = drv.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
            check(drv.cuFuncSetAttribute(fn, attr, dynamic_shared), "cuFuncSetAttribute", name)
        self._functions[(key, name)] = fn
        self._by_object[(id(ptx), name)] = (ptx, fn)
        return fn

    # ------------------------------------------------------------ arguments

    def _array_pointer(self, value, t: ArrayType, where: str, args: _Args) -> int:
        want = t.elem.dtype
        if isinstance(value, DeviceArray):
            if value.device is not self:
                raise ValueError(
                    f"{where} lives on CUDA device {value.device.ordinal}, "
                    f"the kernel runs on device {self.ordinal}"
                )
            interop.check_layout(value.dtype, value.shape, None, want, where)
            return value.ptr
        view = interop.device_view(value, where)
        if view is not None:
            if view.device is None:
                view.device = self._pointer_device(view.ptr, where)
            if view.device != self.ordinal:
                raise ValueError(
                    f"{where} lives on CUDA device {view.device}, the kernel "
                    f"runs on device {self.ordinal}"
                )
            interop.check_layout(view.dtype, view.shape, view.strides, want, where)
            if view.readonly:
                raise ValueError(f"{where} is read-only; kernels may write their arrays")
            args.keep.append(view.owner)
            args.external = True
            return view.ptr
        if isinstance(value, np.ndarray):
            interop.check_layout(
                value.dtype,
                value.shape,
                None if value.flags.c_contiguous else value.strides,
                want,
                where,
            )
            return -1  # staged by marshal once every argument has been checked
        raise TypeError(
            f"{where} must be an array of {t.elem} (a numpy array, a DeviceArray, "
            f"or a CUDA array with DLPack/__cuda_array_interface__), got "
            f"{type(value).__name__}"
        )

    def _pointer_device(self, ptr: int, where: str) -> int:
        drv = driver()
        if not ptr:  # an empty array may have no allocation behind it
            return self.ordinal
        attr = drv.CUpointer_attribute.CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL
        try:
            return int(check(drv.cuPointerGetAttribute(attr, ptr), "cuPointerGetAttribute"))
        except CudaError:
            raise ValueError(f"{where}: 0x{ptr:x} is not CUDA device memory") from None

    def marshal(self, kernel: ir.Kernel, args: list) -> _Args:
        """Check every argument against the kernel's parameters and pack them.

        Nothing reaches the device here: host arrays are only noted, for `_stage`.
        """
        if len(args) != len(kernel.params):
            raise TypeError(
                f"kernel {kernel.name} takes {len(kernel.params)} argument(s), got {len(args)}"
            )
        packed = _Args()
        for i, (p, value) in enumerate(zip(kernel.params, args, strict=True)):
            where = f"{kernel.name}() argument {i} ({p.name})"
            if isinstance(p.type, ArrayType):
                ptr = self._array_pointer(value, p.type, where, packed)
                if ptr < 0:
                    packed.host.append((len(packed.buffers), value))
                packed.buffers.append(np.array([max(ptr, 0)], dtype=np.uint64))
            else:
                packed.buffers.append(interop.scalar_buffer(value, p.type, where))
        return packed

    def _stage(self, packed: _Args) -> None:
        """Copy the host arrays in; they are copied back after the launch if writable."""
        for slot, host in packed.host:
            staged = DeviceArray(host.shape[0], host.dtype, self)
            packed.staged.append(staged)
            staged.copy_from(host)
            packed.buffers[slot][0] = staged.ptr

    # ------------------------------------------------------------ launch

    def launch(
        self,
        ptx: str,
        kernel: ir.Kernel,
        grid: int,
        args: list,
        *,
        timed: bool = False,
        cooperative: bool = False,
    ) -> float | None:
        """Run the kernel on `grid` blocks; with timed=True return the kernel's time in ms.

        Arguments, the grid and (for cooperative launches) residency are checked
        before any data is copied to the device.
        """
        name = entry_name(kernel)
        threads = block_size(kernel)
        self._check_shape(kernel, grid, threads)
        self.activate()
        packed = self.marshal(kernel, args)
        shared = dynamic_shared_bytes(ptx)
        fn = self.function(ptx, name, shared)
        if cooperative:
            self._check_cooperative(fn, kernel.name, int(grid), threads, shared)
        try:
            self._stage(packed)
            if packed.external:  # let other producers' pending writes land first
                check(driver().cuCtxSynchronize(), "cuCtxSynchronize", name)
            launch = (fn, int(grid), threads, shared, packed.pointer_array())
            elapsed = self._run(name, launch, timed, cooperative)
            for (_, host), staged in zip(packed.host, packed.staged, strict=True):
                if host.flags.writeable:
                    self.copy_out(host, staged.ptr)
        finally:
            for staged in packed.staged:
                _release(staged)
        return elapsed

    def _check_shape(self, kernel: ir.Kernel, grid, threads: int) -> None:
        if not isinstance(grid, (int, np.integer)) or not 1 <= grid < 2**31:
            raise ValueError(
                f"kernel {kernel.name}: grid must be an int in 1..2^31-1, not {grid!r}"
            )
        if threads > self.caps.max_block_threads:
            raise ValueError(
                f"kernel {kernel.name} needs {threads} threads per block; "
                f"{self.caps.name} allows {self.caps.max_block_threads}"
            )

    def _run(self, name: str, launch: tuple, timed: bool, cooperative: bool) -> float | None:
        drv = driver()
        fn, grid, threads, shared, params = launch
        events = []
        try:
            if timed:
                events = [check(drv.cuEventCreate(0), "cuEventCreate") for _ in range(2)]
                check(drv.cuEventRecord(events[0], self.stream), "cuEventRecord", name)
            if cooperative:
                result = drv.cuLaunchCooperativeKernel(
                    fn, grid, 1, 1, threads, 1, 1, shared, self.stream, params.ctypes.data
                )
                check(result, "cuLaunchCooperativeKernel", name)
            else:
                result = drv.cuLaunchKernel(
                    fn, grid, 1, 1, threads, 1, 1, shared, self.stream, params.ctypes.data, 0
                )
                check(result, "cuLaunchKernel", name)
            if timed:
                check(drv.cuEventRecord(events[1], self.stream), "cuEventRecord", name)
            try:
                self.synchronize("the launch", name)  # a fault in the kernel surfaces here
            except CudaError as err:
                raise CudaError(
                    err.call, err.code, err.error_name, err.text, name, _FAULT_HINT
                ) from None
            if timed:
                return float(check(drv.cuEventElapsedTime(*events), "cuEventElapsedTime"))
            return None
        finally:
            for event in events:
                drv.cuEventDestroy(event)

    def _check_cooperative(self, fn, kname: str, grid: int, threads: int, shared: int) -> None:
        drv = driver()
        if not self.caps.extra.get("cooperative_launch"):
            raise ValueError(f"{self.caps.name} does not support cooperative launches")
        per_sm = check(
            drv.cuOccupancyMaxActiveBlocksPerMultiprocessor(fn, threads, shared),
            "cuOccupancyMaxActiveBlocksPerMultiprocessor",
            kname,
        )
        fit = int(per_sm) * self.caps.extra["sm_count"]
        if grid > fit:
            raise ValueError(
                f"kernel {kname}: a cooperative launch needs every block resident "
                f"at once (blocks wait on each other, e.g. through aw.Event); {grid} "
                f"blocks requested but only {fit} fit on {self.caps.name} ({per_sm} "
                f"per multiprocessor): launch at most {fit} blocks"
            )


def _release(array: DeviceArray) -> None:
    """Free a staging buffer; after a kernel fault the context refuses, which is moot."""
    try:
        array.close()
    except CudaError:
        pass


# ------------------------------------------------------------------ bound launches


class CudaLaunchPlan:
    """One kernel on one grid with all that does not depend on argument values resolved.

    Calling it with the argument values packs them into buffers made once, launches and
    waits; it returns NotImplemented, having touched no device, when a value needs
    `CudaDevice.launch`'s full checks (a host array to stage, another producer's array,
    another type, an out-of-range int): the caller then takes that path instead.
    """

    def __init__(
        self, device: CudaDevice, ptx: str, kernel: ir.Kernel, grid: int, cooperative: bool = False
    ):
        self.device = device
        self.name = entry_name(kernel)
        self.grid = grid
        threads = block_size(kernel)
        device._check_shape(kernel, grid, threads)
        device.ensure_active()
        shared = dynamic_shared_bytes(ptx)
        fn = device.function(ptx, self.name, shared)
        if cooperative:
            device._check_cooperative(fn, kernel.name, int(grid), threads, shared)
        # One 8-byte slot per parameter (PTX parameters are at most 8 bytes), and the
        # array of slot addresses cuLaunchKernel reads: both live as long as the plan.
        n = len(kernel.params)
        self._slots = np.zeros(max(n, 1), np.uint64)
        base = self._slots.ctypes.data
        self._pointers = np.array([base + 8 * i for i in range(n)], dtype=np.uint64)
        self._packers = tuple(
            _packer(p.type, i, self._slots, device) for i, p in enumerate(kernel.params)
        )
        drv = self._drv = driver()
        self._success = drv.CUresult.CUDA_SUCCESS
        self._call_name = "cuLaunchCooperativeKernel" if cooperative else "cuLaunchKernel"
        launch = (fn, int(grid), 1, 1, threads, 1, 1, shared, device.stream)
        params = self._pointers.ctypes.data
        # cuLaunchKernel takes a trailing `extra` (none here); the cooperative call does not
        self._launch_args = (*launch, params) if cooperative else (*launch, params, 0)
        self._launch_fn = getattr(drv, self._call_name)
        self._lock = threading.Lock()  # one set of buffers: one launch of this plan at a time

    def __call__(self, args):
        """Launch on `args` and wait: None, or NotImplemented when they need the full path."""
        packers = self._packers
        if len(args) != len(packers):
            return NotImplemented
        with self._lock:
            # Every value is checked before anything reaches the device.
            for pack, value in zip(packers, args, strict=True):
                if not pack(value):
                    return NotImplemented
            device = self.device
            device.ensure_active()
            result = self._launch_fn(*self._launch_args)
            if result[0] is not self._success:  # identity is the fast test; check() decides
                if int(result[0]) in _STALE_CONTEXT:  # another context is current: once more
                    device.activate()
                    result = self._launch_fn(*self._launch_args)
                check(result, self._call_name, self.name)
            result = self._drv.cuStreamSynchronize(device.stream)
            if result[0] is not self._success:
                try:
                    check(result, "cuStreamSynchronize after the launch", self.name)
                except CudaError as err:  # a fault in the kernel surfaces here
                    raise CudaError(
                        err.call, err.code, err.error_name, err.text, self.name, _FAULT_HINT
                    ) from None
        return None


def _packer(t, slot: int, slots: np.ndarray, device: CudaDevice):
    """pack(value) -> bool for the parameter in `slot`: writes the value and returns True
    when its type is one of the exact fast cases, else False (marshal decides)."""
    if isinstance(t, ArrayType):
        want, words = t.elem.dtype, slots

        def pack_array(v) -> bool:
            if (
                type(v) is DeviceArray
                and v.device is device
                and (v.dtype is want or v.dtype == want)
                and len(v.shape) == 1
            ):
                words[slot] = v.ptr
                return True
            return False

        return pack_array
    if t.is_bool:  # PTX reads bool parameters as .u32
        view, at = slots.view(np.uint32), 2 * slot

        def pack_bool(v) -> bool:
            if type(v) is bool or type(v) is np.bool_:
                view[at] = 1 if v else 0
                return True
            return False

        return pack_bool
    view = slots.view(t.dtype)
    at = slot * 8 // t.dtype.itemsize  # little-endian: the value starts the slot
    exact = t.dtype.type
    if t.is_int:
        lo, hi = t.limits

        def pack_int(v) -> bool:
            kind = type(v)
            if kind is exact or (kind is int and lo <= v <= hi):
                view[at] = v
                return True
            return False

        return pack_int

    def pack_float(v) -> bool:
        kind = type(v)
        if kind is exact or kind is float:  # a Python float rounds as numpy's cast does
            view[at] = v
            return True
        return False

    return pack_float


_devices: dict[int, CudaDevice] = {}
_lock = threading.Lock()


def get_device(ordinal: int = 0) -> CudaDevice:
    """The CudaDevice for an ordinal, created (context retained) on first use."""
    with _lock:
        dev = _devices.get(ordinal)
        if dev is None:
            dev = _devices[ordinal] = CudaDevice(ordinal)
        return dev


def to_device(array: np.ndarray, device: int = 0) -> DeviceArray:
    """Copy a 1-D numpy array to device memory."""
    array = np.asarray(array)
    if array.ndim != 1:
        raise ValueError(f"to_device takes a 1-D array, got shape {array.shape}; pass .ravel()")
    return DeviceArray(array.shape[0], array.dtype, get_device(device)).copy_from(array)


def empty(n: int, dtype, device: int = 0) -> DeviceArray:
    """An uninitialised device array of n elements."""
    return DeviceArray(n, dtype, get_device(device))


__all__ = [
    "CudaError",
    "CudaDevice",
    "CudaLaunchPlan",
    "DeviceArray",
    "available",
    "check",
    "driver",
    "get_device",
    "to_device",
    "empty",
    "arch_for",
    "NO_DRIVER",
]
