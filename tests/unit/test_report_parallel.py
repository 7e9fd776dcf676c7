"""The fast report on several cores: a dump cut into byte ranges, one reader each, gives what one
reader gives (same runs, same summary, same read counts), also when ranges are so small that
runs straddle them; damage is reported once, with the line number the engine gives; a reader
that dies is a clear error and leaves no temporary file."""

from __future__ import annotations

import json
import os
import random

import pytest

from proxy_addons import report_parallel
from proxy_addons.report import build, render
from proxy_addons.report_parallel import WorkerError, ranges, stream_placed
from tests.unit.synth import Synth, cut_at
from tests.unit.synth_placement import with_placements
from tests.unit.test_runs_fast import assert_same_as_engine

T0 = 1_764_000_000.0


@pytest.fixture(scope="module")
def dump() -> list[dict]:
    """20 clients kicking identical runs back to back (twins), with partner timeouts and
    injected faults; read while the last runs are in flight."""
    s, rng = Synth(seed=9, max_hops=14, timeout=0.03, slow_rate=0.03, inject_rate=0.03), random.Random(9)
    for lane in range(20):
        t = T0 + rng.uniform(0, 0.01)
        for _ in range(12):
            kick = s.kick(t, {"digits": []})
            t = max(r["ended"] for r in s.records if r["flow_id"] == kick) + rng.uniform(0.0001, 0.01)
    end = max(r["ended"] for r in s.records)
    return with_placements(cut_at(s, end - 0.08)[0])


def write(path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines))


def report(path, **kw) -> dict:
    out = path.with_suffix(f".{kw.get('workers', 1)}.json")
    with open(out, "wb") as f:
        stream_placed(path, f, **kw)
    return json.loads(out.read_text())


def keyed(doc: dict) -> dict:
    return {(r["run"], r["hops"][0]["flow_id"]): r for r in doc["runs"]}


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_any_number_of_ranges_gives_the_single_reader_report(tmp_path, dump, workers):
    p = tmp_path / "flows.jsonl"
    write(p, [json.dumps(r) for r in dump])
    cuts = ranges(p, workers)
    assert len(cuts) == workers  # tiny ranges: runs straddle every cut
    single, split = report(p, workers=1, min_bytes=0), report(p, workers=workers, min_bytes=0)
    assert len(split["runs"]) == len(single["runs"]) == len(keyed(single))
    assert keyed(split) == keyed(single)
    assert split["summary"] == single["summary"] and split["read"] == single["read"]
    assert single["summary"]["outcomes"]["in_flight"] > 0
    assert_same_as_engine(single, json.loads(render(build(p), "json")))


def test_damage_is_reported_once_with_the_engines_line_numbers(tmp_path, dump):
    lines = [json.dumps(r) for r in dump]
    lines.insert(len(lines) // 3, "this is not json")
    lines.insert(2 * len(lines) // 3, json.dumps({"type": "heartbeat", "t": 1}))
    lines.insert(len(lines) // 2, "")
    p = tmp_path / "flows.jsonl"
    p.write_text("\n".join(lines) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut last line
    engine = json.loads(render(build(p), "json"))
    assert len(engine["read"]["skipped"]) == 3
    for workers in (1, 4):
        got = report(p, workers=workers, min_bytes=0)
        assert got["read"] == engine["read"], workers
        assert_same_as_engine(got, engine)


def test_a_reader_that_dies_is_a_clear_error_and_leaves_nothing(tmp_path, dump, monkeypatch):
    p = tmp_path / "flows.jsonl"
    write(p, [json.dumps(r) for r in dump])
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(report_parallel.tempfile, "tempdir", str(tmp))

    def die(path, start, *rest):
        if start > 0:
            os._exit(3)  # as if killed (the OOM killer, a signal)
        return real(path, start, *rest)

    real = report_parallel.scan
    monkeypatch.setattr(report_parallel, "scan", die)
    with open(tmp_path / "out.json", "wb") as out, pytest.raises(WorkerError, match="worker died"):
        stream_placed(p, out, workers=2, min_bytes=0)
    assert os.listdir(tmp) == []


@pytest.mark.parametrize("workers", [1, 3])
def test_progress_counts_every_byte_once_and_changes_nothing(tmp_path, dump, monkeypatch, workers):
    """The bytes read, told as the readers go (every STEP bytes each), end at the dump's size
    with any number of readers (a reader reads past its range; those bytes are its neighbour's);
    the report is the same with and without it."""
    from proxy_addons import report_fast

    p = tmp_path / "flows.jsonl"
    write(p, [json.dumps(r) for r in dump])
    size = p.stat().st_size
    monkeypatch.setattr(report_fast, "STEP", size // 20)  # inherited by the forked readers
    told: list[int] = []
    with open(tmp_path / "told.json", "wb") as f:
        stream_placed(p, f, workers=workers, min_bytes=0, progress=told.append)
    assert told and told[-1] == size
    assert told == sorted(told) and all(0 <= n <= size for n in told)
    if workers == 1:  # told in the reading loop itself: about every STEP bytes
        assert len(told) >= 15
    assert json.loads((tmp_path / "told.json").read_text()) == report(p, workers=workers, min_bytes=0)


@pytest.mark.parametrize("late_max", [1, 10_000])
def test_runs_held_for_late_hops_are_written_once_by_split_readers(tmp_path, dump, monkeypatch, late_max):
    """Exchanges 20× as long: late hops end past their run's horizon, so readers hold timed-out
    runs to their end (or let the oldest go past ``LATE_MAX``). Split in 3, every record is in
    exactly one run; with room to hold them all, the split report is the single reader's."""
    from proxy_addons import runs_fast
    from tests.unit.test_runs_fast_paths import _scaled

    monkeypatch.setattr(runs_fast, "LATE_MAX", late_max)
    p = tmp_path / "flows.jsonl"
    scaled = _scaled(dump, 20)
    write(p, [json.dumps(r) for r in scaled])
    single, split = report(p, workers=1, min_bytes=0), report(p, workers=3, min_bytes=0)
    flows = sorted({r["flow_id"] for r in scaled if r["type"] == "flow"})
    for doc in (single, split):
        assert sorted(h["flow_id"] for r in doc["runs"] for h in r["hops"]) == flows
    if late_max > 1:
        assert keyed(split) == keyed(single) and "notes" not in single["read"]
        assert_same_as_engine(single, json.loads(render(build(p), "json")))


@pytest.mark.parametrize("workers", [1, 3])
def test_the_first_range_written_into_a_pipe_or_a_file_or_memory_gives_the_same_bytes(tmp_path, dump, workers):
    """With a file descriptor behind the output, the first range's reader writes into it itself
    (no temporary copy of it); the rest follow it, in order, through the same descriptor. A pipe
    (``hoptrace report | jq``), a file and an in-memory buffer get the same bytes."""
    import io
    import subprocess
    import sys

    p = tmp_path / "flows.jsonl"
    write(p, [json.dumps(r) for r in dump])
    with open(tmp_path / "file.json", "wb") as f:
        stream_placed(p, f, workers=workers, min_bytes=0)
    in_file = (tmp_path / "file.json").read_bytes()
    memory = io.BytesIO()
    stream_placed(p, memory, workers=workers, min_bytes=0)
    copy = "import shutil, sys; shutil.copyfileobj(sys.stdin.buffer, sys.stdout.buffer)"
    with open(tmp_path / "piped.json", "wb") as sink:
        reader = subprocess.Popen([sys.executable, "-c", copy], stdin=subprocess.PIPE, stdout=sink)
        try:
            with reader.stdin as piped:
                stream_placed(p, piped, workers=workers, min_bytes=0)
            assert reader.wait(timeout=30) == 0
        finally:
            reader.kill()
    assert (tmp_path / "piped.json").read_bytes() == in_file == memory.getvalue()
    assert len(json.loads(in_file)["runs"]) > 20


def test_a_reader_that_closes_the_pipe_early_stops_the_report_quietly(tmp_path, dump):
    """``hoptrace report --format json … | head``: the report stops with the shell's status for a
    closed pipe (141) and says nothing, no traceback."""
    import subprocess
    import sys

    p = tmp_path / "flows.jsonl"
    write(p, [json.dumps(r) for r in dump] * 3)  # more than a pipe holds (64 KB)
    proc = subprocess.Popen([sys.executable, "-m", "proxy_addons.cli", "report", str(p), "--format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.read(12) == b'{"runs": [\n{'
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141, err
        assert err == ""
    finally:
        proc.kill()
