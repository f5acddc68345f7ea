"""jtwin.serve — export compiled twin steps (``jax.export``) and serve them over HTTP/JSON.

* :func:`export_step` — ``step(state, y, t, ...) -> (u, state)`` (any pure function of pytrees
  of arrays) to artifact bytes: serialised StableHLO plus a JSON header naming every array,
  the jax/jtwin versions, platforms and a config hash.
* :func:`export_twin` — a :class:`jtwin.Twin`'s step ``(state, y, t[, d]) -> (u, state)``
  (``d``: disturbance forecast [N, p], when the model has disturbances);
  :func:`twin_from_config` builds the twin of a TOML config and its initial state.
* :func:`load_step` — artifact bytes to a callable (versions and platform checked).
* :mod:`jtwin.serve.runtime` — the loader and the HTTP server, importing only jax, numpy
  and the standard library; :func:`write_runtime` copies it for a host without jtwin.
* :func:`add_cli` — the ``jtwin export`` / ``jtwin serve`` subcommands.
"""

from .cli import add_cli, export_config
from .export import arrays_to_tree, config_hash, export_step, leaf_paths, tree_to_arrays, write_runtime
from .runtime import ArtifactError, LoadedStep, load_step
from .twin_export import export_twin, twin_example_args, twin_from_config, twin_step

__all__ = [
    "ArtifactError",
    "LoadedStep",
    "add_cli",
    "arrays_to_tree",
    "config_hash",
    "export_config",
    "export_step",
    "export_twin",
    "leaf_paths",
    "load_step",
    "tree_to_arrays",
    "twin_example_args",
    "twin_from_config",
    "twin_step",
    "write_runtime",
]
