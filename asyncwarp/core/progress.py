"""Forward-progress facts per device: what is known, what the conformance probes measured.

`auto` progress asks `guarantees(caps)`. A backend that knows its device (CUDA
on sm_70+, Mesa lavapipe) sets `caps.extra["progress_known"]`; for any other
device the probes' findings, recorded by `asyncwarp conformance` in the cache
directory, decide, and without them nothing is assumed.
"""

from __future__ import annotations

import json
import re

from . import config
from .backend import DeviceCaps

SCOPES = ("lane", "warp", "block")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")[:60] or "unknown"


def record_path(caps: DeviceCaps):
    name = f"{_slug(caps.backend)}-{_slug(caps.name)}-{_slug(caps.driver)}.json"
    return config.current().cache_dir / "progress" / name


def record(caps: DeviceCaps, found: dict) -> None:
    """Keep what the probes found on this device and driver (scope -> bool)."""
    path = record_path(caps)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({s: bool(found[s]) for s in SCOPES if s in found}))
    except OSError:
        pass  # an unwritable cache only means auto keeps assuming nothing


def measured(caps: DeviceCaps) -> dict | None:
    try:
        return json.loads(record_path(caps).read_text())
    except (OSError, ValueError):
        return None


def guarantees(caps: DeviceCaps) -> dict:
    """scope -> whether waiting across that scope is safe on this device."""
    if caps.extra.get("progress_known", caps.backend in ("sim", "cuda")):
        return dict(caps.progress)
    found = measured(caps) or {}
    return {s: bool(caps.progress.get(s) or found.get(s)) for s in SCOPES}


def from_report(notes: dict) -> dict:
    """Combine a report's probe notes ('W32/warp': True, ...): a scope holds if every W found it."""
    out: dict = {}
    for key, value in notes.items():
        _, _, scope = key.partition("/")
        if scope in SCOPES and isinstance(value, bool):
            out[scope] = out.get(scope, True) and value
    return out
