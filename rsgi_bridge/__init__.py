"""Run RSGI applications on any ASGI server.

``app = rsgi_bridge.wrap(rsgi_app)`` gives an ASGI 3 application.
"""

from __future__ import annotations

from .bridge import RSGIBridge, detect_interface, wrap
from .errors import ProtocolClosed, ProtocolError
from .hooks import HookLoop
from .http import HTTPProtocol, StreamTransport
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
    "WebsocketMessage",
    "WebsocketMessageType",
    "WebsocketProtocol",
    "WebsocketTransport",
    "detect_interface",
    "lifespan_context",
    "wrap",
]

__version__ = "0.1.0"
