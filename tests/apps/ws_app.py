"""An RSGI test app exercising the websocket protocol; ``asgi`` is the same app through the bridge.

The app is plain RSGI: ``python -m granian --interface rsgi tests.apps.ws_app:app`` serves it
natively, so tests can compare the bridge with Granian.

HTTP ``/_events`` returns (and clears) what the app observed: exceptions raised by protocol
calls, what ``receive()`` returned after the client left, when a push loop stopped, and so on.
Websocket routes take their parameters from the query string.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from typing import Any

from rsgi_bridge import ProtocolClosed, ProtocolError, wrap
from tests.apps.http_app import dump_scope

EVENTS: list[Any] = []


def record(*event: Any) -> None:
    EVENTS.append(list(event))


def _exc(exc: BaseException) -> str:
    """The RSGI name of an exception (``ProtocolClosed``/``ProtocolError``) or its class name."""
    if isinstance(exc, ProtocolClosed):
        return "ProtocolClosed"
    if isinstance(exc, ProtocolError):
        return "ProtocolError"
    return type(exc).__name__


def _kind(msg: Any) -> list[Any]:
    """[int(kind), type name of kind, data] of a received message, JSON-friendly."""
    data = getattr(msg, "data", "<no data attribute>")
    if isinstance(data, bytes):
        data = f"<{len(data)} bytes>"
    return [int(msg.kind), type(msg.kind).__name__, data]


async def _echo(transport: Any) -> int:
    """Echo frames until the client closes; return how many were echoed."""
    n = 0
    while True:
        msg = await transport.receive()
        if msg.kind == 0:
            return n
        if msg.kind == 1:
            await transport.send_bytes(msg.data)
        else:
            await transport.send_str(msg.data)
        n += 1


async def _try(label: str, call: Any) -> Any:
    """Record ``ok`` or the exception of ``await call()`` (Granian raises some errors at call time)."""
    try:
        value = await call()
    except Exception as exc:
        record(label, _exc(exc))
        return None
    record(label, "ok", *([_kind(value)] if hasattr(value, "kind") else []))
    return value


async def websocket(scope: Any, protocol: Any) -> None:
    path = scope.path
    q = dict(urllib.parse.parse_qsl(scope.query_string))
    if path == "/echo":
        transport = await protocol.accept()
        await _echo(transport)
        protocol.close()
    elif path.endswith("/scope"):
        transport = await protocol.accept()
        await transport.send_str(json.dumps(dump_scope(scope)))
        await transport.receive()  # the client's "done" (or its close)
        protocol.close(1000)
    elif path == "/reject":
        # close() before accept: ?status=403|404|1000|none
        status = q.get("status", "none")
        protocol.close(None if status == "none" else int(status))
    elif path == "/server-close":
        # accept, say hello, close with ?code=...
        transport = await protocol.accept()
        await transport.send_str("bye")
        code = q.get("code")
        record("server-close", repr(protocol.close(int(code)) if code else protocol.close()))
    elif path == "/close-then-work":
        # close() and keep working: the close frame should leave at the next await
        transport = await protocol.accept()
        await transport.send_str("hi")
        protocol.close(1000)
        await asyncio.sleep(2)
        record("worked-after-close")
    elif path == "/return-open":
        transport = await protocol.accept()
        await transport.send_str("hi")
    elif path == "/after-client-close":
        # what receive() returns once the client closed, then a send, then close()
        transport = await protocol.accept()
        await transport.send_str("ready")
        kinds: list[Any] = []
        for _ in range(3):
            try:
                kinds.append(_kind(await asyncio.wait_for(transport.receive(), 5)))
            except Exception as exc:
                kinds.append(_exc(exc))
        record("receives", kinds)
        await _try("send-after-client-close", lambda: transport.send_str("late"))
        try:
            protocol.close()
            protocol.close()
            record("close-after-client-close", "ok")
        except Exception as exc:
            record("close-after-client-close", _exc(exc))
    elif path == "/late-send":
        # the client closes right after "ready"; the app only sends, never receives
        transport = await protocol.accept()
        await transport.send_str("ready")
        await asyncio.sleep(float(q.get("wait", "0.5")))
        t0 = time.monotonic()
        await _try("late-send", lambda: transport.send_str("late"))
        record("late-send-took", round(time.monotonic() - t0, 3))
    elif path == "/push":
        # push a message every ?interval seconds until a send fails
        transport = await protocol.accept()
        interval = float(q.get("interval", "0.02"))
        n = 0
        try:
            while True:
                await transport.send_str(f"push {n}")
                n += 1
                await asyncio.sleep(interval)
        except Exception as exc:
            record("push-stopped", n, _exc(exc), time.time())
    elif path == "/ordering":
        # receive ?n messages, check their order, then send ?n messages
        n = int(q.get("n", "1000"))
        transport = await protocol.accept()
        got = []
        for _ in range(n):
            msg = await transport.receive()
            got.append(msg.data)
        in_order = got == [str(i) for i in range(n)]
        record("ordering-received", len(got), in_order)
        await transport.send_str(f"received {len(got)} in_order={in_order}")
        for i in range(n):
            await transport.send_str(str(i))
        msg = await transport.receive()
        record("ordering-final", _kind(msg))
    elif path == "/chat":
        # one task receives (and answers), another pushes ticks, concurrently
        transport = await protocol.accept()
        stop = asyncio.Event()

        async def ticker() -> None:
            i = 0
            while not stop.is_set():
                await transport.send_str(f"tick {i}")
                i += 1
                await asyncio.sleep(0.01)

        async def reader() -> None:
            while True:
                msg = await transport.receive()
                if msg.kind == 0 or msg.data == "bye":
                    stop.set()
                    return
                await transport.send_str(f"echo {msg.data}")

        tick = asyncio.ensure_future(ticker())
        await reader()
        await tick
        record("chat-done")
        protocol.close(1000)
    elif path == "/accept-twice":
        # (a second accept() panics Granian 2.8's worker)
        transport = await protocol.accept()
        await _try("accept-twice", lambda: protocol.accept())
        await transport.send_str("still open")
        protocol.close(1000)
    elif path == "/misuse":
        transport = await protocol.accept()
        await _try("send_bytes-str", lambda: transport.send_bytes("text"))
        await _try("send_str-bytes", lambda: transport.send_str(b"bytes"))
        await _try("send_str-surrogate", lambda: transport.send_str("\ud800"))  # cannot be UTF-8: nothing sent
        await _try("send_bytes-bytearray", lambda: transport.send_bytes(bytearray(b"ba")))
        await _try("send_bytes-memoryview", lambda: transport.send_bytes(memoryview(b"mv")))
        record("close", repr(protocol.close(1000)))
        record("close-again", repr(protocol.close(1000)))
        await _try("send-after-close", lambda: transport.send_str("after"))
        await _try("receive-after-close", lambda: asyncio.wait_for(transport.receive(), 3))
        await _try("receive-after-close-2", lambda: asyncio.wait_for(transport.receive(), 3))
    elif path == "/two-receivers":
        # two tasks wait in receive() at once: each message reaches exactly one of them
        transport = await protocol.accept()

        async def one() -> Any:
            return (await transport.receive()).data

        first = asyncio.ensure_future(one())
        await asyncio.sleep(0)  # the first receiver is waiting now
        second = asyncio.ensure_future(one())
        await asyncio.sleep(0)
        await transport.send_str("ready")
        got = await asyncio.wait_for(asyncio.gather(first, second), 5)
        await transport.send_str(",".join(sorted(got)))
        await _echo(transport)  # and the connection goes on as usual
    elif path == "/close-from-task":
        # a reader task is blocked in receive() while another task calls close()
        transport = await protocol.accept()
        await transport.send_str("ready")

        async def reader() -> None:
            while True:
                try:
                    msg = await transport.receive()
                except Exception as exc:
                    record("reader", _exc(exc))
                    return
                record("reader", _kind(msg))
                if msg.kind == 0:
                    return

        async def closer() -> None:
            await asyncio.sleep(0.3)
            protocol.close(4000)
            record("closer", "closed")

        read = asyncio.ensure_future(reader())
        close_task = asyncio.ensure_future(closer())
        done, _ = await asyncio.wait([read], timeout=3)
        record("reader-finished", bool(done))
        read.cancel()
        await close_task
    elif path == "/raise-before":
        raise RuntimeError("boom before accept")
    elif path == "/raise-after":
        transport = await protocol.accept()
        await transport.send_str("about to fail")
        raise RuntimeError("boom after accept")
    else:
        protocol.close(404)


async def app(scope: Any, protocol: Any) -> None:
    if scope.proto == "ws":
        await websocket(scope, protocol)
        return
    if scope.path == "/_events":
        out = list(EVENTS)
        EVENTS.clear()
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(out))
        return
    protocol.response_str(404, [], "not found")


asgi = wrap(app)
