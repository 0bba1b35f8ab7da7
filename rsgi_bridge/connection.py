"""State and checks shared by the HTTP and websocket paths."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

from .scope import Scope

__all__ = [
    "ASGIReceive",
    "ASGISend",
    "Connection",
    "Drive",
    "check_bytes",
    "check_status",
    "check_str",
    "encode_headers",
    "logger",
]

logger = logging.getLogger("rsgi_bridge")

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

# RFC 9110 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_BAD_VALUE = re.compile(r"[\r\n\x00]")
# Header names already checked, with their wire form; bounded so odd apps cannot grow it.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 2048


class Connection:
    """One ASGI connection seen as one RSGI protocol object."""

    __slots__ = ("_asgi_scope", "_receive", "_rsgi_scope", "_send")

    proto = "http"

    def __init__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        self._asgi_scope = scope
        self._receive = receive
        self._send = send
        self._rsgi_scope: Scope | None = None

    @property
    def scope(self) -> Scope:
        """The RSGI scope handed to the app (built on first use)."""
        s = self._rsgi_scope
        if s is None:
            s = self._rsgi_scope = Scope(self._asgi_scope, self.proto)  # type: ignore[arg-type]
        return s

    def log_app_error(self, exc: BaseException, what: str) -> None:
        """Log an exception the app raised, with the request it belongs to."""
        s = self._asgi_scope
        logger.error(
            "%s in RSGI app while handling %s %s",
            what,
            s.get("method", "WS") if s["type"] == "http" else "WEBSOCKET",
            s.get("path", ""),
            exc_info=exc,
        )


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class Drive:
    """Await the app's coroutine, flushing pending output the moment the app suspends.

    A response set by a synchronous ``response_*`` call (or a websocket
    ``close()``) thus leaves at the app's next ``await``, not when it returns,
    without a task of its own. ``conn._state == 1`` means "pending";
    ``conn.flush()`` sends it.
    """

    __slots__ = ("_conn", "_coro")

    def __init__(self, awaitable: Awaitable[Any], conn: Any) -> None:
        self._coro: Any = awaitable if hasattr(awaitable, "send") else _as_coroutine(awaitable)
        self._conn = conn

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        conn = self._conn
        value: Any = None
        exc: BaseException | None = None
        while True:
            try:
                if exc is None:
                    fut = coro.send(value)
                else:
                    thrown, exc = exc, None
                    fut = coro.throw(thrown)
            except StopIteration as stop:
                return stop.value
            value = None
            if conn._state == 1:  # a response was set and has not left yet
                try:
                    yield from conn.flush().__await__()
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as e:  # cancelled while flushing: the app sees it
                    cancel = getattr(fut, "cancel", None)
                    if cancel is not None:
                        cancel()
                    exc = e
                    continue
            try:
                value = yield fut
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                exc = e


def check_status(status: object) -> int:
    """Return ``status`` if it is an int in 100-999, else raise naming the problem."""
    if type(status) is not int:
        if isinstance(status, int) and not isinstance(status, bool):
            status = int(status)
        else:
            raise TypeError(f"response status must be an int, not {type(status).__name__}")
    if not 100 <= status <= 999:
        raise ValueError(f"response status {status} is outside 100-999")
    return status


def _encode_name(name: object) -> bytes:
    wire = _NAMES.get(name) if type(name) is str else None
    if wire is not None:
        return wire
    if not isinstance(name, str):
        raise TypeError(f"header name must be str, not {type(name).__name__}: {name!r}")
    if _TOKEN.fullmatch(name) is None:
        raise ValueError(f"header name {name!r} is not a valid HTTP token")
    wire = name.lower().encode("ascii")
    if len(_NAMES) < _NAMES_MAX:
        _NAMES[name] = wire
    return wire


def encode_headers(headers: object) -> tuple[list[tuple[bytes, bytes]], bool]:
    """Check RSGI response headers and encode them for ASGI.

    Accepts a list or tuple of ``(str, str)`` tuples, as Granian does. Returns
    the ASGI header list and whether it holds a ``content-length``.
    """
    if type(headers) is not list and not isinstance(headers, (list, tuple)):
        raise TypeError(
            f"response headers must be a list or tuple of (name, value) tuples, not {type(headers).__name__}"
        )
    out: list[tuple[bytes, bytes]] = []
    has_length = False
    for pair in headers:
        if type(pair) is not tuple or len(pair) != 2:
            if not isinstance(pair, tuple):
                raise TypeError(
                    f"each response header must be a (name, value) tuple, not {type(pair).__name__}: {pair!r}"
                )
            raise TypeError(f"each response header must be a (name, value) pair, got {len(pair)} items: {pair!r}")
        name, value = pair
        wire = _encode_name(name)
        if type(value) is not str and not isinstance(value, str):
            raise TypeError(f"header {name!r} value must be str, not {type(value).__name__}")
        if _BAD_VALUE.search(value) is not None:
            raise ValueError(f"header {name!r} value contains CR, LF or NUL: {value!r}")
        if wire == b"content-length":
            has_length = True
        out.append((wire, value.encode()))
    return out, has_length


def check_bytes(data: object, what: str) -> bytes:
    """Return ``data`` as bytes if it is bytes-like, else raise ``TypeError``."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"{what} takes bytes, bytearray or memoryview, not {type(data).__name__}")


def check_str(data: object, what: str) -> str:
    """Return ``data`` if it is a str, else raise ``TypeError``."""
    if isinstance(data, str):
        return data
    raise TypeError(f"{what} takes str, not {type(data).__name__}")
