"""Compute pipelines of the Vulkan runtime, and the on-disk pipeline cache.

A `ComputePipeline` bundles what one kernel needs on one device: shader module,
descriptor set layout (one storage buffer per array parameter, set 0, binding
i), push-constant range (the scalar block), pipeline layout, pipeline and its
descriptor set. The pipeline cache is saved per device under a cache directory.
"""

from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .runtime_vk import PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT, vk_call

if TYPE_CHECKING:
    from .runtime import VulkanRuntime
    from .runtime_caps import PhysicalDevice

SPIRV_MAGIC = 0x07230203
_OP_ENTRY_POINT, _OP_EXECUTION_MODE, _OP_FUNCTION = 15, 16, 54
_EXECUTION_MODEL_GLCOMPUTE, _EXECUTION_MODE_LOCAL_SIZE = 5, 17


@dataclass(frozen=True)
class EntryPoint:
    """A GLCompute entry point of a SPIR-V module; local_size None if given by ids."""

    name: str
    local_size: tuple[int, int, int] | None


def spirv_words(spirv: bytes) -> np.ndarray:
    """The module as 32-bit words in host order; ValueError if it is not SPIR-V."""
    if not isinstance(spirv, (bytes, bytearray, memoryview)):
        raise TypeError(f"SPIR-V must be bytes, not {type(spirv).__name__}")
    if len(spirv) < 20 or len(spirv) % 4:
        raise ValueError(
            f"not a SPIR-V module: {len(spirv)} bytes (needs a header and "
            "a whole number of 32-bit words)"
        )
    words = np.frombuffer(bytes(spirv), dtype="<u4")
    if words[0] != SPIRV_MAGIC:
        words = words.byteswap()  # the spec allows either endianness (SPIR-V 2.3)
        if words[0] != SPIRV_MAGIC:
            raise ValueError("not a SPIR-V module: bad magic number")
    return words


def find_entry_points(spirv: bytes) -> list[EntryPoint]:
    """The GLCompute entry points declared in a module, with their LocalSize."""
    words = spirv_words(spirv)
    names: dict[int, str] = {}
    sizes: dict[int, tuple[int, int, int]] = {}
    i = 5  # SPIR-V 2.3: the header is 5 words
    while i < len(words):
        count, opcode = int(words[i]) >> 16, int(words[i]) & 0xFFFF
        if count == 0 or i + count > len(words):
            raise ValueError(f"malformed SPIR-V: instruction at word {i} has length {count}")
        if opcode == _OP_ENTRY_POINT and words[i + 1] == _EXECUTION_MODEL_GLCOMPUTE:
            raw = words[i + 3 : i + count].astype("<u4").tobytes()
            names[int(words[i + 2])] = raw.split(b"\0", 1)[0].decode("utf-8")
        elif opcode == _OP_EXECUTION_MODE and words[i + 2] == _EXECUTION_MODE_LOCAL_SIZE:
            sizes[int(words[i + 1])] = tuple(int(w) for w in words[i + 3 : i + 6])
        elif opcode == _OP_FUNCTION:
            break  # entry points and execution modes precede all functions (SPIR-V 2.4)
        i += count
    return [EntryPoint(name, sizes.get(fid)) for fid, name in names.items()]


def _release(state: Any, handles: dict) -> None:
    if state.device is None or state.hung:
        return
    vk, device = state.vk, state.device
    for key, destroy in (
        ("pool", vk.vkDestroyDescriptorPool),
        ("pipeline", vk.vkDestroyPipeline),
        ("layout", vk.vkDestroyPipelineLayout),
        ("set_layout", vk.vkDestroyDescriptorSetLayout),
        ("module", vk.vkDestroyShaderModule),
    ):
        if key in handles:
            destroy(device, handles.pop(key), None)


class ComputePipeline:
    """One kernel ready to dispatch on one device. Create with `VulkanRuntime.pipeline`."""

    def __init__(
        self,
        runtime: VulkanRuntime,
        spirv: bytes,
        *,
        num_buffers: int,
        push_constant_size: int,
        subgroup_size: int | None,
        name: str,
        entry: str | None,
    ):
        self.name = name
        self.num_buffers = num_buffers
        self.push_constant_size = push_constant_size
        self.entry, self.local_size = _pick_entry(spirv, entry, name)
        self.block_size = None
        if self.local_size is not None:
            runtime.check_local_size(self.local_size, name)
            self.block_size = self.local_size[0] * self.local_size[1] * self.local_size[2]
        self.required_subgroup_size, self.full_subgroups = _subgroup_request(
            runtime, subgroup_size, self.local_size, name
        )
        self._runtime = runtime
        self._handles: dict = {}
        self._finalizer = weakref.finalize(self, _release, runtime.state, self._handles)
        try:
            self._create(spirv)
        except BaseException:
            self.close()
            raise
        runtime.track(self)

    def _create(self, spirv: bytes) -> None:
        vk, device, h = self._runtime.vk, self._runtime.state.device, self._handles
        kernel = self.name
        module_info = vk.VkShaderModuleCreateInfo(codeSize=len(spirv), pCode=bytes(spirv))
        h["module"] = vk_call(
            "vkCreateShaderModule",
            vk.vkCreateShaderModule,
            device,
            module_info,
            None,
            kernel=kernel,
        )
        bindings = [
            vk.VkDescriptorSetLayoutBinding(
                binding=i,
                descriptorType=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER,
                descriptorCount=1,
                stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            )
            for i in range(self.num_buffers)
        ]
        h["set_layout"] = vk_call(
            "vkCreateDescriptorSetLayout",
            vk.vkCreateDescriptorSetLayout,
            device,
            vk.VkDescriptorSetLayoutCreateInfo(bindingCount=len(bindings), pBindings=bindings),
            None,
            kernel=kernel,
        )
        ranges = []
        if self.push_constant_size:
            ranges = [
                vk.VkPushConstantRange(
                    stageFlags=vk.VK_SHADER_STAGE_COMPUTE_BIT,
                    offset=0,
                    size=self.push_constant_size,
                )
            ]
        h["layout"] = vk_call(
            "vkCreatePipelineLayout",
            vk.vkCreatePipelineLayout,
            device,
            vk.VkPipelineLayoutCreateInfo(
                setLayoutCount=1,
                pSetLayouts=[h["set_layout"]],
                pushConstantRangeCount=len(ranges),
                pPushConstantRanges=ranges,
            ),
            None,
            kernel=kernel,
        )
        required = None
        flags = 0
        if self.required_subgroup_size is not None:
            required = vk.VkPipelineShaderStageRequiredSubgroupSizeCreateInfo(
                requiredSubgroupSize=self.required_subgroup_size
            )
        if self.full_subgroups:
            flags |= PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT
        stage = vk.VkPipelineShaderStageCreateInfo(
            pNext=required,
            flags=flags,
            stage=vk.VK_SHADER_STAGE_COMPUTE_BIT,
            module=h["module"],
            pName=self.entry,
        )
        # NVIDIA's driver failed vkCreateComputePipelines with VK_ERROR_UNKNOWN unless
        # basePipelineIndex was -1 and a pipeline cache was given (gpu-host notes);
        # -1 is also what VUID-VkComputePipelineCreateInfo-flags-07985 expects when
        # no base pipeline is used.
        info = vk.VkComputePipelineCreateInfo(stage=stage, layout=h["layout"], basePipelineIndex=-1)
        pipelines = vk_call(
            "vkCreateComputePipelines",
            vk.vkCreateComputePipelines,
            device,
            self._runtime.pipeline_cache,
            1,
            [info],
            None,
            kernel=kernel,
        )
        h["pipeline"] = pipelines[0]
        if self.num_buffers:
            size = vk.VkDescriptorPoolSize(
                type=vk.VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, descriptorCount=self.num_buffers
            )
            h["pool"] = vk_call(
                "vkCreateDescriptorPool",
                vk.vkCreateDescriptorPool,
                device,
                vk.VkDescriptorPoolCreateInfo(maxSets=1, poolSizeCount=1, pPoolSizes=[size]),
                None,
                kernel=kernel,
            )
            sets = vk_call(
                "vkAllocateDescriptorSets",
                vk.vkAllocateDescriptorSets,
                device,
                vk.VkDescriptorSetAllocateInfo(
                    descriptorPool=h["pool"], descriptorSetCount=1, pSetLayouts=[h["set_layout"]]
                ),
                kernel=kernel,
            )
            self.descriptor_set = sets[0]
        else:
            self.descriptor_set = None

    @property
    def handle(self) -> Any:
        return self._handles["pipeline"]

    @property
    def layout(self) -> Any:
        return self._handles["layout"]

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return (
            f"<ComputePipeline {self.name!r} entry={self.entry!r} "
            f"local_size={self.local_size} buffers={self.num_buffers} "
            f"push={self.push_constant_size}B subgroup={self.required_subgroup_size}>"
        )


def _pick_entry(spirv: bytes, entry: str | None, kernel: str) -> tuple[str, Any]:
    points = find_entry_points(spirv)
    if entry is not None:
        points = [p for p in points if p.name == entry]
    if len(points) != 1:
        found = ", ".join(repr(p.name) for p in find_entry_points(spirv)) or "none"
        want = f"entry point {entry!r}" if entry else "exactly one GLCompute entry point"
        raise ValueError(f"SPIR-V of kernel {kernel!r} needs {want} (found: {found})")
    return points[0].name, points[0].local_size


def _subgroup_request(
    runtime: VulkanRuntime, subgroup: int | None, local_size: Any, kernel: str
) -> tuple[int | None, bool]:
    """(requiredSubgroupSize or None, REQUIRE_FULL_SUBGROUPS) for a kernel built for H."""
    caps = runtime.caps
    if subgroup is None:
        return None, False
    if caps.subgroup_size_control and subgroup in caps.subgroup_sizes:
        # VUID-VkPipelineShaderStageCreateInfo-flags-02759: with full subgroups the
        # local size in X must be a multiple of the required subgroup size.
        full = (
            bool(caps.extra.get("compute_full_subgroups"))
            and local_size is not None
            and local_size[0] % subgroup == 0
        )
        return subgroup, full
    if subgroup == caps.subgroup_size:
        return None, False
    sizes = caps.subgroup_sizes if caps.subgroup_size_control else (caps.subgroup_size,)
    raise ValueError(
        f"kernel {kernel!r} was built for subgroup size {subgroup}, but {caps.name} runs "
        f"subgroups of {', '.join(map(str, sizes))}: rebuild it with "
        f"subgroup=choose_subgroup(caps, W)"
    )


# ---------------------------------------------------------------- on-disk cache


def cache_file(cache_dir: str | os.PathLike, pdev: PhysicalDevice) -> Path:
    """The pipeline-cache file of one device and driver build in `cache_dir`."""
    name = (
        f"vk-pipelines-{pdev.vendor_id:04x}-{pdev.device_id:04x}-"
        f"{pdev.driver_version:x}-{pdev.pipeline_cache_uuid.hex()}.bin"
    )
    return Path(cache_dir) / name


def load_cache_data(path: Path, pdev: PhysicalDevice) -> bytes:
    """The saved cache data if its header matches this device, else b"".

    The header is VkPipelineCacheHeaderVersionOne: headerSize, headerVersion (1),
    vendorID, deviceID, pipelineCacheUUID[16]. Drivers must ignore data of another
    device, but checking first keeps a damaged file away from a buggy driver.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return b""
    if len(data) < 32:
        return b""
    size, version, vendor, device = np.frombuffer(data[:16], dtype="<u4")
    if (
        size < 32
        or version != 1
        or vendor != pdev.vendor_id
        or device != pdev.device_id
        or data[16:32] != pdev.pipeline_cache_uuid
    ):
        return b""
    return data


def save_cache_data(path: Path, data: bytes) -> None:
    """Write the cache atomically (a crash or a concurrent process never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
