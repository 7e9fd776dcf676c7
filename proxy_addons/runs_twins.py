"""PURE: placing a request among *twins* (open hops with the same state, any of which could have
sent it) and settling the guess when the twins answer.

A guess is a matching between twins and their children: each child goes to a twin that was open
when it started, at most one child per twin (``place``: an augmenting path, so a new child can
push an earlier guess to another free twin). When a twin answers, the child whose answer it
passed up (``Lineage.answer_links``) is its own (``settle``); the displaced one is placed again,
or *parked* (no parent for now) until a twin claims it or none is left (its own run). When the
answers cannot tell (a format the lineage does not read), timing still can: a twin that answered
while its guess was still open takes instead a guess another twin holds that had answered in
time, and that twin takes the open one, rather than the open one being parked.
"""

from __future__ import annotations

from proxy_addons.lineage import Lineage
from proxy_addons.runs_index import Index, Node, attach, detach, renumber
from proxy_addons.runs_model import Run


class Twins:
    """Mixin of ``RunTracker``: needs ``lineage``, ``index``, ``_make_kick`` and ``_finish``."""

    lineage: Lineage
    index: Index

    def _make_kick(self, node: Node) -> None: ...  # pragma: no cover - provided by RunTracker

    def _finish(self, kick: Node, in_flight: bool) -> Run: ...  # pragma: no cover

    def _place(self, c: Node, banned: set[str], sink: Node | None = None) -> bool:
        """Give ``c`` a twin of its group: a free one, else one whose own guess can move on.
        ``sink``: a twin that has just answered without a child of its own; a guess that had
        already answered within its span may end the chain there, so that a child that is still
        open need not be parked (it would become a run of its own) while a twin still open holds
        a guess that had answered in time to be the sink's."""
        b = self.index.get(c.group)
        if b is None:
            return False
        for q in list(b.free.values()):
            if q.fid not in banned and q.ex.started <= c.ex.started:
                attach(self.index, q, c)
                return True
        if sink is not None and self._fits_answered(sink, c):
            attach(self.index, sink, c)
            self._confirm(c, self._links(sink, c))
            return True
        for q in list(b.soft.values()):
            if q.fid in banned or q.ex.started > c.ex.started:
                continue
            banned.add(q.fid)
            d = q.child
            detach(self.index, d)
            attach(self.index, q, c)
            if self._place(d, banned, sink):
                return True
            detach(self.index, c)
            attach(self.index, q, d)
        return False

    def _park(self, c: Node) -> None:
        """No twin can take ``c`` now: it waits, ambiguous, for one to claim it by its answer."""
        renumber(c)

    def _settle(self, p: Node) -> list[Run]:
        """``p`` answered: settle the guesses (``_settle_guess``); then the parked children of its
        group that no open twin can claim any more become runs, whichever way ``p`` settled (its
        own child confirmed included: it may have been the last twin a parked child waited for)."""
        self._settle_guess(p)
        return self._unclaimed(self.index.bucket_of(p))

    def _settle_guess(self, p: Node) -> None:
        """Of ``p``'s guessed child and its twins' unsettled children, keep the one whose answer
        ``p`` passed up; a displaced child is placed again or parked."""
        idx, cur = self.index, p.child
        if cur is not None and cur.group is None:  # placed by a trace header: exact
            return
        link = self._links(p, cur) if cur is not None else False
        if cur is not None and (link is True or (link is None and not cur.ambiguous)):
            if cur.ambiguous:
                self._confirm(cur, link)
            return
        if cur is not None and not cur.ambiguous:  # a sure guess the answer refutes
            cur.ambiguous = True
            idx.set_pending(cur, True)
        steal = self._stealable(p, cur, weak=False)
        if steal is None and link is None:  # answers cannot tell: keep the guess, unless a
            needy = self._needy(p)  # parked child only ``p`` can still take and ``cur`` can move
            if needy is not None:
                detach(idx, cur)
                if self._place(cur, {p.fid}):
                    attach(idx, p, needy)
                    self._confirm(needy, None)
                    return
                attach(idx, p, cur)
            self._confirm(cur, None)
            return
        if steal is None and cur is None:
            steal = self._stealable(p, None, weak=True)
        if cur is not None and (steal is not None or link is False):
            detach(idx, cur)
        if steal is not None:
            detach(idx, steal)
            attach(idx, p, steal)
            self._confirm(steal, self._links(p, steal))
        if cur is not None and cur.parent is None and not self._place(cur, {p.fid}, sink=p):
            self._park(cur)

    def _fits_answered(self, p: Node, c: Node) -> bool:
        """``c`` could be the child of ``p``, which has answered and holds none: ``c`` answered
        within ``p``'s span and ``p``'s answer does not refute it."""
        return (p.child is None and not p.open and not c.open and c.ex.started >= p.ex.started
                and c.ex.ended <= p.ex.ended and self._links(p, c) is not False)

    def _unclaimed(self, group: tuple | None) -> list[Run]:
        """Parked children of ``group`` that no open twin can claim any more become runs."""
        b = self.index.get(group)
        if b is None or not b.pending:  # nearly always: one look-up per answer
            return []
        parked = [c for c in b.pending.values() if c.parent is None]
        if not parked:
            return []
        twins = [q.ex.started for q in (*b.free.values(), *b.soft.values(), *b.hard.values())]
        finished: list[Run] = []
        for c in parked:
            if not any(t <= c.ex.started for t in twins):
                finished.extend(self._orphan(c))
        return finished

    def _stealable(self, p: Node, cur: Node | None, weak: bool) -> Node | None:
        """A twin's unsettled (or a parked) child whose answer ``p`` passed up: ``p``'s own.
        ``weak``: for a childless ``p``, a parked child the answers cannot rule out."""
        bucket = self.index.get(self.index.bucket_of(p))
        for c in list(bucket.pending.values()) if bucket else ():
            if c is cur or c.ex.started < p.ex.started or (not c.open and c.ex.ended > p.ex.ended):
                continue
            if c.parent is not None and (weak or not c.parent.open):
                continue
            link = self._links(p, c)  # an open child links only to a parent that gave up on it
            if link or (weak and link is None and not c.open):
                return c
        return None

    def _needy(self, p: Node) -> Node | None:
        """A parked child that fits in ``p`` and that no open twin could take instead."""
        b = self.index.get(self.index.bucket_of(p))
        if b is None:
            return None
        starts = [q.ex.started for q in (*b.free.values(), *b.soft.values(), *b.hard.values())]
        for c in b.pending.values():
            if c.parent is not None or c.ex.started < p.ex.started or any(t <= c.ex.started for t in starts):
                continue
            if (c.open or c.ex.ended <= p.ex.ended) and self._links(p, c) is not False:
                return c
        return None

    def _links(self, p: Node, c: Node) -> bool | None:
        """The answer rule on recorded bodies; None when either body is cut or undecodable."""
        cut_child = not c.open and c.ex.response is not None and not c.ex.response_exact
        if not p.ex.response_exact or cut_child:
            return None
        status = None if c.open else c.ex.status
        return self.lineage.answer_links(p.ex.response, status, c.ex.response, c.ex.request)

    def _confirm(self, c: Node, link: bool | None) -> None:
        c.ambiguous = False
        self.index.set_pending(c, False)
        if c.parent is not None:
            self.index.refresh(c.parent)
        if self.lineage.evidence == "lineage":
            c.evidence = "lineage+answer" if link else "timing"

    def _unsure(self, c: Node) -> None:
        """Never settled (its parent had not answered when the dump ended): only timing placed it."""
        self._confirm(c, None)
        c.evidence = "timing"

    def _orphan(self, c: Node) -> list[Run]:
        """A parked child no twin claimed: the first hop of its own partial run, evidence
        "timing" (twins existed, but none was free when it came and none claimed it)."""
        self._unsure(c)
        self._make_kick(c)
        c.evidence, c.partial = "timing", True
        return [] if c.open else [self._finish(c, in_flight=False)]
