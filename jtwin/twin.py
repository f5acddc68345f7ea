"""The twin T = (M, D, U, S): model, estimator, controller and synchronisation in one pure step.

At sample k the twin receives the measurement ``y`` of the plant state ``x[k − D]`` (``D =
delay`` samples of transport delay; ``D = 0`` for none) and returns the input ``u[k]``::

    belief of x[k−D]  --update(y)-->  posterior of x[k−D]
                      --predict through u[k−D..k−1] (if compensate)-->  x̂[k]
    u[k], controller state = controller.step(controller state, x̂[k], P[k−D], d̂[k..k+N−1])
    posterior of x[k−D] --predict(u[k−D])--> belief of x[k−D+1]   (the next step's prior)

The controller is any :class:`jtwin.control.AbstractController` (``LinearMPC``, ``TubeMPC``,
``ChanceMPC``, ``PolytopicMPC``, ``LQR`` or a user's own): the twin calls only its ``init``,
``step``, ``fallback`` and ``input_bounds`` and never looks behind them.  ``P[k−D]`` is the
filter's covariance of its latest posterior (with a delay it is not propagated to ``k``).

Without compensation the controller acts on the stale estimate x̂[k−D] as if it were x[k]
(the spec's time-offset error Δu ≈ −K ε ẋ); with compensation the estimate is predicted
forward to the actuation time with the model and the inputs applied meanwhile.
A missing measurement (NaN entries of ``y``) skips those rows of the update.

A twin on a nonlinear model (:meth:`Twin.from_model`) estimates with the nonlinear model and
controls with its linearisation at an operating point ``(x̄, ū, d̄)``: the MPC works in
deviation variables ``δx = x − x̄``, ``δu = u − ū``, ``δd = d − d̄`` and predicts with
``δx⁺ = A δx + B δu + E δd + c``, ``c = f(x̄, ū, d̄) − x̄`` (exact at the operating point; zero at
a steady state), the constant ``c`` entering as one more disturbance column fed with 1.  The
step returns ``u = ū + δu`` in the plant's units.

``Twin.init`` and ``Twin.step`` are pure: the state is an explicit pytree of arrays
(:class:`TwinState`), so a step can be jitted, vmapped over scenarios, differentiated and
exported (``jtwin.serve``).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import chi2
from jaxtyping import Array, Bool, Float, Int, PyTree

from ._checks import as_array, check_covariance
from .control import AbstractController, LinearMPC
from .estimation import Belief, SqrtBelief
from .estimation.base import validate_gate
from .models import AbstractModel, LinearModel, linearize
from .qp import RESULTS, is_successful

DEFAULT_GATE = 1e-4
"""The twin's default χ² gate level α: a consistent filter rejects a correct measurement with probability α
(one step in 10⁴, about once in 14 months of an hourly twin)."""
DEFAULT_RESET_AFTER = 3
"""Consecutive rejected measurements after which the belief is re-initialised (α³ = 1e-12 by chance)."""
MAX_WIDEN = 100.0
"""Largest multiple of ``cov0`` a re-initialisation after rejections adds to the covariance."""


class TwinState(eqx.Module):
    """Everything a twin carries from one step to the next (arrays only).

    ``belief``: prior of ``x[k−D]``; ``inputs`` [D, m], ``disturbances`` [D, p]: what was applied
    from ``k−D`` to ``k−1``; ``plan``: the controller's state (for the MPCs, the last plan, in the
    controller's coordinates: its shift warm-starts the next solve and is the fallback); ``applied``
    [m]: the last input returned (plant units; 0 in controller coordinates before the first step);
    ``status``: the controller's last :class:`jtwin.qp.RESULTS`; ``nis``: normalised innovation squared of the last update (``nan`` if nothing was
    measured); ``measured``: number of measured entries of the last ``y``; ``failures``:
    count of MPC solves that ended neither solved nor at max_iter.

    The safety layer (see :meth:`Twin.step`) adds: ``prior``, the initial belief ``N(mean0, cov0)``
    (what a re-initialised belief is widened by, and restarted from when nothing better is
    left); per-step flags (0/1) ``rejected`` (the χ² gate refused the last measurement),
    ``reset`` (the belief was re-initialised) and ``fallback`` (the input came from the shifted
    previous plan, not from this step's solve); their running counts ``rejections``, ``resets``,
    ``fallbacks``; and ``streak``, the number of consecutive rejected measurements.
    """

    belief: Belief | SqrtBelief
    inputs: Float[Array, "D m"]
    disturbances: Float[Array, "D p"]
    plan: PyTree
    applied: Float[Array, " m"]
    status: RESULTS
    nis: Float[Array, ""]
    measured: Int[Array, ""]
    failures: Int[Array, ""]
    k: Int[Array, ""]
    prior: Belief
    rejected: Int[Array, ""]
    reset: Int[Array, ""]
    fallback: Int[Array, ""]
    rejections: Int[Array, ""]
    resets: Int[Array, ""]
    fallbacks: Int[Array, ""]
    streak: Int[Array, ""]


class OperatingPoint(eqx.Module):
    """The point ``(x̄ [n], ū [m], d̄ [p])`` a twin's controller is linearised at: the controller sees
    ``x − x̄`` and ``(d − d̄, 1)`` and returns ``u − ū`` (see the module docstring)."""

    x: Float[Array, " n"]
    u: Float[Array, " m"]
    d: Float[Array, " p"]


class Twin(eqx.Module):
    """A digital twin: ``model`` (M), ``estimator`` (D), ``controller`` (U), ``delay``/``compensate`` (S).

    ``controller`` is any :class:`~jtwin.control.AbstractController`; the constructors build a
    :class:`~jtwin.control.LinearMPC` on the model's own dynamics (:meth:`from_linear_model`,
    ``operating_point = None``) or on its linearisation at ``operating_point`` in deviation
    variables (:meth:`from_model`).

    ``gate``: the twin's χ² innovation gate level α (default :data:`DEFAULT_GATE` = 1e-4; ``None``
    = only the estimator's own gate, if any): a measurement with ``P(χ²_k > NIS) < α`` is not
    assimilated.  ``reset_after``: consecutive rejections after which the belief is
    re-initialised (see :meth:`step`).
    """

    model: AbstractModel
    estimator: eqx.Module
    controller: AbstractController
    delay: int = eqx.field(static=True, default=0)
    compensate: bool = eqx.field(static=True, default=True)
    operating_point: OperatingPoint | None = None
    gate: float | None = eqx.field(static=True, default=DEFAULT_GATE)
    reset_after: int = eqx.field(static=True, default=DEFAULT_RESET_AFTER)

    def __check_init__(self):
        if not (isinstance(self.delay, int) and self.delay >= 0):
            raise ValueError(f"delay: expected a non-negative number of samples, got {self.delay!r}")
        validate_gate(self.gate)
        if not (isinstance(self.reset_after, int) and self.reset_after >= 1):
            raise ValueError(f"reset_after: expected a positive number of steps, got {self.reset_after!r}")
        if not isinstance(self.controller, AbstractController):
            raise ValueError(
                f"controller: expected a jtwin.control.AbstractController (LinearMPC, TubeMPC, ChanceMPC, "
                f"PolytopicMPC, LQR or a subclass), got {type(self.controller).__name__}"
            )
        if (self.controller.n, self.controller.m) != (self.model.state_dim, self.model.input_dim):
            raise ValueError(
                f"controller: acts on (n, m) = {(self.controller.n, self.controller.m)}, "
                f"the model has {(self.model.state_dim, self.model.input_dim)}"
            )
        p = self.model.disturbance_dim + (self.operating_point is not None)
        if self.controller.disturbance_dim not in (0, p):
            raise ValueError(
                f"controller: expected a forecast of {p} disturbance columns (the model's disturbances"
                f"{', then the linearisation constant' if self.operating_point is not None else ''}) or none, "
                f"got {self.controller.disturbance_dim}"
            )

    @classmethod
    def from_linear_model(
        cls,
        model: LinearModel,
        estimator,
        horizon: int,
        *,
        delay: int = 0,
        compensate: bool = True,
        gate: float | None = DEFAULT_GATE,
        reset_after: int = DEFAULT_RESET_AFTER,
        **mpc_kwargs,
    ) -> "Twin":
        """A twin whose MPC predicts with ``model.A, B, E`` (``mpc_kwargs`` go to :class:`LinearMPC`)."""
        mpc = LinearMPC(model.A, model.B, horizon, E=model.E if model.disturbance_dim else None, **mpc_kwargs)
        return cls(model, estimator, mpc, delay, compensate, None, gate, reset_after)

    @classmethod
    def from_model(
        cls,
        model: AbstractModel,
        estimator,
        horizon: int,
        x_op: Float[Array, " n"],
        u_op: Float[Array, " m"],
        *,
        d_op: Float[Array, " p"] | None = None,
        t_op=0.0,
        delay: int = 0,
        compensate: bool = True,
        gate: float | None = DEFAULT_GATE,
        reset_after: int = DEFAULT_RESET_AFTER,
        **mpc_kwargs,
    ) -> "Twin":
        """A twin that estimates with ``model`` and controls with its linearisation at ``(x_op, u_op, d_op)``.

        ``A, B, E`` = :func:`jtwin.models.linearize` at time ``t_op``; the MPC's disturbance
        matrix is ``[E, c]`` with ``c = f(x_op, u_op, t_op, d_op) − x_op``.  ``mpc_kwargs`` go to
        :class:`LinearMPC` in the plant's units: ``xref``, ``xmin``, ``xmax`` (absolute states)
        and ``umin``, ``umax`` (absolute inputs) are shifted to deviation variables here; the
        costs ``R``, ``alpha``, ``beta`` act on ``u − u_op``.  Best at a steady state
        (:func:`jtwin.models.steady_state`): there ``c = 0`` and the operating point is an
        exact equilibrium of the closed loop.
        """
        if "E" in mpc_kwargs:
            raise ValueError("E: from_model takes the disturbance matrix from the linearisation; do not pass E")
        n, m, p = model.state_dim, model.input_dim, model.disturbance_dim
        x_op = as_array("x_op", x_op, (n,))
        dtype = jnp.result_type(x_op, float)
        x_op = x_op.astype(dtype)
        u_op = as_array("u_op", u_op, (m,)).astype(dtype)
        d_op = jnp.zeros(p, dtype) if d_op is None else as_array("d_op", d_op, (p,)).astype(dtype)
        lin = linearize(model, x_op, u_op, t_op, d_op)
        offset = model.transition(x_op, u_op, t_op, d_op if p else None) - x_op
        shifts = {"xref": x_op, "xmin": x_op, "xmax": x_op, "umin": u_op, "umax": u_op}
        for name, origin in shifts.items():
            if mpc_kwargs.get(name) is not None:
                mpc_kwargs[name] = np.asarray(mpc_kwargs[name], float) - np.asarray(origin)
        mpc = LinearMPC(lin.A, lin.B, horizon, E=jnp.concatenate([lin.E, offset[:, None]], axis=1), **mpc_kwargs)
        return cls(model, estimator, mpc, delay, compensate, OperatingPoint(x_op, u_op, d_op), gate, reset_after)

    @property
    def horizon(self) -> int:
        return self.controller.horizon

    def with_controller_dtype(self, dtype) -> "Twin":
        """This twin with its controller's floating-point arrays cast to ``dtype`` (mixed precision).

        ``jnp.float32``: the MPC's QP (the bulk of a twin step) runs in single precision while
        the model, the estimator and the returned inputs keep theirs — about twice the
        throughput of the batched ADMM on a CPU, more on a GPU.  Single precision resolves
        relative tolerances down to about ``1e-4``; keep the controller's ``eps_abs, eps_rel``
        at or above that (its solves report ``max_iter`` otherwise).
        """
        if not jnp.issubdtype(dtype, jnp.floating):
            raise ValueError(f"dtype: expected a floating-point dtype such as jnp.float32, got {dtype!r}")
        cast = lambda a: a.astype(dtype) if eqx.is_inexact_array(a) else a  # noqa: E731
        return eqx.tree_at(lambda t: t.controller, self, jax.tree_util.tree_map(cast, self.controller))

    def controller_coordinates(
        self, x: Float[Array, " n"], d: Float[Array, "N p"]
    ) -> tuple[Float[Array, " n"], Float[Array, "N pc"]]:
        """The controller's view of a state ``x`` [n] and forecast ``d`` [N, p]: ``(x − x̄, [d − d̄, 1])``
        [n], [N, p + 1] with an operating point; ``(x, d)`` without."""
        op = self.operating_point
        if op is None:
            return x, d
        ones = jnp.ones((d.shape[0], 1), d.dtype)
        return x - op.x.astype(x.dtype), jnp.concatenate([d - op.d.astype(d.dtype), ones], axis=1)

    def plant_input(self, u: Float[Array, " m"]) -> Float[Array, " m"]:
        """The plant's input for a controller input ``u`` [m]: ``ū + u`` with an operating point, else ``u``."""
        return u if self.operating_point is None else u + self.operating_point.u.astype(u.dtype)

    def init(self, mean0: Float[Array, " n"], cov0: Float[Array, "n n"]) -> TwinState:
        """Initial state: prior ``N(mean0, cov0)`` of the first measured state, nothing applied yet."""
        n, m, p = self.model.state_dim, self.model.input_dim, self.model.disturbance_dim
        mean0 = as_array("mean0", mean0, (n,))
        cov0 = check_covariance("cov0", cov0, n)
        dtype = mean0.dtype
        x_ctrl, d_ctrl = self.controller_coordinates(mean0, jnp.zeros((self.horizon, p), dtype))
        plan = self.controller.init(x_ctrl, cov0, self._forecast(d_ctrl))
        zero = jnp.asarray(0, jnp.int32)
        return TwinState(
            belief=self.estimator.init(mean0, cov0),
            inputs=jnp.zeros((self.delay, m), dtype),
            disturbances=jnp.zeros((self.delay, p), dtype),
            plan=plan,
            applied=self.plant_input(jnp.zeros(m, dtype)),
            status=RESULTS.successful,
            nis=jnp.asarray(jnp.nan, dtype),
            measured=zero,
            failures=zero,
            k=zero,
            prior=Belief(mean0, cov0),
            **dict.fromkeys(("rejected", "reset", "fallback", "rejections", "resets", "fallbacks", "streak"), zero),
        )

    def step(
        self, state: TwinState, y: Float[Array, " ny"], t, d: Float[Array, "N p"] | None = None
    ) -> tuple[Float[Array, " m"], TwinState]:
        """Assimilate ``y`` (a measurement of ``x[k−D]``, NaN or ±inf = missing) and return ``(u[k], next state)``.

        ``t`` is the time of the measured state; ``d`` the disturbance forecast
        ``d̂[k..k+N−1]`` [N, p] (zeros if None); ``d[0]`` is also used as the disturbance
        acting on the current step when propagating the belief.

        Safety layer (flags and counters in the returned :class:`TwinState`; nothing raises):

        * **Gate.** The measurement is rejected (the update skipped, ``rejected = 1``) when the
          estimator's gate refused it or when ``P(χ²_k > NIS) < gate`` (``k`` measured entries).
        * **Belief health.** A belief is healthy when its mean and covariance are finite and the
          covariance ``P`` is symmetric PSD, both to ``τ = √ε (1 + max|P|)``
          (``|P − Pᵀ| ≤ τ``, ``chol(P + τ I)`` exists).  An unhealthy incoming belief is replaced
          by the initial prior ``N(mean0, cov0)``; an unhealthy posterior by ``N(m⁻, P⁻ + cov0)``
          (this step's healthy prior, widened); ``reset_after`` consecutive rejections by
          ``N(m⁻, P⁻ + s cov0)`` with ``s = clip(NIS / k, 1, MAX_WIDEN)``: wide enough that a plant
          that really moved is accepted at the next step, while a reading more than about
          ``√(MAX_WIDEN · χ²_α)`` standard deviations of ``cov0`` off is still refused (``χ²_α`` the
          gate's quantile, about 21 for three entries at 1e-4); an unhealthy propagated belief by
          the posterior widened by ``cov0``.  Each sets ``reset = 1``.
        * **Limits.** The input is the first of this step's plan when the solve succeeded
          (:func:`solve_succeeded`) and the plan is finite, else of the *fallback*: the previous
          plan shifted one step (``fallback = 1``).  Either way it is projected onto the
          controller's box ``[umin, umax]`` (non-finite entries to the projection of 0), so the
          returned ``u`` is finite and inside the box whatever ``y`` was.
        """
        model, D = self.model, self.delay
        dtype = state.belief.mean.dtype
        p = model.disturbance_dim
        d = jnp.zeros((self.horizon, p), dtype) if d is None else jnp.asarray(d, dtype)
        bad_in = ~belief_is_healthy(state.belief)
        belief = _select(bad_in, self.estimator.init(state.prior.mean, state.prior.cov), state.belief)
        u_meas = state.inputs[0] if D else state.applied  # the input applied when y was taken
        post, info = self.estimator.update(model, belief, y, u_meas, t)
        observed = info.num_observed > 0
        rejected = self._rejected(info)
        streak = jnp.where(rejected, state.streak + 1, jnp.where(observed, 0, state.streak))
        post = _select(rejected, belief, post)
        stuck = streak >= self.reset_after
        lost = ~belief_is_healthy(post) | stuck
        per_entry = jax.lax.stop_gradient(info.nis) / jnp.maximum(info.num_observed, 1)
        widen = jnp.where(stuck, jnp.clip(jnp.nan_to_num(per_entry, nan=MAX_WIDEN), 1.0, MAX_WIDEN), 1.0)
        post = _select(lost, self._widened(belief, state.prior, widen), post)
        streak = jnp.where(lost, 0, streak)
        x_now = post.mean
        if self.compensate and D:
            dt = model.dt

            def forward(x, inp):
                i, (u, dist) = inp
                return model.transition(x, u, t + i * dt, dist if p else None), None

            x_now, _ = jax.lax.scan(forward, x_now, (jnp.arange(D), (state.inputs, state.disturbances)))
        x_ctrl, d_ctrl = self.controller_coordinates(x_now, d)
        d_ctrl = self._forecast(d_ctrl)
        cov = post.cov.astype(x_ctrl.dtype)
        previous = _finite_or_zero(state.plan)
        u_fb, plan_fb = self.controller.fallback(previous, x_ctrl, cov, d_ctrl)
        u_c, plan, control = self.controller.step(previous, x_ctrl, cov, d_ctrl)
        solved = solve_succeeded(control.status)
        ok = solved & _all_finite((u_c, plan))
        plan = _select(ok, plan, _finite_or_zero(plan_fb))
        u = self.plant_input(self.project_input(jnp.where(ok, u_c, u_fb)).astype(dtype))  # ū added in the twin's precision
        u_est, d_est = (u, d[0]) if D == 0 else (u_meas, state.disturbances[0])
        prior = self.estimator.predict(model, post, u_est, t, d_est if p else None)
        bad_out = ~belief_is_healthy(prior)
        prior = _select(bad_out, self._widened(post, state.prior, 1.0), prior)
        if D:
            inputs = jnp.concatenate([state.inputs[1:], u[None]])
            disturbances = jnp.concatenate([state.disturbances[1:], d[:1]])
        else:
            inputs, disturbances = state.inputs, state.disturbances
        flag = lambda b: b.astype(state.k.dtype)  # noqa: E731
        reset = bad_in | lost | bad_out
        new_state = TwinState(
            belief=prior,
            inputs=inputs,
            disturbances=disturbances,
            plan=plan,
            applied=u,
            status=control.status,
            nis=jnp.where(observed, info.nis, jnp.nan),
            measured=info.num_observed.astype(jnp.int32),
            failures=state.failures + flag(~solved),
            k=state.k + 1,
            prior=state.prior,
            rejected=flag(rejected),
            reset=flag(reset),
            fallback=flag(~ok),
            rejections=state.rejections + flag(rejected),
            resets=state.resets + flag(reset),
            fallbacks=state.fallbacks + flag(~ok),
            streak=streak,
        )
        return u, new_state

    def project_input(self, u: Float[Array, "... m"]) -> Float[Array, "... m"]:
        """``u`` (controller coordinates) projected onto the controller's box ``input_bounds()``;
        non-finite entries become the projection of 0."""
        lo, hi = (jnp.asarray(b, u.dtype) for b in self.controller.input_bounds())
        return jnp.clip(jnp.where(jnp.isfinite(u), u, 0.0), lo, hi)

    def _forecast(self, d: Float[Array, "N pc"]) -> Float[Array, "N q"]:
        """The forecast the controller takes: ``d`` or, for a controller without disturbances, ``d[:, :0]``."""
        return d if self.controller.disturbance_dim else d[:, :0]

    def _rejected(self, info) -> Bool[Array, ""]:
        """True when something was measured and the estimator's gate or the twin's χ² test at ``gate`` refused it
        (a NaN NIS fails the test)."""
        observed = info.num_observed > 0
        if self.gate is None:
            return observed & info.rejected
        nis = jax.lax.stop_gradient(info.nis)
        p_value = chi2.sf(nis, jnp.maximum(info.num_observed, 1).astype(nis.dtype))
        return observed & (info.rejected | ~(p_value >= self.gate))

    def _widened(self, belief, prior: Belief, scale):
        """``N(m, sym(P) + scale · cov0)`` in the estimator's belief form: a healthy belief made less certain."""
        cov = belief.cov
        return self.estimator.init(belief.mean, 0.5 * (cov + cov.T) + scale * prior.cov.astype(cov.dtype))


def solve_succeeded(status: RESULTS) -> Bool[Array, "*batch"]:
    """Whether a solver status gives a usable plan: the library's one rule, :func:`jtwin.qp.is_successful`
    (a plan stopped at the iteration limit is not used; the twin falls back instead)."""
    return is_successful(status)


def belief_is_healthy(belief: Belief | SqrtBelief) -> Bool[Array, ""]:
    """Finite mean and covariance ``P`` [n, n], ``P`` symmetric PSD to ``τ = √ε (1 + max|P|)``:
    ``max|P − Pᵀ| ≤ τ`` and ``chol(sym(P) + τ I)`` finite (no gradient flows through the test)."""
    mean, cov = jax.lax.stop_gradient((belief.mean, belief.cov))
    finite = jnp.all(jnp.isfinite(mean)) & jnp.all(jnp.isfinite(cov))
    cov = jnp.where(finite, cov, 0.0)
    tol = jnp.sqrt(jnp.finfo(cov.dtype).eps) * (1.0 + jnp.max(jnp.abs(cov), initial=0.0))
    symmetric = jnp.max(jnp.abs(cov - cov.T), initial=0.0) <= tol
    chol = jnp.linalg.cholesky(0.5 * (cov + cov.T) + tol * jnp.eye(cov.shape[0], dtype=cov.dtype))
    return finite & symmetric & jnp.all(jnp.isfinite(chol))


def _select(pred: Bool[Array, ""], on_true, on_false):
    """``on_true`` where ``pred`` else ``on_false``, leaf by leaf (two pytrees of one structure)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _all_finite(tree) -> Bool[Array, ""]:
    """True when every floating-point leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _finite_or_zero(tree):
    """``tree`` with non-finite floating-point entries set to 0 (a warm start or fallback plan that cannot poison)."""
    fix = lambda x: jnp.where(jnp.isfinite(x), x, 0.0) if jnp.issubdtype(x.dtype, jnp.inexact) else x  # noqa: E731
    return jax.tree_util.tree_map(fix, tree)
