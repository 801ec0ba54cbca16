"""Backends: each an emitter plus a runtime behind core.backend.Backend.

`get(name, device)` returns a ready backend or raises BackendUnavailable saying
why and what to install; `status()` reports every backend, for `asyncwarp info`.
Backends are created lazily and kept per (name, device).
"""

from __future__ import annotations

import importlib

from ..core.errors import BackendUnavailable

# name -> (module, class); imported only when asked for, so a missing optional
# dependency of one backend never breaks another.
_CLASSES = {
    "sim": ("asyncwarp.backends.sim", "SimBackend"),
    "cuda": ("asyncwarp.backends.cuda.backend", "CudaBackend"),
    "vulkan": ("asyncwarp.backends.vulkan.backend", "VulkanBackend"),
}
AUTO_ORDER = ("cuda", "vulkan", "sim")

_instances: dict = {}
_status: dict = {}


def _create(name: str, device):
    from ..core import config

    module, cls = _CLASSES[name]
    cfg = config.current()
    kwargs = {"device": device}
    if name == "vulkan":
        kwargs.update(validation=cfg.vk_validation, cache_dir=cfg.cache_dir / "vulkan")
    try:
        return getattr(importlib.import_module(module), cls)(**kwargs)
    except ImportError as e:  # the backend's own module failed to import
        raise BackendUnavailable(f"the {name} backend cannot be imported: {e}") from e


def available(name: str, device=0) -> tuple[bool, str]:
    """(usable, reason) for one backend; cached per process."""
    key = (name, device)
    if key not in _status:
        try:
            backend = _create(name, device)
            _status[key] = backend.available()
            if _status[key][0]:
                _instances[key] = backend
        except BackendUnavailable as e:
            _status[key] = (False, str(e))
    return _status[key]


def resolve(name: str, device=0) -> str:
    """'auto' becomes the first usable of cuda, vulkan, sim; other names pass through."""
    if name != "auto":
        return name
    for candidate in AUTO_ORDER:
        if available(candidate, device)[0]:
            return candidate
    return "sim"


def get(name: str, device=0):
    """The backend `name` ('auto' allowed) on `device`, ready to compile and launch."""
    name = resolve(name, device)
    if name not in _CLASSES:
        raise ValueError(f"unknown backend {name!r}; choose one of auto, {', '.join(_CLASSES)}")
    ok, reason = available(name, device)
    if not ok:
        raise BackendUnavailable(f"backend {name!r} is not available: {reason}")
    return _instances[(name, device)]


def status(device=0) -> dict[str, tuple[bool, str]]:
    return {name: available(name, device) for name in _CLASSES}
