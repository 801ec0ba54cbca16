"""Run SPIRV-Tools' `spirv-val` (and `spirv-dis`) on emitted modules.

Every module the emitter produces must validate for its target environment;
tests and debug builds call `validate`, which reports the validator's message
with the disassembly around the failing instruction.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ...core.errors import BackendUnavailable

TARGET_ENVS = ("vulkan1.0", "vulkan1.1", "vulkan1.1spv1.4", "vulkan1.2", "vulkan1.3")
CONTEXT_LINES = 6  # disassembly lines shown on each side of the failing instruction


class SpirvValidationError(RuntimeError):
    """An emitted module is invalid: a compiler bug. `message` is spirv-val's text."""

    def __init__(self, message: str, context: str, target_env: str):
        self.message = message
        self.context = context
        self.target_env = target_env
        text = f"spirv-val --target-env {target_env} rejected the module:\n{message}"
        if context:
            text += f"\n\ndisassembly around the failing instruction:\n{context}"
        super().__init__(text)


def tool(name: str) -> str:
    """The path of a SPIRV-Tools binary; BackendUnavailable naming the package when absent."""
    path = shutil.which(name)
    if path is None:
        raise BackendUnavailable(
            f"{name} not found on PATH: install SPIRV-Tools (Debian/Ubuntu: apt-get install "
            "spirv-tools; or the Vulkan SDK)"
        )
    return path


def to_bytes(module: bytes | Sequence[int]) -> bytes:
    if isinstance(module, (bytes, bytearray, memoryview)):
        data = bytes(module)
    else:
        data = struct.pack(f"<{len(module)}I", *module)
    if len(data) % 4 or len(data) < 20:
        raise ValueError(f"not a SPIR-V module: {len(data)} bytes")
    return data


def disassemble(module: bytes | Sequence[int], header: bool = True) -> str:
    """spirv-dis text of a module (friendly names)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "module.spv"
        path.write_bytes(to_bytes(module))
        args = [tool("spirv-dis"), str(path)] + ([] if header else ["--no-header"])
        proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode:
        raise SpirvValidationError(proc.stderr.strip() or proc.stdout.strip(), "", "spirv-dis")
    return proc.stdout


def validate(
    module: bytes | Sequence[int], target_env: str = "vulkan1.2", extra_args: Sequence[str] = ()
) -> None:
    """Raise SpirvValidationError unless spirv-val accepts the module for `target_env`."""
    if target_env not in TARGET_ENVS:
        raise ValueError(f"target_env must be one of {', '.join(TARGET_ENVS)}, not {target_env!r}")
    data = to_bytes(module)
    exe = tool("spirv-val")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "module.spv"
        path.write_bytes(data)
        proc = subprocess.run(
            [exe, "--target-env", target_env, *extra_args, str(path)],
            capture_output=True,
            text=True,
        )
    if proc.returncode == 0:
        return
    message = (proc.stderr + proc.stdout).strip()
    raise SpirvValidationError(message, _context(data, message), target_env)


def _context(data: bytes, message: str) -> str:
    """Disassembly lines around the instruction spirv-val names ("error: line N:")."""
    found = re.search(r"line (\d+):", message)
    if found is None:
        return ""
    try:
        lines = disassemble(data, header=False).splitlines()
    except SpirvValidationError:
        return ""  # the module does not even disassemble; the message says why
    # spirv-val counts instructions from 1, after the header; spirv-dis --no-header
    # prints one instruction per line.
    index = int(found.group(1)) - 1
    lo, hi = max(index - CONTEXT_LINES, 0), min(index + CONTEXT_LINES + 1, len(lines))
    marked = [("> " if i == index else "  ") + lines[i] for i in range(lo, hi)]
    return "\n".join(marked)
