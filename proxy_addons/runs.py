"""PURE: exchanges → runs. One event-driven engine (``RunTracker``) serves the live gateway
(``start`` when a request arrives, ``end`` when its answer is complete) and the offline report
(``reconstruct`` replays recorded exchanges as start/end events in time order).

How a request finds its parent, strongest evidence first:
  header          same W3C trace-id (``traceparent``) or ``x-request-id`` as an open hop that
                  may send it; the innermost such hop without a child.
  lineage         its payload follows the payload of exactly one open, childless hop of the
                  sending service (``Lineage.key_before`` == ``key_after``: one dict look-up).
  lineage+answer  several open hops with the same state could have sent it: one is picked now,
                  and settled when the parents answer (a parent's answer must be its child's
                  answer passed up, ``Lineage.answer_links``); subtrees move between the twins.
  timing          only nesting/timing decided: a weak lineage, twins whose answers cannot tell
                  them apart (e.g. gateway 502s), guesses never settled (in flight at the end),
                  or the first hop of a ``partial`` run split off because no twin claimed it.
  kick            no possible parent: a new run; ``partial`` when its payload says the run
                  began earlier (a dump that starts mid-run).

A run is reported when its kick ends (all its nested hops have, except after a partner timeout:
late hops join the reported ``Run`` in place). Placements told at ``start`` are provisional for
twins; the finished ``Run`` is authoritative. Cost: one dict look-up per start/end; twins cost
O(twins) each.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator

import msgspec

from proxy_addons.lineage import Lineage, PingPongLineage
from proxy_addons.runs_index import Index, Node, attach, detach, walk
from proxy_addons.runs_model import Assignment, Exchange, Hop, Run, run_id_of
from proxy_addons.runs_twins import Twins

__all__ = ["Assignment", "Exchange", "Hop", "Run", "RunTracker", "iter_runs", "reconstruct", "run_id_of"]


class RunTracker(Twins):
    """Feed ``start``/``end`` in time order; ``end`` returns the runs its exchange finished."""

    def __init__(self, lineage: Lineage | None = None) -> None:
        self.lineage = lineage or PingPongLineage()
        self.index = Index(self.lineage.single_forward)
        self.nodes: dict[str, Node] = {}
        self.open_runs: dict[str, Node] = {}  # kick flow id → kick, until the kick ends
        self.by_header: dict[tuple[str, str], dict[str, Node]] = {}
        self.services: set[str] = set()

    # --- start -------------------------------------------------------------------------------
    def start(self, ex: Exchange) -> Assignment:
        """Place a request that just arrived (only its request side is read)."""
        if ex.flow_id in self.nodes:
            return self.assignment(ex.flow_id)
        lin = self.lineage
        node = Node(ex, lin.key_after(ex.service, ex.request), lin.iteration(ex.service, ex.request))
        self.nodes[ex.flow_id] = node
        if ex.service:
            self.services.add(ex.service)
        node.hkeys = self._header_keys(ex)
        parent = self._by_headers(node)
        if parent is not None:
            node.evidence = "header"
            attach(self.index, parent, node)
        else:
            self._by_lineage(node)
        if node.kick.run is not None:  # a late hop under a timed-out one: its run is out
            node.out, node.out_run = node.as_hop(), node.kick.run
            node.out_run.hops.append(node.out)
        self.index.refresh(node)
        for hkey in node.hkeys:
            self.by_header.setdefault(hkey, {})[ex.flow_id] = node
        return self.assignment(ex.flow_id)

    def _make_kick(self, node: Node) -> None:
        node.evidence, node.ambiguous = "kick", False
        hop = self.lineage.expected_hop(node.ex.service, node.ex.request)
        node.partial = hop is not None and hop > 1
        self.open_runs[node.fid] = node

    @staticmethod
    def _header_keys(ex: Exchange) -> list[tuple[str, str]]:
        keys = []
        if tid := ex.trace_id:  # each a header look-up (and a regex): once
            keys.append(("traceparent", tid))
        if rid := ex.request_id:
            keys.append(("x-request-id", rid))
        return keys

    def _may_send(self, sender: str | None, target: str | None) -> bool:
        senders = self.lineage.senders(target)
        return senders is None or sender in senders

    def _free(self, n: Node) -> bool:
        c = n.child
        return n.open and (c is None or (not self.lineage.single_forward and not c.open))

    def _by_headers(self, node: Node) -> Node | None:
        """Trace headers are exact: the innermost open hop of that trace that may send it. A
        twin's child guessed there by lineage (identical kicks, one of them traced) yields its
        place: it is placed again among the other twins, or parked."""
        ex = node.ex
        for hkey in node.hkeys:
            for n in reversed(self.by_header.get(hkey, {}).values()):
                if not self._may_send(n.ex.service, ex.service):
                    continue
                if self._free(n):
                    return n
                c = n.child
                if n.open and c is not None and c.ambiguous and c.group is not None:
                    detach(self.index, c)
                    if not self._place(c, {n.fid}):
                        self._park(c)
                    return n
        return None

    def _by_lineage(self, node: Node) -> None:
        """Attach ``node`` to the hop its payload follows; among twins, a provisional guess."""
        lin, ex = self.lineage, node.ex
        senders = lin.senders(ex.service)
        group, rivals = None, 0
        for s in sorted(self.services) if senders is None else senders:
            key = lin.key_before(s, ex.request)
            b = self.index.get((s, key)) if key is not None else None
            if b is not None and b.open_members:  # even busy twins: one of their guesses may be wrong
                rivals += len(b.free) + len(b.soft)
                if group is None or (b.free and not self.index.buckets[group].free):
                    group = (s, key)
        if group is None:
            self._make_kick(node)
            return
        node.group, node.ambiguous = group, rivals > 1 or not self.index.buckets[group].free
        node.evidence = "lineage+answer" if node.ambiguous and lin.evidence == "lineage" else lin.evidence
        if not node.ambiguous:
            attach(self.index, next(iter(self.index.buckets[group].free.values())), node)
            return
        self.index.set_pending(node, True)
        if not self._place(node, set()):
            self._park(node)

    # --- end ---------------------------------------------------------------------------------
    def end(self, ex: Exchange) -> list[Run]:
        """Record the answer (or error) of an exchange; returns the runs that just finished."""
        node = self.nodes.get(ex.flow_id)
        if node is None:  # the start was missed (e.g. the addon loaded mid-flight)
            self.start(msgspec.structs.replace(ex, ended=None, status=None, response=None))
            node = self.nodes[ex.flow_id]
        node.ex = ex
        if node.out is not None:  # ended after its run was reported (a timed-out hop)
            node.out.exchange = ex
            self.nodes.pop(ex.flow_id, None)
        self.index.refresh(node)
        for hkey in node.hkeys:
            self.by_header.get(hkey, {}).pop(ex.flow_id, None)
            if not self.by_header.get(hkey, True):
                del self.by_header[hkey]
        if node.parent is not None:
            self.index.refresh(node.parent)
        finished = self._settle(node)
        if node.parent is None and node.ambiguous:  # parked: is any twin left to claim it?
            finished.extend(self._unclaimed(node.group))
        if node.parent is None and node.fid in self.open_runs:
            finished.append(self._finish(node, in_flight=False))
        return finished

    # --- runs --------------------------------------------------------------------------------
    def _finish(self, kick: Node, in_flight: bool) -> Run:
        self.open_runs.pop(kick.fid, None)
        hops, nodes = [], walk(kick)
        for n in nodes:
            hops.append(n.as_hop())
            if n.out_run is not None:  # listed in a run reported before, and moved here since
                n.out_run.hops[:] = [h for h in n.out_run.hops if h is not n.out]
                n.out_run = None
            if not in_flight:
                n.out = hops[-1]
                if not n.open:
                    self.nodes.pop(n.fid, None)
        run = Run(run_id_of(kick.fid), hops, partial=kick.partial, in_flight=in_flight)
        if not in_flight:
            kick.run = run
            for n in nodes:  # a hop still open may move to a twin's run: it leaves this one then
                n.out_run = run
            if not any(n.open or n.ambiguous for n in nodes):
                _release(nodes)
        return run

    def assignment(self, flow_id: str) -> Assignment:
        """The current placement of a known exchange (provisional until its run finishes)."""
        n = self.nodes[flow_id]
        return Assignment(
            flow_id=flow_id, run_id=run_id_of(n.kick.fid), hop=n.hop, sender=n.sender,
            to=n.ex.service, evidence=n.evidence, iteration=n.iteration,
            parent=n.parent.fid if n.parent else None, partial=n.kick.partial,
        )

    def flush(self) -> list[Run]:
        """The runs whose kick has not ended (in flight), and forget everything."""
        runs: list[Run] = []
        pending = [c for b in self.index.buckets.values() for c in b.pending.values()]
        for c in pending:  # guesses no answer settled
            if c.parent is None:
                runs.extend(self._orphan(c))
            else:
                self._unsure(c)
        kicks = sorted(self.open_runs.values(), key=lambda k: k.ex.started)
        runs.extend(self._finish(k, in_flight=True) for k in kicks)
        self.__init__(self.lineage)
        return runs


def _release(nodes: list[Node]) -> None:
    """Cut the links between the nodes of a run nothing can join or leave any more (every hop
    answered and settled: the engine no longer reaches them). Parent, children and kick links
    are cycles; cut, the nodes, their exchanges and payloads are freed as soon as the ``Run`` is
    dropped, instead of waiting in the garbage collector's older generations for a full
    collection (the gateway's GC cost: docs/performance-log.md, "Eighth stop")."""
    for n in nodes:
        n.children.clear()
        n.parent = n.kick = n.run = n.out_run = None


SKEW = 0.1  # s: how far the gateway's write order may stray from its end timestamps


def _start_view(ex: Exchange) -> Exchange:
    """What the engine may know of an exchange when its request arrives."""
    return Exchange(ex.flow_id, ex.started, ex.service, ex.method, ex.path, ex.request, ex.headers,
                    ex.client)


def exchanges_of(records: Iterable[dict]) -> Iterator[Exchange]:
    """The flow records as exchanges; other record types, broken and repeated records skipped
    (repeats are recognised by a 64-bit hash of the flow id, not the id: 1M ids stay small)."""
    seen: set[int] = set()
    for rec in records:
        if not isinstance(rec, dict) or rec.get("type", "flow") != "flow":
            continue
        try:
            ex = Exchange.from_record(rec)
        except (KeyError, TypeError, ValueError):
            continue
        h = hash(ex.flow_id)
        if h not in seen:
            seen.add(h)
            yield ex


def iter_runs(records: Iterable[dict], lineage: Lineage | None = None,
              horizon: float | None = None) -> Iterator[Run]:
    """Offline, streaming: recorded exchanges → runs, each yielded as it finishes (in-flight
    ones last). Records come in end order (flows.jsonl is), so each one's start and end become
    events in a bounded reorder buffer; an event is applied once the newest end read is more than
    ``horizon`` seconds past it (default: 1.5 × the longest exchange read so far + ``SKEW``).
    Events are applied in the same total order as a full sort (at equal times ends first; of two
    starts the longer first; of two ends the later-started first) provided no exchange read later
    started more than the horizon before the newest end read — true of our gateway's dumps unless
    a hop lasts longer than 1.5 × every hop before it. Memory: the buffer and the open runs."""
    tracker = RunTracker(lineage)
    heap: list = []
    newest_end, longest = -math.inf, 0.0
    for i, ex in enumerate(exchanges_of(records)):
        if ex.ended is None:
            heapq.heappush(heap, ((ex.started, 1, -math.inf, i), True, ex))
            continue
        dur = ex.ended - ex.started
        heapq.heappush(heap, ((ex.started, 1, -dur, i), True, ex))
        heapq.heappush(heap, ((ex.ended, 0, -ex.started, i), False, ex))
        newest_end, longest = max(newest_end, ex.ended), max(longest, dur)
        low = newest_end - (horizon if horizon is not None else 1.5 * longest + SKEW)
        while heap[0][0][0] < low:
            yield from _apply(tracker, heapq.heappop(heap))
    while heap:
        yield from _apply(tracker, heapq.heappop(heap))
    yield from tracker.flush()


def _apply(tracker: RunTracker, event) -> list[Run]:
    _, is_start, ex = event
    if is_start:
        tracker.start(_start_view(ex))
        return []
    return tracker.end(ex)


def reconstruct(records: Iterable[dict], lineage: Lineage | None = None) -> list[Run]:
    """Offline: recorded exchanges → runs, in kick start order; unfinished runs are in_flight.
    (``iter_runs`` streams them instead, in the order they finish.)"""
    runs = list(iter_runs(records, lineage))
    runs.sort(key=lambda r: (r.kick.exchange.started, r.kick.flow_id))
    return runs
