"""Reading dumps of every kind, damaged ones included."""

from __future__ import annotations

import json

import pytest
from mitmproxy import io
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.test import tflow

from proxy_addons.dumpio import ReadReport, read_records, resolve


def rec(i: int) -> dict:
    return {"type": "flow", "v": 1, "flow_id": f"f{i}", "started": float(i), "ended": i + 0.5,
            "path": "/a/", "status": 200}


def test_jsonl_with_cut_last_line_unknown_types_and_fields(tmp_path):
    p = tmp_path / "flows.jsonl"
    lines = [json.dumps({**rec(1), "future_field": 1}), "garbage", json.dumps({"type": "other"}),
             json.dumps(rec(2))]
    p.write_text("\n".join(lines) + "\n" + json.dumps(rec(3))[:20])
    report = ReadReport()
    got = list(read_records(tmp_path, report))
    assert [r["flow_id"] for r in got] == ["f1", "f2"] and report.read == 2
    assert report.skipped == ["line 2: not JSON", "line 3: not a flow record ('other')",
                              "line 5: cut last line (the writer stopped mid-record)"]


def test_placement_records_are_neither_flows_nor_damage(tmp_path):
    """A corrected run placement (docs/dump-format.md) is skipped silently: not read, not said."""
    p = tmp_path / "flows.jsonl"
    moved = {"type": "placement", "v": 1, "flow_id": "f1", "run": {"id": "f2", "hop": 2}}
    p.write_text("\n".join(json.dumps(r) for r in (rec(1), moved, rec(2), moved)) + "\n")
    report = ReadReport()
    assert [r["flow_id"] for r in read_records(p, report)] == ["f1", "f2"]
    assert report.read == 2 and report.skipped == []


def make_flows():
    flows = []
    for i, status in enumerate((200, 400)):
        f = tflow.tflow(resp=True)
        f.request.path = "/b/" if i else "/a/"
        f.request.method = "POST"
        f.request.headers["content-type"] = "application/json"
        f.request.content = json.dumps({"digits": [i]}).encode()
        f.response.status_code = status
        f.response.content = b'{"ok": 1}'
        flows.append(f)
    return flows


def test_plain_mitmdump_capture_and_cut_mitm(tmp_path):
    p = tmp_path / "capture.mitm"
    with open(p, "wb") as fo:
        w = io.FlowWriter(fo)
        for f in make_flows():
            w.add(f)
    got = list(read_records(p))
    assert [r["path"] for r in got] == ["/a/", "/b/"] and got[1]["status"] == 400
    assert got[0]["request"]["body"]["value"] == {"digits": [0]}
    data = p.read_bytes()
    p.write_bytes(data[:-10])
    report = ReadReport()
    assert len(list(read_records(p, report))) == 1
    assert report.skipped and "cut" in report.skipped[0]


def test_har(tmp_path):
    p = tmp_path / "x.har"
    SaveHar().export_har(make_flows(), str(p))
    got = list(read_records(p))
    assert [(r["path"], r["status"], r["service"]) for r in got] == [("/a/", 200, "a"), ("/b/", 400, "b")]
    assert got[1]["request"]["body"]["value"] == {"digits": [1]}
    assert got[0]["response"]["body"]["value"] == {"ok": 1}
    assert got[0]["started"] <= got[0]["ended"]


def test_missing_paths_say_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no flows.jsonl"):
        resolve(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve(tmp_path / "nope.jsonl")
