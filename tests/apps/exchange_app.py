"""An RSGI app for the HTTP exchange tests (issue 12), served natively and through the bridge.

``granian --interface rsgi tests.apps.exchange_app:app`` is the reference; ``asgi`` (the app
wrapped by the bridge) runs on every ASGI server, and ``gzip_app`` mounts it under ``/m`` in a
Starlette app behind Starlette's real ``GZipMiddleware``. ``latin1`` is the app wrapped with
``header_decoding="latin-1"``.

What the app saw (timings, exceptions, results of awaits done after responding) is kept in the
process (``STATE``) and read back with ``GET /state?key=K`` (JSON, ``null`` until set), so a test
can see what happened on the app side. Every server serves with one worker, so one process.
File routes take the file to send in the query (``?path=``): the tests make large files in a
temporary directory at test time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import urllib.parse
from collections import namedtuple
from typing import Any

from rsgi_bridge import wrap

STATE: dict[str, Any] = {}
TASKS: set[asyncio.Task[Any]] = set()  # background tasks kept alive until done
PROTOCOLS: list[Any] = []  # protocols kept after their request ended (behaviour 10)

Pair = namedtuple("Pair", ["name", "value"])

TEXT = ("The quick brown fox jumps over the lazy dog. " * 40).encode()  # 1800 bytes: GZip compresses it


def _q(scope: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(scope.query_string, keep_blank_values=True))


def _keep(coro: Any) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return task


def _record(key: str, value: Any) -> None:
    STATE[key] = value


def _exc(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


async def http(scope: Any, protocol: Any) -> None:
    path = scope.path
    q = _q(scope)
    key = q.get("key", "")
    if path == "/state":
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(STATE.get(key)))
    # -- 1: plain answers of every kind (GZip) ------------------------------------------------
    elif path == "/text":
        protocol.response_bytes(200, [("content-type", "text/plain")], TEXT)
    elif path == "/small":
        protocol.response_bytes(200, [("content-type", "text/plain")], b"small")
    elif path == "/stream":
        transport = protocol.response_stream(200, [("content-type", "text/plain")])
        for i in range(int(q.get("n", 40))):
            await transport.send_bytes(TEXT[i * 40 : i * 40 + 40])
    elif path == "/file":
        headers = [("content-type", "application/octet-stream")]
        if "length" in q:
            headers.append(("content-length", str(os.path.getsize(q["path"]))))
        protocol.response_file(200, headers, q["path"])
    elif path == "/error":
        raise RuntimeError("boom (expected by the test)")
    elif path == "/no-response":
        return
    elif path == "/empty":
        protocol.response_empty(204 if q.get("status") == "204" else 200, [("x-e", "1")])
    # -- 2: a response set from a child task ---------------------------------------------------
    elif path == "/child":
        kind = q.get("kind", "bytes")

        async def child() -> None:
            await asyncio.sleep(0.01)
            if kind == "file":
                protocol.response_file(200, [("content-type", "application/octet-stream")], q["path"])
            elif kind == "str":
                protocol.response_str(200, [("x-from", "child")], "from the child task")
            else:
                protocol.response_bytes(200, [("x-from", "child")], b"from the child task")

        await asyncio.create_task(child())
    # -- 3: the file transfer runs without the app --------------------------------------------
    elif path == "/file-then-sleep":
        protocol.response_file(200, [("content-type", "application/octet-stream")], q["path"])
        t0 = time.monotonic()
        await asyncio.sleep(0)
        _record(key, {"sleep0": time.monotonic() - t0})
    elif path == "/file-then-timeout":
        protocol.response_file(200, [("content-type", "application/octet-stream")], q["path"])
        t0 = time.monotonic()
        outcome = "returned"
        try:
            await asyncio.wait_for(asyncio.sleep(0.1), 0.05)
        except TimeoutError:
            outcome = "timeout"
        except BaseException as exc:  # what the app must never see
            outcome = _exc(exc)
            raise
        finally:
            _record(key, {"outcome": outcome, "took": time.monotonic() - t0})
    elif path == "/file-then-cancelled":
        # The app's own work after responding is cancelled (an app-side timeout around the handler).
        protocol.response_file(200, [("content-type", "application/octet-stream")], q["path"])

        async def after() -> None:
            await asyncio.sleep(30)

        t0 = time.monotonic()
        task = asyncio.ensure_future(after())
        await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        _record(key, {"took": time.monotonic() - t0})
    # -- 4: a server send error stays out of the app ------------------------------------------
    elif path in ("/wrong-length", "/wrong-length-stream"):
        seen: list[str] = []
        try:
            if path == "/wrong-length":
                protocol.response_bytes(200, [("content-length", q.get("says", "10"))], b"abc")
            else:
                transport = protocol.response_stream(200, [("content-length", q.get("says", "10"))])
                await transport.send_bytes(b"abc")
                del transport  # released: the body ends (3 of the 10 bytes it promised) when the handler returns
        except ValueError as exc:
            seen.append("refused: " + str(exc))

        async def background() -> None:
            try:
                for _ in range(5):
                    await asyncio.sleep(0.02)
                seen.append("background done")
            except BaseException as exc:
                seen.append("background " + _exc(exc))
                raise
            finally:
                _record(key, seen)

        task = _keep(background())
        try:
            for _ in range(5):
                await asyncio.sleep(0.02)
            seen.append("handler done")
        except BaseException as exc:
            seen.append("handler " + _exc(exc))
            _record(key, seen)
            raise
        await asyncio.wait([task], timeout=2)
    # -- 5: a departed client is noticed without the body being read --------------------------
    elif path == "/stream-forever":
        transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
        sent = 0
        t0 = time.monotonic()
        outcome = "ran out of time"
        try:
            while time.monotonic() - t0 < 20:
                await transport.send_bytes(b"x" * 1024)
                sent += 1
                await asyncio.sleep(0.005)
        except Exception as exc:
            outcome = _exc(exc)
        _record(key, {"outcome": outcome, "sent": sent, "after": time.monotonic() - t0})
    elif path == "/wait-disconnect":
        protocol.response_stream(200, [])
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(protocol.client_disconnect(), 15)
            outcome = "resolved"
        except TimeoutError:
            outcome = "timeout"
        _record(key, {"outcome": outcome, "after": time.monotonic() - t0})
    elif path == "/pid":
        protocol.response_str(200, [], str(os.getpid()))
    # -- 6: HEAD ----------------------------------------------------------------------------------
    elif path == "/head-empty":
        protocol.response_empty(200, [("x-e", "1")])
    elif path == "/head-str-empty":
        protocol.response_str(200, [("x-e", "1")], "")
    # -- 7: framing headers -----------------------------------------------------------------------
    elif path == "/te-chunked":
        headers = [("transfer-encoding", "chunked"), ("content-type", "text/plain")]
        kind = q.get("kind", "bytes")
        if kind == "stream":
            transport = protocol.response_stream(200, headers)
            await transport.send_bytes(b"hello ")
            await transport.send_bytes(b"chunked")
        elif kind == "file":
            protocol.response_file(200, headers, q["path"])
        else:
            protocol.response_bytes(200, headers, b"hello chunked")
    elif path == "/two-lengths":
        first, second = q.get("first", "5"), q.get("second", "7")
        protocol.response_bytes(200, [("content-length", first), ("content-length", second)], b"12345")
    elif path == "/bad-length":
        protocol.response_bytes(200, [("content-length", q["value"])], b"12345")
    # -- 8: a stream kept by a background task ----------------------------------------------------
    elif path == "/stream-background":
        transport = protocol.response_stream(200, [("content-type", "text/plain")])
        await transport.send_bytes(b"handler;")

        async def later() -> None:
            try:
                for i in range(3):
                    await asyncio.sleep(0.1)
                    await transport.send_bytes(f"task {i};".encode())
                outcome = "sent"
            except Exception as exc:
                outcome = _exc(exc)
            _record(key, outcome)

        _keep(later())
    elif path == "/stream-background-forever":
        # The handler returns; a background task keeps the transport and sends until a send fails
        # (the client leaves): that send must raise ProtocolClosed.
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b"handler;")

        async def forever() -> None:
            t0 = time.monotonic()
            outcome: Any = "ran out of time"
            try:
                while time.monotonic() - t0 < 15:
                    await transport.send_bytes(b"x" * 512)
                    await asyncio.sleep(0.01)
            except Exception as exc:
                outcome = {"error": _exc(exc), "name": type(exc).__name__, "runtime": isinstance(exc, RuntimeError)}
            _record(key, outcome)

        _keep(forever())
    # -- 9: reading the body after responding -------------------------------------------------------
    elif path == "/body-after":
        protocol.response_bytes(200, [], b"answered first")
        try:
            body = await asyncio.wait_for(protocol(), 5)
            outcome: Any = {"body": body.decode("latin-1")}
        except Exception as exc:
            outcome = {"error": _exc(exc)}
        _record(key, outcome)
    # -- 10: client_disconnect() after the request ended ------------------------------------------
    elif path == "/keep-protocol":
        PROTOCOLS.append(protocol)
        protocol.response_str(200, [], "kept")

        async def later() -> None:
            await asyncio.sleep(0.3)  # the request has ended by then
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(protocol.client_disconnect(), 5)
                outcome = "resolved"
            except TimeoutError:
                outcome = "hung"
            except Exception as exc:
                outcome = _exc(exc)
            _record(key, {"outcome": outcome, "after": time.monotonic() - t0})

        _keep(later())
    # -- 11: namedtuple header pairs, method as sent ------------------------------------------------
    elif path == "/namedtuple-headers":
        protocol.response_bytes(200, [Pair("x-a", "1"), Pair("x-b", "2")], b"ok")
    elif path == "/method":
        protocol.response_str(200, [], scope.method)
    # -- 12: only RSGI members -------------------------------------------------------------------
    elif path == "/members":
        names = [n for n in dir(protocol) if not n.startswith("_")]
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(names))
    elif path == "/call-close":
        outcome = "no error"
        try:
            protocol.close()
        except AttributeError:
            outcome = "AttributeError"
        except Exception as exc:
            outcome = _exc(exc)
        protocol.response_str(200, [], outcome)
    # -- 13: request header values that are not visible ASCII -----------------------------------
    elif path == "/headers":
        h = scope.headers
        out = {
            "get": h.get("x-v"),
            "get_all": h.get_all("x-v"),
            "items": [[n, v] for n, v in h.items() if n.startswith("x-")],
            "keys": [n for n in h.keys() if n.startswith("x-")],  # noqa: SIM118
            "contains": "x-v" in h,
        }
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(out))
    else:
        protocol.response_str(404, [], "no route")


async def app(scope: Any, protocol: Any) -> None:
    """The RSGI app."""
    if scope.proto == "http":
        await http(scope, protocol)


bridged = wrap(app)


class _Latin1:
    """``wrap(app, header_decoding="latin-1")``; on a bridge without the option, a 500 saying so."""

    def __init__(self) -> None:
        self.error = ""
        try:
            self.inner: Any = wrap(app, header_decoding="latin-1")  # type: ignore[call-arg]
        except TypeError as exc:
            self.inner = None
            self.error = str(exc)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.inner is not None:
            await self.inner(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 500, "headers": [(b"x-error", b"no header_decoding")]})
        await send({"type": "http.response.body", "body": self.error.encode()})


latin1 = _Latin1()


async def _raw_asgi(rel: str, scope: dict[str, Any], send: Any) -> None:
    """Plain ASGI answers (no bridge): what the server itself does, to tell its part from the bridge's."""
    if rel == "/asgi/method":
        # the method exactly as the server puts it in the ASGI scope
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["method"].encode()})
    else:  # /asgi/no-length: a response without content-length and an empty body
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-e", b"1")]})
        await send({"type": "http.response.body", "body": b""})


class Dispatch:
    """The bridged app; ``/latin1/...`` goes to ``latin1``, ``/asgi/...`` to plain ASGI answers.

    ``send`` is handed on untouched (the bridged app sees the server's own ``send``).
    """

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"]
            rel = path[len(root) :] if root and path.startswith(root) else path
            if rel.startswith("/asgi/"):
                await _raw_asgi(rel, scope, send)
                return
            if rel.startswith("/latin1/"):
                await latin1({**scope, "root_path": root + "/latin1"}, receive, send)
                return
        await bridged(scope, receive, send)


asgi = Dispatch()


def _gzip_app() -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.gzip import GZipMiddleware
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/m", app=asgi)], middleware=[Middleware(GZipMiddleware, minimum_size=100)])


gzip_app = _gzip_app()


def _mount_app() -> Any:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    return Starlette(routes=[Mount("/m", app=asgi)])


mount_app = _mount_app()
