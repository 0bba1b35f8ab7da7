"""The ASGI application that hosts an RSGI app."""

from __future__ import annotations

import asyncio
import inspect
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from .connection import ASGIReceive, ASGISend, logger
from .http import HTTPProtocol
from .lifespan import NEW, RUNNING, STARTING, Lifecycle, Untracked
from .websocket import deny_websocket, serve_websocket

__all__ = ["RSGIBridge", "detect_interface", "wrap"]

_current_task = asyncio.current_task
if sys.version_info < (3, 12):
    # Before 3.12 every get_running_loop() (so every current_task()) makes a getpid() system call.
    # Remember the running loop per thread: a loop that is not running has no current task, so a
    # stale entry gives None and falls back to the full lookup.
    from asyncio.tasks import _current_tasks  # type: ignore[attr-defined]
    from threading import get_ident

    _loop_of_thread: tuple[int, Any] = (0, None)

    def _current_task() -> asyncio.Task[Any] | None:  # type: ignore[misc]
        global _loop_of_thread
        cached = _loop_of_thread
        if cached[0] == get_ident():
            task = _current_tasks.get(cached[1])
            if task is not None:
                return task  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        _loop_of_thread = (get_ident(), loop)
        return _current_tasks.get(loop)  # type: ignore[no-any-return]


def detect_interface(app: Any) -> str:
    """Tell whether ``app`` is an RSGI app (``"rsgi"``) or an ASGI 3 app (``"asgi"``)."""
    if hasattr(app, "__rsgi__"):
        return "rsgi"
    if not callable(app):
        raise TypeError(f"cannot wrap {app!r}: it is neither an RSGI nor an ASGI application (not callable)")
    try:
        sig = inspect.signature(app)
    except (TypeError, ValueError):
        return "rsgi"
    positional = [
        p
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    has_varargs = any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values())
    if len(positional) == 3:
        return "asgi"
    if len(positional) == 2 or has_varargs:
        return "rsgi"
    raise TypeError(
        f"cannot wrap {app!r}: an RSGI app takes (scope, protocol) and an ASGI app (scope, receive, send); "
        f"this one takes {len(positional)} positional argument(s)"
    )


def _timeout(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds or None, not {value!r}")
    return float(value)


class RSGIBridge:
    """An ASGI 3 application serving an RSGI application. Build it with :func:`wrap`."""

    def __init__(
        self,
        app: Any,
        *,
        drain_timeout: float | None = 30.0,
        startup_timeout: float | None = 60.0,
        shutdown_timeout: float | None = 30.0,
        chunk_size: int = 65536,
        interface: str = "auto",
    ) -> None:
        if interface not in ("auto", "rsgi", "asgi"):
            raise ValueError(f"interface must be 'auto', 'rsgi' or 'asgi', not {interface!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, not {chunk_size!r}")
        kind = detect_interface(app) if interface == "auto" else interface
        self.app = app
        self.interface = kind
        self.chunk_size = chunk_size
        self._rsgi: Callable[[Any, Any], Awaitable[Any]] | None = None
        self._asgi: Callable[[Any, ASGIReceive, ASGISend], Awaitable[None]] | None = None
        if kind == "rsgi":
            self._rsgi = getattr(app, "__rsgi__", app)
        else:
            self._asgi = app
        self.lifecycle = Lifecycle(
            app,
            startup_timeout=_timeout("startup_timeout", startup_timeout),
            shutdown_timeout=_timeout("shutdown_timeout", shutdown_timeout),
            drain_timeout=_timeout("drain_timeout", drain_timeout),
            inner_lifespan=self._asgi,
        )

    async def __call__(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            life = self.lifecycle
            if life.state is not RUNNING and not await self._gate(scope, receive, send):
                return
            # In flight until it returns: the drain waits for (and may cancel) this task.
            task: Any = _current_task() or Untracked()
            tasks = life.tasks
            # A request made from inside another one shares its task: cancelling that task ends both.
            key = task if task not in tasks else Untracked()
            tasks[key] = scope
            try:
                if self._asgi is not None:
                    await self._asgi(scope, receive, send)
                elif kind == "http":
                    # HTTPProtocol's steps, inline: one coroutine per request on the hot path.
                    proto = HTTPProtocol(scope, receive, send, self.chunk_size, task)
                    try:
                        try:
                            rest = proto.begin(self._rsgi)  # type: ignore[arg-type]
                            if rest is not None:
                                await rest
                        except Exception as exc:
                            proto.failed(exc)
                        start = proto.plain_start()
                        if start is None:
                            await proto.finish()
                        else:  # as HTTPProtocol.flush
                            try:
                                await send(start)
                                proto._state = 3
                                await send({"type": "http.response.body", "body": proto._response[4]})  # type: ignore[index]
                            except Exception as exc:
                                await proto.plain_failed(exc)
                    finally:
                        if proto._w is not None or proto._stream is not None:
                            proto.close()
                else:
                    await serve_websocket(self._rsgi, scope, receive, send, life.websockets)  # type: ignore[arg-type]
            finally:
                del tasks[key]
                if not tasks and life.idle is not None:
                    life.idle.set()
        elif kind == "lifespan":
            await self.lifecycle.serve(scope, receive, send)
        else:
            raise ValueError(f"rsgi-bridge: unsupported ASGI scope type {kind!r}")

    async def _gate(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> bool:
        """Before RUNNING: start the app (no lifespan) or refuse while shutting down."""
        life = self.lifecycle
        if life.state in (NEW, STARTING):
            try:
                await life.startup()
            except Exception as exc:
                logger.error("app not started (%s): answering 500; init is retried on the next request", exc)
                await _refuse(scope, receive, send, 500)
                return False
            life.started_without_lifespan()
            return True
        await _refuse(scope, receive, send, 503)
        return False


async def _refuse(scope: dict[str, Any], receive: ASGIReceive, send: ASGISend, status: int) -> None:
    if scope["type"] == "websocket":
        await deny_websocket(scope, receive, send, status)
        return
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"0"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


def wrap(
    app: Any,
    *,
    drain_timeout: float | None = 30.0,
    startup_timeout: float | None = 60.0,
    shutdown_timeout: float | None = 30.0,
    chunk_size: int = 65536,
    interface: str = "auto",
) -> RSGIBridge:
    """Wrap an RSGI application as an ASGI 3 application.

    ``drain_timeout``: seconds shutdown waits for in-flight requests before cancelling
    them. ``startup_timeout``/``shutdown_timeout``: bounds on ``__rsgi_init__`` and
    ``__rsgi_del__``. ``chunk_size``: bytes read per step of a file response.
    ``interface``: ``"auto"`` detects RSGI vs ASGI, ``"rsgi"``/``"asgi"`` force it.
    Timeouts accept ``None`` for no bound.

    ``app`` may also be an import string, ``"module:attribute"`` (the attribute may be dotted),
    naming the RSGI app; a bad one is a :class:`~rsgi_bridge.imports.TargetError` (a
    ``ValueError``) naming the problem. That makes a server's app string enough, with no glue
    module: ``gunicorn "rsgi_bridge:wrap('myproject.main:app')"``.
    """
    if isinstance(app, str):
        from .imports import load_target  # imports.py imports this module

        app = load_target(app)
    return RSGIBridge(
        app,
        drain_timeout=drain_timeout,
        startup_timeout=startup_timeout,
        shutdown_timeout=shutdown_timeout,
        chunk_size=chunk_size,
        interface=interface,
    )
