"""jtwin: a GPU-accelerated, differentiable engine for operational digital twins.

A twin T = (M, D, U, S) couples a model (``jtwin.models``), data assimilation
(``jtwin.estimation``), optimisation-based actuation (``jtwin.qp``,
``jtwin.control``) and synchronisation with a physical plant.  All numerics are
pure JAX: ``jit`` for CPU/GPU, ``vmap`` over scenarios, ``grad`` end to end.

Precision: importing jtwin enables JAX's 64-bit mode
(``jax.config.update("jax_enable_x64", True)``), because Kalman filtering and
ADMM QP solving need float64 to reach their accuracy targets.  Set the
environment variable ``JTWIN_ENABLE_X64=0`` before importing jtwin to keep JAX's
32-bit default (e.g. for float32 GPU throughput runs); every function follows
the dtype of the arrays it is given.
"""

import os as _os

import jax as _jax

if _os.environ.get("JTWIN_ENABLE_X64", "1") != "0":
    _jax.config.update("jax_enable_x64", True)

__version__ = "0.1.0"

from . import (  # noqa: E402
    control,
    distributed,
    drift,
    estimation,
    learn,
    logs,
    models,
    qp,
    schedule,
    sync,
    uncertainty,
    validation,
)
from . import kpi, simulate, twin  # noqa: E402  (the closed loop, built on the packages above)
from .twin import Twin, TwinState  # noqa: E402

_LAZY = ("report", "serve")  # imported on first use: serving and plotting are not needed to build twins


def __getattr__(name: str):
    """``jt.serve`` / ``jt.report`` after a plain ``import jtwin``, imported on first access."""
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "control",
    "distributed",
    "drift",
    "estimation",
    "learn",
    "logs",
    "models",
    "qp",
    "schedule",
    "sync",
    "uncertainty",
    "validation",
    "kpi",
    "report",
    "serve",
    "simulate",
    "twin",
    "Twin",
    "TwinState",
]
