"""The parts of a flows.jsonl record read from a mitmproxy message: its body (decoded, parsed
once), its headers as lists of strings, and the UTF-8 safety pass over the strings a record holds.
Read from the raw header fields: mitmproxy's decoded header view costs several times more."""

from __future__ import annotations

import orjson
from mitmproxy import http

from proxy_addons.bodies import encode_body, utf8_safe


def type_and_coding(msg: http.Message) -> tuple[str | None, bool]:
    """``msg.headers.get("content-type")`` (several values joined by ", "), and whether
    ``msg.headers.get("content-encoding")`` is set (not None, not empty): read in one pass over
    the raw fields, several times cheaper than mitmproxy's str view."""
    types, codings, coded = [], 0, False
    for k, v in msg.headers.fields:
        n = len(k)  # only names of those lengths are lowered and compared
        if n == 12 and k.lower() == b"content-type":
            types.append(v)
        elif n == 16 and k.lower() == b"content-encoding":
            codings += 1
            coded = coded or v != b""
    ctype = ", ".join([v.decode("utf-8", "surrogateescape") for v in types]) if types else None
    return ctype, coded or codings > 1  # several values join into a non-empty string


def message_body(msg: http.Message, max_bytes: int) -> dict:
    ctype, coded = type_and_coding(msg)
    ctype = utf8_safe(ctype)[0] if ctype else ctype
    if not coded:  # what get_content() does, without its look-up
        return encode_body(msg.raw_content, ctype, max_bytes=max_bytes)
    try:
        return encode_body(msg.get_content(strict=True), ctype, max_bytes=max_bytes)
    except ValueError:
        enc = msg.headers.get("content-encoding", "?")
        note = f"could not undo content-encoding {enc!r}: raw bytes given"
        return encode_body(msg.raw_content, ctype, note=note, max_bytes=max_bytes)


def headers_list(headers) -> list[list[str]]:
    """``headers.items(multi=True)`` as lists, decoded from the raw fields as mitmproxy does."""
    return [[k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")]
            for k, v in headers.fields]


def make_utf8_safe(rec: dict) -> None:
    """Bytes that are not UTF-8 in the path, method, headers or reason (mitmproxy keeps them as
    surrogate escapes) are written as ``\\xNN``, and ``notes`` says where: otherwise the line
    could not be written as UTF-8 JSON at all."""
    try:  # every such string is valid UTF-8 (nearly always): one C-speed check, nothing to fix
        resp, err = rec.get("response") or {}, rec.get("error") or {}
        orjson.dumps([rec["method"], rec["path"], rec["request"]["headers"], resp.get("headers"),
                      resp.get("reason"), err.get("message")])
        return
    except orjson.JSONEncodeError:
        pass
    notes = []

    def fix(where: str, text):
        if not isinstance(text, str):
            return text
        safe, changed = utf8_safe(text)
        if changed:
            notes.append(f"{where}: not UTF-8, bytes written as \\xNN")
        return safe

    rec["method"], rec["path"] = fix("method", rec["method"]), fix("path", rec["path"])
    for side in ("request", "response"):
        msg = rec.get(side)
        if msg is None:
            continue
        msg["headers"] = [[fix(f"{side} header name", k), fix(f"{side} header {k!r}", v)] for k, v in msg["headers"]]
        if "reason" in msg:
            msg["reason"] = fix("reason", msg["reason"])
    if rec.get("error"):
        rec["error"]["message"] = fix("error message", rec["error"]["message"])
    if notes:
        rec["notes"] = sorted(set(notes))
