"""The whole stack as real processes: the seed's kick, every hop recorded, the dumps reopen."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest
from mitmproxy import io

from proxy_addons import stack as stk
from tests.conftest import ROOT, SEED_KICK, flow_records, served

pytestmark = pytest.mark.e2e


def curl_kick(url: str) -> subprocess.CompletedProcess:
    """The seed's kick exactly as its README sends it."""
    if not shutil.which("curl"):
        pytest.skip("curl is not installed")
    cmd = ["curl", "-sS", "-w", "\n%{http_code}", url, "--header", "Content-Type: application/json",
           "--data", SEED_KICK]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True)


def by_start(recs: list[dict]) -> list[dict]:
    return sorted(recs, key=lambda r: r["started"])


def test_seed_curl_kick_long_run_every_hop_recorded(start_stack):
    st = start_stack(fail_rate=0, max_hops=12)
    out = curl_kick(st.url.replace("127.0.0.1", "localhost") + "/a/")
    body, status = out.stdout.rsplit("\n", 1)
    assert status == "200"
    outcome = json.loads(body)
    assert outcome["outcome"] == "max_hops" and outcome["hops"] == 12 and outcome["stopped_by"] == "b"
    assert len(outcome["payload"]["digits"]) == 6 and outcome["payload"]["d;5Digits"] == []

    recs = by_start(flow_records(st.session / "flows.jsonl"))
    assert len(recs) == 12 == served(st.a) + served(st.b)
    assert [r["path"] for r in recs] == ["/a/", "/b/"] * 6
    assert [r["service"] for r in recs] == ["a", "b"] * 6
    assert recs[0]["request"]["body"]["value"] == json.loads(SEED_KICK)
    assert all(r["status"] == 200 for r in recs)
    # every hop's payload is the previous hop's plus that service's step
    for prev, nxt in zip(recs, recs[1:]):
        p, n = prev["request"]["body"]["value"], nxt["request"]["body"]["value"]
        if prev["service"] == "a":
            assert n["digits"][:-1] == p.get("digits", [])
        else:
            assert n["digits"] == p["digits"] and n["max"] == max(p["digits"])
    # nesting: each hop opens while the previous one is still open
    for outer, inner in zip(recs, recs[1:]):
        assert outer["started"] <= inner["started"] and inner["ended"] <= outer["ended"]

    with open(st.session / "flows.mitm", "rb") as f:
        flows = list(io.FlowReader(f).stream())
    assert {f.id for f in flows} == {r["flow_id"] for r in recs}
    assert all(f.response.status_code == 200 for f in flows)


def test_rejecting_hop_holds_400_and_rejected_payload(start_stack):
    st = start_stack(a_settings={"fail_rate": 0}, b_settings={"fail_rate": 1}, max_hops=50)
    resp = httpx.post(st.url + "/a/", content=SEED_KICK, headers={"content-type": "application/json"})
    assert resp.status_code == 200
    assert resp.json()["outcome"] == "rejected" and resp.json()["stopped_by"] == "b"
    kick, rejected = by_start(flow_records(st.session / "flows.jsonl"))
    assert kick["status"] == 200 and kick["path"] == "/a/"
    assert rejected["status"] == 400 and rejected["service"] == "b"
    body = rejected["response"]["body"]["value"]
    assert body["service"] == "b" and body["reason"] == "negative validation"
    assert body["payload"] == rejected["request"]["body"]["value"]
    assert len(body["payload"]["digits"]) == 1
    assert resp.json()["payload"] == body["payload"]  # the kick's answer tells how the run ended


def test_down_upstream_is_a_recorded_502_not_an_empty_reply(start_stack):
    st = start_stack(fail_rate=0, max_hops=10)
    st.b.stop()
    resp = httpx.post(st.url + "/a/", content=SEED_KICK, headers={"content-type": "application/json"})
    assert resp.status_code == 502  # A passes up the gateway's 502 for the hop to B
    recs = by_start(flow_records(st.session / "flows.jsonl"))
    assert [r["status"] for r in recs] == [502, 502]
    failed = recs[1]
    assert failed["service"] == "b" and failed["error"]["undelivered"] and failed["response"] is None
    assert failed["request"]["body"]["value"]["digits"]  # the undelivered payload


def test_unknown_path_404_is_recorded(start_stack):
    st = start_stack(fail_rate=0, max_hops=2)
    resp = httpx.post(st.url + "/nope/", json={})
    assert resp.status_code == 404 and "no route" in resp.json()["detail"]
    (rec,) = flow_records(st.session / "flows.jsonl")
    assert rec["status"] == 404 and rec["origin"] == "gateway" and rec["service"] is None


def test_hoptrace_gateway_records_a_single_process_app(procs, tmp_path):
    """QA without code access: one app serving /a/ and /b/, calling one fixed gateway URL."""
    app_port, gp = stk.free_ports(2)
    env = {"GATEWAY_URL": f"http://127.0.0.1:{gp}", "FAIL_RATE": "0.2", "MAX_DIGITS": "8"}
    procs.append(stk.start_uvicorn("single", "tests.apps.single:app", app_port, env, tmp_path / "logs"))
    upstream = f"http://127.0.0.1:{app_port}"
    cmd = [sys.executable, "-m", "proxy_addons.cli", "gateway", "--listen", str(gp),
           "--route", f"/a/={upstream}", "--route", f"/b/={upstream}", "--session", str(tmp_path / "s"), "--quiet"]
    gw = stk.spawn("gateway", cmd, None, tmp_path / "logs")
    procs.append(gw)
    stk.wait_until(lambda: stk.port_open("127.0.0.1", gp), gw, 30, "hoptrace gateway")
    with httpx.Client(trust_env=False, timeout=60) as c:
        for _ in range(10):
            c.post(f"http://127.0.0.1:{gp}/a/", content=SEED_KICK, headers={"content-type": "application/json"})
        truth = c.get(upstream + "/stats").json()
    recs = flow_records(tmp_path / "s" / "flows.jsonl")
    assert len(recs) == truth["served"]["a"] + truth["served"]["b"] > 10
    assert sum(r["service"] == "a" for r in recs) == truth["served"]["a"]
    assert sorted(json.dumps(r["request"]["body"]["value"], sort_keys=True) for r in recs) == \
        sorted(json.dumps(e["payload"], sort_keys=True) for e in truth["log"])
    assert (ROOT / "tests" / "apps" / "single.py").exists()


def test_free_ports_are_distinct_and_avoid_the_ports_given():
    ports = stk.free_ports(40)
    assert len(set(ports)) == 40
    assert not set(stk.free_ports(20, avoid=set(ports[:10]))) & set(ports[:10])


def test_a_port_another_process_listens_on_is_refused_before_anything_starts(tmp_path):
    """A stack once got one port for A and its gateway: the gateway's readiness probe found A
    there, the kick went to A, nothing was recorded. Now a taken port is refused up front."""
    import socket

    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        for start in (lambda: stk.start_gateway(taken, {"/a/": "http://127.0.0.1:9"}, tmp_path / "g"),
                      lambda: stk.start_service("a", taken, "http://127.0.0.1:9/b/", tmp_path / "s"),
                      lambda: stk.start_uvicorn("app", "tests.apps.single:app", taken, None, tmp_path / "u")):
            with pytest.raises(stk.PortInUse, match=f"port {taken} on 127.0.0.1 is already in use"):
                start()
        assert not any((tmp_path / d).exists() for d in ("g", "s", "u"))  # no process was spawned
        for kw, what in (({"web": True, "web_port": taken}, "mitmweb"), ({"a_port": taken}, "service a"),
                         ({"gateway_port": taken}, "gateway")):
            with pytest.raises(stk.PortInUse, match=f"{what}: port {taken}"):
                stk.start_stack(session=tmp_path / "session", log_dir=tmp_path / "logs", **kw)
        assert not (tmp_path / "logs").exists()  # a stack checks every port before it starts B
    with pytest.raises(stk.PortInUse, match="the same port given twice"):
        stk.start_stack(gateway_port=taken, a_port=taken, log_dir=tmp_path / "logs2")
    assert not (tmp_path / "logs2").exists()
