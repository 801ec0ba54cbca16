"""`python -m benchmarks`: run the benchmark suite on one backend, print the table, and
write it with the JSON record and a PNG of the ratios into --out.

Exit status 0 when every result check passed (goals may be missed: that is a
finding, not a failure), 1 when a check failed or a benchmark stopped on an
error, 2 when the backend cannot run here.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

from . import BENCHMARKS
from .harness import BenchResult, Context

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "cuda", "vulkan", "sim"),
        help="device to benchmark (auto: cuda, else vulkan, else sim)",
    )
    p.add_argument("--device", default="0", help="device index, or a Vulkan name substring")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these benchmarks (repeat or comma-separate): {', '.join(BENCHMARKS)}",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="the smallest sizes, a smoke run (always so on CPU devices)",
    )
    p.add_argument("--warp-width", type=int, default=32, choices=(32, 64))
    p.add_argument("--seed", type=int, default=0, help="seed of every random input")
    p.add_argument(
        "--commit",
        metavar="TEXT",
        help="the source commit to record, where the checkout's git metadata is not this "
        "tree's (a copy of a working tree); default: git describe --always --dirty",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "out" / "benchmarks",
        help="directory for the JSON, text and PNG results",
    )
    args = p.parse_args(argv)
    only = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
    args.only = only or list(BENCHMARKS)
    return args


def resolve_backend(name: str) -> str:
    if name != "auto":
        return name
    from .targets import availability

    return next((b for b in ("cuda", "vulkan") if availability(b)[0]), "sim")


def git_commit() -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() or None


def collect_meta(ctx: Context, args: argparse.Namespace) -> dict:
    import numpy

    import asyncwarp

    from .cubins import read_manifest

    return {
        "device": ctx.target.info(),
        "run": {
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "tier": ctx.tier,
            "warp_width": ctx.warp_width,
            "seed": ctx.seed,
            "benchmarks": args.only,
            "asyncwarp": asyncwarp.__version__,
            "git_commit": args.commit or git_commit(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "host": platform.node(),
            "CUDA_CACHE_DISABLE": os.environ.get("CUDA_CACHE_DISABLE"),
        },
        "baselines": read_manifest(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The driver's JIT cache would turn every PTX load after the first into a cache hit,
    # hiding the cold-compile cost; it is read when CUDA initialises, so set it first.
    os.environ.setdefault("CUDA_CACHE_DISABLE", "1")
    from asyncwarp.core.errors import BackendUnavailable

    from . import report
    from .targets import open_target

    backend = resolve_backend(args.backend)
    device = int(args.device) if args.device.isdigit() else args.device
    try:
        target = open_target(backend, device)
    except BackendUnavailable as err:
        print(f"cannot benchmark {backend}: {err}", file=sys.stderr)
        return 2
    tier = "tiny" if args.tiny or target.tiny else ("quick" if args.quick else "full")
    ctx = Context(target, tier, warp_width=args.warp_width, seed=args.seed)
    meta = collect_meta(ctx, args)
    print(report.header(meta), flush=True)
    results, seconds = [], {}
    for name in args.only:
        module = importlib.import_module(f"{__package__}.{BENCHMARKS[name]}")
        start = time.perf_counter()
        try:
            result = module.run(ctx)
        except Exception:  # one broken benchmark must not cost the others their run
            result = BenchResult(name, module.TITLE, error=traceback.format_exc())
        seconds[name] = round(time.perf_counter() - start, 2)
        print("\n" + report.section(result) + f"\n  ({seconds[name]} s)", flush=True)
        results.append(result)
    meta["run"]["seconds"] = seconds
    stem = f"{backend}-{tier}-w{ctx.warp_width}"
    for line in report.write(meta, results, args.out, stem):
        print(line)
    summary = report.summary(results)
    print(
        f"goals met {summary['goals_met']}, missed {summary['goals_missed']}; "
        f"failed checks {len(summary['checks_failed'])}; errors {len(summary['errors'])}"
    )
    return 1 if summary["checks_failed"] or summary["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
