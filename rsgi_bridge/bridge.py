"""The ASGI application that hosts an RSGI app."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from .connection import ASGIReceive, ASGISend, logger
from .http import Exchange
from .lifecycle import FAILED, NEW, RUNNING, STARTING, Lifecycle, Untracked
from .servers import accelerate_default
from .websocket import deny_websocket, serve_websocket

__all__ = ["RSGIBridge", "detect_interface", "wrap"]


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
        header_decoding: str = "granian",
        accelerate: bool = True,
    ) -> None:
        if interface not in ("auto", "rsgi", "asgi"):
            raise ValueError(f"interface must be 'auto', 'rsgi' or 'asgi', not {interface!r}")
        if header_decoding not in ("granian", "latin-1"):
            raise ValueError(f"header_decoding must be 'granian' or 'latin-1', not {header_decoding!r}")
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive int, not {chunk_size!r}")
        kind = detect_interface(app) if interface == "auto" else interface
        self.app = app
        self.interface = kind
        self.chunk_size = chunk_size
        self.header_decoding = header_decoding
        self._latin1 = header_decoding == "latin-1"
        if not isinstance(accelerate, bool):
            raise TypeError(f"accelerate must be a bool, not {type(accelerate).__name__}")
        # Server accelerators (rsgi_bridge/servers/): on unless turned off here or by RSGI_BRIDGE_ACCELERATE=0.
        self.accelerate = accelerate and accelerate_default()
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
            task = asyncio.current_task()
            tasks = life.tasks
            # A request made from inside another one shares its task: cancelling that task ends both.
            key: Any = task if task is not None and task not in tasks else Untracked()
            tasks[key] = scope
            try:
                if self._asgi is not None:
                    await self._asgi(scope, receive, send)
                elif kind == "http":
                    await Exchange(
                        scope, receive, send, task, self.chunk_size, self._latin1, self.accelerate
                    ).run(self._rsgi)  # type: ignore[arg-type]
                else:
                    await serve_websocket(self._rsgi, scope, receive, send, life.websockets, self.accelerate)  # type: ignore[arg-type]
            finally:
                del tasks[key]
                if not tasks and life.idle is not None:
                    life.idle.set()
        elif kind == "lifespan":
            await self.lifecycle.serve(scope, receive, send)
        else:
            raise ValueError(f"rsgi-bridge: unsupported ASGI scope type {kind!r}")

    async def _gate(self, scope: dict[str, Any], receive: ASGIReceive, send: ASGISend) -> bool:
        """Before RUNNING: start the app (no lifespan, at most once per process) or refuse.

        A failed or timed-out init is final: every request gets a 500 and the reason is logged
        with it; while shutting down requests get a 503.
        """
        life = self.lifecycle
        if life.state is NEW or life.state is STARTING:
            try:
                await life.startup()
            except Exception:
                pass
            else:
                life.started_without_lifespan()
                return True
        if life.state is FAILED:
            logger.error("app not started (%s): answering %s with 500", life.refusal(), _what(scope))
            await _refuse(scope, receive, send, 500)
            return False
        if life.state is RUNNING:  # started meanwhile (by the lifespan)
            return True
        await _refuse(scope, receive, send, 503)
        return False


def _what(scope: dict[str, Any]) -> str:
    if scope["type"] == "websocket":
        return f"websocket {scope.get('path', '')}"
    return f"{scope.get('method', '')} {scope.get('path', '')}"


async def _refuse(scope: dict[str, Any], receive: ASGIReceive, send: ASGISend, status: int) -> None:
    """Answer a request the app cannot serve with an empty ``status`` (a websocket: refused)."""
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
    header_decoding: str = "granian",
    accelerate: bool = True,
) -> RSGIBridge:
    """Wrap an RSGI application as an ASGI 3 application.

    ``drain_timeout``: seconds shutdown waits for in-flight requests before cancelling
    them. ``startup_timeout``/``shutdown_timeout``: bounds on ``__rsgi_init__`` and
    ``__rsgi_del__``. ``chunk_size``: bytes read per step of a file response.
    ``interface``: ``"auto"`` detects RSGI vs ASGI, ``"rsgi"``/``"asgi"`` force it.
    ``header_decoding``: ``"granian"`` leaves request header values that are not visible ASCII
    out of ``scope.headers``, as Granian does; ``"latin-1"`` shows them decoded as latin-1.
    Timeouts accept ``None`` for no bound.
    ``accelerate``: let server-specific accelerators (``rsgi_bridge/servers/``, e.g. uvicorn's
    one-write plain responses) take over where their guards allow; ``False``, or the environment
    variable ``RSGI_BRIDGE_ACCELERATE=0``, turns them all off and every response goes through
    plain ASGI ``send`` (the workarounds that keep behaviour correct on a server stay on).

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
        header_decoding=header_decoding,
        accelerate=accelerate,
    )
