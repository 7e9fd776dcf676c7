"""An upstream that answers with exactly what it received (method, path, headers, body), so a
test can compare traffic with and without the gateway."""

from __future__ import annotations

import base64
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
    seen = {
        "method": scope["method"],
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_b64": base64.b64encode(body).decode(),
    }
    out = json.dumps(seen).encode()
    status = int(dict(scope["headers"]).get(b"x-want-status", b"200"))
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"x-echo", b"1"),
                            (b"set-cookie", b"k=v; Path=/")]})
    await send({"type": "http.response.body", "body": out})
