"""The fast report over a real gateway's flows.jsonl (its run fields and placement records): the
same runs as the run engine rebuilds offline from the same dump, on one core and split in three."""

from __future__ import annotations

import asyncio
import json

import pytest

from proxy_addons import cli
from proxy_addons.kick import SEED_KICK, kick_many
from proxy_addons.report_parallel import stream_placed
from tests.unit.test_runs_fast import assert_same_as_engine, by_run

pytestmark = pytest.mark.e2e


def test_fast_report_equals_the_engine_on_a_live_dump(start_stack, tmp_path, capsys):
    st = start_stack(fail_rate=0.5, max_hops=12)
    results = asyncio.run(kick_many(st.url + "/a/", 40, 10, SEED_KICK, progress=False))
    assert all(r.error is None for r in results)
    st.gateway.stop()  # clean shutdown: every record and placement is written
    dump = st.session / "flows.jsonl"
    docs = {}
    for flag in ([], ["--reconstruct"]):
        assert cli.main(["report", str(dump), "--format", "json", *flag]) == 0
        docs[bool(flag)] = json.loads(capsys.readouterr().out)
    fast, engine = docs[False], docs[True]
    assert (fast["placement"], engine["placement"]) == ("gateway", "engine")
    assert fast["summary"]["runs"] == 40 and "notes" not in fast["read"]
    assert_same_as_engine(fast, engine, live=True)
    assert fast["read"] == engine["read"]
    with open(tmp_path / "split.json", "wb") as out:
        stream_placed(dump, out, workers=3, min_bytes=0)
    split = json.loads((tmp_path / "split.json").read_text())
    assert by_run(split) == by_run(fast) and split["summary"] == fast["summary"]


def test_late_hops_long_after_their_run_timed_out_stay_in_their_run(start_stack, capsys):
    """Some B hops held by a fault rule past A's partner timeout: their runs end 504 at once, and
    the late chain under the held hop goes on long after the run's horizon (1.5 × the kick's
    duration + 0.1 s). The fast report must still give one run per kick, the engine's (before:
    135 runs for 100 kicks in such a dump, the late chains rebuilt in pieces)."""
    import time

    from tests.conftest import flow_records, served

    delay = 3.0
    st = start_stack(fail_rate=0.02, max_hops=24, partner_timeout=1.0, log_level="warning",
                     gateway_sets={"hoptrace_har": "false", "hoptrace_faults_seed": "7",
                                   "hoptrace_faults": f"delay={delay} service=b hop=4 p=0.3"})
    results = asyncio.run(kick_many(st.url + "/a/", 20, 20, SEED_KICK, timeout=120, progress=False))
    assert all(r.error is None for r in results) and 504 in {r.status for r in results}
    answered, dump = time.monotonic(), st.session / "flows.jsonl"
    deadline = answered + 90
    while time.monotonic() < deadline:  # held hops forwarded, late chains answered
        # every request a service got is recorded (a held one whose sender gave up never left)
        delivered = [r for r in flow_records(dump) if not (r.get("error") or {}).get("undelivered")]
        if time.monotonic() > answered + delay and len(delivered) == served(st.a) + served(st.b):
            break
        time.sleep(0.2)
    else:
        pytest.fail("the late chains did not end within 90 s")
    st.gateway.stop()
    docs = {}
    for flag in ([], ["--reconstruct"]):
        assert cli.main(["report", str(dump), "--format", "json", *flag]) == 0
        docs[bool(flag)] = json.loads(capsys.readouterr().out)
    fast, engine = docs[False], docs[True]
    assert fast["summary"]["runs"] == engine["summary"]["runs"] == 20 and "notes" not in fast["read"]
    assert_same_as_engine(fast, engine, live=True)
    late = 0  # the case under test happened: hops ended past their run's horizon
    for run in fast["runs"]:
        kick = run["hops"][0]
        due = kick["started"] + 2.5 * kick["duration_ms"] / 1000 + 0.1
        late += any(h["started"] + (h["duration_ms"] or 0) / 1000 > due for h in run["hops"])
    assert late > 0
