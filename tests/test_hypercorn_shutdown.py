"""hypercorn 0.18's shutdown, which depends on the Python version, through the bridge and for a
plain ASGI app (``tests/apps/plain_asgi_app.py``): the same on both, so it is hypercorn's.

On SIGTERM hypercorn closes its listening sockets, awaits ``asyncio.Server.wait_closed()``, and
only then waits at most ``--graceful-timeout`` (3 s by default) for its connections' tasks before
cancelling them. Up to Python 3.11 ``wait_closed()`` returns at once, so the graceful timeout
bounds the shutdown. From Python 3.12 on it waits until every connection has closed, so the
graceful timeout never applies: a request in flight runs to its end, however long, and an open
websocket stays open and served until the client leaves. hypercorn sends ``lifespan.shutdown``
(and the bridge runs ``__rsgi_del__``) only after that.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.servers import Server, wait_for
from tests.test_websocket import ws_connect

GRACE = 3.0  # hypercorn's --graceful-timeout default
WAITS_FOR_CONNECTIONS = sys.version_info >= (3, 12)  # asyncio.Server.wait_closed() waits for them

APPS = {
    "bridge-ws": "tests.apps.ws_app:asgi",
    "bridge-http": "tests.apps.lifecycle_app:app",
    "plain-asgi": "tests.apps.plain_asgi_app:app",
}


@pytest.mark.parametrize("app", ["bridge-ws", "plain-asgi"])
def test_open_websocket_at_sigterm(app: str) -> None:
    with Server("hypercorn", APPS[app]) as s, ws_connect(s, "/echo") as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"
        t0 = time.monotonic()
        s.signal()
        if not WAITS_FOR_CONNECTIONS:
            # hypercorn waits its graceful timeout, cancels the app and closes with 1011
            with pytest.raises(ConnectionClosed) as info:
                ws.recv(timeout=GRACE + 7)
            closed_after = time.monotonic() - t0
            assert info.value.rcvd is not None and info.value.rcvd.code == 1011
            assert GRACE - 0.5 < closed_after < GRACE + 5, closed_after
            assert s.wait(10) == 0
            # hypercorn's cancellation went through the bridge as a cancellation: not contained as
            # the app's failure, which would be logged as such (and closed with 1011 all the same)
            assert "in RSGI app while handling" not in s.output(), s.output()
            return
        # well past the graceful timeout: still open, still served, hypercorn still running
        with pytest.raises(TimeoutError):
            ws.recv(timeout=GRACE + 2)
        ws.send("still here")
        assert ws.recv(timeout=5) == "still here"
        assert s.proc is not None and s.proc.poll() is None
        ws.close()
        t1 = time.monotonic()
        assert s.wait(10) == 0
        assert time.monotonic() - t1 < 5  # the client's leaving is what ends the shutdown


@pytest.mark.parametrize("app", ["bridge-http", "plain-asgi"])
def test_request_longer_than_the_graceful_timeout(app: str, tmp_path: Path) -> None:
    events = tmp_path / "events"
    seconds = GRACE + 2
    result: dict[str, Any] = {}
    with Server("hypercorn", APPS[app], env={"LIFECYCLE_FILE": str(events)}) as s:

        def get() -> None:
            try:
                r = httpx.get(f"{s.url}/slow?s={seconds}", timeout=30)
                result["response"] = (r.status_code, time.monotonic() - t0)
            except httpx.HTTPError as exc:
                result["response"] = (repr(exc), time.monotonic() - t0)

        t0 = time.monotonic()
        thread = threading.Thread(target=get)
        thread.start()
        assert wait_for(lambda: events.exists() and "request-start" in events.read_text(), 10), s.output()
        s.signal()
        thread.join(seconds + 15)
        assert s.wait(15) == 0
    status, after = result["response"]
    if WAITS_FOR_CONNECTIONS:
        # not bounded by the graceful timeout: the request completes
        assert status == 200 and after >= seconds, result
    else:
        # cancelled at the graceful timeout; hypercorn answers the unanswered request with 500
        assert status == 500 and GRACE < after < seconds, result
    if app == "bridge-http":
        # __rsgi_del__ runs once, after the request ended (completed, or cancelled by hypercorn)
        request = ["request-start", "request-done"] if WAITS_FOR_CONNECTIONS else ["request-start"]
        assert events.read_text().split()[::2] == ["init-start", "init", *request, "del-start", "del"]
