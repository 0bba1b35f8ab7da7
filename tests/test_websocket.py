"""The websocket half of the bridge, against real servers with the ``websockets`` client.

Every server in ``SERVERS`` runs ``tests.apps.ws_app:asgi`` once per module; the tests are
parametrized over them. A few tests compare with Granian serving the same RSGI app natively,
and a few check daphne, which has no handshake-denial extension. The last section drives
:class:`WebsocketProtocol` in-process with a scripted ASGI server for the cases a real
client cannot produce on demand.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from rsgi_bridge import ProtocolClosed, ProtocolError, WebsocketMessageType
from rsgi_bridge.websocket import _MAX_MESSAGES, close_websockets, serve_websocket
from tests.servers import Server, wait_for

APP = "tests.apps.ws_app:asgi"
MAX_SIZE = 32 * 1024 * 1024
BIG = 10 * 1024 * 1024

# name -> (server kind, extra args)
SERVERS: dict[str, tuple[str, list[str]]] = {
    "uvicorn-websockets": ("uvicorn", ["--ws", "websockets", "--ws-max-size", str(MAX_SIZE)]),
    "uvicorn-sansio": ("uvicorn", ["--ws", "websockets-sansio", "--ws-max-size", str(MAX_SIZE)]),
    "uvicorn-wsproto": ("uvicorn", ["--ws", "wsproto", "--ws-max-size", str(MAX_SIZE)]),
    "hypercorn": ("hypercorn", []),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    kind, extra = SERVERS[request.param]
    with Server(kind, APP, extra) as s:
        yield s


class Events:
    """What the app recorded (``/_events``), accumulated across polls."""

    def __init__(self, server: Server) -> None:
        self.url = server.url + "/_events"
        self.seen: list[Any] = []
        httpx.get(self.url, timeout=5)  # drop whatever earlier tests left

    def fetch(self) -> list[Any]:
        self.seen += httpx.get(self.url, timeout=5).json()
        return self.seen

    def get(self, label: str) -> list[list[Any]]:
        return [e[1:] for e in self.seen if e[0] == label]

    def wait(self, label: str, timeout: float = 5.0) -> list[list[Any]]:
        """Poll until ``label`` was recorded; return its events (payloads only)."""
        assert wait_for(lambda: any(e[0] == label for e in self.fetch()), timeout), (label, self.seen)
        return self.get(label)


@pytest.fixture
def events(server: Server) -> Events:
    return Events(server)


def ws_connect(server: Server, path: str, **kw: Any) -> ClientConnection:
    kw.setdefault("open_timeout", 10)
    kw.setdefault("close_timeout", 5)
    return connect(server.ws_url + path, proxy=None, **kw)


def drain(ws: ClientConnection, timeout: float = 5.0) -> tuple[list[Any], int | None]:
    """Receive until the server closes; return the messages and the close code it sent."""
    got: list[Any] = []
    while True:
        try:
            got.append(ws.recv(timeout))
        except ConnectionClosed as exc:
            return got, exc.rcvd.code if exc.rcvd is not None else None


def rejected_status(server: Server, path: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        ws_connect(server, path).close()
    return info.value.response.status_code


# -- echo, scope ---------------------------------------------------------------------


def test_echo_text_and_binary(server: Server) -> None:
    with ws_connect(server, "/echo") as ws:
        for text in ["hello", "", "héllo wörld €", "x" * 70_000]:
            ws.send(text)
            assert ws.recv(5) == text
        for data in [b"\x00\x01\xff", b"", bytes(range(256)) * 300]:
            ws.send(data)
            assert ws.recv(5) == data


def test_scope(server: Server) -> None:
    headers = [("X-Rep", "one"), ("x-rep", "two")]
    with ws_connect(server, "/caf%C3%A9/scope?a=1&b=%20x&c=%E2%82%AC", additional_headers=headers) as ws:
        local = ws.local_address
        s = json.loads(ws.recv(5))
        ws.send("done")
        messages, code = drain(ws)
    assert (messages, code) == ([], 1000)
    assert s["proto"] == "ws"
    assert s["rsgi_version"] == "1.6"
    assert s["http_version"] == "1.1"
    assert s["scheme"] == "http"
    assert s["method"] == "GET"
    assert s["path"] == "/café/scope"
    assert s["query_string"] == "a=1&b=%20x&c=%E2%82%AC"
    assert s["authority"] is None
    assert s["server"] == f"127.0.0.1:{server.port}"
    assert s["client"] == f"{local[0]}:{local[1]}"
    assert s["x_rep_get"] == "one"
    assert s["x_rep_all"] == ["one", "two"]
    assert s["upgrade"] == "websocket"
    assert s["has_key"] is True
    assert ["host", f"127.0.0.1:{server.port}"] in s["headers_items"]


# -- handshake rejection, closing ---------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("403", 403),
        ("404", 404),
        ("301", 301),
        ("1000", 403),
        ("none", 403),
        ("600", 403),
        # no status that cannot end a refused handshake goes out: 1xx (Granian: 500) and 2xx
        # (Granian passes them through, as if the handshake had succeeded) are refused with 500
        ("100", 500),
        ("101", 500),
        ("199", 500),
        ("200", 500),
        ("204", 500),
        ("299", 500),
    ],
)
def test_close_before_accept_rejects(server: Server, query: str, status: int) -> None:
    assert rejected_status(server, f"/reject?status={query}") == status


def test_unknown_route_gets_404(server: Server) -> None:
    assert rejected_status(server, "/no/such/route") == 404


@pytest.mark.parametrize(
    ("query", "code"), [("", 1000), ("?code=1000", 1000), ("?code=4001", 4001), ("?code=999", 1000)]
)
def test_server_initiated_close_code(server: Server, query: str, code: int) -> None:
    with ws_connect(server, "/server-close" + query) as ws:
        assert drain(ws) == (["bye"], code)


def test_close_leaves_at_next_await(server: Server, events: Events) -> None:
    # the app keeps working for 2 s after close(): the client must not wait for it
    t0 = time.monotonic()
    with ws_connect(server, "/close-then-work") as ws:
        assert drain(ws) == (["hi"], 1000)
    assert time.monotonic() - t0 < 1.5
    assert events.wait("worked-after-close") == [[]]


def test_app_returning_without_close_closes_1000(server: Server) -> None:
    with ws_connect(server, "/return-open") as ws:
        assert drain(ws) == (["hi"], 1000)


def test_app_error_before_accept_is_403_and_logged(server: Server) -> None:
    # as Granian: an app that raises before accept is refused like one that returned
    assert rejected_status(server, "/raise-before") == 403
    assert wait_for(lambda: "boom before accept" in server.output(), 5), server.output()
    assert "Exception in RSGI app while handling WEBSOCKET /raise-before" in server.output()


def test_app_error_after_accept_is_1011_and_logged(server: Server) -> None:
    with ws_connect(server, "/raise-after") as ws:
        assert drain(ws) == (["about to fail"], 1011)
    assert wait_for(lambda: "boom after accept" in server.output(), 5), server.output()
    assert "Exception in RSGI app while handling WEBSOCKET /raise-after" in server.output()


def test_close_from_another_task_wakes_receiver(server: Server, events: Events) -> None:
    # The serving task is blocked (up to 3 s) while a second task calls close(4000).
    with ws_connect(server, "/close-from-task") as ws:
        assert ws.recv(5) == "ready"
        t0 = time.monotonic()
        messages, code = drain(ws)
        elapsed = time.monotonic() - t0
    assert (messages, code) == ([], 4000)
    assert elapsed < 2.0
    assert events.wait("reader-finished") == [[True]]
    assert events.get("reader") == [[[0, "WebsocketMessageType", None]]]


def test_two_tasks_receiving_at_once_share_the_messages(server: Server) -> None:
    with ws_connect(server, "/two-receivers") as ws:
        assert ws.recv(5) == "ready"
        ws.send("a")
        ws.send("b")
        assert ws.recv(5) == "a,b"
        for i in range(3):
            ws.send(f"then {i}")
            assert ws.recv(5) == f"then {i}"


# -- the client leaving ------------------------------------------------------------------


def test_late_send_after_client_close_raises(server: Server, events: Events) -> None:
    # The app never receives: it must still learn that the client left (hypercorn drops late sends).
    with ws_connect(server, "/late-send?wait=0.5") as ws:
        assert ws.recv(5) == "ready"
    assert events.wait("late-send") == [["ProtocolClosed"]]
    [[took]] = events.wait("late-send-took")
    assert took < 1.0


def test_push_loop_stops_when_client_leaves(server: Server, events: Events) -> None:
    with ws_connect(server, "/push?interval=0.02") as ws:
        got = [ws.recv(5) for _ in range(5)]
        assert got == [f"push {i}" for i in range(5)]
        t0 = time.time()
    [[count, exc, stopped_at]] = events.wait("push-stopped")
    assert exc == "ProtocolClosed"
    assert count >= 5
    assert stopped_at - t0 < 1.0


def test_receive_after_client_close(server: Server, events: Events) -> None:
    with ws_connect(server, "/after-client-close") as ws:
        assert ws.recv(5) == "ready"
    events.wait("close-after-client-close")
    assert events.get("receives") == [[[[0, "WebsocketMessageType", None], "ProtocolClosed", "ProtocolClosed"]]]
    assert events.get("send-after-client-close") == [["ProtocolClosed"]]
    assert events.get("close-after-client-close") == [["ok"]]


# -- volume, concurrency --------------------------------------------------------------------


def test_thousand_messages_each_way_in_order(server: Server, events: Events) -> None:
    n = 1000
    with ws_connect(server, f"/ordering?n={n}") as ws:
        for i in range(n):
            ws.send(str(i))
        assert ws.recv(10) == f"received {n} in_order=True"
        got = [ws.recv(10) for _ in range(n)]
        assert got == [str(i) for i in range(n)]
        ws.send("done")
        assert events.wait("ordering-final") == [[[2, "WebsocketMessageType", "done"]]]
    assert events.get("ordering-received") == [[n, True]]


def test_ten_mib_binary_message(server: Server) -> None:
    data = os.urandom(BIG)
    with ws_connect(server, "/echo", max_size=MAX_SIZE, compression=None) as ws:
        ws.send(data)
        echoed = ws.recv(30)
    assert isinstance(echoed, bytes)
    assert len(echoed) == BIG
    assert echoed == data


def test_concurrent_receive_and_send_tasks(server: Server, events: Events) -> None:
    with ws_connect(server, "/chat") as ws:
        # the ticker sends while the reader task is blocked in receive()
        first = [ws.recv(5) for _ in range(3)]
        assert first == ["tick 0", "tick 1", "tick 2"]
        for i in range(20):
            ws.send(f"m{i}")
        echoes: list[str] = []
        ticks: list[int] = [0, 1, 2]
        deadline = time.monotonic() + 10
        while len(echoes) < 20 and time.monotonic() < deadline:
            msg = ws.recv(5)
            assert isinstance(msg, str)
            if msg.startswith("tick "):
                ticks.append(int(msg[5:]))
            else:
                echoes.append(msg)
        assert echoes == [f"echo m{i}" for i in range(20)]
        assert ticks == list(range(len(ticks)))
        ws.send("bye")
        rest, code = drain(ws)
    assert code == 1000
    assert all(m.startswith("tick ") for m in rest)
    assert events.wait("chat-done") == [[]]


# -- misuse -----------------------------------------------------------------------------------


def test_protocol_misuse(server: Server, events: Events) -> None:
    with ws_connect(server, "/misuse") as ws:
        assert drain(ws) == ([b"ba", b"mv"], 1000)
    events.wait("receive-after-close-2")
    assert [e for e in events.seen if e[0] not in ("late-send", "late-send-took", "push-stopped")] == [
        ["send_bytes-str", "TypeError"],
        ["send_str-bytes", "TypeError"],
        ["send_str-surrogate", "UnicodeEncodeError"],  # as Granian (test_granian_same_misuse_and_close_from_task)
        ["send_bytes-bytearray", "ok"],
        ["send_bytes-memoryview", "ok"],
        ["close", "None"],
        ["close-again", "None"],
        ["send-after-close", "ProtocolError"],
        ["receive-after-close", "ok", [0, "WebsocketMessageType", None]],
        ["receive-after-close-2", "ProtocolClosed"],
    ]


def test_accept_twice_raises_and_socket_stays_usable(server: Server, events: Events) -> None:
    with ws_connect(server, "/accept-twice") as ws:
        assert drain(ws) == (["still open"], 1000)
    assert events.wait("accept-twice") == [["ProtocolError"]]


# -- compared with Granian serving the same RSGI app ----------------------------------------------


@pytest.fixture(scope="module")
def pair() -> Iterator[dict[str, Server]]:
    """Granian natively, and the bridge on uvicorn, serving the same app."""
    with Server("granian-rsgi", "tests.apps.ws_app:app") as granian, Server("uvicorn", APP) as bridge:
        yield {"granian": granian, "bridge": bridge}


def _normalise(events: list[Any]) -> list[Any]:
    """Events with messages reduced to their int kind (Granian: plain int, no ``data`` on close)."""

    def norm(value: Any) -> Any:
        if isinstance(value, list) and len(value) == 3 and isinstance(value[0], int) and isinstance(value[1], str):
            return ["kind", value[0]]
        if isinstance(value, list):
            return [norm(v) for v in value]
        return value

    return [norm(e) for e in events]


def _on_both(pair: dict[str, Server], fn: Callable[[Server, Events], Any]) -> dict[str, Any]:
    """``fn(server, events)`` on both servers."""
    return {name: fn(s, Events(s)) for name, s in pair.items()}


def test_granian_same_echo_and_rejections(pair: dict[str, Server]) -> None:
    def run(s: Server, _: Events) -> Any:
        with ws_connect(s, "/echo") as ws:
            ws.send("text")
            ws.send(b"bin")
            echoed = [ws.recv(5), ws.recv(5)]
        return echoed, [rejected_status(s, f"/reject?status={q}") for q in ("403", "404", "none")]

    out = _on_both(pair, run)
    assert out["bridge"] == out["granian"] == (["text", b"bin"], [403, 404, 403])


def test_granian_same_receive_after_client_close(pair: dict[str, Server]) -> None:
    def run(s: Server, ev: Events) -> Any:
        with ws_connect(s, "/after-client-close", close_timeout=1) as ws:
            assert ws.recv(5) == "ready"
        ev.wait("close-after-client-close")
        return _normalise(ev.seen)

    out = _on_both(pair, run)
    assert out["bridge"] == out["granian"]
    assert out["bridge"][0] == ["receives", [["kind", 0], "ProtocolClosed", "ProtocolClosed"]]


def test_granian_same_misuse_and_close_from_task(pair: dict[str, Server]) -> None:
    def run(s: Server, ev: Events) -> Any:
        with ws_connect(s, "/misuse", close_timeout=1) as ws:
            assert ws.recv(5) == b"ba"
        ev.wait("receive-after-close-2")
        with ws_connect(s, "/close-from-task") as ws:
            assert ws.recv(5) == "ready"
            drain(ws)
        ev.wait("reader-finished")
        return sorted(map(repr, _normalise(ev.seen)))

    out = _on_both(pair, run)
    assert out["bridge"] == out["granian"]
    assert repr(["reader", ["kind", 0]]) in out["bridge"]


def test_granian_same_scope(pair: dict[str, Server]) -> None:
    def run(s: Server, _: Events) -> Any:
        with ws_connect(s, "/scope?a=1&b=%20x", additional_headers=[("x-rep", "1"), ("x-rep", "2")]) as ws:
            scope = json.loads(ws.recv(5))
        scope["server"] = scope["server"].rsplit(":", 1)[0]
        scope["client"] = scope["client"].rsplit(":", 1)[0]
        scope["headers_items"] = sorted(
            (k, v) for k, v in scope["headers_items"] if k not in ("host", "sec-websocket-key")
        )
        del scope["headers_values"]  # holds the per-connection host and key; compared via headers_items
        return scope

    out = _on_both(pair, run)
    assert out["bridge"] == out["granian"]


# -- daphne: no denial extension ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def daphne() -> Iterator[Server]:
    with Server("daphne", APP) as s:
        yield s


def test_daphne_echo(daphne: Server) -> None:
    with ws_connect(daphne, "/echo") as ws:
        ws.send("hello")
        assert ws.recv(5) == "hello"
        ws.send(b"\x00bin")
        assert ws.recv(5) == b"\x00bin"


def test_daphne_rejections_are_403(daphne: Server) -> None:
    # Without websocket.http.response every rejection, and an app error before accept, is a 403.
    assert rejected_status(daphne, "/reject?status=403") == 403
    assert rejected_status(daphne, "/reject?status=404") == 403
    assert rejected_status(daphne, "/raise-before") == 403
    assert wait_for(lambda: "boom before accept" in daphne.output(), 5), daphne.output()


@pytest.mark.parametrize(("query", "code"), [("?code=4001", 4001), ("?code=1000", 1000), ("?code=1001", 1000)])
def test_daphne_close_codes(daphne: Server, query: str, code: int) -> None:
    # daphne refuses close codes other than 1000 and 3000-4999: the bridge falls back to 1000
    with ws_connect(daphne, "/server-close" + query) as ws:
        assert drain(ws) == (["bye"], code)
    assert "invalid close code" not in daphne.output()


def test_daphne_app_close_1011_reaches_the_client(daphne: Server) -> None:
    # daphne refuses 1011 from the app; the bridge lets daphne see that, and daphne closes with 1011 itself
    with ws_connect(daphne, "/server-close?code=1011") as ws:
        assert drain(ws) == (["bye"], 1011)


def test_daphne_app_error_after_accept_is_1011(daphne: Server) -> None:
    with ws_connect(daphne, "/raise-after") as ws:
        assert drain(ws) == (["about to fail"], 1011)
    assert wait_for(lambda: "boom after accept" in daphne.output(), 5), daphne.output()


def test_daphne_push_loop_stops_when_client_leaves(daphne: Server) -> None:
    # daphne drops late sends silently: the bridge must notice the departure itself
    events = Events(daphne)
    with ws_connect(daphne, "/push?interval=0.02") as ws:
        assert ws.recv(5) == "push 0"
        t0 = time.time()
    [[_, exc, stopped_at]] = events.wait("push-stopped")
    assert exc == "ProtocolClosed"
    assert stopped_at - t0 < 1.0


# -- in-process: a scripted ASGI server -------------------------------------------------------------------


class FakeServer:
    """An ASGI websocket server: ``incoming`` feeds receive(), ``sent`` records send()."""

    def __init__(self, extensions: dict[str, Any] | None = None, send_error: type[Exception] | None = None) -> None:
        self.incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.receive_calls = 0
        self.send_error = send_error
        self.failing = ("websocket.send",)
        self.sessions: set[Any] | None = None
        self.scope: dict[str, Any] = {
            "type": "websocket",
            "path": "/",
            "query_string": b"",
            "headers": [],
            "scheme": "ws",
            "extensions": extensions if extensions is not None else {"websocket.http.response": {}},
        }

    async def receive(self) -> dict[str, Any]:
        self.receive_calls += 1
        return await self.incoming.get()

    async def send(self, message: dict[str, Any]) -> None:
        if self.send_error is not None and message["type"] in self.failing:
            raise self.send_error("gone")
        self.sent.append(message)

    def run(self, app: Any) -> asyncio.Task[None]:
        return asyncio.ensure_future(serve_websocket(app, self.scope, self.receive, self.send, self.sessions))


def test_inprocess_watcher_stops_reading_when_app_does_not_receive() -> None:
    async def main() -> tuple[int, list[Any]]:
        srv = FakeServer()
        srv.incoming.put_nowait({"type": "websocket.connect"})
        for i in range(_MAX_MESSAGES + 20):
            srv.incoming.put_nowait({"type": "websocket.receive", "text": str(i)})
        gate = asyncio.Event()
        got: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            await gate.wait()
            for _ in range(_MAX_MESSAGES + 20):
                got.append((await transport.receive()).data)
            proto.close()

        task = srv.run(app)
        for _ in range(20):
            await asyncio.sleep(0)
        calls_while_blocked = srv.receive_calls
        gate.set()
        await asyncio.wait_for(task, 5)
        assert got == [str(i) for i in range(_MAX_MESSAGES + 20)]
        return calls_while_blocked, srv.sent

    calls, sent = asyncio.run(main())
    assert calls == _MAX_MESSAGES + 1  # connect + a full inbox, then it waited for room
    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1000}]


def test_inprocess_client_gone_before_accept() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        srv = FakeServer()
        srv.incoming.put_nowait({"type": "websocket.disconnect", "code": 1006})
        seen: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            try:
                await proto.accept()
            except ProtocolClosed as exc:
                seen.append(type(exc))
            proto.close()
            proto.close(4000)

        await asyncio.wait_for(srv.run(app), 5)
        return seen, srv.sent

    seen, sent = asyncio.run(main())
    assert seen == [ProtocolClosed]
    assert sent == []  # nothing sent to a departed client


def test_inprocess_send_error_becomes_protocol_closed() -> None:
    async def main() -> list[Any]:
        srv = FakeServer(send_error=ConnectionResetError)
        srv.incoming.put_nowait({"type": "websocket.connect"})
        seen: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            for _ in range(2):
                try:
                    await transport.send_str("x")
                except ProtocolClosed:
                    seen.append("closed")
            msg = await transport.receive()
            seen.append(msg.kind)
            try:
                await transport.receive()
            except ProtocolClosed:
                seen.append("closed")

        await asyncio.wait_for(srv.run(app), 5)
        return seen

    assert asyncio.run(main()) == ["closed", "closed", WebsocketMessageType.close, "closed"]


def test_inprocess_receive_kinds_and_message_type() -> None:
    async def main() -> list[Any]:
        srv = FakeServer()
        srv.incoming.put_nowait({"type": "websocket.connect"})
        srv.incoming.put_nowait({"type": "websocket.receive", "bytes": b"b", "text": None})
        srv.incoming.put_nowait({"type": "websocket.receive", "bytes": None, "text": "t"})
        srv.incoming.put_nowait({"type": "websocket.disconnect", "code": 1000})
        out: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            for _ in range(3):
                m = await transport.receive()
                out.append((m.kind, type(m.kind), m.data))

        await asyncio.wait_for(srv.run(app), 5)
        return out

    out = asyncio.run(main())
    assert out == [
        (1, WebsocketMessageType, b"b"),
        (2, WebsocketMessageType, "t"),
        (0, WebsocketMessageType, None),
    ]
    assert WebsocketMessageType.string == 2 and isinstance(WebsocketMessageType.bytes, int)


def test_inprocess_deny_without_extension() -> None:
    async def main() -> tuple[list[Any], list[Any]]:
        srv = FakeServer(extensions={})
        errors: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            proto.close(404)
            try:
                await proto.accept()
            except ProtocolError:
                errors.append("accept-after-close")

        await asyncio.wait_for(srv.run(app), 5)
        return errors, srv.sent

    errors, sent = asyncio.run(main())
    assert errors == ["accept-after-close"]
    assert sent == [{"type": "websocket.close", "code": 1000}]


def test_inprocess_rejection_to_departed_client_does_not_reach_app() -> None:
    async def main() -> list[Any]:
        srv = FakeServer(send_error=ConnectionResetError)
        srv.failing = ("websocket.http.response.start", "websocket.close")
        seen: list[Any] = []

        async def app(scope: Any, proto: Any) -> None:
            proto.close(404)
            await asyncio.sleep(0)  # the rejection is sent here, and fails
            seen.append("still running")
            proto.close(403)  # no-op

        await asyncio.wait_for(srv.run(app), 5)
        return seen

    assert asyncio.run(main()) == ["still running"]


def test_inprocess_close_websockets_ends_receivers_and_senders() -> None:
    async def main() -> tuple[list[Any], list[Any], int, int]:
        srv = FakeServer()
        srv.incoming.put_nowait({"type": "websocket.connect"})
        pusher = FakeServer()
        pusher.incoming.put_nowait({"type": "websocket.connect"})
        seen: list[Any] = []
        started = asyncio.Event()

        async def reader(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            started.set()
            msg = await transport.receive()
            seen.append(("reader", int(msg.kind)))

        async def push(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            try:
                while True:
                    await transport.send_str("x")
                    await asyncio.sleep(0.01)
            except ProtocolClosed:
                seen.append(("pusher", "ProtocolClosed"))

        sessions: set[Any] = set()
        srv.sessions = pusher.sessions = sessions  # one bridge's registry
        tasks = [srv.run(reader), pusher.run(push)]
        await started.wait()
        await asyncio.sleep(0.05)
        closed = close_websockets(sessions)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        return seen, srv.sent + pusher.sent, closed, close_websockets(sessions)

    seen, sent, closed, again = asyncio.run(main())
    assert sorted(seen) == [("pusher", "ProtocolClosed"), ("reader", 0)]
    assert [m for m in sent if m["type"] == "websocket.close"] == [{"type": "websocket.close", "code": 1012}] * 2
    assert (closed, again) == (2, 0)


@pytest.mark.parametrize("kind", ["daphne", "uvicorn"])
def test_shutdown_closes_open_websockets_quickly(kind: str) -> None:
    """SIGTERM with an idle websocket open: the client is closed (1012 by the bridge's drain on
    daphne, by uvicorn itself on uvicorn) and the server exits without waiting drain_timeout."""
    with Server(kind, "tests.apps.ws_app:asgi") as s, ws_connect(s, "/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        t0 = time.monotonic()
        s.signal()
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=10)
        s.wait(20)
        elapsed = time.monotonic() - t0
    # daphne only sends 1000 and 3000-4999, so the bridge's 1012 goes out as 1000 there.
    assert info.value.rcvd is not None and info.value.rcvd.code == (1000 if kind == "daphne" else 1012)
    assert elapsed < 5


def test_inprocess_app_cancelled_error_is_contained_but_a_real_cancellation_propagates() -> None:
    """The app's own CancelledError is its failure (closed with 1011, the session ends normally);
    the server cancelling the session's task (client gone, shutdown) still ends it as cancelled."""

    async def main() -> tuple[bool, list[Any], bool, list[Any]]:
        own = FakeServer()
        own.incoming.put_nowait({"type": "websocket.connect"})

        async def raises(scope: Any, proto: Any) -> None:
            await proto.accept()
            raise asyncio.CancelledError

        task = own.run(raises)
        await asyncio.wait_for(asyncio.shield(task), 5)  # returns: contained

        cancelled = FakeServer()
        cancelled.incoming.put_nowait({"type": "websocket.connect"})
        accepted = asyncio.Event()

        async def waits(scope: Any, proto: Any) -> None:
            transport = await proto.accept()
            accepted.set()
            await transport.receive()

        victim = cancelled.run(waits)
        await asyncio.wait_for(accepted.wait(), 5)
        victim.cancel()
        await asyncio.wait([victim], timeout=5)
        return task.cancelled(), own.sent, victim.cancelled(), cancelled.sent

    own_cancelled, own_sent, victim_cancelled, victim_sent = asyncio.run(main())
    assert not own_cancelled
    assert own_sent == [{"type": "websocket.accept"}, {"type": "websocket.close", "code": 1011}]
    assert victim_cancelled
    assert victim_sent == [{"type": "websocket.accept"}]  # no close of its own: the server ends it
