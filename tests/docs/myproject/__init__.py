"""The ``myproject`` the docs' examples import: small RSGI apps standing in for the reader's own.

``tests/test_docs.py`` puts ``tests/docs`` on ``sys.path`` when it runs an example, so
``from myproject import app`` in a docs page resolves here. Each name is what the page that uses
it expects: ``app``/``rsgi_app`` answer ``/``, ``/echo``, ``/events`` and the ``/ws`` websocket
(docs/testing.md), ``app_whose_init_raises`` fails its init with "database unreachable",
``legacy_rsgi_app`` and ``health`` are the apps of the mounting example (docs/servers.md).
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import PlainTextResponse

__all__ = ["App", "app", "app_a", "app_b", "app_whose_init_raises", "health", "legacy_rsgi_app", "rsgi_app"]


class App:
    """An RSGI app with hooks: a greeting, a body echo, a stream and a websocket echo."""

    def __init__(self, name: str = "app", init_error: str | None = None) -> None:
        self.name = name
        self.init_error = init_error
        self.events: list[str] = []

    def __rsgi_init__(self, loop: Any) -> None:
        if self.init_error is not None:
            raise RuntimeError(self.init_error)
        self.events.append(loop.run_until_complete(self._ready()))

    def __rsgi_del__(self, loop: Any) -> None:
        self.events.append("del")

    async def _ready(self) -> str:
        await asyncio.sleep(0)
        return "init"

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto == "ws":
            transport = await protocol.accept()
            while (msg := await transport.receive()).kind != 0:
                if msg.kind == 1:
                    await transport.send_bytes(msg.data)
                else:
                    await transport.send_str(msg.data)
            return
        if scope.path == "/":
            name = parse_qs(scope.query_string).get("name", ["world"])[0]
            protocol.response_str(200, [("content-type", "text/plain")], f"Hello, {name}! ({self.name})")
        elif scope.path == "/echo":
            protocol.response_bytes(200, [("content-type", "application/octet-stream")], await protocol())
        elif scope.path == "/events":
            transport = protocol.response_stream(200, [("content-type", "text/plain")])
            for i in range(3):
                await transport.send_str(f"event {i}\n")
        else:
            protocol.response_empty(404, [])


app = App()
rsgi_app = app
app_a = App("a")
app_b = App("b")
legacy_rsgi_app = App("legacy")
app_whose_init_raises = App("broken", init_error="database unreachable")


async def health(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")
