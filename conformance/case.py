"""The conformance case model: small programs, each with inputs, a reference and a check.

A case is a function taking a `CaseContext`; it builds random inputs, launches
through `ctx.run`, and checks against numpy with `ctx.expect_*`. Litmus tests
record outcome histograms with `ctx.count`; probes record findings with
`ctx.note`. A case that cannot run on a configuration calls `ctx.skip(reason)`.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field

import numpy as np

GROUPS = (
    "language", "collectives", "memory", "atomics", "async", "channels", "sync",
    "litmus", "progress", "equivalence", "stress",
)


class CaseSkipped(Exception):
    pass


class CaseFailed(AssertionError):
    pass


@dataclass
class Case:
    group: str
    name: str
    fn: object
    doc: str

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"


REGISTRY: dict[str, Case] = {}


def case(group: str, name: str | None = None):
    """Register a case: `@case("collectives")` on `def warp_sum_i32(ctx): ...`."""
    if group not in GROUPS:
        raise ValueError(f"unknown conformance group {group!r}")

    def deco(fn):
        c = Case(group, name or fn.__name__, fn, (fn.__doc__ or "").strip().split("\n")[0])
        if c.id in REGISTRY:
            raise ValueError(f"conformance case {c.id} registered twice")
        REGISTRY[c.id] = c
        return fn

    return deco


@dataclass
class CaseContext:
    """What a case sees: the configuration, a seeded generator, launch and check helpers."""

    backend: str
    W: int
    progress: str
    device: object = 0
    seed: int = 0
    scale: float = 1.0  # < 1 on slow devices (the interpreter): fewer litmus iterations
    subgroup: int | None = None  # the hardware subgroup H to build for, where selectable
    histograms: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)
    checks: int = 0

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def run(self, kern, grid, *args, warps=None, **options):
        opts = dict(backend=self.backend, warp_width=self.W, device=self.device)
        if self.subgroup is not None:
            opts["subgroup"] = self.subgroup
        if self.progress != "auto":
            opts["progress"] = self.progress
        opts.update(options)
        k = kern.with_options(**opts)
        launcher = k[grid] if warps is None else k[grid, warps]
        return launcher(*args)

    def iterations(self, n: int) -> int:
        return max(1, int(n * self.scale))

    @staticmethod
    def poisoned(n: int, dtype) -> np.ndarray:
        dt = np.dtype(dtype)
        if dt.kind == "f":
            return np.full(n, np.nan, dtype=dt)
        return np.full(n, np.iinfo(dt).max - 0x1234 if dt.kind == "u" else np.iinfo(dt).min
                       + 0x1234, dtype=dt)

    def skip(self, reason: str):
        raise CaseSkipped(reason)

    def expect_equal(self, got, want, what: str = "result"):
        self.checks += 1
        got, want = np.asarray(got), np.asarray(want)
        if got.shape != want.shape or not np.array_equal(got, want):
            bad = np.flatnonzero(got.ravel() != want.ravel()) if got.shape == want.shape else []
            first = bad[0] if len(bad) else None
            detail = (f"{len(bad)} of {want.size} elements differ; first at [{first}]: "
                      f"got {got.ravel()[first]!r}, want {want.ravel()[first]!r}"
                      if first is not None else f"shape {got.shape} != {want.shape}")
            raise CaseFailed(f"{what}: {detail}")

    def expect_close(self, got, want, rtol=1e-5, atol=1e-6, what: str = "result"):
        self.checks += 1
        got, want = np.asarray(got), np.asarray(want)
        ok = np.isclose(got, want, rtol=rtol, atol=atol)
        if not ok.all():
            first = int(np.flatnonzero(~ok.ravel())[0])
            raise CaseFailed(f"{what}: {(~ok).sum()} of {want.size} elements differ beyond "
                             f"rtol={rtol}; first at [{first}]: got {got.ravel()[first]!r}, "
                             f"want {want.ravel()[first]!r}")

    def expect(self, cond: bool, message: str):
        self.checks += 1
        if not cond:
            raise CaseFailed(message)

    def count(self, test: str, outcome: str, n: int = 1, forbidden: bool = False):
        """Add n observations of `outcome` to litmus histogram `test`."""
        h = self.histograms.setdefault(test, {"outcomes": {}, "forbidden": []})
        h["outcomes"][outcome] = h["outcomes"].get(outcome, 0) + int(n)
        if forbidden and outcome not in h["forbidden"]:
            h["forbidden"].append(outcome)

    def note(self, key: str, value):
        self.notes[key] = value


@dataclass
class CaseResult:
    id: str
    group: str
    status: str  # pass | fail | skip | error
    seconds: float
    message: str = ""
    checks: int = 0
    histograms: dict = field(default_factory=dict)
    notes: dict = field(default_factory=dict)


def run_case(c: Case, backend: str, W: int, progress: str, device=0, scale=1.0,
             subgroup: int | None = None) -> CaseResult:
    seed = zlib.crc32(f"{c.id}/{W}".encode())
    ctx = CaseContext(backend, W, progress, device, seed, scale, subgroup)
    t0 = time.perf_counter()
    status, message = "pass", ""
    try:
        c.fn(ctx)
        for test, h in ctx.histograms.items():
            seen = [o for o in h["forbidden"] if h["outcomes"].get(o, 0)]
            if seen:
                raise CaseFailed(f"litmus {test}: forbidden outcome(s) observed: "
                                 + ", ".join(f"{o} x{h['outcomes'][o]}" for o in seen))
        if ctx.checks == 0 and not ctx.histograms and not ctx.notes:
            raise CaseFailed("the case checked nothing")
    except CaseSkipped as e:
        status, message = "skip", str(e)
    except CaseFailed as e:
        status, message = "fail", str(e)
    except Exception as e:  # a crash is a result too, with its type
        status, message = "error", f"{type(e).__name__}: {e}"
    return CaseResult(c.id, c.group, status, time.perf_counter() - t0, message, ctx.checks,
                      ctx.histograms, ctx.notes)
