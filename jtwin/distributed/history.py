"""The outer ADMM iteration loop shared by the consensus and decentralised drivers, and its history.

A driver supplies ``step(state) -> (state, Metrics)``; :func:`iterate` runs it in
a ``lax.while_loop`` until the residual test passes, an iterate turns non-finite,
or ``iterations`` is reached, recording one row of metrics per iteration in
preallocated buffers (so it is jit-compiled once per iteration budget and works
inside ``shard_map``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PyTree

from ..qp.results import CODES, RESULTS, from_code, is_successful, status_name

RUNNING = -1  # loop code while iterating (the RESULTS codes are >= 0)
"""Internal: the loop has not stopped yet (never returned)."""


class Metrics(NamedTuple):
    """One iteration's residuals ``‖r‖, ‖s‖``, their tolerances, the objective and the ρ that was used."""

    primal: Float[Array, ""]
    dual: Float[Array, ""]
    eps_primal: Float[Array, ""]
    eps_dual: Float[Array, ""]
    objective: Float[Array, ""]
    rho: Float[Array, ""]


class ADMMHistory(eqx.Module):
    """Per-iteration record of an ADMM run (entries past ``iterations`` are NaN).

    Attributes:
        primal_residual: ``‖r^k‖`` per iteration, shape ``(K,)`` (K = the iteration budget).
        dual_residual: ``‖s^k‖`` per iteration, ``(K,)``.
        objective: the objective value per iteration, ``(K,)`` (see the driver for which point).
        rho: the penalty ρ used in each iteration, ``(K,)``.
        iterations: number of iterations run, ``()``.
        status: a :class:`jtwin.qp.RESULTS` item: successful, max_iterations_reached or numerical_error (non-finite iterate).
        x: final local iterates, ``(N, n)``.
        dual: final dual variables, ``(N, n)`` (scaled ``u_i`` for consensus, ``α_i`` for decentralised).
    """

    primal_residual: Float[Array, " K"]
    dual_residual: Float[Array, " K"]
    objective: Float[Array, " K"]
    rho: Float[Array, " K"]
    iterations: Int[Array, ""]
    status: RESULTS
    x: Float[Array, "N n"]
    dual: Float[Array, "N n"]

    @property
    def status_name(self) -> str:
        """``"successful"``, ``"max_iterations_reached"`` or ``"numerical_error"`` (outside jit)."""
        return status_name(self.status)

    @property
    def converged(self) -> bool:
        """True when the primal and dual residual tests passed (outside jit)."""
        return bool(is_successful(self.status))


def iterate(
    step: Callable[[PyTree], tuple[PyTree, Metrics]], state: PyTree, iterations: int, dtype
) -> tuple[PyTree, Int[Array, ""], RESULTS, Float[Array, "4 K"]]:
    """Run ``step`` until ``primal ≤ eps_primal`` and ``dual ≤ eps_dual``, a non-finite metric, or ``iterations``.

    Returns ``(state, iterations_run, status, buffers)`` where the rows of
    ``buffers`` are primal residual, dual residual, objective and ρ.
    """
    buffers = jnp.full((4, iterations), jnp.nan, dtype)

    def running(carry):
        k, status, _, _ = carry
        return (k < iterations) & (status == RUNNING)

    def body(carry):
        k, _, state, buffers = carry
        state, m = step(state)
        buffers = buffers.at[:, k].set(jnp.stack([m.primal, m.dual, m.objective, m.rho]))
        finite = jnp.isfinite(m.primal) & jnp.isfinite(m.dual) & jnp.isfinite(m.objective)
        converged = (m.primal <= m.eps_primal) & (m.dual <= m.eps_dual)
        status = jnp.where(finite, jnp.where(converged, CODES["successful"], RUNNING), CODES["numerical_error"])
        return k + 1, status, state, buffers

    init = (jnp.asarray(0), jnp.asarray(RUNNING), state, buffers)
    k, status, state, buffers = jax.lax.while_loop(running, body, init)
    return state, k, from_code(jnp.where(status == RUNNING, CODES["max_iterations_reached"], status)), buffers


def make_history(buffers, iterations_run, status, x, dual) -> ADMMHistory:
    """Pack :func:`iterate`'s outputs into an :class:`ADMMHistory`."""
    return ADMMHistory(
        primal_residual=buffers[0],
        dual_residual=buffers[1],
        objective=buffers[2],
        rho=buffers[3],
        iterations=iterations_run,
        status=status,
        x=x,
        dual=dual,
    )
