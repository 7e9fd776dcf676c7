"""Fault injection through the real stack (A, B, mitmweb with our addons), rules changed at run time
through mitmweb's command API — what its command bar calls. The services never fail on their own
(FAIL_RATE=0), so every break here is one the gateway injected, and each must say so in
flows.jsonl, runs.jsonl, flows.mitm (comment, marker) and the offline diagnosis."""

from __future__ import annotations

import json
import secrets

import httpx
import pytest
from mitmproxy import io

from proxy_addons import stack as stk
from proxy_addons.annotate import INJECTED_MARK
from proxy_addons.cli import main
from proxy_addons.diagnosis import diagnose
from proxy_addons.dumpio import read_records
from proxy_addons.faults_rules import rule_rng
from proxy_addons.runs import reconstruct
from tests.conftest import SEED_KICK, flow_records, read_jsonl

pytestmark = pytest.mark.e2e
MAX_HOPS = 8
SEED = 3
P_RULE = "status=400 p=0.5 hop=2"


class Web:
    """mitmweb's REST API: the command bar posts to /commands/<name>."""

    def __init__(self, port: int, password: str) -> None:
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=10,
                                   headers={"Authorization": f"Bearer {password}"})
        self.xsrf = secrets.token_hex(16)  # tornado's double-submit check: cookie == header
        self.client.cookies.set("_mitmproxy_xsrf", self.xsrf)

    def command(self, name: str, *args: str) -> dict:
        resp = self.client.post(f"/commands/{name}", json={"arguments": list(args)},
                                headers={"X-XSRFToken": self.xsrf})
        resp.raise_for_status()
        return resp.json()

    def rules(self, *rules: str) -> None:
        assert "error" not in self.command("hoptrace.faults.clear")
        for r in rules:
            assert "error" not in self.command("hoptrace.faults.add", *r.split())


def kicks(url: str, n: int) -> list[httpx.Response]:
    with httpx.Client(trust_env=False, timeout=30) as c:
        return [c.post(url + "/a/", content=SEED_KICK, headers={"content-type": "application/json"})
                for _ in range(n)]


def test_each_rule_kind_through_the_real_stack_is_injected_and_flagged(start_stack, capsys):
    web_port = stk.free_port()
    st = start_stack(fail_rate=0, max_hops=MAX_HOPS, web=True, web_port=web_port, web_password="pw-faults",
                     gateway_sets={"hoptrace_faults": "status=400 service=b hop=4",
                                   "hoptrace_faults_seed": SEED})
    web = Web(web_port, "pw-faults")
    expect: list[tuple[str, int | None, str | None]] = []  # per run: outcome, break hop, action

    # the rule given with --set at start: B's hop 4 answered 400 by the gateway
    for r in kicks(st.url, 2):
        body = r.json()
        assert (r.status_code, body["outcome"], body["stopped_by"], body["hops"]) == (200, "rejected", "b", 4)
        assert body["reason"] == "injected fault"
        expect.append(("broken", 4, "status"))
    assert web.command("hoptrace.faults.list")["value"] == ["1: status=400 service=b hop=4  (injected 2x)"]

    # no rules: the gateway is transparent again
    web.rules()
    for r in kicks(st.url, 2):
        assert r.status_code == 200 and r.json()["outcome"] == "max_hops"
        expect.append(("completed", None, None))

    web.rules("status=500 service=a iteration=2")  # A's hop 3; B passes the 500 up
    (r,) = kicks(st.url, 1)
    assert r.status_code == 500 and r.json()["injected"] is True
    expect.append(("error", 3, "status"))

    web.rules("drop hop=2")  # B's connection dropped: A cannot reach its partner
    (r,) = kicks(st.url, 1)
    assert r.status_code == 502 and r.json()["outcome"] == "partner_unreachable"
    expect.append(("error", 2, "drop"))

    web.rules("delay=0.4 hop=1")
    (r,) = kicks(st.url, 1)
    assert r.status_code == 200 and r.elapsed.total_seconds() >= 0.4
    expect.append(("completed", None, "delay"))

    web.rules("status=400 every=3 hop=1 ~m POST")
    statuses = [r.status_code for r in kicks(st.url, 6)]
    assert statuses == [200, 200, 400, 200, 200, 400]
    expect += [("broken", 1, "status") if s == 400 else ("completed", None, None) for s in statuses]

    web.rules(P_RULE)  # seeded: the draws are rule_rng(seed, rule)'s
    rng = rule_rng(SEED, P_RULE)
    draws = [rng.random() < 0.5 for _ in range(12)]
    answers = [r.json() for r in kicks(st.url, 12)]
    assert [a["outcome"] == "rejected" and a["hops"] == 2 for a in answers] == draws
    assert 0 < sum(draws) < 12
    expect += [("broken", 2, "status") if d else ("completed", None, None) for d in draws]

    bad = web.command("hoptrace.faults.add", "status=99")
    assert "status='99': must be between 100 and 599" in bad["error"]
    assert web.command("hoptrace.faults.list")["value"] == [f"1: {P_RULE}  (injected {sum(draws)}x)"]
    web.rules()
    st.gateway.stop()

    check_dumps(st.session, expect)
    check_report(st.session, expect, capsys)


def check_dumps(session, expect) -> None:
    recs = {r["flow_id"]: r for r in flow_records(session / "flows.jsonl")}
    runs = sorted(read_jsonl(session / "runs.jsonl"), key=lambda r: r["started"])
    offline = sorted((diagnose(r).to_json() for r in reconstruct(read_records(session / "flows.jsonl"))),
                     key=lambda r: r["started"])
    with open(session / "flows.mitm", "rb") as f:
        flows = {fl.id: fl for fl in io.FlowReader(f).stream()}
    assert len(runs) == len(offline) == len(expect)
    for live, off, (outcome, hop, action) in zip(runs, offline, expect, strict=True):
        for run in (live, off):
            assert run["outcome"] == outcome
            touched = [h for h in run["hops"] if h["injected"]]
            assert [h["fault"]["action"] for h in touched] == ([action] if action else [])
            if hop is not None:
                b = run["break"]
                assert (b["hop"], b["injected"], b["fault"]["action"]) == (hop, True, action)
                assert touched[0]["hop"] == hop
        for h in live["hops"]:
            rec, fl = recs[h["flow_id"]], flows[h["flow_id"]]
            assert ("injected" in rec) == h["injected"]
            assert fl.comment.endswith(" · injected") == h["injected"]
            assert (fl.marked == INJECTED_MARK) == h["injected"]
            if h["injected"] and h["fault"]["action"] in ("status", "drop"):
                assert rec["origin"] == "gateway"
            if h["injected"] and h["fault"]["action"] == "delay":
                assert rec["origin"] == "upstream" and rec["duration_ms"] >= 400
    assert sum("injected" in r for r in recs.values()) == sum(a is not None for _, _, a in expect)


def cli_out(capsys, *args: str) -> str:
    capsys.readouterr()
    assert main(list(args)) == 0
    return capsys.readouterr().out


def check_report(session, expect, capsys) -> None:
    """`hoptrace report --stats`: the injected breaks are flagged per hop and per break, and with
    FAIL_RATE=0 every observed break rate is flagged while the rate without injections is not."""
    report = json.loads(cli_out(capsys, "report", str(session), "--stats", "--fail-rate", "0", "--format", "json"))
    runs = sorted(report["runs"], key=lambda r: r["started"])
    assert [bool(r["break"] and r["break"]["injected"]) for r in runs] == [hop is not None for _, hop, _ in expect]
    st = report["stats"]
    assert st["fail_rate_source"] == "--fail-rate" and st["services"]["b"]["flag"] == "above"
    assert all(v["real"]["breaks"] == 0 and v["real"]["flag"] is None for v in st["services"].values())
    # the injected rejections (the 500 and the drop are errors, not rejections)
    assert sum(v["injected"] for v in st["services"].values()) == sum(o == "broken" for o, _, _ in expect)
    html = cli_out(capsys, "report", str(session), "--stats", "--fail-rate", "0", "--format", "html")
    assert "id='stats'" in html and html.count("<svg class='stats-chart'") == 2 and "broken (injected)" in html
