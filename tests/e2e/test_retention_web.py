"""mitmweb with the retention addon: its view holds at most hoptrace_view_max flows, whole runs
only, while flows.jsonl keeps every flow."""

from __future__ import annotations

from collections import Counter

import httpx
import pytest

from proxy_addons import load
from proxy_addons.dumpio import read_records
from tests.conftest import read_jsonl

pytestmark = pytest.mark.e2e


def test_mitmweb_view_is_capped_by_whole_runs_and_the_dump_keeps_all(start_stack):
    st = start_stack(web=True, web_password="pw-retention", fail_rate=0.1, max_hops=6,
                     gateway_sets={"hoptrace_view_max": 40, "hoptrace_har": "false"})
    books = load.measure(st, n=60, concurrency=5, time_limit=60)
    assert books.problems() == [] and books.jsonl > 120
    web = f"http://127.0.0.1:{web_port(st)}"
    shown = httpx.get(f"{web}/flows", params={"token": "pw-retention"}, timeout=10).json()
    assert 0 < len(shown) <= 40
    recs = list(read_records(st.session))
    assert len(recs) == books.jsonl > len(shown)  # the dump keeps what the view dropped
    # each flow's final run: its record's, or a placement record's after it (identical twin runs
    # may swap hops; docs/dump-format.md)
    run_of = {r["flow_id"]: r["run"]["id"] for r in recs}
    lines = read_jsonl(st.session / "flows.jsonl")
    run_of.update((r["flow_id"], r["run"]["id"]) for r in lines if r.get("type") == "placement")
    per_run = Counter(run_of.values())
    shown_runs = Counter(run_of[f["id"]] for f in shown)
    assert {run: per_run[run] for run in shown_runs} == dict(shown_runs)  # whole runs only
    newest = run_of[max(recs, key=lambda r: r["started"])["flow_id"]]
    assert newest in shown_runs


def web_port(st) -> int:
    args = st.gateway.popen.args
    return int(next(a.split("=", 1)[1] for a in args if a.startswith("web_port=")))
