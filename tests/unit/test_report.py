"""`hoptrace report` on synthetic dumps with ground truth: every format, every dump kind (jsonl,
plain `mitmdump -w` capture, HAR), damaged dumps, run look-up, and escaping of hostile payloads."""

from __future__ import annotations

import json
import random
import re

import pytest
from mitmproxy import io
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.test import tflow

from proxy_addons import cli
from proxy_addons.report import Report, ReportError, build, render
from tests.unit.synth import Synth

T0 = 1_764_000_000.0
HOSTILE = "<script>alert(1)</script>[bold red]x[/]\u202e"


def population(seed: int = 7, n: int = 40, **kw) -> Synth:
    """``n`` overlapping kicks in two groups of identical ones; one group's name is hostile."""
    s = Synth(seed=seed, **kw)
    rng = random.Random(seed)
    for i in range(n):
        s.kick(T0 + rng.uniform(0, 0.01), {"name": HOSTILE, "digits": []} if i % 2 else {"digits": []})
    return s


def write_jsonl(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def check_against_truth(report: Report, s: Synth, by=lambda d: d.run.kick.flow_id) -> None:
    """Every run: its hops in order, its outcome, break hop, service and state at break."""
    got = {by(d): d for d in report.diagnoses}
    assert len(got) == len(s.runs)
    for kick, tr in s.runs.items():
        d = got[kick]
        assert [h.hop for h in d.run.hops] == list(range(1, len(tr.hops) + 1))
        assert [h.to for h in d.run.hops] == [h.to for h in tr.hops]
        assert [h.exchange.request for h in d.run.hops] == [h.request for h in tr.hops]
        b = tr.break_hop
        if b is None:
            assert d.outcome == "completed" and d.brk is None
        else:
            assert d.outcome == "broken"
            assert (d.brk["hop"], d.brk["service"], d.brk["state"]) == (b.hop, b.to, b.request)


@pytest.fixture(scope="module")
def synth() -> Synth:
    return population(max_hops=12)


def test_json_matches_truth_and_keeps_the_contract(tmp_path, synth, capsys):
    p = tmp_path / "flows.jsonl"
    write_jsonl(p, synth.dump())
    report = build(tmp_path)  # a session folder means its flows.jsonl
    check_against_truth(report, synth)
    assert cli.main(["report", str(tmp_path), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)  # stdout is the JSON and nothing else
    assert set(out) >= {"runs", "summary", "read", "source"}
    run = out["runs"][0]
    assert {"run", "outcome", "hops", "break"} <= run.keys()
    assert {"hop", "flow_id", "from", "to", "method", "path", "status", "request", "response",
            "started", "duration_ms", "evidence"} <= run["hops"][0].keys()
    brk = next(r["break"] for r in out["runs"] if r["break"])
    assert {"hop", "iteration", "service", "status", "state", "last_good_state", "detail"} <= brk.keys()
    assert out["summary"]["runs"] == len(synth.runs) == len(out["runs"])
    assert sum(out["summary"]["outcomes"].values()) == len(synth.runs)
    assert out["summary"]["hops"] == len(synth.records)
    assert out["read"] == {"records": len(synth.records), "skipped": []}


def test_streamed_json_equals_the_built_report(tmp_path, synth, capsys):
    """The CLI streams --format json run by run; the same runs and summary as the full build."""
    write_jsonl(tmp_path / "flows.jsonl", synth.dump())
    built = json.loads(render(build(tmp_path), "json"))
    assert cli.main(["report", str(tmp_path), "--format", "json", "-o", str(tmp_path / "r.json")]) == 0
    streamed = json.loads((tmp_path / "r.json").read_text())
    key = lambda r: r["run"]  # noqa: E731 - streamed runs come in the order they ended
    assert sorted(streamed["runs"], key=key) == sorted(built["runs"], key=key)
    assert streamed["summary"] == built["summary"] and streamed["read"] == built["read"]
    assert cli.main(["report", str(tmp_path / "missing"), "--format", "json"]) == 2
    assert capsys.readouterr().out == ""  # a bad path writes nothing to stdout


def test_streamed_json_waits_for_late_hops(tmp_path):
    """A hop under a partner that timed out ends after its run's kick: the streamed JSON (the
    engine, ``--reconstruct``) still has its answer, as the full build has."""
    s, rng = Synth(seed=9, max_hops=14, timeout=0.03, slow_rate=0.05), random.Random(9)
    for i in range(60):
        s.kick(T0 + rng.uniform(0, 0.3), {"name": f"p{i}", "digits": []})
    write_jsonl(tmp_path / "flows.jsonl", s.dump())
    built = json.loads(render(build(tmp_path), "json"))
    assert cli.main(["report", str(tmp_path), "--format", "json", "--reconstruct", "-o", str(tmp_path / "r.json")]) == 0
    streamed = json.loads((tmp_path / "r.json").read_text())
    late = [r for r in built["runs"] if any(h["started"] > r["started"] + r["duration_ms"] / 1000 - 1e-9
                                            or h["duration_ms"] > r["duration_ms"] for h in r["hops"][1:])]
    assert late  # the dump has runs with late hops
    key = lambda r: r["run"]  # noqa: E731
    assert sorted(streamed["runs"], key=key) == sorted(built["runs"], key=key)
    assert streamed["summary"] == built["summary"]


def test_text_table_and_summary(tmp_path, synth):
    write_jsonl(tmp_path / "flows.jsonl", synth.dump())
    report = build(tmp_path / "flows.jsonl")
    text = render(report, "text")
    assert "warning" not in text
    for d in report.diagnoses:
        assert re.search(rf"{d.run.run_id}\s.*\s{d.outcome}\s", text), d.run.run_id
    s = report.summary
    for svc, v in s["services"].items():
        assert re.search(rf"{svc.upper()}\s+.*{v['received']}\s+.*{v['breaks']}\s+.*{v['break_rate']:.1%}", text)
    assert f"{s['runs']} runs, {s['hops']} hops" in text
    hostile = next(d for d in report.diagnoses
                   if d.run.kick.exchange.request.get("name") == HOSTILE and d.brk)
    shown = render(report, "text", run=hostile.run.run_id)
    assert shown.count("[bold red]x[/]") >= 1  # a payload is shown as text, never read as markup


def test_one_run_timeline_and_lookup_errors(tmp_path, synth):
    write_jsonl(tmp_path / "flows.jsonl", synth.dump())
    report = build(tmp_path)
    d = max((d for d in report.diagnoses if d.brk), key=lambda d: len(d.run.hops))
    text = render(report, "text", run=d.run.run_id[:6])
    assert f"run {d.run.run_id} broken" in text
    assert f"break at hop {d.brk['hop']} · iteration {d.brk['iteration']}" in text
    assert "digits +[" in text  # A's change: one digit appended
    assert json.dumps(d.brk["state"], ensure_ascii=False, separators=(", ", ": ")) in " ".join(text.split("\n"))
    one = json.loads(render(report, "json", run=d.run.run_id))
    assert one["run"] == d.run.run_id and one["break"]["hop"] == d.brk["hop"]
    with pytest.raises(ReportError, match="no run 'zzzz'"):
        report.find("zzzz")
    ids = [x.run.run_id for x in report.diagnoses]
    shared = next(c for c in "0123456789abcdef" if sum(i.startswith(c) for i in ids) > 1)
    with pytest.raises(ReportError, match="ambiguous"):
        report.find(shared)


def test_cli_errors_are_one_clear_line(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    write_jsonl(tmp_path / "flows.jsonl", population(n=3).dump())
    assert cli.main(["report", str(tmp_path), "--run", "zzzz"]) == 2
    captured = capsys.readouterr()
    assert "no run 'zzzz'" in captured.err and captured.out == ""


def test_damaged_dump_reports_what_it_can_and_what_it_skipped(tmp_path, synth):
    recs = synth.dump()
    lines = [json.dumps({**r, "future_field": {"x": 1}}) for r in recs]  # unknown fields
    victim = next(i for i, r in enumerate(recs) if r["status"] == 400)
    text_body = {"kind": "text", "value": "<html>oops</html>", "size": 17, "content_type": "text/html"}
    bad = json.loads(lines[victim])
    bad["response"]["body"] = text_body  # a non-JSON body
    lines[victim] = json.dumps(bad)
    lines.insert(5, "this is not json")
    lines.insert(9, json.dumps({"type": "heartbeat", "t": 1}))
    p = tmp_path / "flows.jsonl"
    p.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut last line
    report = build(p)
    assert len(report.read.skipped) == 3
    assert report.read.read == len(recs)
    check_against_truth(report, synth)  # the cut line repeats a complete one: nothing lost
    assert any(d.brk and d.brk["detail"] == "<html>oops</html>" for d in report.diagnoses)
    text = render(report, "text")
    assert "warning: skipped 3 unreadable part(s)" in text and "cut last line" in text
    assert json.loads(render(report, "json"))["read"]["skipped"] == report.read.skipped
    assert "id='skipped'" in render(report, "html")


def test_dump_cut_before_the_kicks_answered(tmp_path, synth):
    """A gateway stopped mid-load: inner hops are written, their kicks are not. Those runs are
    reported as ``partial`` (the payload says they began earlier), none is invented or lost."""
    recs = synth.dump()[: len(synth.records) // 2]
    write_jsonl(tmp_path / "flows.jsonl", recs)
    report = build(tmp_path)
    kicks = {r["flow_id"] for r in recs} & set(synth.runs)
    assert sum(len(d.run.hops) for d in report.diagnoses) == len(recs)
    for d in report.diagnoses:
        assert d.run.partial == (d.run.kick.flow_id not in kicks)
    assert any(d.run.partial for d in report.diagnoses)
    assert "(partial)" in render(report, "text")


def to_flow(rec: dict):
    """A flows.jsonl record as the flow plain ``mitmdump -w`` would have saved (no metadata)."""
    f = tflow.tflow(resp=True)
    f.id = rec["flow_id"]
    f.request.method, f.request.path = "POST", rec["path"]
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps(rec["request"]["body"]["value"]).encode()
    f.request.timestamp_start = f.request.timestamp_end = rec["started"]
    f.server_conn.timestamp_tcp_setup = None
    f.response.status_code = rec["status"]
    f.response.headers["content-type"] = "application/json"
    f.response.content = json.dumps(rec["response"]["body"]["value"]).encode()
    f.response.timestamp_start = f.response.timestamp_end = rec["ended"]
    return f


@pytest.mark.parametrize("kind", ["mitm", "har"])
def test_plain_capture_and_har(tmp_path, kind):
    s = population(seed=11, n=25, max_hops=10)
    flows = [to_flow(r) for r in s.dump()]
    p = tmp_path / f"capture.{kind}"
    if kind == "mitm":
        with open(p, "wb") as fo:
            w = io.FlowWriter(fo)
            for f in flows:
                w.add(f)
        check_against_truth(build(p), s)
    else:
        SaveHar().export_har(flows, str(p))
        order = [r["flow_id"] for r in s.dump()]  # HAR has no flow ids: entries in file order
        report = build(p)
        check_against_truth(report, s, by=lambda d: order[int(d.run.kick.flow_id.split("-")[1]) - 1])


def test_html_is_self_contained_escaped_and_draws_broken_runs(tmp_path, synth):
    write_jsonl(tmp_path / "flows.jsonl", synth.dump())
    report = build(tmp_path)
    page = render(report, "html")
    broken = [d for d in report.diagnoses if d.outcome == "broken"]
    assert page.count("<svg") == len(broken) > 0
    assert page.count("class='hop break-hop'") == len(broken)
    for d in broken:
        assert f"id='run-{d.run.run_id}'" in page
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert not re.search(r"(src|href)\s*=\s*['\"](?!#)", page)  # only in-page links
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)  # no network at all
    assert "default-src 'none'" in page
    cli_out = tmp_path / "r.html"
    assert cli.main(["report", str(tmp_path), "--format", "html", "-o", str(cli_out)]) == 0
    assert cli_out.read_text().count("<svg") == len(broken)
