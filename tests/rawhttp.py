"""Raw HTTP/1.1 over a socket, for tests that must see the exact bytes a server puts on the wire."""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass


def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` and read until the server closes or ``timeout`` passes."""
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = s.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                break
            if not data:
                break
            out += data
    return out


def req(method: str, path: str, headers: bytes = b"", body: bytes = b"", close: bool = True) -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode() + headers
    if body:
        head += f"Content-Length: {len(body)}\r\n".encode()
    if close:
        head += b"Connection: close\r\n"
    return head + b"\r\n" + body


@dataclass
class Raw:
    status: int
    headers: list[tuple[str, str]]  # lower-case names, in order
    body: bytes  # de-chunked
    rest: bytes  # bytes after the framed body

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n == name]

    def app_headers(self) -> list[tuple[str, str]]:
        """The headers the app set (x-*, content-type): the ones every side must agree on."""
        return [(n, v) for n, v in self.headers if n.startswith("x-") or n == "content-type"]


def parse(data: bytes, head: bool = False) -> Raw:
    """One HTTP/1.1 response from raw bytes. Raises ValueError when it cannot be framed."""
    if b"\r\n\r\n" not in data:
        raise ValueError(f"no complete response head in {data[:300]!r}")
    top, rest = data.split(b"\r\n\r\n", 1)
    lines = top.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))
    names = [n for n, _ in headers]
    if head or status in (204, 304) or 100 <= status < 200:
        return Raw(status, headers, b"", rest)
    if ("transfer-encoding", "chunked") in headers:
        body = bytearray()
        pos = 0
        while True:
            eol = rest.find(b"\r\n", pos)
            if eol < 0:
                raise ValueError(f"truncated chunked body after {len(body)} bytes")
            size = int(rest[pos:eol].split(b";")[0], 16)
            pos = eol + 2
            if size == 0:
                if rest[pos : pos + 2] != b"\r\n":
                    raise ValueError("no end of the chunked body")
                return Raw(status, headers, bytes(body), rest[pos + 2 :])
            if len(rest) < pos + size + 2:
                raise ValueError(f"truncated chunk after {len(body)} bytes")
            body += rest[pos : pos + size]
            pos += size + 2
    if "content-length" in names and dict(headers)["content-length"].isdigit():
        n = int(dict(headers)["content-length"])
        if len(rest) < n:
            raise ValueError(f"body shorter ({len(rest)}) than its content-length ({n})")
        return Raw(status, headers, rest[:n], rest[n:])
    return Raw(status, headers, rest, b"")
