"""Physical-device discovery and capability probing for the Vulkan runtime.

Describes each physical device, probes its properties and features into a
`core.backend.DeviceCaps` (what codegen reads), and decides which features and
extensions the runtime enables when it creates the logical device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...core.backend import DeviceCaps
from .runtime_vk import (
    SHADER_STAGE_BITS,
    SHADER_STAGE_COMPUTE,
    SUBGROUP_FEATURE_BITS,
    cstr,
    version_tuple,
    vk_call,
)

DEVICE_TYPES = {0: "other", 1: "integrated", 2: "discrete", 3: "virtual", 4: "cpu"}
# Default device order: discrete GPUs, integrated, virtual, then CPU devices.
DEVICE_TYPE_RANK = {"discrete": 0, "integrated": 1, "virtual": 2, "cpu": 3, "other": 4}

# PCI vendor IDs, and the Khronos vendor IDs (VkVendorId) for vendors without one.
VENDORS = {
    0x1002: "AMD",
    0x1010: "Imagination",
    0x106B: "Apple",
    0x10DE: "NVIDIA",
    0x13B5: "ARM",
    0x14E4: "Broadcom",
    0x1AE0: "Google",
    0x5143: "Qualcomm",
    0x8086: "Intel",
    0x10001: "Vivante",
    0x10002: "VeriSilicon",
    0x10003: "Kazan",
    0x10004: "Codeplay",
    0x10005: "Mesa",
    0x10006: "PoCL",
    0x10007: "MobileEye",
}
LLVMPIPE_DRIVER_ID = 13  # VK_DRIVER_ID_MESA_LLVMPIPE: lavapipe
# Names users know a driver by that its deviceName does not contain (VkDriverId).
DRIVER_ALIASES = {
    LLVMPIPE_DRIVER_ID: "lavapipe",
    1: "amdvlk",
    3: "radv",
    4: "anv intel-mesa",
    5: "nvidia",
}

# Feature structures queried and enabled, with the core version that promoted them
# and the extension that provides them before it. Each maps Vulkan fields to the
# names of DeviceFeatures. VkPhysicalDeviceVulkan1xFeatures are deliberately not
# used: VUID-VkDeviceCreateInfo-pNext-02830 forbids chaining them together with
# these per-feature structures.
FEATURE_STRUCTS: tuple[tuple[str, tuple[int, int] | None, str, dict[str, str]], ...] = (
    (
        "VkPhysicalDeviceVulkanMemoryModelFeatures",
        (1, 2),
        "VK_KHR_vulkan_memory_model",
        {
            "vulkanMemoryModel": "vulkan_memory_model",
            "vulkanMemoryModelDeviceScope": "memory_model_device_scope",
        },
    ),
    (
        "VkPhysicalDeviceShaderAtomicInt64Features",
        (1, 2),
        "VK_KHR_shader_atomic_int64",
        {
            "shaderBufferInt64Atomics": "buffer_int64_atomics",
            "shaderSharedInt64Atomics": "shared_int64_atomics",
        },
    ),
    (
        "VkPhysicalDeviceShaderSubgroupExtendedTypesFeatures",
        (1, 2),
        "VK_KHR_shader_subgroup_extended_types",
        {"shaderSubgroupExtendedTypes": "subgroup_extended_types"},
    ),
    (
        "VkPhysicalDevice8BitStorageFeatures",
        (1, 2),
        "VK_KHR_8bit_storage",
        {"storageBuffer8BitAccess": "storage_buffer_8bit"},
    ),
    (
        "VkPhysicalDeviceShaderFloat16Int8Features",
        (1, 2),
        "VK_KHR_shader_float16_int8",
        {"shaderInt8": "int8"},
    ),
    (
        "VkPhysicalDeviceSubgroupSizeControlFeatures",
        (1, 3),
        "VK_EXT_subgroup_size_control",
        {
            "subgroupSizeControl": "subgroup_size_control",
            "computeFullSubgroups": "compute_full_subgroups",
        },
    ),
    (
        "VkPhysicalDeviceShaderClockFeaturesKHR",
        None,
        "VK_KHR_shader_clock",
        {
            "shaderSubgroupClock": "shader_subgroup_clock",
            "shaderDeviceClock": "shader_device_clock",
        },
    ),
)
CORE_FEATURES = {"shaderInt64": "int64", "shaderFloat64": "float64"}


@dataclass(frozen=True)
class PhysicalDevice:
    """One physical device as enumerated: identity, API version, extensions, driver."""

    handle: Any
    name: str
    device_type: str
    vendor_id: int
    device_id: int
    api_version: tuple[int, int, int]  # min(instance, device): what may be used
    driver_version: int
    extensions: frozenset
    driver_id: int
    driver_name: str
    driver_info: str
    pipeline_cache_uuid: bytes

    @property
    def vendor(self) -> str:
        return VENDORS.get(self.vendor_id, f"0x{self.vendor_id:04x}")

    def has(self, version: tuple[int, int] | None, extension: str) -> bool:
        """Whether functionality promoted in `version` (or given by `extension`) is there."""
        return (version is not None and self.api_version[:2] >= version) or (
            extension in self.extensions
        )

    def matches(self, text: str) -> bool:
        """Case-insensitive substring match on name, driver, vendor, type and aliases."""
        haystack = " ".join(
            [
                self.name,
                self.driver_name,
                self.driver_info,
                self.vendor,
                self.device_type,
                DRIVER_ALIASES.get(self.driver_id, ""),
            ]
        ).lower()
        return text.lower() in haystack

    def __str__(self) -> str:
        return f"{self.name} ({self.device_type}, {self.driver_name or self.vendor})"


@dataclass
class DeviceFeatures:
    """The optional features the runtime enables (each only where the device has it)."""

    flags: dict = field(default_factory=dict)  # DeviceFeatures name -> supported
    extensions: tuple = ()  # device extensions to enable for them

    def __getitem__(self, name: str) -> bool:
        return bool(self.flags.get(name, False))


@dataclass(frozen=True)
class DeviceLimits:
    """The limits the runtime checks before it records any work."""

    max_group_count_x: int
    max_group_size_x: int
    max_group_invocations: int
    max_push_constants: int
    max_storage_buffers: int
    max_storage_buffer_range: int
    queue_family: int
    timestamp_valid_bits: int  # of the chosen queue family; 0 = no timestamps
    timestamp_period_ns: float


def describe(vk, handle: Any, instance_api: int) -> PhysicalDevice:
    """Identity, effective API version, extensions and driver of one physical device."""
    props = vk_call("vkGetPhysicalDeviceProperties", vk.vkGetPhysicalDeviceProperties, handle)
    api = version_tuple(props.apiVersion)
    if api[:2] > version_tuple(instance_api)[:2]:  # only what the instance allows is usable
        api = version_tuple(instance_api)
    extensions = frozenset(
        e.extensionName
        for e in vk_call(
            "vkEnumerateDeviceExtensionProperties",
            vk.vkEnumerateDeviceExtensionProperties,
            handle,
            None,
        )
    )
    driver_id, driver_name, driver_info = 0, "", ""
    if api[:2] >= (1, 2) or "VK_KHR_driver_properties" in extensions:
        driver = vk.VkPhysicalDeviceDriverProperties()
        vk_call(
            "vkGetPhysicalDeviceProperties2",
            vk.vkGetPhysicalDeviceProperties2,
            handle,
            vk.VkPhysicalDeviceProperties2(pNext=driver),
        )
        driver_id = driver.driverID
        driver_name, driver_info = cstr(driver.driverName), cstr(driver.driverInfo)
    return PhysicalDevice(
        handle=handle,
        name=cstr(props.deviceName),
        device_type=DEVICE_TYPES.get(props.deviceType, "other"),
        vendor_id=props.vendorID,
        device_id=props.deviceID,
        api_version=api,
        driver_version=props.driverVersion,
        extensions=extensions,
        driver_id=driver_id,
        driver_name=driver_name,
        driver_info=driver_info,
        pipeline_cache_uuid=bytes(props.pipelineCacheUUID),
    )


def _feature_structs(vk, pdev: PhysicalDevice, enable: DeviceFeatures | None):
    """The pNext structures for a query (enable None) or for device creation."""
    structs = []
    for ctor, version, extension, fields in FEATURE_STRUCTS:
        if not pdev.has(version, extension):
            continue
        values = {}
        if enable is not None:
            values = {vk_name: 1 for vk_name, name in fields.items() if enable[name]}
            if not values:
                continue
        structs.append((getattr(vk, ctor)(**values), fields))
    return structs


def _chain(vk, structs: list, core: dict):
    """Link `structs` into a VkPhysicalDeviceFeatures2; the caller keeps `structs` alive."""
    head = None
    for struct, _ in reversed(structs):
        struct.pNext = vk.ffi.NULL if head is None else vk.ffi.addressof(head)
        head = struct
    features2 = vk.VkPhysicalDeviceFeatures2(features=vk.VkPhysicalDeviceFeatures(**core))
    features2.pNext = vk.ffi.NULL if head is None else vk.ffi.addressof(head)
    return features2


def query_features(vk, pdev: PhysicalDevice) -> DeviceFeatures:
    """Which optional features the device supports, and the extensions they need."""
    structs = _feature_structs(vk, pdev, None)
    features2 = _chain(vk, structs, {})
    vk_call("vkGetPhysicalDeviceFeatures2", vk.vkGetPhysicalDeviceFeatures2, pdev.handle, features2)
    flags = {name: bool(getattr(features2.features, f)) for f, name in CORE_FEATURES.items()}
    for struct, fields in structs:
        flags.update({name: bool(getattr(struct, f)) for f, name in fields.items()})
    extensions = []
    for _, version, extension, fields in FEATURE_STRUCTS:
        promoted = version is not None and pdev.api_version[:2] >= version
        if (
            not promoted
            and extension in pdev.extensions
            and any(flags.get(n) for n in fields.values())
        ):
            extensions.append(extension)
    # VUID-VkDeviceCreateInfo-pProperties-04451: a portability-subset device
    # (MoltenVK) must have that extension enabled.
    if "VK_KHR_portability_subset" in pdev.extensions:
        extensions.append("VK_KHR_portability_subset")
    return DeviceFeatures(flags, tuple(extensions))


def enable_chain(vk, pdev: PhysicalDevice, features: DeviceFeatures):
    """The VkPhysicalDeviceFeatures2 to chain into VkDeviceCreateInfo.pNext."""
    structs = _feature_structs(vk, pdev, features)
    core = {f: 1 for f, name in CORE_FEATURES.items() if features[name]}
    return _chain(vk, structs, core), structs  # structs: keep alive until vkCreateDevice


def _choose_queue_family(vk, handle) -> tuple[int, int]:
    """(index, timestampValidBits) of a compute queue family, preferring one with timestamps."""
    families = vk_call(
        "vkGetPhysicalDeviceQueueFamilyProperties",
        vk.vkGetPhysicalDeviceQueueFamilyProperties,
        handle,
    )
    compute = [
        (i, f.timestampValidBits)
        for i, f in enumerate(families)
        if f.queueFlags & vk.VK_QUEUE_COMPUTE_BIT and f.queueCount > 0
    ]
    if not compute:
        raise ValueError("this Vulkan device has no compute queue")
    return max(compute, key=lambda c: (c[1] > 0, -c[0]))


def _bit_names(mask: int, table: dict) -> list[str]:
    return [name for name, bit in table.items() if mask & bit]


def probe(vk, pdev: PhysicalDevice) -> tuple[DeviceCaps, DeviceFeatures, DeviceLimits]:
    """Everything the runtime and codegen need to know about one physical device."""
    if pdev.api_version[:2] < (1, 1):
        raise ValueError(
            f"{pdev} supports Vulkan {pdev.api_version[0]}."
            f"{pdev.api_version[1]}; asyncwarp needs Vulkan 1.1 or newer"
        )
    features = query_features(vk, pdev)
    subgroup = vk.VkPhysicalDeviceSubgroupProperties()
    size_control = None
    head = subgroup
    if pdev.has((1, 3), "VK_EXT_subgroup_size_control"):
        size_control = vk.VkPhysicalDeviceSubgroupSizeControlProperties()
        size_control.pNext = vk.ffi.addressof(subgroup)
        head = size_control
    # VK_NV_shader_sm_builtins reports the SM count, which sizes persistent grids;
    # Vulkan has no vendor-neutral query for it.
    sm_builtins = None
    if "VK_NV_shader_sm_builtins" in pdev.extensions:
        sm_builtins = vk.VkPhysicalDeviceShaderSMBuiltinsPropertiesNV()
        sm_builtins.pNext = vk.ffi.addressof(head)
        head = sm_builtins
    props2 = vk.VkPhysicalDeviceProperties2()
    props2.pNext = vk.ffi.addressof(head)
    vk_call(
        "vkGetPhysicalDeviceProperties2", vk.vkGetPhysicalDeviceProperties2, pdev.handle, props2
    )
    limits = props2.properties.limits

    sizes: tuple = (subgroup.subgroupSize,)
    can_pin = False
    if size_control is not None and features["subgroup_size_control"]:
        can_pin = bool(size_control.requiredSubgroupSizeStages & SHADER_STAGE_COMPUTE)
        lo, hi = size_control.minSubgroupSize, size_control.maxSubgroupSize
        if can_pin and 0 < lo <= hi:
            sizes = tuple(1 << b for b in range(lo.bit_length() - 1, hi.bit_length()))

    queue_family, valid_bits = _choose_queue_family(vk, pdev.handle)
    device_limits = DeviceLimits(
        max_group_count_x=limits.maxComputeWorkGroupCount[0],
        max_group_size_x=limits.maxComputeWorkGroupSize[0],
        max_group_invocations=limits.maxComputeWorkGroupInvocations,
        max_push_constants=limits.maxPushConstantsSize,
        max_storage_buffers=limits.maxPerStageDescriptorStorageBuffers,
        max_storage_buffer_range=limits.maxStorageBufferRange,
        queue_family=queue_family,
        timestamp_valid_bits=valid_bits,
        timestamp_period_ns=float(limits.timestampPeriod),
    )
    # Only the Device-scope clock (shaderDeviceClock) is comparable across subgroups
    # and blocks, which a kernel-wide `timer` and the watchdog need.
    clock = features["shader_device_clock"]
    driver = " ".join(s for s in (pdev.driver_name, pdev.driver_info) if s)
    extra = {
        "api_version": ".".join(map(str, pdev.api_version)),
        "device_type": pdev.device_type,
        "vendor_id": pdev.vendor_id,
        "device_id": pdev.device_id,
        "driver_id": pdev.driver_id,
        "driver_version": pdev.driver_version,
        "subgroup_ops": _bit_names(subgroup.supportedOperations, SUBGROUP_FEATURE_BITS),
        "subgroup_stages": _bit_names(subgroup.supportedStages, SHADER_STAGE_BITS),
        "subgroup_size_min": size_control.minSubgroupSize if size_control else None,
        "subgroup_size_max": size_control.maxSubgroupSize if size_control else None,
        "required_subgroup_size_stages": _bit_names(
            size_control.requiredSubgroupSizeStages, SHADER_STAGE_BITS
        )
        if size_control
        else [],
        "compute_full_subgroups": features["compute_full_subgroups"],
        "vulkan_memory_model": features["vulkan_memory_model"],
        "vulkan_memory_model_device_scope": features["memory_model_device_scope"],
        "shared_int64_atomics": features["shared_int64_atomics"],
        "subgroup_extended_types": features["subgroup_extended_types"],
        "storage_buffer_8bit": features["storage_buffer_8bit"] and features["int8"],
        "shader_subgroup_clock": features["shader_subgroup_clock"],
        "shader_device_clock": features["shader_device_clock"],
        "timestamp_period_ns": float(limits.timestampPeriod),
        "timestamp_compute_and_graphics": bool(limits.timestampComputeAndGraphics),
        "timestamps": valid_bits > 0,
        "max_group_count": list(limits.maxComputeWorkGroupCount),
        "max_group_size": list(limits.maxComputeWorkGroupSize),
        "max_push_constants_bytes": limits.maxPushConstantsSize,
        "max_storage_buffers": limits.maxPerStageDescriptorStorageBuffers,
        "max_storage_buffer_range": limits.maxStorageBufferRange,
        "enabled_extensions": list(features.extensions),
    }
    if sm_builtins is not None and sm_builtins.shaderSMCount:
        extra["sm_count"] = sm_builtins.shaderSMCount
        extra["warps_per_sm"] = sm_builtins.shaderWarpsPerSM
    if pdev.driver_id == LLVMPIPE_DRIVER_ID:
        # Measured on Mesa 22.3 lavapipe: a loop stops after 65535 iterations, as if its
        # condition had failed (gallivm's loop limiter), so a longer loop silently
        # computes a wrong result and a spin wait gives up instead of hanging.
        extra["loop_iteration_limit"] = 65535
        # Mesa 22.3 lavapipe runs a Workgroup- or Device-scope memory barrier in divergent
        # control flow as a workgroup execution barrier, abandoning invocations that do
        # not reach it; the emitter then uses Subgroup-scope fences (emit_spirv's
        # subgroup_fences), which lavapipe runs correctly.
        extra["subgroup_fences"] = True
        # known: a workgroup runs on one thread, its subgroups one after another between
        # barriers, and with LP_NUM_THREADS=1 workgroups too (core/progress.py)
        extra["progress_known"] = True
    caps = DeviceCaps(
        backend="vulkan",
        name=pdev.name,
        vendor=pdev.vendor,
        driver=driver or f"driver version 0x{pdev.driver_version:x}",
        subgroup_size=subgroup.subgroupSize,
        subgroup_size_control=can_pin,
        subgroup_sizes=sizes,
        shared_memory_bytes=limits.maxComputeSharedMemorySize,
        max_block_threads=min(
            limits.maxComputeWorkGroupInvocations, limits.maxComputeWorkGroupSize[0]
        ),
        int64=features["int64"],
        float64=features["float64"],
        int64_atomics=features["buffer_int64_atomics"],
        arch=None,
        # The Vulkan spec promises no forward progress at any scope; the conformance
        # probes measure what a particular device does.
        progress={"lane": False, "warp": False, "block": False},
        timer=clock,
        extra=extra,
    )
    return caps, features, device_limits


def choose_subgroup(caps: DeviceCaps, warp_width: int) -> int:
    """The hardware subgroup size H to build a kernel of logical warp width W for.

    W itself where the device can run it (its default size, or a size a pipeline may
    require); otherwise, on devices that can pin a size, the largest one below W
    (fewest folded copies), else the smallest; otherwise the device's default size.
    """
    if warp_width < 1 or warp_width & (warp_width - 1):
        raise ValueError(f"warp width must be a power of two, not {warp_width}")
    sizes = tuple(caps.subgroup_sizes) if caps.subgroup_size_control else ()
    if warp_width == caps.subgroup_size or warp_width in sizes:
        return warp_width
    if not sizes:
        return caps.subgroup_size
    below = [s for s in sizes if s <= warp_width]
    return max(below) if below else min(sizes)
