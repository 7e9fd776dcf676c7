"""``python -m bench.report_stages`` (not part of ``make test``'s figures) still runs: each
stage's stub must keep up with the report code it replaces, or the bench breaks unnoticed
(it did once: ``FastRuns.emit`` gained an argument its stub did not take)."""

from __future__ import annotations

import re

from bench import report_stages
from bench.synth_dump import write_dump


def test_every_stage_reads_every_hop_of_a_small_placed_dump(tmp_path, capsys):
    dump = tmp_path / "flows.jsonl"
    hops = write_dump(dump, 600, lanes=5, pool=50)
    assert report_stages.main(["--dump", str(dump), "--repeat", "1"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    assert [r[0] for r in rows] == list(report_stages.STAGES)
    for r in rows:
        assert float(r[3]) > 0  # µs a hop (the seconds of a dump this small may print as 0.00)
        assert int(re.search(r"(\d+) hops", " ".join(r)).group(1)) == hops
