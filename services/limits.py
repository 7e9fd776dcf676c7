"""What a service refuses, and a refusal it can always send.

``BodySizeLimit`` is a pure ASGI middleware (works in front of any ASGI app). Why not Starlette's
``RequestBodyLimitMiddleware``: its 413 says only "Content Too Large"; ours is JSON and names the
limit and the setting, so whoever hits it knows what to change. The bytes are counted as they
arrive, so a chunked body (no Content-Length) or a lying Content-Length is refused as soon as it
passes the limit, without reading the rest into memory.
"""

from __future__ import annotations

import json

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_ECHOED_INPUT = 1000  # characters of the refused input a 422 repeats


def install_limits(app: FastAPI, max_body_bytes: int) -> None:
    """The body size limit and a 422 that never fails to render what it refuses."""
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(RequestValidationError, unprocessable)


async def unprocessable(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, except that an input it cannot write back as JSON (NaN, a lone surrogate,
    deep nesting) or a long one (a whole refused body) is replaced by a short note."""
    errors = []
    for err in exc.errors():
        err = dict(err)
        if isinstance(err.get("input"), bytes):  # FastAPI passes a non-JSON body on raw
            err["msg"] += " (send the payload as JSON with Content-Type: application/json)"
            err["input"] = err["input"].decode("utf-8", "replace")
        if "input" in err:
            err["input"] = echoable(err["input"])
        errors.append(err)
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder(errors)})


def echoable(value: object) -> object:
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
        text.encode("utf-8")
    except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
        return "(not repeated: not representable as JSON)"
    if len(text) > MAX_ECHOED_INPUT:
        return f"(not repeated: {len(text)} characters)"
    return value


def too_large_body(limit: int, setting: str) -> bytes:
    return json.dumps({
        "detail": f"request body larger than {setting}={limit} bytes",
        "limit_bytes": limit,
    }).encode()


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with a JSON 413 before the app sees them.

    The body is read (and counted) here, then handed to the app as one message: the services parse
    the whole body anyway, so buffering at most ``max_bytes`` costs nothing more."""

    def __init__(self, app: ASGIApp, max_bytes: int, setting: str = "MAX_BODY_BYTES") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self.refuse(send)
            return
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self.refuse(send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)

    async def refuse(self, send: Send) -> None:
        body = too_large_body(self.max_bytes, self.setting)
        await send({"type": "http.response.start", "status": 413, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        ]})  # no "connection: close": uvicorn then drains the unread rest, so the client, still
        # sending, reads this 413 instead of a connection reset
        await send({"type": "http.response.body", "body": body})


def content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the buffered body once, then the real channel (disconnects)."""
    sent = False

    async def receive_again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
