"""The HTTP half of the bridge, against a real uvicorn over sockets."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psutil
import pytest

from tests.apps.http_app import FILE
from tests.servers import Server, wait_for

FILE_BYTES = open(FILE, "rb").read()  # noqa: SIM115


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with Server("uvicorn", "tests.apps.http_app:asgi") as s:
        yield s


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        c.get("/_events")  # clear
        yield c


def events(client: httpx.Client) -> list[Any]:
    return client.get("/_events").json()  # type: ignore[no-any-return]


def raw_request(server: Server, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes, read until the server closes or the timeout; return all received."""
    out = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as s:
        s.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and (out.endswith(b"0\r\n\r\n") or b"content-length" in out.lower()):
                head, _, body = out.partition(b"\r\n\r\n")
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:") and len(body) >= int(line.split(b":")[1]):
                        return out
                if out.endswith(b"0\r\n\r\n"):
                    return out
    return out


# -- scope --------------------------------------------------------------------------


def test_scope_values(client: httpx.Client, server: Server) -> None:
    r = client.get(
        "/caf%C3%A9/%E2%82%AC/scope?a=1&b=%20x&c=%E2%82%AC",
        headers=[("X-Rep", "one"), ("x-rep", "two"), ("x-latin", "caf\xe9".encode("latin-1"))],
    )
    assert r.status_code == 200
    s = r.json()
    assert s["proto"] == "http"
    assert s["rsgi_version"] == "1.6"
    assert s["http_version"] == "1.1"
    assert s["scheme"] == "http"
    assert s["method"] == "GET"
    assert s["path"] == "/café/€/scope"
    assert s["query_string"] == "a=1&b=%20x&c=%E2%82%AC"
    assert s["server"] == f"127.0.0.1:{server.port}"
    host, port = s["client"].rsplit(":", 1)
    assert host == "127.0.0.1" and port.isdigit()
    assert s["authority"] is None
    assert s["x_rep_get"] == "one"
    assert s["x_rep_all"] == ["one", "two"]
    assert ["x-rep", "one"] in s["headers_items"] and ["x-rep", "two"] in s["headers_items"]
    assert not any(n == "x-latin" for n, _ in s["headers_items"])  # not visible ASCII: left out, as Granian
    assert s["headers_keys"].count("x-rep") == 1
    assert s["missing_get"] == "dflt"
    assert s["contains_host"] is True
    assert s["len"] == len(s["headers_keys"])


def test_scope_http10(server: Server) -> None:
    out = raw_request(server, b"GET /scope HTTP/1.0\r\nHost: x\r\n\r\n")
    body = out.partition(b"\r\n\r\n")[2]
    assert json.loads(body)["http_version"] == "1"


def test_scope_method_and_post(client: httpx.Client) -> None:
    assert client.post("/scope", content=b"x").json()["method"] == "POST"
    assert client.request("PATCH", "/scope").json()["method"] == "PATCH"


def test_root_path_stripped() -> None:
    with Server("uvicorn", "tests.apps.http_app:asgi", ["--root-path", "/api"]) as s:
        # uvicorn's --root-path: a proxy stripped /api, uvicorn puts it back in scope["path"]
        r = httpx.get(s.url + "/sub/scope?x=1", timeout=10)
        assert r.json()["path"] == "/sub/scope"
        assert r.json()["query_string"] == "x=1"


# -- bodies ---------------------------------------------------------------------------


def test_plain_responses(client: httpx.Client) -> None:
    r = client.get("/str")
    assert (r.status_code, r.text, r.headers["content-type"]) == (200, "héllo wörld", "text/plain; charset=utf-8")
    assert r.headers["content-length"] == str(len("héllo wörld".encode()))
    r = client.get("/bytes")
    assert (r.status_code, r.content, r.headers["x-kind"]) == (201, b"\x00\x01bytes", "bytes")
    assert client.get("/bytearray").content == b"from-bytearray"
    assert client.get("/memoryview").content == b"from-memoryview"
    r = client.get("/empty")
    assert (r.status_code, r.content) == (204, b"")
    r = client.get("/empty200")
    assert (r.status_code, r.content, r.headers["content-length"], r.headers["x-e"]) == (200, b"", "0", "1")
    r = client.get("/defaults")
    assert (r.status_code, r.content) == (200, b"")


def test_repeated_and_tuple_headers(client: httpx.Client) -> None:
    r = client.get("/tuple-headers")
    assert r.headers.get_list("x-a") == ["1", "2"]
    assert r.headers["x-b"] == "3"


def test_unicode_header_value_utf8_on_the_wire(server: Server) -> None:
    out = raw_request(server, b"GET /unicode-header HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert "x-e: €".encode() in out
    assert "x-u: ü".encode() in out


def test_status_range(client: httpx.Client, server: Server) -> None:
    assert client.get("/status?code=418").status_code == 418
    assert client.get("/status?code=299").status_code == 299
    # uvicorn only has status lines for 100-599: the bridge answers a clean 500 and logs why
    # (Granian sends "600 <none>"; see the README's server table).
    r = client.get("/status?code=600")
    assert (r.status_code, r.content) == (500, b"")
    assert wait_for(lambda: "cannot send response status 600 (it supports up to 599)" in server.output(), timeout=5)
    assert client.get("/str").status_code == 200


def test_status_600_on_hypercorn() -> None:
    with Server("hypercorn", "tests.apps.http_app:asgi") as s:
        out = raw_request(s, b"GET /status?code=600 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 600"), out
        assert out.endswith(b"status")


def test_echo_300kb(client: httpx.Client) -> None:
    body = os.urandom(300 * 1024)
    r = client.post("/echo", content=body)
    assert r.status_code == 200 and r.content == body and r.headers["x-len"] == str(len(body))
    r = client.post("/echo-iter", content=body)
    assert r.content == body


def test_echo_empty_body(client: httpx.Client) -> None:
    assert client.post("/echo", content=b"").content == b""
    assert client.post("/echo-iter", content=b"").content == b""


def test_streamed_upload_echoed_as_stream(client: httpx.Client) -> None:
    chunks = [os.urandom(16 * 1024) for _ in range(64)]  # 1 MiB in 64 pieces

    def gen() -> Iterator[bytes]:
        yield from chunks

    with client.stream("POST", "/stream-echo", content=gen()) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        got = b"".join(r.iter_bytes())
    assert got == b"".join(chunks)


def test_stream_mixed_and_empty_chunks(client: httpx.Client) -> None:
    assert client.get("/stream-mixed").content == b"abcd"


def test_stream_is_really_streamed(client: httpx.Client) -> None:
    t0 = time.monotonic()
    with client.stream("GET", "/stream-slow?n=3&delay=0.5") as r:
        chunks = r.iter_raw()
        first = next(chunks)
        first_at = time.monotonic() - t0
        rest = b"".join(chunks)
    assert first.startswith(b"0")
    assert first_at < 0.9  # the whole stream takes 1.5 s
    assert (first + rest) == b"0\n1\n2\n"


def _rss(server: Server) -> int:
    return psutil.Process(server.pid()).memory_info().rss


def test_64mib_download_and_upload_bounded_memory(client: httpx.Client, server: Server) -> None:
    size = 64 * 1024 * 1024
    client.get(f"/download?size={1024 * 1024}")  # warm up
    before = _rss(server)
    peak = before
    n = 0
    with client.stream("GET", f"/download?size={size}") as r:
        for chunk in r.iter_raw(1 << 20):
            n += len(chunk)
            peak = max(peak, _rss(server))
    assert n == size
    assert peak - before < 8 * 1024 * 1024, f"RSS grew by {(peak - before) >> 20} MiB"

    block = b"u" * (1 << 20)
    stop = threading.Event()
    peaks = [before]

    def sample() -> None:
        while not stop.is_set():
            peaks.append(_rss(server))
            time.sleep(0.02)

    t = threading.Thread(target=sample)
    t.start()
    try:
        r = client.post("/upload-count", content=(block for _ in range(64)), timeout=60)
    finally:
        stop.set()
        t.join()
    assert r.text == str(size)
    assert max(peaks) - before < 8 * 1024 * 1024, f"RSS grew by {(max(peaks) - before) >> 20} MiB"


# -- files ----------------------------------------------------------------------------


def test_file_response(client: httpx.Client) -> None:
    r = client.get("/file")
    assert r.status_code == 200 and r.content == FILE_BYTES
    assert r.headers["content-type"] == "application/octet-stream"
    assert client.get("/file-pathlike").content == FILE_BYTES


@pytest.mark.parametrize(("start", "end"), [(0, 1), (10, 20), (1000, 70000), (0, len(FILE_BYTES)), (65535, 65537)])
def test_file_ranges(client: httpx.Client, start: int, end: int) -> None:
    r = client.get(f"/range?start={start}&end={end}")
    assert r.status_code == 206
    assert r.content == FILE_BYTES[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(FILE_BYTES)}"


def test_file_range_beyond_end_sends_what_exists(client: httpx.Client) -> None:
    n = len(FILE_BYTES)
    r = client.get(f"/range?start={n - 10}&end={n + 100}")
    assert r.status_code == 206 and r.content == FILE_BYTES[-10:]
    r = client.get(f"/range?start={n + 10}&end={n + 100}")
    assert r.status_code == 206 and r.content == b""


@pytest.mark.parametrize(("start", "end"), [(5, 5), (10, 2), (-1, 3)])
def test_file_range_invalid(client: httpx.Client, start: int, end: int) -> None:
    r = client.get(f"/range-invalid?start={start}&end={end}")
    assert r.status_code == 500 and r.content == b""
    [ev] = events(client)
    assert ev[:2] == ["range-invalid", "ValueError"]


def test_missing_file_and_directory_give_404(client: httpx.Client) -> None:
    for path in ("/missing-file", "/dir-file"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.content == b"Not found"  # Granian's body
        assert "x-never" not in r.headers


# -- errors ---------------------------------------------------------------------------


def test_error_gives_empty_500_and_server_lives(client: httpx.Client, server: Server) -> None:
    r = client.get("/error")
    assert (r.status_code, r.content) == (500, b"")
    r = client.get("/no-response")
    assert (r.status_code, r.content) == (500, b"")
    assert client.get("/str").status_code == 200
    out = server.output()
    assert "RuntimeError: boom" in out
    assert "without a response" in out


def test_respond_then_raise_keeps_response(client: httpx.Client) -> None:
    r = client.get("/respond-then-raise")
    assert (r.status_code, r.content) == (200, b"sent")


def test_error_mid_stream_aborts_response(server: Server) -> None:
    out = raw_request(server, b"GET /stream-error HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"partial" in out
    assert not out.endswith(b"0\r\n\r\n")  # no clean end of the chunked body
    with httpx.Client(base_url=server.url, timeout=5) as c, pytest.raises(httpx.RemoteProtocolError):
        c.get("/stream-error")


def test_first_response_wins(client: httpx.Client) -> None:
    r = client.get("/twice")
    assert (r.status_code, r.content) == (200, b"first")


def test_stream_after_response_is_protocol_error(client: httpx.Client) -> None:
    r = client.get("/stream-after-response")
    assert r.content == b"first"
    [ev] = events(client)
    assert ev[:2] == ["stream-after-response", "ProtocolError"] and ev[3] == "yes"


def test_body_read_twice_is_protocol_error(client: httpx.Client) -> None:
    assert client.post("/read-twice", content=b"abc").status_code == 200
    evs = events(client)
    assert [e[:2] for e in evs] == [["read-twice", "ProtocolError"], ["iter-after-read", "ProtocolError"]]


def test_stream_transport_used_after_app_returned(server: Server) -> None:
    check_kept_stream(server)


def check_kept_stream(server: Server) -> None:
    """As on Granian: a stream whose transport is still held after the handler returned stays open;
    sends on it arrive, and the body ends when the transport is released."""
    with httpx.Client(base_url=server.url, timeout=10) as first, httpx.Client(base_url=server.url, timeout=10) as other:
        with first.stream("GET", "/keep-transport") as r:
            chunks = r.iter_bytes()
            assert next(chunks) == b"kept"
            assert other.get("/use-kept").status_code == 200
            assert b"".join(chunks) == b"late"
        [ev] = events(other)
        assert ev[:2] == ["use-kept", "sent"]


def test_response_leaves_before_app_returns(client: httpx.Client) -> None:
    t0 = time.monotonic()
    r = client.get("/sleep-after?t=1.5")
    elapsed = time.monotonic() - t0
    assert r.content == b"early"
    assert elapsed < 1.0, elapsed
    assert wait_for(lambda: ["sleep-after-done"] in client.get("/_events").json(), timeout=5)


def test_response_set_from_another_task_leaves_at_once(client: httpx.Client) -> None:
    t0 = time.monotonic()
    r = client.get("/respond-from-task")
    assert r.content == b"from-task"
    assert time.monotonic() - t0 < 1.0


# -- disconnects ---------------------------------------------------------------------


def test_client_disconnect_resolves_when_client_aborts(client: httpx.Client, server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /disconnect?t=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
    assert wait_for(lambda: (ev := client.get("/_events").json()) and ev[0] == ["client-disconnect"], timeout=5)


def test_client_disconnect_cancel_is_clean_and_keeps_body(client: httpx.Client) -> None:
    body = os.urandom(200_000)
    for path in ("/disconnect-cancel", "/disconnect-then-body"):
        r = client.post(path, content=body)
        assert r.status_code == 200 and r.content == body


def test_stream_send_after_client_abort_raises_protocol_closed(client: httpx.Client, server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /stream-until-closed HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(4096)
        time.sleep(0.2)
    found: list[Any] = []

    def closed() -> bool:
        found.extend(client.get("/_events").json())
        return any(e[0] == "stream-closed" for e in found)

    assert wait_for(closed, timeout=5)
    ev = next(e for e in found if e[0] == "stream-closed")
    assert ev[2] == "ProtocolClosed" and ev[4] == "yes"  # a RuntimeError subclass
    assert ev[1] < 2000  # it stopped soon, not after the whole loop


def test_upload_abort_raises_protocol_closed(client: httpx.Client, server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"POST /upload-record HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        time.sleep(0.3)
    found: list[Any] = []

    def seen() -> bool:
        found.extend(client.get("/_events").json())
        return bool(found)

    assert wait_for(seen, timeout=5)
    assert found[0][:2] == ["upload-error", "ProtocolClosed"]


# -- bad input -------------------------------------------------------------------------

BAD = {
    "status-str": ("TypeError", "status"),
    "status-float": ("TypeError", "status"),
    "status-none": ("TypeError", "status"),
    "status-99": ("ValueError", "100-999"),
    "status-1000": ("ValueError", "100-999"),
    "status-negative": ("ValueError", "100-999"),
    "headers-dict": ("TypeError", "list or tuple"),
    "headers-generator": ("TypeError", "list or tuple"),
    "headers-list-pair": ("TypeError", "tuple"),
    "headers-bytes-pair": ("TypeError", "header name must be str"),
    "headers-1-tuple": ("TypeError", "pair"),
    "headers-3-tuple": ("TypeError", "pair"),
    "headers-str": ("TypeError", "list or tuple"),
    "headers-none": ("TypeError", "list or tuple"),
    "name-space": ("ValueError", "token"),
    "name-colon": ("ValueError", "token"),
    "name-empty": ("ValueError", "token"),
    "name-crlf": ("ValueError", "token"),
    "name-unicode": ("ValueError", "token"),
    "value-crlf": ("ValueError", "CR, LF or NUL"),
    "value-lf": ("ValueError", "CR, LF or NUL"),
    "value-cr": ("ValueError", "CR, LF or NUL"),
    "value-nul": ("ValueError", "CR, LF or NUL"),
    "value-int": ("TypeError", "must be str"),
    "value-bytes": ("TypeError", "must be str"),
    "bytes-body-str": ("TypeError", "response_bytes"),
    "str-body-bytes": ("TypeError", "response_str"),
    "bytes-body-int": ("TypeError", "response_bytes"),
    "stream-status": ("ValueError", "100-999"),
    "stream-headers": ("ValueError", "CR, LF or NUL"),
    "file-status": ("TypeError", "status"),
    "file-path-int": ("TypeError", "file path"),
    "range-start-end": ("ValueError", "lower than end"),
    "range-reversed": ("ValueError", "lower than end"),
    "range-negative": ("ValueError", "negative"),
}


def check_bad_case(case: str, out: bytes, recorded: list[Any]) -> None:
    """The client got a bare 500 with nothing of the refused response; the app saw the named error."""
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500"), out
    assert body == b""
    assert b"x-evil" not in out.lower() and b"x-a:" not in out.lower() and b"\r\na b" not in out
    [ev] = recorded
    kind, words = BAD[case]
    assert ev[1:3] == [case, kind], ev
    assert words in ev[3], ev


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_and_gives_clean_500(case: str, client: httpx.Client, server: Server) -> None:
    out = raw_request(server, f"GET /bad?case={case} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    check_bad_case(case, out, events(client))


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("send-bytes-str", "send_bytes takes bytes, bytearray or memoryview, not str"),
        ("send-str-bytes", "send_str takes str, not bytes"),
    ],
)
def test_bad_stream_send_type(case: str, message: str, server: Server) -> None:
    # The app raises before the stream's headers left: the client gets a clean 500.
    out = raw_request(server, f"GET /bad?case={case} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert out.startswith(b"HTTP/1.1 500"), out
    assert wait_for(lambda: f"TypeError: {message}" in server.output(), timeout=5)


# -- hooks ---------------------------------------------------------------------------


def test_hooks_run_until_complete_and_stored_loop(tmp_path: Any) -> None:
    log = tmp_path / "hooks.log"
    with Server("uvicorn", "tests.apps.http_app:hooked_asgi", env={"RSGI_TEST_HOOK_LOG": str(log)}) as s:
        # init's run_until_complete result, then the stored loop used from a request
        assert httpx.get(s.url + "/hook-value", timeout=10).text == "ready"
        assert httpx.get(s.url + "/str", timeout=10).status_code == 200
        s.stop()
        # uvicorn re-raises the captured SIGTERM after its graceful shutdown: it dies "by signal"
        assert s.returncode == -15
        assert "Application shutdown complete" in s.output()
    lines = [line.split(" ", 1)[1] for line in log.read_text().splitlines()]
    assert lines == ["init ready", "del closed"]
