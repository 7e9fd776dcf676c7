"""PURE: the offline engine fed one exchange at a time (push), for callers that cannot hand
``runs.iter_runs`` an iterator: the report's fast path (records the gateway could not place) and
the synthetic dumps (the placement a live gateway would have written).

``EventOrder`` turns exchanges read in end order into start/end events in the same total order as
``iter_runs`` (at equal times ends first; of two starts the longer first; of two ends the
later-started first), releasing an event once the newest end read is more than the horizon past
it (default 1.5 × the longest exchange read + ``runs.SKEW``). ``Replay`` applies them to a
``RunTracker``.
"""

from __future__ import annotations

import heapq
import math

from proxy_addons.lineage import Lineage
from proxy_addons.runs import SKEW, RunTracker
from proxy_addons.runs_model import Exchange, Run

Event = tuple[bool, Exchange]  # (is_start, exchange)


def start_view(ex: Exchange) -> Exchange:
    """What the engine may know of an exchange when its request arrives."""
    return Exchange(ex.flow_id, ex.started, ex.service, ex.method, ex.path, ex.request, ex.headers,
                    ex.client)


class EventOrder:
    """A bounded reorder buffer: ``push`` an exchange (in end order), get the events now due."""

    def __init__(self, horizon: float | None = None) -> None:
        self.heap: list = []
        self.horizon = horizon
        self.newest_end, self.longest, self.i = -math.inf, 0.0, 0

    def push(self, ex: Exchange) -> list[Event]:
        heap, self.i = self.heap, self.i + 1
        if ex.ended is None:
            heapq.heappush(heap, ((ex.started, 1, -math.inf, self.i), True, ex))
            return []
        dur = ex.ended - ex.started
        heapq.heappush(heap, ((ex.started, 1, -dur, self.i), True, ex))
        heapq.heappush(heap, ((ex.ended, 0, -ex.started, self.i), False, ex))
        self.newest_end, self.longest = max(self.newest_end, ex.ended), max(self.longest, dur)
        low = self.newest_end - (self.horizon if self.horizon is not None else 1.5 * self.longest + SKEW)
        due = []
        while heap[0][0][0] < low:
            _, is_start, e = heapq.heappop(heap)
            due.append((is_start, e))
        return due

    def drain(self) -> list[Event]:
        """Every event still held, in order (the end of the dump)."""
        due = []
        while self.heap:
            _, is_start, e = heapq.heappop(self.heap)
            due.append((is_start, e))
        return due


class Replay:
    """``feed`` exchanges in end order, get the runs they finished; ``close`` gives the rest
    (in flight last), as ``iter_runs`` would."""

    def __init__(self, lineage: Lineage | None = None, horizon: float | None = None) -> None:
        self.tracker = RunTracker(lineage)
        self.order = EventOrder(horizon)

    def apply(self, events: list[Event]) -> list[Run]:
        runs: list[Run] = []
        for is_start, ex in events:
            if is_start:
                self.tracker.start(start_view(ex))
            else:
                runs.extend(self.tracker.end(ex))
        return runs

    def feed(self, ex: Exchange) -> list[Run]:
        return self.apply(self.order.push(ex))

    def close(self) -> list[Run]:
        return self.apply(self.order.drain()) + self.tracker.flush()
