"""uvicorn's websocket accelerator (``rsgi_bridge/servers/uvicorn.py``, ``_websocket_sender``) puts the same
bytes on the wire as uvicorn's own ``send`` does for the same messages.

Two real uvicorn servers (``--ws websockets-sansio``, what ``--ws auto`` picks) serve
``tests/apps/accel_ws_app.py``: one with the accelerators on, one with them off, where every message
goes through uvicorn's ``send``. A raw-socket client (no library between it and the bytes) runs the
same script against both; what comes back must be equal but for the handshake's ``date`` header. The
app counts the frames the accelerator wrote, so the comparison is known to cover it. CI runs this
module against the oldest supported uvicorn too (``nox -s uvicorn-oldest``).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import pytest
import websockets

from rsgi_bridge.errors import ProtocolClosed
from tests.apps.accel_ws_app import FLOOD_FRAME, FLOOD_FRAMES, SCRIPTS
from tests.servers import Server, fast_and_generic, wait_for

APP = "tests.apps.accel_ws_app:asgi"
SANSIO = ["--ws", "websockets-sansio"]
_DATE = re.compile(rb"\r\ndate: [^\r\n]*\r\n", re.IGNORECASE)
_KEY = base64.b64encode(b"rsgi-bridge-test").decode()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Server, Server]]:
    with fast_and_generic(APP, SANSIO) as pair:
        yield pair


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (FIN set)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def server_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """The complete (first byte, opcode, payload) frames at the start of ``data`` (server frames: unmasked)."""
    out = []
    at = 0
    while at + 2 <= len(data):
        first, second = data[at], data[at + 1]
        size, at2 = second & 0x7F, at + 2
        if size == 126:
            if at2 + 2 > len(data):
                break
            (size,) = struct.unpack("!H", data[at2 : at2 + 2])
            at2 += 2
        elif size == 127:
            if at2 + 8 > len(data):
                break
            (size,) = struct.unpack("!Q", data[at2 : at2 + 8])
            at2 += 8
        if at2 + size > len(data):
            break
        out.append((first, first & 0x0F, data[at2 : at2 + size]))
        at = at2 + size
    return out


def run_script(port: int, script: str, deflate: bool = False, timeout: float = 15.0) -> tuple[bytes, bytes]:
    """Handshake, ask for ``script``, read every frame until the server's close, answer it, read to EOF.

    Returns (the handshake response, every byte after it)."""
    request = (
        f"GET /ws/script HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if deflate:
        request += "Sec-WebSocket-Extensions: permessage-deflate\r\n"
    deadline = time.monotonic() + timeout
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall((request + "\r\n").encode())
        got = b""
        while b"\r\n\r\n" not in got:
            assert time.monotonic() < deadline, got
            data = s.recv(65536)
            assert data, f"closed during the handshake: {got!r}"
            got += data
        handshake, _, rest = got.partition(b"\r\n\r\n")
        assert handshake.startswith(b"HTTP/1.1 101 "), handshake
        s.sendall(frame(0x1, script.encode()))
        while not any(op == 0x8 for _, op, _ in server_frames(rest)):
            assert time.monotonic() < deadline, f"no close frame after {len(rest)} bytes"
            data = s.recv(1 << 20)
            assert data, f"closed with no close frame after {len(rest)} bytes"
            rest += data
        s.sendall(frame(0x8, struct.pack("!H", 1000)))
        s.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            while data := s.recv(65536):
                rest += data
        except (TimeoutError, ConnectionResetError):
            pass
    return handshake, rest


def handshake(port: int, path: str, timeout: float = 10.0) -> tuple[socket.socket, bytes]:
    """A raw websocket connection to ``path``: the socket, and what came after the 101 response (with at
    least one complete frame)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    got = b""
    while b"\r\n\r\n" not in got or not server_frames(got.partition(b"\r\n\r\n")[2]):
        data = s.recv(65536)
        assert data, got
        got += data
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    return s, rest


def count(server: Server, what: str) -> str:
    return httpx.get(server.url + what, timeout=10).text


def frames(server: Server) -> int:
    return int(count(server, "/_frames"))


@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "permessage-deflate"])
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_same_bytes_with_and_without_the_accelerator(
    servers: tuple[Server, Server], script: str, deflate: bool
) -> None:
    fast, generic = servers
    before = frames(fast), frames(generic)
    got = {}
    for server in (fast, generic):
        handshake, rest = run_script(server.port, script, deflate)
        got[server] = (_DATE.sub(b"\r\ndate: *\r\n", handshake), rest)
    assert got[fast] == got[generic]
    handshake, rest = got[fast]
    assert (b"permessage-deflate" in handshake.lower()) == deflate
    sent = server_frames(rest)
    expected = SCRIPTS[script] + (["UnicodeEncodeError"] if script == "text" else [])
    assert [op for _, op, _ in sent] == [0x1 if isinstance(m, str) else 0x2 for m in expected] + [0x8]
    if not deflate:  # the payloads as the app sent them (compressed ones differ, equally on both)
        assert [p for _, _, p in sent[:-1]] == [m.encode() if isinstance(m, str) else m for m in expected]
    assert sent[-1][2] == struct.pack("!H", 1000)
    # every message went through the accelerator on one server, none on the other
    assert frames(fast) - before[0] == len(expected)
    assert frames(generic) == before[1] == 0


@pytest.mark.parametrize("ws", ["wsproto", "websockets"])
def test_other_websocket_protocols_go_through_uvicorn(ws: str) -> None:
    """The accelerator knows only the websockets-sansio protocol: on the others every message goes through
    uvicorn's ``send``, and the session works the same."""

    async def session(server: Server) -> list[str | bytes]:
        async with websockets.connect(server.ws_url + "/ws/script") as client:
            await client.send("text")
            return [await client.recv() for _ in range(len(SCRIPTS["text"]) + 1)]

    with Server("uvicorn", APP, ["--ws", ws], env={"RSGI_BRIDGE_ACCELERATE": "1"}) as server:
        got = asyncio.run(asyncio.wait_for(session(server), 20))
        assert got == [*SCRIPTS["text"], "UnicodeEncodeError"]
        assert frames(server) == 0


def test_the_default_websocket_protocol_is_accelerated() -> None:
    """``--ws auto`` (no option) picks websockets-sansio on the supported uvicorns: accelerated."""

    async def session(server: Server) -> None:
        async with websockets.connect(server.ws_url + "/ws/script") as client:
            await client.send("text")
            for _ in range(len(SCRIPTS["text"]) + 1):
                await client.recv()

    with Server("uvicorn", APP, env={"RSGI_BRIDGE_ACCELERATE": "1"}) as server:
        asyncio.run(asyncio.wait_for(session(server), 20))
        assert frames(server) == len(SCRIPTS["text"]) + 1


@pytest.mark.parametrize("accelerate", ["1", "0"])
def test_a_client_that_stops_reading_holds_the_sender_back(accelerate: str) -> None:
    """64 MiB of frames to a client that reads nothing: the sends wait for the socket to drain (uvicorn's
    writable event) instead of piling the frames up in the server; the client leaving ends the
    sends with ``ProtocolClosed``. With the accelerator, it wrote some of the frames (at most those sent:
    the ones that found writes paused went through uvicorn's ``send``)."""
    with Server("uvicorn", APP, SANSIO, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        s, _ = handshake(server.port, "/ws/flood")
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            # the sends stop growing once the socket's buffers are full
            assert wait_for(lambda: int(count(server, "/_sent")) > 0, 10)
            last = -1
            deadline = time.monotonic() + 15
            while (sent := int(count(server, "/_sent"))) != last:
                assert time.monotonic() < deadline, "the sends never stopped"
                last = sent
                time.sleep(0.5)
            assert sent < 32 * 1024 * 1024, f"{sent} bytes taken by a client that reads nothing"
            if accelerate == "1":
                assert 0 < frames(server) <= sent // len(FLOOD_FRAME) + 1
        finally:
            s.close()
        assert wait_for(lambda: count(server, "/_last") == ProtocolClosed.__name__, 10), count(server, "/_last")
        assert int(count(server, "/_sent")) < FLOOD_FRAMES * len(FLOOD_FRAME)


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("accelerate", ["1", "0"])
def test_a_client_gone_without_a_close_frame(accelerate: str, how: str, loop: str) -> None:
    """The client drops the TCP connection with no close frame (FIN, or RST): the websockets connection
    still says open, only uvicorn's ``disconnected`` flag knows. The push loop's next send raises
    ``ProtocolClosed``; it is not dropped silently (on ``--loop asyncio`` a write to a lost transport
    is dropped without an error: nothing else would tell the app)."""
    with Server("uvicorn", APP, [*SANSIO, "--loop", loop], env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        s, _ = handshake(server.port, "/ws/push")
        if how == "rst":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        assert wait_for(lambda: count(server, "/_last") != "", 20)
        assert count(server, "/_last") == ProtocolClosed.__name__


@pytest.mark.parametrize("accelerate", ["1", "0"])
def test_a_send_after_the_client_closed(accelerate: str) -> None:
    """The client's close frame arrives while the app sends at every loop turn: uvicorn has answered it and
    is closing the socket, but has not yet seen the connection go. The app's next send raises
    ``ProtocolClosed`` (the websockets connection is no longer open; uvicorn's ``send`` refuses it), not
    an exception of the websockets library."""
    with Server("uvicorn", APP, SANSIO, env={"RSGI_BRIDGE_ACCELERATE": accelerate}) as server:
        s, got = handshake(server.port, "/ws/push")
        with s:
            s.sendall(frame(0x8, struct.pack("!H", 1000)))
            try:
                while data := s.recv(65536):
                    got += data
            except ConnectionResetError:
                pass
        sent = server_frames(got)
        assert {(op, p) for _, op, p in sent[:-1]} == {(0x1, b"tick")}
        assert sent[-1][1] == 0x8  # uvicorn's answer to the close
        assert wait_for(lambda: count(server, "/_last") != "", 10)
        assert count(server, "/_last") == ProtocolClosed.__name__


def test_a_uvicorn_with_another_websocket_send_is_not_accelerated() -> None:
    """In-process, on top: a protocol class named as uvicorn's whose ``send`` uses other names than the
    reviewed ones, or whose ``connection_lost`` no longer keeps the flags the guards read, gets no frame
    writer; uvicorn's own class, or one with its very methods, gets one."""
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from rsgi_bridge.servers import uvicorn as seam

    class WritesTheFrameOnly:
        async def send(self, message: dict[str, bytes]) -> None:
            self.conn.send_binary(message["bytes"])  # type: ignore[attr-defined]
            self.transport.write(b"".join(self.conn.data_to_send()))  # type: ignore[attr-defined]

    class Inherits(WebSocketsSansIOProtocol):  # its send is not its own
        pass

    real = WebSocketsSansIOProtocol.__dict__

    class ForgetsTheDeparture:  # uvicorn's send, but a connection_lost that no longer sets the flags
        send, pause_writing, resume_writing = real["send"], real["pause_writing"], real["resume_writing"]

        def connection_lost(self, exc: Exception | None) -> None:
            self.transport.close()  # type: ignore[attr-defined]

    class SameMethods:  # the control: the reviewed methods themselves
        send, pause_writing, resume_writing = real["send"], real["pause_writing"], real["resume_writing"]
        connection_lost = real["connection_lost"]

    for changed in (WritesTheFrameOnly, Inherits, ForgetsTheDeparture, SameMethods):
        changed.__module__, changed.__name__ = WebSocketsSansIOProtocol.__module__, WebSocketsSansIOProtocol.__name__
    assert seam.quirks_for(SameMethods).websocket_send is not None  # type: ignore[union-attr]
    for changed in (WritesTheFrameOnly, Inherits, ForgetsTheDeparture):
        quirks = seam.quirks_for(changed)
        assert quirks is not None and quirks.websocket_send is None, changed.__qualname__
    quirks = seam.quirks_for(WebSocketsSansIOProtocol)
    assert quirks is not None and quirks.websocket_send is not None
    assert quirks.without_accelerators().websocket_send is None
