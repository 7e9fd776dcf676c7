"""Bad input never breaks a service: real uvicorn processes, schemathesis against their OpenAPI
schemas, and the hand-picked nasty bodies. Each gets a clear 4xx; the next request is served."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings, strategies as st
from schemathesis import GenerationMode

from proxy_addons import stack as stk
from tests.conftest import SEED_KICK

pytestmark = pytest.mark.e2e

EXAMPLES = 100  # per service; ~8 s each on 2 shared cores
LIMIT = 1_000_000  # MAX_BODY_BYTES default
JSON = {"content-type": "application/json"}


@pytest.fixture
def pair(procs, tmp_path):
    """A and B talking to each other directly (no gateway: this is about the services)."""
    ap, bp = stk.free_ports(2)
    common = {"fail_rate": 0.3, "max_hops": 6, "log_dir": tmp_path / "logs"}
    b = stk.start_service("b", bp, f"http://127.0.0.1:{ap}/a/", **common)
    procs.append(b)
    a = stk.start_service("a", ap, f"http://127.0.0.1:{bp}/b/", **common)
    procs.append(a)
    return {"a": a, "b": b}


def assert_serves_next(url: str, name: str) -> None:
    r = httpx.post(f"{url}/{name}/", content=SEED_KICK, headers=JSON, timeout=30)
    assert r.status_code in (200, 400), r.text  # 400 = the seed's random negative validation
    assert "outcome" in r.json() or r.json().get("reason") == "negative validation"


@pytest.mark.parametrize("name", ["a", "b"])
def test_schemathesis_finds_no_server_error(pair, name):
    url = pair[name].meta["url"]
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE))
    statuses: Counter = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def fuzz(case):
        resp = case.call(base_url=url, timeout=30)
        statuses[resp.status_code] += 1
        assert resp.status_code < 500, f"{case.method} {case.path}: {resp.status_code} {resp.text[:300]}"

    fuzz()
    print(f"schemathesis {name}: {sum(statuses.values())} calls, statuses {dict(sorted(statuses.items()))}")
    assert sum(statuses.values()) >= EXAMPLES // 2
    assert statuses[422] > 0  # the negative cases did reach validation
    assert pair[name].alive()
    assert_serves_next(url, name)


def nested(depth: int) -> bytes:
    return b'{"x":' * depth + b"1" + b"}" * depth


def chunks(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        yield b"[" * min(size, total - sent)
        sent += size


# (case, body, headers, expected status, a phrase the answer must hold)
BAD = [
    ("malformed JSON", b'{"digits": [1,', JSON, 422, "JSON decode error"),
    ("wrong type", b'{"digits": "many"}', JSON, 422, "valid list"),
    ("wrong item type", b'{"digits": [1, "x"]}', JSON, 422, "valid integer"),
    ("a million digits", json.dumps({"digits": [7] * 1_000_000}).encode(), JSON, 413,
     f"MAX_BODY_BYTES={LIMIT}"),
    ("deeply nested (parser)", nested(100_000), JSON, 400, "parsing the body"),
    ("deeply nested (kept)", nested(500), JSON, 422, "nested deeper than 64"),
    ("non-JSON content type", b'{"digits": []}', {"content-type": "text/plain"}, 422, "Content-Type: application/json"),
    ("no content type", b'{"digits": []}', {}, 422, "Content-Type: application/json"),
    ("empty body", b"", JSON, 422, "Field required"),
    ("null body", b"null", JSON, 422, "valid dictionary"),
    ("NaN", b'{"avg": NaN}', JSON, 422, "NaN and Infinity"),
    ("Infinity in an unknown field", b'{"x": [Infinity]}', JSON, 422, "NaN and Infinity"),
    ("huge integer", b'{"digits": [1' + b"0" * 400 + b"]}", JSON, 422, "less than or equal"),
    ("integer past the parser's limit", b'{"digits": [' + b"9" * 5000 + b"]}", JSON, 400, "parsing the body"),
    ("lone surrogate", b'{"name": "\\ud800"}', JSON, 422, "surrogate"),
    ("invalid UTF-8", b'{"name": "\xff"}', JSON, 400, "parsing the body"),
]


def test_nasty_bodies_get_a_clear_4xx_and_the_service_carries_on(pair):
    for name in ("a", "b"):
        url = pair[name].meta["url"]
        with httpx.Client(trust_env=False, timeout=30) as c:
            for case, body, headers, status, phrase in BAD:
                r = c.post(f"{url}/{name}/", content=body, headers=headers)
                assert r.status_code == status, f"{name} {case}: {r.status_code} {r.text[:300]}"
                assert phrase in r.text, f"{name} {case}: {r.text[:300]}"
                assert r.headers["content-type"] == "application/json"
                assert_serves_next(url, name)
        assert pair[name].alive()
    chunked_body_over_the_limit_is_refused_as_it_arrives(pair["a"].meta["url"])


def chunked_body_over_the_limit_is_refused_as_it_arrives(url: str) -> None:
    with httpx.Client(trust_env=False, timeout=30) as c:
        r = c.post(f"{url}/a/", content=chunks(3 * LIMIT), headers=JSON)  # no Content-Length
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 413 and r.json()["limit_bytes"] == LIMIT
        assert "MAX_BODY_BYTES=1000000" in r.json()["detail"]
        small = c.post(f"{url}/a/", content=chunks(1000), headers=JSON)  # chunked, under the limit
        assert small.status_code == 422 and "JSON decode error" in small.text
    assert_serves_next(url, "a")
