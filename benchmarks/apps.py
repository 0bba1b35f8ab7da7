"""The benchmark work, written four ways.

* ``asgi_app``      -- a native ASGI 3 app (served by uvicorn).
* ``rsgi_app``      -- the same work as an RSGI app (served natively by Granian).
* ``bridged_app``   -- ``rsgi_bridge.wrap(rsgi_app)`` (served by uvicorn).
* ``starlette_app`` -- a Starlette equivalent, for context.
* ``emmett_asgi`` / ``emmett_bridged`` -- ``GET /plain`` and ``POST /echo`` in Emmett55, through
  Emmett's own ASGI interface and as RSGI through the bridge (peers: the same framework app).

Routes (identical bytes on the wire for the ASGI/RSGI versions):

========================  ==========================================================
``GET  /plain``           13 bytes (``Hello, world!``)
``GET  /10k``             10 KiB
``POST /echo``            the request body, read whole (``await protocol()``)
``POST /echo-stream``     the request body, read with ``async for`` and streamed back
``GET  /stream``          1 MiB streamed in 16 chunks of 64 KiB
``GET  /file``            a 1 MiB file (``response_file``)
``WS   /ws``              echo of every message
``POST /upload``          reads the body with ``async for``, answers its size (memory.py)
``GET  /download?n``      streams ``n`` bytes in 64 KiB chunks with a content-length (memory.py)
========================  ==========================================================
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import Any

import rsgi_bridge

PLAIN = b"Hello, world!"
BODY_10K = bytes(range(256)) * 40  # 10 KiB
CHUNK = b"x" * 65536
STREAM_CHUNKS = 16  # 16 x 64 KiB = 1 MiB
FILE_SIZE = 1 << 20


def _bench_file() -> str:
    """A 1 MiB file shared by every server process (created once, atomically)."""
    path = os.environ.get("RSGI_BENCH_FILE") or os.path.join(tempfile.gettempdir(), "rsgi-bridge-bench-1mib.bin")
    try:
        if os.path.getsize(path) == FILE_SIZE:
            return path
    except OSError:
        pass
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(bytes(range(256)) * (FILE_SIZE // 256))
    os.replace(tmp, path)
    return path


FILE = _bench_file()

# -- native ASGI ------------------------------------------------------------------

_H_TEXT = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
_H_10K = [(b"content-type", b"application/octet-stream"), (b"content-length", str(len(BODY_10K)).encode())]
_H_BIN = (b"content-type", b"application/octet-stream")
_H_FILE = [(b"content-type", b"application/octet-stream"), (b"content-length", str(FILE_SIZE).encode())]


async def _asgi_read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        msg = await receive()
        chunks.append(msg.get("body", b""))
        if not msg.get("more_body", False):
            return b"".join(chunks)


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The benchmark work as a plain ASGI 3 app."""
    kind = scope["type"]
    if kind == "http":
        path = scope["path"]
        if path == "/plain":
            await send({"type": "http.response.start", "status": 200, "headers": _H_TEXT})
            await send({"type": "http.response.body", "body": PLAIN})
        elif path == "/10k":
            await send({"type": "http.response.start", "status": 200, "headers": _H_10K})
            await send({"type": "http.response.body", "body": BODY_10K})
        elif path == "/echo":
            body = await _asgi_read_body(receive)
            headers = [_H_BIN, (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif path == "/echo-stream":
            await send({"type": "http.response.start", "status": 200, "headers": [_H_BIN]})
            more = True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                more = msg.get("more_body", False)
                body = msg.get("body", b"")
                if body:
                    await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/stream":
            await send({"type": "http.response.start", "status": 200, "headers": [_H_BIN]})
            for _ in range(STREAM_CHUNKS):
                await send({"type": "http.response.body", "body": CHUNK, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        elif path == "/upload":
            size = 0
            more = True
            while more:
                msg = await receive()
                if msg["type"] != "http.request":
                    return
                size += len(msg.get("body", b""))
                more = msg.get("more_body", False)
            body = str(size).encode()
            headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        elif path == "/download":
            left = int(scope["query_string"] or 0)
            headers = [_H_BIN, (b"content-length", str(left).encode())]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            while left > 0:
                chunk = CHUNK if left >= len(CHUNK) else CHUNK[:left]
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        elif path == "/file":
            # What a hand-written ASGI app does without the pathsend extension (uvicorn has none):
            # read the file in 64 KiB pieces off the event loop.
            loop = asyncio.get_running_loop()
            f = await loop.run_in_executor(None, open, FILE, "rb")
            try:
                await send({"type": "http.response.start", "status": 200, "headers": _H_FILE})
                while True:
                    chunk = await loop.run_in_executor(None, f.read, 65536)
                    if not chunk:
                        await send({"type": "http.response.body", "body": b""})
                        break
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            finally:
                f.close()
        else:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
    elif kind == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            msg = await receive()
            if msg["type"] != "websocket.receive":
                return
            text = msg.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": msg.get("bytes") or b""})
    elif kind == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


# -- RSGI ---------------------------------------------------------------------------

_R_TEXT = [("content-type", "text/plain")]
_R_BIN = [("content-type", "application/octet-stream")]
_R_FILE = [("content-type", "application/octet-stream"), ("content-length", str(FILE_SIZE))]


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """The benchmark work as an RSGI app."""
    if scope.proto == "http":
        path = scope.path
        if path == "/plain":
            protocol.response_bytes(200, _R_TEXT, PLAIN)
        elif path == "/10k":
            protocol.response_bytes(200, _R_BIN, BODY_10K)
        elif path == "/echo":
            protocol.response_bytes(200, _R_BIN, await protocol())
        elif path == "/echo-stream":
            transport = protocol.response_stream(200, _R_BIN)
            async for chunk in protocol:
                await transport.send_bytes(chunk)
        elif path == "/stream":
            transport = protocol.response_stream(200, _R_BIN)
            for _ in range(STREAM_CHUNKS):
                await transport.send_bytes(CHUNK)
        elif path == "/file":
            protocol.response_file(200, _R_FILE, FILE)
        elif path == "/upload":
            size = 0
            async for chunk in protocol:
                size += len(chunk)
            protocol.response_str(200, _R_TEXT, str(size))
        elif path == "/download":
            left = int(scope.query_string or 0)
            transport = protocol.response_stream(200, [*_R_BIN, ("content-length", str(left))])
            while left > 0:
                chunk = CHUNK if left >= len(CHUNK) else CHUNK[:left]
                left -= len(chunk)
                await transport.send_bytes(chunk)
        else:
            protocol.response_empty(404, [])
    elif scope.proto == "ws":
        transport = await protocol.accept()
        while True:
            msg = await transport.receive()
            if msg.kind == 2:
                await transport.send_str(msg.data)
            elif msg.kind == 1:
                await transport.send_bytes(msg.data)
            else:
                return


bridged_app = rsgi_bridge.wrap(rsgi_app)


def _compare_app() -> Any:
    """``rsgi_app`` wrapped by the package copy named in ``RSGI_BENCH_COMPARE`` (``run.py --compare``)."""
    where = os.environ.get("RSGI_BENCH_COMPARE")
    if not where:
        return None
    import importlib
    import sys

    path = os.path.abspath(where)
    sys.path.insert(0, os.path.dirname(path))
    return importlib.import_module(os.path.basename(path)).wrap(rsgi_app)


compare_app = _compare_app()

# -- Emmett55 (peers: the same framework app through its own ASGI interface and as RSGI) ----------


def _make_emmett() -> Any:
    """``GET /plain`` and ``POST /echo`` in Emmett55, for its two interfaces side by side."""
    from emmett55 import App, request, response

    root = os.path.join(tempfile.gettempdir(), "rsgi-bridge-bench-emmett55")  # Emmett writes logs/ there
    os.makedirs(root, exist_ok=True)
    app = App(__name__, root_path=root)

    @app.route("/plain", output="bytes")
    async def plain() -> bytes:
        response.content_type = "text/plain"
        return PLAIN

    @app.route("/echo", methods=["post"], output="bytes")
    async def echo() -> bytes:
        body: bytes = await request.body
        response.content_type = "application/octet-stream"
        return body

    return app


def __getattr__(name: str) -> Any:
    """The Emmett55 peers, made on first use (Emmett is imported only by the servers that serve it).

    ``emmett_asgi``: the app through Emmett's own ASGI interface; ``emmett_bridged``: the same app
    as RSGI through ``rsgi_bridge.wrap``; ``emmett_rsgi``: the RSGI app itself (Granian).
    """
    if name not in ("emmett_rsgi", "emmett_asgi", "emmett_bridged"):
        raise AttributeError(name)
    app = globals().get("emmett_rsgi") or _make_emmett()
    globals().update(emmett_rsgi=app, emmett_asgi=app, emmett_bridged=rsgi_bridge.wrap(app))
    return globals()[name]


# -- Starlette ----------------------------------------------------------------------


def _make_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import FileResponse, Response, StreamingResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def plain(request: Request) -> Response:
        return Response(PLAIN, media_type="text/plain")

    async def ten_k(request: Request) -> Response:
        return Response(BODY_10K, media_type="application/octet-stream")

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    async def echo_stream(request: Request) -> Response:
        # StreamingResponse listens for disconnects on receive() itself, so the body is
        # read with ``async for`` first and then streamed back chunk by chunk.
        chunks = [chunk async for chunk in request.stream() if chunk]

        async def gen() -> Any:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(gen(), media_type="application/octet-stream")

    async def stream(request: Request) -> Response:
        async def gen() -> Any:
            for _ in range(STREAM_CHUNKS):
                yield CHUNK

        return StreamingResponse(gen(), media_type="application/octet-stream")

    async def file(request: Request) -> Response:
        return FileResponse(FILE, media_type="application/octet-stream")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                msg = await websocket.receive()
                if msg["type"] != "websocket.receive":
                    return
                if msg.get("text") is not None:
                    await websocket.send_text(msg["text"])
                else:
                    await websocket.send_bytes(msg.get("bytes") or b"")
        except WebSocketDisconnect:
            return

    return Starlette(
        routes=[
            Route("/plain", plain),
            Route("/10k", ten_k),
            Route("/echo", echo, methods=["POST"]),
            Route("/echo-stream", echo_stream, methods=["POST"]),
            Route("/stream", stream),
            Route("/file", file),
            WebSocketRoute("/ws", ws),
        ]
    )


starlette_app = _make_starlette()
