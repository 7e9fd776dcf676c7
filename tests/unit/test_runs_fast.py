"""The fast report (the gateway's placement, no run engine) gives the same JSON as the engine:
same runs, hops, outcomes, breaks and changes, on synthetic dumps whose ``run`` fields and
placement records come from a ``RunTracker`` fed as the live gateway feeds it (twins, partner
timeouts, 502s, injected faults, trace headers, runs in flight, partial runs). What it cannot
trust (no run field, fields that do not hold together) goes through the engine, said, not lost.
"""

from __future__ import annotations

import json
import os
import pty
import random
import subprocess
import sys

import pytest

from proxy_addons import cli
from proxy_addons.report import build, render
from proxy_addons.report_parallel import placed, stream_placed
from tests.unit.synth import Synth, cut_at, drop_first, traceparent
from tests.unit.synth_placement import with_placements

T0 = 1_764_000_000.0


def kicks(s: Synth, n: int, spread: float, identical: bool = True, headers: bool = False) -> Synth:
    rng = random.Random(n)
    for i in range(n):
        s.kick(T0 + rng.uniform(0, spread), {"digits": []} if identical or i % 3 else {"name": f"p{i}", "digits": []},
               traceparent(rng) if headers and i % 2 else None)
    return s


def dumps(seed: int) -> dict[str, list[dict]]:
    """Flow records (end order) of each kind of run the engine handles."""
    out = {}
    out["twins"] = kicks(Synth(seed=seed, max_hops=12), 60, 0.02).dump()
    out["timeouts"] = kicks(Synth(seed=seed, timeout=0.05, slow_rate=0.1, max_hops=12), 40, 0.05).dump()
    s = kicks(Synth(seed=seed, down=frozenset({"b"}), max_hops=12), 30, 0.02)
    s.kick(T0 + 0.01, {"digits": []}, [["X-Hoptrace-Replay-Of", "0badcafe/1"]])  # a `hoptrace replay`
    out["502"] = s.dump()
    s = kicks(Synth(seed=seed, max_hops=20, inject_rate=0.1, propagate_headers=True), 40, 0.02, headers=True)
    out["in_flight"] = cut_at(s, T0 + 0.02)[0]
    s = kicks(Synth(seed=seed, max_hops=20), 30, 0.02, identical=False)
    for k in list(s.runs)[:8]:
        drop_first(s, k, 2)
    out["partial"] = s.dump()
    out["completed"] = kicks(Synth(seed=seed, fail_rate=0.1, max_hops=4), 30, 0.02).dump()  # max_hops answers
    s = kicks(Synth(seed=seed, max_hops=12), 30, 0.02)  # refused hops' records lost: the kick's answer tells
    lost = {run.hops[-1].flow_id for run in s.runs.values() if len(run.hops) > 1 and run.hops[-1].status == 400}
    out["lost_break"] = [r for r in s.dump() if r["flow_id"] not in lost]
    return out


def write(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def by_run(doc: dict) -> dict:
    return {(r["run"], r["hops"][0]["flow_id"]): r for r in doc["runs"]}


def assert_same_as_engine(fast: dict, engine: dict, live: bool = False) -> None:
    """The same runs as the engine gives, hop for hop, and the same summary. (A late hop under
    a timed-out partner that joined a run already reported and then moved to a twin's run is
    listed in the second run only, by both.) ``live``: a real gateway's dump, where the gateway
    saw requests in the order their hooks ran and the offline engine sees them in timestamp
    order: a hop one of them placed with no rival (``lineage``) the other may have placed among
    twins and settled by the answers (``lineage+answer``); everything else must be equal."""
    if live:
        fast, engine = _lineage_as_one(fast), _lineage_as_one(engine)
    seen: dict[str, int] = {}
    for r in engine["runs"]:
        for h in r["hops"]:
            seen[h["flow_id"]] = seen.get(h["flow_id"], 0) + 1
    assert {fid for fid, n in seen.items() if n > 1} == set()
    got, want = by_run(fast), by_run(engine)
    assert got.keys() == want.keys()
    for key, run in want.items():
        assert got[key] == run, (key, _differences(got[key], run))
    assert sum(len(r["hops"]) for r in fast["runs"]) == fast["read"]["records"]
    assert fast["summary"] == engine["summary"]


def _lineage_as_one(doc: dict) -> dict:
    runs = [{**r, "hops": [{**h, "evidence": "lineage" if h["evidence"] == "lineage+answer" else h["evidence"]}
                           for h in r["hops"]]} for r in doc["runs"]]
    return {**doc, "runs": runs}


def _differences(got: dict, want: dict) -> list:
    """Where two runs' JSON differ: (hop, field, got, want), run fields as hop 0."""
    out = [(0, k, got.get(k), want.get(k)) for k in want if k != "hops" and got.get(k) != want.get(k)]
    for g, w in zip(got["hops"], want["hops"], strict=False):
        out += [(w["hop"], k, g.get(k), w.get(k)) for k in w if g.get(k) != w.get(k)]
    return out


def fast_json(path, **kw) -> dict:
    with open(path.with_suffix(".out"), "wb") as out:
        stream_placed(path, out, **kw)
    return json.loads(path.with_suffix(".out").read_text())


def engine_json(path) -> dict:
    return json.loads(render(build(path), "json"))


@pytest.mark.parametrize("seed", [1, 2])
def test_fast_path_equals_the_engine(tmp_path, seed):
    for name, records in dumps(seed).items():
        p = tmp_path / f"{name}.jsonl"
        dump = with_placements(records)
        write(p, dump)
        assert placed(p)
        fast, engine = fast_json(p), engine_json(p)
        assert_same_as_engine(fast, engine)
        assert fast["read"] == engine["read"], name
        assert fast["placement"] == "gateway"
        if name == "502":
            assert [r["replay_of"] for r in fast["runs"] if r["replay_of"]] == [{"run": "0badcafe", "hop": 1}]
        if name == "twins":  # the gateway corrected provisional placements: the test covers them
            assert sum(r["type"] == "placement" for r in dump) > 10


def test_placement_records_override_the_provisional_field(tmp_path):
    records = dumps(3)["twins"]
    dump = with_placements(records)
    p = tmp_path / "flows.jsonl"
    write(p, [r for r in dump if r["type"] == "flow"])  # the corrections lost
    without = fast_json(p)
    write(p, dump)
    assert by_run(fast_json(p)) == by_run(engine_json(p)) != by_run(without)


def test_records_the_gateway_did_not_place_go_through_the_engine(tmp_path):
    """The gateway's own 404 has no run field; a broken field is rebuilt, said, never lost."""
    dump = with_placements(dumps(4)["twins"])
    flows = [i for i, r in enumerate(dump) if r["type"] == "flow"]
    lost = {**dump[flows[5]], "flow_id": "f00d0000-0000-0000-0000-000000000404", "path": "/nowhere",
            "service": None, "origin": "gateway", "status": 404, "response": None}
    del lost["run"]
    dump.insert(flows[5] + 1, lost)
    moved = {r["flow_id"] for r in dump if r["type"] == "placement"}
    victim = next(r for r in dump[flows[10]:] if r["type"] == "flow" and r["run"]["parent"]
                  and r["flow_id"] not in moved)
    victim["run"] = {**victim["run"], "parent": "not-a-flow"}
    p = tmp_path / "flows.jsonl"
    write(p, dump)
    fast, engine = fast_json(p), engine_json(p)
    assert sum(len(r["hops"]) for r in fast["runs"]) == fast["read"]["records"] == engine["read"]["records"]
    notes = fast["read"]["notes"]
    assert len(notes) == 1 and f"run {victim['run']['id']}" in notes[0] and "rebuilt by the engine" in notes[0]
    fast_runs, engine_runs = by_run(fast), by_run(engine)
    rebuilt = next(k for k in fast_runs if k[0] == victim["run"]["id"])
    # rebuilt from its own records alone: the same hops and outcome (evidence may be weaker:
    # the engine saw no twins); every other run as the engine has it
    hops = lambda r: [(h["hop"], h["flow_id"], h["parent"]) for h in r["hops"]]  # noqa: E731
    assert hops(fast_runs.pop(rebuilt)) == hops(engine_runs.pop(rebuilt))
    assert fast_runs == engine_runs
    gateway_404 = next(r for r in fast["runs"] if r["hops"][0]["flow_id"] == lost["flow_id"])
    assert gateway_404["outcome"] == "error" and gateway_404["length"] == 1


def test_cli_reconstruct_and_other_dumps_take_the_engine(tmp_path, capsys):
    p = tmp_path / "flows.jsonl"
    write(p, with_placements(dumps(5)["502"]))
    outs = {}
    for flag in ([], ["--reconstruct"]):
        assert cli.main(["report", str(p), "--format", "json", *flag]) == 0
        outs[bool(flag)] = json.loads(capsys.readouterr().out)
    assert outs[False]["placement"] == "gateway" and outs[True]["placement"] == "engine"
    assert by_run(outs[False]) == by_run(outs[True])
    write(p, dumps(5)["502"])  # an older dump: no run fields
    assert not placed(p)
    assert cli.main(["report", str(p), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["placement"] == "engine"
    (tmp_path / "flows.har").write_text('{"log": {"entries": []}}')
    assert not placed(tmp_path / "flows.har")


def _report_cli(args: list[str], tty: bool) -> tuple[int, bytes]:
    """``hoptrace report`` in a child process, its stderr a terminal (a pty) or a pipe: (exit
    status, what it wrote to stderr)."""
    cmd = [sys.executable, "-c", "import sys; from proxy_addons.cli import main; sys.exit(main(sys.argv[1:]))",
           "report", *args]
    if not tty:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60, check=False)
        return p.returncode, p.stderr
    master, slave = pty.openpty()
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=slave) as p:
        os.close(slave)
        seen = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        rc = p.wait(timeout=60)
    os.close(master)
    return rc, seen


def test_cli_shows_the_bytes_read_on_a_terminal_only(tmp_path):
    p = tmp_path / "flows.jsonl"
    write(p, with_placements(dumps(5)["twins"]))
    outs = {}
    for tty in (True, False):
        out = tmp_path / f"report-{tty}.json"
        rc, err = _report_cli([str(p), "--format", "json", "-o", str(out)], tty)
        assert rc == 0, err
        outs[tty] = json.loads(out.read_text())
        assert (b"reading" in err) is tty, err  # the bar, on a terminal only
        assert b"wrote " + str(out).encode() in err
    assert outs[True]["placement"] == "gateway"
    assert outs[True] == outs[False]
