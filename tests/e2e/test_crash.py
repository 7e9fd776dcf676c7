"""kill -9 of the gateway in the middle of load: every exchange whose answer reached the client is
in flows.jsonl, the readers take the killed dump (and say what they could not read), and the next
start opens a new session folder without touching the old one."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time

import httpx
import pytest

from proxy_addons import load
from proxy_addons import stack as stk
from proxy_addons.dumpio import ReadReport, read_records
from proxy_addons.har import export_har
from tests.conftest import SEED_KICK

pytestmark = pytest.mark.e2e


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def kick_number(rec: dict) -> int | None:
    value = next((v for k, v in rec["request"]["headers"] if k.lower() == load.KICK_HEADER), None)
    return int(value) if value is not None else None


def placements(raw: bytes) -> int:
    """Whole ``placement`` lines (corrected run placements, not flows: docs/dump-format.md); a
    cut last line is not one, whatever it began as."""
    whole = raw[: raw.rfind(b"\n") + 1]
    return sum(1 for line in whole.split(b"\n") if line.startswith(b'{"type":"placement"'))


def test_kill_9_mid_load_keeps_every_answered_exchange(start_stack, procs, tmp_path):
    dumps = tmp_path / "dumps"
    st = start_stack(session=None, gateway_sets={"hoptrace_dumps": str(dumps), "hoptrace_har": "false"},
                     max_hops=20)
    answered: list[load.Kick] = []
    kicks: list[load.Kick] = []
    driver = threading.Thread(target=lambda: kicks.extend(asyncio.run(
        load.drive(st.url + "/a/", 3000, 30, time_limit=30, on_answer=answered.append))))
    driver.start()
    stk.wait_until(lambda: sum(k.status is not None for k in answered) >= 100, None, 60, "100 answered kicks")
    st.gateway.kill()
    killed_at = time.time()
    driver.join(90)
    assert not driver.is_alive()

    (session,) = dumps.iterdir()
    got = {k.number: k for k in kicks if k.status is not None}
    # an answer the gateway wrote just before the kill may be read by the client just after it
    assert len(got) >= 100 and all(k.answered_at <= killed_at + 2.0 for k in got.values())
    assert any(k.error for k in kicks)  # the kill really landed mid-load

    report = ReadReport()
    recs = {kick_number(r): r for r in read_records(session / "flows.jsonl", report) if kick_number(r) is not None}
    missing = sorted(set(got) - set(recs))
    assert missing == [], f"answered before the kill but not recorded: {missing[:10]}"
    for n, k in got.items():
        assert recs[n]["status"] == k.status and recs[n]["response"]["body"]["value"] == k.body

    # The readers take the real killed dump whole: every line read or reported, never an exception.
    raw = (session / "flows.jsonl").read_bytes()
    lines = raw.count(b"\n") + (0 if raw.endswith(b"\n") else 1)
    assert report.read + len(report.skipped) + placements(raw) == lines
    assert all("cut last line" in s for s in report.skipped)
    mitm_report = ReadReport()
    mitm_ids = {r["flow_id"] for r in read_records(session / "flows.mitm", mitm_report)}
    assert {recs[n]["flow_id"] for n in got} <= mitm_ids  # flushed together before the answer left

    # … and a record cut mid-write (where a kill can land) is skipped and said, on a copy of it.
    cut = tmp_path / "cut"
    cut.mkdir()
    cut_raw = raw[: raw.rstrip(b"\n").rfind(b"\n") + 40]
    (cut / "flows.jsonl").write_bytes(cut_raw)
    mitm = (session / "flows.mitm").read_bytes()
    (cut / "flows.mitm").write_bytes(mitm[:-25])
    cut_report = ReadReport()
    assert sum(1 for _ in read_records(cut / "flows.jsonl", cut_report)) == lines - 1 - placements(cut_raw)
    assert cut_report.skipped == [f"line {lines}: cut last line (the writer stopped mid-record)"]
    cut_mitm = ReadReport()
    whole = len(mitm_ids) - (0 if mitm_report.skipped else 1)  # the killed file may be cut already
    assert sum(1 for _ in read_records(cut / "flows.mitm", cut_mitm)) == whole
    assert "cut or unreadable flow" in cut_mitm.skipped[0]
    assert export_har(cut / "flows.mitm", cut / "flows.har") == whole

    # The next start opens a new session folder and never writes into the old one.
    before = digest(session)
    routes = {"/a/": st.a.meta["url"], "/b/": st.b.meta["url"]}
    again = stk.start_gateway(st.gateway.meta["port"], routes, tmp_path / "logs-again",
                              sets={"hoptrace_dumps": str(dumps), "hoptrace_har": "false"})
    procs.append(again)
    resp = httpx.post(st.url + "/a/", content=SEED_KICK, headers={"content-type": "application/json"},
                      timeout=60)
    assert resp.status_code in (200, 400)  # a run's outcome, or A rejecting the kick at random
    again.stop()
    sessions = sorted(dumps.iterdir())
    assert len(sessions) == 2 and session in sessions
    (new,) = [s for s in sessions if s != session]
    assert sum(1 for _ in read_records(new / "flows.jsonl")) >= 1
    assert digest(session) == before
    # and pointing a gateway at the old folder explicitly is refused, not overwritten
    refused = stk.spawn("gateway-refused", stk.gateway_cmd(stk.gateway_args(
        stk.free_port(), routes, session=session)), None, tmp_path / "logs-refused")
    procs.append(refused)
    assert refused.popen.wait(60) != 0
    assert "already holds a session" in refused.log_tail(50)
    assert digest(session) == before
    shutil.rmtree(cut)
