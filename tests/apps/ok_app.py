"""An RSGI app answering 200 "ok" to any request (a CONNECT included)."""

from typing import Any

from rsgi_bridge import wrap


async def app(scope: Any, protocol: Any) -> None:
    protocol.response_str(200, [("content-type", "text/plain")], "ok")


asgi = wrap(app)
