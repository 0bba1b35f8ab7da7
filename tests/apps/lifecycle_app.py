"""Apps whose RSGI hooks append to a file, for the lifecycle tests.

Environment:
- ``LIFECYCLE_FILE``: the file each event is appended to, one ``"<event> <pid>"`` line each.
- ``LIFECYCLE_INIT`` / ``LIFECYCLE_DEL``: ``ok`` (default), ``raise``, ``hang`` (sleeps 30 s);
  ``LIFECYCLE_INIT=flaky`` takes 0.5 s and raises on the first call of each process, then
  takes 0.5 s and succeeds; ``LIFECYCLE_INIT=spawn-raise`` starts a task on the loop it was
  given (it records ``init-task-cancelled`` when cancelled), then raises;
  ``LIFECYCLE_INIT=slow`` sleeps 1.5 s, then succeeds.
- ``LIFECYCLE_OPTIONS``: JSON keyword arguments for ``rsgi_bridge.wrap``.
- ``LIFECYCLE_LOG``: when set, the ``rsgi_bridge`` logger prints INFO lines to stderr
  (uvicorn and hypercorn give it no handler; daphne configures the root logger at INFO, hence
  ``propagate = False`` below).

Routes: ``/slow?s=N`` (answers after N seconds), ``/never`` (never answers); anything else
answers ``ok <pid> <whether init's loop is the serving loop>``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import threading
import time
from typing import Any

from rsgi_bridge import wrap

if os.environ.get("LIFECYCLE_LOG"):
    _handler = logging.StreamHandler(sys.stderr)
    _handler.setFormatter(logging.Formatter("%(levelname)s [%(name)s] %(message)s"))
    _log = logging.getLogger("rsgi_bridge")
    _log.addHandler(_handler)
    _log.setLevel(logging.INFO)
    _log.propagate = False  # daphne also logs through the root logger: print each line once

OPTIONS: dict[str, Any] = json.loads(os.environ.get("LIFECYCLE_OPTIONS") or "{}")
INIT = os.environ.get("LIFECYCLE_INIT", "ok")
DEL = os.environ.get("LIFECYCLE_DEL", "ok")
_calls = {"init": 0}


def record(event: str) -> None:
    """Append ``event`` and this pid to the events file (one write, O_APPEND)."""
    path = os.environ.get("LIFECYCLE_FILE")
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{event} {os.getpid()}\n".encode())
        finally:
            os.close(fd)


async def _on_loop(what: str) -> str:
    """Work a hook hands to ``loop.run_until_complete``: it must run on the serving loop."""
    await asyncio.sleep(0.01)
    return f"{what}@{id(asyncio.get_running_loop())}"


def _behave(mode: str, hook: str) -> None:
    if mode == "raise":
        raise RuntimeError(f"{hook} exploded on purpose")
    if mode == "flaky":
        _calls[hook] += 1
        time.sleep(0.5)
        if _calls[hook] == 1:
            raise RuntimeError(f"{hook} fails the first time")
    if mode == "hang":
        time.sleep(30)
    if mode == "slow":
        time.sleep(1.5)


async def _init_task() -> None:
    """A task a failing init leaves behind on the serving loop."""
    try:
        await asyncio.sleep(60)
    except asyncio.CancelledError:
        record("init-task-cancelled")
        raise


class App:
    """An RSGI app with synchronous hooks that use ``loop.run_until_complete``."""

    def __init__(self) -> None:
        self.loop_id: str | None = None
        self.init_thread_loop: str | None = None

    def __rsgi_init__(self, loop: Any) -> None:
        record("init-start")
        if INIT == "spawn-raise":
            self.task = loop.create_task(_init_task())
            raise RuntimeError("init exploded after starting a task")
        _behave(INIT, "init")
        self.loop_id = loop.run_until_complete(_on_loop("init"))
        record("init")

    def __rsgi_del__(self, loop: Any) -> None:
        record("del-start")
        _behave(DEL, "del")
        value = loop.run_until_complete(_on_loop("del"))
        record("del" if value == self.loop_id.replace("init", "del") else f"del-other-loop:{value}")  # type: ignore[union-attr]

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await handle(self, scope, proto)


async def handle(app: Any, scope: Any, proto: Any) -> None:
    """The routes shared by the RSGI apps."""
    path = scope.path
    if path == "/slow":
        seconds = float(dict(p.split("=") for p in scope.query_string.split("&") if p).get("s", "2"))
        record("request-start")
        await asyncio.sleep(seconds)
        record("request-done")
        proto.response_str(200, [("content-type", "text/plain")], "slow done")
        return
    if path == "/never":
        record("never-start")
        try:
            await asyncio.get_running_loop().create_future()
        except asyncio.CancelledError:
            record("never-cancelled")
            raise
    loop_ok = app.loop_id == _on_loop_id("init")
    proto.response_str(200, [("content-type", "text/plain")], f"ok {os.getpid()} {loop_ok}")


def _on_loop_id(what: str) -> str:
    return f"{what}@{id(asyncio.get_running_loop())}"


class AsyncApp(App):
    """The same app with ``async def`` hooks (accepted by the bridge, not by the RSGI spec)."""

    async def __rsgi_init__(self, loop: Any) -> None:  # type: ignore[override]
        record("init-start")
        _behave(INIT, "init")
        self.loop_id = await _on_loop("init")
        record("init")

    async def __rsgi_del__(self, loop: Any) -> None:  # type: ignore[override]
        record("del-start")
        _behave(DEL, "del")
        await _on_loop("del")
        record("del")


class Hybrid:
    """An ASGI app carrying RSGI hooks and its own lifespan handler."""

    def __init__(self) -> None:
        self.loop_id: str | None = None

    def __rsgi_init__(self, loop: Any) -> None:
        record("init-start")
        _behave(INIT, "init")
        self.loop_id = loop.run_until_complete(_on_loop("init"))
        record("init")

    def __rsgi_del__(self, loop: Any) -> None:
        record("del-start")
        loop.run_until_complete(_on_loop("del"))
        record("del")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    record("asgi-startup")
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    record("asgi-shutdown")
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "asgi hello"})
            await send({"type": "websocket.close", "code": 1000})
            return
        if scope["path"] == "/slow":
            record("request-start")
            await asyncio.sleep(2)
            record("request-done")
        loop_ok = self.loop_id == _on_loop_id("init")
        body = f"asgi {scope['path']} {os.getpid()} {loop_ok} {threading.current_thread().name}".encode()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"x-hybrid", b"yes")], "trailers": False}
        )
        await send({"type": "http.response.body", "body": body})


app = wrap(App(), **OPTIONS)


async def no_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """``app`` behind a middleware that refuses ASGI lifespan (hypercorn then serves without it)."""
    if scope["type"] == "lifespan":
        raise RuntimeError("this deployment has no lifespan")
    await app(scope, receive, send)


async_app = wrap(AsyncApp(), **OPTIONS)
hybrid = wrap(Hybrid(), **OPTIONS)
