"""``python -m rsgi_bridge``: same as the ``rsgi-bridge`` command."""

import sys

from .cli import main

if __name__ == "__main__":  # spawned worker processes re-import this module
    sys.exit(main())
