"""An unchanged Emmett55 app, served by Granian natively or by any ASGI server through rsgi-bridge.

Natively (RSGI)::

    granian --interface rsgi examples.emmett55_app:app

On uvicorn (or hypercorn, daphne, gunicorn + uvicorn_worker) through the bridge::

    uvicorn examples.emmett55_app:asgi
    # or, without the ``asgi`` line below:
    rsgi-bridge examples.emmett55_app:app

Routes: ``/`` (plain text), ``/query?...`` (the query parameters as JSON), ``/echo`` (POST: the
request body back, with its length), ``/stream`` (``@stream()``: three lines from an async
generator), ``/aiter`` (``output="aiter"``: three chunks), websocket ``/ws`` (echoes every text
or binary message).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import AsyncIterator

from emmett55 import App, request, response, websocket
from emmett55.tools import stream

import rsgi_bridge

# Emmett creates logs/ and static/ under its root path: keep them out of the source tree.
ROOT = os.path.join(tempfile.gettempdir(), "rsgi-bridge-emmett55-example")
os.makedirs(ROOT, exist_ok=True)

app = App(__name__, root_path=ROOT)


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
    body: bytes = await request.body
    response.content_type = "application/octet-stream"
    response.headers["x-body-length"] = str(len(body))
    return body


@app.route("/stream")
@stream()
async def streamed() -> AsyncIterator[str]:
    for i in range(3):
        await asyncio.sleep(0.01)
        yield f"line {i}\n"


async def _chunks() -> AsyncIterator[bytes]:
    for i in range(3):
        await asyncio.sleep(0.01)
        yield f"chunk {i};".encode()


@app.route("/aiter", output="aiter")
async def aiter_route() -> AsyncIterator[bytes]:
    response.content_type = "text/plain"
    return _chunks()


@app.websocket("/ws")
async def ws_echo() -> None:
    await websocket.accept()
    while True:
        message = await websocket.receive()
        await websocket.send(message)


# The same app as an ASGI 3 application (``uvicorn examples.emmett55_app:asgi``).
asgi = rsgi_bridge.wrap(app)
