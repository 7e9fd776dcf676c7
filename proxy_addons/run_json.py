"""PURE: a diagnosed run as JSON, the runs.jsonl and report contract (docs/report-format.md),
defined once as msgspec structs. ``run_bytes`` encodes a run straight from them, without making a
dict per hop: the fast report writes a million hops this way, about twice as fast as dicts +
orjson. ``run_json`` gives the same document as plain dicts and lists, for callers that look
inside it or embed it in a larger document.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from proxy_addons.diagnosis import Diagnosis


class HopJson(msgspec.Struct, rename={"sender": "from"}):
    """One hop of a run; ``from`` is "client" for the kick; ``change``: what its service did."""

    hop: int
    flow_id: str
    sender: str
    to: str | None
    method: str
    path: str
    status: int | None
    request: Any
    response: Any
    started: float
    duration_ms: float | None
    evidence: str
    iteration: int | None
    parent: str | None
    origin: str | None
    error: Any
    change: Any
    injected: bool
    fault: Any


class RunJson(msgspec.Struct, rename={"brk": "break"}):
    """One run: how it ended, its kick's answer and timing, every hop, the break."""

    run: str
    outcome: str
    partial: bool
    length: int
    status: int | None
    started: float
    duration_ms: float | None
    replay_of: Any
    hops: list[HopJson]
    brk: Any


_encoder = msgspec.json.Encoder()
_encode, _encode_into = _encoder.encode, _encoder.encode_into


def run_struct(d: Diagnosis) -> RunJson:
    run = d.run
    kick = run.kick.exchange
    hops = []
    for h, change in zip(run.hops, d.changes, strict=True):
        ex = h.exchange
        ended, started, fault = ex.ended, ex.started, ex.injected
        hops.append(HopJson(
            h.hop, h.flow_id, h.sender, h.to, ex.method, ex.path, ex.status, ex.request, ex.response,
            started, None if ended is None else (ended - started) * 1000.0, h.evidence, h.iteration,
            h.parent, ex.origin, ex.error, change, fault is not None, fault))
    return RunJson(run.run_id, d.outcome, run.partial, len(run.hops), kick.status, kick.started,
                   kick.duration_ms, kick.replay_of, hops, d.brk)


def run_bytes(d: Diagnosis) -> bytes:
    """The run's JSON, compact, UTF-8 (any int size; NaN/infinity as null). A string UTF-8
    cannot hold (a lone surrogate) is written as a ``\\uXXXX`` escape: the line is never lost."""
    struct = run_struct(d)
    try:
        return _encode(struct)
    except UnicodeEncodeError:
        return _escaped(struct)


def run_bytes_into(d: Diagnosis, buf: bytearray) -> None:
    """``run_bytes`` appended to ``buf``, without a bytes object per run: a report of a million
    runs writes them this way (no allocation, no copy into the writer's buffer)."""
    struct = run_struct(d)
    n = len(buf)
    try:
        _encode_into(struct, buf, -1)
    except UnicodeEncodeError:
        del buf[n:]
        buf += _escaped(struct)


def run_json(d: Diagnosis) -> dict:
    """The same document as plain dicts and lists (fresh containers: the caller may change it)."""
    return _builtins(run_struct(d))


def _builtins(struct: RunJson) -> dict:
    """Plain dicts and lists; a value the fast report left as JSON bytes (``msgspec.Raw``: a
    response body no diagnosis read, records_typed.py) parsed."""
    return msgspec.to_builtins(struct, enc_hook=_parsed)


def _parsed(value: Any) -> Any:
    if type(value) is msgspec.Raw:
        return json.loads(bytes(value))
    raise NotImplementedError(f"{type(value).__name__} is not JSON")


def _escaped(struct: RunJson) -> bytes:
    """The stdlib's compact JSON: what UTF-8 cannot hold (a lone surrogate) as a ``\\uXXXX``."""
    return json.dumps(_builtins(struct), separators=(",", ":")).encode()
