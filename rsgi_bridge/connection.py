"""State and checks shared by the HTTP and websocket paths."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
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
    "contain",
    "encode_headers",
    "logger",
    "uvicorn_owner",
]

logger = logging.getLogger("rsgi_bridge")

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]

# RFC 9110 token characters.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Control characters a header value must not hold (RFC 9110 allows HTAB only): CR/LF would split the
# response; uvicorn refuses the others after marking the response started, hypercorn and daphne send them.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Header names already checked, with their wire form; bounded so odd apps cannot grow it.
_NAMES: dict[str, bytes] = {}
_NAMES_MAX = 2048
# Whole (name, value) pairs already checked, with their wire form; bounded the same way.
_PAIRS: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_PAIRS_MAX = 4096
_PAIR_VALUE_MAX = 256
# Whole header lists (as tuples) already checked, with their wire form and whether they hold a content-length.
_SETS: dict[tuple[Any, ...], tuple[tuple[tuple[bytes, bytes], ...], bool]] = {}
_SETS_MAX = 1024
_SET_LEN_MAX = 16


class Connection:
    """One ASGI connection seen as one RSGI protocol object."""

    __slots__ = ("_asgi_scope", "_receive", "_rsgi_scope", "_send", "_stepping")

    proto = "http"

    def __init__(self, scope: ASGIScope, receive: ASGIReceive, send: ASGISend) -> None:
        self._asgi_scope = scope
        self._receive = receive
        self._send = send
        self._rsgi_scope: Scope | None = None
        # True while Drive runs a step of the app: a response set then is flushed by Drive.
        self._stepping = False

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


def contain(exc: BaseException) -> bool:
    """Whether an exception that escaped the RSGI app is the app's failure, to be contained.

    Call it in the request's own task, in the ``except BaseException`` around the app call.
    ``True``: the app failed; the bridge logs it, answers as for any app error (HTTP: an empty
    500; websocket: refused with 403 before accept, closed with 1011 after) and returns
    normally, so the server keeps serving. That covers every ``Exception``, ``SystemExit``,
    ``KeyboardInterrupt``, other ``BaseException`` subclasses, and a ``CancelledError`` the app
    raised itself or got by awaiting a cancelled task while its own task was not cancelled.
    ``False``: the exception must propagate unchanged: a ``CancelledError`` while the current
    task is being cancelled (the server or the drain cancelled the request: ``Task.cancelling()``
    is non-zero), and ``GeneratorExit`` (the coroutine is being closed). Without a current task,
    a ``CancelledError`` cannot be ours and is contained. Before Python 3.11 (no
    ``cancelling()``) every ``CancelledError`` propagates.
    """
    if isinstance(exc, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            return True
        if task is None:
            return True
        if sys.version_info < (3, 11):
            return False
        return task.cancelling() == 0
    return not isinstance(exc, GeneratorExit)


async def _as_coroutine(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def as_coroutine(awaitable: Awaitable[Any]) -> Any:
    """``awaitable`` itself if it can be stepped with ``send``/``throw``, else a coroutine awaiting it."""
    return awaitable if hasattr(awaitable, "send") else _as_coroutine(awaitable)


_NO_STEP: Any = object()


class Drive:
    """Await the HTTP app's coroutine, flushing a pending response the moment the app suspends.

    A response set by a synchronous ``response_*`` call thus leaves at the app's
    next ``await``, not when it returns, without a task of its own.
    ``conn._state == 1`` means "pending"; ``conn.flush()`` sends it. ``first``:
    what the coroutine yielded at its first step, already taken by the caller
    (see ``HTTPProtocol.begin``). Once ``conn._state >= 2`` nothing can become
    pending again, so the rest of the coroutine runs by plain ``yield from``,
    without a Python step per suspension.
    """

    __slots__ = ("_conn", "_coro", "_first")

    def __init__(self, awaitable: Awaitable[Any], conn: Any, first: Any) -> None:
        self._coro: Any = as_coroutine(awaitable)
        self._conn = conn
        self._first = first

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        conn = self._conn
        value: Any = None
        exc: BaseException | None = None
        fut = self._first
        while True:
            if fut is _NO_STEP:
                conn._stepping = True
                try:
                    if exc is None:
                        fut = coro.send(value)
                    else:
                        thrown, exc = exc, None
                        fut = coro.throw(thrown)
                except StopIteration as stop:
                    return stop.value
                finally:
                    conn._stepping = False
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
                    fut = _NO_STEP
                    continue
            try:
                value = yield fut
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:
                exc = e
            fut = _NO_STEP
            if exc is None and value is None and conn._state >= 2:
                wrapper = getattr(coro, "__await__", None)
                if wrapper is not None:
                    return (yield from wrapper())  # resumes with send(None), as the next step would


_UVICORN_TYPES: dict[tuple[type, str], bool] = {}


def uvicorn_owner(send: Any, kind: str) -> Any:
    """The uvicorn object ``send`` is a bound method of, if its class is in ``uvicorn.protocols.<kind>``.

    Server-specific fast paths use it; for any other ``send`` (another server, a middleware's
    wrapper) it gives None and the generic path runs.
    """
    owner = getattr(send, "__self__", None)
    if owner is None:
        return None
    key = (type(owner), kind)
    ok = _UVICORN_TYPES.get(key)
    if ok is None:
        ok = type(owner).__module__.startswith(f"uvicorn.protocols.{kind}.")
        if len(_UVICORN_TYPES) < 64:
            _UVICORN_TYPES[key] = ok
    return owner if ok else None


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
    a new ASGI header list and whether it holds a ``content-length``.
    """
    kind = type(headers)
    if kind is list or kind is tuple:
        try:  # the same header set as an earlier response: one lookup
            hit = _SETS.get(headers if kind is tuple else tuple(headers))  # type: ignore[arg-type, call-overload]
        except TypeError:  # something unhashable in it: the full check says what is wrong
            hit = None
        if hit is not None:
            return [*hit[0]], hit[1]
    elif not isinstance(headers, (list, tuple)):
        raise TypeError(
            f"response headers must be a list or tuple of (name, value) tuples, not {type(headers).__name__}"
        )
    out: list[tuple[bytes, bytes]] = []
    has_length = False
    pairs = _PAIRS
    remember = len(headers) <= _SET_LEN_MAX and len(_SETS) < _SETS_MAX  # type: ignore[arg-type]
    for pair in headers:  # type: ignore[attr-defined]
        wire = None
        if type(pair) is tuple:
            try:  # noqa: SIM105 - contextlib.suppress costs a context manager per header
                wire = pairs.get(pair)
            except TypeError:  # something unhashable in it: _encode_pair says what is wrong
                pass
        if wire is None:
            wire = _encode_pair(pair)
            remember = remember and pair in pairs  # only sets made of remembered (plain str) pairs
        if wire[0] == b"content-length":
            has_length = True
        out.append(wire)
    if remember:
        _SETS[tuple(headers)] = (tuple(out), has_length)  # type: ignore[arg-type]
    return out, has_length


def _encode_pair(pair: object) -> tuple[bytes, bytes]:
    """Check one ``(name, value)`` response header and return its wire form (remembered when common)."""
    if type(pair) is not tuple or len(pair) != 2:
        if not isinstance(pair, tuple):
            raise TypeError(f"each response header must be a (name, value) tuple, not {type(pair).__name__}: {pair!r}")
        raise TypeError(f"each response header must be a (name, value) pair, got {len(pair)} items: {pair!r}")
    name, value = pair
    wire = _encode_name(name)
    if type(value) is not str and not isinstance(value, str):
        raise TypeError(f"header {name!r} value must be str, not {type(value).__name__}")
    if not (value.isascii() and value.isprintable()) and _BAD_VALUE.search(value) is not None:
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"header {name!r} value contains CR, LF or NUL: {value!r}")
        raise ValueError(f"header {name!r} value contains a control character (only HTAB is allowed): {value!r}")
    out = (wire, value.encode())
    if type(name) is str and type(value) is str and len(value) <= _PAIR_VALUE_MAX and len(_PAIRS) < _PAIRS_MAX:
        _PAIRS[(name, value)] = out
    return out


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
