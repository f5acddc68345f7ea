"""Standalone serving runtime for exported twin steps: imports only jax, numpy and the standard library.

Nothing here imports jtwin, and modules import each other relatively only, so this
directory can be copied anywhere under any package name (``jtwin.serve.write_runtime``)
and run with ``python -m <package> ARTIFACT --port 8080 --state-dir DIR`` on a host
that has jax and numpy but not jtwin.
"""

from .artifact import ArtifactError, LoadedStep, load_step
from .server import ApiError, TwinService, make_server, open_service
from .store import StateStore, TwinRecord

__all__ = [
    "ApiError",
    "ArtifactError",
    "LoadedStep",
    "StateStore",
    "TwinRecord",
    "TwinService",
    "load_step",
    "make_server",
    "open_service",
]
