"""PURE: a run from its records' ``run`` fields (docs/dump-format.md), checked: the fields must
describe one tree under one kick, each hop numbered and sent as its parent says; ordered
depth-first, children in start order, as ``runs_index.walk`` does; ``partial`` and ``in_flight``
as the engine gives them. What does not hold together is rebuilt by the engine from the same
records (``rebuild``). Used by runs_fast.py.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy_addons.lineage import Lineage
from proxy_addons.records_typed import headers_of, response_value
from proxy_addons.runs_model import REPLAY_HEADER, Exchange, Hop, Run, run_id_of
from proxy_addons.runs_replay import Replay

_REPLAY = REPLAY_HEADER.encode()
KICK_EVIDENCE = ("kick", "timing")  # a finished run's first hop: a kick, or an orphan (partial)


class Item(Hop):
    """One flow record: its exchange, its (final so far) run fields, where it is in the file,
    and its request headers when still unread (JSON bytes, ``records_typed``). It becomes the
    run's ``Hop`` itself when the run is assembled (one object less per hop)."""

    __slots__ = ("fields", "pos", "raw")
    __eq__ = object.__eq__  # one record is one item (Hop compares field by field)
    __hash__ = object.__hash__

    def __init__(self, ex: Exchange, fields: dict, pos: int, raw=None) -> None:
        self.flow_id = ex.flow_id
        self.exchange = ex
        self.fields = fields
        self.pos = pos
        self.raw = raw

    def read_headers(self, replay_only: bool = False) -> Exchange:
        """Read its request headers now; ``replay_only``: only when there may be a
        ``x-hoptrace-replay-of`` among them (all a diagnosis reads of a kick's headers)."""
        raw = self.raw
        if raw is not None:
            if replay_only and _REPLAY not in bytes(raw).lower():
                return self.exchange  # nothing the report shows: not worth building
            self.exchange.headers, self.raw = headers_of(raw), None
        return self.exchange


def valid_fields(run) -> bool:
    """Worth grouping on (the other keys are checked when the run is assembled)."""
    return type(run) is dict and type(run.get("id")) is str and "parent" in run


class Inconsistent(ValueError):
    """A run's fields do not hold together; the message says why."""


def assemble(run_id: str, items: list[Item], lineage: Lineage) -> Run:
    """The ``Run`` the fields describe, hops depth-first (children in start order)."""
    try:
        return _assemble(run_id, items, lineage)
    except (KeyError, TypeError) as exc:
        raise Inconsistent(f"a run field is missing or of the wrong type: {exc}") from None


def _assemble(run_id: str, items: list[Item], lineage: Lineage) -> Run:
    if len(items) == 1:  # a run of one hop (a kick refused at once): a third of all runs
        kick = items[0]
        if kick.fields["parent"] is not None:
            raise Inconsistent("no kick")
        return _run(run_id, kick, _kick(run_id, kick), [kick], lineage)
    try:
        chain = {it.fields["parent"]: it for it in items}  # parent → its one child
    except (KeyError, TypeError):
        chain = None  # the general way says which
    if chain is not None and len(chain) == len(items) and (hops := _chain(chain)) is not None:
        return _run(run_id, hops[0], _kick(run_id, hops[0]), hops, lineage)
    children: dict[str, list[Item]] = {}
    kids_of = children.get
    kick = None
    for it in items:
        parent = it.fields["parent"]
        if parent is None:
            if kick is not None:
                raise Inconsistent("two kicks")
            kick = it
        elif (kids := kids_of(parent)) is None:
            children[parent] = [it]
        else:
            kids.append(it)
    if kick is None:
        raise Inconsistent("no kick")
    kex = _kick(run_id, kick)
    return _run(run_id, kick, kex, _walk(kick, children, len(items)), lineage)


def _chain(chain: dict) -> list[Item] | None:
    """The hops of a run where each hop has at most one child (``_walk`` without the tree), or
    None when they do not hold together (the general way then says why)."""
    kick = chain.get(None)
    if kick is None:
        return None
    hops: list[Hop] = [kick]
    hop, top, svc = 1, kick, kick.exchange.service
    while (c := chain.get(top.flow_id)) is not None:
        f, sender, hop = c.fields, svc or "?", hop + 1
        svc = c.exchange.service
        if f["hop"] != hop or f["from"] != sender or f["to"] != svc:
            return None
        c.hop, c.sender, c.parent, c.to, c.evidence, c.iteration = (
            hop, sender, top.flow_id, svc, f["evidence"], f["iteration"])
        hops.append(c)
        top = c
    return hops if len(hops) == len(chain) else None


def _kick(run_id: str, kick: Item) -> Exchange:
    """Check the kick's fields; read its headers if they may say it is a replay."""
    kf, kex = kick.fields, kick.read_headers(replay_only=True)
    if kf["evidence"] not in KICK_EVIDENCE or kf["hop"] != 1 or kf["from"] != "client" or (
            run_id_of(kex.flow_id) != run_id):
        raise Inconsistent("its kick is not a kick")
    kick.hop, kick.sender, kick.to, kick.parent = 1, "client", kex.service, None
    kick.evidence, kick.iteration = kf["evidence"], kf["iteration"]
    return kex


def _walk(kick: Item, children: dict[str, list[Item]], n: int) -> list[Hop]:
    """The tree from the kick, depth-first, children in start order (``runs_index.walk``),
    each hop checked against its parent as it is reached."""
    hops: list[Hop] = [kick]
    stack = [kick]
    while stack:
        top = stack.pop()
        if top is not kick:
            f, ex = top.fields, top.exchange
            if f["hop"] != top.hop or f["from"] != top.sender or f["to"] != ex.service:
                raise Inconsistent(f"hop {f['hop']} does not follow its parent")
            top.to, top.evidence, top.iteration = ex.service, f["evidence"], f["iteration"]
            hops.append(top)
        kids = children.get(top.flow_id)
        if kids:
            if len(kids) > 1:
                kids = sorted(kids, key=_started, reverse=True)
            hop, sender = top.hop + 1, top.exchange.service or "?"
            for c in kids:
                c.hop, c.sender, c.parent = hop, sender, top.flow_id
            stack.extend(kids)
    if len(hops) != n:
        raise Inconsistent("a parent outside the run")
    return hops


def _run(run_id: str, kick: Item, kex: Exchange, hops: list[Hop], lineage: Lineage) -> Run:
    """The run of these checked hops, the kick first (``kex``: its exchange)."""
    kf = kick.fields
    expected = lineage.expected_hop(kex.service, kex.request)
    partial = kf["evidence"] == "timing" or (expected is not None and expected > 1)
    return Run(run_id, hops, partial, kex.ended is None)


def _started(it: Item) -> float:
    return it.exchange.started


def rebuild(items: Iterable[Item], lineage: Lineage) -> list[Run]:
    """The engine over just these records (in file order): what their fields could not say."""
    replay = Replay(lineage)
    runs: list[Run] = []
    for it in sorted(items, key=lambda i: i.pos):
        runs.extend(replay.feed(response_value(it.read_headers())))
    return runs + replay.close()
