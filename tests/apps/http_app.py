"""An RSGI test app exercising every HTTP feature; ``asgi`` is the same app through the bridge.

``/_events`` returns (and clears) what the app recorded: exceptions raised by protocol calls,
disconnects seen, and so on, so tests can assert what the app observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import urllib.parse
from typing import Any

from rsgi_bridge import ProtocolClosed, ProtocolError, wrap

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
FILE = os.path.join(DATA_DIR, "file.bin")
EVENTS: list[Any] = []
KEPT: dict[str, Any] = {}


def _ensure_file() -> None:
    os.makedirs(DATA_DIR, exist_ok=True)
    want = bytes(range(256)) * 1024  # 256 KiB, every byte value
    if not os.path.exists(FILE) or os.path.getsize(FILE) != len(want):
        with open(FILE, "wb") as f:
            f.write(want)


_ensure_file()


def record(*event: Any) -> None:
    EVENTS.append(list(event))


def _exc(exc: BaseException) -> list[str]:
    """[name, message, is-a-RuntimeError]; bridge errors named by their RSGI names."""
    name = type(exc).__name__
    if isinstance(exc, ProtocolClosed):
        name = "ProtocolClosed"
    elif isinstance(exc, ProtocolError):
        name = "ProtocolError"
    return [name, str(exc), "yes" if isinstance(exc, RuntimeError) else "no"]


def dump_scope(scope: Any) -> dict[str, Any]:
    """Everything an RSGI app can read from its scope, JSON-friendly."""
    h = scope.headers
    return {
        "proto": scope.proto,
        "rsgi_version": scope.rsgi_version,
        "http_version": scope.http_version,
        "server": scope.server,
        "client": scope.client,
        "scheme": scope.scheme,
        "method": scope.method,
        "path": scope.path,
        "query_string": scope.query_string,
        "authority": scope.authority,
        "headers_items": [list(p) for p in h.items()],
        "headers_keys": list(h.keys()),
        "headers_values": list(h.values()),
        "x_rep_get": h.get("x-rep"),
        "x_rep_all": h.get_all("x-rep"),
        "x_rep_item": _getitem(h, "x-rep"),
        "missing_item": _getitem(h, "x-missing"),
        "contains_x_rep": "x-rep" in h,
        "missing_get": h.get("x-missing", "dflt"),
        "missing_all": h.get_all("x-missing"),
        "contains_host": "host" in h,
        "len_matches_keys": len(h) == len(list(h.keys())),
        "iter_matches_keys": list(iter(h)) == list(h.keys()),
        "len": len(h),
        "upgrade": h.get("upgrade"),
        "has_key": "sec-websocket-key" in h,
    }


def _getitem(headers: Any, name: str) -> str:
    try:
        return str(headers[name])
    except KeyError:
        return "<KeyError>"


async def app(scope: Any, protocol: Any) -> None:
    path = scope.path
    q = dict(urllib.parse.parse_qsl(scope.query_string))
    if scope.proto == "ws":
        await websocket(scope, protocol, path)
        return
    if path == "/_events":
        out = list(EVENTS)
        EVENTS.clear()
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(out))
    elif path.endswith("/scope"):
        protocol.response_str(200, [("content-type", "application/json")], json.dumps(dump_scope(scope)))
    elif path == "/str":
        protocol.response_str(200, [("content-type", "text/plain; charset=utf-8")], "héllo wörld")
    elif path == "/bytes":
        protocol.response_bytes(201, [("x-kind", "bytes")], b"\x00\x01bytes")
    elif path == "/bytearray":
        protocol.response_bytes(200, [], bytearray(b"from-bytearray"))
    elif path == "/memoryview":
        protocol.response_bytes(200, [], memoryview(b"from-memoryview"))
    elif path == "/empty":
        protocol.response_empty(204, [])
    elif path == "/empty200":
        protocol.response_empty(200, [("x-e", "1")])
    elif path == "/defaults":
        protocol.response_bytes()
    elif path == "/tuple-headers":
        protocol.response_bytes(200, (("x-a", "1"), ("x-a", "2"), ("x-b", "3")), b"ok")
    elif path == "/unicode-header":
        protocol.response_bytes(200, [("x-e", "€"), ("x-u", "ü")], b"ok")
    elif path == "/status":
        protocol.response_bytes(int(q["code"]), [], b"status")
    elif path == "/echo":
        body = await protocol()
        protocol.response_bytes(200, [("x-len", str(len(body)))], body)
    elif path == "/echo-iter":
        parts = [chunk async for chunk in protocol]
        protocol.response_bytes(200, [("x-chunks", str(len(parts)))], b"".join(parts))
    elif path == "/stream-echo":
        transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
        async for chunk in protocol:
            await transport.send_bytes(chunk)
    elif path == "/upload-count":
        n = 0
        async for chunk in protocol:
            n += len(chunk)
        protocol.response_str(200, [], str(n))
    elif path == "/upload-record":
        try:
            body = await protocol()
            record("upload", len(body))
        except Exception as exc:
            record("upload-error", *_exc(exc))
            raise
        protocol.response_empty(200, [])
    elif path == "/download":
        size, chunk = int(q.get("size", 1 << 20)), int(q.get("chunk", 65536))
        transport = protocol.response_stream(200, [("content-type", "application/octet-stream")])
        block = b"x" * chunk
        sent = 0
        while sent < size:
            n = min(chunk, size - sent)
            await transport.send_bytes(block if n == chunk else block[:n])
            sent += n
    elif path == "/stream-mixed":
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b"a")
        await transport.send_bytes(b"")
        await transport.send_str("b")
        await transport.send_str("")
        await transport.send_bytes(bytearray(b"c"))
        await transport.send_bytes(memoryview(b"d"))
    elif path == "/stream-slow":
        transport = protocol.response_stream(200, [])
        for i in range(int(q.get("n", 3))):
            await transport.send_str(f"{i}\n")
            await asyncio.sleep(float(q.get("delay", 0.3)))
    elif path == "/stream-until-closed":
        transport = protocol.response_stream(200, [])
        i = 0
        try:
            while i < 20000:
                await transport.send_bytes(b"y" * 1024)
                i += 1
                await asyncio.sleep(0.005)
            record("stream-finished", i)
        except Exception as exc:
            record("stream-closed", i, *_exc(exc))
    elif path == "/stream-error":
        transport = protocol.response_stream(200, [])
        await transport.send_bytes(b"partial")
        raise RuntimeError("boom mid-stream")
    elif path == "/file":
        protocol.response_file(200, [("content-type", "application/octet-stream")], FILE)
    elif path == "/file-pathlike":
        import pathlib

        protocol.response_file(200, [], pathlib.Path(FILE))
    elif path == "/range":
        start, end = int(q["start"]), int(q["end"])
        protocol.response_file_range(
            206, [("content-range", f"bytes {start}-{end - 1}/{os.path.getsize(FILE)}")], FILE, start, end
        )
    elif path == "/range-invalid":
        try:
            protocol.response_file_range(206, [], FILE, int(q["start"]), int(q["end"]))
        except Exception as exc:
            record("range-invalid", *_exc(exc))
            raise
    elif path == "/missing-file":
        protocol.response_file(200, [("x-never", "1")], os.path.join(DATA_DIR, "does-not-exist"))
    elif path == "/dir-file":
        protocol.response_file(200, [], DATA_DIR)
    elif path == "/error":
        raise RuntimeError("boom")
    elif path == "/no-response":
        return
    elif path == "/respond-then-raise":
        protocol.response_bytes(200, [], b"sent")
        raise RuntimeError("after response")
    elif path == "/twice":
        protocol.response_bytes(200, [], b"first")
        protocol.response_str(201, [], "second")
        protocol.response_empty(202, [])
        protocol.response_file(200, [], FILE)
    elif path == "/stream-after-response":
        protocol.response_bytes(200, [], b"first")
        try:
            protocol.response_stream(200, [])
        except Exception as exc:
            record("stream-after-response", *_exc(exc))
    elif path == "/read-twice":
        await protocol()
        try:
            await protocol()
        except Exception as exc:
            record("read-twice", *_exc(exc))
        try:
            async for _ in protocol:
                pass
        except Exception as exc:
            record("iter-after-read", *_exc(exc))
        protocol.response_empty(200, [])
    elif path == "/sleep-after":
        protocol.response_bytes(200, [], b"early")
        await asyncio.sleep(float(q.get("t", 1.5)))
        record("sleep-after-done")
    elif path == "/respond-from-task":

        async def other() -> None:
            protocol.response_bytes(200, [], b"from-task")
            await asyncio.sleep(1.5)

        await asyncio.create_task(other())
    elif path == "/slow":
        await asyncio.sleep(float(q.get("t", 2)))
        protocol.response_str(200, [], "slow done")
    elif path == "/disconnect":
        waiter = asyncio.ensure_future(protocol.client_disconnect())
        try:
            await asyncio.wait_for(asyncio.shield(waiter), float(q.get("t", 10)))
            record("client-disconnect")
        except TimeoutError:
            record("client-disconnect-timeout")
        protocol.response_empty(200, [])
    elif path == "/disconnect-cancel":
        # Emmett's pattern: race the work against client_disconnect() and cancel the watcher.
        waiter = asyncio.ensure_future(protocol.client_disconnect())
        await asyncio.sleep(0.05)
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        body = await protocol()
        protocol.response_bytes(200, [], body)
    elif path == "/disconnect-then-body":
        waiter = asyncio.ensure_future(protocol.client_disconnect())
        body = await protocol()
        waiter.cancel()
        protocol.response_bytes(200, [], body)
    elif path == "/keep-transport":
        KEPT["t"] = protocol.response_stream(200, [])
        await KEPT["t"].send_bytes(b"kept")
    elif path == "/use-kept":
        try:
            await KEPT["t"].send_bytes(b"late")
        except Exception as exc:
            record("use-kept", *_exc(exc))
        else:
            record("use-kept", "sent")
        KEPT.clear()  # released: the kept stream's body ends
        protocol.response_empty(200, [])
    elif path == "/bad":
        await bad_input(protocol, q["case"])
    else:
        protocol.response_empty(404, [])


BAD_CASES: dict[str, Any] = {
    "status-str": lambda p: p.response_bytes("200", [], b"x"),
    "status-float": lambda p: p.response_bytes(200.0, [], b"x"),
    "status-none": lambda p: p.response_empty(None, []),
    "status-99": lambda p: p.response_bytes(99, [], b"x"),
    "status-1000": lambda p: p.response_bytes(1000, [], b"x"),
    "status-negative": lambda p: p.response_str(-1, [], "x"),
    "headers-dict": lambda p: p.response_bytes(200, {"a": "b"}, b"x"),
    "headers-generator": lambda p: p.response_bytes(200, (h for h in [("a", "b")]), b"x"),
    "headers-list-pair": lambda p: p.response_bytes(200, [["a", "b"]], b"x"),
    "headers-bytes-pair": lambda p: p.response_bytes(200, [(b"a", b"b")], b"x"),
    "headers-1-tuple": lambda p: p.response_bytes(200, [("a",)], b"x"),
    "headers-3-tuple": lambda p: p.response_bytes(200, [("a", "b", "c")], b"x"),
    "headers-str": lambda p: p.response_bytes(200, "a: b", b"x"),
    "headers-none": lambda p: p.response_bytes(200, None, b"x"),
    "name-space": lambda p: p.response_bytes(200, [("a b", "c")], b"x"),
    "name-colon": lambda p: p.response_bytes(200, [("a:b", "c")], b"x"),
    "name-empty": lambda p: p.response_bytes(200, [("", "c")], b"x"),
    "name-crlf": lambda p: p.response_bytes(200, [("x-a\r\nx-evil", "c")], b"x"),
    "name-unicode": lambda p: p.response_bytes(200, [("x-é", "c")], b"x"),
    "value-crlf": lambda p: p.response_bytes(200, [("x-a", "a\r\nx-evil: 1")], b"x"),
    "value-lf": lambda p: p.response_bytes(200, [("x-a", "a\nx-evil: 1")], b"x"),
    "value-cr": lambda p: p.response_bytes(200, [("x-a", "a\rx")], b"x"),
    "value-nul": lambda p: p.response_bytes(200, [("x-a", "a\x00b")], b"x"),
    "value-int": lambda p: p.response_bytes(200, [("x-a", 1)], b"x"),
    "value-bytes": lambda p: p.response_bytes(200, [("x-a", b"1")], b"x"),
    "bytes-body-str": lambda p: p.response_bytes(200, [], "text"),
    "str-body-bytes": lambda p: p.response_str(200, [], b"bytes"),
    "bytes-body-int": lambda p: p.response_bytes(200, [], 5),
    "stream-status": lambda p: p.response_stream(42, []),
    "stream-headers": lambda p: p.response_stream(200, [("x-a", "1\r\n")]),
    "file-status": lambda p: p.response_file("200", [], FILE),
    "file-path-int": lambda p: p.response_file(200, [], 42),
    "range-start-end": lambda p: p.response_file_range(206, [], FILE, 5, 5),
    "range-reversed": lambda p: p.response_file_range(206, [], FILE, 10, 2),
    "range-negative": lambda p: p.response_file_range(206, [], FILE, -1, 2),
}


async def bad_input(protocol: Any, case: str) -> None:
    if case == "send-bytes-str":
        transport = protocol.response_stream(200, [])
        await transport.send_bytes("str")
    elif case == "send-str-bytes":
        transport = protocol.response_stream(200, [])
        await transport.send_str(b"bytes")
    else:
        try:
            BAD_CASES[case](protocol)
        except Exception as exc:
            record("bad", case, *_exc(exc))
            raise


async def websocket(scope: Any, protocol: Any, path: str) -> None:
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
    elif path == "/ws/scope":
        transport = await protocol.accept()
        await transport.send_str(json.dumps(dump_scope(scope)))
        protocol.close(1000)
    elif path == "/ws/reject":
        protocol.close(403)
    else:
        protocol.close(404)


class HookedApp:
    """The same app with hooks that record into ``$RSGI_TEST_HOOK_LOG`` and use ``run_until_complete``."""

    def __init__(self) -> None:
        self.value: Any = None

    def _log(self, line: str) -> None:
        path = os.environ.get("RSGI_TEST_HOOK_LOG")
        if path:
            with open(path, "a") as f:
                f.write(f"{os.getpid()} {line}\n")

    def __rsgi_init__(self, loop: Any) -> None:
        async def setup() -> str:
            await asyncio.sleep(0.01)
            return "ready"

        self.value = loop.run_until_complete(setup())
        self.loop = loop
        self._log(f"init {self.value}")

    def __rsgi_del__(self, loop: Any) -> None:
        async def teardown() -> str:
            await asyncio.sleep(0.01)
            return "closed"

        self._log(f"del {loop.run_until_complete(teardown())}")

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        if scope.path == "/hook-value":
            fut = self.loop.create_future()
            self.loop.call_soon(fut.set_result, self.value)
            protocol.response_str(200, [], await fut)
            return
        await app(scope, protocol)


asgi = wrap(app)
hooked = HookedApp()
hooked_asgi = wrap(hooked)
