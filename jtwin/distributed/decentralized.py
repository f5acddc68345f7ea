"""Decentralised consensus ADMM: no central average, only neighbour averaging over a graph.

Same problem as :func:`consensus_admm`, ``min_s Σ_i f_i(s)``, but agent ``i``
talks only to its neighbours in a connected graph, encoded by a symmetric doubly
stochastic mixing matrix ``W`` (e.g. :func:`metropolis_weights`).  The method
is the decentralised ADMM of Shi, Ling, Yuan, Wu & Yin (IEEE TSP 2014), with
the edge penalties weighted by ``W``: with ``d_i = 1 − w_ii`` and the neighbour
average ``(Wx)_i``,

    x_i ← argmin_x f_i(x) + α_iᵀx + ρ Σ_{j≠i} w_ij ‖x − (x_i + x_j)/2‖²
        = prox of f_i with penalty 2ρd_i at  c_i − α_i/(2ρd_i),
          c_i = ((1 − 2w_ii) x_i + (Wx)_i) / (2d_i)
    α_i ← α_i + ρ (x_i − (Wx)_i)                      (α_i = 0 initially)

so each iteration costs one local prox (the same :class:`LocalSolver`
strategies and boxes as the centralised variant) and one neighbour exchange.

Convergence (Shi et al. 2014; Makhdoumi & Ozdaglar 2017): for convex ``f_i``,
ρ > 0 and a connected graph, every ``x_i`` converges to the same minimiser
``s*`` (ergodic rate O(1/k)); for strongly convex smooth ``f_i`` the rate is
linear, with a contraction factor that degrades as the spectral gap
``1 − λ₂(W)`` (:func:`spectral_gap`) shrinks — on a ring it is O(1/N²), so a ring
needs many more iterations than the central average of :func:`consensus_admm`,
whose mixing is exact in one round.  ρ is kept fixed (no residual balancing).

Residuals: ``‖r‖ = ‖(I − W)x‖_F`` (neighbour disagreement, zero iff consensus on
a connected graph) and ``‖s‖ = ρ‖x^k − x^{k−1}‖_F``, with tolerances
``√(Nn)·tol + rel_tol·max(‖x‖_F, ‖Wx‖_F)`` and ``√(Nn)·tol + rel_tol·‖α‖_F``.
Here the agents are vmapped on one device and ``Wx`` is a dense matmul (a
simulation of the message exchange).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, PyTree

from . import _inputs
from .graph import check_mixing
from .history import ADMMHistory, Metrics, iterate, make_history
from .local_solvers import LocalSolver, Objective, resolve_solver


@eqx.filter_jit
def _run(objective, solver, data, box, mixing, z0, rho, tol, rel_tol, *, iterations):
    n_agents, n = mixing.shape[0], z0.shape[0]
    degree = 1.0 - jnp.diag(mixing)
    self_weight = jnp.diag(mixing)[:, None]
    cache = jax.vmap(solver.init, in_axes=(None, 0, None))(objective, data, z0)
    solve = jax.vmap(solver.solve, in_axes=(None, 0, 0, 0, 0, 0, 0, 0))
    local_values = jax.vmap(objective)
    abs_tol = jnp.sqrt(jnp.asarray(n_agents * n, z0.dtype)) * tol
    penalty = 2.0 * rho * degree

    def step(state):
        x, alpha, mult, mixed = state
        center = ((1.0 - 2.0 * self_weight) * x + mixed) / (2.0 * degree[:, None])
        x_new, mult = solve(objective, data, cache, center - alpha / penalty[:, None], penalty, x, mult, box)
        mixed_new = mixing @ x_new
        disagreement = x_new - mixed_new
        alpha = alpha + rho * disagreement
        metrics = Metrics(
            primal=jnp.linalg.norm(disagreement),
            dual=rho * jnp.linalg.norm(x_new - x),
            eps_primal=abs_tol + rel_tol * jnp.maximum(jnp.linalg.norm(x_new), jnp.linalg.norm(mixed_new)),
            eps_dual=abs_tol + rel_tol * jnp.linalg.norm(alpha),
            objective=jnp.sum(local_values(x_new, data)),
            rho=rho,
        )
        return (x_new, alpha, mult, mixed_new), metrics

    x0 = jnp.broadcast_to(z0, (n_agents, n))
    zeros = jnp.zeros_like(x0)
    (x, alpha, _, _), k, status, buffers = iterate(step, (x0, zeros, zeros, mixing @ x0), iterations, z0.dtype)
    return x, make_history(buffers, k, status, x, alpha)


def decentralized_admm(
    local_objective: Objective,
    agent_data: PyTree,
    mixing: Float[Array, "N N"],
    rho: float,
    iterations: int,
    *,
    z0: Float[Array, " n"],
    x_update: LocalSolver | str | None = None,
    bounds: tuple[Float[Array, "N n"], Float[Array, "N n"]] | None = None,
    tol: float = 1e-6,
    rel_tol: float = 1e-6,
) -> tuple[Float[Array, "N n"], ADMMHistory]:
    """Solve ``min_s Σ_i f_i(s)`` with neighbour averaging only (decentralised ADMM; see the module docstring).

    Args:
        local_objective, agent_data, z0, x_update, bounds, tol, rel_tol: as in :func:`consensus_admm`.
        mixing: symmetric doubly stochastic ``(N, N)`` matrix with a connected
            support graph, e.g. ``metropolis_weights(ring_graph(N))``.
        rho: fixed penalty ρ > 0.
        iterations: iteration budget K.

    Returns:
        ``(x, history)``: every agent's estimate ``x`` of shape ``(N, n)`` (all rows
        converge to ``s*``) and an :class:`ADMMHistory` whose ``objective`` is
        ``Σ_i f_i(x_i^k)`` and ``dual`` holds the ``α_i``.

    Raises:
        ValueError: malformed inputs, a mixing matrix that is not symmetric doubly
        stochastic, or a disconnected graph (the error lists the components).
    """
    z0 = _inputs.start_point(z0)
    n_agents = _inputs.agent_count(agent_data)
    w = check_mixing(mixing)
    if w.shape[0] != n_agents:
        raise ValueError(f"mixing: expected shape ({n_agents}, {n_agents}) for N={n_agents} agents, got {w.shape}")
    rho = _inputs.positive_scalar("rho", rho)
    iterations = _inputs.positive_int("iterations", iterations)
    tol = _inputs.nonnegative_scalar("tol", tol)
    rel_tol = _inputs.nonnegative_scalar("rel_tol", rel_tol)
    solver = resolve_solver(x_update)
    box = _inputs.box_bounds(bounds, n_agents, z0.shape[0], z0.dtype)
    _inputs.check_solver(solver, local_objective, agent_data, z0, box)
    scalars = [jnp.asarray(v, z0.dtype) for v in (rho, tol, rel_tol)]
    return _run(local_objective, solver, agent_data, box, jnp.asarray(w, z0.dtype), z0, *scalars, iterations=iterations)
