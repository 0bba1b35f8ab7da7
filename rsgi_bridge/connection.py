"""State and checks shared by the HTTP and websocket paths."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .response import check_bytes, check_str
from .scope import Scope

__all__ = [
    "ASGIReceive",
    "ASGISend",
    "Connection",
    "check_bytes",
    "check_str",
    "contain",
    "log_app_error",
    "logger",
]

logger = logging.getLogger("rsgi_bridge")

ASGIScope = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[dict[str, Any]]]
ASGISend = Callable[[dict[str, Any]], Awaitable[None]]


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
        log_app_error(self._asgi_scope, exc, what)


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
    a ``CancelledError`` cannot be ours and is contained.
    """
    if isinstance(exc, asyncio.CancelledError):
        try:
            task = asyncio.current_task()
        except RuntimeError:  # no running loop
            return True
        if task is None:
            return True
        return task.cancelling() == 0
    return not isinstance(exc, GeneratorExit)


def log_app_error(scope: ASGIScope, exc: BaseException, what: str = "") -> None:
    """Log an exception an RSGI app raised, with the request it belongs to.

    ``what`` names it (default: "Exception", or the class of a ``BaseException`` that is not one).
    """
    if not what:
        what = "Exception" if isinstance(exc, Exception) else type(exc).__name__
    logger.error(
        "%s in RSGI app while handling %s %s",
        what,
        scope.get("method", "WS") if scope["type"] == "http" else "WEBSOCKET",
        scope.get("path", ""),
        exc_info=exc,
    )
