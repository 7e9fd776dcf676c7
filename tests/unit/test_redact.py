"""Redaction at capture time (taddons): secrets are hashed in every file written, the flow the
proxy forwards keeps them, and the same value always gives the same hash within a session."""

from __future__ import annotations

import asyncio
import gzip
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions, http
from mitmproxy.http import Headers
from mitmproxy.test import taddons, tflow, tutils

from proxy_addons.recorder import Recorder
from proxy_addons.redact import Redact, Redactor, parse_paths
from proxy_addons.routing import Routing

SECRETS = [b"Bearer tok-123", b"sid=s3cr3t", b"hunter2", b"pw-in-gzip", b"refresh-9"]


def make_flow(password: str = "hunter2") -> http.HTTPFlow:
    f = tflow.tflow()
    f.request.path = "/a/"
    f.request.headers["Authorization"] = "Bearer tok-123"
    f.request.headers["cookie"] = "sid=s3cr3t"
    f.request.headers["content-type"] = "application/json"
    f.request.content = json.dumps({"user": {"name": "ann", "password": password}, "digits": [1]}).encode()
    f.response = tflow.tresp(content=b"")
    f.response.headers["Set-Cookie"] = "sid=s3cr3t; HttpOnly"
    f.response.headers["content-type"] = "application/json"
    f.response.headers["content-encoding"] = "gzip"
    f.response.raw_content = gzip.compress(json.dumps({"tokens": [{"refresh": "refresh-9"}], "password": "pw-in-gzip"}).encode())
    return f


def record(tmp_path, flows, **opts) -> dict:
    red, routing, rec = Redact(), Routing(), Recorder()
    with taddons.context(red, routing, rec) as tctx:
        tctx.configure(routing, routes="/a/=http://127.0.0.1:1")
        tctx.configure(red, **opts)
        tctx.configure(rec, hoptrace_session=str(tmp_path / "s"))

        async def go():
            for f in flows:
                live_response = f.response
                f.response = None
                red.requestheaders(f)
                routing.request(f)
                f.response = live_response
                before = f.get_state()
                rec.response(f)
                assert f.get_state() | {"metadata": {}} == before | {"metadata": {}}  # live flow untouched
        asyncio.run(go())
        rec.done()
    return {p.name: p.read_bytes() for p in (tmp_path / "s").iterdir() if p.is_file()}


def test_default_headers_and_json_paths_are_hashed_in_every_file(tmp_path):
    flows = [make_flow(), make_flow()]
    files = record(tmp_path, flows, hoptrace_redact_json="user.password,password,tokens.*.refresh")
    assert {"flows.jsonl", "flows.mitm", "flows.har"} <= set(files)
    for name, data in files.items():
        for secret in SECRETS:
            assert secret not in data and gzip.compress(secret) not in data, (name, secret)
    # the live flows still carry everything
    assert flows[0].request.headers["authorization"] == "Bearer tok-123"
    assert b"hunter2" in flows[0].request.content and b"pw-in-gzip" in flows[0].response.content
    r1, r2 = (json.loads(line) for line in files["flows.jsonl"].splitlines())
    auth = dict(r1["request"]["headers"])["Authorization"]
    assert auth.startswith("[redacted ") and auth == dict(r2["request"]["headers"])["Authorization"]
    assert r1["request"]["body"]["value"]["user"]["name"] == "ann"  # only the paths go
    assert r1["request"]["body"]["value"]["user"]["password"].startswith("[redacted ")
    assert r1["response"]["body"]["value"]["tokens"][0]["refresh"].startswith("[redacted ")
    assert b"ann" in files["flows.mitm"]  # the .mitm copy keeps what is not secret


def test_same_value_same_hash_within_a_session_never_across(tmp_path):
    key = b"k" * 32
    a, b = Redactor({"authorization"}, parse_paths("password"), key), Redactor(set(), [], b"x" * 32)
    assert a.token("hunter2") == a.token(b"hunter2") == a.token("hunter2")  # header, JSON string, bytes
    assert a.token("hunter2") != a.token("hunter3") and a.token("hunter2") != b.token("hunter2")
    assert "hunter2" not in a.token("hunter2") and key.decode() not in a.token("hunter2")
    first = record(tmp_path / "1", [make_flow()])
    second = record(tmp_path / "2", [make_flow()])

    def auth(files):
        return dict(json.loads(files["flows.jsonl"])["request"]["headers"])["Authorization"]
    assert auth(first) != auth(second)  # a new gateway start draws a new key


def test_json_path_syntax_and_a_body_that_is_not_whole_json(tmp_path):
    r = Redactor(set(), parse_paths("$.a.*.b,list.1,missing.x"), b"k" * 32)
    value = {"a": {"x": {"b": 1, "c": 2}, "y": {"b": 3}}, "list": ["keep", "secret"]}
    out, changed = r.json(value)
    assert changed and out["a"]["x"]["c"] == 2 and out["list"][0] == "keep"
    assert out["a"]["x"]["b"].startswith("[redacted") and out["list"][1].startswith("[redacted")
    assert value["a"]["x"]["b"] == 1  # a copy: the original is untouched
    cut = {"kind": "text", "value": '{"b": "secret", "tail', "size": 99, "content_type": None}
    red = r.body(cut)
    assert "secret" not in red["value"] and "not whole JSON" in red["note"]
    deep = Redactor(set(), parse_paths("**.pw"), b"k" * 32)
    out, changed = deep.json({"pw": 1, "x": [{"pw": 2, "y": {"pw": 3}}], "z": "pw"})
    assert changed and all(str(v).startswith("[redacted") for v in (out["pw"], out["x"][0]["pw"], out["x"][0]["y"]["pw"]))
    assert out["z"] == "pw"
    plain = {"kind": "text", "value": "nothing to see", "size": 14, "content_type": None}
    assert r.body(plain) is plain


def test_nothing_to_redact_writes_the_flow_itself(tmp_path):
    r = Redactor({"authorization"}, [], b"k" * 32)
    f = tflow.tflow(resp=True)
    assert r.flow(f) is f
    f.request.headers["authorization"] = "x"
    copy = r.flow(f)
    assert copy is not f and copy.id == f.id and f.request.headers["authorization"] == "x"


@pytest.mark.parametrize(("opt", "value", "needle"), [
    ("hoptrace_redact_json", "a..b", "empty step"),
    ("hoptrace_redact_headers", "authorization,bad header", "not header names"),
])
def test_bad_options_are_clear_errors(opt, value, needle):
    red = Redact()
    with taddons.context(red) as tctx:
        with pytest.raises(exceptions.OptionsError, match=needle):
            tctx.configure(red, **{opt: value})


def test_redaction_can_be_turned_off(tmp_path):
    files = record(tmp_path, [make_flow()], hoptrace_redact_headers="")
    assert b"Bearer tok-123" in files["flows.jsonl"]


_NAMES = st.sampled_from(["Authorization", "AUTHORIZATION", "authorizatioN", "authorisation", "Cookie", "accept",
                          "Set-Cookie", "connection", "\u212aey", "KEY", "\u0130d", "id"]) | st.text(min_size=1, max_size=14)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NAMES, st.text(max_size=4)), max_size=6),
       st.sampled_from([{"authorization", "cookie", "set-cookie"}, {"key", "id"}, {"k\u00e9y", "i\u0307d"}]))
def test_header_checks_skip_no_name_they_should_find(pairs, names):
    """The checks look only at header names of the configured names' lengths: the same answer
    as lowering every name (a name whose lower() is ASCII keeps its length; non-ASCII configured
    names are checked the plain way)."""
    r = Redactor(names, [], b"k" * 32)
    record_pairs = [[k, v] for k, v in pairs]
    named = any(k.lower() in r.names for k, _ in pairs)
    assert (r.headers(record_pairs) is not record_pairs) == named  # the same list when none is named
    msg = tutils.treq()
    msg.headers = Headers([(k.encode("utf-8", "surrogateescape"), v.encode()) for k, v in pairs])
    if r.raw_names is not None:  # raw fields, ASCII case-folding (bytes.lower), as before
        want = not r.raw_names.isdisjoint([k.lower() for k, _ in msg.headers.fields])
    else:
        want = any(k.lower() in r.names for k in msg.headers)
    assert r._message_needs(msg) == want
