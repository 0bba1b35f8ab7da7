"""RSGI protocol errors.

When granian is importable the bridge raises granian's own classes, so an app
written as ``except granian.rsgi.ProtocolClosed`` keeps working. Otherwise two
local ``RuntimeError`` subclasses with the same names stand in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["ProtocolClosed", "ProtocolError"]

if TYPE_CHECKING:

    class ProtocolError(RuntimeError):
        """A protocol object was used in a way RSGI forbids."""

    class ProtocolClosed(RuntimeError):
        """The client is gone: nothing more can be sent or received."""

else:
    try:
        from granian._granian import RSGIProtocolClosed as ProtocolClosed
        from granian._granian import RSGIProtocolError as ProtocolError
    except ImportError:  # granian is optional

        class ProtocolError(RuntimeError):
            """A protocol object was used in a way RSGI forbids."""

        class ProtocolClosed(RuntimeError):
            """The client is gone: nothing more can be sent or received."""
