"""Integer status codes shared by the QP solvers (ADMM and FISTA) and the MPC layer.

Solvers run inside ``jit``/``vmap``, so they report their outcome as an integer
array instead of raising.  Use :func:`status_name` to turn a code into text.
"""

from __future__ import annotations

import numpy as np

SOLVED = 1
"""Converged: OSQP's primal and dual residual tests (or FISTA's gradient-mapping test) passed."""
MAX_ITER = 2
"""Stopped at ``max_iter`` before the termination test passed; the iterate is the last one."""
PRIMAL_INFEASIBLE = 3
"""A primal infeasibility certificate ``δy`` was found (``Aᵀδy ≈ 0``, ``uᵀδy⁺ + lᵀδy⁻ < 0``)."""
DUAL_INFEASIBLE = 4
"""A dual infeasibility certificate ``δx`` was found (``Pδx ≈ 0``, ``qᵀδx < 0``, ``Aδx`` in the recession cone)."""
NUMERICAL_ERROR = 5
"""An iterate became non-finite (e.g. NaN data inside ``jit``); the returned point is zero."""

_NAMES = {
    SOLVED: "solved",
    MAX_ITER: "max_iter",
    PRIMAL_INFEASIBLE: "primal_infeasible",
    DUAL_INFEASIBLE: "dual_infeasible",
    NUMERICAL_ERROR: "numerical_error",
}


def status_name(status) -> str | np.ndarray:
    """Name of a status code: ``"solved"``, ``"max_iter"``, ``"primal_infeasible"``, ...

    Accepts a Python int or a concrete array of codes (outside ``jit``); an
    array gives an array of names with the same shape.
    """
    codes = np.asarray(status)
    if codes.ndim == 0:
        return _NAMES.get(int(codes), f"unknown({int(codes)})")
    return np.vectorize(lambda c: _NAMES.get(int(c), f"unknown({int(c)})"))(codes)
