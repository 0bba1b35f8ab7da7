"""Where the bridge's log lines show up when the app configures no logging (README "Logging")."""

from __future__ import annotations

import httpx
import pytest

from tests.servers import Server

APP = "examples.hello:asgi_app"  # configures no logging; its hooks log WARNINGs on "hello"


@pytest.mark.parametrize("kind", ["daphne", "uvicorn", "hypercorn"])
def test_info_lines_without_logging_configuration(kind: str) -> None:
    with Server(kind, APP) as s:
        assert httpx.get(s.url + "/", timeout=10).text == "Hello, world!"
    out = s.output()
    # a WARNING from the app's hook reaches stderr everywhere (daphne's handler or the last resort)
    assert "hello: init (greeting='Hello, world!')" in out and "hello: del" in out, out
    if kind == "daphne":
        # daphne calls logging.basicConfig at INFO (its default --verbosity 1): the bridge's
        # INFO lines appear, in daphne's format (time, level, message; no logger name)
        for line in ("__rsgi_init__ starting", "__rsgi_init__ done in ", "drain started: 0 request(s) in flight"):
            assert f" INFO     {line}" in out, out
        assert " INFO     __rsgi_del__ done in " in out, out
    else:
        # uvicorn and hypercorn configure only their own loggers: the INFO lines are not shown
        assert "__rsgi_init__" not in out and "__rsgi_del__" not in out, out


def test_daphne_verbosity_0_hides_the_info_lines() -> None:
    with Server("daphne", APP, ["-v", "0"]) as s:
        assert httpx.get(s.url + "/", timeout=10).status_code == 200
    out = s.output()
    assert "hello: init" in out and "__rsgi_init__" not in out, out
