"""ASGI scope -> RSGI scope and headers, built lazily on first access."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Headers", "Scope", "format_address"]

_HTTP_VERSIONS = {"1.1": "1.1", "1.0": "1", "2": "2", "2.0": "2", "3": "3", "1": "1"}
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_MISSING: Any = object()


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

    Names are lower-case as ASGI servers deliver them; values are decoded as latin-1 (lossless, the ASGI/WSGI
    convention). Repeated headers are kept in order.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw if isinstance(raw, list) else list(raw)

    @staticmethod
    def _key(key: str) -> bytes | None:
        # Lower-case ASCII only, as servers do: every name items() reports is found again;
        # a name beyond latin-1 cannot be on the wire (None matches nothing).
        try:
            return key.encode("latin-1").lower()
        except UnicodeEncodeError:
            return None

    def get(self, key: str, default: Any = None) -> Any:
        """First value of ``key``, or ``default``."""
        k = self._key(key)
        for name, value in self._raw:
            if name == k:
                return value.decode("latin-1")
        return default

    def get_all(self, key: str) -> list[str]:
        """Every value of ``key`` in order (empty list when absent)."""
        k = self._key(key)
        return [v.decode("latin-1") for n, v in self._raw if n == k]

    def keys(self) -> list[str]:
        """Distinct names in first-seen order."""
        return list(dict.fromkeys(n.decode("latin-1") for n, _ in self._raw))

    def values(self) -> list[str]:
        """Every value, repeated names included."""
        return [v.decode("latin-1") for _, v in self._raw]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, repeated names included."""
        return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in self._raw]

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return self.get(key, _MISSING) is not _MISSING

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

    __slots__ = ("_headers", "_s", "proto")

    rsgi_version = "1.6"

    def __init__(self, asgi_scope: dict[str, Any], proto: str) -> None:
        self._s = asgi_scope
        self._headers: Headers | None = None
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
        return str(self._s.get("method", "GET")).upper()

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
            h = self._headers = Headers(self._s.get("headers", ()))
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
