"""PURE: a flows.jsonl flow record decoded by msgspec into a ``Record``, reading only the fields
the report uses (response headers, sizes, content types are skipped, not built), then into an
``Exchange`` (``exchange``): about half the cost of ``orjson.loads`` + ``Exchange.from_record``
per record, the largest cost of the fast report. Same result as ``Exchange.from_record``; a record
this strict schema refuses (a field of an unexpected type, NaN, a huge int) raises ``BAD`` and
goes the ``from_record`` way. The response body's value stays JSON bytes (``msgspec.Raw``) until
``response_value`` reads it: ``read_responses`` reads those of a run a diagnosis may look inside,
and the report writes the others as they are (77 % of the responses of the synthetic dump).
"""

from __future__ import annotations

from typing import Any

import msgspec

from proxy_addons.dumpio import _loads
from proxy_addons.runs_model import Exchange, Run

UNSET = msgspec.UNSET


class Body(msgspec.Struct, gc=False):  # gc=False: decoded JSON holds no cycles
    kind: Any = None
    value: Any = None
    truncated: Any = None
    note: Any = UNSET


class Request(msgspec.Struct, gc=False):
    headers: msgspec.Raw = msgspec.Raw(b"null")  # read when needed (``headers_of``): a kick's
    body: Body | None = None


class ResponseBody(msgspec.Struct, gc=False):
    """A response body: its value kept as JSON bytes. A diagnosis reads the responses of a few
    hops of a run only (``response_value``); the report writes the others as they are."""

    kind: Any = None
    value: msgspec.Raw = msgspec.Raw(b"null")
    truncated: Any = None
    note: Any = UNSET


class Response(msgspec.Struct, gc=False):
    body: ResponseBody | None = None


class Record(msgspec.Struct, gc=False):
    flow_id: str
    started: float
    type: str = "flow"
    ended: float | None = None
    service: Any = None
    method: Any = None
    path: Any = None
    client: Any = None
    request: Request | None = None
    status: Any = None
    response: Response | None = None
    error: Any = None
    origin: Any = None
    injected: Any = None
    run: Any = None


class Placement(msgspec.Struct, gc=False):
    flow_id: str
    run: Any = None
    type: str = "placement"


# the reader (report_fast._read) calls them inline; a line they refuse (``BAD``), or a ``Record``
# whose ``type`` is not "flow" or without a ``service`` (report.service_of decides), it reads the
# general way
decode_record = msgspec.json.Decoder(Record).decode
decode_placement = msgspec.json.Decoder(Placement).decode
BAD = (msgspec.DecodeError, msgspec.ValidationError)
_headers = msgspec.json.Decoder(list[tuple[str, str]] | None).decode
_value = msgspec.json.Decoder().decode


_VALUED = ("json", "text")  # runs_model._body_value: the kinds whose value is the body
_EXACT = ("json", "text", "empty")  # ... and those the answer rule may compare (whole, decoded)


def headers_of(raw: msgspec.Raw | bytes | None) -> tuple[tuple[str, str], ...]:
    """The request headers as ``Exchange.from_record`` gives them: pairs of strings."""
    if raw is None:
        return ()
    try:
        return tuple(_headers(raw) or ())
    except msgspec.ValidationError:
        import orjson

        return tuple([(k, v) if type(k) is str and type(v) is str else (str(k), str(v))
                      for k, v in (orjson.loads(bytes(raw)) or ())])


def exchange(r: Record) -> Exchange:
    """The record's exchange, without request headers (``Record.request.headers`` holds them
    as JSON until ``headers_of`` reads them) and with its response body's value as JSON bytes
    (``msgspec.Raw``) until ``response_value`` reads it."""
    req = r.request
    resp = r.response
    body = resp.body if resp is not None else None
    if body is None:
        value, exact = None, False
    else:
        kind = body.kind
        value = body.value if kind in _VALUED else None
        exact = kind in _EXACT and not body.truncated and body.note is UNSET
    body = req.body if req is not None else None
    req_value = body.value if body is not None and body.kind in _VALUED else None
    inj = r.injected
    ended = r.ended
    return Exchange(
        r.flow_id, r.started, r.service, r.method or "POST", r.path or "", req_value, (),
        r.client, ended, r.status if ended is not None else None, value, exact, r.error, r.origin,
        inj if isinstance(inj, dict) else ({} if inj else None),
    )


def response_value(ex: Exchange) -> Exchange:
    """Read the exchange's response body value now, if ``exchange`` left it as JSON bytes: the
    value ``Exchange.from_record`` gives (msgspec; what it refuses, as ``dumpio`` reads it)."""
    raw = ex.response
    if type(raw) is msgspec.Raw:
        try:
            ex.response = _value(raw)
        except BAD:
            ex.response = _loads(bytes(raw))
    return ex


class _Told(msgspec.Struct, gc=False):
    outcome: Any = UNSET  # what the services' passed-up answers carry (services/app.py)


_outcome = msgspec.json.Decoder(_Told).decode  # scans a body, builds nothing else


def _told(ex: Exchange) -> None:
    """Read the response body if it is not a JSON object without an ``outcome`` key."""
    raw = ex.response
    if type(raw) is msgspec.Raw:
        try:
            if _outcome(raw).outcome is UNSET:
                return  # e.g. a service's 400: a diagnosis passes it on whole (a break's detail)
        except BAD:  # not an object (text, a list...): read it
            pass
        response_value(ex)


def read_responses(run: Run) -> None:
    """Read the response bodies a diagnosis may look inside (``diagnosis.py``: the kick's answer,
    a hop that forwarded nothing, a failed or refused hop — and of these only a body with an
    ``outcome``: the only key a diagnosis looks for in an answer before it reads the rest); the
    others stay JSON bytes, written into the report as they are. (Hops are in depth-first order:
    a hop that forwarded is followed by its first child.)"""
    hops = run.hops
    _told(hops[0].exchange)
    last = len(hops) - 1
    for i in range(1, last + 1):
        h = hops[i]
        ex = h.exchange
        status = ex.status
        if i == last or hops[i + 1].parent != h.flow_id or status is None or status >= 400 or (
                ex.error is not None):
            _told(ex)


def raw_headers(r: Record) -> msgspec.Raw | None:
    req = r.request
    return req.headers if req is not None else None
