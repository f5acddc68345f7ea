"""Consensus ADMM for ``min_s Σ_i f_i(s)``: agents vmapped on one device or sharded over a device mesh.

N agents hold private data ``data_i`` and convex costs
``f_i(s) = local_objective(s, data_i)`` (plus an optional local box
``l_i ≤ s ≤ u_i``) of a shared vector ``s ∈ Rⁿ``.  With local copies ``x_i``,
scaled duals ``u_i`` and the consensus variable ``z`` (Boyd et al. 2011, §7.1):

    x_i ← argmin_x f_i(x) + (ρ/2)‖x − z + u_i‖²      local, in parallel
    z   ← (1/N) Σ_i (x_i + u_i)                      the only communication: an average
    u_i ← u_i + x_i − z                              local dual update

(``Σ_i u_i`` stays 0 from ``u = 0``, so ``z`` is the average of the ``x_i``, as in
the spec).  Residuals and stopping test (Boyd §3.3):

    ‖r‖ = (Σ_i ‖x_i − z‖²)^½,   ‖s‖ = ρ √N ‖z − z_prev‖,
    ‖r‖ ≤ √(Nn)·tol + rel_tol·max((Σ‖x_i‖²)^½, √N‖z‖),   ‖s‖ ≤ √(Nn)·tol + rel_tol·ρ(Σ‖u_i‖²)^½.

Residual balancing (Boyd §3.4.1): if ``‖r‖ > μ‖s‖`` then ``ρ ← τρ``, if
``‖s‖ > μ‖r‖`` then ``ρ ← ρ/τ``, rescaling ``u`` by the inverse factor.

Execution: with ``mesh=None`` the agents are a vmapped axis on one device; with
a :class:`jax.sharding.Mesh` that has an ``"agents"`` axis, the same per-block
code runs under :func:`jax.shard_map` with the agents split over the devices,
the average as ``lax.pmean`` and the residual sums as one ``lax.psum`` (then
taken from device 0 by an ``all_gather``, so every device makes bitwise the
same stop and ρ decisions).  Both paths execute the same arithmetic up to the
summation order, so the iterates agree to round-off (≈1e-14 measured on 1, 2
and 8 devices); the mesh may span several processes/hosts
(``jax.distributed.initialize``, see ``experiments/distributed_multihost.py``).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, Float, PyTree

from . import _inputs
from .history import ADMMHistory, Metrics, iterate, make_history
from .local_solvers import Box, LocalSolver, Objective, resolve_solver

AGENTS = "agents"
"""Name of the mesh axis the agents are sharded over."""


def _mean(a, axis_name):
    """Average over all agents: local mean, then ``pmean`` over the mesh (equal block sizes)."""
    m = jnp.mean(a, axis=0)
    return m if axis_name is None else jax.lax.pmean(m, axis_name)


def _total(a, axis_name):
    """Sum over the mesh of per-device partial sums (``psum``); the identity on one device."""
    return a if axis_name is None else jax.lax.psum(a, axis_name)


def _agree(values, axis_name):
    """Device 0's copy of reduced values, so that every device holds bitwise identical ones.

    XLA's all-reduce does not promise bitwise identical results on all
    participants; the loop's decisions (stop, ρ) must be identical everywhere,
    or the devices run different numbers of collectives and deadlock.
    """
    if axis_name is None:
        return values
    return jax.tree_util.tree_map(lambda v: jax.lax.all_gather(v, axis_name)[0], values)


def _consensus_block(
    objective: Objective,
    solver: LocalSolver,
    iterations: int,
    adapt_rho: bool,
    n_agents: int,
    axis_name: str | None,
    data: PyTree,
    box: Box,
    z0,
    rho,
    tol,
    rel_tol,
    mu,
    tau,
):
    """ADMM over one block of agents (all of them, or one device's share inside ``shard_map``)."""
    n = z0.shape[0]
    block = jax.tree_util.tree_leaves(data)[0].shape[0]
    cache = jax.vmap(solver.init, in_axes=(None, 0, None))(objective, data, z0)
    solve = jax.vmap(solver.solve, in_axes=(None, 0, 0, 0, None, 0, 0, 0))
    local_values = jax.vmap(objective, in_axes=(None, 0))
    sqrt_n_agents = jnp.sqrt(jnp.asarray(n_agents, z0.dtype))
    abs_tol = jnp.sqrt(jnp.asarray(n_agents * n, z0.dtype)) * tol

    def step(state):
        x, u, mult, z, rho = state
        x, mult = solve(objective, data, cache, z - u, rho, x, mult, box)
        z_new = _mean(x + u, axis_name)
        u = u + x - z_new
        local = jnp.stack([jnp.sum((x - z_new) ** 2), jnp.sum(x**2), jnp.sum(u**2), jnp.sum(local_values(z_new, data))])
        z_new, (primal_sq, x_sq, u_sq, objective_value) = _agree((z_new, _total(local, axis_name)), axis_name)
        primal = jnp.sqrt(primal_sq)
        dual = rho * sqrt_n_agents * jnp.linalg.norm(z_new - z)
        metrics = Metrics(
            primal=primal,
            dual=dual,
            eps_primal=abs_tol + rel_tol * jnp.maximum(jnp.sqrt(x_sq), sqrt_n_agents * jnp.linalg.norm(z_new)),
            eps_dual=abs_tol + rel_tol * rho * jnp.sqrt(u_sq),
            objective=objective_value,
            rho=rho,
        )
        factor = jnp.ones_like(rho)
        if adapt_rho:
            factor = jnp.where(primal > mu * dual, tau, jnp.where(dual > mu * primal, 1.0 / tau, factor))
        return (x, u / factor, mult, z_new, rho * factor), metrics

    zeros = jnp.zeros((block, n), z0.dtype)
    state = (zeros + z0, zeros, zeros, z0, rho)
    (x, u, _, z, _), k, status, buffers = iterate(step, state, iterations, z0.dtype)
    return z, x, u, k, status, buffers


@eqx.filter_jit
def _run(objective, solver, data, box, z0, rho, tol, rel_tol, mu, tau, *, iterations, adapt_rho, n_agents, mesh):
    block = functools.partial(
        _consensus_block, objective, solver, iterations, adapt_rho, n_agents, None if mesh is None else AGENTS
    )
    if mesh is not None:
        if mesh.axis_types[mesh.axis_names.index(AGENTS)] == AxisType.Explicit:  # Auto meshes reshard implicitly
            split = NamedSharding(mesh, P(AGENTS))
            data, box = jax.tree_util.tree_map(lambda leaf: jax.reshard(leaf, split), (data, box))
        block = jax.shard_map(
            block,
            mesh=mesh,
            in_specs=(P(AGENTS), P(AGENTS), P(), P(), P(), P(), P(), P()),
            out_specs=(P(), P(AGENTS), P(AGENTS), P(), P(), P()),
            # Replicated values are made bitwise identical by _agree (all_gather), and the local
            # solvers differentiate at replicated points (z0, z − u): under vma checking their
            # gradients would be summed over devices; each device's agents are independent here.
            check_vma=False,
        )
    return block(data, box, z0, rho, tol, rel_tol, mu, tau)


def consensus_admm(
    local_objective: Objective,
    agent_data: PyTree,
    rho: float,
    iterations: int,
    *,
    z0: Float[Array, " n"],
    x_update: LocalSolver | str | None = None,
    bounds: tuple[Float[Array, "N n"], Float[Array, "N n"]] | None = None,
    tol: float = 1e-6,
    rel_tol: float = 1e-6,
    adapt_rho: bool = True,
    mu: float = 10.0,
    tau: float = 2.0,
    mesh: Mesh | None = None,
) -> tuple[Float[Array, " n"], ADMMHistory]:
    """Solve ``min_s Σ_i f_i(s)`` (``f_i(s) = local_objective(s, data_i)``, optional boxes) by consensus ADMM.

    Args:
        local_objective: ``(x: (n,), data_i) -> scalar``, convex in ``x``; pure JAX.
        agent_data: pytree whose leaves all have a leading agent axis of size N
            (``data_i`` is the i-th slice).  May be sharded over ``mesh``.
        rho: initial penalty ρ > 0.
        iterations: iteration budget K (the history arrays have length K).
        z0: initial consensus point, shape ``(n,)``; it fixes the dimension n and the dtype.
        x_update: the local solver: a :class:`LocalSolver`, or ``"quadratic"``
            (exact for quadratic costs), ``"newton"`` (default; any twice
            differentiable cost) or ``"lbfgs"`` (no box).
        bounds: optional per-agent box ``(lower, upper)``, each ``(N, n)`` with
            ±inf for absent sides: ``f_i`` becomes ``f_i + indicator(l_i ≤ s ≤ u_i)``.
        tol, rel_tol: absolute (per entry) and relative tolerances of the stopping test.
        adapt_rho: residual balancing of ρ with threshold ``mu`` and factor ``tau``.
        mesh: ``None`` (vmap on one device) or a mesh with an ``"agents"`` axis whose
            size divides N (``shard_map`` + ``pmean``); see :func:`agents_mesh`.

    Returns:
        ``(z, history)``: the consensus point ``z`` of shape ``(n,)`` and an
        :class:`ADMMHistory` (``history.objective`` is ``Σ_i f_i(z^k)``, the smooth
        part; ``history.status`` says whether the residual test passed).

    Raises:
        ValueError: on malformed inputs (naming the argument), a box with a solver
        that cannot take one, or a non-quadratic objective with ``"quadratic"``.
    """
    z0 = _inputs.start_point(z0)
    n_agents = _inputs.agent_count(agent_data)
    rho = _inputs.positive_scalar("rho", rho)
    iterations = _inputs.positive_int("iterations", iterations)
    tol = _inputs.nonnegative_scalar("tol", tol)
    rel_tol = _inputs.nonnegative_scalar("rel_tol", rel_tol)
    mu = _inputs.positive_scalar("mu", mu)
    tau = _inputs.positive_scalar("tau", tau)
    if mu <= 1.0 or tau <= 1.0:
        raise ValueError(f"mu, tau: residual balancing needs mu > 1 and tau > 1, got mu={mu}, tau={tau}")
    solver = resolve_solver(x_update)
    box = _inputs.box_bounds(bounds, n_agents, z0.shape[0], z0.dtype)
    _inputs.check_solver(solver, local_objective, agent_data, z0, box)
    if mesh is not None:
        if AGENTS not in mesh.axis_names:
            raise ValueError(f"mesh: expected a mesh with an {AGENTS!r} axis, got axes {mesh.axis_names}")
        if n_agents % mesh.shape[AGENTS] != 0:
            raise ValueError(
                f"mesh: the number of agents N={n_agents} must be divisible by the {AGENTS!r} axis size "
                f"{mesh.shape[AGENTS]}"
            )
    scalars = [jnp.asarray(v, z0.dtype) for v in (rho, tol, rel_tol, mu, tau)]
    z, x, u, k, status, buffers = _run(
        local_objective,
        solver,
        agent_data,
        box,
        z0,
        *scalars,
        iterations=iterations,
        adapt_rho=adapt_rho,
        n_agents=n_agents,
        mesh=mesh,
    )
    return z, make_history(buffers, k, status, x, u)
