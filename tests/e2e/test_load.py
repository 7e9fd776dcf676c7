"""CI-sized load (1,000 runs at concurrency 50; `make load` runs 10,000): every hop the services
served is in flows.jsonl and in flows.mitm, and nothing answered 5xx."""

from __future__ import annotations

import pytest

from proxy_addons import load

pytestmark = pytest.mark.e2e


def test_thousand_runs_at_concurrency_50_lose_nothing(start_stack):
    st = start_stack(gateway_sets={"hoptrace_har": "false"})
    books = load.measure(st, n=1000, concurrency=50, time_limit=120)
    print("\n" + books.summary())
    assert books.kicks == books.answered == 1000
    assert books.hops_served == books.jsonl == books.mitm > 1000  # every run is at least one hop
    assert "access logs" in books.served_source and books.served == books.counters
    assert books.ids_differ == 0 and books.skipped == []
    assert books.fivexx == []
    assert set(books.statuses) <= {200, 400}  # the services' own answers, and only those
    assert books.statuses[400] == 1000  # default MAX_HOPS=100: each run ends in one rejection
    assert books.problems() == []
