"""uvicorn (httptools and h11 protocols)."""

from __future__ import annotations

from . import Quirks

# Its status-line tables stop at 599, and it fails on a higher status only after marking the
# response started (no 500 can follow): the bridge answers 500 before trying.
# Its receive() answers http.disconnect once the response is complete, dropping any request body
# the app has not read yet.
QUIRKS = Quirks(max_status=599, body_after_response=False)


def owns(module: str) -> bool:
    """Whether a ``send``/``receive`` bound to an object of ``module`` is uvicorn's HTTP one."""
    return module.startswith("uvicorn.protocols.http.")
