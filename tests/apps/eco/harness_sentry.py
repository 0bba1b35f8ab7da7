"""``recipe_sentry`` with a transport that keeps events in memory: ``GET /_recorded`` lists them.

``SENTRY_DSN`` must be set (the recipe reads it); nothing is sent anywhere: the client's transport
is replaced before any request.
"""

from __future__ import annotations

from typing import Any

import recipe_sentry  # type: ignore[import-not-found]  # written from docs/middleware.md by the test
import sentry_sdk
from harness import expose  # type: ignore[import-not-found]
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

EVENTS: list[dict[str, Any]] = []


class RecordingTransport(Transport):
    def capture_envelope(self, envelope: Envelope) -> None:
        for item in envelope.items:
            if item.type == "event" and item.payload.json is not None:
                EVENTS.append(item.payload.json)


client = sentry_sdk.get_client()
client.transport = RecordingTransport(client.options)  # type: ignore[attr-defined]

app = expose(recipe_sentry.app, lambda: EVENTS)
