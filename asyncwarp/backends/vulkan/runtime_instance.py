"""Vulkan instance, device enumeration and selection, validation messages, release.

The part of the runtime that lives outside a logical device: `RuntimeState`
holds every handle a `VulkanRuntime` owns, and `release_runtime` destroys them
in order (children first) from `close()`, garbage collection or interpreter exit.
"""

from __future__ import annotations

import atexit
import logging
import math
import signal
import sys
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ...core.errors import BackendUnavailable
from .runtime_caps import DEVICE_TYPE_RANK, PhysicalDevice, describe
from .runtime_pipeline import save_cache_data
from .runtime_vk import (
    VulkanError,
    check_result,
    load_vulkan,
    make_version,
    version_tuple,
    vk_call,
)

log = logging.getLogger("asyncwarp.vulkan")

VALIDATION_LAYER = "VK_LAYER_KHRONOS_validation"
NO_DEVICE = (
    "no Vulkan device found: install your GPU's Vulkan driver, or "
    "mesa-vulkan-drivers (Debian/Ubuntu) for a CPU device (lavapipe)"
)
NO_VALIDATION = (
    f"the Vulkan validation layer {VALIDATION_LAYER} is not installed: install "
    "vulkan-validationlayers (Debian/Ubuntu) or the Vulkan SDK, or turn "
    "validation off"
)


class RuntimeState:
    """The Vulkan handles a runtime owns, shared with its buffers' and pipelines' finalizers.

    It holds no reference to the runtime, so the runtime can be garbage-collected.
    """

    def __init__(self, vk: Any):
        self.vk = vk
        self.instance = None
        self.messenger = None
        self.destroy_messenger: Callable | None = None
        self.callback_handle = None  # keeps the validation callback's user data alive
        self.messages: list[str] = []  # validation errors not yet reported
        self.device = None
        self.objects: dict[str, Any] = {}  # command pool, fence, query pool, pipeline cache
        self.children: weakref.WeakSet = weakref.WeakSet()
        self.cache_path = None
        self.cache_dirty = False
        self.hung = ""  # name of the kernel that hung the device, if one did
        self.lost = False


def _on_validation_message(severity: int, types: int, data: Any, user_data: Any) -> int:
    vk = load_vulkan()
    messages = vk.ffi.from_handle(user_data)
    text = vk.ffi.string(data.pMessage).decode("utf-8", errors="replace")
    if severity & vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT:
        messages.append(text)
    else:
        log.warning("Vulkan validation: %s", text)
    return 0  # VK_FALSE: do not abort the call (VUID-PFN_vkDebugUtilsMessengerCallbackEXT)


def create_instance(state: RuntimeState, validation: bool) -> int:
    """Create the instance (API 1.3 or what the loader supports); returns the API version."""
    vk = state.vk
    try:
        loader = vk.vkEnumerateInstanceVersion()
    except (AttributeError, vk.ProcedureNotFoundError):
        loader = make_version(1, 0)  # a Vulkan 1.0 loader has no vkEnumerateInstanceVersion
    if version_tuple(loader)[:2] < (1, 1):
        raise BackendUnavailable(
            "the Vulkan loader supports only Vulkan 1.0; asyncwarp needs "
            "1.1 or newer: update libvulkan1 / the Vulkan runtime"
        )
    api = min(loader & ~0xFFF, make_version(1, 3))
    available_ext = {
        e.extensionName
        for e in vk_call(
            "vkEnumerateInstanceExtensionProperties",
            vk.vkEnumerateInstanceExtensionProperties,
            None,
        )
    }
    layers, extensions, flags = [], [], 0
    if validation:
        present = {
            layer.layerName
            for layer in vk_call(
                "vkEnumerateInstanceLayerProperties", vk.vkEnumerateInstanceLayerProperties
            )
        }
        if VALIDATION_LAYER not in present:
            raise BackendUnavailable(NO_VALIDATION)
        layers.append(VALIDATION_LAYER)
        if "VK_EXT_debug_utils" in available_ext:
            extensions.append("VK_EXT_debug_utils")
    if "VK_KHR_portability_enumeration" in available_ext:
        # Lists portability-subset devices (MoltenVK) too (VK_KHR_portability_enumeration).
        extensions.append("VK_KHR_portability_enumeration")
        flags |= vk.VK_INSTANCE_CREATE_ENUMERATE_PORTABILITY_BIT_KHR
    app = vk.VkApplicationInfo(
        pApplicationName="asyncwarp",
        applicationVersion=1,
        pEngineName="asyncwarp",
        engineVersion=1,
        apiVersion=api,
    )
    info = vk.VkInstanceCreateInfo(
        flags=flags,
        pApplicationInfo=app,
        enabledLayerCount=len(layers),
        ppEnabledLayerNames=layers,
        enabledExtensionCount=len(extensions),
        ppEnabledExtensionNames=extensions,
    )
    try:
        state.instance = vk_call("vkCreateInstance", vk.vkCreateInstance, info, None)
    except VulkanError as exc:
        if exc.result in ("VK_ERROR_INCOMPATIBLE_DRIVER", "VK_ERROR_INITIALIZATION_FAILED"):
            raise BackendUnavailable(f"{NO_DEVICE} ({exc})") from None
        raise
    if "VK_EXT_debug_utils" in extensions:
        state.callback_handle = vk.ffi.new_handle(state.messages)
        severity = (
            vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_WARNING_BIT_EXT
            | vk.VK_DEBUG_UTILS_MESSAGE_SEVERITY_ERROR_BIT_EXT
        )
        kinds = (
            vk.VK_DEBUG_UTILS_MESSAGE_TYPE_VALIDATION_BIT_EXT
            | vk.VK_DEBUG_UTILS_MESSAGE_TYPE_PERFORMANCE_BIT_EXT
        )
        create = vk.vkGetInstanceProcAddr(state.instance, "vkCreateDebugUtilsMessengerEXT")
        state.destroy_messenger = vk.vkGetInstanceProcAddr(
            state.instance, "vkDestroyDebugUtilsMessengerEXT"
        )
        messenger_info = vk.VkDebugUtilsMessengerCreateInfoEXT(
            messageSeverity=severity,
            messageType=kinds,
            pfnUserCallback=_on_validation_message,
            pUserData=state.callback_handle,
        )
        state.messenger = vk_call(
            "vkCreateDebugUtilsMessengerEXT", create, state.instance, messenger_info, None
        )
    return api


def enumerate_devices(state: RuntimeState, api: int) -> list[PhysicalDevice]:
    """Physical devices in the default order: discrete, integrated, virtual, CPU."""
    vk = state.vk
    handles = vk_call("vkEnumeratePhysicalDevices", vk.vkEnumeratePhysicalDevices, state.instance)
    devices = [describe(vk, h, api) for h in handles]
    order = sorted(range(len(devices)), key=lambda i: (DEVICE_TYPE_RANK[devices[i].device_type], i))
    return [devices[i] for i in order]


def select_device(devices: list[PhysicalDevice], device: int | str) -> PhysicalDevice:
    """The device at an index of the default order, or the first whose name etc. matches."""
    listing = "; ".join(f"{i}: {d}" for i, d in enumerate(devices))
    if isinstance(device, bool) or not isinstance(device, (int, np.integer, str)):
        raise TypeError(f"device must be an index or a name substring, not {device!r}")
    if isinstance(device, str):
        for d in devices:
            if d.matches(device):
                return d
        raise ValueError(f"no Vulkan device matches {device!r} (devices: {listing})")
    if not 0 <= device < len(devices):
        raise ValueError(f"Vulkan device index {device} is out of range (devices: {listing})")
    return devices[int(device)]


def release_runtime(state: RuntimeState) -> None:
    """Destroy everything a runtime created, children first; never raises."""
    vk = state.vk
    try:
        if state.device is not None and state.hung:
            # The hung kernel may still run and use every object of the device:
            # destroying them (or waiting for idle) could crash or block forever.
            log.warning("leaking the Vulkan device and instance of hung kernel %r", state.hung)
            state.device = state.instance = None
            return
        if state.device is not None:
            device = state.device
            try:
                vk.vkDeviceWaitIdle(device)
            except (vk.VkError, vk.VkException):
                pass  # a lost device may still be destroyed (Vulkan spec, "Lost Device")
            for child in list(state.children):
                child.close()
            cache = state.objects.pop("pipeline_cache", None)
            if cache is not None:
                _save_pipeline_cache(state, cache)
                vk.vkDestroyPipelineCache(device, cache, None)
            for key, destroy in (
                ("query_pool", vk.vkDestroyQueryPool),
                ("fence", vk.vkDestroyFence),
                ("command_pool", vk.vkDestroyCommandPool),
            ):
                if key in state.objects:
                    destroy(device, state.objects.pop(key), None)
            state.device = None
            vk.vkDestroyDevice(device, None)
        if state.messenger is not None:
            state.destroy_messenger(state.instance, state.messenger, None)
            state.messenger = None
        if state.instance is not None:
            instance, state.instance = state.instance, None
            vk.vkDestroyInstance(instance, None)
    except Exception:  # a finalizer must not raise, at exit least of all
        log.exception("error while releasing a Vulkan runtime")


def _save_pipeline_cache(state: RuntimeState, cache: Any) -> None:
    if state.cache_path is None or not state.cache_dirty:
        return
    vk = state.vk
    try:
        size = vk.ffi.new("size_t*")
        check_result(
            "vkGetPipelineCacheData",
            vk.lib.vkGetPipelineCacheData(state.device, cache, size, vk.ffi.NULL),
        )
        data = vk.ffi.new("char[]", size[0])
        check_result(
            "vkGetPipelineCacheData", vk.lib.vkGetPipelineCacheData(state.device, cache, size, data)
        )
        save_cache_data(state.cache_path, bytes(vk.ffi.buffer(data, size[0])))
    except (OSError, VulkanError) as exc:
        log.warning("could not save the Vulkan pipeline cache to %s: %s", state.cache_path, exc)


_exit_alarm_s: float | None = None


def arm_exit_alarm(grace_s: float | None) -> None:
    """After a hung kernel, make sure the process can still end once Python exits.

    Measured on NVIDIA's driver (580): with a kernel still running, the driver's
    teardown at process exit waits for it forever, and so does vkDestroyDevice; only
    _exit leaves. At interpreter exit this arms SIGALRM (default action: terminate)
    `grace_s` seconds ahead, so a process whose exit blocks ends anyway, and one
    whose exit does not block never notices.
    """
    global _exit_alarm_s
    if grace_s is None or not hasattr(signal, "alarm"):
        return
    if _exit_alarm_s is None:
        atexit.register(_alarm_at_exit)
    _exit_alarm_s = grace_s if _exit_alarm_s is None else min(_exit_alarm_s, grace_s)


def _alarm_at_exit() -> None:
    log.warning(
        "a hung Vulkan kernel may keep the driver from letting this process exit; "
        "it is terminated (SIGALRM) if still running in %g s",
        _exit_alarm_s,
    )
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(max(1, math.ceil(_exit_alarm_s)))
