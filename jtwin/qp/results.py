"""One status type for every solver of the library: :class:`RESULTS` (an ``eqx.Enumeration``).

Solvers run inside ``jit``/``vmap``, so they report their outcome as an
enumeration item (an integer array underneath, batched like any other leaf)
instead of raising.  One rule decides whether a result may be used:
:func:`is_successful` (converged to the requested tolerances).  Public entry
points take ``throw=True`` to raise instead (``eqx.error_if``, as diffrax does).
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np
from equinox._enum import EnumerationItem
from jaxtyping import Array, Bool, Int


class RESULTS(eqx.Enumeration):
    """Outcome of a solve (QP, FISTA, MPC, Newton).

    * ``successful`` — converged: primal residual, dual residual and duality gap
      (or the solver's own optimality test) within the requested tolerances.
    * ``max_iterations_reached`` — stopped at the iteration limit first; the
      returned point is the last iterate, not a certified solution.
    * ``primal_infeasible`` — a certificate that no point satisfies the constraints.
    * ``dual_infeasible`` — a certificate that the objective is unbounded below.
    * ``numerical_error`` — an iterate became non-finite (e.g. NaN data); the point is zero.
    """

    successful = "solved to the requested tolerances"
    max_iterations_reached = "stopped at the iteration limit before the termination test passed"
    primal_infeasible = "primal infeasible: the constraints admit no point"
    dual_infeasible = "dual infeasible: the objective is unbounded below on the constraints"
    numerical_error = "numerical error: an iterate became non-finite"


_ORDER = ("successful", "max_iterations_reached", "primal_infeasible", "dual_infeasible", "numerical_error")
CODES = {name: int(getattr(RESULTS, name)._value) for name in _ORDER}
"""Integer code of each :class:`RESULTS` item (for solvers that select statuses with ``jnp.where``)."""


# A solver's while loop keeps an integer per problem: RUNNING while it iterates, then its outcome.
RUNNING = 0
SOLVED, MAX_ITER, PRIMAL_INF, DUAL_INF, NUMERICAL = (CODES[name] + 1 for name in _ORDER)


def from_loop_code(code: Int[Array, "*batch"]) -> RESULTS:
    """The :class:`RESULTS` item of a finished loop code (``SOLVED``, ``MAX_ITER``, … = the RESULTS code + 1)."""
    return from_code(code - 1)


def from_code(code: Int[Array, "*batch"]) -> RESULTS:
    """A (possibly batched) :class:`RESULTS` item from integer codes of :data:`CODES`."""
    return EnumerationItem(jnp.asarray(code, jnp.int32), RESULTS)


def is_successful(result: RESULTS) -> Bool[Array, "*batch"]:
    """The one rule for "this solve can be used as a solution": ``result == RESULTS.successful``.

    Works on batched results (elementwise).
    """
    return result == RESULTS.successful


def throw_if_failed(tree, result: RESULTS):
    """``tree`` unchanged, raising ``EquinoxRuntimeError`` with the status message when any
    (batched) ``result`` is not successful: the ``throw=True`` of the public entry points."""
    return result.error_if(tree, ~is_successful(result))


def status_name(result) -> str | np.ndarray:
    """Short name(s) of a concrete :class:`RESULTS` item: ``"successful"``, ``"max_iterations_reached"``, …

    A batched item gives a numpy array of names with the batch's shape.
    """
    if not isinstance(result, RESULTS):
        raise ValueError(f"status_name: expected a jtwin.qp.RESULTS item, got {type(result).__name__}")
    codes = np.asarray(result._value)
    names = np.asarray(_ORDER, dtype=object)[codes]
    return str(names) if codes.ndim == 0 else names


def status_code(result: RESULTS) -> Int[Array, "*batch"]:
    """The integer code (:data:`CODES`) of a result, e.g. to store statuses in a numpy array or a log."""
    return jnp.asarray(result._value)
