"""``jtwin export CONFIG --out step.jtx`` and ``jtwin serve ARTIFACT``: subcommands for the jtwin CLI.

Wire them with :func:`add_cli` (``add_cli(subparsers)`` on the parser's subparsers).  ``export``
builds the configured twin (``jtwin.run.build_twin``: estimator + MPC) and exports its step
``(state, y, t[, d]) -> (u, state)`` (see :mod:`jtwin.serve.twin_export`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .export import check_platforms
from .runtime import server
from .twin_export import export_twin, twin_from_config


def export_config(path: str, out: str, platforms=("cpu",)) -> str:
    """Export the step of the twin configured at ``path`` to ``out``; returns a one-line summary.

    ``ValueError`` (before anything is built) for a platform jax does not know."""
    platforms = check_platforms(platforms)
    twin, state0 = twin_from_config(path)
    data = export_twin(twin, state0, platforms=platforms, config=Path(path).read_bytes())
    Path(out).write_bytes(data)
    inputs = "y, t, d" if twin.model.disturbance_dim else "y, t"
    return f"jtwin export: wrote {out} ({len(data)} bytes, platforms {','.join(platforms)}, step inputs {inputs})"


def add_cli(subparsers) -> None:
    """Add ``export`` and ``serve`` to an ``argparse`` subparsers object (each sets ``func(args) -> int``)."""
    exp = subparsers.add_parser("export", help="export the configured twin's step as a jax.export artifact")
    exp.add_argument("config", help="TOML config of the twin")
    exp.add_argument("--out", required=True, help="artifact path, e.g. step.jtx")
    exp.add_argument("--platforms", default="cpu", help="comma-separated lowering platforms, e.g. cpu,cuda")

    def _export(args: argparse.Namespace) -> int:
        platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
        print(export_config(args.config, args.out, platforms))
        return 0

    exp.set_defaults(func=_export)
    srv = subparsers.add_parser("serve", help="serve an exported twin step over HTTP/JSON")
    server.add_arguments(srv)
    srv.set_defaults(func=server.run)
