"""Upstream faults are recorded as what they are, and the offline diagnosis names the service:
B down → 502 with the undelivered payload; B slower than A's timeout → A's 504; B restarted
mid-session → the runs after it are recorded normally."""

from __future__ import annotations

import httpx
import pytest

from proxy_addons import stack as stk
from proxy_addons.diagnosis import diagnose
from proxy_addons.dumpio import read_records
from proxy_addons.runs import reconstruct
from tests.conftest import SEED_KICK, served

pytestmark = pytest.mark.e2e


def kick(url: str) -> httpx.Response:
    return httpx.post(url + "/a/", content=SEED_KICK, headers={"content-type": "application/json"},
                      timeout=60, trust_env=False)


def diagnoses(session) -> list[dict]:
    return [diagnose(run).to_json() for run in reconstruct(read_records(session))]


def test_b_down_is_a_502_with_the_undelivered_payload_and_an_error_run_naming_b(start_stack):
    st = start_stack(fail_rate=0, max_hops=10)
    st.b.stop()
    assert kick(st.url).status_code == 502
    recs = sorted(read_records(st.session), key=lambda r: r["started"])
    to_b = recs[1]
    assert to_b["service"] == "b" and to_b["status"] == 502 and to_b["origin"] == "gateway"
    assert to_b["error"]["undelivered"] and to_b["request"]["body"]["value"]["digits"]
    (d,) = diagnoses(st.session)
    assert d["outcome"] == "error" and d["break"]["service"] == "b" and d["break"]["status"] == 502
    assert d["break"]["state"] == to_b["request"]["body"]["value"]


def test_b_slower_than_the_timeout_is_a_recorded_504_from_a(procs, tmp_path):
    gp, ap, bp = stk.free_ports(3)
    procs.append(stk.start_uvicorn("slow-b", "tests.apps.slow:app", bp, {"SLOW_SECONDS": "3"}))
    procs.append(stk.start_service("a", ap, f"http://127.0.0.1:{gp}/b/", tmp_path / "logs",
                                   fail_rate=0, partner_timeout=0.5))
    procs.append(stk.start_gateway(gp, {"/a/": f"http://127.0.0.1:{ap}", "/b/": f"http://127.0.0.1:{bp}"},
                                   tmp_path / "logs", session=tmp_path / "s"))
    resp = kick(f"http://127.0.0.1:{gp}")
    assert resp.status_code == 504 and resp.json()["outcome"] == "partner_timeout"
    assert "did not answer within 0.5 s" in resp.json()["detail"]
    recs = sorted(read_records(tmp_path / "s"), key=lambda r: r["started"])
    kick_rec, to_b = recs
    assert kick_rec["status"] == 504 and kick_rec["origin"] == "upstream"
    assert kick_rec["response"]["body"]["value"]["outcome"] == "partner_timeout"
    # A hung up on the hop to B after its 0.5 s timeout: the hop ends then, with no response
    assert to_b["service"] == "b" and to_b["response"] is None
    assert to_b["error"]["message"] == "Client disconnected." and 400 < to_b["duration_ms"] < 2500
    (d,) = diagnoses(tmp_path / "s")
    assert d["outcome"] == "error" and d["break"]["service"] == "b" and d["break"]["hop"] == 2


def test_runs_after_a_service_restart_are_recorded_normally(start_stack, procs, tmp_path):
    st = start_stack(fail_rate=0, max_hops=6)
    assert kick(st.url).status_code == 200
    st.b.stop()
    assert kick(st.url).status_code == 502
    b_port = st.b.meta["port"]
    b2 = stk.start_service("b", b_port, f"{st.url}/a/", tmp_path / "logs-b2", fail_rate=0, max_hops=6)
    procs.append(b2)
    n_before = sum(1 for _ in read_records(st.session))
    for _ in range(5):
        assert kick(st.url).status_code == 200
    after = sorted(read_records(st.session), key=lambda r: r["started"])[n_before:]
    assert len(after) == 5 * 6 and all(r["status"] == 200 and r["error"] is None for r in after)
    assert sum(r["service"] == "b" for r in after) == served(b2) == 15
    outcomes = [d["outcome"] for d in diagnoses(st.session)]
    assert outcomes == ["completed", "error"] + ["completed"] * 5
