"""The twin T = (M, D, U, S): model, estimator, controller and synchronisation in one pure step.

At sample k the twin receives the measurement ``y`` of the plant state ``x[k − D]`` (``D =
delay`` samples of transport delay; ``D = 0`` for none) and returns the input ``u[k]``::

    belief of x[k−D]  --update(y)-->  posterior of x[k−D]
                      --predict through u[k−D..k−1] (if compensate)-->  x̂[k]
    u[k] = first input of  controller.solve(x̂[k], d̂[k..k+N−1], warm start = shifted last plan)
    posterior of x[k−D] --predict(u[k−D])--> belief of x[k−D+1]   (the next step's prior)

Without compensation the controller acts on the stale estimate x̂[k−D] as if it were x[k]
(the spec's time-offset error Δu ≈ −K ε ẋ); with compensation the estimate is predicted
forward to the actuation time with the model and the inputs applied meanwhile.
A missing measurement (NaN entries of ``y``) skips those rows of the update.

``Twin.init`` and ``Twin.step`` are pure: the state is an explicit pytree of arrays
(:class:`TwinState`), so a step can be jitted, vmapped over scenarios, differentiated and
exported (``jtwin.serve``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int

from ._checks import as_array, check_covariance
from .control import LinearMPC, MPCSolution
from .estimation import Belief, SqrtBelief
from .models import AbstractModel, LinearModel
from .qp import MAX_ITER, SOLVED


class TwinState(eqx.Module):
    """Everything a twin carries from one step to the next (arrays only).

    ``belief``: prior of ``x[k−D]``; ``inputs`` [D, m], ``disturbances`` [D, p]: what was applied
    from ``k−D`` to ``k−1``; ``plan``: the last MPC solution (its shift warm-starts the next
    solve); ``nis``: normalised innovation squared of the last update (``nan`` if nothing was
    measured); ``measured``: number of measured entries of the last ``y``; ``failures``:
    count of MPC solves that ended neither solved nor at max_iter.
    """

    belief: Belief | SqrtBelief
    inputs: Float[Array, "D m"]
    disturbances: Float[Array, "D p"]
    plan: MPCSolution
    nis: Float[Array, ""]
    measured: Int[Array, ""]
    failures: Int[Array, ""]
    k: Int[Array, ""]


class Twin(eqx.Module):
    """A digital twin: ``model`` (M), ``estimator`` (D), ``controller`` (U), ``delay``/``compensate`` (S).

    ``controller`` is a :class:`~jtwin.control.LinearMPC` on the model's (linear) dynamics;
    :meth:`from_linear_model` builds one from a ``LinearModel`` and MPC weights.
    """

    model: AbstractModel
    estimator: eqx.Module
    controller: LinearMPC
    delay: int = eqx.field(static=True, default=0)
    compensate: bool = eqx.field(static=True, default=True)

    def __check_init__(self):
        if not (isinstance(self.delay, int) and self.delay >= 0):
            raise ValueError(f"delay: expected a non-negative number of samples, got {self.delay!r}")
        if (self.controller.n, self.controller.m) != (self.model.state_dim, self.model.input_dim):
            raise ValueError(
                f"controller: acts on (n, m) = {(self.controller.n, self.controller.m)}, "
                f"the model has {(self.model.state_dim, self.model.input_dim)}"
            )

    @classmethod
    def from_linear_model(
        cls, model: LinearModel, estimator, horizon: int, *, delay: int = 0, compensate: bool = True, **mpc_kwargs
    ) -> "Twin":
        """A twin whose MPC predicts with ``model.A, B, E`` (``mpc_kwargs`` go to :class:`LinearMPC`)."""
        mpc = LinearMPC(model.A, model.B, horizon, E=model.E if model.disturbance_dim else None, **mpc_kwargs)
        return cls(model, estimator, mpc, delay, compensate)

    @property
    def horizon(self) -> int:
        return self.controller.horizon

    def init(self, mean0: Float[Array, " n"], cov0: Float[Array, "n n"]) -> TwinState:
        """Initial state: prior ``N(mean0, cov0)`` of the first measured state, nothing applied yet."""
        n, m, p = self.model.state_dim, self.model.input_dim, self.model.disturbance_dim
        mean0 = as_array("mean0", mean0, (n,))
        cov0 = check_covariance("cov0", cov0, n)
        dtype = mean0.dtype
        d = jnp.zeros((self.horizon, self.controller.E.shape[1]), dtype)
        plan = self.controller.solve(mean0, d)
        return TwinState(
            belief=self.estimator.init(mean0, cov0),
            inputs=jnp.zeros((self.delay, m), dtype),
            disturbances=jnp.zeros((self.delay, p), dtype),
            plan=plan,
            nis=jnp.asarray(jnp.nan, dtype),
            measured=jnp.asarray(0),
            failures=jnp.asarray(0),
            k=jnp.asarray(0),
        )

    def step(
        self, state: TwinState, y: Float[Array, " ny"], t, d: Float[Array, "N p"] | None = None
    ) -> tuple[Float[Array, " m"], TwinState]:
        """Assimilate ``y`` (a measurement of ``x[k−D]``, NaN = missing) and return ``(u[k], next state)``.

        ``t`` is the time of the measured state; ``d`` the disturbance forecast
        ``d̂[k..k+N−1]`` [N, p] (zeros if None); ``d[0]`` is also used as the disturbance
        acting on the current step when propagating the belief.
        """
        model, D = self.model, self.delay
        dtype = state.belief.mean.dtype
        p = model.disturbance_dim
        d = jnp.zeros((self.horizon, p), dtype) if d is None else jnp.asarray(d, dtype)
        u_meas = state.inputs[0] if D else state.plan.u[0]  # the input applied when y was taken
        post, info = self.estimator.update(model, state.belief, y, u_meas, t)
        x_now = post.mean
        if self.compensate and D:
            dt = model.dt

            def forward(x, inp):
                i, (u, dist) = inp
                return model.transition(x, u, t + i * dt, dist if p else None), None

            x_now, _ = jax.lax.scan(forward, x_now, (jnp.arange(D), (state.inputs, state.disturbances)))
        plan = self.controller.solve(x_now, d, warm_start=self.controller.shift(state.plan))
        ok = (plan.status == SOLVED) | (plan.status == MAX_ITER)
        fallback = self.controller.shift(state.plan)
        u = jnp.where(ok, plan.u[0], fallback.u[0])
        plan = jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a, b), plan, fallback)
        u_est, d_est = (u, d[0]) if D == 0 else (u_meas, state.disturbances[0])
        prior = self.estimator.predict(model, post, u_est, t, d_est if p else None)
        if D:
            inputs = jnp.concatenate([state.inputs[1:], u[None]])
            disturbances = jnp.concatenate([state.disturbances[1:], d[:1]])
        else:
            inputs, disturbances = state.inputs, state.disturbances
        new_state = TwinState(
            belief=prior,
            inputs=inputs,
            disturbances=disturbances,
            plan=plan,
            nis=jnp.where(info.num_observed > 0, info.nis, jnp.nan),
            measured=info.num_observed,
            failures=state.failures + (~ok).astype(state.failures.dtype),
            k=state.k + 1,
        )
        return u, new_state
