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
