"""The recorder addon on mitmproxy test flows: what it writes for every kind of body."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json

from mitmproxy import io
from mitmproxy.test import taddons, tflow

from proxy_addons.har import export_har
from proxy_addons.recorder import Recorder
from proxy_addons.flowmeta import SERVICE as SERVICE_KEY
from tests.conftest import read_jsonl


def make_flow(req_body: bytes, resp_body: bytes | None = b"", ctype="application/json", status=200, **kw):
    f = tflow.tflow(resp=resp_body is not None, **kw)
    f.request.path = "/a/"
    f.request.headers["content-type"] = ctype
    f.request.content = req_body
    if f.response is not None:
        f.response.status_code = status
        f.response.headers["content-type"] = ctype
        f.response.content = resp_body
    f.metadata[SERVICE_KEY] = "a"
    return f


def record_all(tmp_path, flows) -> list[dict]:
    rec = Recorder()
    with taddons.context(rec) as tctx:
        tctx.configure(rec, hoptrace_session=str(tmp_path / "s"), hoptrace_max_body=1024)

        async def go():
            for f in flows:
                if f.response is not None:
                    rec.response(f)
                else:
                    rec.error(f)
        asyncio.run(go())
        rec.done()
    return read_jsonl(tmp_path / "s" / "flows.jsonl")


def test_json_text_empty_binary_and_large_bodies(tmp_path):
    flows = [
        make_flow(b'{"digits": [1]}', b'{"ok": true}'),
        make_flow(b"hello", "h\u00e9".encode(), ctype="text/plain"),
        make_flow(b"", b""),
        make_flow(b"\xff\x00\xfe", b"\x89PNG", ctype="application/octet-stream", status=400),
        make_flow(b"x" * 5000, b"[]"),
    ]
    recs = record_all(tmp_path, flows)
    assert [r["flow_id"] for r in recs] == [f.id for f in flows]
    j, t, e, b, big = recs
    assert j["request"]["body"] == {"kind": "json", "value": {"digits": [1]}, "size": 15, "content_type": "application/json"}
    assert j["response"]["body"]["value"] == {"ok": True} and j["status"] == 200 and j["service"] == "a"
    assert t["request"]["body"]["kind"] == "text" and t["response"]["body"]["value"] == "h\u00e9"
    assert e["request"]["body"]["kind"] == "empty" and e["request"]["body"]["size"] == 0
    assert base64.b64decode(b["request"]["body"]["value"]) == b"\xff\x00\xfe" and b["status"] == 400
    assert big["request"]["body"]["truncated"] is True and big["request"]["body"]["size"] == 5000
    assert len(big["request"]["body"]["value"]) == 1024
    for r in recs:
        assert r["started"] <= r["ended"] and r["duration_ms"] >= 0 and r["client"]


def test_upstream_error_is_recorded_as_502_with_undelivered_payload(tmp_path):
    f = make_flow(b'{"digits": [3]}', None, err=True)
    (r,) = record_all(tmp_path, [f])
    assert r["status"] == 502 and r["response"] is None and r["origin"] == "gateway"
    assert r["error"]["undelivered"] is True and r["error"]["message"]
    assert r["request"]["body"]["value"] == {"digits": [3]}


def test_undecodable_content_encoding_is_noted_and_raw_bytes_kept(tmp_path):
    f = make_flow(b"{}", b"{}")
    f.response.headers["content-encoding"] = "gzip"
    f.response.raw_content = b"not gzip at all"
    ok = make_flow(b"{}", b"{}")
    ok.response.headers["content-encoding"] = "gzip"
    ok.response.raw_content = gzip.compress(b'{"z": 1}')
    bad, good = record_all(tmp_path, [f, ok])
    assert "content-encoding" in bad["response"]["body"]["note"]
    assert bad["response"]["body"]["value"] == "not gzip at all"
    assert good["response"]["body"]["value"] == {"z": 1}


def test_mitm_file_reopens_and_har_is_exported(tmp_path):
    flows = [make_flow(b'{"a": 1}', b'{"b": 2}'), make_flow(b"{}", None, err=True)]
    flows[0].comment = "run x · hop 1"
    record_all(tmp_path, flows)
    with open(tmp_path / "s" / "flows.mitm", "rb") as fo:
        back = list(io.FlowReader(fo).stream())
    assert [f.id for f in back] == [f.id for f in flows]
    assert back[0].comment == "run x · hop 1" and back[0].response.content == b'{"b": 2}'
    har = json.loads((tmp_path / "s" / "flows.har").read_text())
    assert len(har["log"]["entries"]) >= 1
    assert export_har(tmp_path / "missing.mitm", tmp_path / "x.har") == 0


def test_session_folder_and_files_are_private(tmp_path):
    record_all(tmp_path, [make_flow(b"{}", b"{}")])
    folder = tmp_path / "s"
    assert folder.stat().st_mode & 0o777 == 0o700
    for name in ("flows.jsonl", "flows.mitm", "session.json", "flows.har"):
        assert (folder / name).stat().st_mode & 0o777 == 0o600, name


def test_recording_does_not_touch_the_flow(tmp_path):
    f = make_flow(b'{"digits": [1]}', b'{"ok": 1}')
    before = (f.request.get_state(), f.response.get_state())
    record_all(tmp_path, [f])
    assert (f.request.get_state(), f.response.get_state()) == before


def test_a_second_session_never_overwrites_the_first(tmp_path):
    from proxy_addons.session import new_session_dir, open_session_dir
    import pytest

    a, b = new_session_dir(tmp_path, now=0), new_session_dir(tmp_path, now=0)
    assert a != b and b.name.endswith("-2")
    record_all(tmp_path, [make_flow(b"{}", b"{}")])
    with pytest.raises(FileExistsError):
        open_session_dir(tmp_path / "s")


def test_a_write_after_shutdown_appends_to_the_same_session(tmp_path):
    """Flows torn down at shutdown end after ``done``: their runs still land in this session."""
    rec = Recorder()
    with taddons.context(rec) as tctx:
        tctx.configure(rec, hoptrace_dumps=str(tmp_path / "dumps"))
        rec.running()
        rec.done()
        rec.write_run(b'{"run": "late"}')
        rec.close()
    (session,) = (tmp_path / "dumps").iterdir()
    assert read_jsonl(session / "runs.jsonl") == [{"run": "late"}]


def test_a_caller_that_hung_up_is_not_recorded_as_a_gateway_502(tmp_path):
    from mitmproxy import flow as mflow

    f = make_flow(b'{"digits": [3]}', None)
    f.error = mflow.Error("Client disconnected.")
    gone, = record_all(tmp_path, [f])
    assert gone["status"] is None and gone["origin"] == "client"
    assert gone["error"]["abandoned"] is True and gone["error"]["undelivered"] is False
