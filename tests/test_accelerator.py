"""uvicorn's plain-response accelerator (``rsgi_bridge/servers/uvicorn.py``) puts the same bytes on the
wire as uvicorn's own ``send`` does for the same response.

Two real uvicorn servers (httptools) serve ``tests/apps/accel_app.py``: one with the accelerators on
(``RSGI_BRIDGE_ACCELERATE=1``), one with them off, where every response goes through uvicorn's
``send``. The same raw requests (keep-alive, ``Connection: close``, HTTP/1.0, HEAD, pipelined,
POST) go to both, and the bytes that come back must be equal but for the ``date`` header's value.
The app counts the responses the accelerator wrote, so the comparison is known to cover it.
CI runs this module against the oldest supported uvicorn too (``nox -s uvicorn-oldest``).
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from tests.apps.accel_app import FILES, RESPONSES, STREAMS
from tests.rawhttp import parse, raw_exchange
from tests.servers import Server, fast_and_generic, wait_for

APP = "tests.apps.accel_app:asgi"
HTTPTOOLS = ["--http", "httptools"]
H11 = ["--http", "h11"]
# What the accelerator leaves to uvicorn's own send (its guards).
NOT_ACCELERATED = {"no-content", "not-modified", "connection-close", "connection-keep", "chunked"}
STREAMS_NOT_ACCELERATED = {"no-content", "not-modified", "connection-close", "app-chunked"}
FILES_NOT_ACCELERATED = {"missing", "no-content", "connection-close"}
_DATE = re.compile(rb"\r\ndate: [^\r\n]*\r\n")


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    with fast_and_generic(APP, HTTPTOOLS) as pair:
        yield pair


@pytest.fixture(scope="module")
def h11_servers() -> Iterator[tuple[Server, Server]]:
    with fast_and_generic(APP, H11) as pair:
        yield pair


@pytest.fixture(params=["httptools", "h11"])
def plain_servers(
    request: pytest.FixtureRequest, servers: tuple[Server, Server], h11_servers: tuple[Server, Server]
) -> tuple[Server, Server]:
    """The servers of either protocol: the plain-response accelerator exists for both."""
    return servers if request.param == "httptools" else h11_servers


def request(method: str, path: str, version: str = "1.1", close: bool = False, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n".encode()
    if body or method == "POST":
        head += f"Content-Length: {len(body)}\r\n".encode()
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


def one_by_one(port: int, requests: list[tuple[bytes, bool]], timeout: float = 10.0) -> bytes:
    """Send each request once the previous response is complete, on one connection; all the bytes read.

    ``requests``: (request, is_head). After the last response, read until the server closes or 0.3 s pass.
    """
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        deadline = time.monotonic() + timeout
        for raw, is_head in requests:
            s.sendall(raw)
            got = b""
            while True:
                try:
                    parse(got, head=is_head)  # raises ValueError while the response is incomplete
                    break
                except ValueError:
                    pass
                assert time.monotonic() < deadline, f"no complete response to {raw[:40]!r}: {got[:200]!r}"
                data = s.recv(1 << 20)
                if not data:
                    break
                got += data
            out += got
        s.settimeout(0.3)
        try:
            while data := s.recv(65536):
                out += data
        except (TimeoutError, ConnectionResetError):
            pass
    return out


def same_bytes(fast: Server, generic: Server, send: object) -> bytes:
    """``send(port)`` against both servers; assert the bytes are equal but for the date; return them."""
    got_fast = send(fast.port)  # type: ignore[operator]
    got_generic = send(generic.port)  # type: ignore[operator]
    assert got_fast, "no response"
    norm_fast, norm_generic = _DATE.sub(b"\r\ndate: *\r\n", got_fast), _DATE.sub(b"\r\ndate: *\r\n", got_generic)
    assert norm_fast == norm_generic
    return got_fast


def twice(path: str, name: str) -> list[tuple[bytes, bool]]:
    """``path`` twice on a kept-alive connection, then a closing GET; once for ``connection-close``, whose
    response makes the server close."""
    if name == "connection-close":
        return [(request("GET", path), False)]
    once = (request("GET", path), False)
    return [once, once, (request("GET", "/r/hello", close=True), False)]


def accelerated(server: Server) -> int:
    return int(parse(raw_exchange(server.port, request("GET", "/_accelerated", close=True))).body)


def streams(server: Server) -> int:
    return int(parse(raw_exchange(server.port, request("GET", "/_streams", close=True))).body)


def chunks(server: Server) -> int:
    return int(parse(raw_exchange(server.port, request("GET", "/_chunks", close=True))).body)


# Pieces of 64 KiB (the bridge's chunk_size) the chunk writer takes per request: all but the last.
FILE_PIECES = {"whole": 15, "range": 3, "no-length": 1}
# (route, name): every plain response (/r/), every stream (/s/) and every file response (/f/) of the app.
EACH = (
    [("/r/", name) for name in sorted(RESPONSES)]
    + [("/s/", name) for name in sorted(STREAMS)]
    + [("/f/", name) for name in sorted(FILES)]
)


@pytest.mark.parametrize(("route", "name"), EACH)
def test_each_response_on_a_kept_alive_connection(servers: tuple[Server, Server], route: str, name: str) -> None:
    """The same bytes as uvicorn's own send: a plain response; a stream's or a file's head (written by the
    accelerator), chunks and end."""
    fast, generic = servers
    plain = route == "/r/"
    written = accelerated if plain else streams
    before = written(fast)
    chunks_before = chunks(fast)
    got = same_bytes(fast, generic, lambda port: one_by_one(port, twice(route + name, name)))
    if route == "/r/":
        status = RESPONSES[name][1]
    elif route == "/s/":
        status = STREAMS[name][0]
    else:
        status = 404 if name == "missing" else FILES[name][0]
    assert got.startswith(b"HTTP/1.1 %d " % status)
    # Both requests to the route went through the accelerator unless a guard sends it to uvicorn's send.
    skipped = {"/r/": NOT_ACCELERATED, "/s/": STREAMS_NOT_ACCELERATED, "/f/": FILES_NOT_ACCELERATED}[route]
    assert written(fast) - before == (0 if name in skipped else 2)
    assert written(generic) == 0
    if route == "/s/" and name not in skipped:  # the chunks of an accelerated start: written by the accelerator too
        assert chunks(fast) - chunks_before >= (2 if any(STREAMS[name][2]) else 0)
    if route == "/f/" and name in FILE_PIECES:  # every piece but the last (that one goes with the end)
        assert chunks(fast) - chunks_before == 2 * FILE_PIECES[name]


@pytest.mark.parametrize("name", sorted(RESPONSES))
def test_each_plain_response_on_h11(h11_servers: tuple[Server, Server], name: str) -> None:
    """On uvicorn's h11 protocol, the plain-response accelerator's single write carries the bytes uvicorn's
    own send writes in two (h11's own events, made by the cycle's connection)."""
    fast, generic = h11_servers
    before = accelerated(fast)
    got = same_bytes(fast, generic, lambda port: one_by_one(port, twice("/r/" + name, name)))
    assert got.startswith(b"HTTP/1.1 %d " % RESPONSES[name][1])
    assert accelerated(fast) - before == (0 if name in NOT_ACCELERATED else 2)
    assert accelerated(generic) == 0


def closes_after_response(port: int, raw: bytes, within: float = 2.0) -> bool:
    """Whether the server closes the connection within ``within`` seconds of ``raw`` (its keep-alive timeout is 5 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=within) as s:
        s.sendall(raw)
        try:
            while s.recv(65536):
                pass
        except TimeoutError:
            return False
        except ConnectionResetError:
            pass
    return True


@pytest.mark.parametrize("name", ["hello", "empty", "big", "own-length", "599", "no-content"])
def test_connection_close_and_http_1_0(plain_servers: tuple[Server, Server], name: str) -> None:
    fast, generic = plain_servers
    path = f"/r/{name}"
    same_bytes(fast, generic, lambda port: raw_exchange(port, request("GET", path, close=True)))
    same_bytes(fast, generic, lambda port: raw_exchange(port, request("GET", path, version="1.0")))
    for server in (fast, generic):  # and the connection closes once the response is out
        assert closes_after_response(server.port, request("GET", path, close=True))
        assert closes_after_response(server.port, request("GET", path, version="1.0"))
    keep = b"GET " + path.encode() + b" HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n"
    same_bytes(fast, generic, lambda port: one_by_one(port, [(keep, False)]))


def test_head_requests(plain_servers: tuple[Server, Server]) -> None:
    fast, generic = plain_servers
    before = accelerated(fast)
    got = same_bytes(
        fast,
        generic,
        lambda port: one_by_one(
            port,
            [
                (request("HEAD", "/r/hello"), True),
                (request("HEAD", "/r/big"), True),
                (request("HEAD", "/r/own-length"), True),
                (request("GET", "/r/empty", close=True), False),
            ],
        ),
    )
    assert got.count(b"HTTP/1.1 200 OK") == 4
    assert accelerated(fast) - before == 0  # HEAD goes through uvicorn's send; the last request closes


def test_pipelined_requests(plain_servers: tuple[Server, Server]) -> None:
    fast, generic = plain_servers
    before = accelerated(fast)
    burst = (
        request("GET", "/r/hello")
        + request("POST", "/echo", body=b"x" * 10240)
        + request("GET", "/r/not-found")
        + request("POST", "/echo", body=b"")
        + request("GET", "/r/big")
        + request("GET", "/r/utf8", close=True)
    )
    got = same_bytes(fast, generic, lambda port: raw_exchange(port, burst, timeout=10.0))
    assert got.count(b"HTTP/1.1 ") == 6
    assert accelerated(fast) - before == 5


def test_post_echo_sizes(plain_servers: tuple[Server, Server]) -> None:
    fast, generic = plain_servers
    for size in (1, 10240, 300_000):
        body = bytes(range(256)) * (size // 256) + b"y" * (size % 256)
        got = same_bytes(
            fast,
            generic,
            lambda port, body=body: one_by_one(  # type: ignore[misc]
                port, [(request("POST", "/echo", body=body), False), (request("GET", "/r/empty", close=True), False)]
            ),
        )
        assert parse(got).body == body


@pytest.mark.parametrize(
    ("extra", "why"), [(["--access-log"], "access log on"), (["--access-log", *H11], "access log on, h11")]
)
def test_guards_leave_it_to_uvicorn(extra: list[str], why: str) -> None:
    """With the access log on the accelerator stands aside, on either protocol (and the bytes still match)."""
    with fast_and_generic(APP, [*HTTPTOOLS, *extra]) as (fast, generic):
        same_bytes(
            fast,
            generic,
            lambda port: one_by_one(
                port, [(request("GET", "/r/hello"), False), (request("GET", "/r/utf8", close=True), False)]
            ),
        )
        assert accelerated(fast) == 0, why


def test_a_uvicorn_with_other_internals_is_not_accelerated() -> None:
    """In-process, on top: a cycle whose ``send`` does something the seam was not written against gets
    uvicorn's workarounds but no accelerator (the generic path), instead of a crash or wrong bytes."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from rsgi_bridge.servers import uvicorn as seam

    assert seam.quirks_for(RequestResponseCycle).plain is not None  # the installed uvicorn is accepted

    class Changed:
        async def send(self, message: object) -> None:
            self.trailers_pending = True  # a name no reviewed uvicorn's send uses

    class Before053:  # uvicorn < 0.53: send itself answers a request's connection: close
        async def send(self, message: object) -> None:
            if CLOSE_HEADER in self.scope["headers"]:  # type: ignore[attr-defined]  # noqa: F821
                pass

    for changed in (Changed, Before053):
        changed.__module__, changed.__name__ = RequestResponseCycle.__module__, RequestResponseCycle.__name__
        quirks = seam.quirks_for(changed)
        assert quirks is not None and quirks.plain is None and quirks.max_status == 599

    class NoTable(RequestResponseCycle):
        pass

    NoTable.__module__ = "uvicorn.protocols.http.some_future_impl"
    quirks = seam.quirks_for(NoTable)
    assert quirks is not None and quirks.plain is None and not quirks.body_after_response


def test_the_wrap_option_turns_it_off() -> None:
    """``wrap(app, accelerate=False)`` sends everything through uvicorn's ``send`` even with the variable on."""
    with Server("uvicorn", "tests.apps.accel_app:asgi_off", HTTPTOOLS, env={"RSGI_BRIDGE_ACCELERATE": "1"}) as off:
        got = one_by_one(off.port, [(request("GET", "/r/hello"), False), (request("GET", "/r/hello"), False)])
        assert got.count(b"Hello, world!") == 2
        assert accelerated(off) == 0


def test_the_option_and_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from rsgi_bridge import wrap
    from tests.apps.accel_app import app

    with pytest.raises(TypeError, match="accelerate must be a bool"):
        wrap(app, accelerate="no")  # type: ignore[arg-type]
    monkeypatch.setenv("RSGI_BRIDGE_ACCELERATE", "1")
    assert wrap(app).accelerate is True
    assert wrap(app, accelerate=False).accelerate is False
    for off in ("0", "false", "No", " off "):
        monkeypatch.setenv("RSGI_BRIDGE_ACCELERATE", off)
        assert wrap(app).accelerate is False, off


@pytest.mark.parametrize(
    "extra",
    [["--header", "X-Custom:1", "--header", "Server:mine"], ["--no-server-header", "--no-date-header"]],
    ids=["custom-default-headers", "no-server-no-date"],
)
@pytest.mark.parametrize("http", [HTTPTOOLS, H11], ids=["httptools", "h11"])
def test_uvicorn_default_header_options(extra: list[str], http: list[str]) -> None:
    """uvicorn's own default headers (``--header``, ``--no-server-header``, ``--no-date-header``) come out
    as uvicorn writes them, through the accelerator."""
    with fast_and_generic(APP, [*http, *extra]) as (fast, generic):
        got = same_bytes(
            fast,
            generic,
            lambda port: one_by_one(
                port, [(request("GET", "/r/hello"), False), (request("GET", "/r/utf8", close=True), False)]
            ),
        )
        assert accelerated(fast) == 1
        if "--header" in extra:
            assert got.count(b"\r\nx-custom: 1\r\n") == 2 and got.count(b"\r\nserver: mine\r\n") == 2
        else:
            assert b"\r\nserver:" not in got and b"\r\ndate:" not in got


def test_date_header_stays_current(plain_servers: tuple[Server, Server]) -> None:
    """The accelerator's cached block of uvicorn's default headers follows uvicorn's date (the byte
    comparisons above blank the date's value, so they cannot see a stale one)."""
    fast, _ = plain_servers
    before = accelerated(fast)
    with socket.create_connection(("127.0.0.1", fast.port), timeout=10) as s:
        dates = []
        for _ in range(2):
            s.sendall(request("GET", "/r/hello"))
            got = b""
            while b"Hello, world!" not in got:
                data = s.recv(65536)
                assert data, "the server closed the connection"
                got += data
            dates.append(parse(got).get_all("date"))
            time.sleep(2.2)  # uvicorn refreshes its date header about once a second
    assert accelerated(fast) - before == 2
    assert len(dates[0]) == len(dates[1]) == 1 and dates[0] != dates[1], dates


def test_a_send_that_does_less_is_not_accelerated() -> None:
    """In-process, on top: a future uvicorn whose cycle ``send`` uses only some of the reviewed names (it
    no longer writes the default headers, or no longer closes a non-kept-alive connection, ...) is
    not the send write_plain imitates either: no accelerator for it."""
    from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

    from rsgi_bridge.servers import uvicorn as seam

    class WritesOnlyTheBody:
        async def send(self, message: dict[str, bytes]) -> None:
            self.transport.write(message.get("body", b""))  # type: ignore[attr-defined]

    class NoDefaultHeaders:  # the reviewed send minus default_headers and the connection handling
        async def send(self, message: dict[str, object]) -> None:
            if not self.response_started:  # type: ignore[has-type]
                self.response_started = True
                self.transport.write(STATUS_LINE[message["status"]] + b"\r\n")  # type: ignore  # noqa: F821

    for changed in (WritesOnlyTheBody, NoDefaultHeaders):
        changed.__module__, changed.__name__ = RequestResponseCycle.__module__, RequestResponseCycle.__name__
        quirks = seam.quirks_for(changed)
        assert quirks is not None and quirks.plain is None, changed.__qualname__


def test_an_h11_cycle_with_another_send_is_not_accelerated() -> None:
    """In-process, on top: a cycle class named as uvicorn's h11 one whose ``send`` uses other names than the
    reviewed ones gets no plain-response accelerator; uvicorn's own class gets one (and no stream writers)."""
    from uvicorn.protocols.http.h11_impl import RequestResponseCycle

    from rsgi_bridge.servers import uvicorn as seam

    class WritesTheBodyOnly:
        async def send(self, message: dict[str, bytes]) -> None:
            self.transport.write(self.conn.send(message.get("body", b"")))  # type: ignore[attr-defined]

    class Inherits(RequestResponseCycle):  # its send is not its own
        pass

    for changed in (WritesTheBodyOnly, Inherits):
        changed.__module__, changed.__name__ = RequestResponseCycle.__module__, RequestResponseCycle.__name__
        quirks = seam.quirks_for(changed)
        assert quirks is not None and quirks.plain is None, changed.__qualname__
    quirks = seam.quirks_for(RequestResponseCycle)
    assert quirks is not None and quirks.plain is not None
    assert quirks.stream_start is None and quirks.stream_chunk is None and quirks.departed is not None


def test_the_switch_reaches_websockets() -> None:
    """uvicorn's websocket accelerator (receive() read directly, no watcher task) is off with the switch."""

    async def tasks_during_a_session(server: Server) -> int:
        async with websockets.connect(server.ws_url + "/ws/echo") as ws:
            await ws.send("hi")
            assert await ws.recv() == "hi"  # the app now waits in receive()
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as c:
                return int((await c.get("/_stats")).json()["bridge_tasks"])

    counts = {}
    for flag in ("1", "0"):
        with Server("uvicorn", "tests.apps.fault_app:asgi", env={"RSGI_BRIDGE_ACCELERATE": flag}) as server:
            counts[flag] = asyncio.run(asyncio.wait_for(tasks_during_a_session(server), 20))
    # the bridge's tasks besides the stats request: with the switch off, the session's watcher too
    assert counts["0"] == counts["1"] + 1, counts


def answered_while_held(server: Server, tmp_path: Path, name: str, path: str = "/hold") -> bool:
    """GET ``path``: whether its response (a stream's start) arrived while the app held the loop after setting it."""
    release = tmp_path / name
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request("GET", f"{path}?{release}"))  # kept alive: a closing connection is not accelerated
        s.settimeout(2.0)
        try:
            early = s.recv(65536)
        except TimeoutError:
            early = b""
        release.touch()
        s.settimeout(10)
        got_all = early
        while True:
            try:
                got = parse(got_all)
                break
            except ValueError:  # incomplete
                data = s.recv(65536)
                assert data, got_all
                got_all += data
    assert got.status == 200 and got.body == b"held", got
    return bool(early)


def test_a_response_leaves_when_set_as_on_granian(servers: tuple[Server, Server], tmp_path: Path) -> None:
    """Granian sends a response (a stream's start) the moment the app sets it: the client has it while
    the app goes on (here blocking its thread). The accelerators write it inside the app's
    ``response_str``/``response_stream`` call, so the bridge on uvicorn does the same; the generic path
    can only send at the app's next await."""
    fast, generic = servers
    with Server("granian-rsgi", "tests.apps.accel_app:app") as granian:
        assert answered_while_held(granian, tmp_path, "granian")
        assert answered_while_held(granian, tmp_path, "granian-stream", "/hold-stream")
    assert answered_while_held(fast, tmp_path, "fast")
    assert answered_while_held(fast, tmp_path, "fast-stream", "/hold-stream")
    # documented: the generic path sends at the app's next await
    assert not answered_while_held(generic, tmp_path, "generic")
    assert not answered_while_held(generic, tmp_path, "generic-stream", "/hold-stream")


def test_a_plain_response_leaves_when_set_on_h11(h11_servers: tuple[Server, Server], tmp_path: Path) -> None:
    """On uvicorn's h11 protocol too, a plain response leaves inside ``response_str``, as on Granian (compared
    in the test above); a stream's start, not accelerated on h11, at the app's next await."""
    fast, generic = h11_servers
    assert answered_while_held(fast, tmp_path, "fast")
    assert not answered_while_held(fast, tmp_path, "fast-stream", "/hold-stream")
    assert not answered_while_held(generic, tmp_path, "generic")


@pytest.mark.parametrize("body", [b"", b"the request body"])
def test_the_body_read_after_a_plain_response(plain_servers: tuple[Server, Server], body: bytes) -> None:
    """An app that responds, then reads its body, gets it (b"" for none), as on Granian: the accelerator
    writes while the app runs only when uvicorn holds no body, else the generic path keeps it first."""
    fast, generic = plain_servers
    before = accelerated(fast)
    method = "POST" if body else "GET"
    requests = [(request(method, "/read-after", body=body), False), (request("GET", "/_last-read", close=True), False)]
    got = same_bytes(fast, generic, lambda port: one_by_one(port, requests))
    assert got.endswith(b"\r\n\r\n" + repr(body).encode()), got
    # /read-after's response was accelerated: with no body inside response_str, with one once the app
    # returned (it read its body without suspending); /_last-read closes the connection (not accelerated)
    assert accelerated(fast) - before == 1


@pytest.mark.parametrize("path", ["/s/chunked", "/s/length", "/s/nothing", "/f/whole", "/f/no-length", "/f/empty"])
def test_streams_on_closing_connections_and_head(servers: tuple[Server, Server], path: str) -> None:
    fast, generic = servers
    before = streams(fast)
    same_bytes(fast, generic, lambda port: raw_exchange(port, request("GET", path, close=True)))
    same_bytes(fast, generic, lambda port: raw_exchange(port, request("GET", path, version="1.0")))
    same_bytes(fast, generic, lambda port: one_by_one(port, [(request("HEAD", path), True)]))
    assert streams(fast) == before  # each of these goes through uvicorn's own send


def test_streams_pipelined(servers: tuple[Server, Server]) -> None:
    fast, generic = servers
    before = streams(fast)
    paths = ["/s/chunked", "/s/length", "/f/range", "/s/suspends-first", "/f/no-length", "/s/nothing"]
    burst = b"".join(request("GET", p) for p in paths) + request("GET", "/r/hello", close=True)
    same_bytes(fast, generic, lambda port: raw_exchange(port, burst))
    assert streams(fast) - before == 6


def test_an_app_failing_right_after_response_stream(servers: tuple[Server, Server]) -> None:
    """Granian sends a stream's start in ``response_stream``, so does the accelerator: an app that raises
    before its first await has its status out already, and the bridge aborts that response as after any
    failure mid-stream (no terminating chunk: the client can tell). The generic path has sent nothing
    yet then: a clean 500. docs/migrating.md lists the difference."""
    fast, generic = servers
    ask = request("GET", "/stream-then-raise")
    with Server("granian-rsgi", "tests.apps.accel_app:app") as granian:
        raw = raw_exchange(granian.port, ask, timeout=1.0)
    want = parse(raw)
    # its status and headers, and no body (framed with content-length: 0, or chunked under load)
    assert (want.status, want.get_all("x-s"), want.body) == (200, ["1"], b""), raw
    before = streams(fast)
    got = raw_exchange(fast.port, ask, timeout=2.0)
    assert got.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nx-s: 1\r\n" in got, got
    assert b"transfer-encoding: chunked" in got and not got.endswith(b"0\r\n\r\n"), got  # cut short
    assert streams(fast) - before == 1
    assert parse(raw_exchange(generic.port, ask, timeout=2.0)).status == 500


def last_read(server: Server) -> str:
    return parse(raw_exchange(server.port, request("GET", "/_last-read", close=True))).body.decode()


@pytest.mark.parametrize("accelerate", ["1", "0"])
@pytest.mark.parametrize("http", [HTTPTOOLS, H11], ids=["httptools", "h11"])
def test_a_body_arriving_after_the_headers_is_read_after_responding(accelerate: str, http: list[str]) -> None:
    """uvicorn has the headers, not yet the body, when the app responds: the response must not complete
    uvicorn's cycle before the body is in (uvicorn would drop it), so the app still reads it."""
    with Server("uvicorn", APP, http, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            s.sendall(b"POST /read-after HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
            time.sleep(0.3)
            s.sendall(b"hello")
            got = b""
            while b"answered first" not in got:  # (the generic path writes the head and the body apart)
                data = s.recv(65536)
                assert data, got
                got += data
        assert wait_for(lambda: last_read(server) != "nothing read", 5)
        assert last_read(server) == repr(b"hello")


@pytest.mark.parametrize("accelerate", ["1", "0"])
@pytest.mark.parametrize("http", [HTTPTOOLS, H11], ids=["httptools", "h11"])
def test_a_body_replayed_by_a_middleware_is_read_after_responding(accelerate: str, http: list[str]) -> None:
    """A middleware read the body from uvicorn and replays it: uvicorn's cycle holds none, but the app's
    body is still to be read (from the middleware's receive), so the accelerator must not mark it empty."""
    app = "tests.apps.accel_app:replaying"
    with Server("uvicorn", app, http, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        got = parse(one_by_one(server.port, [(request("POST", "/read-after", body=b"hello"), False)]))
        assert got.body == b"answered first"
        assert wait_for(lambda: last_read(server) != "nothing read", 5)
        assert last_read(server) == repr(b"hello")


@pytest.mark.parametrize("accelerate", ["1", "0"])
@pytest.mark.parametrize("path", ["/fail/plain", "/fail/stream", "/fail/file"])
def test_a_failing_socket_write_never_reaches_the_app(accelerate: str, path: str) -> None:
    """The server failing to write (here its transport raising) ends the exchange; nothing reaches the app
    from ``response_*`` (a stream's sends then raise ``ProtocolClosed``), nothing reaches the server (the
    bridge logs it), and the server serves on."""
    app = "tests.apps.accel_app:failing_writes"
    with Server("uvicorn", app, HTTPTOOLS, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        raw_exchange(server.port, request("GET", path), timeout=1.0)
        want = "send raised RSGIProtocolClosed" if path == "/fail/stream" else "nothing reached the app"
        assert wait_for(lambda: last_read(server) == want, 5), last_read(server)
        assert parse(raw_exchange(server.port, request("GET", "/r/hello", close=True))).body == b"Hello, world!"
        assert "Exception in ASGI application" not in server.output()


@pytest.mark.parametrize("accelerate", ["1", "0"])
def test_a_failing_socket_write_on_h11(accelerate: str) -> None:
    """On h11 too: nothing reaches the app, and the connection whose write failed is closed, as uvicorn closes
    a response its app left incomplete (not left open past the 5 s keep-alive: the cycle is not marked
    complete before the write)."""
    app = "tests.apps.accel_app:failing_writes"
    with Server("uvicorn", app, H11, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        assert closes_after_response(server.port, request("GET", "/fail/plain"), within=7.0)
        assert wait_for(lambda: last_read(server) == "nothing reached the app", 5), last_read(server)
        assert parse(raw_exchange(server.port, request("GET", "/r/hello", close=True))).body == b"Hello, world!"


@pytest.mark.parametrize("accelerate", ["1", "0"])
def test_a_connect_answered_200_on_h11(accelerate: str) -> None:
    """CONNECT answered 200: h11 switches protocol at the head and refuses a body after it, so uvicorn's send
    writes the head and then fails; the accelerator leaves CONNECT to it, and the client gets that head."""
    with Server("uvicorn", "tests.apps.ok_app:asgi", H11, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        got = raw_exchange(server.port, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n", timeout=2.0)
        assert got.startswith(b"HTTP/1.1 200 OK\r\n"), got


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the server's RSS from /proc")
@pytest.mark.parametrize("path", ["/huge", "/huge-file"])
def test_stream_chunks_keep_backpressure(servers: tuple[Server, Server], path: str) -> None:
    """A client that stops reading a 64 MiB stream (or file): uvicorn pauses writes, the accelerator hands the
    chunks to uvicorn's send, which waits for the drain, so the server does not buffer it; then every byte
    arrives."""
    fast, _generic = servers
    size = 64 * 1024 * 1024
    before = chunks(fast)
    with socket.create_connection(("127.0.0.1", fast.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(request("GET", path))
        rss = rss_kib(fast.pid())
        time.sleep(1.5)  # not reading: the socket buffers fill, the transport pauses
        grown = rss_kib(fast.pid()) - rss
        got = 0
        while got < size:
            data = s.recv(1 << 20)
            assert data, got
            got += len(data)
    assert grown < 24 * 1024, f"the server buffered {grown} KiB for a client that stopped reading"
    assert got - size < 1024  # the body (and only a head's worth more)
    written = chunks(fast) - before
    pieces = 64 if path == "/huge" else 1024  # 1 MiB chunks, or the file's 64 KiB pieces
    assert 0 < written < pieces, written  # some straight to the socket, the rest through uvicorn's send
