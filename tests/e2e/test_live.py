"""Live diagnosis in the real gateway: comments and markers in flows.mitm, runs.jsonl, log lines."""

from __future__ import annotations

import asyncio
import re

import pytest
from mitmproxy import io

from proxy_addons.kick import SEED_KICK, kick_many
from tests.conftest import read_jsonl

pytestmark = pytest.mark.e2e


def test_every_flow_commented_break_marked_runs_logged(start_stack):
    st = start_stack(fail_rate=0.3, max_hops=16)
    results = asyncio.run(kick_many(st.url + "/a/", 30, 10, SEED_KICK, progress=False))
    assert all(r.error is None for r in results)
    st.gateway.stop()  # clean shutdown: every record is flushed, the HAR written

    lines = read_jsonl(st.session / "flows.jsonl")
    recs = {r["flow_id"]: r for r in lines if r.get("type", "flow") == "flow"}
    final = {r["flow_id"]: r["run"] for r in lines if r.get("type", "flow") == "flow"}
    final.update((r["flow_id"], r["run"]) for r in lines if r.get("type") == "placement")
    assert {r.get("type", "flow") for r in lines} <= {"flow", "placement"}
    with open(st.session / "flows.mitm", "rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert sorted(f.id for f in flows) == sorted(recs)  # each flow once
    runs = read_jsonl(st.session / "runs.jsonl")
    assert len(runs) == 30 and {r["outcome"] for r in runs} <= {"broken", "completed"}
    # and one line per run on the gateway's terminal (the QA engineer's console view)
    logged = re.findall(r"\] run ([0-9a-f]{8}) (?:completed|broken)", st.gateway.log_path.read_text())
    assert sorted(logged) == sorted(r["run"] for r in runs)

    # the kick answers (ground truth from the services) agree with the runs
    by_kick = {r["hops"][0]["flow_id"]: r for r in runs}
    kicks = [recs[fid] for fid in by_kick]
    answers = sorted(str(r.body) for r in results)
    assert sorted(str(_answer(k)) for k in kicks) == answers

    for run in runs:
        flow_ids = [h["flow_id"] for h in run["hops"]]
        for h in run["hops"]:
            fl = next(f for f in flows if f.id == h["flow_id"])
            frm = "client" if h["from"] == "client" else h["from"].upper()
            assert fl.comment.startswith(f"run {run['run']} · hop {h['hop']} · {frm}→{h['to'].upper()}")
            # a record holds the placement made on arrival; identical twin runs may have been
            # swapped since: a placement record after it then gives the final one
            assert final[h["flow_id"]] == {"id": run["run"], **{k: h[k] for k in (
                "hop", "from", "to", "iteration", "evidence", "parent")}}
        marked = [f.id for f in flows if f.id in flow_ids and f.marked]
        if run["outcome"] == "broken":
            brk = run["break"]
            assert marked == [brk["flow_id"]] and recs[brk["flow_id"]]["status"] == 400
            assert brk["state"] == recs[brk["flow_id"]]["request"]["body"]["value"]
            assert brk["iteration"] == (brk["hop"] + 1) // 2
            kick_answer = recs[flow_ids[0]]["response"]["body"]["value"]
            if brk["hop"] > 1:
                assert kick_answer["hops"] == brk["hop"] and kick_answer["payload"] == brk["state"]
        else:
            assert marked == [] and run["break"] is None and len(run["hops"]) == 16

    log = st.gateway.log_path.read_text()
    assert sum(line.count("run ") and (" broken " in line or " completed " in line)
               for line in log.splitlines()) >= 30


def _answer(rec: dict):
    return rec["response"]["body"]["value"]
