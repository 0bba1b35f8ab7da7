"""daphne."""

from __future__ import annotations

from . import Quirks

# An exception from the app after its response started does not abort the response: daphne then
# tries to send its own error page on it, and the error that raises stops its application checker
# for the rest of the process. The bridge ends such a body instead (as Granian does everywhere).
QUIRKS = Quirks(aborts=False)


def owns(module: str) -> bool:
    """Whether a ``send`` bound to an object of ``module`` (through a partial) is daphne's."""
    return module.startswith("daphne.")
