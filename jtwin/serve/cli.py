"""``jtwin export CONFIG --out step.jtx`` and ``jtwin serve ARTIFACT``: subcommands for the jtwin CLI.

Wire them with :func:`add_cli` (``add_cli(subparsers)`` on the parser's subparsers).
``step_from_config(path) -> (step, example_args)`` decides which step a config exports;
the default, :func:`demo_step_from_config`, is the Kalman + LQR step of
:mod:`jtwin.serve.demo` on the config's (linear) plant.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp

from .demo import KalmanLQRStep
from .export import export_step
from .runtime import server


def demo_step_from_config(path: str) -> tuple[Callable, tuple]:
    """Kalman + LQR step on the config's plant: reference ``controller.setpoint`` for every state,
    inputs clipped to ``[controller.umin, controller.umax]``, initial belief ``N(simulation.x0, I)``."""
    from ..config import ConfigError, load_config
    from ..models import LinearModel

    cfg = load_config(path)
    model = cfg.plant.build()
    if not isinstance(model, LinearModel) or model.input_dim == 0:
        raise ConfigError(
            f"plant.kind: the Kalman + LQR export needs a linear plant with inputs, got {cfg.plant.kind!r}"
        )
    ctrl = cfg.controller
    step = KalmanLQRStep(model, ctrl.setpoint, ctrl.umin, ctrl.umax)
    n = model.state_dim
    x0 = jnp.zeros(n) if cfg.simulation.x0 is None else jnp.asarray(cfg.simulation.x0)
    y0 = model.observe(x0)
    return step, (step.init(x0, jnp.eye(n)), y0, jnp.asarray(0.0))


def export_config(path: str, out: str, platforms=("cpu",), step_from_config=demo_step_from_config) -> str:
    """Export the configured step to ``out``; returns a one-line summary."""
    fn, example_args = step_from_config(path)
    data = export_step(fn, *example_args, platforms=platforms, config=Path(path).read_bytes())
    Path(out).write_bytes(data)
    return f"jtwin export: wrote {out} ({len(data)} bytes, platforms {','.join(platforms)})"


def add_cli(subparsers, step_from_config: Callable = demo_step_from_config) -> None:
    """Add ``export`` and ``serve`` to an ``argparse`` subparsers object (each sets ``func(args) -> int``)."""
    exp = subparsers.add_parser("export", help="export the configured twin's step as a jax.export artifact")
    exp.add_argument("config", help="TOML config of the twin")
    exp.add_argument("--out", required=True, help="artifact path, e.g. step.jtx")
    exp.add_argument("--platforms", default="cpu", help="comma-separated lowering platforms, e.g. cpu,cuda")

    def _export(args: argparse.Namespace) -> int:
        platforms = tuple(p.strip() for p in args.platforms.split(",") if p.strip())
        print(export_config(args.config, args.out, platforms, step_from_config))
        return 0

    exp.set_defaults(func=_export)
    srv = subparsers.add_parser("serve", help="serve an exported twin step over HTTP/JSON")
    server.add_arguments(srv)
    srv.set_defaults(func=server.run)
