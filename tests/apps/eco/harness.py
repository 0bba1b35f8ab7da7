"""Test scaffolding around the recipes of ``docs/middleware.md``, inside the server process.

The recipes are the reader's modules, unchanged (``tests/test_ecosystem.py`` writes each one from
the page to a directory on ``PYTHONPATH``). A harness imports one, adds what only a test needs (an
in-memory span exporter, a Sentry transport that records events) and serves what it recorded as
JSON on ``/_recorded``, outside the recipe's middleware so reading it is not itself recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def expose(app: Any, recorded: Callable[[], Any]) -> Any:
    """``app`` plus a ``GET /_recorded`` route answering ``recorded()`` as JSON."""

    async def harness(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_recorded":
            body = json.dumps(recorded(), default=str).encode()
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await app(scope, receive, send)

    return harness
