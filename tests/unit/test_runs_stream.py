"""Streaming reconstruction (``iter_runs``): the same runs as a full sort of every event, from a
bounded look-ahead, and runs come out while the dump is still being read."""

from __future__ import annotations

import math
import random

import pytest

from proxy_addons.runs import iter_runs, reconstruct
from tests.unit.synth import Synth
from tests.unit.test_runs import T0, assert_exact


def shape(runs) -> list:
    return sorted((r.run_id, r.partial, r.in_flight, [(h.flow_id, h.hop, h.parent, h.evidence) for h in r.hops])
                  for r in runs)


def clients(seed: int, lanes: int, runs_per_lane: int, identical: bool = True, gap: float = 0.002) -> Synth:
    """``lanes`` clients each kicking runs back to back: many runs in flight at once, and with
    identical kicks many twins."""
    s, rng = Synth(seed=seed), random.Random(seed)
    for lane in range(lanes):
        t = T0 + rng.uniform(0, 0.01)
        for _ in range(runs_per_lane):
            kick = s.kick(t, {"digits": []} if identical else {"name": f"p{lane}", "digits": []})
            t = max(r["ended"] for r in s.records if r["flow_id"] == kick) + rng.uniform(0.0001, gap)
    return s


@pytest.mark.parametrize("seed", range(4))
def test_streaming_equals_the_full_sort_and_the_truth(seed):
    s = clients(seed, lanes=20, runs_per_lane=15, gap=0.03)
    dump = s.dump()
    read = []
    it = iter_runs(r for r in dump if not read.append(r))
    first = next(it)
    assert len(read) < len(dump) / 2  # events were applied while the dump was being read
    streamed = [first, *it]
    assert shape(streamed) == shape(iter_runs(dump, horizon=math.inf))  # inf: nothing applied before the end
    assert_exact(reconstruct(dump), s.runs, s.records)


def test_write_order_a_little_off_end_order_is_absorbed():
    s = clients(7, lanes=10, runs_per_lane=10)
    dump = s.dump()
    rng = random.Random(1)
    for i in range(0, len(dump) - 1, 3):  # neighbours swapped: hooks finishing out of order
        if rng.random() < 0.5 and abs(dump[i]["ended"] - dump[i + 1]["ended"]) < 0.05:
            dump[i], dump[i + 1] = dump[i + 1], dump[i]
    assert shape(iter_runs(dump)) == shape(iter_runs(dump, horizon=math.inf))


def test_runs_come_out_while_reading():
    s = clients(3, lanes=10, runs_per_lane=60, identical=False, gap=0.1)  # a dump of ~3 s
    dump = s.dump()
    consumed = 0

    def counting():
        nonlocal consumed
        for rec in dump:
            consumed += 1
            yield rec

    runs = iter_runs(counting())
    next(runs)
    assert consumed < len(dump) / 10  # the first run is out after a tenth of the dump at most
    assert len(shape(runs)) + 1 == len(s.runs)
