"""The Vulkan runtime: instance, device selection, buffers, pipelines, dispatch and timing.

`VulkanRuntime` owns one VkInstance and one logical device and runs kernels
synchronously: record, submit with a fence, wait with a timeout (a hung kernel
is reported, not waited on forever), read back, optionally time with
timestamp queries. Everything is released by `close()` or at interpreter exit.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...core.errors import BackendUnavailable
from .runtime_caps import choose_subgroup, enable_chain, probe
from .runtime_instance import (
    NO_DEVICE,
    RuntimeState,
    arm_exit_alarm,
    create_instance,
    enumerate_devices,
    log,
    release_runtime,
    select_device,
)
from .runtime_memory import VulkanBuffer, uses_direct_memory
from .runtime_pipeline import ComputePipeline, cache_file, load_cache_data
from .runtime_vk import VulkanError, VulkanTimeout, load_vulkan, vk_call

__all__ = [
    "VulkanRuntime",
    "VulkanBuffer",
    "ComputePipeline",
    "VulkanError",
    "VulkanTimeout",
    "available",
    "list_devices",
    "choose_subgroup",
    "DEFAULT_TIMEOUT_S",
]

DEFAULT_TIMEOUT_S = 60.0
_WAIT_SLICE_S = 0.1  # fence waits are sliced so Ctrl-C interrupts a long kernel


@functools.cache
def available(device: int | str | None = None) -> tuple[bool, str]:
    """(usable, reason): whether a Vulkan device (this one, if given) can run kernels here.

    The reason names what is missing and what to install; cached per process.
    """
    try:
        state = RuntimeState(load_vulkan())
        try:
            devices = enumerate_devices(state, create_instance(state, validation=False))
            if not devices:
                return False, NO_DEVICE
            if device is not None:
                return True, f"Vulkan device {select_device(devices, device)}"
        finally:
            release_runtime(state)
    except BackendUnavailable as exc:
        return False, str(exc)
    except (ValueError, TypeError) as exc:  # no such device
        return False, str(exc)
    except VulkanError as exc:
        return False, f"Vulkan does not start here: {exc}"
    return True, f"{len(devices)} Vulkan device(s): {'; '.join(map(str, devices))}"


def list_devices() -> list[str]:
    """Descriptions of the Vulkan devices, in the order `VulkanRuntime(device=i)` indexes."""
    state = RuntimeState(load_vulkan())
    try:
        return [str(d) for d in enumerate_devices(state, create_instance(state, False))]
    finally:
        release_runtime(state)


class VulkanRuntime:
    """One Vulkan device, opened with every feature kernels may use that it offers.

    device: index in the default order (discrete, integrated, virtual, CPU) or a
    case-insensitive substring of the name, driver or vendor ("lavapipe", "nvidia").
    validation: enable VK_LAYER_KHRONOS_validation; its errors raise VulkanError.
    cache_dir: where the pipeline cache is loaded from and saved to (None: memory only).
    timeout_s: default limit on one dispatch before it is reported as hung.
    staging: None picks per device; True forces device-local buffers with staging
    copies (the discrete-GPU path, testable on a CPU device); False forbids them.
    exit_grace_s: after a hung kernel, how long the process may take to exit before
    SIGALRM ends it (some drivers block exit until the kernel ends); None: never.
    """

    def __init__(
        self,
        device: int | str = 0,
        *,
        validation: bool = False,
        cache_dir: str | os.PathLike | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        staging: bool | None = None,
        exit_grace_s: float | None = 10.0,
    ):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
        self.vk = load_vulkan()
        self.timeout_s = float(timeout_s)
        self.exit_grace_s = exit_grace_s
        self.state = RuntimeState(self.vk)
        self._finalizer = weakref.finalize(self, release_runtime, self.state)
        self._lock = threading.RLock()
        self._pipelines: dict[tuple, ComputePipeline] = {}
        try:
            api = create_instance(self.state, validation)
            devices = enumerate_devices(self.state, api)
            if not devices:
                raise BackendUnavailable(NO_DEVICE)
            self.physical = select_device(devices, device)
            self.caps, self.features, self.limits = probe(self.vk, self.physical)
            self.memory_properties = self.vk.vkGetPhysicalDeviceMemoryProperties(
                self.physical.handle
            )
            self.direct_memory = uses_direct_memory(
                self.physical.device_type, self.memory_properties
            )
            if staging is not None:
                self.direct_memory = not staging
            self.caps.extra["direct_memory"] = self.direct_memory
            self._create_device()
            self._create_pipeline_cache(cache_dir)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ setup

    def _create_device(self) -> None:
        vk, state, family = self.vk, self.state, self.limits.queue_family
        features2, keep_alive = enable_chain(vk, self.physical, self.features)
        extensions = list(self.features.extensions)
        queue = vk.VkDeviceQueueCreateInfo(
            queueFamilyIndex=family, queueCount=1, pQueuePriorities=[1.0]
        )
        info = vk.VkDeviceCreateInfo(
            pNext=features2,
            queueCreateInfoCount=1,
            pQueueCreateInfos=[queue],
            enabledExtensionCount=len(extensions),
            ppEnabledExtensionNames=extensions,
        )
        state.device = vk_call(
            "vkCreateDevice", vk.vkCreateDevice, self.physical.handle, info, None
        )
        del keep_alive
        device = state.device
        self.queue = vk.vkGetDeviceQueue(device, family, 0)
        state.objects["command_pool"] = vk_call(
            "vkCreateCommandPool",
            vk.vkCreateCommandPool,
            device,
            vk.VkCommandPoolCreateInfo(
                flags=vk.VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT, queueFamilyIndex=family
            ),
            None,
        )
        self._command_buffer = vk_call(
            "vkAllocateCommandBuffers",
            vk.vkAllocateCommandBuffers,
            device,
            vk.VkCommandBufferAllocateInfo(
                commandPool=state.objects["command_pool"],
                level=vk.VK_COMMAND_BUFFER_LEVEL_PRIMARY,
                commandBufferCount=1,
            ),
        )[0]
        state.objects["fence"] = vk_call(
            "vkCreateFence", vk.vkCreateFence, device, vk.VkFenceCreateInfo(), None
        )
        if self.limits.timestamp_valid_bits:
            state.objects["query_pool"] = vk_call(
                "vkCreateQueryPool",
                vk.vkCreateQueryPool,
                device,
                vk.VkQueryPoolCreateInfo(queryType=vk.VK_QUERY_TYPE_TIMESTAMP, queryCount=2),
                None,
            )

    def _create_pipeline_cache(self, cache_dir: str | os.PathLike | None) -> None:
        vk, state = self.vk, self.state
        data = b""
        if cache_dir is not None:
            state.cache_path = cache_file(cache_dir, self.physical)
            data = load_cache_data(state.cache_path, self.physical)
        info = vk.VkPipelineCacheCreateInfo(
            initialDataSize=len(data), pInitialData=vk.ffi.from_buffer(data) if data else None
        )
        try:
            cache = vk_call(
                "vkCreatePipelineCache", vk.vkCreatePipelineCache, state.device, info, None
            )
        except VulkanError:
            if not data:
                raise
            log.warning("ignoring an unusable pipeline cache file %s", state.cache_path)
            cache = vk_call(
                "vkCreatePipelineCache",
                vk.vkCreatePipelineCache,
                state.device,
                vk.VkPipelineCacheCreateInfo(),
                None,
            )
        state.objects["pipeline_cache"] = cache

    # ------------------------------------------------------------ objects

    @property
    def pipeline_cache(self) -> Any:
        return self.state.objects["pipeline_cache"]

    def track(self, child: VulkanBuffer | ComputePipeline) -> None:
        """Register a buffer or pipeline to be released before the device is."""
        self.state.children.add(child)

    def check_usable(self, kernel: str = "") -> None:
        """Raise if the runtime is closed or its device was lost or hung by a kernel."""
        state = self.state
        if state.hung:
            raise VulkanError(
                "dispatch",
                "VK_TIMEOUT",
                2,
                kernel or state.hung,
                f"the device is unusable since kernel {state.hung!r} hung; "
                "open a new VulkanRuntime",
            )
        if state.lost:
            raise VulkanError(
                "dispatch",
                "VK_ERROR_DEVICE_LOST",
                -4,
                kernel,
                "the device was lost; open a new VulkanRuntime",
            )
        if state.device is None:
            raise ValueError("this VulkanRuntime is closed")

    def buffer(self, nbytes: int) -> VulkanBuffer:
        """A device buffer of `nbytes` bytes (contents undefined until written)."""
        with self._lock:
            self.check_usable()
            if nbytes > self.limits.max_storage_buffer_range:
                raise ValueError(
                    f"a buffer of {nbytes} bytes exceeds this device's "
                    f"maxStorageBufferRange ({self.limits.max_storage_buffer_range})"
                )
            return VulkanBuffer(self, nbytes)

    def to_device(self, array: np.ndarray) -> VulkanBuffer:
        """A device buffer holding a copy of `array`."""
        buf = self.buffer(np.asarray(array).nbytes)
        buf.write(array)
        return buf

    def pipeline(
        self,
        spirv: bytes,
        *,
        num_buffers: int,
        push_constant_size: int = 0,
        subgroup_size: int | None = None,
        name: str = "kernel",
        entry: str | None = None,
    ) -> ComputePipeline:
        """A compute pipeline for a SPIR-V module (cached per module and layout).

        num_buffers storage buffers at set 0, bindings 0..n-1; push_constant_size bytes
        of push constants; subgroup_size the H the module was built for (None: any).
        """
        limits = self.limits
        if not 0 <= num_buffers <= limits.max_storage_buffers:
            raise ValueError(
                f"kernel {name!r} has {num_buffers} array parameters; this device "
                f"binds at most {limits.max_storage_buffers} storage buffers"
            )
        # VUID-VkPushConstantRange-size-00297/00298: a multiple of 4, within the limit.
        if push_constant_size % 4 or not 0 <= push_constant_size <= limits.max_push_constants:
            raise ValueError(
                f"kernel {name!r} needs {push_constant_size} bytes of scalar "
                f"parameters; push constants must be a multiple of 4 and at most "
                f"{limits.max_push_constants} bytes on this device"
            )
        key = (
            hashlib.sha256(spirv).digest(),
            num_buffers,
            push_constant_size,
            subgroup_size,
            entry,
        )
        with self._lock:
            self.check_usable(name)
            cached = self._pipelines.get(key)
            if cached is not None and not cached.closed:
                return cached
            pipeline = ComputePipeline(
                self,
                spirv,
                num_buffers=num_buffers,
                push_constant_size=push_constant_size,
                subgroup_size=subgroup_size,
                name=name,
                entry=entry,
            )
            self.state.cache_dirty = True
            self._pipelines[key] = pipeline
            self._raise_validation_errors("vkCreateComputePipelines", name)
            return pipeline

    def check_local_size(self, local_size: tuple[int, int, int], kernel: str) -> None:
        """ValueError if a workgroup of `local_size` exceeds this device's limits."""
        invocations = local_size[0] * local_size[1] * local_size[2]
        if (
            invocations > self.limits.max_group_invocations
            or local_size[0] > self.limits.max_group_size_x
        ):
            raise ValueError(
                f"kernel {kernel!r} has {invocations} invocations per block; this device "
                f"allows {min(self.limits.max_group_invocations, self.limits.max_group_size_x)}"
            )

    # ------------------------------------------------------------ execution

    def dispatch(
        self,
        pipeline: ComputePipeline,
        grid: int,
        buffers: Sequence[VulkanBuffer],
        push_constants: bytes = b"",
        *,
        timing: bool = False,
        readback: Sequence[VulkanBuffer] = (),
        timeout_s: float | None = None,
    ) -> int | None:
        """Run `pipeline` on `grid` workgroups and wait for it.

        `buffers` bind to set 0, bindings 0..n-1; `push_constants` fills the whole
        push-constant block. Staged buffers in `readback` are copied back in the same
        submission; others are copied back lazily by `VulkanBuffer.read`. With
        `timing`, returns the kernel's duration in ns (device timestamps where the
        queue has them, else host time around submit and wait).
        """
        kernel = pipeline.name
        if timeout_s is not None and not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {timeout_s!r}")
        with self._lock:
            self.check_usable(kernel)
            self._check_dispatch(pipeline, grid, buffers, push_constants)
            vk, device = self.vk, self.state.device
            if buffers:
                writes = [
                    vk.VkWriteDescriptorSet(
                        dstSet=pipeline.descriptor_set,
                        dstBinding=i,
                        descriptorCount=1,
                        descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                        pBufferInfo=[
                            vk.VkDescriptorBufferInfo(buffer=b.handle, offset=0, range=b.size)
                        ],
                    )
                    for i, b in enumerate(buffers)
                ]
                vk.vkUpdateDescriptorSets(device, len(writes), writes, 0, None)
            unique = list({id(b): b for b in buffers}.values())
            uploads = [b for b in unique if b.staged and b.host_dirty]
            wanted = {id(b) for b in readback}
            downloads = [b for b in unique if b.staged and id(b) in wanted]
            pool = self.state.objects.get("query_pool") if timing else None

            def record(cb: Any) -> None:
                self._record_copies(cb, uploads, to_device=True)
                if pool is not None:
                    vk.vkCmdResetQueryPool(cb, pool, 0, 2)
                    vk.vkCmdWriteTimestamp(cb, vk.VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, pool, 0)
                vk.vkCmdBindPipeline(cb, vk.VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.handle)
                if buffers:
                    vk.vkCmdBindDescriptorSets(
                        cb,
                        vk.VK_PIPELINE_BIND_POINT_COMPUTE,
                        pipeline.layout,
                        0,
                        1,
                        [pipeline.descriptor_set],
                        0,
                        None,
                    )
                if push_constants:
                    vk.vkCmdPushConstants(
                        cb,
                        pipeline.layout,
                        vk.VK_SHADER_STAGE_COMPUTE_BIT,
                        0,
                        len(push_constants),
                        vk.ffi.from_buffer(push_constants),
                    )
                vk.vkCmdDispatch(cb, grid, 1, 1)
                if pool is not None:
                    vk.vkCmdWriteTimestamp(cb, vk.VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, pool, 1)
                self._record_copies(cb, downloads, to_device=False)

            start = time.perf_counter_ns()
            self._submit(record, kernel, timeout_s)
            host_ns = time.perf_counter_ns() - start
            for b in unique:
                b.host_dirty = False
                b.device_dirty = b.staged and id(b) not in wanted
            if not timing:
                return None
            return self._elapsed_ns(pool, kernel) if pool is not None else host_ns

    def download(self, buffers: Sequence[VulkanBuffer]) -> None:
        """Copy staged buffers whose device copy is newer back to their host mirrors."""
        with self._lock:
            self.check_usable()
            stale = [b for b in buffers if b.staged and b.device_dirty]
            if stale:
                self._submit(
                    lambda cb: self._record_copies(cb, stale, to_device=False), "download", None
                )
            for b in stale:
                b.device_dirty = False

    def _check_dispatch(
        self,
        pipeline: ComputePipeline,
        grid: int,
        buffers: Sequence[VulkanBuffer],
        push_constants: bytes,
    ) -> None:
        kernel = pipeline.name
        if pipeline._runtime is not self or pipeline.closed:
            raise ValueError(f"pipeline {kernel!r} is closed or belongs to another runtime")
        if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)):
            raise TypeError(f"grid must be an int, not {type(grid).__name__}")
        if not 1 <= grid <= self.limits.max_group_count_x:
            raise ValueError(
                f"grid of kernel {kernel!r} must be within 1.."
                f"{self.limits.max_group_count_x} blocks, not {grid}"
            )
        if len(buffers) != pipeline.num_buffers:
            raise ValueError(
                f"kernel {kernel!r} binds {pipeline.num_buffers} buffers, got {len(buffers)}"
            )
        for i, b in enumerate(buffers):
            if not isinstance(b, VulkanBuffer) or b._runtime is not self or b.closed:
                raise ValueError(
                    f"buffer {i} of kernel {kernel!r} is not an open VulkanBuffer of this runtime"
                )
        if len(push_constants) != pipeline.push_constant_size:
            raise ValueError(
                f"kernel {kernel!r} takes {pipeline.push_constant_size} bytes of "
                f"push constants, got {len(push_constants)}"
            )

    def _record_copies(self, cb: Any, buffers: list[VulkanBuffer], to_device: bool) -> None:
        """Staging copies with the barriers that order them against the dispatch and host."""
        vk = self.vk
        shader_rw = vk.VK_ACCESS_SHADER_READ_BIT | vk.VK_ACCESS_SHADER_WRITE_BIT
        if to_device:
            if not buffers:
                return
            for b in buffers:
                vk.vkCmdCopyBuffer(cb, b.staging, b.handle, 1, [vk.VkBufferCopy(size=b.size)])
            # dst ALL_COMMANDS so the start timestamp, too, waits for the uploads.
            self._barrier(
                cb,
                vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                vk.VK_PIPELINE_STAGE_ALL_COMMANDS_BIT,
                vk.VK_ACCESS_TRANSFER_WRITE_BIT,
                shader_rw,
            )
            return
        if buffers:
            self._barrier(
                cb,
                vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
                vk.VK_ACCESS_SHADER_WRITE_BIT,
                vk.VK_ACCESS_TRANSFER_READ_BIT,
            )
            for b in buffers:
                vk.vkCmdCopyBuffer(cb, b.handle, b.staging, 1, [vk.VkBufferCopy(size=b.size)])
        # A fence wait does not make device writes visible to the host; this barrier
        # does (Vulkan spec, "Host Write Ordering Guarantees" / vkWaitForFences notes).
        self._barrier(
            cb,
            vk.VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | vk.VK_PIPELINE_STAGE_TRANSFER_BIT,
            vk.VK_PIPELINE_STAGE_HOST_BIT,
            vk.VK_ACCESS_SHADER_WRITE_BIT | vk.VK_ACCESS_TRANSFER_WRITE_BIT,
            vk.VK_ACCESS_HOST_READ_BIT,
        )

    def _barrier(
        self, cb: Any, src_stage: int, dst_stage: int, src_access: int, dst_access: int
    ) -> None:
        vk = self.vk
        barrier = vk.VkMemoryBarrier(srcAccessMask=src_access, dstAccessMask=dst_access)
        vk.vkCmdPipelineBarrier(cb, src_stage, dst_stage, 0, 1, [barrier], 0, None, 0, None)

    def _submit(self, record: Callable[[Any], None], kernel: str, timeout_s: float | None) -> None:
        """Record the command buffer, submit it with the fence, wait, report errors."""
        vk, state, cb = self.vk, self.state, self._command_buffer
        fence = state.objects["fence"]
        vk_call("vkResetCommandBuffer", vk.vkResetCommandBuffer, cb, 0, kernel=kernel)
        vk_call(
            "vkBeginCommandBuffer",
            vk.vkBeginCommandBuffer,
            cb,
            vk.VkCommandBufferBeginInfo(flags=vk.VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT),
            kernel=kernel,
        )
        record(cb)
        vk_call("vkEndCommandBuffer", vk.vkEndCommandBuffer, cb, kernel=kernel)
        vk_call("vkResetFences", vk.vkResetFences, state.device, 1, [fence], kernel=kernel)
        submit = vk.VkSubmitInfo(commandBufferCount=1, pCommandBuffers=[cb])
        self._checked(
            "vkQueueSubmit", vk.vkQueueSubmit, self.queue, 1, [submit], fence, kernel=kernel
        )
        self._wait(fence, kernel, self.timeout_s if timeout_s is None else timeout_s)
        self._raise_validation_errors("vkQueueSubmit", kernel)

    def _wait(self, fence: Any, kernel: str, timeout_s: float) -> None:
        vk, device = self.vk, self.state.device
        deadline = time.monotonic() + timeout_s
        done = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    self._checked(
                        "vkWaitForFences",
                        vk.vkWaitForFences,
                        device,
                        1,
                        [fence],
                        vk.VK_TRUE,
                        int(min(remaining, _WAIT_SLICE_S) * 1e9),
                        kernel=kernel,
                    )
                except VulkanError as exc:
                    if exc.result == "VK_TIMEOUT":
                        continue
                    raise
                done = True
                return
        finally:
            if not done and not self.state.lost:
                # Timed out or interrupted: the submission may still run and use the
                # command buffer and every bound object.
                self.state.hung = kernel
                arm_exit_alarm(self.exit_grace_s)
        raise VulkanTimeout(kernel, timeout_s)

    def _checked(self, name: str, fn: Callable, *args: Any, kernel: str) -> Any:
        """`vk_call`, and VK_ERROR_DEVICE_LOST also marks the runtime unusable."""
        try:
            return vk_call(name, fn, *args, kernel=kernel)
        except VulkanError as exc:
            if exc.result == "VK_ERROR_DEVICE_LOST":
                self.state.lost = True
            raise

    def _elapsed_ns(self, pool: Any, kernel: str) -> int:
        vk = self.vk
        stamps = vk.ffi.new("uint64_t[2]")
        vk_call(
            "vkGetQueryPoolResults",
            vk.vkGetQueryPoolResults,
            self.state.device,
            pool,
            0,
            2,
            16,
            stamps,
            8,
            vk.VK_QUERY_RESULT_64_BIT | vk.VK_QUERY_RESULT_WAIT_BIT,
            kernel=kernel,
        )
        bits = self.limits.timestamp_valid_bits
        mask = (1 << bits) - 1 if bits < 64 else (1 << 64) - 1
        ticks = (stamps[1] - stamps[0]) & mask  # timestamps wrap at timestampValidBits
        return round(ticks * self.limits.timestamp_period_ns)

    def _raise_validation_errors(self, call: str, kernel: str) -> None:
        messages = self.state.messages
        if messages:
            text = "\n".join(messages)
            messages.clear()
            raise VulkanError(call, "validation errors", None, kernel, text)

    # ------------------------------------------------------------ lifetime

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        """Release every buffer, pipeline and the device and instance; idempotent."""
        with self._lock:
            self._pipelines.clear()
            self._finalizer()

    def __enter__(self) -> VulkanRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("hung" if self.state.hung else "open")
        return f"<VulkanRuntime {self.physical if hasattr(self, 'physical') else '?'} {state}>"
