"""The user-facing error family: compile errors with a source location, deadlocks, timeouts.

User mistakes raise `CompileError` (file:line:col, the source line with a
caret, and what to do). Broken compiler state raises RuntimeError or fails an
assert instead; never a bare Exception.
"""

from __future__ import annotations

from .ir import Loc


class AsyncWarpError(Exception):
    """Base of the errors asyncwarp raises for user-visible conditions."""


class CompileError(AsyncWarpError):
    """A kernel cannot be compiled: names the location, the construct and a remedy."""

    def __init__(self, message: str, loc: Loc | None = None, hint: str = ""):
        self.message = message
        self.loc = loc
        self.hint = hint
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.loc is not None and self.loc.line:
            parts.append(f"{self.loc.file}:{self.loc.line}:{self.loc.col}: {self.message}")
            if self.loc.text:
                text = self.loc.text.rstrip("\n")
                stripped = text.lstrip()
                indent = len(text) - len(stripped)
                parts.append(f"    {stripped}")
                parts.append("    " + " " * max(self.loc.col - indent, 0) + "^")
        else:
            parts.append(self.message)
        if self.hint:
            parts.append(f"hint: {self.hint}")
        return "\n".join(parts)


class BackendUnavailable(AsyncWarpError):
    """A backend was asked for but cannot run here; the message says why and what to install."""


class DeadlockError(AsyncWarpError):
    """Every task is pending and nothing can change; `pending` lists what waits on what."""

    def __init__(self, message: str, pending: list | None = None):
        self.pending = pending or []
        super().__init__(message)


class WatchdogTimeout(AsyncWarpError):
    """A kernel ran past its watchdog budget; `pending` lists what was still waiting."""

    def __init__(self, message: str, pending: list | None = None):
        self.pending = pending or []
        super().__init__(message)
