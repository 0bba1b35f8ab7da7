"""Run RSGI applications on any ASGI server.

``app = rsgi_bridge.wrap(rsgi_app)`` gives an ASGI 3 application.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .bridge import RSGIBridge, detect_interface, wrap
from .errors import ProtocolClosed, ProtocolError
from .hookloop import HookLoop
from .http import HTTPProtocol, StreamTransport
from .imports import TargetError
from .mount import lifespan_context
from .scope import Headers, Scope
from .websocket import WebsocketMessage, WebsocketMessageType, WebsocketProtocol, WebsocketTransport

__all__ = [
    "Headers",
    "HookLoop",
    "HTTPProtocol",
    "ProtocolClosed",
    "ProtocolError",
    "RSGIBridge",
    "Scope",
    "StreamTransport",
    "TargetError",
    "WebsocketMessage",
    "WebsocketMessageType",
    "WebsocketProtocol",
    "WebsocketTransport",
    "detect_interface",
    "lifespan_context",
    "wrap",
]

__version__ = "0.1.0"

if not TYPE_CHECKING:  # hidden from type checkers: a typo in rsgi_bridge.<name> stays an error there

    def __getattr__(name: str) -> Any:
        """``rsgi_bridge:wrap(myproject.main:app)`` as uvicorn, daphne and Granian look it up."""
        if name.startswith("wrap("):
            from .imports import app_string_attribute

            return app_string_attribute(name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
