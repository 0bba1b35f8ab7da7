"""``myproject.main:app``, the target of the README's one-liner ``uvicorn "rsgi_bridge:wrap(myproject.main:app)"``."""

from myproject import app

__all__ = ["app"]
