"""In-process checks of the bridge (no sockets): scope mapping edge cases, options, protocol details."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator

import rsgi_bridge
from rsgi_bridge import Headers, ProtocolClosed, ProtocolError, Scope, wrap
from rsgi_bridge.scope import format_address


def http_scope(**kw: Any) -> dict[str, Any]:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"example.org")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }
    scope.update(kw)
    return scope


@pytest.mark.parametrize(
    ("addr", "want"),
    [
        (("127.0.0.1", 8000), "127.0.0.1:8000"),
        (("::1", 8000), "[::1]:8000"),
        (("fe80::1%eth0", 80), "[fe80::1%eth0]:80"),
        (("/tmp/app.sock", None), "/tmp/app.sock"),  # uvicorn on a unix socket
        (("/tmp/app.sock", "0"), "/tmp/app.sock"),  # granian's ASGI mode on a unix socket
        (None, ""),
        ((), ""),
        (["10.0.0.1", 5], "10.0.0.1:5"),
    ],
)
def test_format_address(addr: Any, want: str) -> None:
    assert format_address(addr) == want


def test_scope_mapping() -> None:
    s = Scope(
        http_scope(
            http_version="2",
            scheme="https",
            method="post",
            path="/mnt/a b/€",
            root_path="/mnt",
            query_string=b"x=%20&y=1",
            headers=[(b"host", b"h.example:8443"), (b"x-a", b"1"), (b"x-a", b"2"), (b"x-l", b"caf\xe9")],
            client=("::1", 5555),
            server=None,
        ),
        "http",
    )
    assert (s.proto, s.rsgi_version, s.http_version, s.scheme, s.method) == ("http", "1.6", "2", "https", "post")
    assert s.path == "/a b/€"
    assert s.query_string == "x=%20&y=1"
    assert (s.client, s.server) == ("[::1]:5555", "")
    assert s.authority == "h.example:8443"
    h = s.headers
    assert h.get("x-a") == "1" and h.get("X-A") == "1" and h.get_all("x-a") == ["1", "2"]
    # a value that is not visible ASCII is left out of the values, as Granian; its name stays
    assert h.get("x-l") is None and "x-l" in h
    assert h.items() == [("host", "h.example:8443"), ("x-a", "1"), ("x-a", "2")]
    assert h.keys() == ["host", "x-a", "x-l"] and list(h) == ["host", "x-a", "x-l"]
    assert h.values() == ["h.example:8443", "1", "2"]
    latin1 = Scope(http_scope(headers=[(b"x-l", b"caf\xe9")]), "http", latin1_headers=True).headers
    assert latin1["x-l"] == "café" and latin1.items() == [("x-l", "café")]
    assert len(h) == 3 and "x-a" in h and "nope" not in h and 3 not in h  # type: ignore[operator]
    assert h.get("nope") is None and h.get("nope", "d") == "d"
    with pytest.raises(KeyError):
        h["nope"]
    assert dict(h.items())["x-a"] == "2"


@pytest.mark.parametrize(("asgi", "want"), [("1.0", "1"), ("1.1", "1.1"), ("2", "2"), ("3", "3")])
def test_http_versions(asgi: str, want: str) -> None:
    s = Scope(http_scope(http_version=asgi), "http")
    assert s.http_version == want
    assert (s.authority is None) == (want in ("1", "1.1"))


@pytest.mark.parametrize(
    ("path", "root", "want"),
    [("/", "", "/"), ("/api/x", "/api", "/x"), ("/api", "/api", "/"), ("/apix", "/api", "/apix"), ("/x", "/api", "/x")],
)
def test_root_path(path: str, root: str, want: str) -> None:
    assert Scope(http_scope(path=path, root_path=root), "http").path == want


@pytest.mark.parametrize(("asgi", "want"), [("ws", "http"), ("wss", "https"), ("http", "http"), (None, "http")])
def test_ws_scheme(asgi: str | None, want: str) -> None:
    s = Scope({"type": "websocket", "path": "/", "scheme": asgi, "headers": []}, "ws")
    assert (s.proto, s.scheme, s.method) == ("ws", want, "GET")


def test_headers_accept_any_iterable() -> None:
    h = Headers(iter([(b"a", b"1")]))
    assert h.items() == [("a", "1")] and h.items() == [("a", "1")]


# -- wrap ----------------------------------------------------------------------------


async def rsgi_app(scope: Any, protocol: Any) -> None:
    protocol.response_str(200, [], "ok")


def test_wrap_detects_interfaces_and_validates_options() -> None:
    assert wrap(rsgi_app).interface == "rsgi"

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None: ...

    assert wrap(asgi_app).interface == "asgi"

    class Emmettish:
        def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...  # ASGI, non-async
        async def __rsgi__(self, scope: Any, protocol: Any) -> None: ...

    assert wrap(Emmettish()).interface == "rsgi"
    with pytest.raises(TypeError, match="neither an RSGI nor an ASGI"):
        wrap(42)
    with pytest.raises(TypeError, match="1 positional"):
        wrap(lambda x: x)
    for bad in ({"drain_timeout": -1}, {"startup_timeout": "5"}, {"chunk_size": 0}, {"interface": "wsgi"}):
        with pytest.raises(ValueError):
            wrap(rsgi_app, **bad)
    with pytest.raises(TypeError):
        wrap(rsgi_app, 5)  # type: ignore[misc]
    assert asyncio.iscoroutinefunction(type(wrap(rsgi_app)).__call__)


def test_public_api() -> None:
    assert issubclass(ProtocolError, RuntimeError) and issubclass(ProtocolClosed, RuntimeError)
    import granian.rsgi

    assert ProtocolClosed is granian.rsgi.ProtocolClosed and ProtocolError is granian.rsgi.ProtocolError
    assert rsgi_bridge.WebsocketMessageType.bytes == 1


# -- ApplicationCommunicator -------------------------------------------------------------


async def run_http(app: Any, scope: dict[str, Any], body: list[bytes] | None = None) -> list[dict[str, Any]]:
    comm = ApplicationCommunicator(app, scope)
    chunks = body or [b""]
    for i, chunk in enumerate(chunks):
        await comm.send_input({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
    out = []
    while True:
        msg = await comm.receive_output(5)
        out.append(msg)
        if msg["type"] == "http.response.body" and not msg.get("more_body"):
            break
    await comm.wait(5)
    return out


async def test_communicator_plain_and_chunked_body() -> None:
    async def app(scope: Any, protocol: Any) -> None:
        protocol.response_bytes(200, [("x-n", "1")], await protocol())

    out = await run_http(wrap(app), http_scope(method="POST"), [b"ab", b"", b"cd"])
    assert out[0] == {
        "type": "http.response.start",
        "status": 200,
        "headers": [(b"x-n", b"1"), (b"content-length", b"4")],
    }
    assert out[1] == {"type": "http.response.body", "body": b"abcd"}


async def test_communicator_pathsend_used_when_offered(tmp_path: Any) -> None:
    f = tmp_path / "f.txt"
    f.write_bytes(b"0123456789")

    async def app(scope: Any, protocol: Any) -> None:
        if scope.path == "/range":
            protocol.response_file_range(206, [], str(f), 2, 4)
        else:
            protocol.response_file(200, [("content-length", "10")], str(f))

    ext = {"http.response.pathsend": {}}
    comm = ApplicationCommunicator(wrap(app), http_scope(extensions=ext))
    await comm.send_input({"type": "http.request", "body": b""})
    assert (await comm.receive_output(5))["status"] == 200
    assert await comm.receive_output(5) == {"type": "http.response.pathsend", "path": str(f)}
    await comm.wait(5)
    # a range is never sent by pathsend
    out = await run_http(wrap(app), http_scope(path="/range", extensions=ext))
    assert [m.get("body") for m in out[1:]] == [b"23"]


async def test_server_cancelling_the_app_leaves_in_flight_count_correct() -> None:
    started = asyncio.Event()

    async def app(scope: Any, protocol: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    bridge = wrap(app)
    comm = ApplicationCommunicator(bridge, http_scope())
    await comm.send_input({"type": "http.request", "body": b""})
    await asyncio.wait_for(started.wait(), 5)
    assert bridge.lifecycle.inflight == 1
    comm.future.cancel()  # what daphne does after a disconnect
    with pytest.raises(asyncio.CancelledError):
        await comm.future
    assert bridge.lifecycle.inflight == 0
    assert not bridge.lifecycle.tasks


async def test_request_made_from_inside_another_is_tracked_apart() -> None:
    """A handler calling the same bridge in its own task (a sub-request): both are in flight, each ends once."""
    seen: list[int] = []

    async def app(scope: Any, protocol: Any) -> None:
        if scope.path == "/outer":
            out: list[dict[str, Any]] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b""}

            async def send(message: dict[str, Any]) -> None:
                out.append(message)

            await bridge(http_scope(path="/inner"), receive, send)  # in this request's own task
            seen.append(bridge.lifecycle.inflight)  # the inner one has ended, this one has not
            protocol.response_bytes(200, [], out[1]["body"] + b" via outer")
        else:
            seen.append(bridge.lifecycle.inflight)
            protocol.response_bytes(200, [], b"inner")

    bridge = wrap(app)
    out = await run_http(bridge, http_scope(path="/outer"))
    assert [m.get("body") for m in out[1:]] == [b"inner via outer"]
    assert seen == [2, 1]
    assert bridge.lifecycle.inflight == 0 and not bridge.lifecycle.tasks


async def test_client_disconnect_after_the_request_returns_at_once() -> None:
    kept: list[Any] = []

    async def app(scope: Any, protocol: Any) -> None:
        waiter = asyncio.ensure_future(protocol.client_disconnect())
        await asyncio.sleep(0)
        kept.append((protocol, waiter))
        protocol.response_bytes(200, [], b"ok")

    await run_http(wrap(app), http_scope())
    protocol, waiter = kept[0]
    await asyncio.wait_for(waiter, 5)  # released when the request ended
    await asyncio.wait_for(protocol.client_disconnect(), 5)  # and so is a later call


async def test_disconnect_waiter_cancel_and_body_not_stolen() -> None:
    async def app(scope: Any, protocol: Any) -> None:
        w = asyncio.ensure_future(protocol.client_disconnect())
        await asyncio.sleep(0.01)
        body = await protocol()
        w.cancel()
        protocol.response_bytes(200, [], body)

    out = await run_http(wrap(app), http_scope(method="POST"), [b"x" * 10, b"y" * 10, b"z"])
    assert out[1]["body"] == b"x" * 10 + b"y" * 10 + b"z"


# -- httpx ASGITransport ---------------------------------------------------------------------


async def test_httpx_asgi_transport() -> None:
    from tests.apps.http_app import asgi

    transport = httpx.ASGITransport(app=asgi)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        r = await client.get("/scope?q=1", headers={"x-rep": "a"})
        assert r.json()["query_string"] == "q=1" and r.json()["x_rep_all"] == ["a"]
        r = await client.post("/echo", content=b"z" * 100_000)
        assert r.content == b"z" * 100_000
        assert (await client.get("/error")).status_code == 500
        assert (await client.get("/stream-mixed")).content == b"abcd"
        assert (await client.get("/twice")).content == b"first"


# -- Drive hand-off and call-time checks ---------------------------------------------------


async def test_app_raising_after_its_response_left_keeps_the_response() -> None:
    done = asyncio.Event()

    async def app(scope: Any, protocol: Any) -> None:
        protocol.response_bytes(200, [], b"sent")
        await asyncio.sleep(0.01)  # the response leaves here; the rest of the app is handed over
        done.set()
        raise RuntimeError("late failure")

    bridge = wrap(app)
    out = await run_http(bridge, http_scope())
    assert [m.get("status") for m in out] == [200, None] and out[1]["body"] == b"sent"
    assert done.is_set() and bridge.lifecycle.inflight == 0


async def test_app_cancelled_after_its_response_left() -> None:
    responded = asyncio.Event()

    async def app(scope: Any, protocol: Any) -> None:
        protocol.response_str(200, [], "ok")
        responded.set()
        await asyncio.sleep(30)

    bridge = wrap(app)
    comm = ApplicationCommunicator(bridge, http_scope())
    await comm.send_input({"type": "http.request", "body": b""})
    assert (await comm.receive_output(5))["status"] == 200
    assert (await comm.receive_output(5))["body"] == b"ok"
    await asyncio.wait_for(responded.wait(), 5)
    comm.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await comm.future
    assert bridge.lifecycle.inflight == 0 and not bridge.lifecycle.tasks


async def test_stream_send_type_errors_are_raised_by_the_call() -> None:
    seen: list[str] = []

    async def app(scope: Any, protocol: Any) -> None:
        transport = protocol.response_stream(200, [])
        for bad, method in ((b"x", transport.send_str), ("x", transport.send_bytes)):
            try:
                method(bad)  # not awaited: the check happens in the call itself, as in Granian
            except TypeError as exc:
                seen.append(str(exc))
        await transport.send_str("fine")

    out = await run_http(wrap(app), http_scope())
    assert seen == ["send_str takes str, not bytes", "send_bytes takes bytes, bytearray or memoryview, not str"]
    assert b"".join(m.get("body", b"") for m in out[1:]) == b"fine"


def test_contain_tells_the_apps_exceptions_from_a_cancellation_of_its_task() -> None:
    from rsgi_bridge.connection import contain

    async def main() -> dict[str, bool]:
        out = {name: contain(exc) for name, exc in [
            ("ValueError", ValueError()), ("SystemExit", SystemExit(3)), ("KeyboardInterrupt", KeyboardInterrupt()),
            ("GeneratorExit", GeneratorExit()), ("own CancelledError", asyncio.CancelledError()),
        ]}  # fmt: skip

        async def cancelled_meanwhile() -> bool:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError as exc:
                return contain(exc)
            return True

        task = asyncio.ensure_future(cancelled_meanwhile())
        await asyncio.sleep(0)
        task.cancel()
        out["task cancelled"] = await task
        return out

    assert asyncio.run(main()) == {
        "ValueError": True,
        "SystemExit": True,
        "KeyboardInterrupt": True,
        "GeneratorExit": False,
        "own CancelledError": True,
        "task cancelled": False,
    }


# -- delivery: once, never waiting on the upload, read errors abort -------------------------------


class Recorder:
    """A server side for one request: ``receive`` gives ``chunks`` then blocks; ``send`` records (and
    may suspend, as a middleware's or a server's send does under flow control)."""

    def __init__(self, chunks: list[bytes], stall: bool = False, suspend: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.times: list[float] = []
        self._chunks = list(chunks)
        self._stall = stall
        self._suspend = suspend

    async def receive(self) -> dict[str, Any]:
        if self._chunks:
            chunk = self._chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self._chunks) or self._stall}
        await asyncio.Event().wait()  # the client sends nothing more (and stays)
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        if self._suspend:
            await asyncio.sleep(0)
        self.messages.append(message)
        self.times.append(asyncio.get_running_loop().time())

    def types(self) -> list[str]:
        return [m["type"] + ("" if m.get("more_body") else ".last") for m in self.messages]


@pytest.mark.parametrize("after", ["sleep0", "child"])
async def test_a_response_is_delivered_once_when_send_suspends(after: str) -> None:
    # The app responds, suspends (delivery then starts in a task of its own) and returns before that
    # task ran: the request task must not deliver the response a second time.
    async def app(scope: Any, protocol: Any) -> None:
        if after == "sleep0":
            protocol.response_bytes(200, [], b"once")
            await asyncio.sleep(0)
        else:

            async def child() -> None:
                protocol.response_bytes(200, [], b"once")

            await asyncio.create_task(child())

    server = Recorder([b""], suspend=True)
    await asyncio.wait_for(wrap(app)(http_scope(), server.receive, server.send), 5)
    assert server.types() == ["http.response.start.last", "http.response.body.last"]
    assert server.messages[1]["body"] == b"once"


async def test_an_early_answer_does_not_wait_for_a_stalled_upload() -> None:
    # The app answers before reading an upload the client stalls on, and keeps working: the answer
    # leaves at once (as Granian), it does not wait for the rest of the body.
    async def app(scope: Any, protocol: Any) -> None:
        protocol.response_bytes(413, [], b"too big")
        await asyncio.sleep(0.5)

    server = Recorder([b"0123456789"], stall=True)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.wait_for(wrap(app)(http_scope(method="POST"), server.receive, server.send), 5)
    assert server.types() == ["http.response.start.last", "http.response.body.last"]
    assert server.messages[1]["body"] == b"too big"
    assert server.times[1] - t0 < 0.3, server.times[1] - t0


async def test_a_file_read_error_after_the_start_aborts_the_response(monkeypatch: Any, tmp_path: Any) -> None:
    # A read that fails after the response started: logged, and the response is aborted (raised to
    # the server) rather than ended as if the file were whole.
    import rsgi_bridge.http as http

    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 300)
    real_open = http._open_file

    def failing_open(p: str, start: int) -> Any:
        f, size = real_open(p, start)

        class Failing:
            calls = 0

            def read(self, n: int) -> bytes:
                Failing.calls += 1
                if Failing.calls > 1:
                    raise OSError(5, "Input/output error")
                return f.read(n)

            def close(self) -> None:
                f.close()

        return Failing(), size

    monkeypatch.setattr(http, "_open_file", failing_open)

    async def app(scope: Any, protocol: Any) -> None:
        protocol.response_file(200, [], str(path))

    server = Recorder([b""])
    with pytest.raises(OSError, match="Input/output error"):
        await asyncio.wait_for(wrap(app, chunk_size=100)(http_scope(), server.receive, server.send), 5)
    assert server.types() == ["http.response.start.last", "http.response.body"]  # never a clean end


async def test_body_read_after_the_request_of_an_app_that_never_read_it() -> None:
    # The request side is made on first use: made after the request ended, it must know that.
    kept: list[Any] = []

    async def app(scope: Any, protocol: Any) -> None:
        kept.append(protocol)
        protocol.response_bytes(200, [], b"ok")

    await run_http(wrap(app), http_scope(method="POST"), [b"unread"])
    protocol = kept[0]
    with pytest.raises(ProtocolClosed):
        await asyncio.wait_for(protocol(), 5)
    await asyncio.wait_for(protocol.client_disconnect(), 5)


def test_hookloop_serves_its_own_members_not_the_serving_loops() -> None:
    # HookLoop forwards every attribute to the serving loop except its own: a method added to it
    # but not listed would silently be the serving loop's instead.
    from rsgi_bridge import hookloop

    own = {n for n, v in vars(hookloop.HookLoop).items() if callable(v) and not n.startswith("__")}
    assert own and own <= hookloop._OWN
