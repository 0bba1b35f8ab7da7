"""ASGI scope -> RSGI scope and headers, built lazily on first access."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Headers", "Scope", "format_address"]

_HTTP_VERSIONS = {"1.1": "1.1", "1.0": "1", "2": "2", "2.0": "2", "3": "3", "1": "1"}
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_MISSING: Any = object()
# What Granian leaves out of its headers: a value with a byte outside visible ASCII (HTAB allowed).
_INVISIBLE = re.compile(r"[^\t\x20-\x7e]")


def _visible(value: bytes) -> str | None:
    """``value`` as str if it is visible ASCII (what Granian shows), else None."""
    s = value.decode("latin-1")
    if s.isascii() and (s.isprintable() or _INVISIBLE.search(s) is None):
        return s
    return None


def _latin1(value: bytes) -> str:
    return value.decode("latin-1")


def format_address(addr: Any) -> str:
    """Format an ASGI ``(host, port)`` pair the way Rust prints a socket address.

    IPv6 hosts are bracketed; a unix socket (no port, or a path as host) gives
    the path alone; a missing address gives ``""``.
    """
    if not addr:
        return ""
    try:
        host, port = addr[0], addr[1]
    except (TypeError, IndexError, KeyError):
        return str(addr)
    if host is None or host == "":  # granian's ASGI mode gives ("", "0") for a unix-socket client
        return ""
    host = str(host)
    if port is None or host.startswith("/") or host.startswith("\x00"):
        return host
    if ":" in host and not host.startswith("["):
        return f"[{host}]:{port}"
    return f"{host}:{port}"


class Headers:
    """Read-only request headers with Granian's ``RSGIHeaders`` API.

    Names are lower-case as ASGI servers deliver them; repeated headers are kept in order. By
    default a value that is not visible ASCII is left out of the values, as Granian does;
    ``latin1=True`` shows it decoded as latin-1 instead (lossless, the ASGI/WSGI convention).
    """

    __slots__ = ("_latin1", "_raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]], latin1: bool = False) -> None:
        self._raw = raw if isinstance(raw, list) else list(raw)
        self._latin1 = latin1

    @staticmethod
    def _key(key: str) -> bytes | None:
        # Lower-case ASCII only, as servers do: every name items() reports is found again;
        # a name beyond latin-1 cannot be on the wire (None matches nothing).
        try:
            return key.encode("latin-1").lower()
        except UnicodeEncodeError:
            return None

    def _values(self, key: str) -> Iterator[str]:
        k = self._key(key)
        decode = _latin1 if self._latin1 else _visible
        for name, value in self._raw:
            if name == k:
                v = decode(value)
                if v is not None:
                    yield v

    def get(self, key: str, default: Any = None) -> Any:
        """First value of ``key``, or ``default`` (also when that value is hidden, as Granian)."""
        k = self._key(key)
        for name, value in self._raw:
            if name == k:
                if self._latin1:
                    return value.decode("latin-1")
                v = _visible(value)
                return default if v is None else v
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` in order (empty list when absent)."""
        return list(self._values(key))

    def keys(self) -> list[str]:
        """Distinct names in first-seen order."""
        return list(dict.fromkeys(n.decode("latin-1") for n, _ in self._raw))

    def values(self) -> list[str]:
        """Every value, repeated names included, in the order of :meth:`items`."""
        return [v for _, v in self.items()]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair: as Granian, a repeated name's values together, names in first-seen order."""
        raw = self._raw
        decode = _latin1 if self._latin1 else _visible
        if len({n for n, _ in raw}) < len(raw):  # a repeated name: group its values
            grouped: dict[bytes, list[bytes]] = {}
            for n, v in raw:
                grouped.setdefault(n, []).append(v)
            raw = [(n, v) for n, vs in grouped.items() for v in vs]
        out = []
        for n, v in raw:
            s = decode(v)
            if s is not None:
                out.append((n.decode("latin-1"), s))
        return out

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        k = self._key(key)
        return any(n == k for n, _ in self._raw)

    def __getitem__(self, key: str) -> str:
        value = self.get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len({n for n, _ in self._raw})

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"


class Scope:
    """The RSGI scope of one connection, read lazily from the ASGI scope."""

    __slots__ = ("_headers", "_latin1", "_s", "proto")

    rsgi_version = "1.6"

    def __init__(self, asgi_scope: dict[str, Any], proto: str, latin1_headers: bool = False) -> None:
        self._s = asgi_scope
        self._headers: Headers | None = None
        self._latin1 = latin1_headers
        self.proto = proto

    @property
    def http_version(self) -> str:
        v: str = self._s.get("http_version", "1.1")
        return _HTTP_VERSIONS.get(v, v)

    @property
    def scheme(self) -> str:
        s = self._s.get("scheme") or "http"
        return _SCHEMES.get(s, s)

    @property
    def method(self) -> str:
        return str(self._s.get("method", "GET"))  # as sent, as Granian

    @property
    def path(self) -> str:
        s = self._s
        path: str = s["path"]
        root: str = s.get("root_path", "")
        if root and path.startswith(root):
            rest = path[len(root) :]
            if not rest:
                return "/"
            if rest[0] == "/":
                return rest
        return path

    @property
    def query_string(self) -> str:
        q = self._s.get("query_string", b"")
        return q.decode("latin-1") if isinstance(q, (bytes, bytearray)) else str(q)

    @property
    def server(self) -> str:
        return format_address(self._s.get("server"))

    @property
    def client(self) -> str:
        return format_address(self._s.get("client"))

    @property
    def headers(self) -> Headers:
        h = self._headers
        if h is None:
            h = self._headers = Headers(self._s.get("headers", ()), self._latin1)
        return h

    @property
    def authority(self) -> str | None:
        if self.http_version in ("1", "1.1"):
            return None
        return self.headers.get("host") or self.headers.get(":authority")  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in _FIELDS if f != "headers")
        return f"Scope({fields})"


_FIELDS = (
    "proto",
    "rsgi_version",
    "http_version",
    "server",
    "client",
    "scheme",
    "method",
    "path",
    "query_string",
    "headers",
    "authority",
)
