"""``python -m rsgi_bridge``: same as the ``rsgi-bridge`` command."""

import sys

from .cli import main

sys.exit(main())
