"""The gateway is transparent: the same request direct to the upstream and through the real
gateway gives the same status, reason, headers (names as cased, repeated ones, order) and the same
body bytes on the wire, and the upstream sees the same request, except Host (routing rewrites it)
and Date. Binary, gzip-encoded, chunked, odd headers, many statuses and methods."""

from __future__ import annotations

import base64
import gzip
import json

import httpx
import pytest

from proxy_addons import stack as stk

pytestmark = pytest.mark.e2e

BINARY = bytes(range(256)) * 40
VOLATILE = {"host", "date"}


@pytest.fixture
def bases(procs, tmp_path):
    port, gp = stk.free_ports(2)
    procs.append(stk.start_uvicorn("mirror", "tests.apps.mirror:app", port, log_dir=tmp_path / "logs"))
    procs.append(stk.start_gateway(gp, {"/": f"http://127.0.0.1:{port}"}, session=tmp_path / "s"))
    return f"http://127.0.0.1:{port}", f"http://127.0.0.1:{gp}"


def exchange(base: str, method: str, path: str, headers: list, content) -> tuple:
    """(status, reason, raw response headers, raw body bytes as sent on the wire after de-chunking)."""
    with httpx.Client(trust_env=False, timeout=30) as c:
        body = content() if callable(content) else content
        with c.stream(method, base + path, headers=headers, content=body) as r:
            raw = b"".join(r.iter_raw())
            return r.status_code, r.reason_phrase, [(k, v) for k, v in r.headers.raw if k.lower().decode() not in VOLATILE], raw


def same_both_ways(bases, method="POST", path="/p", headers=(), content=b"") -> tuple:
    direct, proxied = (exchange(b, method, path, list(headers), content) for b in bases)
    assert direct[:3] == proxied[:3], f"{method} {path} {headers}"
    assert direct[3] == proxied[3], f"{method} {path}: bodies differ"
    return direct


def seen(result) -> dict:
    out = json.loads(result[3])
    out["headers"] = [h for h in out["headers"] if h[0] not in VOLATILE]
    return out


def test_bodies_are_byte_identical(bases):
    status, _, headers, raw = same_both_ways(bases, headers=[("x-want-body", "echo")], content=BINARY)
    assert status == 200 and raw == BINARY
    # a gzip-encoded answer stays encoded, byte for byte
    _, _, headers, raw = same_both_ways(bases, headers=[("x-want-body", "echo"), ("x-want-gzip", "1")], content=BINARY)
    assert (b"content-encoding", b"gzip") in headers and gzip.decompress(raw) == BINARY
    # a gzip-encoded request reaches the upstream as sent
    zipped = gzip.compress(b'{"digits": [1, 2]}', mtime=0)
    got = same_both_ways(bases, headers=[("content-encoding", "gzip"), ("content-type", "application/json")], content=zipped)
    assert seen(got)["body_b64"] and json.loads(got[3])["body_b64"] == base64.b64encode(zipped).decode()
    # a chunked answer: same bytes once de-chunked
    _, _, _, raw = same_both_ways(bases, headers=[("x-want-body", "echo"), ("x-want-chunked", "1")], content=BINARY)
    assert raw == BINARY
    # a chunked request body arrives identical, still chunked

    def pieces():
        for i in range(0, len(BINARY), 777):
            yield BINARY[i:i + 777]
    got = same_both_ways(bases, headers=[("content-type", "application/octet-stream")], content=pieces)
    s = seen(got)
    assert base64.b64decode(s["body_b64"]) == BINARY
    assert ["transfer-encoding", "chunked"] in s["headers"]


def test_header_shapes_statuses_methods_and_paths_survive(bases):
    request_headers = [
        ("X-MiXeD-CaSe", "Value With  Spaces"), ("x-rep", "1"), ("x-rep", "2"), ("X-Rep", "3"),
        ("x-empty", ""), ("x-long", "v" * 4000), ("authorization", "Bearer secret-token"),
        ("cookie", "a=1; b=2"), (b"x-utf8", "caf\u00e9".encode()),
        ("x-want-header", "Set-Cookie: a=1; Path=/"), ("x-want-header", "set-cookie: b=2"),
        ("x-want-header", "X-ODD-Case: yes"), ("x-want-header", "x-dup: 1"), ("x-want-header", "x-dup: 2"),
        ("x-want-header", "x-empty-answer:"),
    ]
    got = same_both_ways(bases, headers=request_headers, content=b"{}")
    names = [k for k, _ in got[2]]
    assert b"Set-Cookie" in names and b"set-cookie" in names and b"X-ODD-Case" in names
    assert names.count(b"x-dup") == 2
    s = seen(got)
    assert [h for h in s["headers"] if h[0] == "x-rep"] == [["x-rep", "1"], ["x-rep", "2"], ["x-rep", "3"]]
    assert ["authorization", "Bearer secret-token"] in s["headers"]  # nothing is redacted on the wire

    for status in (200, 201, 204, 301, 304, 400, 404, 418, 422, 500, 502, 503, 599):
        bodyless = status in (204, 304)
        headers = [("x-want-status", str(status)), ("x-want-body", "echo"), ("x-want-header", "Location: /elsewhere")]
        got = same_both_ways(bases, headers=headers, content=b"" if bodyless else b"why")
        assert got[0] == status and got[3] == (b"" if bodyless else b"why")
    for method in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"):
        got = same_both_ways(bases, method=method, path="/odd//path/%7E?q=%20a&q=b&empty=", content=b"")
        if method != "HEAD":
            s = seen(got)
            assert s["method"] == method and s["path"] == "/odd//path/~" and s["query"] == "q=%20a&q=b&empty="
