"""jtwin.serve — export compiled twin steps (``jax.export``) and serve them over HTTP/JSON.

* :func:`export_step` — ``step(state, y, t) -> (u, state)`` (any pure function of pytrees
  of arrays) to artifact bytes: serialised StableHLO plus a JSON header naming every array,
  the jax/jtwin versions, platforms and a config hash.
* :func:`load_step` — artifact bytes to a callable (versions and platform checked).
* :mod:`jtwin.serve.runtime` — the loader and the HTTP server, importing only jax, numpy
  and the standard library; :func:`write_runtime` copies it for a host without jtwin.
* :func:`add_cli` — the ``jtwin export`` / ``jtwin serve`` subcommands.
"""

from .cli import add_cli, demo_step_from_config, export_config
from .demo import DemoState, Gaussian, KalmanLQRStep, building_demo
from .export import arrays_to_tree, config_hash, export_step, leaf_paths, tree_to_arrays, write_runtime
from .runtime import ArtifactError, LoadedStep, load_step

__all__ = [
    "ArtifactError",
    "DemoState",
    "Gaussian",
    "KalmanLQRStep",
    "LoadedStep",
    "add_cli",
    "arrays_to_tree",
    "building_demo",
    "config_hash",
    "demo_step_from_config",
    "export_config",
    "export_step",
    "leaf_paths",
    "load_step",
    "tree_to_arrays",
    "write_runtime",
]
