"""Rendering of benchmark results: the table printed and saved as text, the JSON record,
and a PNG of the ratios against their goals (matplotlib, imported only here).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .harness import BenchResult, Ratio


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _verdict(r: Ratio) -> str:
    return {True: "met", False: "MISSED", None: "(info)"}[r.met]


def header(meta: dict) -> str:
    """One paragraph: device, driver, clocks, date and run settings."""
    dev = meta.get("device", {})
    parts = [f"{dev.get('backend', '?')}: {dev.get('device', '?')}"]
    if dev.get("arch"):
        parts.append(f"{dev['arch']}, {dev.get('sm_count')} SMs")
    smi = dev.get("nvidia_smi")
    if isinstance(smi, dict):
        parts.append(f"driver {smi.get('driver_version')}")
        parts.append(f"SM clock {smi.get('clocks.sm')} (max {smi.get('clocks.max.sm')})")
        parts.append(f"memory clock {smi.get('clocks.mem')}")
    elif dev.get("driver"):
        parts.append(f"driver {dev['driver']}")
    if dev.get("cuda_driver_api"):
        parts.append(f"CUDA {dev['cuda_driver_api']}")
    if dev.get("clock_rate"):
        parts.append(f"attribute clock {dev['clock_rate'] / 1000:.0f} MHz")
    run = meta.get("run", {})
    return (
        "asyncwarp benchmarks: " + ", ".join(parts) + "\n"
        f"{run.get('date')}  tier {run.get('tier')}  W={run.get('warp_width')}  "
        f"asyncwarp {run.get('asyncwarp')} ({run.get('git_commit') or 'no git'})"
    )


def section(result: BenchResult) -> str:
    """The table of one benchmark."""
    lines = [result.title]
    if result.floor:
        lines.append(f"  floor: {result.floor}")
    if result.rows:
        width = max(44, *(len(r.label) for r in result.rows))
        lines.append(f"  {'subject':<{width}}  {'median ms':>10}  {'metric':>22}  check")
        for r in result.rows:
            metric = f"{_fmt(r.metric)} {r.unit}" if r.metric is not None else "-"
            check = "-" if r.check is None else r.check
            lines.append(f"  {r.label:<{width}}  {_fmt(r.median_ms):>10}  {metric:>22}  {check}")
    if result.ratios:
        width = max(44, *(len(r.label) for r in result.ratios))
        lines.append(f"  {'ratio':<{width}}  {'value':>10}  {'goal':>8}  verdict")
        for r in result.ratios:
            goal = str(r.goal) if r.goal else "-"
            note = f"  {r.note}" if r.note else ""
            lines.append(f"  {r.label:<{width}}  {r.value:>10.3g}  {goal:>8}  {_verdict(r)}{note}")
    for what, why in result.skipped:
        lines.append(f"  skipped: {what}: {why}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    if result.error:
        lines.append("  ERROR: " + result.error.strip().replace("\n", "\n    "))
    return "\n".join(lines)


def summary(results: list[BenchResult]) -> dict:
    ratios = [r for res in results for r in res.ratios]
    return {
        "goals_met": sum(r.met is True for r in ratios),
        "goals_missed": sum(r.met is False for r in ratios),
        "checks_failed": [
            f"{res.name}: {row.label}: {row.check}"
            for res in results
            for row in res.rows
            if row.check not in (None, "ok")
        ],
        "errors": [res.name for res in results if res.error],
    }


def table(meta: dict, results: list[BenchResult]) -> str:
    s = summary(results)
    tail = (
        f"goals met {s['goals_met']}, missed {s['goals_missed']}; "
        f"failed checks {len(s['checks_failed'])}; errors {len(s['errors'])}"
    )
    return "\n\n".join([header(meta), *(section(r) for r in results), tail]) + "\n"


def to_json(meta: dict, results: list[BenchResult]) -> dict:
    def row(r):
        metric = None if r.metric is None else float(r.metric)
        return {
            "label": r.label,
            "metric": metric,
            "unit": r.unit,
            "check": r.check,
            **r.summary(),
            "times_ms": [float(t) for t in r.times_ms],
            "extra": r.extra,
        }

    def ratio(r):
        return {
            "label": r.label,
            "value": float(r.value),
            "goal": str(r.goal) if r.goal else None,
            "met": r.met,
            "note": r.note,
        }

    return {
        "meta": meta,
        "summary": summary(results),
        "benchmarks": [
            {
                "name": res.name,
                "title": res.title,
                "floor": res.floor,
                "rows": [row(r) for r in res.rows],
                "ratios": [ratio(r) for r in res.ratios],
                "skipped": [{"what": w, "why": y} for w, y in res.skipped],
                "notes": res.notes,
                "error": res.error,
            }
            for res in results
        ],
    }


def plot(meta: dict, results: list[BenchResult], path: Path) -> str:
    """Save a chart of every ratio (goal marked); returns what was done, in words."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (pip install matplotlib)"
    ratios = [(res.name, r) for res in results for r in res.ratios]
    if not ratios:
        return "no plot: no ratios were measured"
    fig, ax = plt.subplots(figsize=(10, 0.38 * len(ratios) + 1.6))
    colors = {True: "tab:green", False: "tab:red", None: "tab:gray"}
    labels = [f"{name}: {r.label}" for name, r in ratios]
    y = list(range(len(ratios)))[::-1]
    ax.barh(y, [r.value for _, r in ratios], color=[colors[r.met] for _, r in ratios])
    for yi, (_, r) in zip(y, ratios, strict=True):
        ax.text(r.value, yi, f" {r.value:.2f}", va="center", fontsize=7)
        if r.goal is not None:
            ax.plot([r.goal.value] * 2, [yi - 0.4, yi + 0.4], color="black", linewidth=2)
    ax.set_yticks(y, labels, fontsize=7)
    ax.axvline(1.0, color="gray", linewidth=0.5, linestyle=":")
    ax.set_xlabel("ratio (black tick: goal; green met, red missed, gray no goal)")
    dev = meta.get("device", {})
    ax.set_title(
        f"asyncwarp benchmarks on {dev.get('device', '?')} ({meta.get('run', {}).get('date', '')})",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot: {path}"


def write(meta: dict, results: list[BenchResult], out_dir: Path, stem: str) -> list[str]:
    """Write <stem>.json, <stem>.txt and <stem>.png into out_dir; lines saying what was written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, text_path = out_dir / f"{stem}.json", out_dir / f"{stem}.txt"
    json_path.write_text(json.dumps(to_json(meta, results), indent=1, default=str) + "\n")
    text_path.write_text(table(meta, results))
    return [
        f"json: {json_path}",
        f"table: {text_path}",
        plot(meta, results, out_dir / f"{stem}.png"),
    ]
