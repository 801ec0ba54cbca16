"""The Vulkan runtime's access to the `vulkan` binding: lazy import, checked calls, errors.

Every Vulkan call of the runtime goes through `vk_call`, which turns the
binding's exceptions (classes named after the VkResult, raised without a
message) into a `VulkanError` naming the call, the VkResult and the kernel.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ...core.errors import BackendUnavailable, WatchdogTimeout

INSTALL_PACKAGE = "the `vulkan` Python package is not installed: pip install asyncwarp[vulkan]"
INSTALL_LOADER = (
    "the Vulkan loader (libvulkan.so.1) was not found: install libvulkan1 "
    "(Debian/Ubuntu: apt install libvulkan1) or your GPU driver's Vulkan support"
)

# Enum values the binding (1.3.275) lacks or sets to None; values from the Vulkan
# registry (vk.xml), which never renumbers an enum.
PIPELINE_SHADER_STAGE_CREATE_REQUIRE_FULL_SUBGROUPS_BIT = 0x2
SUBGROUP_FEATURE_BITS = {
    "basic": 0x1,
    "vote": 0x2,
    "arithmetic": 0x4,
    "ballot": 0x8,
    "shuffle": 0x10,
    "shuffle_relative": 0x20,
    "clustered": 0x40,
    "quad": 0x80,
}
SHADER_STAGE_BITS = {
    "vertex": 0x1,
    "tessellation_control": 0x2,
    "tessellation_evaluation": 0x4,
    "geometry": 0x8,
    "fragment": 0x10,
    "compute": 0x20,
}
SHADER_STAGE_COMPUTE = SHADER_STAGE_BITS["compute"]

_module: ModuleType | None = None


def load_vulkan() -> ModuleType:
    """The `vulkan` module, imported on first use; BackendUnavailable says what to install."""
    global _module
    if _module is None:
        try:
            import vulkan
        except ImportError:
            raise BackendUnavailable(INSTALL_PACKAGE) from None
        except OSError:  # the binding dlopens libvulkan at import time
            raise BackendUnavailable(INSTALL_LOADER) from None
        _module = vulkan
    return _module


def version_tuple(packed: int) -> tuple[int, int, int]:
    """(major, minor, patch) of a packed Vulkan version (VK_API_VERSION_MAJOR/MINOR/PATCH)."""
    return ((packed >> 22) & 0x7F, (packed >> 12) & 0x3FF, packed & 0xFFF)


def make_version(major: int, minor: int, patch: int = 0) -> int:
    return (major << 22) | (minor << 12) | patch


def cstr(chars: Any) -> str:
    """A fixed-size `char[N]` field of a Vulkan struct as a Python string.

    The binding already converts fields of the structs some calls return.
    """
    if isinstance(chars, str):
        return chars
    vk = load_vulkan()
    return vk.ffi.string(chars).decode("utf-8", errors="replace")


def _result_name(exc_type: type) -> str:
    # VkErrorOutOfDeviceMemory -> VK_ERROR_OUT_OF_DEVICE_MEMORY
    words = re.findall(r"[A-Z][a-z0-9]*", exc_type.__name__)
    return "_".join(w.upper() for w in words)


def _result_code(exc_type: type) -> int | None:
    vk = load_vulkan()
    for code, cls in vk._vulkan.exception_codes.items():
        if cls is exc_type:
            return code
    return None


class VulkanError(RuntimeError):
    """A Vulkan call failed: names the call, the VkResult and the kernel (if any)."""

    def __init__(
        self, call: str, result: str, code: int | None = None, kernel: str = "", detail: str = ""
    ):
        self.call = call
        self.result = result
        self.code = code
        self.kernel = kernel
        message = f"{call} failed with {result}"
        if code is not None:
            message += f" ({code})"
        if kernel:
            message += f" for kernel {kernel!r}"
        if detail:
            message += f": {detail}"
        super().__init__(message)


class VulkanTimeout(VulkanError, WatchdogTimeout):
    """A kernel did not finish within the host-side timeout (a hung kernel, reported)."""

    def __init__(self, kernel: str, timeout_s: float):
        VulkanError.__init__(
            self,
            "vkWaitForFences",
            "VK_TIMEOUT",
            2,
            kernel,
            f"the kernel did not finish within {timeout_s:g} s; it is probably hung (a spin "
            "wait without forward progress?). The device is left unusable: close this "
            "runtime and open a new one, or raise the timeout for long kernels. Some "
            "drivers (NVIDIA's) keep the process from exiting while the kernel runs",
        )
        self.pending = []
        self.timeout_s = timeout_s


def vk_call(name: str, fn: Callable, *args: Any, kernel: str = "") -> Any:
    """Call a function of the binding; a failing VkResult becomes a VulkanError."""
    vk = load_vulkan()
    try:
        return fn(*args)
    except (vk.VkError, vk.VkException) as exc:
        exc_type = exc if isinstance(exc, type) else type(exc)
        raise VulkanError(name, _result_name(exc_type), _result_code(exc_type), kernel) from None
    except KeyError as exc:
        # The binding looks a non-success VkResult up in its table and raises KeyError
        # for codes it does not know (newer drivers, newer extensions).
        raise VulkanError(name, f"an unrecognised VkResult {exc.args[0]!r}", None, kernel) from None


def check_result(name: str, result: int, kernel: str = "") -> None:
    """Check a raw VkResult returned by a function called through `vk.lib`."""
    vk = load_vulkan()
    if result == vk.VK_SUCCESS:
        return
    cls = vk._vulkan.exception_codes.get(result)
    text = _result_name(cls) if cls is not None else "an unrecognised VkResult"
    raise VulkanError(name, text, result, kernel)
