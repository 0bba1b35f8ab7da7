"""Checks the docs' examples run after their code (``then="..."`` in a marker, see tests/test_docs.py).

An example that only defines an app proves little; these serve what it built, in-process.
"""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient as StarletteTestClient

import rsgi_bridge
from rsgi_bridge.testing import TestClient

__all__ = ["check_mount", "check_wrapped"]


def check_wrapped(app: Any, rsgi_app: Any) -> None:
    """``app`` is a bridge that serves ``rsgi_app``, runs its hooks, and answers ``/``."""
    assert isinstance(app, rsgi_bridge.RSGIBridge), app
    before = len(rsgi_app.events)
    with TestClient(app) as client:
        r = client.get("/", params={"name": "docs"})
        assert r.status_code == 200 and r.text.startswith("Hello, docs!"), r
    assert rsgi_app.events[before:] == ["init", "del"], rsgi_app.events


def check_mount(app: Any, rsgi_app: Any, prefix: str = "/legacy") -> None:
    """The outer app serves its own route and the RSGI app under ``prefix``, hooks run by its lifespan."""
    with StarletteTestClient(app) as client:
        assert rsgi_app.events == ["init"], rsgi_app.events  # before the first request to the mount
        assert client.get("/health").text == "ok"
        r = client.get(f"{prefix}/", params={"name": "mounted"})
        assert r.status_code == 200 and r.text == "Hello, mounted! (legacy)", r.text
    assert rsgi_app.events == ["init", "del"], rsgi_app.events
