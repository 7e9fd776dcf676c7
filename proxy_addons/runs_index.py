"""PURE: the engine's bookkeeping: one node per exchange, and buckets of open hops indexed by
the successor key their lineage offers, so finding a request's parent is a dict look-up."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from proxy_addons.runs_model import Exchange, Hop, Run

FREE, SOFT, HARD = "free", "soft", "hard"


class Node:
    """One exchange in the engine. ``ambiguous``: placed among several possible parents and not
    yet settled by its parent's answer; ``group`` is the bucket it was looked up in."""

    __slots__ = (
        "ex", "key", "parent", "children", "kick", "hop", "evidence", "iteration",
        "ambiguous", "group", "slot", "partial", "out", "out_run", "run", "hkeys",
    )

    def __init__(self, ex: Exchange, key: Hashable | None, iteration: int | None) -> None:
        self.ex = ex
        self.key = key
        self.parent: Node | None = None
        self.children: list[Node] = []
        self.kick: Node = self
        self.hop = 1
        self.evidence = "kick"
        self.iteration = iteration
        self.ambiguous = False
        self.group: tuple | None = None
        self.slot: str | None = None  # FREE / SOFT / None: how the node counts in its bucket
        self.partial = False
        self.out: Hop | None = None  # the Hop handed out in a finished Run, updated if it ends late
        self.out_run: Run | None = None  # the Run that lists ``out``
        self.run: Run | None = None  # on a kick: its Run once reported (late hops join it)
        self.hkeys: list[tuple[str, str]] = []  # its trace-header keys, read once at start

    @property
    def fid(self) -> str:
        return self.ex.flow_id

    @property
    def open(self) -> bool:
        return self.ex.ended is None

    @property
    def child(self) -> Node | None:
        return self.children[-1] if self.children else None

    @property
    def sender(self) -> str:
        return "client" if self.parent is None else (self.parent.ex.service or "?")

    def as_hop(self) -> Hop:
        return Hop(
            hop=self.hop, flow_id=self.fid, sender=self.sender, to=self.ex.service,
            parent=self.parent.fid if self.parent else None, evidence=self.evidence,
            iteration=self.iteration, exchange=self.ex,
        )


@dataclass(slots=True)
class Bucket:
    """Open hops that offer one successor key. ``free``: no child yet (may be a parent now);
    ``soft``: those holding an unsettled ambiguous child (may turn out to be free); ``hard``:
    those holding a child thought certain; ``pending``: the unsettled ambiguous children looked up
    here, including *parked* ones (no parent for now: their provisional one did not want them)."""

    free: dict[str, Node] = field(default_factory=dict)
    soft: dict[str, Node] = field(default_factory=dict)
    hard: dict[str, Node] = field(default_factory=dict)
    pending: dict[str, Node] = field(default_factory=dict)

    @property
    def open_members(self) -> int:
        return len(self.free) + len(self.soft) + len(self.hard)

    def empty(self) -> bool:
        return not self.open_members and not self.pending


class Index:
    """Buckets by (service, key); keeps each node's FREE/SOFT membership in step with its state."""

    __slots__ = ("buckets", "single_forward")

    def __init__(self, single_forward: bool) -> None:
        self.buckets: dict[tuple, Bucket] = {}
        self.single_forward = single_forward

    def bucket_of(self, node: Node) -> tuple | None:
        return None if node.key is None else (node.ex.service, node.key)

    def get(self, group: tuple | None) -> Bucket | None:
        return None if group is None else self.buckets.get(group)

    def refresh(self, node: Node) -> None:
        """Put ``node`` in the right slot of its bucket after any change to it or its children."""
        group = self.bucket_of(node)
        if group is None:
            return
        want = None
        if node.open:
            c = node.child
            if c is None or (not self.single_forward and not c.open):
                want = FREE
            else:
                want = SOFT if c.ambiguous else HARD
        if node.slot == want:
            return
        b = self.buckets.setdefault(group, Bucket())
        if node.slot == FREE:
            del b.free[node.fid]
        elif node.slot == SOFT:
            del b.soft[node.fid]
        elif node.slot == HARD:
            del b.hard[node.fid]
        if want == FREE:
            b.free[node.fid] = node
        elif want == SOFT:
            b.soft[node.fid] = node
        elif want == HARD:
            b.hard[node.fid] = node
        node.slot = want
        self.tidy(group)

    def tidy(self, group: tuple | None) -> None:
        b = self.get(group)
        if b is not None and b.empty():
            del self.buckets[group]

    def set_pending(self, node: Node, on: bool) -> None:
        if on:
            self.buckets.setdefault(node.group, Bucket()).pending[node.fid] = node
        else:
            b = self.get(node.group)
            if b is not None:
                b.pending.pop(node.fid, None)
                self.tidy(node.group)


def attach(index: Index, parent: Node, child: Node) -> None:
    """Make ``child`` (with its subtree) the newest child of ``parent``; renumber the subtree."""
    child.parent = parent
    parent.children.append(child)
    renumber(child)
    index.refresh(parent)


def detach(index: Index, child: Node) -> Node | None:
    """Cut ``child`` from its parent; returns the old parent."""
    parent = child.parent
    if parent is None:
        return None
    parent.children.remove(child)
    child.parent = None
    index.refresh(parent)
    return parent


def renumber(top: Node) -> None:
    """Hop numbers and kick of ``top``'s subtree after it moved (O(subtree), only on a swap)."""
    stack = [top]
    while stack:
        n = stack.pop()
        if n.parent is not None:
            n.hop, n.kick = n.parent.hop + 1, n.parent.kick
        else:
            n.hop, n.kick = 1, n
        stack.extend(n.children)


def walk(kick: Node) -> list[Node]:
    """The run's nodes depth-first, children in start order: a chain comes out in hop order."""
    out: list[Node] = []
    stack = [kick]
    while stack:
        n = stack.pop()
        out.append(n)
        stack.extend(sorted(n.children, key=lambda c: c.ex.started, reverse=True))
    return out
