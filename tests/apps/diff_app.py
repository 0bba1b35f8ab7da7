"""One RSGI app covering every HTTP and websocket feature, for the differential tests.

The same module is served natively (``granian --interface rsgi tests.apps.diff_app:app``) and
through the bridge on each ASGI server (``tests.apps.diff_app:traced``); the tests send the same
requests to both and compare what comes back. Every route answers deterministically (no state
shared between requests), so the two answers can be compared byte for byte.

Exports:
- ``app``: the RSGI app.
- ``asgi``: ``rsgi_bridge.wrap(app)``.
- ``traced``: ``asgi`` behind a thin ASGI middleware that records the types of the messages the
  bridge hands the server for requests carrying an ``x-trace`` header; ``GET /_trace?id=X``
  returns them (to prove e.g. that ``http.response.pathsend`` was used where offered).
- ``hooked``/``hooked_asgi``: the app with ``__rsgi_init__``/``__rsgi_del__`` hooks appending
  ``"<event> <pid>"`` lines to ``$DIFF_HOOK_LOG`` (for the lifespan/drain matrix).
"""

from __future__ import annotations

import asyncio
import json
import os
import urllib.parse
from collections import namedtuple
from typing import Any

from rsgi_bridge import wrap
from tests.apps.http_app import DATA_DIR, FILE, dump_scope

__all__ = ["FILE", "app", "asgi", "hooked", "hooked_asgi", "traced"]

JSON = [("content-type", "application/json")]
Pair = namedtuple("Pair", ["name", "value"])  # header pairs as a namedtuple (Granian takes them)


def _q(scope: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(scope.query_string))


# BaseExceptions an app may raise (``?exc=``): none of them may take the server down.
BASE_EXCEPTIONS = ("SystemExit", "KeyboardInterrupt", "CancelledError", "cancelled-task")


async def raise_base(kind: str) -> None:
    """Raise the BaseException ``kind`` names, as an app would."""
    if kind == "SystemExit":
        raise SystemExit(3)
    if kind == "KeyboardInterrupt":
        raise KeyboardInterrupt
    if kind == "CancelledError":
        raise asyncio.CancelledError  # the app's own, not a cancellation of its task
    if kind == "cancelled-task":  # awaiting a task that was cancelled: its CancelledError
        task = asyncio.ensure_future(asyncio.sleep(30))
        await asyncio.sleep(0)
        task.cancel()
        await task
    raise ValueError(f"unknown exception kind {kind!r}")


async def http(scope: Any, protocol: Any) -> None:
    path = scope.path
    q = _q(scope)
    if path.endswith("/scope"):
        protocol.response_str(200, JSON, json.dumps(dump_scope(scope)))
    elif path == "/str":
        protocol.response_str(200, [("content-type", "text/plain; charset=utf-8")], "héllo wörld €")
    elif path == "/bytes":
        protocol.response_bytes(201, [("x-kind", "bytes")], b"\x00\x01bytes\xff")
    elif path == "/bytearray":
        protocol.response_bytes(200, [], bytearray(b"from-bytearray"))
    elif path == "/memoryview":
        protocol.response_bytes(200, [], memoryview(b"from-memoryview"))
    elif path == "/empty":
        protocol.response_empty(int(q.get("status", 200)), [("x-e", "1")])
    elif path == "/str-empty":
        protocol.response_str(200, [], "")
    elif path == "/defaults":
        protocol.response_bytes()
    elif path == "/status":
        code, kind = int(q["code"]), q.get("kind", "bytes")
        if kind == "bytes":
            protocol.response_bytes(code, [], b"status")
        elif kind == "empty":
            protocol.response_empty(code, [])
        elif kind == "file":
            protocol.response_file(code, [], FILE)
        else:
            transport = protocol.response_stream(code, [])
            await transport.send_str("streamed status")
    elif path == "/repeated-headers":
        protocol.response_bytes(
            200, [("x-a", "1"), ("X-A", "2"), ("x-b", "3"), ("set-cookie", "a=1"), ("set-cookie", "b=2")], b"ok"
        )
    elif path == "/tuple-headers":
        protocol.response_bytes(200, (("x-a", "1"), ("x-a", "2"), ("x-b", "3")), b"ok")
    elif path == "/unicode-header":
        protocol.response_bytes(200, [("x-e", "€"), ("x-u", "ü"), ("x-mixed", "a é b")], b"ok")
    elif path == "/own-length":
        protocol.response_bytes(200, [("content-length", "5")], b"12345")
    elif path == "/te-chunked":
        headers = [("transfer-encoding", "chunked"), ("content-type", "text/plain")]
        if q.get("kind") == "stream":
            transport = protocol.response_stream(200, headers)
            await transport.send_bytes(b"hello ")
            await transport.send_bytes(b"chunked")
        else:
            protocol.response_bytes(200, headers, b"hello chunked")
    elif path == "/two-lengths":
        protocol.response_bytes(200, [("content-length", q.get("first", "5")), ("content-length", "7")], b"12345")
    elif path == "/bad-length":
        protocol.response_bytes(200, [("content-length", q["value"])], b"12345")
    elif path == "/namedtuple-headers":
        protocol.response_bytes(200, [Pair("x-a", "1"), Pair("x-b", "2")], b"ok")
    elif path == "/child":
        kind = q.get("kind", "bytes")

        async def child() -> None:
            await asyncio.sleep(0.01)
            if kind == "file":
                protocol.response_file(200, [("content-type", "application/octet-stream")], FILE)
            elif kind == "stream":
                transport = protocol.response_stream(200, [("x-from", "child")])
                await transport.send_str("streamed from the child task")
            else:
                protocol.response_bytes(200, [("x-from", "child")], b"from the child task")

        await asyncio.create_task(child())
    elif path == "/body-after-stream":
        transport = protocol.response_stream(200, [("x-s", "1")])
        body = await protocol()
        await transport.send_bytes(b"read after responding: " + body)
    elif path == "/echo":
        body = await protocol()
        protocol.response_bytes(200, [("x-len", str(len(body)))], body)
    elif path == "/echo-iter":
        parts = [chunk async for chunk in protocol]
        protocol.response_bytes(200, [("x-len", str(sum(map(len, parts))))], b"".join(parts))
    elif path == "/stream-echo":
        transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
        async for chunk in protocol:
            await transport.send_bytes(chunk)
    elif path == "/stream":
        transport = protocol.response_stream(200, [("content-type", "text/plain"), ("x-s", "1")])
        await transport.send_bytes(b"a")
        await transport.send_bytes(b"")
        await transport.send_str("b")
        await transport.send_str("")
        await transport.send_str("€")
        await transport.send_bytes(bytearray(b"c"))
        await transport.send_bytes(memoryview(b"d"))
        for i in range(int(q.get("n", 3))):
            await transport.send_str(f"line {i}\n")
    elif path == "/stream-empty":
        protocol.response_stream(200, [("x-s", "empty")])
    elif path == "/stream-error":
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b"partial")
        raise RuntimeError("boom mid-stream")
    elif path == "/file":
        protocol.response_file(200, [("content-type", "application/octet-stream")], FILE)
    elif path == "/file-range":
        start, end = int(q["start"]), int(q["end"])
        size = os.path.getsize(FILE)
        headers = [("content-range", f"bytes {start}-{end - 1}/{size}"), ("content-length", str(end - start))]
        if q.get("length") == "no":
            headers = headers[:1]
        protocol.response_file_range(206, headers, FILE, start, end)
    elif path == "/file-missing":
        protocol.response_file(200, [("x-never", "1")], os.path.join(DATA_DIR, "does-not-exist"))
    elif path == "/file-dir":
        protocol.response_file(200, [], DATA_DIR)
    elif path == "/pid":
        protocol.response_str(200, [], str(os.getpid()))
    elif path == "/raise":
        await raise_base(q["exc"])
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/no-response":
        return
    elif path == "/respond-then-raise":
        protocol.response_bytes(200, [], b"sent")
        raise RuntimeError("after the response")
    elif path == "/first-wins":
        protocol.response_bytes(200, [("x-first", "1")], b"first")
        protocol.response_str(201, [], "second")
        protocol.response_empty(202, [])
        protocol.response_file(200, [], FILE)
        protocol.response_file_range(206, [], FILE, 0, 1)
    elif path == "/header-crlf":
        protocol.response_bytes(200, [("x-ok", "1"), ("x-bad", "a\r\nx-evil: 1")], b"crlf")
    elif path == "/slow":
        await asyncio.sleep(float(q.get("t", 1)))
        protocol.response_str(200, [], "slow done")
    elif path == "/after-response":
        protocol.response_str(200, [], "early")
        await asyncio.sleep(float(q.get("t", 0.2)))
    else:
        protocol.response_str(404, [], "no route")


async def websocket(scope: Any, protocol: Any) -> None:
    path = scope.path
    q = _q(scope)
    if path == "/ws/echo":
        transport = await protocol.accept()
        while True:
            msg = await transport.receive()
            if msg.kind == 0:
                return
            if msg.kind == 1:
                await transport.send_bytes(msg.data)
            else:
                await transport.send_str(msg.data)
    elif path.endswith("/ws/info"):
        transport = await protocol.accept()
        info = dump_scope(scope)
        msg = await transport.receive()
        info["first_kind"] = [int(msg.kind), msg.kind == 2, msg.kind == 1]
        await transport.send_str(json.dumps(info))
        protocol.close(1000)
    elif path == "/ws/reject":
        status = q.get("status")
        protocol.close(int(status) if status else None)
    elif path == "/ws/close":
        transport = await protocol.accept()
        await transport.send_str("bye")
        code = q.get("code")
        protocol.close(int(code) if code else None)
    elif path == "/ws/return-open":
        transport = await protocol.accept()
        await transport.send_str("hi")
    elif path == "/ws/raise-before":
        await raise_base(q["exc"])
    elif path == "/ws/raise-after":
        transport = await protocol.accept()
        await transport.send_str("about to fail")
        await raise_base(q["exc"])
    elif path == "/ws/error-before":
        raise RuntimeError("boom before accept")
    elif path == "/ws/error-after":
        transport = await protocol.accept()
        await transport.send_str("about to fail")
        raise RuntimeError("boom after accept")
    else:
        protocol.close(404)


async def app(scope: Any, protocol: Any) -> None:
    """The RSGI app."""
    if scope.proto == "ws":
        await websocket(scope, protocol)
    else:
        await http(scope, protocol)


asgi = wrap(app)

# -- message tracer (bridge side only) -------------------------------------------------

TRACES: dict[str, list[str]] = {}


class Tracer:
    """ASGI middleware recording the message types sent for requests with an ``x-trace`` header."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/_trace":
            query = dict(urllib.parse.parse_qsl(scope["query_string"].decode()))
            body = json.dumps(
                {"messages": TRACES.pop(query.get("id", ""), None), "extensions": sorted(scope.get("extensions") or ())}
            ).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        trace_id = None
        if scope["type"] in ("http", "websocket"):
            trace_id = dict(scope["headers"]).get(b"x-trace")
        if trace_id is None:
            await self.inner(scope, receive, send)
            return
        kinds = TRACES.setdefault(trace_id.decode("latin-1"), [])

        async def traced_send(message: dict[str, Any]) -> None:
            kinds.append(message["type"])
            await send(message)

        await self.inner(scope, receive, traced_send)


traced = Tracer(asgi)

# -- hooked variant (lifespan / drain matrix) ------------------------------------------


def _log_hook(event: str) -> None:
    path = os.environ.get("DIFF_HOOK_LOG")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


class Hooked:
    """The diff app with synchronous RSGI hooks that use ``loop.run_until_complete``."""

    def __rsgi_init__(self, loop: Any) -> None:
        async def ready() -> str:
            await asyncio.sleep(0)
            return "init"

        _log_hook(loop.run_until_complete(ready()))

    def __rsgi_del__(self, loop: Any) -> None:
        async def done() -> str:
            await asyncio.sleep(0)
            return "del"

        _log_hook(loop.run_until_complete(done()))

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.path == "/slow":
            _log_hook("slow-start")
            await app(scope, protocol)
            _log_hook("slow-end")
            return
        await app(scope, protocol)


hooked = Hooked()
hooked_asgi = wrap(hooked)
