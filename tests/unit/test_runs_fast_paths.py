"""The fast report's shortcuts give what its general way gives: ``FastRuns.record`` (a msgspec
``Record``, the common case inline) the same runs as ``FastRuns.flow`` (an ``Exchange``), repeated
and in-flight records included; ``assemble``'s chain walk the same hops, or the same refusal, as
the tree walk, on the synthetic dumps' runs and on runs whose fields were broken on purpose.
"""

from __future__ import annotations

import copy
import json

import msgspec
import pytest

from proxy_addons import records_typed, report_fast, runs_assemble
from proxy_addons.lineage import PingPongLineage
from proxy_addons.records_typed import decode_record, exchange, raw_headers
from proxy_addons.runs_assemble import Inconsistent, assemble
from proxy_addons.runs_fast import FastRuns
from proxy_addons.runs_model import Exchange, Hop, Run
from tests.unit.synth_placement import with_placements
from tests.unit.test_runs_fast import assert_same_as_engine, dumps, engine_json, fast_json, write


def _lines(records: list[dict]) -> list[bytes]:
    return [json.dumps(r).encode() + b"\n" for r in records]


def _shape(out) -> list:
    return [(pos, note, run.run_id, run.partial, run.in_flight,
             [(h.flow_id, h.hop, h.sender, h.to, h.parent, h.evidence, h.iteration, h.exchange.headers)
              for h in run.hops]) for run, pos, note in out]


def _feed(lines: list[bytes], typed: bool) -> list:
    fr, out, pos = FastRuns(PingPongLineage()), [], 0
    for line in lines:
        rec = json.loads(line)
        if rec["type"] == "placement":
            out += fr.placement(rec["flow_id"], rec["run"], pos)
        else:
            r = decode_record(line)
            out += fr.record(r, pos) if typed else fr.flow(exchange(r), r.run, pos, raw_headers(r))
        pos += len(line)
    return _shape(out + fr.close())


@pytest.mark.parametrize("seed", [11, 12])
def test_record_gives_what_flow_gives(seed):
    for name, records in dumps(seed).items():
        dump = with_placements(records)
        flows = [i for i, r in enumerate(dump) if r["type"] == "flow"]
        for i in reversed(flows[3::7]):  # repeated records, while their run is open
            dump.insert(i + 1, copy.deepcopy(dump[i]))
        lines = _lines(dump)
        typed, general = _feed(lines, True), _feed(lines, False)
        assert typed == general, name
        assert sum(len(r[-1]) for r in typed) == len({r["flow_id"] for r in dump if r["type"] == "flow"})
        if name == "in_flight":
            assert any(r[4] for r in typed)  # the in-flight path was taken


def _groups(seed: int) -> list[tuple[str, list]]:
    """(run id, records) of every run of the synthetic dumps, as ``FastRuns`` hands them over."""
    out = []
    for records in dumps(seed).values():
        fr = FastRuns(PingPongLineage())
        fr.emit = lambda rid, items, pos, hold=False: out.append((rid, items)) or []
        pos = 0
        for line in _lines(with_placements(records)):
            rec = json.loads(line)
            if rec["type"] == "placement":
                fr.placement(rec["flow_id"], rec["run"], pos)
            else:
                fr.record(decode_record(line), pos)
            pos += len(line)
        fr.close()
    return out


def _assembled(rid: str, items: list, monkeypatch, chain: bool):
    with monkeypatch.context() as m:
        if not chain:
            m.setattr(runs_assemble, "_chain", lambda c: None)
        try:
            run = assemble(rid, items, PingPongLineage())
        except Inconsistent as exc:
            return str(exc)
    return (run.partial, run.in_flight,
            [(h.flow_id, h.hop, h.sender, h.to, h.parent, h.evidence, h.iteration) for h in run.hops])


def _broken(items: list, k: int) -> list:
    """A copy of the run's records with one field of one record broken (``k`` picks which)."""
    items = [copy.copy(it) for it in items]
    for it in items:
        it.fields = dict(it.fields)
    it = items[k % len(items)]
    what = k % 6
    if what == 0:
        it.fields["hop"] += 1
    elif what == 1:
        it.fields["from"] = "z"
    elif what == 2:
        it.fields["to"] = "z"
    elif what == 3:
        del it.fields["evidence"]
    elif what == 4:
        it.fields["parent"] = ["unhashable"]
    else:
        it.fields["parent"] = None  # a second kick (or none changed)
    return items


def test_chain_walk_gives_what_the_tree_walk_gives(monkeypatch):
    groups = _groups(13)
    chains = [g for g in groups if len(g[1]) > 1 and len({it.fields["parent"] for it in g[1]}) == len(g[1])]
    assert len(chains) >= 10 and len(chains) < len(groups)  # both walks are taken
    refused = 0
    for k, (rid, items) in enumerate(groups):
        for variant in (items, _broken(items, k), _broken(items, k + 3)):
            got = _assembled(rid, variant, monkeypatch, chain=True)
            assert got == _assembled(rid, variant, monkeypatch, chain=False), (rid, k)
            refused += isinstance(got, str)
    assert refused > 20  # broken runs are refused, and alike


def test_a_run_fixed_by_a_placement_after_its_horizon_is_tried_again_at_the_end():
    """A hop's record names a parent outside its run, and the placement record that corrects it
    comes long after the run fell due (the gateway writes it when a twin's run ends): the run is
    held back, not rebuilt from its own records, and comes out as if the placement had been in
    time (seen in a real gateway's dump: 102 runs for 100 kicks before)."""
    dump = with_placements(dumps(3)["twins"])
    flows = [r for r in dump if r["type"] == "flow"]
    final: dict[str, dict] = {r["flow_id"]: r["run"] for r in flows}
    for r in dump:
        if r["type"] == "placement":
            final[r["flow_id"]] = r["run"]
    hop = next(r for r in flows if final[r["flow_id"]]["hop"] == 3)
    other = next(r for r in flows if final[r["flow_id"]]["id"] != final[hop["flow_id"]]["id"])
    broken = copy.deepcopy(dump)
    for r in broken:
        if r["flow_id"] == hop["flow_id"]:
            r["run"] = {**final[hop["flow_id"]], "parent": other["flow_id"]}  # a parent outside its run
    broken = [r for r in broken if not (r["type"] == "placement" and r["flow_id"] == hop["flow_id"])]
    later = _later(with_placements(dumps(4)["twins"]), 100.0)  # every run above falls due meanwhile
    broken += [*later, {"type": "placement", "flow_id": hop["flow_id"], "run": final[hop["flow_id"]]}]

    def runs(lines):
        fed = _feed(lines, True)
        return sorted((s[2], s[5]) for s in fed), [s[1] for s in fed if s[1]]

    want, _ = runs(_lines(dump + later))
    got, notes = runs(_lines(broken))
    assert notes == []  # nothing had to be rebuilt by the engine
    assert got == want


def _later(records: list[dict], shift: float) -> list[dict]:
    """The same runs ``shift`` seconds later, under other flow (and so run) ids."""
    def other(i: str) -> str:
        return ("1" if i[0] == "0" else "0") + i[1:]

    out = copy.deepcopy(records)
    for r in out:
        r["flow_id"] = other(r["flow_id"])
        run = r["run"]
        run["id"] = other(run["id"])
        if run["parent"] is not None:
            run["parent"] = other(run["parent"])
        if r["type"] == "flow":
            r["started"] += shift
            if r.get("ended") is not None:
                r["ended"] += shift
    return out


def test_a_held_back_record_moved_into_a_run_still_open_goes_out_with_that_run():
    """Held back (a parent outside its run), then placed by a later placement record into a run
    still open: it is written with that run, not left over as a piece of its own."""
    def ex(fid, service, started, ended):
        return Exchange(fid, started, service, "POST", f"/{service}/", None, (), None, ended, 200)

    k1, c, k2, d, k3 = (f"{x * 8}-0000-0000-0000-000000000000" for x in "abcde")
    fr, out = FastRuns(PingPongLineage()), []
    kick = {"hop": 1, "from": "client", "iteration": 1, "evidence": "kick", "parent": None}
    out += fr.flow(ex(c, "a", 0.1, 0.9), {"id": "aaaaaaaa", "hop": 2, "from": "a", "to": "a",
                                          "iteration": 1, "evidence": "lineage", "parent": "gone"}, 0)
    out += fr.flow(ex(k1, "a", 0.0, 1.0), {"id": "aaaaaaaa", "to": "a", **kick}, 1)
    out += fr.flow(ex(d, "b", 2.5, 4.0), {"id": "cccccccc", "hop": 2, "from": "a", "to": "b",
                                          "iteration": 1, "evidence": "lineage", "parent": k2}, 2)
    assert c in fr.doubtful  # run aaaaaaaa fell due and did not hold together
    out += fr.placement(c, {"id": "cccccccc", "hop": 3, "from": "b", "to": "a", "iteration": 2,
                            "evidence": "lineage", "parent": d}, 3)
    out += fr.flow(ex(k2, "a", 2.0, 10.0), {"id": "cccccccc", "to": "a", **kick}, 4)
    out += fr.flow(ex(k3, "a", 50.0, 60.0), {"id": "eeeeeeee", "to": "a", **kick}, 5)  # cccccccc falls due
    out += fr.close()
    runs = {run.run_id: [h.flow_id for h in run.hops] for run, _, note in out if note is None}
    assert runs == {"aaaaaaaa": [k1], "cccccccc": [k2, d, c], "eeeeeeee": [k3]}
    assert all(note is None for _, _, note in out)


def _scaled(records: list[dict], k: float) -> list[dict]:
    """The same dump with every exchange lasting ``k`` times as long (the horizon's ``SKEW``
    does not grow with it): slow services, long runs, late hops long after their run fell due."""
    out = copy.deepcopy(records)
    t0 = min(r["started"] for r in out if r["type"] == "flow")
    for r in out:
        if r["type"] == "flow":
            r["started"] = t0 + (r["started"] - t0) * k
            if r.get("ended") is not None:
                r["ended"] = t0 + (r["ended"] - t0) * k
    return out


def _fed(lines: list[bytes], horizon: float | None = None) -> tuple[list, list]:
    fr, out, pos = FastRuns(PingPongLineage(), horizon=horizon), [], 0
    for line in lines:
        rec = json.loads(line)
        if rec["type"] == "placement":
            out += fr.placement(rec["flow_id"], rec["run"], pos)
        else:
            out += fr.record(decode_record(line), pos)
        pos += len(line)
    shape = _shape(out + fr.close())
    return sorted((s[2], s[5]) for s in shape), [s[1] for s in shape if s[1]]


@pytest.mark.parametrize("seed", [0, 2])
def test_slow_runs_come_out_as_if_every_placement_had_been_read_first(seed):
    """Exchanges 10× and 100× as long: a twin's run ends long after a run fell due, and hops
    under a timed-out partner end long after their run's horizon. The runs are those of a reader
    that waits for the end of the dump (every placement record read), with nothing rebuilt by
    the engine. (Before: a hop recorded as guessed under a twin and moved when that twin's run
    ended was written in the wrong run, and late hops were rebuilt in pieces.)"""
    for name, records in dumps(seed).items():
        dump = with_placements(records)
        for k in (10, 100):
            lines = _lines(_scaled(dump, k))
            got, notes = _fed(lines)
            assert notes == [], (name, k)
            assert got == _fed(lines, horizon=1e9)[0], (name, k)


def test_more_timed_out_runs_than_are_held_go_out_as_they_stand(monkeypatch):
    """Past ``LATE_MAX`` runs held for late hops, the oldest goes out as it stands: its late
    hops come out later, rebuilt by the engine, said in a note; every record is in one run."""
    from proxy_addons import runs_fast

    monkeypatch.setattr(runs_fast, "LATE_MAX", 1)
    dump = _scaled(with_placements(dumps(0)["timeouts"]), 10)
    got, notes = _fed(_lines(dump))
    listed = [fid for _, hops in got for fid, *_ in hops]
    assert sorted(listed) == sorted({r["flow_id"] for r in dump if r["type"] == "flow"})
    assert notes and all("rebuilt by the engine" in n for n in notes)


class _Unread(dict):
    """A response body the fast reader left as JSON bytes: a diagnosis may ask for its
    ``outcome`` (it has none) or pass it on whole; any other look inside fails the test."""

    def _fail(self, *args, **kwargs):
        raise AssertionError("the diagnosis read a response body the fast reader did not read")

    def get(self, key, default=None):
        return default if key == "outcome" else self._fail()

    __getitem__ = __contains__ = __iter__ = __len__ = keys = items = values = __eq__ = _fail
    __hash__ = None


@pytest.mark.parametrize("seed", [21, 22])
def test_the_diagnosis_reads_no_response_the_fast_reader_left_unread(tmp_path, monkeypatch, seed):
    """``records_typed.read_responses`` reads only the responses a diagnosis may look inside (the
    kick's, a hop that forwarded nothing, a failed or refused one, each only if it has an
    ``outcome``) and the report writes the others as their JSON bytes: each one left unread is
    swapped for an object that fails on any look inside but for its outcome while the run is
    diagnosed, over every kind of run of the synthetic dumps; one passed on is a break's
    ``detail``; the report is the engine's."""
    real, left, details = report_fast.diagnose, [], []

    def diagnose(run, lineage):
        raws = {id(u): (ex, raw, u) for ex, raw, u in (
            (h.exchange, h.exchange.response, _Unread()) for h in run.hops
            if type(h.exchange.response) is msgspec.Raw)}
        for ex, _, unread in raws.values():
            ex.response = unread
        d = real(run, lineage)
        for ex, raw, _ in raws.values():
            ex.response = raw
        shown = [k for k, v in (d.brk or {}).items() if isinstance(v, _Unread)]
        assert shown in ([], ["detail"]), d.brk
        if shown:
            d.brk["detail"] = raws[id(d.brk["detail"])][1]
            details.append(d.brk["detail"])
        left.append(len(raws))
        return d

    monkeypatch.setattr(report_fast, "diagnose", diagnose)
    for name, records in dumps(seed).items():
        p = tmp_path / f"{name}.jsonl"
        write(p, with_placements(records))
        assert_same_as_engine(fast_json(p, workers=1), engine_json(p))
    assert sum(left) > 100 and sum(n == 0 for n in left) > 20  # both kinds of run were diagnosed
    assert len(details) > 100  # breaks whose detail went out as the bytes read


def test_responses_read_in_a_tree_run():
    """Depth-first: the kick, a leaf inside the tree (followed by its sibling, not by a child),
    the last hop and a refused hop are read; a hop that forwarded and was answered 200 is not;
    nor a body without an ``outcome`` (a service's 400) or one that is not JSON; a text body is."""
    def hop(n, fid, parent, status=200, body=None):
        ex = Exchange(fid, float(n), "a", "POST", "/a/", {"digits": [n]}, (), None, n + 1.0, status,
                      msgspec.Raw(body or b'{"outcome":"max_hops","n":%d}' % n))
        return Hop(n, fid, "a", "a", parent, "lineage", 1, ex)

    # kick → x → (leaf, y → (refused → z)); depth-first: kick, x, leaf, y, refused, z
    hops = [hop(1, "kick", None), hop(2, "x", "kick"), hop(3, "leaf", "x"), hop(3, "y", "x"),
            hop(4, "refused", "y", 400), hop(5, "z", "refused")]
    records_typed.read_responses(Run("kick", hops))
    read = [h.flow_id for h in hops if type(h.exchange.response) is not msgspec.Raw]
    assert read == ["kick", "leaf", "refused", "z"]
    assert hops[2].exchange.response == {"outcome": "max_hops", "n": 3}

    hops = [hop(1, "kick", None, body=b'"a text answer"'), hop(2, "x", "kick"),
            hop(3, "refused", "x", 400, b'{"detail":"b rejected","payload":{"outcome":1}}'),
            hop(3, "listed", "x", 200, b'[{"outcome":1}]')]
    records_typed.read_responses(Run("kick", hops))
    assert [h.exchange.response for h in hops if type(h.exchange.response) is not msgspec.Raw] == [
        "a text answer", [{"outcome": 1}]]
    assert [h.flow_id for h in hops if type(h.exchange.response) is msgspec.Raw] == ["x", "refused"]


def test_a_run_with_a_lone_surrogate_and_unread_responses_is_written(tmp_path):
    """A string UTF-8 cannot hold (a lone surrogate, ``\\ud800`` in the dump) makes the run's JSON
    take the stdlib's way, which must parse the response bodies the fast reader left as bytes
    (here the third hop's, forwarded and answered 200): the runs and their answers are those of
    the same dump without it (it failed with "Encoding objects of type msgspec.Raw")."""
    records = with_placements(dumps(23)["completed"])
    hop = next(r for r in records if r["type"] == "flow" and r["run"]["hop"] == 2
               and len([x for x in records if x.get("run", {}).get("id") == r["run"]["id"]]) >= 4)
    write(tmp_path / "plain.jsonl", records)
    hop["request"]["body"]["value"]["name"] = "bad \ud800 name"
    write(tmp_path / "flows.jsonl", records)
    assert b"\\ud800" in (tmp_path / "flows.jsonl").read_bytes()
    got, want = fast_json(tmp_path / "flows.jsonl"), fast_json(tmp_path / "plain.jsonl")
    (run,) = [r for r in got["runs"] if r["run"] == hop["run"]["id"]]
    assert len(run["hops"]) >= 4 and run["hops"][1]["request"]["name"] == "bad \ud800 name"

    def answers(doc: dict) -> list:
        return [(r["run"], [(h["flow_id"], h["status"], h["response"]) for h in r["hops"]]) for r in doc["runs"]]

    assert answers(got) == answers(want) and got["summary"] == want["summary"]
