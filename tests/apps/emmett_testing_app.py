"""A small Emmett55 app for the ``rsgi_bridge.testing`` tests.

Routes: ``/`` (plain text), ``/query`` (query params as JSON), ``/echo`` (POST, echoes the body),
``/form`` (POST, parsed body params), ``/aiter`` (``output="aiter"``: five chunks 0.1 s apart),
``/loop`` (how often ``after_loop`` fired), websocket ``/ws`` (echoes text and bytes).
Natively: ``granian --interface rsgi tests.apps.emmett_testing_app:app``.

(No ``response.stream`` route: emmett55 1.3 raises ``NoopResponse.rsgi()`` TypeError after such
a stream ends; Granian still ends the body cleanly, the bridge aborts it.)
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator
from typing import Any

from emmett55 import App, request, response, websocket
from emmett_core.extensions import Extension, Signals, listen_signal

# Emmett creates logs/ and static/ under root_path: keep them out of the repository.
ROOT = os.path.join(tempfile.gettempdir(), "rsgi-bridge-emmett-testing-app")
os.makedirs(ROOT, exist_ok=True)

CHUNKS = 5
GAP = 0.1

app = App(__name__, root_path=ROOT)


class LoopWatch(Extension):
    """Counts ``after_loop`` signals (Emmett sends one from ``__rsgi_init__``)."""

    namespace = "loopwatch"
    calls = 0
    loop: Any = None

    @listen_signal(Signals.after_loop)
    def _after_loop(self, loop: Any) -> None:
        LoopWatch.calls += 1
        LoopWatch.loop = loop


app.use_extension(LoopWatch)


@app.route("/", output="str")
async def index() -> str:
    response.content_type = "text/plain"
    return "Hello from Emmett55"


@app.route("/query", output="str")
async def query() -> str:
    response.content_type = "application/json"
    return json.dumps(dict(request.query_params), sort_keys=True)


@app.route("/echo", methods=["post"], output="bytes")
async def echo() -> bytes:
    response.content_type = "application/octet-stream"
    return await request.body  # type: ignore[no-any-return]


@app.route("/form", methods=["post"], output="str")
async def form() -> str:
    response.content_type = "application/json"
    return json.dumps(dict(await request.body_params), sort_keys=True)


@app.route("/loop", output="str")
async def loop_info() -> str:
    return json.dumps({"calls": LoopWatch.calls, "has_loop": LoopWatch.loop is not None})


async def _ticks() -> AsyncIterator[bytes]:
    for i in range(CHUNKS):
        yield f"tick {i}\n".encode()
        if i < CHUNKS - 1:
            await asyncio.sleep(GAP)


@app.route("/aiter", output="aiter")
async def aiter_route() -> AsyncIterator[bytes]:
    response.content_type = "text/plain"
    return _ticks()


@app.websocket("/ws")
async def ws() -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        await websocket.send(message)
