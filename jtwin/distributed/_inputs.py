"""Edge validation shared by the ADMM drivers (runs outside jit; errors name the argument)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._checks import as_array, is_concrete
from .local_solvers import Box, LocalSolver, Objective, QuadraticSolver


def _readable(leaf) -> bool:
    """Concrete and held by this process (multi-process global arrays are only partly addressable)."""
    return is_concrete(leaf) and getattr(leaf, "is_fully_addressable", True)


def agent_count(agent_data) -> int:
    """Number of agents N: the common leading-axis length of every leaf of ``agent_data``."""
    leaves = jax.tree_util.tree_leaves(agent_data)
    if not leaves:
        raise ValueError("agent_data: expected a pytree of arrays with a leading agent axis, got no arrays")
    sizes = set()
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError("agent_data: every leaf needs a leading agent axis, got a scalar leaf")
        sizes.add(shape[0])
        if _readable(leaf) and not bool(jnp.all(jnp.isfinite(jnp.asarray(leaf)))):
            raise ValueError("agent_data: contains NaN or inf entries; expected finite values")
    if len(sizes) != 1:
        raise ValueError(f"agent_data: leaves disagree on the number of agents (leading axis sizes {sorted(sizes)})")
    return sizes.pop()


def positive_scalar(name: str, value) -> float:
    """A finite, strictly positive Python float."""
    try:
        out = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: expected a positive scalar, got {value!r}") from exc
    if not (np.isfinite(out) and out > 0):
        raise ValueError(f"{name}: expected a finite value > 0, got {value!r}")
    return out


def nonnegative_scalar(name: str, value) -> float:
    """A finite Python float ≥ 0."""
    out = float(value)
    if not (np.isfinite(out) and out >= 0):
        raise ValueError(f"{name}: expected a finite value >= 0, got {value!r}")
    return out


def positive_int(name: str, value) -> int:
    """A Python int ≥ 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    return int(value)


def start_point(z0) -> jax.Array:
    """The initial consensus point, a finite 1-D float array ``(n,)``."""
    return as_array("z0", z0, (None,))


def box_bounds(bounds, n_agents: int, n: int, dtype) -> Box:
    """``None`` or ``(lower, upper)``, each ``(N, n)`` (±inf allowed, no NaN, lower ≤ upper)."""
    if bounds is None:
        return None
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
        raise ValueError("bounds: expected None or a pair (lower, upper) of arrays of shape (N, n)")
    lower, upper = (
        as_array(name, value, (n_agents, n), finite=False).astype(dtype)
        for name, value in zip(("bounds[0] (lower)", "bounds[1] (upper)"), bounds)
    )
    if _readable(lower) and _readable(upper):
        if bool(jnp.any(jnp.isnan(lower)) | jnp.any(jnp.isnan(upper))):
            raise ValueError("bounds: contains NaN entries; use -inf/+inf for absent bounds")
        if bool(jnp.any(lower > upper)):
            raise ValueError("bounds: expected lower <= upper entrywise (an empty box is infeasible)")
    return lower, upper


def _one_agent(leaf):
    """The data slice of one agent this process holds (works for sharded and multi-process arrays)."""
    if isinstance(leaf, jax.Array):
        return leaf.addressable_shards[0].data[0]
    return np.asarray(leaf)[0]


@eqx.filter_jit
def _quadratic_model_gap(objective: Objective, data, z0: jax.Array):
    """``|f(p) − (f(0) + ∇f(0)ᵀp + ½pᵀ∇²f(0)p)|`` at a probe ``p`` (0 for quadratics) and a round-off tolerance."""
    origin = jnp.zeros_like(z0)
    probe = jnp.linspace(-1.0, 1.5, z0.shape[0], dtype=z0.dtype) + z0
    f0 = objective(origin, data)
    hessian = jax.hessian(objective)(origin, data)
    model = f0 + jnp.dot(jax.grad(objective)(origin, data), probe) + 0.5 * probe @ hessian @ probe
    actual = objective(probe, data)
    return jnp.abs(actual - model), 1e3 * jnp.finfo(z0.dtype).eps * (1.0 + jnp.abs(actual) + jnp.abs(f0))


def check_solver(solver: LocalSolver, objective: Objective, agent_data, z0: jax.Array, box: Box) -> None:
    """Reject a box for solvers without box support, and a non-quadratic objective for QuadraticSolver.

    The quadratic check compares, on one agent held by this process, ``f`` at a probe point with
    its second-order expansion at 0 (exact for quadratics).
    """
    if box is not None and not solver.supports_box:
        raise ValueError(f"bounds: {type(solver).__name__} does not support box constraints; use 'newton' or 'quadratic'")
    if not isinstance(solver, QuadraticSolver):
        return
    first = jax.tree_util.tree_map(_one_agent, agent_data)
    gap, tol = _quadratic_model_gap(objective, first, z0)
    if not bool(gap <= tol):
        raise ValueError(
            "x_update: QuadraticSolver needs a quadratic local_objective, but the second-order model at 0 misses "
            f"f(probe) by {float(gap):.3g}; use x_update='newton' or 'lbfgs'"
        )
