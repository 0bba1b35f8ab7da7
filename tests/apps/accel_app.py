"""Plain and streamed responses of many shapes, for comparing uvicorn's bytes with and without the
accelerators.

- ``/r/<name>``: the response ``RESPONSES[name]`` describes; ``/s/<name>``: the stream ``STREAMS[name]``
  describes; ``/f/<name>``: the file response ``FILES[name]`` describes (its files made once, in a
  directory of the system's temporary one); ``POST /echo`` echoes the body.
- ``/hold?PATH`` answers (``/hold-stream?PATH``: starts a stream) at once, then blocks its thread
  (the event loop) until the file ``PATH`` exists (at most 5 s), as an app doing synchronous work
  after responding.
- ``/huge`` streams 64 MiB in 1 MiB chunks; ``/huge-file`` sends a 64 MiB file.
- ``/stream-then-raise`` raises right after ``response_stream``.
- ``/read-after`` answers, then reads the request body, which ``/_last-read`` then answers.
- ``replaying``: the same behind a middleware that reads the body and replays it; ``failing_writes``:
  the same with the socket's writes failing under ``/fail/`` (what reaches the app: ``/_last-read``).
- ``/_accelerated``, ``/_streams`` and ``/_chunks``: how many plain responses (on httptools or h11),
  stream (and file) starts and their chunks so far went out through the accelerators of
  ``rsgi_bridge/servers/uvicorn.py`` (counted here, around the bridge's own writers, so a test can
  tell the accelerated path actually ran).

``RSGI_BRIDGE_ACCELERATE=0`` in the environment turns the accelerators off."""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

import rsgi_bridge.servers.uvicorn as uvicorn_seam
from rsgi_bridge import wrap

COUNT = [0]  # plain responses written by the accelerator
STREAM_COUNT = [0]  # stream (and file) starts written by it
CHUNK_COUNT = [0]  # their chunks written by it
LAST_READ: list[str] = []
_make_writers = uvicorn_seam._writers


def _counted(write: Any, counter: list[int]) -> Any:
    """``write``, adding to ``counter`` each time it wrote (returned True)."""

    def counting(*args: Any) -> bool:
        done = write(*args)
        counter[0] += done
        return bool(done)

    return counting


def _counting_writers(owner: type) -> Any:
    writers = _make_writers(owner)
    if writers is None:
        return None
    write_plain, start_stream, write_chunk = writers
    return _counted(write_plain, COUNT), _counted(start_stream, STREAM_COUNT), _counted(write_chunk, CHUNK_COUNT)


uvicorn_seam._writers = _counting_writers  # type: ignore[assignment]
_make_h11_plain = uvicorn_seam._h11_plain


def _counting_h11_plain(owner: type) -> Any:
    write_plain = _make_h11_plain(owner)
    return None if write_plain is None else _counted(write_plain, COUNT)


uvicorn_seam._h11_plain = _counting_h11_plain  # type: ignore[assignment]

BIG = bytes(range(256)) * 4096  # 1 MiB

# name: (kind, status, headers, body); kind is the response_* method.
RESPONSES: dict[str, tuple[str, int, list[tuple[str, str]], Any]] = {
    "hello": ("str", 200, [("content-type", "text/plain")], "Hello, world!"),
    "empty": ("empty", 200, [], None),
    "utf8": (
        "str",
        201,
        [("x-a", "1"), ("X-Mixed-Case", "Ünïcode"), ("content-type", "text/plain; charset=utf-8")],
        "héllo",
    ),
    "bytes": ("bytes", 200, [("content-type", "application/octet-stream")], b"\x00\x01\xff" * 100),
    "big": ("bytes", 200, [("content-type", "application/octet-stream")], BIG),
    "own-length": ("bytes", 200, [("content-length", "5"), ("x-b", "2")], b"abcde"),
    "cookies": ("str", 200, [("set-cookie", "a=1"), ("set-cookie", "b=2; Path=/"), ("x-empty", "")], "c"),
    "server-header": ("str", 200, [("server", "app"), ("date", "yesterday")], "own server and date headers"),
    "not-found": ("str", 404, [], "nope"),
    "teapot": ("str", 418, [], "short and stout"),
    "redirect": ("empty", 302, [("location", "/r/hello")], None),
    "error": ("str", 500, [], "app says 500"),
    "599": ("str", 599, [], "no phrase"),
    "no-content": ("empty", 204, [], None),
    "not-modified": ("empty", 304, [("etag", '"x"')], None),
    "connection-close": ("str", 200, [("connection", "close")], "bye"),
    "connection-keep": ("str", 200, [("connection", "keep-alive")], "stay"),
    "chunked": ("str", 200, [("transfer-encoding", "chunked")], "chunked body"),
}

# name: (status, headers, chunks) for response_stream; a chunk of None awaits one loop turn instead.
STREAMS: dict[str, tuple[int, list[tuple[str, str]], list[Any]]] = {
    "chunked": (200, [("content-type", "text/plain")], [b"one", "two", b"three"]),
    "length": (200, [("content-length", "11"), ("x-a", "1")], [b"hello", b" ", b"world"]),
    "nothing": (200, [], []),
    "empty-chunks": (201, [("x-b", "2")], [b"", b"a", b""]),
    "suspends-first": (200, [], [None, b"after an await"]),
    "big": (200, [], [BIG, BIG]),
    "teapot": (418, [("set-cookie", "a=1"), ("set-cookie", "b=2")], [b"short"]),
    "no-content": (204, [], []),
    "not-modified": (304, [("etag", '"x"')], []),
    "connection-close": (200, [("connection", "close")], [b"bye"]),
    "app-chunked": (200, [("transfer-encoding", "chunked")], [b"framed by the server"]),
    "zero-length": (200, [("content-length", "0")], []),
}

# The files of /f/ and /huge-file: one directory for every process that imports this (servers are
# stopped with SIGTERM, which uvicorn re-raises: no atexit cleanup would run), each file made once,
# atomically.
_DIR = os.path.join(tempfile.gettempdir(), "rsgi-bridge-accel-files")
os.makedirs(_DIR, exist_ok=True)


def _make(name: str, data: bytes, size: int) -> None:
    path = os.path.join(_DIR, name)
    if os.path.exists(path) and os.path.getsize(path) == size:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.truncate(size)  # beyond data: zeros, sparse
    os.replace(tmp, path)


for _name, _data in (("big.bin", BIG), ("odd.bin", BIG[:100_003]), ("empty.bin", b"")):
    _make(_name, _data, len(_data))
_make("huge.bin", b"", 64 * len(BIG))  # 64 MiB of zeros

# name: (status, headers, file name in _DIR, (start, end) for response_file_range or None).
FILES: dict[str, tuple[int, list[tuple[str, str]], str, tuple[int, int] | None]] = {
    "whole": (200, [("content-type", "application/octet-stream"), ("content-length", str(len(BIG)))], "big.bin", None),
    "no-length": (200, [("x-a", "1")], "odd.bin", None),  # chunked, as uvicorn frames it
    "range": (206, [("content-range", f"bytes 1000-199999/{len(BIG)}")], "big.bin", (1000, 200_000)),
    "empty": (200, [("content-length", "0")], "empty.bin", None),
    "missing": (200, [], "no-such-file.bin", None),  # a 404
    "no-content": (204, [], "odd.bin", None),
    "connection-close": (200, [("connection", "close")], "odd.bin", None),
}


async def app(scope: Any, proto: Any) -> None:
    path = scope.path
    if path == "/_accelerated":
        proto.response_str(200, [("content-type", "text/plain")], str(COUNT[0]))
        return
    if path == "/hold" or path == "/hold-stream":
        transport = None
        if path == "/hold":
            proto.response_str(200, [("content-type", "text/plain")], "held")
        else:
            transport = proto.response_stream(200, [("content-type", "text/plain")])
        deadline = time.monotonic() + 5
        while not os.path.exists(scope.query_string) and time.monotonic() < deadline:
            time.sleep(0.01)  # blocking on purpose: no await until the test lets go
        if transport is not None:
            await transport.send_str("held")
        return
    if path == "/read-after":  # responds, then reads the body (Granian gives it, b"" for none)
        proto.response_str(200, [], "answered first")
        try:
            LAST_READ[:] = [repr(await proto())]
        except Exception as exc:
            LAST_READ[:] = [repr(exc)]
        return
    if path == "/_last-read":
        proto.response_str(200, [], LAST_READ[0] if LAST_READ else "nothing read")
        return
    if path.startswith("/fail/"):  # (served by failing_writes) whatever reaches the app is recorded
        try:
            if path == "/fail/plain":
                proto.response_str(200, [], "x")
            elif path == "/fail/file":
                proto.response_file(200, [], os.path.join(_DIR, "odd.bin"))
            else:
                transport = proto.response_stream(200, [])
                try:
                    await transport.send_bytes(b"x")
                except Exception as exc:  # ProtocolClosed is what a send on a dead exchange raises
                    LAST_READ[:] = [f"send raised {type(exc).__name__}"]
                    return
        except Exception as exc:
            LAST_READ[:] = [f"the app got {exc!r}"]
            raise
        LAST_READ[:] = ["nothing reached the app"]
        return
    if path == "/_streams":
        proto.response_str(200, [("content-type", "text/plain")], str(STREAM_COUNT[0]))
        return
    if path == "/_chunks":
        proto.response_str(200, [("content-type", "text/plain")], str(CHUNK_COUNT[0]))
        return
    if path == "/stream-then-raise":  # fails right after response_stream, before any await
        proto.response_stream(200, [("x-s", "1")])
        raise RuntimeError("failed before the stream's first chunk")
    if path == "/huge":  # 64 MiB in 1 MiB chunks, for a client that stops reading
        transport = proto.response_stream(200, [("content-length", str(64 * len(BIG)))])
        for _ in range(64):
            await transport.send_bytes(bytes(memoryview(BIG)))  # a new 1 MiB each: buffered, they would add up
        return
    if path.startswith("/s/"):
        status, headers, chunks = STREAMS[path.removeprefix("/s/")]
        transport = proto.response_stream(status, headers)
        for chunk in chunks:
            if chunk is None:
                await asyncio.sleep(0)
            elif isinstance(chunk, str):
                await transport.send_str(chunk)
            else:
                await transport.send_bytes(chunk)
        return
    if path == "/huge-file":  # 64 MiB, for a client that stops reading
        proto.response_file(200, [("content-length", str(64 * len(BIG)))], os.path.join(_DIR, "huge.bin"))
        return
    if path.startswith("/f/"):
        status, headers, name, span = FILES[path.removeprefix("/f/")]
        if span is None:
            proto.response_file(status, headers, os.path.join(_DIR, name))
        else:
            proto.response_file_range(status, headers, os.path.join(_DIR, name), *span)
        return
    if path == "/echo":
        body = await proto()
        proto.response_bytes(200, [("content-type", "application/octet-stream")], body)
        return
    kind, status, headers, body = RESPONSES[path.removeprefix("/r/")]
    if kind == "empty":
        proto.response_empty(status, headers)
    elif kind == "str":
        proto.response_str(status, headers, body)
    else:
        proto.response_bytes(status, headers, body)


asgi = wrap(app)
asgi_off = wrap(app, accelerate=False)  # the option, whatever the environment says


async def replaying(scope: Any, receive: Any, send: Any) -> None:
    """``asgi`` behind a plain ASGI middleware that reads the request body first (to check a signature,
    say) and replays it through its own ``receive``, handing uvicorn's ``send`` on untouched."""
    if scope["type"] != "http":
        await asgi(scope, receive, send)
        return
    parts, more = [], True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        parts.append(message.get("body", b""))
        more = message.get("more_body", False)
    replay = [{"type": "http.request", "body": b"".join(parts), "more_body": False}]

    async def replayed() -> Any:
        return replay.pop() if replay else await receive()

    await asgi(scope, replayed, send)


class FailingWrites:
    """A transport whose ``write`` raises, as a transport may once its socket is gone; the rest is the real one."""

    def __init__(self, real: Any) -> None:
        self._real = real

    def write(self, data: bytes) -> None:
        raise RuntimeError("transport.write failed")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


async def failing_writes(scope: Any, receive: Any, send: Any) -> None:
    """``asgi``, with the transport of uvicorn's request cycle (``send``'s owner) failing every write
    under ``/fail/`` (fault injection: ``send`` itself stays uvicorn's own, so the accelerators run)."""
    if scope["type"] == "http" and scope["path"].startswith("/fail/"):
        cycle = send.__self__
        cycle.transport = FailingWrites(cycle.transport)
    await asgi(scope, receive, send)
