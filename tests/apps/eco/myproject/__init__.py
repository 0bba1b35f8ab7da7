"""A stand-in for the reader's project in the middleware recipes (``docs/middleware.md``)."""
