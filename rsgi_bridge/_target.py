"""Import target the CLI hands to the ASGI server (one import per worker process)."""

from __future__ import annotations

import ast
import os

from .bridge import wrap
from .cli import ENV_OPTIONS, ENV_TARGET

app = wrap(os.environ[ENV_TARGET], **ast.literal_eval(os.environ.get(ENV_OPTIONS, "{}")))
