"""Redaction at capture time: secrets never reach a dump, the traffic keeps them.

Options ``hoptrace_redact_headers`` (header names) and ``hoptrace_redact_json`` (JSON paths into
request and response bodies: ``password``, ``user.token``, ``items.*.secret``, ``**.password``;
``*`` matches any key or list item, ``**`` any number of levels). Their values are replaced in everything written — flows.jsonl, flows.mitm (so
flows.har, made from it), runs.jsonl, reports, mitmweb comments — by ``[redacted <hash>]``, an
HMAC-SHA256 of the value under a key drawn at random when the gateway starts and never written:
the same value gives the same hash all session long, so runs still link, yet a dump alone cannot
be used to test a guess.

How: the addon attaches a ``Redactor`` to every flow (``recorder.REDACTOR``) in its first hook;
the recorder passes the record and the .mitm copy through it. The flow the proxy forwards is never
changed: the .mitm entry of a flow with something to redact is a redacted copy.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any

from mitmproxy import ctx, exceptions, http

from proxy_addons.recorder import REDACTOR

DEFAULT_HEADERS = "authorization,proxy-authorization,cookie,set-cookie"
NOTE = "redacted whole: JSON paths could not be applied to a body that is not whole JSON"


def parse_paths(spec: str) -> list[tuple[str, ...]]:
    paths = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        steps = tuple(part.removeprefix("$.").split("."))
        if not all(steps):
            raise ValueError(f"JSON path {part!r} has an empty step (use a.b.c, * for any)")
        paths.append(steps)
    return paths


class Redactor:
    """What to redact and how; pure apart from the key it is given."""

    def __init__(self, headers: set[str], paths: list[tuple[str, ...]], key: bytes) -> None:
        self.names = {h.lower() for h in headers}
        # the same names as raw bytes, to test a message's raw header fields without decoding
        # them (ASCII names only: bytes.lower() folds ASCII only)
        ascii_only = all(n.isascii() for n in self.names)
        self.raw_names = {n.encode() for n in self.names} if ascii_only else None
        self.raw_lengths = frozenset(len(n) for n in self.raw_names or ())  # the others: no lower()
        self.paths = paths
        self.key = key
        # a body that is not whole JSON is redacted whole when it may hold a path: it holds the
        # path's last named key (a path of only * and indexes could be anywhere: no hint)
        named = [[s for s in p if s not in ("*", "**") and not s.isdigit()] for p in paths]
        self.hints = [f'"{n[-1]}"'.encode() for n in named if n]
        if len(self.hints) < len(paths):
            self.hints = []

    def token(self, value: Any) -> str:
        """The same value, as a header or a JSON string or bytes, gives the same token."""
        if isinstance(value, str):
            data = value.encode("utf-8", "surrogatepass")
        else:
            data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode()
        return f"[redacted {hmac.new(self.key, data, hashlib.sha256).hexdigest()[:16]}]"

    def json(self, value: Any) -> tuple[Any, bool]:
        """A copy of ``value`` with every path's value replaced (the original is not touched)."""
        changed = False
        for path in self.paths:
            value, hit = self._at(value, path)
            changed |= hit
        return value, changed

    def _at(self, value: Any, path: tuple[str, ...]) -> tuple[Any, bool]:
        if not path:
            return self.token(value), True
        step, rest = path[0], path[1:]
        if step == "**":  # zero or more levels: here, then the same path in every child
            value, hit = self._at(value, rest)
            value, deeper = self._each(value, "*", path)
            return value, hit or deeper
        return self._each(value, step, rest)

    def _each(self, value: Any, step: str, rest: tuple[str, ...]) -> tuple[Any, bool]:
        if isinstance(value, dict):
            keys = list(value) if step == "*" else [step] if step in value else []
        elif isinstance(value, list) and (step == "*" or step.isdigit()):
            keys = range(len(value)) if step == "*" else [int(step)] if int(step) < len(value) else []
        else:
            return value, False
        out, hit = value, False
        for k in keys:
            new, h = self._at(value[k], rest)
            if h:
                if out is value:
                    out = dict(value) if isinstance(value, dict) else list(value)
                out[k], hit = new, True
        return out, hit

    def headers(self, pairs: list[list[str]]) -> list[list[str]]:
        """The pairs with the named headers' values redacted; ``pairs`` itself when none is named
        (nearly always: no copy). With ASCII names, only header names of their lengths are
        lowered (a name whose ``lower()`` is ASCII keeps its length)."""
        names = self.names
        if not names:
            return pairs
        if self.raw_names is None:
            if names.isdisjoint([k.lower() for k, _ in pairs]):
                return pairs
        elif not _any_in(pairs, names, self.raw_lengths):
            return pairs
        return [[k, self.token(v.encode("utf-8", "surrogateescape")) if k.lower() in names else v]
                for k, v in pairs]

    def body(self, body: dict) -> dict:
        """A record BODY with the JSON paths redacted; a body that may hold one of the paths'
        keys but is not whole JSON (cut, text) is replaced whole rather than risk a leak."""
        if not self.paths or body.get("value") is None:
            return body
        if body["kind"] == "json":
            value, changed = self.json(body["value"])
            return {**body, "value": value} if changed else body
        raw = base64.b64decode(body["value"]) if body["kind"] == "base64" else body["value"].encode("utf-8", "surrogatepass")
        if not self.hints or any(h in raw for h in self.hints):
            return {**body, "kind": "text", "value": self.token(raw), "note": NOTE}
        return body

    def record(self, rec: dict) -> None:
        """In place, on a fresh record: both sides' headers and the response body (the request
        body comes from ``recorder.request_body``, which is redacted already)."""
        for side in ("request", "response"):
            msg = rec.get(side)
            if msg is not None:
                msg["headers"] = self.headers(msg["headers"])
        if rec.get("response") is not None:
            rec["response"]["body"] = self.body(rec["response"]["body"])

    def flow(self, flow: http.HTTPFlow) -> http.HTTPFlow:
        """The flow to write to flows.mitm: itself when nothing needs redacting, else a copy."""
        msgs = [m for m in (flow.request, flow.response) if m is not None]
        if not any(self._message_needs(m) for m in msgs):
            return flow
        copy = http.HTTPFlow.from_state(flow.get_state())  # same id (flow.copy() draws a new one)
        copy.live = False  # the proxy keeps forwarding the original
        for msg in (copy.request, copy.response):
            if msg is not None:
                self._redact_message(msg)
        return copy

    def _message_needs(self, msg: http.Message) -> bool:
        names = self.raw_names
        if names is not None:
            if names and _any_in(msg.headers.fields, names, self.raw_lengths):
                return True
        elif any(k.lower() in self.names for k in msg.headers):
            return True
        return bool(self.paths and msg.raw_content and (not self.hints or any(h in self._content(msg) for h in self.hints)))

    @staticmethod
    def _content(msg: http.Message) -> bytes:
        try:
            return msg.get_content(strict=True) or b""
        except ValueError:
            return msg.raw_content or b""

    def _redact_message(self, msg: http.Message) -> None:
        for name in {k for k in msg.headers if k.lower() in self.names}:
            msg.headers.set_all(name, [self.token(v.encode("utf-8", "surrogateescape")) for v in msg.headers.get_all(name)])
        if not (self.paths and msg.raw_content):
            return
        content = self._content(msg)
        try:
            value, changed = self.json(json.loads(content))
        except (ValueError, RecursionError):
            if self.hints and not any(h in content for h in self.hints):
                return
            value, changed = self.token(content), True
        if changed:
            try:
                msg.set_content(json.dumps(value).encode())  # re-encoded as the message says
            except ValueError:  # an encoding mitmproxy cannot redo: write it plain
                msg.headers.pop("content-encoding", None)
                msg.raw_content = json.dumps(value).encode()


def _any_in(pairs, names: set, lengths: frozenset[int]) -> bool:
    """Is the lowered name of any (name, value) pair in ``names``? Only names of one of
    ``lengths`` are lowered and looked up (most headers: none)."""
    for k, _ in pairs:
        if len(k) in lengths and k.lower() in names:
            return True
    return False


class Redact:
    """Attaches the session's Redactor to every flow, before any other addon reads it."""

    def __init__(self) -> None:
        self.key = secrets.token_bytes(32)  # per gateway start, never written anywhere
        self.redactor = Redactor(set(DEFAULT_HEADERS.split(",")), [], self.key)

    def load(self, loader) -> None:
        loader.add_option(
            "hoptrace_redact_headers", str, DEFAULT_HEADERS,
            "Header names whose values are replaced by a keyed hash in every dump (comma-separated; empty: none).",
        )
        loader.add_option(
            "hoptrace_redact_json", str, "",
            "JSON paths into bodies whose values are replaced by a keyed hash in every dump, e.g. password,user.token,items.*.secret",
        )

    def configure(self, updated: set[str]) -> None:
        if {"hoptrace_redact_headers", "hoptrace_redact_json"} & updated:
            try:
                paths = parse_paths(ctx.options.hoptrace_redact_json)
            except ValueError as exc:
                raise exceptions.OptionsError(f"hoptrace_redact_json: {exc}") from None
            names = {h.strip() for h in ctx.options.hoptrace_redact_headers.split(",") if h.strip()}
            if any(not n.replace("-", "").replace("_", "").isalnum() for n in names):
                raise exceptions.OptionsError(f"hoptrace_redact_headers: not header names: {sorted(names)}")
            self.redactor = Redactor(names, paths, self.key)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        setattr(flow, REDACTOR, self.redactor)

    def request(self, flow: http.HTTPFlow) -> None:
        setattr(flow, REDACTOR, self.redactor)  # flows that skipped requestheaders (tests, replays)
