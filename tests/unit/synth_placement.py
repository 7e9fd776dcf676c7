"""The ``run`` fields and ``placement`` records a live gateway would have written into a
synthetic flows.jsonl (docs/dump-format.md), made the way the gateway makes them: every exchange
goes through a ``RunTracker`` as a start and an end event in time order; a record carries the
placement its exchange had when it was written (where the engine had it then, or the final one
when its run had already finished); when a run finishes, each already written hop whose final
placement differs gets a placement record, right after the record that finished the run, and so
does each written hop last said to be in that run that is no longer in it (its placement now,
provisional if its new run is still open). Never the ground truth: only what the engine said at
the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from proxy_addons.lineage import Lineage
from proxy_addons.runs import Exchange, Run, RunTracker
from proxy_addons.runs_model import hop_fields, placement, run_fields
from proxy_addons.runs_replay import EventOrder, start_view


def gateway_order(items: Iterable[tuple[Exchange, Any]], lineage: Lineage | None = None
                  ) -> Iterator[tuple[str, Any, dict]]:
    """``items``: (exchange, what to write) in end order. Yields ("flow", what, run fields) and
    ("placement", flow id, run fields) in the order the gateway writes them. An exchange that
    never ended (a dump cut mid-run: the gateway itself writes none) is written when it starts;
    the placements of the runs still open come last, as the gateway's shutdown flushes them."""
    tracker, order = RunTracker(lineage), EventOrder()
    fields: dict[str, dict] = {}
    payload: dict[str, Any] = {}
    written: set[str] = set()

    said: dict[str, set[str]] = {}  # run id → written flows whose last written fields name it

    def wrote(fid: str, f: dict) -> None:
        said.setdefault(f["id"], set()).add(fid)

    def finish(runs: list[Run]) -> Iterator[tuple[str, Any, dict]]:
        for run in runs:
            members = set()
            for h in run.hops:
                members.add(h.flow_id)
                final = hop_fields(run, h)
                if fields.get(h.flow_id) != final:
                    fields[h.flow_id] = final
                    if h.flow_id in written:
                        wrote(h.flow_id, final)
                        yield "placement", h.flow_id, final
                if h.flow_id in written and h.exchange.ended is not None:
                    fields.pop(h.flow_id, None)  # done with it (a late hop keeps its entry)
            for fid in sorted(said.pop(run.run_id, set()) - members):
                if fid not in fields or fid not in tracker.nodes:
                    continue  # its own run has finished since: its final placement is written
                now = run_fields(tracker.assignment(fid))
                if now != fields[fid]:
                    fields[fid] = now
                    wrote(fid, now)
                    yield "placement", fid, now

    def apply(events) -> Iterator[tuple[str, Any, dict]]:
        for is_start, ex in events:
            if is_start:
                fields[ex.flow_id] = run_fields(tracker.start(start_view(ex)))
                if ex.ended is None:
                    written.add(ex.flow_id)
                    wrote(ex.flow_id, fields[ex.flow_id])
                    yield "flow", payload.pop(ex.flow_id), fields[ex.flow_id]
                continue
            if ex.flow_id in tracker.nodes:  # where the engine has it now, as the record says
                fields[ex.flow_id] = run_fields(tracker.assignment(ex.flow_id))
            runs = tracker.end(ex)
            written.add(ex.flow_id)
            wrote(ex.flow_id, fields[ex.flow_id])
            yield "flow", payload.pop(ex.flow_id), fields[ex.flow_id]
            yield from finish(runs)

    for ex, what in items:
        payload[ex.flow_id] = what
        yield from apply(order.push(ex))
    yield from apply(order.drain())
    yield from finish(tracker.flush())


def with_placements(records: list[dict], lineage: Lineage | None = None) -> list[dict]:
    """Flow records (end order; unended ones anywhere) → the dump a live gateway would have
    written: each record with its ``run`` field, placement records after the corrections."""
    ordered = sorted(records, key=lambda r: (r["ended"] is None, r["ended"] or 0))
    out: list[dict] = []
    for kind, what, fields in gateway_order(((Exchange.from_record(r), r) for r in ordered), lineage):
        out.append({**what, "run": fields} if kind == "flow" else placement(what, fields))
    return out
