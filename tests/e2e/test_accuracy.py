"""Accuracy end to end: 100 concurrent kicks through the real gateway, then `hoptrace report`
over the session folder must match what the services did for 100% of runs — run membership,
hop order, each hop's payload and status, break hop, service and state at break. Ground truth
comes from the services only (tests/e2e/truth.py): the kick answers, the services' /health
counters, and the single-process app's own log. Prints the accuracy figure."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import httpx
import pytest

from proxy_addons import stack as stk
from proxy_addons.kick import SEED_KICK, kick_many
from proxy_addons.report import build
from tests.apps.single_lineage import SingleAppLineage
from tests.conftest import ROOT, served
from tests.e2e import truth as T

pytestmark = pytest.mark.e2e
N = 100


def kick_all(url: str, body: str = SEED_KICK) -> list:
    results = asyncio.run(kick_many(url, N, N, body, timeout=600, progress=False))
    assert [r.error for r in results if r.error] == []
    return results


def report_json(session) -> dict:
    """`hoptrace report --format json` as the user runs it; stdout must be JSON alone."""
    cmd = [sys.executable, "-m", "proxy_addons.cli", "report", str(session), "--format", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, check=True)
    return json.loads(out.stdout)


def check(label: str, truths: list[tuple], runs: list[dict], seconds: float) -> None:
    right, missed = T.accuracy(truths, runs)
    hops = sum(len(s[2]) for s in truths)
    print(f"\n[accuracy] {label}: {right}/{len(truths)} runs exact ({100 * right / len(truths):.1f}%), "
          f"{hops} hops, kicks answered in {seconds:.1f} s")
    assert [T.well_formed(r) for r in runs if T.well_formed(r)] == []
    assert len(runs) == len(truths)
    assert missed == [], "\n".join(T.dumps(m) for m in missed[:5])


def history(proc: stk.Proc) -> list[dict]:
    body = httpx.get(proc.meta["url"] + "/history", params={"limit": 10_000}, timeout=10,
                     trust_env=False).json()
    return body["entries"]


@pytest.mark.parametrize(("fail_rate", "max_hops"), [(0.5, 100), (0.05, 60)], ids=["short", "long"])
def test_report_matches_services_for_every_run(start_stack, fail_rate, max_hops):
    # a shared 2-core machine can be slow: no partner time-out may cut a long run short here
    st = start_stack(fail_rate=fail_rate, max_hops=max_hops, partner_timeout=600, log_level="warning",
                     gateway_sets={"hoptrace_har": "false"})
    t0 = time.monotonic()
    results = kick_all(st.url + "/a/")
    seconds = time.monotonic() - t0
    assert sorted({r.status for r in results}) in ([200], [200, 400]), [r.body for r in results if r.status not in (200, 400)][:3]
    truths, ends = T.history_signatures(history(st.a) + history(st.b))
    # the services' history, the kick answers and the services' counters agree
    assert len(truths) == N
    assert sorted(map(T.end_key, ends)) == sorted(T.end_key(T.end_of_ours(r.status, r.body)) for r in results)
    assert T.served_by_chain(truths) == {"a": served(st.a), "b": served(st.b)}
    if max_hops == 60:
        assert max(e.hop for e in ends) > 20  # long runs
    check(f"A/B FAIL_RATE={fail_rate} MAX_HOPS={max_hops}, {N} identical kicks", truths,
          report_json(st.session)["runs"], seconds)


@pytest.fixture(scope="module")
def single_app(tmp_path_factory):
    """One app serving /a/ and /b/ on one port, calling one fixed gateway URL, propagating
    nothing, behind the gateway; 100 identical concurrent kicks. Yields (session, truths)."""
    tmp = tmp_path_factory.mktemp("single")
    app_port, gp = stk.free_ports(2)
    env = {"GATEWAY_URL": f"http://127.0.0.1:{gp}", "FAIL_RATE": "0.15", "MAX_DIGITS": "8"}
    started: list[stk.Proc] = []
    try:
        started.append(stk.start_uvicorn("single", "tests.apps.single:app", app_port, env, tmp / "logs"))
        upstream = f"http://127.0.0.1:{app_port}"
        started.append(stk.start_gateway(gp, {"/a/": upstream, "/b/": upstream}, tmp / "logs",
                                         session=tmp / "s", sets={"hoptrace_har": "false"}))
        t0 = time.monotonic()
        results = kick_all(f"http://127.0.0.1:{gp}/a/")
        seconds = time.monotonic() - t0
        stats = httpx.get(upstream + "/stats", timeout=10, trust_env=False).json()
    finally:
        for p in reversed(started):
            p.stop()
    assert all(not p.alive() for p in started)
    kick = json.loads(SEED_KICK)
    truths = [T.truth_signature(kick, T.end_of_single(r.status, r.body)) for r in results]
    # what the app logged receiving and answering == the chains its answers imply
    assert T.log_multiset(stats["log"]) == sum((T.Counter(s[2]) for s in truths), T.Counter())
    assert T.served_by_chain(truths) == stats["served"]
    return tmp / "s", truths, seconds


def test_report_matches_single_process_app_without_propagation(single_app):
    """The no-header path: lineage and timing alone, with the app's answer rule described."""
    session, truths, seconds = single_app
    report = build(session, SingleAppLineage())
    check(f"single-process app, no propagation, FAIL_RATE=0.15 MAX_DIGITS=8, {N} identical kicks",
          truths, [d.to_json() for d in report.diagnoses], seconds)


def test_default_lineage_on_a_foreign_answer_format(single_app):
    session, truths, seconds = single_app
    report = build(session)
    check("single-process app, default lineage", truths, [d.to_json() for d in report.diagnoses], seconds)
