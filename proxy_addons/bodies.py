"""PURE: how a message body is written into a record. Never raises, whatever the bytes."""

from __future__ import annotations

import base64
import json

import orjson

# Bodies larger than this are cut in the record (the .mitm file keeps them whole).
DEFAULT_MAX_BODY = 256 * 1024


def encode_body(
    raw: bytes | None,
    content_type: str | None = None,
    *,
    note: str | None = None,
    max_bytes: int = DEFAULT_MAX_BODY,
) -> dict:
    """Describe ``raw`` as ``{"kind": "json"|"text"|"base64"|"empty", "value", "size",
    "content_type"}``, plus ``"truncated": true`` when cut and ``"note"`` when something could
    not be decoded. JSON is parsed whatever the content type claims; text must be valid UTF-8."""
    body: dict = {"kind": "empty", "value": None, "size": 0, "content_type": content_type}
    if note:
        body["note"] = note
    if not raw:
        return body
    body["size"] = len(raw)
    data = raw
    if len(raw) > max_bytes:
        data = raw[:max_bytes]
        body["truncated"] = True
    else:
        try:
            body.update(kind="json", value=strict_json(data))
            return body
        except (ValueError, RecursionError):
            pass
    try:
        body.update(kind="text", value=data.decode("utf-8"))
    except UnicodeDecodeError:
        body.update(kind="base64", value=base64.b64encode(data).decode("ascii"))
    return body


def _not_json(name: str):
    raise ValueError(f"{name} is not a JSON number")


# 19 digits in a row (an int orjson may turn into a float) are 19 zeros once every digit is made
# a 0: a translate and a substring search, 2-4× cheaper than the regular expression [0-9]{19}
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def strict_json(data: bytes):
    """``json.loads`` minus what would not survive being written back as UTF-8 JSON: NaN and
    Infinity (orjson would write them as null) and lone surrogates (``"\\ud800"``). Such a
    body is recorded as text, exactly as it came. orjson parses first (it refuses all of those
    itself), unless the body may hold an int beyond 64 bits (orjson would make it a float)."""
    if _LONG_DIGITS not in data.translate(_DIGITS_TO_ZERO):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the stdlib decides: it accepts more (e.g. UTF-16), and says why not
    value = json.loads(data, parse_constant=_not_json)
    if b"\\ud" in data or b"\\uD" in data:  # a surrogate escape: check that the pairs were whole
        json.dumps(value, ensure_ascii=False).encode("utf-8")  # UnicodeEncodeError is a ValueError
    return value


def utf8_safe(text: str) -> tuple[str, bool]:
    """``text`` as valid UTF-8, and whether it had to change: bytes that were not UTF-8 (which
    mitmproxy keeps as surrogate escapes in paths and headers) are written as ``\\xNN``."""
    if text.isascii():
        return text, False
    try:
        text.encode("utf-8")
        return text, False
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"), True
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8"), True


def body_json(body: dict | None):
    """The parsed JSON value of a recorded body, or None when it was not JSON."""
    if body and body.get("kind") == "json":
        return body.get("value")
    return None
