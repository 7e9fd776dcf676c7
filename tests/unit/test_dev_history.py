"""The run history: rows per request, filter by trace, the last break, the bound, a file DB."""

from __future__ import annotations

import random

import pytest

from services.history import History
from tests.unit.dev_client import KICK, client_for


def traceparent(trace_id: str) -> str:
    return f"00-{trace_id}-{random.getrandbits(64):016x}-01"


def test_history_filters_by_trace_and_tells_the_last_break():
    with client_for(fail_rate=1) as c:
        assert c.get("/history/last-break").status_code == 404
        traces = [f"{random.getrandbits(128):032x}" for _ in range(3)]
        for i, t in enumerate(traces):
            r = c.post("/a/", json={**KICK, "name": f"run{i}"}, headers={"traceparent": traceparent(t)})
            assert r.status_code == 400
        rows = c.get("/history", params={"trace": traces[1]}).json()["entries"]
        assert len(rows) == 1
        (row,) = rows
        assert (row["trace_id"], row["hop"], row["iteration"], row["status"]) == (traces[1], 1, 1, 400)
        assert row["result"] == "rejected" and row["rejection"] == "negative validation"
        assert row["payload_in"]["name"] == "run1" and row["payload_out"] is None
        last = c.get("/history/last-break").json()
        assert last["trace_id"] == traces[2] and last["payload_in"]["name"] == "run2"
        assert c.get("/history", params={"trace": "nothex"}).status_code == 422
        assert c.get("/history", params={"limit": 2}).json()["count"] == 2


def test_a_kick_without_trace_gets_one_and_learns_it_from_traceresponse():
    with client_for(fail_rate=0, max_hops=1) as c:
        r = c.post("/a/", json=KICK)
        assert r.status_code == 200 and r.json()["outcome"] == "max_hops"
        trace_id = r.headers["traceresponse"].split("-")[1]
        (row,) = c.get("/history", params={"trace": trace_id}).json()["entries"]
        assert row["result"] == "max_hops" and row["run_outcome"] == "max_hops"
        assert row["payload_out"] == r.json()["payload"]


def test_schema_refusal_is_a_break_too():
    with client_for(fail_rate=0) as c:
        assert c.post("/a/", json={"digits": "nope"}).status_code == 422
        last = c.get("/history/last-break").json()
        assert (last["status"], last["result"], last["hop"]) == (422, "rejected", None)
        assert last["rejection"] == "schema validation" and last["payload_in"] == {"digits": "nope"}


def test_history_keeps_only_the_last_n_entries():
    with client_for(fail_rate=1, history_max=5) as c:
        for i in range(12):
            c.post("/a/", json={**KICK, "name": f"run{i}"})
        rows = c.get("/history", params={"limit": 100}).json()["entries"]
    assert [r["payload_in"]["name"] for r in rows] == [f"run{i}" for i in range(7, 12)]


def test_history_in_a_file_survives_a_restart(tmp_path):
    path = str(tmp_path / "history.sqlite")
    h = History(path, 100, "b")
    row = h.received("ab" * 16, "cd" * 8, 2, 1, {"digits": [1]})
    h.answered(row, "rejected", 400, 1.5, rejection="negative validation")
    h.close()
    again = History(path, 100, "b")
    assert again.last_break()["payload_in"] == {"digits": [1]} and again.count() == 1


@pytest.mark.parametrize("bound", [1, 3])
def test_bound_holds_for_in_flight_rows(bound):
    h = History(":memory:", bound, "a")
    rows = [h.received(None, None, i, i, {"i": i}) for i in range(1, 6)]
    h.answered(rows[0], "forwarded", 200, 1.0)  # dropped already: a no-op, not an error
    assert h.count() == bound and [e["hop"] for e in h.entries()] == list(range(6 - bound, 6))
