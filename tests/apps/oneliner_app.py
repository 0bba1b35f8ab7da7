"""A plain RSGI app (not wrapped here), for the servers' one-line app strings.

``ONELINER_INIT_DELAY``: seconds ``__rsgi_init__`` sleeps (to see ``startup_timeout`` applied).
"""

from __future__ import annotations

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
        body = f"{scope.http_version} {scope.scheme} {scope.path} ready={self.ready}"
        proto.response_str(200, [("content-type", "text/plain")], body)


app = App()


class Nested:
    """``nested.inner.app``: a dotted attribute path."""

    class inner:
        app = app
