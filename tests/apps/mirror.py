"""An upstream whose answer the request chooses, so a test can compare many response shapes with
and without the gateway. Request headers (all optional):

- ``x-want-status: 503``          the status
- ``x-want-header: Name: value``  a response header, repeatable, casing kept
- ``x-want-body: echo|seen``      ``echo``: the request body itself; ``seen`` (default): JSON of
                                  what arrived (method, path, query, headers, body in base64)
- ``x-want-gzip: 1``              gzip the body and say so (content-encoding: gzip)
- ``x-want-chunked: 1``           send the body in several pieces without content-length
"""

from __future__ import annotations

import base64
import gzip
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    want = [(k.decode("latin-1"), v) for k, v in scope["headers"] if k.startswith(b"x-want-")]
    opts = {k: v.decode("latin-1") for k, v in want}
    if opts.get("x-want-body") == "echo":
        out = body
    else:
        out = json.dumps({
            "method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode("latin-1"),
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
            "body_b64": base64.b64encode(body).decode(),
        }).encode()
    headers = [(b"content-type", b"application/octet-stream")]
    for k, v in want:
        if k == "x-want-header":
            name, _, value = v.partition(b":")
            headers.append((name.strip(), value.strip()))
    if opts.get("x-want-gzip"):
        out = gzip.compress(out, mtime=0)
        headers.append((b"content-encoding", b"gzip"))
    chunked = bool(opts.get("x-want-chunked"))
    if not chunked:
        headers.append((b"content-length", str(len(out)).encode()))
    await send({"type": "http.response.start", "status": int(opts.get("x-want-status", "200")), "headers": headers})
    pieces = [out[i:i + 1000] for i in range(0, len(out), 1000)] if chunked else [out]
    for i, piece in enumerate(pieces):
        await send({"type": "http.response.body", "body": piece, "more_body": i < len(pieces) - 1})
    if not pieces:
        await send({"type": "http.response.body", "body": b""})
