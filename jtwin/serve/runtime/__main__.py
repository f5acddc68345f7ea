"""``python -m <runtime package> ARTIFACT [--host --port --state-dir --max-body]``."""

import sys

from .server import main

sys.exit(main(prog=f"python -m {__package__}"))
