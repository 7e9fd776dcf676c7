"""`hoptrace replay` through the real stack: with the services on the same SEED, replaying each
recorded kick on a fresh stack reproduces its run hop for hop, and replaying a break hop repeats
the rejection; the new runs are linked to the originals in flows.jsonl, runs.jsonl and the report."""

from __future__ import annotations

import json

import httpx
import pytest

from proxy_addons.cli import main
from proxy_addons.report import build
from tests.conftest import flow_records, read_jsonl

pytestmark = pytest.mark.e2e
SETTINGS = {"seed": 11, "fail_rate": 0.25, "max_hops": 20}
HOP_FIELDS = ("hop", "from", "to", "method", "path", "status", "request", "response")


def replay(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(["replay", *args]) == 0
    return capsys.readouterr().out


def test_replay_reproduces_seeded_runs_and_repeats_the_break(start_stack, capsys):
    first = start_stack(**SETTINGS)
    with httpx.Client(trust_env=False, timeout=30) as c:
        for i in range(6):  # different kicks: with a SEED, identical ones would give identical runs
            body = {"name": f"kick-{i}", "digits": [], "avg": None, "max": None, "min": None}
            assert c.post(first.url + "/a/", json=body).status_code in (200, 400)  # 400: A rejected the kick
    first.stop()
    original = {d.run.run_id: d.to_json() for d in build(first.session).diagnoses}
    assert len(original) == 6 and any(r["outcome"] == "broken" and r["break"]["hop"] > 2
                                      for r in original.values())

    second = start_stack(**SETTINGS)  # a fresh stack, a new session folder
    for run_id in original:
        out = json.loads(replay(capsys, str(first.session), "--run", run_id, "--gateway", second.url, "--json"))
        assert out["replay_of"] == {"run": run_id, "hop": 1} and out["same"] is True
    brk_run = max((r for r in original.values() if r["break"]), key=lambda r: r["break"]["hop"])
    brk = brk_run["break"]
    text = replay(capsys, str(first.session), "--run", brk_run["run"][:6], "--from-hop", str(brk["hop"]),
                  "--gateway", second.url)
    assert f"replayed run {brk_run['run']} hop {brk['hop']}" in text and "the rejection repeats" in text
    second.gateway.stop()

    replays = {}
    for d in build(second.session).diagnoses:
        r = d.to_json()
        replays[(r["replay_of"]["run"], r["replay_of"]["hop"])] = r
    assert len(replays) == 7
    for run_id, orig in original.items():  # hop for hop, what every service received and answered
        new = replays[(run_id, 1)]
        assert [{k: h[k] for k in HOP_FIELDS} for h in new["hops"]] == [
            {k: h[k] for k in HOP_FIELDS} for h in orig["hops"]]
        assert new["outcome"] == orig["outcome"]
        assert (new["break"] or {}).get("state") == (orig["break"] or {}).get("state")

    again = replays[(brk_run["run"], brk["hop"])]  # the break hop alone: rejected again, same state
    assert again["outcome"] == "broken" and again["partial"] and len(again["hops"]) == 1
    assert (again["break"]["service"], again["break"]["status"], again["break"]["state"]) == (
        brk["service"], brk["status"], brk["state"])

    recs = flow_records(second.session / "flows.jsonl")
    linked = [r for r in recs if "replay_of" in r]
    assert len(linked) == 7 and all(r["run"]["hop"] == 1 for r in linked)
    assert {(r["replay_of"]["run"], r["replay_of"]["hop"]) for r in linked} == set(replays)
    assert all(not any(k.lower() == "x-hoptrace-replay-of" for k, _ in r["request"]["headers"])
               for r in recs if "replay_of" not in r)  # the services do not forward it
    runs = read_jsonl(second.session / "runs.jsonl")
    assert sorted((r["replay_of"]["run"], r["replay_of"]["hop"]) for r in runs) == sorted(replays)


def test_replay_names_an_unknown_run(tmp_path, capsys):
    recs = tmp_path / "flows.jsonl"
    recs.write_text("")
    assert main(["replay", str(recs), "--run", "nope"]) == 2
    assert "no run 'nope'" in capsys.readouterr().err
