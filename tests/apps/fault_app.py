"""An RSGI app for fault, leak and load tests; ``asgi`` is the same app through the bridge.

Plain RSGI: ``python -m granian --interface rsgi tests.apps.fault_app:app`` serves it natively,
so tests can compare the bridge with Granian.

Paths it does not know go to ``tests.apps.http_app.app`` (``/bad?case=...``, ``/unicode-header``,
...). ``/_events`` returns (and clears) what either app observed (exceptions raised by protocol
calls, cancellations, ...). ``/_stats`` reports ``len(asyncio.all_tasks())``, the tasks running
bridge or app code, the bridge's in-flight count without the stats request itself (``None``
under Granian), outcome counters and the bytes the last download has sent so far; with
``?collect=1`` after a garbage collection, with ``?objects=1`` also the live objects.

``observed`` is ``asgi`` with a record of how the server's call of it ended for a few long-running
paths (``/long``, ``/long-read``, ``/ws/long``): whether a cancellation by the server came back to
the server as a cancellation.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import urllib.parse
from collections import Counter
from typing import Any

from rsgi_bridge import ProtocolClosed, ProtocolError, wrap
from tests.apps import http_app

EVENTS: list[Any] = []
COUNTS: Counter[str] = Counter()
PROGRESS: dict[str, int] = {"sent": 0}
KEPT: dict[str, Any] = {}


def record(*event: Any) -> None:
    EVENTS.append(list(event))


def exc_name(exc: BaseException) -> str:
    """The RSGI name of an exception (``ProtocolClosed``/``ProtocolError``) or its class name."""
    if isinstance(exc, ProtocolClosed):
        return "ProtocolClosed"
    if isinstance(exc, ProtocolError):
        return "ProtocolError"
    return type(exc).__name__


def _ours(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    name = code.co_filename if code is not None else ""
    return f"{os.sep}rsgi_bridge{os.sep}" in name or f"{os.sep}tests{os.sep}apps{os.sep}" in name


def _json(protocol: Any, data: Any) -> None:
    protocol.response_str(200, [("content-type", "application/json")], json.dumps(data))


async def app(scope: Any, protocol: Any) -> None:
    if scope.proto == "ws":
        await websocket(scope, protocol)
        return
    path = scope.path
    q = dict(urllib.parse.parse_qsl(scope.query_string))
    if path == "/hello":
        COUNTS["hello"] += 1
        protocol.response_bytes(200, [("content-type", "text/plain")], b"hello, world")
    elif path == "/ctl-header":
        # a control character other than CR, LF, NUL in a value (?c=hex code point)
        protocol.response_bytes(200, [("x-c", "a" + chr(int(q.get("c", "1"), 16)) + "b"), ("x-ok", "1")], b"body")
    elif path == "/_events":
        out = EVENTS + http_app.EVENTS
        EVENTS.clear()
        http_app.EVENTS.clear()
        _json(protocol, out)
    elif path == "/_stats":
        if q.get("collect"):  # free reference cycles first (hypercorn leaves some per connection)
            gc.collect()
        tasks = asyncio.all_tasks()
        stats = {
            "tasks": len(tasks),
            # tasks running bridge or app code (watchers, flushes, ...), not the server's own
            "bridge_tasks": sum(1 for t in tasks if _ours(t)),
            # requests in flight in the bridge other than this one (None under Granian)
            "inflight": asgi.lifecycle.inflight - 1 if asgi.lifecycle.state != "new" else None,
            "counts": dict(COUNTS),
            "sent": PROGRESS["sent"],
        }
        if q.get("objects"):  # live objects: the bridge's by type, and how many the collector tracks
            tracked = gc.get_objects()
            stats["bridge_objects"] = dict(
                Counter(type(o).__qualname__ for o in tracked if str(type(o).__module__).startswith("rsgi_bridge"))
            )
            stats["all_objects"] = len(tracked)
            del tracked
            stats["blocks"] = sys.getallocatedblocks()  # every allocation of Python's object allocator
        if q.get("detail"):  # what the tasks are running, for failure messages
            stats["detail"] = Counter(getattr(t.get_coro(), "__qualname__", "?") for t in asyncio.all_tasks())
        if q.get("reset"):
            COUNTS.clear()
        _json(protocol, stats)
    elif path == "/_gc":
        # ?start: collect, then keep what the collector would free; ?stop: report the bridge's objects
        # among it (each one was in a reference cycle, i.e. not freed when its request ended)
        if q.get("start"):
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            _json(protocol, {})
        else:
            gc.collect()
            found = Counter(type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("rsgi_bridge"))
            gc.garbage.clear()
            gc.set_debug(0)
            _json(protocol, dict(found))
    elif path == "/upload":
        # whole-body read; the client may leave half-way
        try:
            body = await protocol()
        except Exception as exc:
            COUNTS["upload-" + exc_name(exc)] += 1
            if q.get("record"):
                record("upload-error", exc_name(exc), isinstance(exc, RuntimeError))
            raise
        COUNTS["upload-ok"] += 1
        if q.get("record"):
            record("upload-ok", len(body))
        protocol.response_str(200, [], str(len(body)))
    elif path == "/upload-iter":
        # chunked read: what arrived before the client left
        got = 0
        try:
            async for chunk in protocol:
                got += len(chunk)
        except Exception as exc:
            record("upload-iter-error", exc_name(exc), got > 0)
            raise
        record("upload-iter-ok", got)
        protocol.response_str(200, [], str(got))
    elif path == "/download":
        size, chunk = int(q.get("size", 1 << 40)), int(q.get("chunk", 65536))
        delay = float(q.get("delay", 0))
        transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
        block = b"x" * chunk
        PROGRESS["sent"] = sent = 0
        try:
            while sent < size:
                n = min(chunk, size - sent)
                await transport.send_bytes(block if n == chunk else block[:n])
                sent += n
                PROGRESS["sent"] = sent
                if delay:
                    await asyncio.sleep(delay)
        except Exception as exc:
            COUNTS["download-" + exc_name(exc)] += 1
            if q.get("record"):
                record("download-error", exc_name(exc), isinstance(exc, RuntimeError))
            return
        COUNTS["download-done"] += 1
    elif path == "/wait-disconnect":
        # headers and one byte out, then wait for the client to leave
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b".")
        try:
            await asyncio.wait_for(protocol.client_disconnect(), float(q.get("t", 10)))
            COUNTS["disconnect-seen"] += 1
        except TimeoutError:
            COUNTS["disconnect-timeout"] += 1
    elif path == "/long":
        # a long request (the server may cancel it once the client left)
        try:
            await asyncio.sleep(float(q.get("t", 30)))
        except asyncio.CancelledError:
            record("long-cancelled")
            raise
        record("long-done")
        protocol.response_str(200, [], "long done")
    elif path == "/long-read":
        # reads the body, then keeps working on it
        try:
            body = await protocol()
            await asyncio.sleep(float(q.get("t", 30)))
        except asyncio.CancelledError:
            record("long-read-cancelled")
            raise
        except Exception as exc:
            record("long-read-error", exc_name(exc))
            raise
        protocol.response_str(200, [], str(len(body)))
    elif path == "/ws-use-kept":
        # a websocket transport kept past the end of its connection
        try:
            await asyncio.wait_for(KEPT["ws"].send_str("late"), 5)
            record("ws-use-kept", "ok")
        except Exception as exc:
            record("ws-use-kept", exc_name(exc))
        protocol.response_empty(200, [])
    else:
        await http_app.app(scope, protocol)


async def websocket(scope: Any, protocol: Any) -> None:
    path = scope.path
    if path == "/ws/echo":
        transport = await protocol.accept()
        while True:
            msg = await transport.receive()
            if msg.kind == 0:
                break
            if msg.kind == 1:
                await transport.send_bytes(msg.data)
            else:
                await transport.send_str(msg.data)
        protocol.close(1000)
    elif path == "/ws/hold":
        # the client leaves without a close frame: what do receive() and a send do then?
        transport = await protocol.accept()
        await transport.send_str("ready")
        seen: list[Any] = []
        for _ in range(2):
            try:
                msg = await asyncio.wait_for(transport.receive(), 10)
                seen.append(int(msg.kind))
            except Exception as exc:
                seen.append(exc_name(exc))
        try:
            await asyncio.wait_for(transport.send_str("late"), 5)
            seen.append("send-ok")
        except Exception as exc:
            seen.append("send-" + exc_name(exc))
        record("ws-hold", seen)
        protocol.close()
    elif path == "/ws/push":
        # push until a send fails
        transport = await protocol.accept()
        n = 0
        try:
            while n < 100_000:
                await transport.send_bytes(b"p" * 1024)
                n += 1
                await asyncio.sleep(0.002)
            record("ws-push", "finished")
        except Exception as exc:
            record("ws-push", exc_name(exc), n < 100_000)
    elif path == "/ws/keep":
        transport = await protocol.accept()
        KEPT["ws"] = transport
        await transport.send_str("kept")
        protocol.close(1000)
    elif path == "/ws/accept-after-close":
        protocol.close(403)
        try:
            await asyncio.wait_for(protocol.accept(), 5)
            record("accept-after-close", "ok")
        except Exception as exc:
            record("accept-after-close", exc_name(exc))
    elif path == "/ws/before-accept":
        # bridge only: a transport reached before the handshake (RSGI apps cannot get one under Granian)
        from rsgi_bridge.websocket import WebsocketTransport

        early = WebsocketTransport(protocol)
        for label, call in (("send", lambda: early.send_str("x")), ("receive", early.receive)):
            try:
                await asyncio.wait_for(call(), 5)
                record("before-accept", label, "ok")
            except Exception as exc:
                record("before-accept", label, exc_name(exc))
        protocol.close(403)
    elif path == "/ws/long":
        # accepted, then long work without receiving (the server may cancel it once the client left)
        transport = await protocol.accept()
        await transport.send_str("ready")
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            record("ws-long-cancelled")
            raise
        record("ws-long-done")
        protocol.close(1000)
    else:
        protocol.close(404)


asgi = wrap(app)

_OBSERVED = frozenset({"/long", "/long-read", "/ws/long"})


async def observed(scope: Any, receive: Any, send: Any) -> None:
    """``asgi`` as the server calls it, recording how that call ended for the paths in ``_OBSERVED``:
    ``["asgi-call", path, "cancelled"]`` when a cancellation came out of the bridge (the server's
    own, which the bridge must let through), ``"returned"`` or the exception's class name else."""
    path = scope.get("path")
    watched = path in _OBSERVED
    try:
        await asgi(scope, receive, send)
    except BaseException as exc:
        if watched:
            record("asgi-call", path, "cancelled" if isinstance(exc, asyncio.CancelledError) else type(exc).__name__)
        raise
    if watched:
        record("asgi-call", path, "returned")
