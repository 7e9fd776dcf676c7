"""An upstream slower than its caller's timeout: it answers ``{"slept": S}`` after SLOW_SECONDS."""

from __future__ import annotations

import asyncio
import json
import os

DELAY = float(os.environ.get("SLOW_SECONDS", "3"))


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await asyncio.sleep(DELAY)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps({"slept": DELAY}).encode()})
