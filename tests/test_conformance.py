"""The conformance catalogue on every backend present at W = 32 and 64, its runner and renderer.

Every case must pass on the reference interpreter (it is the oracle the
suite is defined against) and on each device backend present (lavapipe here
and in CI; CUDA on a GPU host), where a case may only skip with the reason
the device lacks something. The JSON runner and the matrix renderer are run
end to end on a small selection in a temporary directory.
"""

from __future__ import annotations

import json

import pytest

from conformance import render, runner
from conformance.case import GROUPS, REGISTRY, run_case
from conformance.cases import _common  # noqa: F401  (imports the catalogue)

SIM_SCALE = 0.1  # what the runner uses on the interpreter
DEVICE_SCALE = 0.3  # litmus and stress iterations in tests; reports use the runner's 1.0


def test_catalogue_covers_every_group():
    by_group = {g: [c for c in REGISTRY.values() if c.group == g] for g in GROUPS}
    assert len(REGISTRY) >= 80, f"only {len(REGISTRY)} conformance cases"
    empty = [g for g, cs in by_group.items() if not cs]
    assert not empty, f"groups without cases: {empty}"
    undocumented = [c.id for c in REGISTRY.values() if not c.doc]
    assert not undocumented, f"cases without a docstring: {undocumented}"


# Groups whose programs await: they also run with progress forced to cooperative (what
# `auto` picks on devices without forward progress, e.g. lavapipe); elsewhere the
# progress mode changes nothing.
AWAITING_GROUPS = ("async", "channels", "sync", "stress")
# Cases that fail because of a compiler defect (reported, not yet fixed). Strict: once the
# defect is fixed the case passes, the xfail turns into a failure and the entry must go.
KNOWN_DEFECTS: dict[str, str] = {}


def _run(case_id: str, progress: str):
    reason = KNOWN_DEFECTS.get(case_id)
    marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
    return pytest.param(case_id, progress, marks=marks, id=f"{case_id}-{progress}")


RUNS = [_run(cid, "auto") for cid in sorted(REGISTRY)] + [
    _run(cid, "cooperative") for cid in sorted(REGISTRY) if REGISTRY[cid].group in AWAITING_GROUPS
]


@pytest.mark.parametrize(("case_id", "progress"), RUNS)
def test_case_passes(case_id, progress, backend, W):
    scale = SIM_SCALE if backend == "sim" else DEVICE_SCALE
    result = run_case(REGISTRY[case_id], backend, W, progress, scale=scale)
    where = f"{case_id} on {backend} at W={W}, progress={progress}"
    if result.status == "skip" and backend != "sim":
        pytest.skip(f"{where}: {result.message}")
    assert result.status == "pass", f"{where}: {result.status}: {result.message}"
    assert result.checks or result.histograms or result.notes


# Subgroup shapes other than H = W: lane folding (W = 64 on an 8-wide subgroup, lavapipe's
# shape) and several logical warps per subgroup (W = 32 on a 128-wide one).
SHAPES = [(64, 8), (32, 128)]


@pytest.mark.parametrize(("width", "subgroup"), SHAPES, ids=[f"W{w}-H{h}" for w, h in SHAPES])
@pytest.mark.parametrize("case_id", sorted(REGISTRY))
def test_case_passes_on_other_subgroups(case_id, width, subgroup):
    result = run_case(REGISTRY[case_id], "sim", width, "auto", scale=SIM_SCALE,
                      subgroup=subgroup)
    # with H > W the warps of a subgroup cannot wait on each other: equivalence cases
    # then compare the cooperative configurations only, and note it
    if subgroup > width and REGISTRY[case_id].group == "equivalence":
        assert "not run" in result.notes.get("independent", ""), result.notes
    assert result.status == "pass", (
        f"{case_id} at W={width}, H={subgroup}: {result.status}: {result.message}"
    )


def test_litmus_forbidden_outcome_fails_the_case():
    """run_case turns an observed forbidden outcome into a failure (the suite's own check)."""
    from conformance.case import Case

    def fake(ctx):
        ctx.count("MP", "flag=1 data=0", 3, forbidden=True)
        ctx.count("MP", "flag=1 data=1", 5)

    result = run_case(Case("litmus", "fake", fake, "a fake"), "sim", 32, "auto")
    assert result.status == "fail" and "flag=1 data=0 x3" in result.message


def test_runner_json_and_render(tmp_path, capsys):
    report_path = tmp_path / "reports" / "sim.json"
    args = "--backend sim --warp-width 32,64 --select collectives/reduce_ --report".split()
    rc = runner.main([*args, str(report_path)])
    assert rc == 0, capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["format"] == 1 and report["device"]["backend"] == "sim"
    assert [run["W"] for run in report["runs"]] == [32, 64]
    ids = {r["id"] for run in report["runs"] for r in run["results"]}
    assert ids == {cid for cid in REGISTRY if "collectives/reduce_" in cid} and len(ids) == 4
    assert all(r["status"] == "pass" for run in report["runs"] for r in run["results"])

    litmus_path = tmp_path / "reports" / "litmus.json"
    args = "--backend sim --warp-width 32 --select litmus/mp_release_acquire_block --report"
    assert runner.main([*args.split(), str(litmus_path)]) == 0

    prefix = tmp_path / "matrix"
    assert render.main([str(report_path), str(litmus_path), "--out", str(prefix)]) == 0
    md = (tmp_path / "matrix.md").read_text()
    page = (tmp_path / "matrix.html").read_text()
    assert "| collectives/reduce_int32 |" in md and "W=64" in md
    assert "litmus MP rel/acq (block)" in md and "flag=1 data=1" in md
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "collectives/reduce_float32" in page


def test_runner_lists_the_catalogue(capsys):
    assert runner.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert f"{len(REGISTRY)} cases" in out and "litmus/sb_seq_cst_block" in out
