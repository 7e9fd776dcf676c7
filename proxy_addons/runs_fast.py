"""PURE: runs from the placement the live gateway already wrote into flows.jsonl, without the run
engine: group the records by their ``run`` field's ``id``, a later ``placement`` record overriding
a flow's field (docs/dump-format.md), and order each run depth-first as ``runs_index.walk`` does.

A run is complete once its kick (the hop without a parent) has been read — records come in end
order and the kick ends last — except for *late* hops (under a partner that timed out) and
placement records, which come after it: so a run is handed out once a record read ended more
than a horizon after its kick's end (1.5 × the kick's duration + ``runs.SKEW``: a function of the
run alone, so readers of different parts of a dump decide alike), then forgotten; a run in
which a hop timed out on its partner is held to the end of the dump instead (its late hops may
end after any horizon; ``LATE_MAX`` at most). Memory: the open and the held runs.

What the fast path does not trust goes through the engine instead (the caller says it in notes):
records without a ``run`` field (e.g. the gateway's own 404, which is outside every run) are fed
to one streaming engine (``runs_replay.Replay``), exactly as the full report would place them; a
run whose fields do not hold together when it falls due (two kicks, a parent outside the run,
hop numbers or senders that do not follow the parents, a kick the engine would not have made) is
held back to the end of the dump, since a placement record may still fix it (the gateway writes
a hop's corrected placement when its run ends, and a twin's run can end long after this one),
then regrouped with every placement read; what still does not hold together is rebuilt by the
engine from its own records. Nothing is dropped.
"""

from __future__ import annotations

import gc
import heapq
import math

from proxy_addons.lineage import Lineage, PingPongLineage
from proxy_addons.records_typed import Record, exchange, headers_of, raw_headers, read_responses, response_value
from proxy_addons.runs import SKEW
from proxy_addons.runs_assemble import (
    Inconsistent,
    Item,
    assemble,
    rebuild,
    valid_fields,
)
from proxy_addons.runs_model import Exchange, Run
from proxy_addons.runs_replay import Replay, start_view

ENGINE_GC_EVERY = 20_000  # records fed to the engine between two collections of its cycles
TIMED_OUT = 504  # a hop that gave up on its partner (partner_timeout): late hops may follow
LATE_MAX = 10_000  # runs with a timed-out hop held back at once; the oldest then goes out as is

Out = tuple[Run, int, str | None]  # (run, file position of the kick that made it due, a note)


class FastRuns:
    """Feed ``flow``/``placement`` records in file order (``pos``: where each one is); each call
    returns the runs now complete as (run, position of its kick, note). ``close`` at the end of
    the dump hands out the rest. A reader of one byte range of a dump (report_parallel) passes
    ``first``: the runs that may have records before it are set aside instead, and ``stop``
    gives every record it could not use, for the caller to join with the other readers'."""

    def __init__(self, lineage: Lineage | None = None, horizon: float | None = None,
                 first: int | None = None, own_end: float = math.inf) -> None:
        self.lineage = lineage or PingPongLineage()
        self.horizon = horizon
        self.groups: dict[str, list[Item]] = {}  # run id → its records read so far
        self.items: dict[str, Item] = {}  # flow id → item, while its run is open
        self.due: list[tuple] = []  # (kick end + horizon, kick position, run id, kick item)
        self.owned_due = 0  # entries of ``due`` whose kick lies before ``own_end``
        self.own_end = own_end
        self.engine = Replay(self.lineage)  # for records without a run field
        self.engine_pos: dict[str, int] = {}
        self.engine_fed = 0
        self.orphans: list[tuple[int, str, dict]] = []  # placements for flows not seen (open)
        self.first = first  # a range reader: the position it started at
        self.first_end: float | None = None
        self.early: list[Item] = []  # records of runs that may reach before ``first``
        self.claimed: list[str] = []  # flows past ``own_end`` in runs handed out here
        # flow id → record of a run whose fields did not hold together when it fell due: kept
        # (in ``items`` too, so later placement records still apply) and tried again at the end
        self.doubtful: dict[str, Item] = {}
        self.late: dict[str, tuple[int, list[Item]]] = {}  # run id → a timed-out run held back

    # --- input ---------------------------------------------------------------------------------
    def flow(self, ex: Exchange, run, pos: int, raw=None) -> list[Out]:
        """A flow record (``raw``: its request headers, if not read yet)."""
        ended = ex.ended
        if ended is None:
            ex = start_view(ex)  # all the engine knows of an exchange that never ended
        elif self.first_end is None:
            self.first_end = ended
        fid = ex.flow_id
        if not valid_fields(run):
            if raw is not None:
                ex.headers = headers_of(raw)
            self.engine_pos[fid] = pos
            out = self._from_engine(self.engine.feed(response_value(ex)))  # the engine reads answers
            self.engine_fed += 1
            if self.engine_fed % ENGINE_GC_EVERY == 0:
                gc.collect()  # the engine's nodes hold cycles; a fast reader runs with gc off
        elif fid in self.items:  # a repeated record: the first one counts (as the engine)
            return []
        else:
            self._add(Item(ex, run, pos, raw), run["id"])
            out = []
        due = self.due
        if due and ended is not None and due[0][0] < ended:
            out.extend(self._due(ended))
        return out

    def record(self, r: Record, pos: int) -> list[Out] | tuple:
        """A flow record as ``records_typed`` decoded it. The common case (placed, ended,
        first seen) inline, as ``flow`` would do it; the rest through ``flow``."""
        run, ended = r.run, r.ended
        if ended is None or not valid_fields(run):
            return self.flow(exchange(r), run, pos, raw_headers(r))
        if self.first_end is None:
            self.first_end = ended
        if r.flow_id in self.items:
            return ()  # a repeated record: the first one counts (as the engine)
        self._add(Item(exchange(r), run, pos, raw_headers(r)), run["id"])
        due = self.due
        return self._due(ended) if due and due[0][0] < ended else ()

    def placement(self, flow_id: str, run, pos: int) -> tuple:
        """A corrected placement: the last one for a flow wins."""
        if not valid_fields(run):
            return ()
        it = self.items.get(flow_id)
        if it is None:
            self.orphans.append((pos, flow_id, run))
            return ()
        if flow_id in self.doubtful:
            it.fields = run  # regrouped at the end, unless its run is still open: it goes with it
            if run["id"] in self.groups:
                del self.doubtful[flow_id]
                self._add(it, run["id"])
            return ()
        old, rid = it.fields["id"], run["id"]
        it.fields = run
        if rid != old:
            group = self.groups[old]  # an open item is in its run's group (``_forget`` drops both)
            if len(group) == 1:
                del self.groups[old]
            else:
                group.remove(it)
            self._add(it, rid)
        elif run["parent"] is None:
            self._schedule(it, rid)
        return ()

    def _add(self, it: Item, rid: str) -> None:
        """An open record into its run's group (a kick also onto the due heap)."""
        self.items[it.flow_id] = it
        group = self.groups.get(rid)
        if group is None:
            self.groups[rid] = [it]
        else:
            group.append(it)
        if it.fields["parent"] is None:
            self._schedule(it, rid)

    def _schedule(self, kick: Item, rid: str) -> None:
        """Due once the reading is past the kick's end + the horizon: 1.5 × the kick's duration
        + SKEW by default (it outlasts every hop but late ones; a function of the run alone, so
        any reader of the dump decides alike)."""
        ex = kick.exchange
        if ex.ended is None:
            return  # in flight: at the end
        horizon = self.horizon if self.horizon is not None else 1.5 * (ex.ended - ex.started) + SKEW
        heapq.heappush(self.due, (ex.ended + horizon, kick.pos, rid, kick))
        self.owned_due += kick.pos < self.own_end

    # --- output --------------------------------------------------------------------------------
    def _due(self, now: float) -> list[Out]:
        out: list[Out] = []
        due, items, own_end, pop = self.due, self.items, self.own_end, heapq.heappop
        while due and due[0][0] < now:
            _, pos, rid, kick = pop(due)
            mine = pos < own_end
            self.owned_due -= mine
            f = kick.fields
            if f["parent"] is not None or f["id"] != rid or items.get(kick.flow_id) is not kick or (
                    kick.flow_id in self.doubtful):
                continue  # moved since (a placement): its own entry decides
            if not mine:  # the next reader's run: our records of it go to the join
                self.early.extend(it for it in self._forget(rid) if it.pos < own_end)
                continue
            if self.first is not None and kick.exchange.started <= self.first_end + SKEW:
                self.early.extend(self._forget(rid))  # it may have records before us
                continue
            group = self._forget(rid)
            if TIMED_OUT in [it.exchange.status for it in group]:
                out += self._hold_late(rid, group, pos)
                continue
            runs = self.emit(rid, group, pos, hold=True)
            if runs is None:
                continue  # held back
            self._claim(group)
            out += runs
        return out

    def _hold_late(self, rid: str, group: list[Item], pos: int) -> list[Out]:
        """A hop of this run gave up on its partner (a timeout), which may still be working and
        send *late* hops, written after any horizon: the run is held back to the end of the dump
        as ``doubtful`` is (late records of it are grouped then). At most ``LATE_MAX`` such runs
        at once: the oldest then goes out as it stands, with its late records read so far."""
        self._hold(group)
        self.late[rid] = (pos, group)
        if len(self.late) <= LATE_MAX:
            return []
        old = next(iter(self.late))
        pos, group = self.late.pop(old)
        doubtful = self.doubtful
        items = [it for it in group if doubtful.get(it.flow_id) is it and it.fields["id"] == old]
        for it in items:
            del doubtful[it.flow_id], self.items[it.flow_id]
        if old in self.groups:
            items += self._forget(old)
        self._claim(items)
        return self.emit(old, items, pos) if items else []

    def _hold(self, items: list[Item]) -> None:
        """Keep these records to the end of the dump (``doubtful``; in ``items`` too, so later
        placement records still apply to them)."""
        for it in items:
            self.items[it.flow_id] = self.doubtful[it.flow_id] = it

    def _claim(self, items: list[Item]) -> None:
        """A range reader hands out a run: its records past the range, which the next reader
        also read, are said to be taken."""
        if self.own_end != math.inf:
            self.claimed.extend(it.flow_id for it in items if it.pos >= self.own_end)

    def _forget(self, rid: str) -> list[Item]:
        group = self.groups.pop(rid)
        items = self.items
        for it in group:
            del items[it.flow_id]
        return group

    def emit(self, rid: str, items: list[Item], pos: int, hold: bool = False) -> list[Out] | None:
        """One run from its records; the engine when their fields do not hold together, unless
        ``hold``: then they are held back (None) and tried again at the end, with the placement
        records read since (a twin's run that ends later moves hops out of this one)."""
        try:
            run = assemble(rid, items, self.lineage)
        except Inconsistent as exc:
            if hold:
                self._hold(items)
                return None
            note = (f"run {rid}: the run fields of its {len(items)} record(s) do not hold together "
                    f"({exc}); rebuilt by the engine")
            return [(r, pos, note if i == 0 else None) for i, r in enumerate(rebuild(items, self.lineage))]
        read_responses(run)
        return [(run, pos, None)]

    def _from_engine(self, runs: list[Run]) -> list[Out]:
        out: list[Out] = []
        for run in runs:
            pos = self.engine_pos.get(run.kick.flow_id, -1)
            for h in run.hops:
                if h.exchange.ended is not None:
                    self.engine_pos.pop(h.flow_id, None)
            out.append((run, pos, None))
        return out

    def close(self) -> list[Out]:
        """The end of the dump: every run still open, in flight ones included."""
        left, out = self.stop()
        return out + join(left, [], self.lineage)

    def stop(self) -> tuple[list[Item], list[Out]]:
        """(the records of every run not handed out, the engine's remaining runs)."""
        left = [it for group in self.groups.values() for it in group] + self.early
        left += self.doubtful.values()  # regrouped with every placement read since
        self.groups, self.items, self.early, self.due, self.doubtful = {}, {}, [], [], {}
        self.late = {}
        return left, self._from_engine(self.engine.close())


def join(items: list[Item], orphans: list[tuple[int, str, dict]], lineage: Lineage) -> list[Out]:
    """Runs from records set aside by one or several readers, with the placement records none of
    them could apply (applied in file order, so the last one wins)."""
    by_fid = {it.exchange.flow_id: it for it in items}
    for _, fid, run in sorted(orphans, key=lambda o: o[0]):
        if fid in by_fid:
            by_fid[fid].fields = run
    groups: dict[str, list[Item]] = {}
    for it in sorted(by_fid.values(), key=lambda i: i.pos):
        groups.setdefault(it.fields["id"], []).append(it)
    fr = FastRuns(lineage)
    out: list[Out] = []
    for rid, group in groups.items():
        kick = next((it.pos for it in group if it.fields["parent"] is None), group[-1].pos)
        out.extend(fr.emit(rid, group, kick))
    return sorted(out, key=lambda o: o[1])
