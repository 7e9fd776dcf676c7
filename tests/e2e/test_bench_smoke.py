"""`make bench`'s gateway part, CI-sized (2 rounds of 2 runs, bare and hoptrace): it runs end to
end, says how far it got while it runs, checks every hop was recorded, and writes its figures.
The figures themselves are not asserted (benchmarks measure; docs/performance.md)."""

from __future__ import annotations

import json

import pytest

from bench import gateway

pytestmark = pytest.mark.e2e


def test_the_gateway_bench_runs_and_reports_progress(tmp_path, capsys):
    """In this process: the bench stops every process it started (by PID) when it ends or fails."""
    out = tmp_path / "gateway.json"
    code = gateway.main(["--rounds", "2", "--runs", "2", "--modes", "bare", "hoptrace", "--concurrency", "1", "2",
                         "--warmup", "2", "--settle", "1", "--time-limit", "60", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err[-2000:]
    progress = [line for line in err.splitlines() if line.startswith("[")]
    assert "warming up" in progress[0]
    assert [line.split("] ", 1)[1].split(" done")[0] for line in progress[1:]] == [
        f"gateway: concurrency {c}, round {r}/2" for c in (1, 2) for r in (1, 2)]
    res = json.loads(out.read_text())
    assert {(x["concurrency"], x["mode"]) for x in res["rounds"]} == {(c, m) for c in (1, 2) for m in ("bare", "hoptrace")}
    assert all(x["ok"] == x["runs"] and x["hops_per_s"] > 0 for x in res["rounds"])
    assert all(x["services_cpu_ms_per_hop"] >= 0 for x in res["rounds"])  # A and B's CPU, in every mode
    assert all(res["summary"][c][m]["services_cpu_ms_per_hop"] is not None for c in ("1", "2") for m in ("bare", "hoptrace"))
    rec = res["records"]["hoptrace"]
    assert rec["flows.jsonl"] == rec["hops_answered"] > 0
    assert "hoptrace/bare" in res["summary"]["1"] and "hoptrace/bare paired" in res["summary"]["2"]
    model = res["summary"]["1"]["hoptrace/bare from CPU"]
    assert 0 < model["ratio"] and model["added_cpu_budget_ms"] > 0
