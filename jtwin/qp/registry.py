"""Solvers by name — ``"admm"``, ``"ipm"``, ``"fista"`` — for configs and ``method=`` arguments.

A new solver is one module with an :class:`~jtwin.qp.AbstractQPSolver` subclass plus one
entry in :data:`SOLVERS`.
"""

from __future__ import annotations

import dataclasses

from .admm import ADMM
from .base import AbstractQPSolver
from .fista import FISTA
from .ipm import InteriorPoint

SOLVERS: dict[str, type[AbstractQPSolver]] = {"admm": ADMM, "ipm": InteriorPoint, "fista": FISTA}


def make_solver(name: str, **options) -> AbstractQPSolver:
    """The solver registered as ``name`` with ``options`` (its fields; ``None`` values mean the
    solver's default).  Unknown names and options raise ValueError naming them."""
    if name not in SOLVERS:
        raise ValueError(f"method: expected one of {list(SOLVERS)}, got {name!r}")
    cls = SOLVERS[name]
    options = {k: v for k, v in options.items() if v is not None}
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an option of {cls.__name__} (method={name!r}); its options: {fields}")
    return cls(**options)


def solver_name(solver: AbstractQPSolver) -> str:
    """The registered name of ``solver``'s class (``"admm"``, …)."""
    for name, cls in SOLVERS.items():
        if type(solver) is cls:
            return name
    return type(solver).__name__
