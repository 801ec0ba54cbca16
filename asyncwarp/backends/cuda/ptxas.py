"""Locating and running NVIDIA's `ptxas`, to check emitted PTX and build cubins without a GPU.

Search order: an explicit path (core.config passes ASYNCWARP_PTXAS), `ptxas` on
PATH, /usr/local/cuda/bin, the newest /usr/local/cuda-*/bin, and the
`nvidia-cuda-nvcc` wheel (nvidia/cuda_nvcc/bin/ptxas in site-packages).
"""

from __future__ import annotations

import functools
import glob
import os
import re
import shutil
import site
import subprocess
import sys
import tempfile

INSTALL_HINT = (
    "install the CUDA toolkit (ptxas is in its bin/ folder) or "
    "`pip install nvidia-cuda-nvcc`, or point ASYNCWARP_PTXAS at a ptxas binary"
)


class PtxasError(RuntimeError):
    """ptxas rejected a module: the message carries its diagnostics and the PTX lines."""

    def __init__(self, message: str, stderr: str = ""):
        self.stderr = stderr
        super().__init__(message)


class PtxasNotFound(RuntimeError):
    """No ptxas could be found; the message says where we looked and how to install one."""


def _configured() -> str | None:
    try:
        from ...core import config
    except ImportError:  # pragma: no cover - config is part of the package
        return None
    return config.current().ptxas


def _version_key(path: str) -> tuple:
    m = re.search(r"cuda-(\d+)\.(\d+)", path)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def candidates(override: str | None = None) -> list[str]:
    """Every place a ptxas is looked for, in order."""
    out = []
    explicit = override or _configured()
    if explicit:
        out.append(os.path.expanduser(explicit))
    on_path = shutil.which("ptxas")
    if on_path:
        out.append(on_path)
    out.append("/usr/local/cuda/bin/ptxas")
    versioned = glob.glob("/usr/local/cuda-*/bin/ptxas")
    out += sorted(versioned, key=_version_key, reverse=True)
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    for root in dict.fromkeys(r for r in roots if r):
        out.append(os.path.join(root, "nvidia", "cuda_nvcc", "bin", "ptxas"))
    return list(dict.fromkeys(out))


def find_ptxas(override: str | None = None) -> str:
    """The path of a usable ptxas; PtxasNotFound says where we looked and what to install."""
    explicit = override or _configured()
    if explicit and not os.access(os.path.expanduser(explicit), os.X_OK):
        raise PtxasNotFound(
            f"ptxas {explicit!r} (from ASYNCWARP_PTXAS or the caller) is not "
            f"an executable file; {INSTALL_HINT}"
        )
    for path in candidates(override):
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise PtxasNotFound(
        f"ptxas was not found (looked on PATH, in /usr/local/cuda*/bin and "
        f"for the nvidia-cuda-nvcc wheel); {INSTALL_HINT}"
    )


@functools.cache
def _help_text(path: str) -> str:
    return subprocess.run([path, "--help"], capture_output=True, text=True, check=False).stdout


def supported_archs(ptxas: str | None = None) -> list[str]:
    """Machine targets (sm_XY, no a/f variants) this ptxas can generate code for, oldest first."""
    text = _help_text(ptxas or find_ptxas())
    found = {int(m) for m in re.findall(r"'sm_(\d+)'", text)}
    return [f"sm_{n}" for n in sorted(found)]


def nearest_target(arch: str, ptxas: str | None = None) -> str:
    """The oldest target of this ptxas that runs PTX written for `arch`.

    PTX for `.target sm_XY` compiles to any sm_MN with MN >= XY (ptxas --help), so
    when a newer toolkit has dropped an architecture (CUDA 13 dropped sm_70) its
    PTX is still checked by assembling for the next one.
    """
    want = int(arch.removeprefix("sm_"))
    for target in supported_archs(ptxas):
        if int(target[3:]) >= want:
            return target
    raise PtxasError(
        f"this ptxas supports none of {arch} or newer (it has {', '.join(supported_archs(ptxas))})"
    )


def _annotate(stderr: str, ptx: str) -> str:
    """ptxas's messages, each followed by the PTX line it points at."""
    lines = ptx.splitlines()
    out = []
    for msg in stderr.strip().splitlines():
        out.append(msg)
        m = re.search(r", line (\d+);", msg)
        if m and 0 < int(m.group(1)) <= len(lines):
            n = int(m.group(1))
            out.append(f"    {n:5d} | {lines[n - 1].strip()}")
    return "\n".join(out)


def assemble(
    ptx: str, arch: str, ptxas: str | None = None, extra_args: tuple[str, ...] = ()
) -> bytes:
    """Assemble PTX into a cubin for `arch`; PtxasError carries ptxas's diagnostics."""
    path = ptxas or find_ptxas()
    if arch not in supported_archs(path):
        raise PtxasError(
            f"{path} cannot generate code for {arch} (it supports "
            f"{', '.join(supported_archs(path))}); assemble for "
            "nearest_target(arch) to check PTX written for it"
        )
    with tempfile.TemporaryDirectory(prefix="asyncwarp-ptxas-") as tmp:
        src, out = os.path.join(tmp, "kernel.ptx"), os.path.join(tmp, "kernel.cubin")
        with open(src, "w") as f:
            f.write(ptx)
        proc = subprocess.run(
            [path, f"--gpu-name={arch}", *extra_args, "-o", out, src],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise PtxasError(
                f"ptxas ({arch}) rejected the module:\n{_annotate(proc.stderr, ptx)}", proc.stderr
            )
        with open(out, "rb") as f:
            return f.read()


__all__ = [
    "find_ptxas",
    "candidates",
    "supported_archs",
    "nearest_target",
    "assemble",
    "PtxasError",
    "PtxasNotFound",
    "INSTALL_HINT",
]
