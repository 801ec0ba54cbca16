"""`asyncwarp conformance`: run the catalogue on one backend and device, write a JSON report.

    asyncwarp conformance --backend vulkan --device lavapipe --warp-width 32,64 \
        --progress auto,cooperative --report conformance/reports/lavapipe.json
    asyncwarp conformance render conformance/reports/*.json --out conformance/reports/matrix

One report holds one device: its facts, and one run per (W, progress).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time

from .case import REGISTRY, run_case


def _load_cases():
    from . import cases  # noqa: F401  (registers every case)


def device_facts(backend: str, device) -> dict:
    from asyncwarp import backends

    b = backends.get(backend, device)
    caps = b.caps()
    facts = {
        "backend": backend,
        "name": caps.name,
        "vendor": caps.vendor,
        "driver": caps.driver,
        "subgroup_size": caps.subgroup_size,
        "arch": caps.arch,
        "progress_known": caps.progress,
        "host": platform.node(),
        "env": {k: v for k, v in os.environ.items() if k in ("LP_NUM_THREADS",)},
    }
    return facts


def _bar(done: int, total: int, label: str, failed: int) -> None:
    if not sys.stderr.isatty() and done not in (total,) and done % 10:
        return
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                     f"{failed} failed  {label[:40]:40s}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def run_suite(backend: str, device, widths, progresses, select: str | None = None,
              scale: float | None = None, subgroup: int | None = None) -> dict:
    _load_cases()
    cases = [c for c in REGISTRY.values() if not select or select in c.id]
    if scale is None:
        scale = 0.1 if backend == "sim" else 1.0
    report = {
        "format": 1,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "device": device_facts(backend, device),
        "runs": [],
    }
    total = len(cases) * len(widths) * len(progresses)
    done = failed = 0
    for W in widths:
        for progress in progresses:
            results = []
            for c in cases:
                r = run_case(c, backend, W, progress, device, scale, subgroup)
                results.append(r.__dict__)
                done += 1
                failed += r.status in ("fail", "error")
                _bar(done, total, f"W={W} {progress} {c.id}", failed)
            report["runs"].append({"W": W, "progress": progress, "subgroup": subgroup,
                                   "results": results})
    probes = {}
    for run in report["runs"]:
        for r in run["results"]:
            if r["group"] == "progress" and r["notes"]:
                probes.update({f"W{run['W']}/{k}": v for k, v in r["notes"].items()})
    report["device"]["progress_probed"] = probes
    if probes:  # what `auto` reads for devices whose guarantees are not known
        from asyncwarp import backends
        from asyncwarp.core import progress

        progress.record(backends.get(backend, device).caps(), progress.from_report(probes))
    return report


def summary(report: dict) -> str:
    lines = []
    for run in report["runs"]:
        counts: dict = {}
        for r in run["results"]:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        tally = ", ".join(f"{counts.get(s, 0)} {s}" for s in ("pass", "fail", "error", "skip"))
        lines.append(f"W={run['W']} progress={run['progress']}: {tally}")
        for r in run["results"]:
            if r["status"] in ("fail", "error"):
                lines.append(f"  {r['status'].upper()} {r['id']}: {r['message'][:300]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["render"]:
        from .render import main as render_main

        return render_main(argv[1:])
    p = argparse.ArgumentParser(prog="asyncwarp conformance")
    p.add_argument("--backend", default="sim", choices=("sim", "cuda", "vulkan"))
    p.add_argument("--device", default="0", help="index, or a Vulkan device name substring")
    p.add_argument("--warp-width", default="32,64", help="comma list of 32, 64")
    p.add_argument("--progress", default="auto", help="comma list of auto, independent, "
                   "cooperative")
    p.add_argument("--select", default=None, help="run only cases whose id contains this")
    p.add_argument("--scale", type=float, default=None,
                   help="litmus/stress iteration scale (default 0.1 on sim, 1 elsewhere)")
    p.add_argument("--subgroup", type=int, default=None,
                   help="hardware subgroup width H to build for (sim: any power of two 4..128)")
    p.add_argument("--report", default=None, help="write the JSON report here")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    a = p.parse_args(argv)
    if a.list:
        _load_cases()
        for c in REGISTRY.values():
            print(f"{c.id:45s} {c.doc}")
        print(f"{len(REGISTRY)} cases")
        return 0
    device = int(a.device) if a.device.isdigit() else a.device
    widths = [int(w) for w in a.warp_width.split(",")]
    progresses = a.progress.split(",")
    t0 = time.perf_counter()
    report = run_suite(a.backend, device, widths, progresses, a.select, a.scale, a.subgroup)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    print(summary(report))
    if a.report:
        os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
        with open(a.report, "w") as f:
            json.dump(report, f, indent=1, default=str)
        print(f"report: {a.report}")
    bad = sum(r["status"] in ("fail", "error") for run in report["runs"] for r in run["results"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
