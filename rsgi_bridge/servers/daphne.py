"""daphne."""

from __future__ import annotations

from . import Quirks

# Workaround: an exception from the app after its response started does not abort the response:
# daphne then tries to send its own error page on it, and the error that raises stops its
# application checker for the rest of the process. The bridge ends such a body instead (as Granian
# does everywhere).
# Websocket close codes: daphne accepts only 1000 and 3000-4999 and raises on the others. The core
# needs no entry for it here: whatever server refuses a close code, websocket.py closes with 1000
# instead (and hands a refused 1000 or 1011 to the server, which then closes with 1011 itself).
QUIRKS = Quirks(aborts=False)


def quirks_for(owner: type) -> Quirks | None:
    """daphne's quirks if ``owner`` (what its ``send`` is bound to, through a partial) is daphne's, else None."""
    return QUIRKS if owner.__module__.startswith("daphne.") else None
