"""The routing addon, through mitmproxy's own test helpers."""

from __future__ import annotations

import json
import re

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from proxy_addons.flowmeta import SERVICE as SERVICE_KEY
from proxy_addons.routing import Routing, parse_routes

ROUTES = "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002"


def test_parse_routes_longest_prefix_first():
    routes = parse_routes("/=http://h:1, /a/=http://127.0.0.1:8001,/a/x/=https://example.test")
    assert [r.prefix for r in routes] == ["/a/x/", "/a/", "/"]
    assert routes[0].port == 443 and routes[1].name == "a" and routes[2].name == "root"


@pytest.mark.parametrize(("spec", "needle"), [
    ("/a/", "not PREFIX=URL"),
    ("a/=http://h:1", "must start with '/'"),
    ("/a/=ftp://h:1", "not an http(s)"),
    ("/a/=http://h:1/x", "must not have a path"),
    ("/a/=http://h:99999", "bad port"),
    ("/a/=http://h:1,/a/=http://h:2", "given twice"),
])
def test_bad_routes_are_options_errors_naming_the_problem(spec, needle):
    r = Routing()
    with taddons.context(r) as tctx:
        with pytest.raises(exceptions.OptionsError, match=re.escape(needle)):
            tctx.configure(r, routes=spec)


def request_to(path: str):
    f = tflow.tflow()
    f.request.path = path
    f.request.headers["Host"] = "127.0.0.1:8000"
    return f


def test_routes_by_prefix_and_rewrites_only_destination():
    r = Routing()
    with taddons.context(r) as tctx:
        tctx.configure(r, routes=ROUTES)
        f = request_to("/b/")
        body_before = f.request.content
        r.request(f)
        assert (f.request.host, f.request.port, f.request.scheme) == ("127.0.0.1", 8002, "http")
        assert f.request.headers["Host"] == "127.0.0.1:8002"
        assert f.metadata[SERVICE_KEY] == "b"
        assert f.request.content == body_before and f.response is None


def test_path_without_trailing_slash_matches_its_route():
    r = Routing()
    with taddons.context(r) as tctx:
        tctx.configure(r, routes=ROUTES)
        f = request_to("/a?x=1")
        r.request(f)
        assert f.metadata[SERVICE_KEY] == "a"


def test_unknown_path_gets_a_clear_404_from_the_gateway():
    r = Routing()
    with taddons.context(r) as tctx:
        tctx.configure(r, routes=ROUTES)
        f = request_to("/c/")
        r.request(f)
        assert f.response.status_code == 404
        body = json.loads(f.response.content)
        assert "no route for '/c/'" in body["detail"] and "/a/" in body["routes"]
        assert SERVICE_KEY not in f.metadata
