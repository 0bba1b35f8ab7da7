"""A plain RSGI app (not wrapped here), for the servers' one-line app strings.

``ONELINER_INIT_DELAY``: seconds ``__rsgi_init__`` sleeps (to see ``startup_timeout`` applied).
``/x-name``: the request's ``X-Name`` header as the app sees it (JSON; ``null`` when it is left out,
to see ``header_decoding`` applied). ``/options``: the ``accelerate`` and ``header_decoding`` of the
bridge serving this app (JSON), found through the garbage collector: the server built the bridge
from its app string, and nothing else holds it where the app could look.
"""

from __future__ import annotations

import gc
import json
import os
import time
from typing import Any


class App:
    def __init__(self) -> None:
        self.ready = False

    def __rsgi_init__(self, loop: Any) -> None:
        time.sleep(float(os.environ.get("ONELINER_INIT_DELAY") or 0))
        self.ready = True

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.path == "/x-name":
            proto.response_str(200, [("content-type", "application/json")], json.dumps(scope.headers.get("x-name")))
            return
        if scope.path == "/options":
            from rsgi_bridge import RSGIBridge

            bridges = [o for o in gc.get_objects() if isinstance(o, RSGIBridge) and o.app is self]
            seen = [{"accelerate": b.accelerate, "header_decoding": b.header_decoding} for b in bridges]
            proto.response_str(200, [("content-type", "application/json")], json.dumps(seen))
            return
        body = f"{scope.http_version} {scope.scheme} {scope.path} ready={self.ready}"
        proto.response_str(200, [("content-type", "text/plain")], body)


app = App()


class Nested:
    """``nested.inner.app``: a dotted attribute path."""

    class inner:
        app = app
