"""Lifecycle guarantees: init/del once per worker, after the last request, on real servers and signals.

The server scenarios are slow-ish (start a process, hold a 2-second request, send a signal), so a
module fixture runs every selected scenario at once in a small thread pool and each test asserts
on its own scenario's outcome. The app is ``tests/apps/lifecycle_app.py``: its hooks append
``"<event> <pid>"`` lines to a file and call ``loop.run_until_complete``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.testing import ApplicationCommunicator

import rsgi_bridge
from rsgi_bridge import wrap
from tests.servers import ROOT, Server, wait_for

APP = "tests.apps.lifecycle_app"
Result = dict[str, Any]

# -- helpers ------------------------------------------------------------------------------


def read_events(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        name, pid = line.rsplit(" ", 1)
        out.append((name, int(pid)))
    return out


def names(path: Path) -> list[str]:
    return [n for n, _ in read_events(path)]


def count(path: Path, name: str) -> int:
    return names(path).count(name)


def lifecycle_env(path: Path, **extra: str) -> dict[str, str]:
    return {"LIFECYCLE_FILE": str(path), "LIFECYCLE_LOG": "1", **extra}


def fetch(url: str, timeout: float = 20.0) -> Result:
    """GET ``url``: status, body and headers, or the error the client saw."""
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__}
    return {"status": r.status_code, "text": r.text, "headers": dict(r.headers)}


def in_background(fn: Callable[[], Result]) -> tuple[threading.Thread, Result]:
    out: Result = {}
    t = threading.Thread(target=lambda: out.update(fn()), daemon=True)
    t.start()
    return t, out


def finish(s: Server, path: Path, timeout: float = 25.0, **extra: Any) -> Result:
    """Wait for the server to exit on its own; collect exit code, log and events."""
    try:
        rc: int | None = s.wait(timeout)
    except subprocess.TimeoutExpired:
        rc = None  # did not exit: the test fails on this
    return {"rc": rc, "output": s.output(), "events": read_events(path), "pid": s.pid(), **extra}


def per_pid(events: list[tuple[str, int]]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for name, pid in events:
        out.setdefault(pid, []).append(name)
    return out


def assert_lifecycle_logged(output: str, drained: int) -> None:
    """The INFO lines of the ``rsgi_bridge`` logger, as configured by the test app."""
    assert "INFO [rsgi_bridge] __rsgi_init__ starting" in output
    assert "INFO [rsgi_bridge] __rsgi_init__ done in " in output
    assert f"INFO [rsgi_bridge] drain started: {drained} request(s) in flight" in output
    assert "INFO [rsgi_bridge] drain finished in " in output
    assert f": {drained} ended, 0 abandoned" in output
    assert "INFO [rsgi_bridge] __rsgi_del__ starting" in output
    assert "INFO [rsgi_bridge] __rsgi_del__ done in " in output


# -- scenarios on real processes -----------------------------------------------------------

SCENARIOS: dict[str, Callable[[Path], Result]] = {}


def scenario(name: str) -> Callable[[Callable[[Path], Result]], Callable[[Path], Result]]:
    def register(fn: Callable[[Path], Result]) -> Callable[[Path], Result]:
        SCENARIOS[name] = fn
        return fn

    return register


# (kind, target, extra args, workers, exit code after SIGTERM)
SIGTERM_CASES: dict[str, tuple[str, str, list[str], int, int]] = {
    # uvicorn (>= 0.29) shuts down gracefully, then restores the default SIGTERM handler and
    # re-raises the signal it caught, so its parent sees "killed by SIGTERM": -15 (143 in a shell).
    "uvicorn": ("uvicorn", f"{APP}:app", [], 1, -signal.SIGTERM),
    # The multi-process supervisor stops its workers and returns normally.
    "uvicorn-workers-2": ("uvicorn", f"{APP}:app", ["--workers", "2"], 2, 0),
    # No lifespan: the bridge's SIGTERM hook drains and runs del, then hands the signal to
    # uvicorn, which re-raises it as above.
    "uvicorn-lifespan-off": ("uvicorn", f"{APP}:app", ["--lifespan", "off"], 1, -signal.SIGTERM),
    # hypercorn's runner joins its worker and returns 0.
    "hypercorn": ("hypercorn", f"{APP}:app", [], 1, 0),
    # gunicorn's arbiter stops the workers (graceful timeout 30 s) and exits 0.
    "gunicorn-2": ("gunicorn", f"{APP}:app", ["-w", "2"], 2, 0),
    # daphne has no lifespan: the bridge drains and runs del before Twisted's SIGTERM handler
    # stops the reactor; daphne then returns normally.
    "daphne": ("daphne", f"{APP}:app", [], 1, 0),
}


def _sigterm_in_flight(case: str, path: Path) -> Result:
    kind, target, extra, workers, _ = SIGTERM_CASES[case]
    with Server(kind, target, extra, lifecycle_env(path)) as s:
        lazy = "--lifespan" in extra or kind == "daphne"
        if lazy:  # init runs on the first request: make one
            assert fetch(s.url + "/").get("status") == 200
        assert wait_for(lambda: count(path, "init") == workers, 30), read_events(path)
        t, resp = in_background(lambda: fetch(s.url + "/slow?s=2"))
        assert wait_for(lambda: "request-start" in names(path), 15), s.output()
        in_flight = "request-done" not in names(path)
        s.signal(signal.SIGTERM)
        t.join(25)
        return finish(s, path, resp=resp, in_flight=in_flight)


for _case in SIGTERM_CASES:
    scenario(f"test_sigterm_with_a_request_in_flight[{_case}]")(
        lambda path, case=_case: _sigterm_in_flight(case, path)  # type: ignore[misc]
    )


@scenario("test_hypercorn_two_workers_kills_the_busy_worker")
def _hypercorn_two_workers(path: Path) -> Result:
    with Server("hypercorn", f"{APP}:app", ["-w", "2"], lifecycle_env(path)) as s:
        assert wait_for(lambda: count(path, "init") == 2, 30), read_events(path)
        t, resp = in_background(lambda: fetch(s.url + "/slow?s=2"))
        assert wait_for(lambda: "request-start" in names(path), 15), s.output()
        s.signal(signal.SIGTERM)
        t.join(25)
        return finish(s, path, resp=resp)


@scenario("test_sigint_without_lifespan_runs_del")
def _sigint_lifespan_off(path: Path) -> Result:
    with Server("uvicorn", f"{APP}:app", ["--lifespan", "off"], lifecycle_env(path)) as s:
        first = fetch(s.url + "/")
        s.signal(signal.SIGINT)
        return finish(s, path, first=first)


@scenario("test_async_hooks")
def _async_hooks(path: Path) -> Result:
    with Server("uvicorn", f"{APP}:async_app", [], lifecycle_env(path)) as s:
        first = fetch(s.url + "/")
        s.signal(signal.SIGTERM)
        return finish(s, path, first=first)


def _start_failure(path: Path, kind: str, env: dict[str, str], extra: tuple[str, ...] = ()) -> Result:
    s = Server(kind, f"{APP}:app", extra, lifecycle_env(path, **env))
    try:
        s.start(wait=False)
        rc = s.wait(30)
        return {"rc": rc, "output": s.output(), "events": read_events(path)}
    finally:
        s.__exit__()


@scenario("test_init_raises_uvicorn_exits_3")
def _init_raises_uvicorn(path: Path) -> Result:
    return _start_failure(path, "uvicorn", {"LIFECYCLE_INIT": "raise"})


@scenario("test_init_raises_hypercorn_exits")
def _init_raises_hypercorn(path: Path) -> Result:
    return _start_failure(path, "hypercorn", {"LIFECYCLE_INIT": "raise"})


@scenario("test_init_raises_gunicorn_exits_3")
def _init_raises_gunicorn(path: Path) -> Result:
    return _start_failure(path, "gunicorn", {"LIFECYCLE_INIT": "raise"}, ("-w", "2"))


@scenario("test_init_timeout_uvicorn_exits_3")
def _init_timeout(path: Path) -> Result:
    return _start_failure(
        path, "uvicorn", {"LIFECYCLE_INIT": "hang", "LIFECYCLE_OPTIONS": json.dumps({"startup_timeout": 1})}
    )


def _del_fails(path: Path, env: dict[str, str]) -> Result:
    with Server("uvicorn", f"{APP}:app", [], lifecycle_env(path, **env)) as s:
        first = fetch(s.url + "/")
        s.signal(signal.SIGTERM)
        t0 = time.monotonic()
        out = finish(s, path, first=first)
        out["exit_after"] = time.monotonic() - t0
        return out


@scenario("test_del_raises_is_logged_and_the_server_exits")
def _del_raises(path: Path) -> Result:
    return _del_fails(path, {"LIFECYCLE_DEL": "raise"})


@scenario("test_del_timeout_is_logged_and_the_server_exits")
def _del_timeout(path: Path) -> Result:
    return _del_fails(path, {"LIFECYCLE_DEL": "hang", "LIFECYCLE_OPTIONS": json.dumps({"shutdown_timeout": 1})})


@scenario("test_drain_timeout_abandons_a_request_that_never_ends")
def _drain_expiry(path: Path) -> Result:
    env = lifecycle_env(path, LIFECYCLE_OPTIONS=json.dumps({"drain_timeout": 2}))
    with Server("daphne", f"{APP}:app", [], env) as s:
        t, resp = in_background(lambda: fetch(s.url + "/never", timeout=20))
        assert wait_for(lambda: "never-start" in names(path), 15), s.output()
        s.signal(signal.SIGTERM)
        assert wait_for(lambda: "drain started" in s.output(), 10), s.output()
        during = fetch(s.url + "/")  # the drain window is 2 s long
        after_drain_start = "del-start" not in names(path)
        t.join(25)
        return finish(s, path, resp=resp, during=during, during_ok=after_drain_start)


@scenario("test_second_signal_is_passed_on_at_once_and_del_still_runs")
def _second_signal(path: Path) -> Result:
    env = lifecycle_env(path, LIFECYCLE_OPTIONS=json.dumps({"drain_timeout": 30}))
    with Server("daphne", f"{APP}:app", [], env) as s:
        t, resp = in_background(lambda: fetch(s.url + "/never", timeout=30))
        assert wait_for(lambda: "never-start" in names(path), 15), s.output()
        s.signal(signal.SIGTERM)
        assert wait_for(lambda: "drain started" in s.output(), 10), s.output()
        s.signal(signal.SIGTERM)  # impatient: stop now
        t0 = time.monotonic()
        out = finish(s, path, resp=resp)
        out["exit_after"] = time.monotonic() - t0
        t.join(5)
        return out


# Servers without an ASGI lifespan: daphne has none, uvicorn runs with --lifespan off (with each of
# its websocket implementations), hypercorn serves an app whose middleware refuses lifespan.
NO_LIFESPAN: dict[str, tuple[str, str, list[str]]] = {
    "daphne": ("daphne", "app", []),
    "uvicorn-websockets": ("uvicorn", "app", ["--lifespan", "off", "--ws", "websockets"]),
    "uvicorn-wsproto": ("uvicorn", "app", ["--lifespan", "off", "--ws", "wsproto"]),
    "hypercorn": ("hypercorn", "no_lifespan", []),
}


def _ws_status(url: str) -> int | str:
    """The HTTP status a refused websocket handshake got (or what happened instead)."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(url, open_timeout=10):
            return "accepted"
    except InvalidStatus as exc:
        return exc.response.status_code


def _no_lifespan_server(name: str, path: Path, **env: str) -> Server:
    kind, target, args = NO_LIFESPAN[name]
    return Server(kind, f"{APP}:{target}", args, lifecycle_env(path, **env))


def _failed_init(name: str) -> Callable[[Path], Result]:
    def run(path: Path) -> Result:
        with _no_lifespan_server(name, path, LIFECYCLE_INIT="spawn-raise") as s:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                first = list(pool.map(lambda _: fetch(s.url + "/"), range(4)))
            later = [fetch(s.url + "/") for _ in range(2)]
            ws = _ws_status(s.ws_url + "/ws")
            wait_for(lambda: "init-task-cancelled" in names(path), 5)
            alive = s.proc is not None and s.proc.poll() is None
            s.signal(signal.SIGTERM)
            return finish(s, path, first=first, later=later, ws=ws, alive=alive)

    return run


def _late_init(name: str) -> Callable[[Path], Result]:
    def run(path: Path) -> Result:
        options = json.dumps({"startup_timeout": 0.5})
        with _no_lifespan_server(name, path, LIFECYCLE_INIT="slow", LIFECYCLE_OPTIONS=options) as s:
            first = fetch(s.url + "/")
            wait_for(lambda: "init" in names(path), 10)  # init returned in its thread, late
            time.sleep(0.2)
            later = fetch(s.url + "/")
            alive = s.proc is not None and s.proc.poll() is None
            s.signal(signal.SIGTERM)
            return finish(s, path, first=first, later=later, alive=alive)

    return run


for _name in NO_LIFESPAN:
    scenario(f"test_without_lifespan_a_failed_init_is_final[{_name}]")(_failed_init(_name))
    scenario(f"test_without_lifespan_a_timed_out_init_is_final[{_name}]")(_late_init(_name))


@scenario("test_hybrid_asgi_app")
def _hybrid(path: Path) -> Result:
    from websockets.sync.client import connect

    with Server("uvicorn", f"{APP}:hybrid", [], lifecycle_env(path)) as s:
        plain = fetch(s.url + "/x/y")
        with connect(s.ws_url + "/ws", open_timeout=10) as ws:
            ws_text = ws.recv(timeout=10)
        t, resp = in_background(lambda: fetch(s.url + "/slow"))
        assert wait_for(lambda: "request-start" in names(path), 15), s.output()
        s.signal(signal.SIGTERM)
        t.join(25)
        return finish(s, path, plain=plain, ws_text=ws_text, resp=resp)


_EXIT_SCRIPT = """
import asyncio, os, sys
sys.path.insert(0, {root!r})
from asgiref.testing import ApplicationCommunicator
from tests.apps.lifecycle_app import app

async def request():
    scope = {{"type": "http", "asgi": {{"version": "3.0"}}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "",
             "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}}
    comm = ApplicationCommunicator(app, scope)
    await comm.send_input({{"type": "http.request", "body": b""}})
    start = await comm.receive_output(5)
    body = await comm.receive_output(5)
    print(start["status"], body["body"].decode(), flush=True)

if sys.argv[1] == "asyncio.run":
    asyncio.run(request())          # the loop's end cancels the bridge's watcher task
else:
    loop = asyncio.new_event_loop()  # left unclosed: the atexit hook runs del
    loop.run_until_complete(request())
print("main done", flush=True)
"""


def _exit_path(path: Path, how: str) -> Result:
    r = subprocess.run(
        [sys.executable, "-c", _EXIT_SCRIPT.format(root=str(ROOT)), how],
        env={**os.environ, **lifecycle_env(path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=30,
    )
    return {"rc": r.returncode, "output": r.stdout, "events": read_events(path)}


@scenario("test_del_at_normal_interpreter_exit[asyncio.run]")
def _exit_asyncio_run(path: Path) -> Result:
    return _exit_path(path, "asyncio.run")


@scenario("test_del_at_normal_interpreter_exit[atexit]")
def _exit_atexit(path: Path) -> Result:
    return _exit_path(path, "atexit")


class Scenarios:
    """Runs the selected scenarios concurrently; ``get(name)`` waits for one."""

    def __init__(self, wanted: list[str], tmp: Path) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=5, thread_name_prefix="scenario")
        self._futures: dict[str, concurrent.futures.Future[Result]] = {}
        for i, name in enumerate(wanted):
            path = tmp / f"events-{i}"
            self._futures[name] = self._pool.submit(SCENARIOS[name], path)

    def get(self, name: str, timeout: float = 55.0) -> Result:
        return self._futures[name].result(timeout)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def scenarios(request: pytest.FixtureRequest) -> Iterator[Scenarios]:
    wanted = [item.name for item in request.session.items if item.name in SCENARIOS]
    with tempfile.TemporaryDirectory(prefix="rsgi-lifecycle-") as tmp:
        runner = Scenarios(wanted, Path(tmp))
        try:
            yield runner
        finally:
            runner.close()


@pytest.fixture
def outcome(scenarios: Scenarios, request: pytest.FixtureRequest) -> Result:
    return scenarios.get(request.node.name)


# -- tests on real servers -----------------------------------------------------------------


@pytest.mark.parametrize("case", list(SIGTERM_CASES))
def test_sigterm_with_a_request_in_flight(case: str, outcome: Result) -> None:
    kind, _, _, workers, exit_code = SIGTERM_CASES[case]
    out = outcome["output"]
    assert outcome["in_flight"], "SIGTERM was sent after the request had already finished"
    assert outcome["resp"].get("status") == 200, (outcome["resp"], out)
    assert outcome["resp"]["text"] == "slow done"
    assert outcome["rc"] == exit_code, out
    by_pid = per_pid(outcome["events"])
    assert len(by_pid) == workers, outcome["events"]
    for pid, seen in by_pid.items():
        # once per worker, in order; the hooks' run_until_complete ran on the serving loop
        plain = [e for e in seen if e not in ("request-start", "request-done")]
        assert plain == ["init-start", "init", "del-start", "del"], (pid, seen)
    served = [pid for pid, seen in by_pid.items() if "request-done" in seen]
    assert len(served) == 1
    seen = by_pid[served[0]]
    assert seen.index("init") < seen.index("request-done") < seen.index("del-start"), seen
    if workers == 1 and kind in ("uvicorn", "daphne"):
        assert served[0] == outcome["pid"]  # the server process itself served and ran the hooks
    else:
        assert outcome["pid"] not in by_pid  # workers, not the master, ran the hooks
    if workers == 1:
        lazy = kind == "daphne" or case == "uvicorn-lifespan-off"
        # With lifespan, the server drains before lifespan.shutdown: the bridge finds 0 in flight.
        # Without, the bridge's own signal hook drains the request itself.
        assert_lifecycle_logged(out, drained=1 if lazy else 0)
        if lazy:
            assert "SIGTERM without an ASGI lifespan: draining" in out


def test_hypercorn_two_workers_kills_the_busy_worker(outcome: Result) -> None:
    """hypercorn -w 2: on SIGTERM the master waits for the FIRST worker to exit, then
    terminate()s the others, whose SIGTERM disposition is the default: the worker still
    serving a request dies mid-request, before its lifespan shutdown, so its del never runs.
    The idle worker shuts down cleanly. This is hypercorn's behaviour; see the README."""
    by_pid = per_pid(outcome["events"])
    assert len(by_pid) == 2, outcome["events"]
    busy = [pid for pid, seen in by_pid.items() if "request-start" in seen]
    idle = [pid for pid in by_pid if pid not in busy]
    assert len(busy) == 1 and len(idle) == 1
    assert by_pid[idle[0]] == ["init-start", "init", "del-start", "del"]
    assert by_pid[busy[0]] == ["init-start", "init", "request-start"]  # killed: no request-done, no del
    assert "error" in outcome["resp"], outcome["resp"]  # the client lost its request
    assert outcome["rc"] == 0


def test_sigint_without_lifespan_runs_del(outcome: Result) -> None:
    assert outcome["first"]["status"] == 200
    assert names_of(outcome) == ["init-start", "init", "del-start", "del"]
    assert "SIGINT without an ASGI lifespan" in outcome["output"]
    # uvicorn re-raises the SIGINT it caught; the default handler raises KeyboardInterrupt,
    # which uvicorn.main catches: exit 0
    assert outcome["rc"] == 0, outcome["output"]


def names_of(outcome: Result) -> list[str]:
    return [n for n, _ in outcome["events"]]


def test_async_hooks(outcome: Result) -> None:
    first = outcome["first"]
    assert first["status"] == 200
    assert first["text"].endswith(" True")  # init awaited on the serving loop before the request
    assert names_of(outcome) == ["init-start", "init", "del-start", "del"]
    assert outcome["rc"] == -signal.SIGTERM


def test_init_raises_uvicorn_exits_3(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == 3, out  # uvicorn's exit code for lifespan.startup.failed
    assert "ERROR:    RuntimeError: init exploded on purpose" in out  # uvicorn prints the message
    assert "Application startup failed. Exiting." in out
    assert "Traceback" in out  # the bridge logs the hook's traceback
    assert names_of(outcome) == ["init-start"]  # del does not run when init failed


def test_init_raises_hypercorn_exits(outcome: Result) -> None:
    out = outcome["output"]
    assert "Lifespan failure in startup. 'RuntimeError: init exploded on purpose'" in out
    # hypercorn 0.18's runner records the worker's exit code, then overwrites it with the
    # (empty) result of joining the remaining workers: the process exits 0 despite the failure.
    assert outcome["rc"] == 0, out
    assert names_of(outcome) == ["init-start"]


def test_init_raises_gunicorn_exits_3(outcome: Result) -> None:
    out = outcome["output"]
    # gunicorn halts with 3 ("Worker failed to boot"); when its two workers fail at the same
    # moment the arbiter can instead exit 1 while reaping them. Either way: non-zero, and why.
    assert outcome["rc"] in (1, 3), out
    assert "Worker failed to boot" in out or "Shutting down: Master" in out
    assert "[ERROR] RuntimeError: init exploded on purpose" in out
    seen = names_of(outcome)
    assert seen and set(seen) == {"init-start"}, seen  # one or both workers tried; no del


def test_init_timeout_uvicorn_exits_3(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == 3, out
    assert "__rsgi_init__ did not finish within startup_timeout=1.0s" in out
    assert names_of(outcome) == ["init-start"]


def test_del_raises_is_logged_and_the_server_exits(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["first"]["status"] == 200
    assert outcome["rc"] == -signal.SIGTERM, out  # exits as uvicorn does after any SIGTERM
    assert "ERROR [rsgi_bridge] __rsgi_del__ failed after" in out
    assert "RuntimeError: del exploded on purpose" in out
    assert "Traceback" in out
    assert "Application shutdown failed" in out  # uvicorn saw lifespan.shutdown.failed
    assert names_of(outcome) == ["init-start", "init", "del-start"]


def test_del_timeout_is_logged_and_the_server_exits(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == -signal.SIGTERM, out
    assert "__rsgi_del__ did not finish within shutdown_timeout=1.0s" in out
    assert outcome["exit_after"] < 15
    assert names_of(outcome) == ["init-start", "init", "del-start"]


def test_drain_timeout_abandons_a_request_that_never_ends(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == 0, out
    assert "drain_timeout=2.0s expired with 1 request(s) in flight; cancelling them as abandoned: GET /never" in out
    assert ": 0 ended, 1 abandoned" in out
    assert outcome["during_ok"]  # the second request was made while draining
    during = outcome["during"]
    assert during.get("status") == 503, during
    assert during["headers"]["connection"] == "close"
    # the abandoned request was cancelled before it answered: daphne closes its connection
    assert outcome["resp"] == {"error": "RemoteProtocolError"}
    seen = names_of(outcome)
    assert seen == ["init-start", "init", "never-start", "never-cancelled", "del-start", "del"], seen


def test_second_signal_is_passed_on_at_once_and_del_still_runs(outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == 0, out
    assert outcome["exit_after"] < 10  # not the 30 s drain_timeout
    assert "Killed 1 pending application instances" in out  # daphne's own handler ran
    assert outcome["resp"] == {"error": "RemoteProtocolError"}
    # daphne cancelled the request, which ended the drain; the loop stopped during del or
    # before it, and del was finished at interpreter exit: once
    assert names_of(outcome) == ["init-start", "init", "never-start", "never-cancelled", "del-start", "del"]


@pytest.mark.parametrize("server", list(NO_LIFESPAN))
def test_without_lifespan_a_failed_init_is_final(server: str, outcome: Result) -> None:
    out = outcome["output"]
    # one init attempt per process, shared by the concurrent first requests; never retried
    assert names_of(outcome)[:1] == ["init-start"], out
    assert names_of(outcome).count("init-start") == 1, out
    # every request, concurrent or later, gets an empty 500; a websocket is refused
    for r in outcome["first"] + outcome["later"]:
        assert r.get("status") == 500, outcome
        assert r["text"] == ""
        assert r["headers"]["connection"] == "close"
    assert outcome["ws"] == (403 if server == "daphne" else 500), outcome["ws"]  # daphne: its plain 403
    # the reason, logged with every refused request
    reason = "app not started (__rsgi_init__ failed (RuntimeError: init exploded after starting a task)"
    assert out.count(reason) == 7, out
    # the task init left on the serving loop was cancelled; no del for an init that failed
    assert "init-task-cancelled" in names_of(outcome), out
    assert "del-start" not in names_of(outcome)
    assert outcome["alive"], out
    assert outcome["rc"] is not None, out


@pytest.mark.parametrize("server", list(NO_LIFESPAN))
def test_without_lifespan_a_timed_out_init_is_final(server: str, outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["first"].get("status") == 500, outcome
    # the reason, logged with every refused request (the first and the later one)
    reason = "app not started (__rsgi_init__ failed (TimeoutError: __rsgi_init__ did not finish within startup_timeout="
    reason += "0.5s); it runs at most once per process): answering GET / with 500"
    assert out.count(reason) == 2, out
    # init returned later in its thread: not counted as started, no second init
    assert "__rsgi_init__ returned after startup_timeout: not started" in out, out
    assert outcome["later"].get("status") == 500, outcome
    assert names_of(outcome).count("init-start") == 1, out
    assert outcome["alive"], out
    # what it opened is released: del runs once at shutdown (at interpreter exit here)
    events = names_of(outcome)
    assert events[:2] == ["init-start", "init"], out
    assert events.count("del-start") == 1, out
    assert events[-1].startswith("del"), out


def test_hybrid_asgi_app(outcome: Result) -> None:
    plain = outcome["plain"]
    assert plain["status"] == 200
    assert plain["headers"]["x-hybrid"] == "yes"
    body = plain["text"].split()
    assert body[:2] == ["asgi", "/x/y"]  # passed straight through: the ASGI path
    assert body[3] == "True"  # init ran on the serving loop before the request
    assert outcome["ws_text"] == "asgi hello"
    assert outcome["resp"]["status"] == 200
    assert names_of(outcome) == [
        "init-start",
        "init",
        "asgi-startup",  # its own lifespan startup after init
        "request-start",
        "request-done",
        "asgi-shutdown",  # its own shutdown before del
        "del-start",
        "del",
    ]
    assert outcome["rc"] == -signal.SIGTERM


@pytest.mark.parametrize("how", ["asyncio.run", "atexit"])
def test_del_at_normal_interpreter_exit(how: str, outcome: Result) -> None:
    out = outcome["output"]
    assert outcome["rc"] == 0, out
    assert f"200 ok {outcome['events'][0][1]} True" in out, out
    assert names_of(outcome) == ["init-start", "init", "del-start", "del"], out
    assert "Task was destroyed" not in out
    if how == "atexit":  # after the main code, at interpreter exit
        assert "process exiting without a lifespan shutdown" in out
        assert out.index("main done") < out.index("__rsgi_del__ done")
    else:  # when asyncio.run cancels the remaining tasks, before it returns
        assert "serving loop is ending without a lifespan shutdown" in out
        assert out.index("__rsgi_del__ done") < out.index("main done")


# -- in-process: the ASGI app driven directly ----------------------------------------------

LIFESPAN_SCOPE = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}


def http_scope(path: str = "/") -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }


def ws_scope(extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {**http_scope("/ws"), "type": "websocket", "subprotocols": [], "extensions": extensions or {}}


class Recorder:
    """An RSGI app recording its hooks and requests in ``self.log``."""

    def __init__(self, init: Callable[[Any], Any] | None = None, delete: Callable[[Any], Any] | None = None) -> None:
        self.log: list[str] = []
        self.started = asyncio.Event()
        self._init = init
        self._del = delete

    def __rsgi_init__(self, loop: Any) -> None:
        self.log.append("init")
        if self._init is not None:
            self._init(loop)

    def __rsgi_del__(self, loop: Any) -> None:
        self.log.append("del")
        if self._del is not None:
            self._del(loop)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        self.log.append(f"request {scope.path}")
        self.started.set()
        if scope.proto == "ws":
            transport = await proto.accept()
            try:
                while (await transport.receive()).kind != 0:
                    pass
            except rsgi_bridge.ProtocolClosed:
                pass
            await asyncio.sleep(0.1)
            self.log.append("ws done")
            return
        if scope.path == "/never":
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                self.log.append("cancelled /never")
                raise
        if scope.path == "/after":
            proto.response_str(200, [], "answered")
            await asyncio.sleep(0.3)
            self.log.append("after done")
            return
        proto.response_str(200, [], "ok")


async def lifespan(bridge: Any, *phases: str) -> tuple[ApplicationCommunicator, list[dict[str, Any]]]:
    comm = ApplicationCommunicator(bridge, dict(LIFESPAN_SCOPE))
    replies = []
    for phase in phases:
        await comm.send_input({"type": f"lifespan.{phase}"})
        replies.append(await comm.receive_output(10))
    return comm, replies


async def get(bridge: Any, path: str = "/") -> list[dict[str, Any]]:
    comm = ApplicationCommunicator(bridge, http_scope(path))
    await comm.send_input({"type": "http.request", "body": b""})
    out = [await comm.receive_output(10)]
    if out[0]["type"] == "http.response.start":
        out.append(await comm.receive_output(10))
    await comm.wait(10)
    return out


@pytest.fixture
def bridge_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="rsgi_bridge")
    return caplog


def test_wrap_refuses_what_is_neither_rsgi_nor_asgi() -> None:
    for bad in (42, object(), lambda: None, lambda a, b, c, d: None):
        with pytest.raises(TypeError, match=r"neither an RSGI nor an ASGI|takes"):
            wrap(bad)
    with pytest.raises(ValueError, match="must be in the form 'module:attribute'"):  # a str is an import string
        wrap("app")
    from tests.apps.lifecycle_app import App, Hybrid

    assert rsgi_bridge.detect_interface(App()) == "rsgi"
    assert rsgi_bridge.detect_interface(Hybrid()) == "asgi"
    with pytest.raises(ValueError, match="drain_timeout"):
        wrap(App(), drain_timeout=0)
    with pytest.raises(ValueError, match="startup_timeout"):
        wrap(App(), startup_timeout=-1)
    with pytest.raises(ValueError, match="shutdown_timeout"):
        wrap(App(), shutdown_timeout="5")


async def test_drain_timeout_cancels_logs_and_refuses_new_requests(bridge_log: pytest.LogCaptureFixture) -> None:
    app = Recorder()
    bridge = wrap(app, drain_timeout=0.5)
    life, replies = await lifespan(bridge, "startup")
    assert replies == [{"type": "lifespan.startup.complete"}]
    never = ApplicationCommunicator(bridge, http_scope("/never"))
    await never.send_input({"type": "http.request", "body": b""})
    await asyncio.wait_for(app.started.wait(), 5)
    await life.send_input({"type": "lifespan.shutdown"})
    await asyncio.sleep(0.1)
    assert bridge.lifecycle.state == "stopping"
    # a request arriving during the drain: 503 and connection: close; a websocket is refused too
    refused = await get(bridge, "/late")
    assert refused[0]["status"] == 503
    assert (b"connection", b"close") in refused[0]["headers"]
    ws = ApplicationCommunicator(bridge, ws_scope({"websocket.http.response": {}}))
    await ws.send_input({"type": "websocket.connect"})
    assert (await ws.receive_output(5))["status"] == 503
    ws_plain = ApplicationCommunicator(bridge, ws_scope())
    await ws_plain.send_input({"type": "websocket.connect"})
    assert (await ws_plain.receive_output(5))["type"] == "websocket.close"
    assert app.log == ["init", "request /never"]  # del waits for the drain
    assert await life.receive_output(10) == {"type": "lifespan.shutdown.complete"}
    assert app.log == ["init", "request /never", "cancelled /never", "del"]
    assert bridge.lifecycle.inflight == 0
    text = bridge_log.text
    assert "drain started: 1 request(s) in flight" in text
    assert "cancelling them as abandoned: GET /never" in text
    assert "0 ended, 1 abandoned" in text
    assert (await get(bridge, "/later"))[0]["status"] == 503  # and after del, too
    assert never.future.cancelled()  # the server's task for the request was cancelled


async def test_drain_waits_for_work_after_the_response(bridge_log: pytest.LogCaptureFixture) -> None:
    app = Recorder()
    bridge = wrap(app)
    life, _ = await lifespan(bridge, "startup")
    after = ApplicationCommunicator(bridge, http_scope("/after"))
    await after.send_input({"type": "http.request", "body": b""})
    assert (await after.receive_output(5))["status"] == 200
    assert (await after.receive_output(5))["body"] == b"answered"
    assert bridge.lifecycle.inflight == 1  # still working after its response
    await life.send_input({"type": "lifespan.shutdown"})
    assert await life.receive_output(10) == {"type": "lifespan.shutdown.complete"}
    assert app.log == ["init", "request /after", "after done", "del"]
    assert "drain finished in" in bridge_log.text and ": 1 ended, 0 abandoned" in bridge_log.text


async def test_drain_closes_open_websocket_sessions_then_waits_for_them() -> None:
    app = Recorder()
    bridge = wrap(app)
    life, _ = await lifespan(bridge, "startup")
    ws = ApplicationCommunicator(bridge, ws_scope())
    await ws.send_input({"type": "websocket.connect"})
    assert (await ws.receive_output(5))["type"] == "websocket.accept"
    await life.send_input({"type": "lifespan.shutdown"})
    # the drain closes the idle session with 1012 (service restart), as uvicorn does itself
    assert await ws.receive_output(5) == {"type": "websocket.close", "code": 1012}
    # the app's receive() got the close message, so it ends; only then does del run
    assert await life.receive_output(10) == {"type": "lifespan.shutdown.complete"}
    assert app.log == ["init", "request /ws", "ws done", "del"]


async def test_del_runs_exactly_once_whatever_triggers_it() -> None:
    app = Recorder()
    bridge = wrap(app)
    life = bridge.lifecycle
    assert (await get(bridge))[0]["status"] == 200  # no lifespan: init on the first request
    assert app.log == ["init", "request /"]
    # lifespan shutdown, a signal-driven shutdown and the loop's end, all at once
    _, replies = await lifespan(bridge, "shutdown")
    await asyncio.gather(life.shutdown(), life.shutdown())
    life.shutdown_at_exit()  # what the atexit hook calls
    assert replies == [{"type": "lifespan.shutdown.complete"}]
    assert app.log == ["init", "request /", "del"]
    # init runs at most once per process: a new lifespan startup is refused with the reason
    _, replies = await lifespan(bridge, "startup")
    assert replies[0]["type"] == "lifespan.startup.failed"
    assert "at most once per process" in replies[0]["message"]
    assert app.log.count("init") == 1


async def test_failed_init_reports_and_del_never_runs(bridge_log: pytest.LogCaptureFixture) -> None:
    def boom(loop: Any) -> None:
        raise ValueError("no database")

    app = Recorder(init=boom)
    bridge = wrap(app)
    _, replies = await lifespan(bridge, "startup")
    assert replies == [{"type": "lifespan.startup.failed", "message": "ValueError: no database"}]
    assert "__rsgi_init__ failed after" in bridge_log.text
    _, replies = await lifespan(bridge, "shutdown")
    assert replies == [{"type": "lifespan.shutdown.complete"}]
    bridge.lifecycle.shutdown_at_exit()
    assert app.log == ["init"]  # no del for a failed init


async def test_init_timeout_is_final_and_a_late_init_gets_del(bridge_log: pytest.LogCaptureFixture) -> None:
    release = threading.Event()
    app = Recorder(init=lambda loop: release.wait(10))
    bridge = wrap(app, startup_timeout=0.2)
    try:
        first = await get(bridge)
        assert first[0]["status"] == 500  # no lifespan: the failed init answers 500
        assert "did not finish within startup_timeout=0.2s" in bridge_log.text
        second = await get(bridge)
        assert second[0]["status"] == 500
        assert bridge_log.text.count("app not started (__rsgi_init__ failed (TimeoutError") == 2
        assert app.log == ["init"]  # not called a second time meanwhile
    finally:
        release.set()
    assert wait_for(lambda: not any(t.is_alive() for t in bridge.lifecycle._init_threads), 5)
    await asyncio.sleep(0.05)
    assert "__rsgi_init__ returned after startup_timeout: not started" in bridge_log.text
    assert (await get(bridge))[0]["status"] == 500  # a late init is not counted as started
    assert app.log == ["init"]  # and init is never retried
    assert bridge.lifecycle.state == "failed"
    await bridge.lifecycle.shutdown()  # what the late init opened gets del, once
    await bridge.lifecycle.shutdown()
    assert app.log == ["init", "del"]


async def test_failed_init_is_final_and_what_it_started_is_cancelled(bridge_log: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    async def left_behind() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    def init(loop: Any) -> None:
        loop.create_task(left_behind())
        loop.call_later(30, seen.append, "timer fired")
        raise ValueError("no database")

    app = Recorder(init=init)
    bridge = wrap(app)
    assert [(await get(bridge))[0]["status"] for _ in range(3)] == [500, 500, 500]
    assert app.log == ["init"]  # once per process, not once per request
    await asyncio.sleep(0.05)
    assert seen == ["cancelled"]
    assert "cancelled 2 task(s)/callback(s) the failed __rsgi_init__ left on the serving loop" in bridge_log.text
    assert bridge_log.text.count("app not started (__rsgi_init__ failed (ValueError: no database)") == 3
    # a lifespan startup after that is refused with the reason too
    _, replies = await lifespan(bridge, "startup")
    assert replies[0]["type"] == "lifespan.startup.failed"
    assert "ValueError: no database" in replies[0]["message"]
    await bridge.lifecycle.shutdown()
    assert app.log == ["init"]  # no del for an init that raised


async def test_del_timeout_and_failure_are_reported() -> None:
    app = Recorder(delete=lambda loop: time.sleep(1))
    bridge = wrap(app, shutdown_timeout=0.2)
    _, replies = await lifespan(bridge, "startup", "shutdown")
    assert replies[1] == {
        "type": "lifespan.shutdown.failed",
        "message": "TimeoutError: __rsgi_del__ did not finish within shutdown_timeout=0.2s",
    }

    def boom(loop: Any) -> None:
        raise OSError("deregistration failed")

    app2 = Recorder(delete=boom)
    _, replies = await lifespan(wrap(app2), "startup", "shutdown")
    assert replies[1] == {"type": "lifespan.shutdown.failed", "message": "OSError: deregistration failed"}
    assert app2.log == ["init", "del"]


async def test_sync_hooks_get_a_loop_that_runs_coroutines_on_the_serving_loop() -> None:
    serving = asyncio.get_running_loop()
    seen: dict[str, Any] = {}

    async def where() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    def init(loop: Any) -> None:
        seen["running_inside"] = loop.is_running()  # the RSGI view: not running
        seen["ran_on"] = loop.run_until_complete(where())
        seen["current"] = asyncio.get_event_loop() is loop
        seen["loop"] = loop

    app = Recorder(init=init)
    _, replies = await lifespan(wrap(app), "startup")
    assert replies == [{"type": "lifespan.startup.complete"}]
    assert seen["running_inside"] is False
    assert seen["ran_on"] is serving
    assert seen["current"] is True
    stored = seen["loop"]
    assert isinstance(stored, rsgi_bridge.HookLoop)
    assert stored.is_running()  # once the hook returned, it is the serving loop
    assert await stored.create_task(where()) is serving


async def test_async_hooks_in_process() -> None:
    log: list[str] = []

    class App:
        async def __rsgi_init__(self, loop: Any) -> None:
            await asyncio.sleep(0)
            log.append(f"init {loop is asyncio.get_running_loop()}")

        async def __rsgi_del__(self, loop: Any) -> None:
            await asyncio.sleep(0)
            log.append("del")

        async def __rsgi__(self, scope: Any, proto: Any) -> None:
            proto.response_str(200, [], "ok")

    bridge = wrap(App())
    _, replies = await lifespan(bridge, "startup")
    assert replies == [{"type": "lifespan.startup.complete"}]
    assert (await get(bridge))[0]["status"] == 200
    await lifespan(bridge, "shutdown")
    assert log == ["init True", "del"]


async def test_hybrid_whose_own_startup_fails_still_gets_del() -> None:
    log: list[str] = []

    class Hybrid:
        def __rsgi_init__(self, loop: Any) -> None:
            log.append("init")

        def __rsgi_del__(self, loop: Any) -> None:
            log.append("del")

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            assert scope["type"] == "lifespan"
            await receive()
            log.append("asgi-startup")
            await send({"type": "lifespan.startup.failed", "message": "no cache"})

    _, replies = await lifespan(wrap(Hybrid()), "startup")
    assert replies == [{"type": "lifespan.startup.failed", "message": "RuntimeError: no cache"}]
    assert log == ["init", "asgi-startup", "del"]  # init succeeded, so del runs once


async def test_hybrid_without_lifespan_support() -> None:
    log: list[str] = []

    class Hybrid:
        def __rsgi_init__(self, loop: Any) -> None:
            log.append("init")

        def __rsgi_del__(self, loop: Any) -> None:
            log.append("del")

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                raise ValueError(f"unsupported scope {scope['type']}")
            log.append(f"http {scope['path']}")
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    bridge = wrap(Hybrid())
    _, replies = await lifespan(bridge, "startup")
    assert replies == [{"type": "lifespan.startup.complete"}]
    assert (await get(bridge, "/p"))[0]["status"] == 204
    await lifespan(bridge, "shutdown")
    assert log == ["init", "http /p", "del"]
