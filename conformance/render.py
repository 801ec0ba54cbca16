"""Render conformance reports as a matrix: Markdown and one self-contained HTML page.

Rows are cases; columns are device x W x progress. Litmus histograms are drawn
as small bar charts (inline SVG in HTML, text bars in Markdown).
"""

from __future__ import annotations

import argparse
import html
import json
import os

MARK = {"pass": "✅", "fail": "❌", "error": "💥", "skip": "⏭"}
COLOR = {"pass": "#d4f7d4", "fail": "#f7d4d4", "error": "#f7b0b0", "skip": "#eeeeee"}


def load(paths) -> list[dict]:
    reports = []
    for p in paths:
        with open(p) as f:
            r = json.load(f)
        r["_path"] = os.path.basename(p)
        reports.append(r)
    return reports


def _device_label(r: dict) -> str:
    d = r["device"]
    lp = d.get("env", {}).get("LP_NUM_THREADS")
    return f"{d['name']} ({d['backend']}{', LP_NUM_THREADS=' + lp if lp else ''})"


def _columns(reports):
    cols = []
    for r in reports:
        dev = _device_label(r)
        for run in r["runs"]:
            cols.append((dev, run["W"], run["progress"], {x["id"]: x for x in run["results"]}))
    return cols


def _rows(cols):
    ids: list = []
    for *_, results in cols:
        ids += [i for i in results if i not in ids]
    return ids


def _text_bars(h: dict) -> str:
    total = sum(h["outcomes"].values()) or 1
    parts = []
    for o, n in sorted(h["outcomes"].items()):
        mark = "!" if o in h["forbidden"] else ""
        parts.append(f"{o}{mark}:{n}({100 * n / total:.0f}%)")
    return " ".join(parts)


def markdown(reports) -> str:
    cols = _columns(reports)
    out = ["# Conformance matrix", ""]
    out.append("| device | W | progress | pass | fail | error | skip | date |")
    out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in reports:
        for run in r["runs"]:
            c = {s: sum(x["status"] == s for x in run["results"]) for s in MARK}
            out.append(f"| {_device_label(r)} | {run['W']} | "
                       f"{run['progress']} | {c['pass']} | {c['fail']} | {c['error']} | "
                       f"{c['skip']} | {r['date'][:10]} |")
    out += ["", "Columns: " + "; ".join(f"**{i + 1}** {d}, W={w}, {p}"
                                          for i, (d, w, p, _) in enumerate(cols)), ""]
    out.append("| case | " + " | ".join(str(i + 1) for i in range(len(cols))) + " |")
    out.append("| --- |" + " --- |" * len(cols))
    for cid in _rows(cols):
        cells = [MARK.get(res[cid]["status"], "") if cid in res else "" for *_, res in cols]
        out.append(f"| {cid} | " + " | ".join(cells) + " |")
    notes = []
    for i, (*_, res) in enumerate(cols):
        for cid, x in res.items():
            if x["status"] in ("fail", "error", "skip"):
                notes.append(f"- [{i + 1}] {cid}: {x['status']}: {x['message'][:200]}")
            for test, h in x.get("histograms", {}).items():
                notes.append(f"- [{i + 1}] litmus {test}: {_text_bars(h)}")
    if notes:
        out += ["", "## Notes and litmus histograms", "", *notes]
    return "\n".join(out) + "\n"


def _svg_hist(h: dict) -> str:
    items = sorted(h["outcomes"].items())
    total = max(sum(n for _, n in items), 1)
    w, bh = 120, 10
    rows = []
    for k, (o, n) in enumerate(items):
        color = "#c33" if o in h["forbidden"] else "#36c"
        length = max(1, int(w * n / total)) if n else 0
        rows.append(f'<rect x="60" y="{k * (bh + 2)}" width="{length}" height="{bh}" '
                    f'fill="{color}"/><text x="0" y="{k * (bh + 2) + 9}" font-size="9">'
                    f"{html.escape(o)} {n}</text>")
    height = len(items) * (bh + 2)
    return f'<svg width="{w + 70}" height="{height}">{"".join(rows)}</svg>'


def html_page(reports) -> str:
    cols = _columns(reports)
    head = "".join(f"<th>{html.escape(d)}<br>W={w}<br>{p}</th>" for d, w, p, _ in cols)
    body = []
    for cid in _rows(cols):
        cells = []
        for *_, res in cols:
            x = res.get(cid)
            if x is None:
                cells.append("<td></td>")
                continue
            inner = MARK[x["status"]]
            for h in x.get("histograms", {}).values():
                inner += "<br>" + _svg_hist(h)
            title = html.escape(x["message"][:500])
            cells.append(f'<td style="background:{COLOR[x["status"]]}" title="{title}">'
                         f"{inner}</td>")
        body.append(f"<tr><th style='text-align:left'>{html.escape(cid)}</th>"
                    + "".join(cells) + "</tr>")
    dates = ", ".join(sorted({r["date"][:10] for r in reports}))
    return ("<!doctype html><meta charset='utf-8'><title>asyncwarp conformance</title>"
            "<style>body{font-family:sans-serif;font-size:12px}td,th{border:1px solid #ccc;"
            "padding:2px 4px;vertical-align:top}table{border-collapse:collapse}</style>"
            f"<h1>asyncwarp conformance matrix</h1><p>Reports: {dates}. Hover a cell for its "
            "message; red bars are forbidden litmus outcomes.</p>"
            f"<table><tr><th>case</th>{head}</tr>{''.join(body)}</table>")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="asyncwarp conformance render")
    p.add_argument("reports", nargs="+")
    p.add_argument("--out", default="conformance/reports/matrix",
                   help="path prefix: writes PREFIX.md and PREFIX.html")
    a = p.parse_args(argv)
    reports = load(a.reports)
    with open(a.out + ".md", "w") as f:
        f.write(markdown(reports))
    with open(a.out + ".html", "w") as f:
        f.write(html_page(reports))
    print(f"wrote {a.out}.md and {a.out}.html ({len(reports)} reports)")
    return 0
