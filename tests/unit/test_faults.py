"""The faults addon and its rule syntax, through mitmproxy's own test helpers (the live path through
the real stack is tests/e2e/test_fault_injection.py)."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons, tflow

from proxy_addons import flowmeta
from proxy_addons.annotate import INJECTED_MARK
from proxy_addons.faults import Faults
from proxy_addons.faults_rules import Span, parse_rule, parse_rules, rule_rng, split_rules
from proxy_addons.routing import Routing

ROUTES = "/a/=http://127.0.0.1:8001,/b/=http://127.0.0.1:8002"


def hop_flow(service: str, run: str, hop: int, iteration: int | None = None, method: str = "POST"):
    """A flow as LiveRuns leaves it: routed, placed in its run, commented."""
    f = tflow.tflow()
    f.request.method, f.request.path = method, f"/{service}/"
    f.metadata[flowmeta.SERVICE] = service
    f.metadata[flowmeta.RECORD] = {"run": {"id": run, "hop": hop, "iteration": iteration or (hop + 1) // 2}}
    f.comment = f"run {run} · hop {hop}"
    return f


def run(res):
    """Call a hook's result as mitmproxy does: await it when it is awaitable (a coroutine
    comes back only when there are rules; without rules the hook returns None)."""
    return asyncio.run(res) if res is not None else None


def test_rule_fields():
    r = parse_rule("status=400 body='{\"detail\": \"no; really\"}' service=b hop=3-5 iteration=2- every=4 p=0.5 ~m POST & ~u /b/")
    assert (r.status, r.service, r.hop, r.iteration, r.every, r.p) == (400, "b", Span(3, 5), Span(2, None), 4, 0.5)
    assert json.loads(r.body) == {"detail": "no; really"} and r.filter == "~m POST & ~u /b/"
    assert r.action == "status" and 4 in r.hop and 6 not in r.hop and 99 in r.iteration
    assert parse_rule("delay=250ms").delay == 0.25 and parse_rule("delay=2s drop").action == "drop"
    assert parse_rule("drop hop=2").record(0) == {"rule": "drop hop=2", "index": 0, "action": "drop"}


def test_rules_split_on_semicolons_outside_quotes():
    assert split_rules(["status=500 body='a;b'; drop hop=2", " ", "delay=1"]) == [
        "status=500 body='a;b'", "drop hop=2", "delay=1"]
    assert [r.action for r in parse_rules("status=400;drop;delay=1")] == ["status", "drop", "delay"]


@pytest.mark.parametrize(("rule", "needle"), [
    ("service=b", "no action: give status=CODE, delay=SECONDS or drop"),
    ("status=abc", "status='abc': not an integer"),
    ("status=700", "status='700': must be between 100 and 599"),
    ("status=400 drop", "drop and status exclude each other"),
    ("body=x delay=1", "body needs a status"),
    ("delay=-1", "delay='-1': must be > 0"),
    ("delay=soon", "delay='soon': expected seconds"),
    ("status=400 hop=0", "numbers start at 1"),
    ("status=400 hop=x", "expected N, N-M or N-"),
    ("status=400 iteration=5-2", "N-M needs M >= N"),
    ("status=400 every=0", "every='0': must be between 1"),
    ("status=400 p=1.5", "p='1.5': must be between 0 and 1"),
    ("status=400 p=0", "p=0 never fires"),
    ("status=400 status=500", "status is given twice"),
    ("status=400 colour=red", "unknown field 'colour'"),
    ("status=400 ~q nonsense (", "bad flow filter"),
    ("status=400 =x", "cannot read '=x'"),
])
def test_bad_rules_are_options_errors_naming_rule_and_field(rule, needle):
    f = Faults()
    with taddons.context(f) as tctx:
        with pytest.raises(exceptions.OptionsError, match=re.escape(needle)) as exc:
            tctx.configure(f, hoptrace_faults=["drop hop=9", rule])
        assert f"rule 2 {rule!r}" in str(exc.value) and f.rules == []


def test_service_must_be_a_route():
    f = Faults()
    with taddons.context(Routing(), f) as tctx:
        tctx.options.routes = ROUTES
        with pytest.raises(exceptions.OptionsError, match=re.escape("service='c' is not a route (a, b)")):
            tctx.configure(f, hoptrace_faults=["status=400 service=c"])


def test_no_rules_is_a_no_op():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=[])
        for hop in (1, 2, 3):
            fl = hop_flow("a" if hop % 2 else "b", "r1", hop)
            before = (fl.get_state(), dict(fl.metadata))
            run(f.request(fl))
            assert (fl.get_state(), dict(fl.metadata)) == before
            assert fl.response is None and fl.error is None and not fl.marked


def test_status_rule_by_service_and_hop_is_flagged():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=["status=400 service=b hop=4"])
        untouched = [hop_flow("b", "r1", 2), hop_flow("a", "r1", 3)]
        hit = hop_flow("b", "r1", 4)
        for fl in [*untouched, hit]:
            run(f.request(fl))
        assert all(fl.response is None and "injected" not in fl.metadata[flowmeta.RECORD] for fl in untouched)
        assert hit.response.status_code == 400 and hit.metadata[flowmeta.ORIGIN] == "gateway"
        body = json.loads(hit.response.content)
        assert body["injected"] is True and (body["service"], body["hop"], body["iteration"]) == ("b", 4, 2)
        assert hit.metadata[flowmeta.RECORD]["injected"] == {
            "rule": "status=400 service=b hop=4", "index": 0, "action": "status", "status": 400}
        assert hit.comment == "run r1 · hop 4 · injected" and hit.marked == INJECTED_MARK
        assert f.list_rules() == ["1: status=400 service=b hop=4  (injected 1x)"]


def test_given_body_and_first_matching_rule_wins():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=["status=503 body='down for tests' ~m GET; status=418 service=a"])
        get, post = hop_flow("a", "r", 1, method="GET"), hop_flow("a", "r", 1)
        run(f.request(get))
        run(f.request(post))
        assert (get.response.status_code, get.response.text) == (503, "down for tests")
        assert get.response.headers["content-type"].startswith("text/plain")
        assert post.response.status_code == 418


def test_drop_kills_and_delay_waits():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=["drop hop=2", "delay=0.2 hop=3"])
        dropped, slow = hop_flow("b", "r", 2), hop_flow("a", "r", 3)
        run(f.request(dropped))
        assert dropped.error is not None and dropped.error.msg == "Connection killed." and dropped.response is None
        assert dropped.metadata[flowmeta.RECORD]["injected"]["action"] == "drop"
        t0 = time.perf_counter()
        run(f.request(slow))
        assert time.perf_counter() - t0 >= 0.2
        assert slow.response is None and slow.error is None  # forwarded, just late
        assert slow.metadata[flowmeta.RECORD]["injected"]["delay_s"] == 0.2 and flowmeta.ORIGIN not in slow.metadata


def test_every_nth_run_counts_runs_not_hops():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=["status=500 every=3 hop=2"])
        hit = []
        for n in range(1, 10):
            kick, second = hop_flow("a", f"run{n}", 1), hop_flow("b", f"run{n}", 2)
            run(f.request(kick))
            run(f.request(second))
            assert kick.response is None
            if second.response is not None:
                hit.append(n)
        assert hit == [3, 6, 9]


def test_probability_draws_are_seeded_and_reset_with_the_rules():
    rule = "status=400 p=0.5 hop=1"
    f = Faults()
    with taddons.context(f) as tctx:
        def pattern() -> list[bool]:
            tctx.configure(f, hoptrace_faults=[rule], hoptrace_faults_seed=7)
            out = []
            for n in range(40):
                fl = hop_flow("a", f"r{n}", 1)
                run(f.request(fl))
                out.append(fl.response is not None)
            tctx.configure(f, hoptrace_faults=[])
            return out

        first = pattern()
        rng = rule_rng(7, rule)
        assert first == [rng.random() < 0.5 for _ in range(40)]
        assert pattern() == first and 5 < sum(first) < 35


def test_commands_add_list_remove_clear():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.master.commands.call_strings("hoptrace.faults.add", ["status=400", "service=b"])
        tctx.master.commands.call_strings("hoptrace.faults.add", ["drop", "hop=5-"])
        assert [r.text for r in f.rules] == ["status=400 service=b", "drop hop=5-"]
        with pytest.raises(exceptions.CommandError, match="unknown field 'bogus'"):
            tctx.master.commands.call_strings("hoptrace.faults.add", ["bogus=1", "drop"])
        assert tctx.options.hoptrace_faults == ["status=400 service=b", "drop hop=5-"]  # rolled back
        tctx.master.commands.call_strings("hoptrace.faults.remove", ["1"])
        assert tctx.master.commands.call_strings("hoptrace.faults.list", []) == ["1: drop hop=5-  (injected 0x)"]
        with pytest.raises(exceptions.CommandError, match="no fault rule 3"):
            tctx.master.commands.call_strings("hoptrace.faults.remove", ["3"])
        tctx.master.commands.call_strings("hoptrace.faults.clear", [])
        assert f.rules == [] and tctx.options.hoptrace_faults == []


def test_a_rejected_update_keeps_the_counters_and_generators():
    f = Faults()
    with taddons.context(f) as tctx:
        tctx.configure(f, hoptrace_faults=["status=400 every=2 hop=1"])
        fired = []
        for n in range(1, 7):
            if n == 3:
                with pytest.raises(exceptions.CommandError):
                    tctx.master.commands.call_strings("hoptrace.faults.add", ["nonsense"])
            fl = hop_flow("a", f"r{n}", 1)
            run(f.request(fl))
            fired.append(fl.response is not None)
        assert fired == [False, True] * 3 and f.counts == [3]
