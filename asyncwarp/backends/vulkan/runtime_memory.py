"""Device buffers of the Vulkan runtime: memory-type selection and `VulkanBuffer`.

On CPU devices and unified-memory GPUs a kernel reads and writes one
host-visible coherent buffer; on discrete GPUs it uses a device-local buffer
and the host a staging buffer, with copies recorded around each dispatch.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import numpy as np

from .runtime_vk import load_vulkan, vk_call

if TYPE_CHECKING:
    from .runtime import VulkanRuntime


def find_memory_type(mem_props: Any, type_bits: int, required: int, preferred: int = 0) -> int:
    """Index of a memory type allowed by `type_bits` with all `required` property flags.

    Among those, the first that also has every `preferred` flag wins (the spec orders
    memory types so that the first match of a flag set is the best one:
    "vkGetPhysicalDeviceMemoryProperties", memory type ordering rules).
    """
    candidates = [
        i
        for i in range(mem_props.memoryTypeCount)
        if type_bits & (1 << i) and mem_props.memoryTypes[i].propertyFlags & required == required
    ]
    if not candidates:
        raise RuntimeError(
            f"no Vulkan memory type has property flags 0x{required:x} among the types "
            f"0x{type_bits:x} this buffer may use"
        )
    for i in candidates:
        if mem_props.memoryTypes[i].propertyFlags & preferred == preferred:
            return i
    return candidates[0]


def uses_direct_memory(device_type: str, mem_props: Any) -> bool:
    """Whether kernels should use host-visible memory directly (no staging copies).

    True on CPU and integrated devices with a device-local, host-visible, coherent
    memory type, and on any device whose device-local memory is all host-visible.
    """
    vk = load_vulkan()
    local = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
    host = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
    shared = local | host
    flags = [mem_props.memoryTypes[i].propertyFlags for i in range(mem_props.memoryTypeCount)]
    if device_type in ("cpu", "integrated") and any(f & shared == shared for f in flags):
        return True
    return all(f & shared == shared for f in flags if f & local)


def _release(state: Any, handles: list) -> None:
    """Free a buffer's Vulkan objects, unless its device is gone or may still use them."""
    if state.device is None or state.hung:
        return  # destroyed with the device, or deliberately leaked after a hung kernel
    vk = state.vk
    for buffer, memory, mapped in handles:
        if mapped:
            vk.vkUnmapMemory(state.device, memory)
        vk.vkDestroyBuffer(state.device, buffer, None)
        vk.vkFreeMemory(state.device, memory, None)
    handles.clear()


class VulkanBuffer:
    """A storage buffer of `nbytes` bytes on one device, with a host-visible mirror.

    `write` fills the mirror and `read` returns it; where the mirror is a staging
    buffer the runtime copies it to the device before the next dispatch and back
    after a dispatch when read. Create with `VulkanRuntime.buffer`.
    """

    def __init__(self, runtime: VulkanRuntime, nbytes: int):
        if nbytes < 0:
            raise ValueError(f"buffer size must be non-negative, not {nbytes}")
        vk = runtime.vk
        self.nbytes = int(nbytes)
        # VUID-VkBufferCreateInfo-size-00912: size must be greater than 0.
        self.size = max(self.nbytes, 4)
        self.staged = not runtime.direct_memory
        self.host_dirty = False  # staged: the host mirror is newer than the device copy
        self.device_dirty = False  # staged: the device copy is newer than the mirror
        self._runtime = runtime
        self._handles: list = []
        state = runtime.state
        self._finalizer = weakref.finalize(self, _release, state, self._handles)
        storage = (
            vk.VK_BUFFER_USAGE_STORAGE_BUFFER_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT
            | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        )
        transfer = vk.VK_BUFFER_USAGE_TRANSFER_SRC_BIT | vk.VK_BUFFER_USAGE_TRANSFER_DST_BIT
        host = vk.VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | vk.VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
        cached = vk.VK_MEMORY_PROPERTY_HOST_CACHED_BIT
        local = vk.VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT
        try:
            if self.staged:
                self.handle = self._allocate(storage, local, 0, mapped=False)
                self.staging = self._allocate(transfer, host, cached, mapped=True)
            else:
                self.handle = self._allocate(storage, host, local | cached, mapped=True)
                self.staging = None
        except BaseException:
            self.close()
            raise
        runtime.track(self)

    def _allocate(self, usage: int, required: int, preferred: int, mapped: bool) -> Any:
        runtime = self._runtime
        vk, device = runtime.vk, runtime.state.device
        info = vk.VkBufferCreateInfo(
            size=self.size, usage=usage, sharingMode=vk.VK_SHARING_MODE_EXCLUSIVE
        )
        buffer = vk_call("vkCreateBuffer", vk.vkCreateBuffer, device, info, None)
        try:
            reqs = vk.vkGetBufferMemoryRequirements(device, buffer)
            index = find_memory_type(
                runtime.memory_properties, reqs.memoryTypeBits, required, preferred
            )
            alloc = vk.VkMemoryAllocateInfo(allocationSize=reqs.size, memoryTypeIndex=index)
            memory = vk_call("vkAllocateMemory", vk.vkAllocateMemory, device, alloc, None)
        except BaseException:
            vk.vkDestroyBuffer(device, buffer, None)
            raise
        # Registered before binding and mapping so a failure below still frees both.
        self._handles.append((buffer, memory, False))
        vk_call("vkBindBufferMemory", vk.vkBindBufferMemory, device, buffer, memory, 0)
        if mapped:
            raw = vk_call("vkMapMemory", vk.vkMapMemory, device, memory, 0, self.size, 0)
            self._handles[-1] = (buffer, memory, True)
            self._host = np.frombuffer(raw, dtype=np.uint8)[: self.nbytes]
        return buffer

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("this VulkanBuffer is closed")
        self._runtime.check_usable()

    def write(self, data: Any) -> None:
        """Copy a numpy array or bytes-like object (exactly `nbytes` bytes) into the buffer."""
        self._check_open()
        src = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
        if src.size != self.nbytes:
            raise ValueError(f"cannot write {src.size} bytes into a buffer of {self.nbytes}")
        self._host[:] = src
        self.host_dirty = self.staged
        self.device_dirty = False

    def read(self, dtype: Any = np.uint8, out: np.ndarray | None = None) -> np.ndarray:
        """The buffer's contents as a new array of `dtype`, or copied into `out`."""
        self._check_open()
        if self.device_dirty:
            self._runtime.download([self])
        if out is None:
            return self._host.view(np.dtype(dtype)).copy()
        if out.nbytes != self.nbytes or not out.flags.c_contiguous or not out.flags.writeable:
            raise ValueError("`out` must be a writeable C-contiguous array of the buffer's size")
        out.reshape(-1).view(np.uint8)[:] = self._host
        return out

    def close(self) -> None:
        """Free the buffer's memory now (it is also freed when garbage-collected)."""
        self._finalizer()

    def __repr__(self) -> str:
        where = "staged" if self.staged else "host-visible"
        return f"<VulkanBuffer {self.nbytes} bytes, {where}{', closed' if self.closed else ''}>"
