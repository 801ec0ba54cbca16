"""What a benchmark returns and how the runner judges it: timed rows, ratios with goals,
result checks, and the context (device target, sizes, repetitions) every benchmark gets.

Benchmarks never assert on time: a ratio that misses its goal is reported, a wrong
result is a failed check (and a non-zero exit of the runner).
"""

from __future__ import annotations

import statistics
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Elements compared per step by check_close: bounds the temporaries for 2^28-element outputs.
_CHECK_CHUNK = 1 << 24
# The H100's ceilings the floors are computed from: a device-to-device copy moves about
# 3.0 TB/s counting bytes read plus written (measured, shared/gpu-host/README.md); float
# issue is 132 SMs x 128 lanes at the 1.98 GHz boost clock.
H100_COPY_BYTES_PER_S = 3.0e12
H100_FLOAT_OPS_PER_S = 132 * 128 * 1.98e9


@dataclass(frozen=True)
class Goal:
    """A target for a ratio: `ratio >= value` or `ratio <= value`."""

    op: str
    value: float

    def __post_init__(self):
        if self.op not in (">=", "<="):
            raise ValueError(f"a goal is '>=' or '<=', not {self.op!r}")

    def met(self, ratio: float) -> bool:
        return ratio >= self.value if self.op == ">=" else ratio <= self.value

    def __str__(self) -> str:
        return f"{self.op} {self.value:g}"


@dataclass
class Row:
    """One timed subject: its run times and the metric derived from them."""

    label: str
    times_ms: list[float]
    metric: float | None = None  # e.g. GB/s, ns per round trip, µs per launch
    unit: str = ""
    check: str | None = None  # "ok", a description of the mismatch, or None (not checked)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.times_ms)

    def summary(self) -> dict[str, float]:
        t = sorted(self.times_ms)
        return {
            "median_ms": statistics.median(t),
            "min_ms": t[0],
            "p90_ms": t[min(len(t) - 1, int(0.9 * len(t)))],
            "runs": len(t),
        }


@dataclass
class Ratio:
    """subject / baseline of some metric, with the goal it is held to (None: informational)."""

    label: str
    value: float
    goal: Goal | None = None
    note: str = ""

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.goal.met(self.value)


@dataclass
class BenchResult:
    """Everything one benchmark reports; `error` is set when it stopped on an exception."""

    name: str
    title: str
    floor: str = ""  # the least time the work can take, in words and numbers
    rows: list[Row] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))

    @property
    def checks_passed(self) -> bool:
        return all(r.check in (None, "ok") for r in self.rows)


def ratio_of_metrics(
    result: BenchResult,
    label: str,
    subject: str,
    baseline: str,
    goal: Goal | None = None,
    note: str = "",
) -> Ratio | None:
    """Add `subject.metric / baseline.metric` to result.ratios when both rows exist and ran."""
    return _add_ratio(result, label, subject, baseline, lambda row: row.metric, goal, note)


def ratio_of_times(
    result: BenchResult,
    label: str,
    subject: str,
    baseline: str,
    goal: Goal | None = None,
    note: str = "",
) -> Ratio | None:
    """Add `subject.median_ms / baseline.median_ms` (lower is better for the subject)."""
    return _add_ratio(result, label, subject, baseline, lambda row: row.median_ms, goal, note)


def _add_ratio(result, label, subject, baseline, value, goal, note) -> Ratio | None:
    a, b = result.row(subject), result.row(baseline)
    if a is None or b is None or not value(a) or not value(b):
        return None
    ratio = Ratio(label, value(a) / value(b), goal, note)
    result.ratios.append(ratio)
    return ratio


def duration(seconds: float) -> str:
    """A time in the unit that reads best: 1.23 s, 4.56 ms, 7.89 µs, 12 ns."""
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


# ------------------------------------------------------------------ checks


def check_close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-6, atol: float = 1e-6) -> str:
    """'ok' when every element matches (NaN, the poison, never does); else the first mismatch."""
    got, want = np.asarray(got).reshape(-1), np.asarray(want).reshape(-1)
    if got.shape != want.shape:
        return f"shape {got.shape} != expected {want.shape}"
    bad_total, first = 0, None
    for start in range(0, got.size, _CHECK_CHUNK):
        g, w = got[start : start + _CHECK_CHUNK], want[start : start + _CHECK_CHUNK]
        if g.dtype.kind == "f":
            bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
        else:
            bad = g != w
        count = int(np.count_nonzero(bad))
        if count and first is None:
            i = int(np.flatnonzero(bad)[0])
            first = (start + i, g[i], w[i])
        bad_total += count
    if not bad_total:
        return "ok"
    i, g, w = first
    return f"{bad_total} of {got.size} elements wrong; first at {i}: got {g!r}, expected {w!r}"


def affine_reference(x: np.ndarray, a: np.float32, b: np.float32) -> np.ndarray:
    """a*x + b in float32, rounded after the multiply and after the add (as the kernels)."""
    out = np.empty_like(x)
    for start in range(0, x.size, _CHECK_CHUNK):
        chunk = x[start : start + _CHECK_CHUNK]
        np.multiply(chunk, a, out=out[start : start + _CHECK_CHUNK])
        out[start : start + _CHECK_CHUNK] += b
    return out


# ------------------------------------------------------------------ context


@dataclass
class Context:
    """What every benchmark gets: the device target, the size tier and shared inputs.

    `tier` is "full", "quick" or "tiny" (CPU devices: lavapipe and sim, a smoke run).
    `shared` keeps inputs that several benchmarks use (uploaded once).
    """

    target: Any  # targets.CudaTarget | VulkanTarget | SimTarget
    tier: str
    warp_width: int = 32
    seed: int = 0
    shared: dict = field(default_factory=dict)
    others: dict = field(default_factory=dict)  # other backends' targets, opened on demand

    def __post_init__(self):
        if self.tier not in ("full", "quick", "tiny"):
            raise ValueError(f"tier must be full, quick or tiny, not {self.tier!r}")

    def pick(self, full, quick, tiny):
        """The value for this run's tier."""
        return {"full": full, "quick": quick, "tiny": tiny}[self.tier]

    @property
    def reps(self) -> int:
        return self.pick(30, 10, 3)

    @property
    def warmup(self) -> int:
        return self.pick(3, 2, 1)

    def rng(self, what: str) -> np.random.Generator:
        """A generator seeded from the run's seed and `what`: reproducible per input."""
        return np.random.default_rng([self.seed, zlib.crc32(what.encode())])

    def other(self, backend: str):
        """The target of another backend on this machine (BackendUnavailable if absent)."""
        if backend == self.target.backend:
            return self.target
        if backend not in self.others:
            from .targets import open_target

            self.others[backend] = open_target(backend)
        return self.others[backend]
