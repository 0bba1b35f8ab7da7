"""A plain RSGI app: body echo, a stream, a file, and hooks that log.

Serve it on uvicorn with ``rsgi-bridge examples.hello:app`` or, as an ASGI app,
``uvicorn examples.hello:asgi_app``; natively with ``granian --interface rsgi examples.hello:app``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

log = logging.getLogger("hello")
HERE = os.path.dirname(os.path.abspath(__file__))


class App:
    def __rsgi_init__(self, loop: Any) -> None:
        self.greeting = loop.run_until_complete(self._load_greeting())
        log.warning("hello: init (greeting=%r)", self.greeting)

    def __rsgi_del__(self, loop: Any) -> None:
        log.warning("hello: del")

    async def _load_greeting(self) -> str:
        await asyncio.sleep(0)
        return "Hello, world!"

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.proto == "ws":
            transport = await protocol.accept()
            while True:
                msg = await transport.receive()
                if msg.kind == 0:
                    return
                if msg.kind == 1:
                    await transport.send_bytes(msg.data)
                else:
                    await transport.send_str(msg.data)
        path = scope.path
        if path == "/":
            protocol.response_str(200, [("content-type", "text/plain")], getattr(self, "greeting", "Hello, world!"))
        elif path == "/echo":
            body = await protocol()
            protocol.response_bytes(200, [("content-type", "application/octet-stream")], body)
        elif path == "/stream":
            transport = protocol.response_stream(200, [("content-type", "text/plain")])
            for i in range(5):
                await transport.send_str(f"chunk {i}\n")
                await asyncio.sleep(0.01)
        elif path == "/file":
            protocol.response_file(200, [("content-type", "text/x-python")], os.path.join(HERE, "hello.py"))
        else:
            protocol.response_empty(404, [])


app = App()


def _asgi() -> Any:
    from rsgi_bridge import wrap

    return wrap(app)


asgi_app = _asgi()
