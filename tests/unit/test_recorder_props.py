"""Property tests: whatever the traffic, routing + recorder never raise, never change what is
forwarded, and the record either holds the body or says what it could not decode."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from mitmproxy import http, io
from mitmproxy.net import encoding
from mitmproxy.test import taddons, tflow

from proxy_addons.bodies import DEFAULT_MAX_BODY
from proxy_addons.recorder import Recorder
from proxy_addons.redact import Redact
from proxy_addons.routing import Routing

ROUTES = "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002"
ENCODINGS = ["gzip", "br", "deflate", "zstd", "identity", "snappy", "gzip, br"]
TOKEN = st.from_regex(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,24}\Z")

contents = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=1, max_size=40).map(lambda b: b'{"name": "' + b + b'\xff"}'),  # bad UTF-8
    st.text(max_size=200).map(lambda s: s.encode("utf-8", "surrogatepass")),  # lone surrogates too
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                 max_leaves=20).map(lambda v: json.dumps(v).encode()),  # NaN/Infinity included
    st.sampled_from([b'{"x": "\\ud800"}', b'{"n": 1' + b"0" * 30 + b"}", b"[" * 5000, b"\x00" * 10]),
    st.integers(DEFAULT_MAX_BODY - 2, 3 * DEFAULT_MAX_BODY).map(lambda n: b'{"d": "' + b"7" * n + b'"}'),
)


@st.composite
def messages(draw) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """(raw bytes on the wire, extra headers): maybe content-encoded, validly or not, maybe chunked."""
    content = draw(contents)
    headers = [(b"content-type", draw(st.sampled_from([b"application/json", b"text/plain", b"application/octet-stream", b"\xffodd"])))]
    enc = draw(st.sampled_from([None, *ENCODINGS]))
    raw = content
    if enc is not None:
        headers.append((b"content-encoding", enc.encode()))
        if draw(st.booleans()) and enc in ("gzip", "br", "deflate", "zstd"):
            raw = encoding.encode(content, enc)
        else:
            raw = draw(st.binary(min_size=1, max_size=64))  # broken (or not encoded at all)
    if draw(st.booleans()):
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(len(raw)).encode()))
    return raw, headers


header_lists = st.lists(st.tuples(TOKEN.map(str.encode), st.binary(max_size=30).filter(lambda v: b"\r" not in v and b"\n" not in v)), max_size=6)
methods = st.one_of(st.sampled_from(["GET", "POST", "PROPFIND", "M-SEARCH", "get", "BREW", "X" * 40]), TOKEN)
paths = st.one_of(
    st.sampled_from(["/a/", "/b/", "/a", "/a?x=1", "/nope", "*", "", "//a/", "/a/%ff%00?q=%zz"]),
    st.text(max_size=60).map(lambda s: "/a/" + s),
    st.binary(max_size=60).map(lambda b: b"/" + b),
)


def wire_bytes(raw: bytes, headers) -> bytes | None:
    """What the record must hold: the decoded content, or None when it cannot be decoded."""
    enc = dict(headers).get(b"content-encoding")
    if enc is None:
        return raw
    try:
        return encoding.decode(raw, enc.decode())
    except ValueError:
        return None


def check_body(body: dict, raw: bytes, headers) -> None:
    decoded = wire_bytes(raw, headers)
    if decoded is None:
        assert "content-encoding" in body["note"], body
        decoded = raw  # the raw bytes are given
    else:
        assert "note" not in body
    assert body["size"] == len(decoded)
    kept = decoded[:DEFAULT_MAX_BODY]
    assert body.get("truncated", False) == (len(decoded) > DEFAULT_MAX_BODY)
    if body["kind"] == "empty":
        assert decoded == b""
    elif body["kind"] == "json":
        assert not body.get("truncated") and json.loads(decoded) == body["value"]
    elif body["kind"] == "text":
        assert body["value"].encode("utf-8") == kept
    else:
        assert body["kind"] == "base64" and base64.b64decode(body["value"]) == kept


@pytest.fixture(scope="module")
def loop():
    """One event loop for all examples, as the proxy has (mitmproxy's log handlers keep it)."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def sans(state: dict, *drop: str) -> dict:
    return {k: v for k, v in state.items() if k not in drop}


async def through_the_gateway(folder, method, path, req, resp, req_headers, status) -> http.HTTPFlow:
    """One flow through routing and the recorder, on a running loop as in the proxy."""
    red, routing, rec = Redact(), Routing(), Recorder()
    with taddons.context(red, routing, rec) as tctx:
        tctx.configure(routing, routes=ROUTES)
        tctx.configure(red, hoptrace_redact_json="x.*.hoptrace_test_secret")  # redaction runs too, finds nothing
        tctx.configure(rec, hoptrace_session=str(folder), hoptrace_har=True)
        f = tflow.tflow()
        f.request.method, f.request.path = method, path
        f.request.headers = http.Headers([*req[1], *req_headers])
        f.request.raw_content = req[0]
        sent = sans(f.request.get_state(), "host", "port", "scheme")

        red.requestheaders(f)
        routing.request(f)  # rewrites the destination only
        assert sans(f.request.get_state(), "host", "port", "scheme") == sent
        if f.response is None:  # routed: the "upstream" answers (or fails)
            if resp is None:
                f.error = tflow.terr()
            else:
                f.response = tflow.tresp(status_code=status, headers=http.Headers(resp[1]), content=b"")
                f.response.raw_content = resp[0]
        before = sans(f.get_state(), "metadata")

        rec.error(f) if f.response is None else rec.response(f)
        assert sans(f.get_state(), "metadata") == before  # the recorder only reads
        rec.done()
    return f


@settings(max_examples=100, deadline=None, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, req=messages(), resp=st.one_of(st.none(), messages()),
       req_headers=header_lists, status=st.integers(100, 599))
def test_any_traffic_is_recorded_never_altered_never_raises(loop, tmp_path_factory, method, path, req, resp,
                                                            req_headers, status):
    folder = tmp_path_factory.mktemp("s") / "session"
    f = loop.run_until_complete(through_the_gateway(folder, method, path, req, resp, req_headers, status))
    lines = (folder / "flows.jsonl").read_bytes().splitlines()
    assert len(lines) == 1, "the flow was not recorded"
    r = json.loads(lines[0])
    assert r["flow_id"] == f.id and r["method"] == method.upper() == f.request.method
    check_body(r["request"]["body"], *req)
    if r["service"] is None:  # no route: the gateway's own 404
        assert r["status"] == 404 and r["origin"] == "gateway"
    elif resp is None:
        assert r["status"] == 502 and r["error"]["undelivered"] and r["response"] is None
    else:
        assert r["status"] == status
        check_body(r["response"]["body"], *resp)
    with open(folder / "flows.mitm", "rb") as fo:
        (back,) = io.FlowReader(fo).stream()
    assert back.request.raw_content == req[0] and back.id == f.id
    assert json.loads((folder / "flows.har").read_text())["log"]["entries"]
