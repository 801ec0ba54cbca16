"""Process-wide configuration: `aw.init(...)` and every environment variable asyncwarp reads.

No other module reads `os.environ`; they ask `current()` instead, so the
settings in force are visible in one place (`asyncwarp info` prints them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from .backend import PROGRESS_MODES

BACKENDS = ("auto", "sim", "cuda", "vulkan")
WARP_WIDTHS = (32, 64)

# name -> (field, meaning); the README's table is generated from the same words.
ENV_VARS = {
    "ASYNCWARP_BACKEND": ("backend", "auto | sim | cuda | vulkan (default auto)"),
    "ASYNCWARP_WARP_WIDTH": ("warp_width", "logical warp width W, 32 or 64 (default 32)"),
    "ASYNCWARP_DEVICE": ("device", "device index, or a name substring for Vulkan (default 0)"),
    "ASYNCWARP_PROGRESS": ("progress", "default progress mode of kernels that set none: "
                           "auto | independent | cooperative (default auto)"),
    "ASYNCWARP_CACHE_DIR": ("cache_dir", "on-disk kernel cache (default ~/.cache/asyncwarp)"),
    "ASYNCWARP_DISK_CACHE": ("disk_cache", "0 disables the on-disk kernel cache"),
    "ASYNCWARP_PTXAS": ("ptxas", "path of the ptxas used for PTX checks"),
    "ASYNCWARP_VK_VALIDATION": ("vk_validation", "1 enables the Vulkan validation layer"),
    "ASYNCWARP_SIM_SUBGROUP": ("sim_subgroup", "the sim backend's pretend subgroup width H"),
    "ASYNCWARP_VALIDATE_SPIRV": ("validate_spirv", "1 runs spirv-val on every SPIR-V module "
                                 "the Vulkan backend compiles (the tests set it)"),
}


@dataclass(frozen=True)
class Config:
    backend: str = "auto"
    warp_width: int = 32
    device: int | str = 0
    progress: str = "auto"
    cache_dir: Path = Path.home() / ".cache" / "asyncwarp"
    disk_cache: bool = True
    ptxas: str | None = None
    vk_validation: bool = False
    sim_subgroup: int | None = None  # None: H = W
    validate_spirv: bool = False


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {name!r}")
    return name


def _check_progress(p: str) -> str:
    if p not in PROGRESS_MODES:
        raise ValueError(f"progress must be one of {', '.join(PROGRESS_MODES)}, not {p!r}")
    return p


def _check_warp_width(w) -> int:
    try:
        w = int(w)
    except (TypeError, ValueError):
        raise ValueError(f"warp_width must be 32 or 64, not {w!r}") from None
    if w not in WARP_WIDTHS:
        raise ValueError(f"warp_width must be 32 or 64, not {w}")
    return w


def _check_subgroup(h) -> int:
    h = int(h)
    if h < 4 or h > 128 or h & (h - 1):
        raise ValueError(f"the sim subgroup width must be a power of two in 4..128, not {h}")
    return h


def _device(value: str) -> int | str:
    return int(value) if value.strip().lstrip("-").isdigit() else value


def from_env(env=None) -> Config:
    """The configuration the environment asks for (ValueError names a bad variable)."""
    env = os.environ if env is None else env
    cfg = Config()
    parsers = {
        "backend": _check_backend,
        "warp_width": _check_warp_width,
        "device": _device,
        "progress": _check_progress,
        "cache_dir": lambda v: Path(v).expanduser(),
        "disk_cache": lambda v: v.strip() not in ("0", "false", "no", "off", ""),
        "ptxas": str,
        "vk_validation": lambda v: v.strip() in ("1", "true", "yes", "on"),
        "sim_subgroup": _check_subgroup,
        "validate_spirv": lambda v: v.strip() in ("1", "true", "yes", "on"),
    }
    changes = {}
    for var, (field, _) in ENV_VARS.items():
        if var in env:
            try:
                changes[field] = parsers[field](env[var])
            except ValueError as e:
                raise ValueError(f"environment variable {var}={env[var]!r}: {e}") from None
    return replace(cfg, **changes)


_current: Config | None = None


def current() -> Config:
    global _current
    if _current is None:
        _current = from_env()
    return _current


def init(backend: str | None = None, warp_width: int | None = None, device=None,
         progress: str | None = None, **more) -> Config:
    """Set the process defaults (arguments override the environment). Returns the config.

    `aw.init(backend="vulkan", warp_width=64, device="lavapipe")`.
    """
    global _current
    changes = {}
    if backend is not None:
        changes["backend"] = _check_backend(backend)
    if warp_width is not None:
        changes["warp_width"] = _check_warp_width(warp_width)
    if device is not None:
        changes["device"] = device
    if progress is not None:
        changes["progress"] = _check_progress(progress)
    if "sim_subgroup" in more and more["sim_subgroup"] is not None:
        more["sim_subgroup"] = _check_subgroup(more["sim_subgroup"])
    unknown = set(more) - set(Config.__dataclass_fields__)
    if unknown:
        raise TypeError(f"aw.init() got unknown options: {', '.join(sorted(unknown))}")
    _current = replace(from_env(), **changes, **more)
    return _current
