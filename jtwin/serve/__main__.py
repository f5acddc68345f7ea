"""``python -m jtwin.serve ARTIFACT [--host 127.0.0.1 --port 8080 --state-dir DIR]``: same as ``jtwin serve``."""

import sys

from .runtime.server import main

sys.exit(main(prog="python -m jtwin.serve"))
