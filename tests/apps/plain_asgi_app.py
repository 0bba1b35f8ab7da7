"""A plain ASGI app, no bridge: shows what a server does on its own.

Websockets (any path) are accepted and echo text until the client leaves; HTTP ``/slow?s=N``
answers ``ok`` after N seconds (appending ``request-start`` to the file ``LIFECYCLE_FILE`` names,
when set, as ``tests/apps/lifecycle_app.py`` does), anything else 404. Lifespan is supported.
"""

from __future__ import annotations

import asyncio
import os
import urllib.parse
from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    else:
        await receive()
        if scope["path"] != "/slow":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        query = urllib.parse.parse_qs(scope["query_string"].decode())
        if path := os.environ.get("LIFECYCLE_FILE"):
            with open(path, "a") as f:
                f.write(f"request-start {os.getpid()}\n")
        await asyncio.sleep(float(query.get("s", ["1"])[0]))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"ok"})
