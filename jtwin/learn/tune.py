"""``tune``: improve a twin's MPC weights or model parameters by gradient through the closed loop.

The closed-loop KPI over a batch of S scenarios is a pure function of the twin's arrays::

    J(θ) = objective(rollout(plant, twin(θ), scenarios))        e.g. (1/S) Σ_s KPI_s

where :func:`jtwin.simulate.rollout` runs plant → measurement → twin step (filter update,
MPC solve) → plant for every sample (``lax.scan`` in time, ``vmap`` over scenarios).
``jax.value_and_grad`` differentiates it end to end: through the plant and the filter by
ordinary autodiff and through each MPC solve by the QP's implicit KKT derivative (or by
unrolling the ADMM iterations, ``LinearMPC(differentiation="unrolled")``).  A solve that ended
other than ``solved`` contributes no gradient (``jtwin.qp.implicit``); the fraction of such
solves is recorded.  With ``chunk`` the time axis runs in chunks under ``jax.checkpoint``, so
reverse mode stores ``O(samples / chunk + chunk)`` steps of residuals instead of ``O(samples)``.

Parametrisation (θ is unconstrained, so any optax step keeps the twin valid):

* ``controller.Q``, ``controller.R``, ``controller.QN`` (diagonal weights): θ = ``log`` of the
  positive diagonal entries; zero entries (untracked states) stay zero;
* ``controller.alpha``, ``controller.beta``, ``controller.soft_penalty`` (positive scalars): θ = ``log``;
* any other floating-point leaf of the twin (``controller.A``, ``controller.B``, ``model.A``,
  ``model.Q_factor``, ``controller.xref``...): θ = the value itself.

Adam moves every coordinate of θ by about its learning rate per step: right for log weights
(relative changes), too much for small raw leaves such as an input matrix; give those a smaller
step (a separate optimiser, or ``optax.multi_transform`` per leaf).  The controller's prediction
model (``controller.A, B, E``) and the estimator's model (``model.A, B, ...``) are separate
leaves; a name such as ``"B"`` selects both.  A controller built with ``QN=None`` keeps its
terminal cost the LQR cost-to-go of the tuned ``A, B, Q, R``
(:meth:`~jtwin.control.LinearMPC.refresh_terminal_cost`) unless ``controller.QN`` is itself tuned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm

from .. import _checks
from ..models import AbstractModel
from ..qp import is_successful
from ..simulate import Rollout, Scenario, _check_run, rollout
from ..twin import Twin
from .params import Selection, leaf_path, trainable_spec

LOG_DIAGONAL = ("controller.Q", "controller.R", "controller.QN")
LOG_SCALAR = ("controller.alpha", "controller.beta", "controller.soft_penalty")
STATUSES = ("completed", "non_finite")
# module-level default: compiled steps are cached per optimiser object
ADAM = optax.adam(5e-2)


def _kind(name: str) -> str:
    return "log_diagonal" if name in LOG_DIAGONAL else "log" if name in LOG_SCALAR else "identity"


def _unconstrain(name: str, value: Array) -> Array:
    """θ of one selected leaf (validated: see the module docstring)."""
    kind = _kind(name)
    if kind == "log_diagonal":
        w = np.asarray(value)
        diag = np.diag(w)
        if np.any(w - np.diag(diag) != 0) or np.any(diag < 0) or not np.any(diag > 0):
            raise ValueError(
                f"params: {name} must be diagonal with non-negative entries and one positive at least "
                "(its positive diagonal is tuned in log coordinates)"
            )
        return jnp.log(jnp.where(jnp.diag(value) > 0, jnp.diag(value), 1.0))
    if kind == "log":
        if not float(value) > 0:
            raise ValueError(
                f"params: {name} = {float(value)} cannot be tuned; it must be positive (tuned as its log; "
                "a zero cost term is not part of the MPC problem, fixed at construction)"
            )
        return jnp.log(value)
    return value


def _constrain(name: str, theta: Array, base: Array) -> Array:
    """The twin's leaf from θ (``base``: the leaf's initial value, for the fixed zero pattern)."""
    kind = _kind(name)
    if kind == "log_diagonal":
        return jnp.diag(jnp.where(jnp.diag(base) > 0, jnp.exp(theta), 0.0))
    if kind == "log":
        return jnp.exp(theta)
    return theta


class TwinParameters(eqx.Module):
    """The tuned leaves of a twin in unconstrained coordinates θ (module docstring).

    ``trained``: the selected leaves at their initial values (``None`` elsewhere), ``frozen``:
    the rest; θ is a pytree with the structure of ``trained``.
    """

    trained: Twin
    frozen: Twin

    @classmethod
    def select(cls, twin: Twin, params: Selection) -> "TwinParameters":
        """Partition ``twin`` by ``params`` (names, a callable or a filter spec, as
        :func:`~jtwin.learn.params.trainable_spec`).  Raises ``ValueError`` naming ``params``."""
        try:
            spec = trainable_spec(twin, params)
        except ValueError as exc:
            raise ValueError(f"params: {str(exc).removeprefix('trainable: ')}") from None
        trained, frozen = eqx.partition(twin, spec)
        out = cls(trained, frozen)
        out.initial()  # validates the constrained leaves
        return out

    def initial(self) -> PyTree:
        """θ at the twin's current values."""
        return jax.tree_util.tree_map_with_path(lambda p, v: _unconstrain(leaf_path(p), v), self.trained)

    def _leaves(self, theta: PyTree) -> Twin:
        return jax.tree_util.tree_map_with_path(lambda p, t, b: _constrain(leaf_path(p), t, b), theta, self.trained)

    def twin(self, theta: PyTree) -> Twin:
        """The twin with its tuned leaves set from θ (pure; differentiable in θ); an LQR terminal
        cost follows the tuned weights and prediction model unless ``QN`` is tuned itself."""
        twin = eqx.combine(self._leaves(theta), self.frozen)
        if self.trained.controller.QN is not None:  # QN selected: tuned as given
            return twin
        return eqx.tree_at(lambda t: t.controller, twin, twin.controller.refresh_terminal_cost())

    def values(self, theta: PyTree) -> dict[str, np.ndarray]:
        """Tuned values by leaf name (weights: their diagonals), as numpy arrays."""
        out = {}
        for path, value in jax.tree_util.tree_flatten_with_path(self._leaves(theta))[0]:
            name = leaf_path(path)
            out[name] = np.diag(value) if _kind(name) == "log_diagonal" else np.asarray(value)
        return out


class TrackingCost(eqx.Module):
    """A smooth closed-loop KPI: mean over scenarios and samples of::

        Σ_i q_i (x_{k,i} − r_i)²  +  Σ_j w_j u_{k,j}²  +  λ Σ_j |u_{k,j}|

    ``xref`` [n] (or broadcastable to the rollout's [S, T, n]), ``q`` [n], ``r`` [m] (scalars
    broadcast), ``l1`` = λ (non-smooth at u = 0; piecewise smooth in θ).
    """

    xref: Float[Array, "*T n"]
    q: Float[Array, " n"]
    r: Float[Array, " m"]
    l1: Float[Array, ""]

    def __init__(self, xref, q=1.0, r=0.0, l1=0.0):
        self.xref = jnp.asarray(xref)
        dtype = self.xref.dtype
        self.q, self.r, self.l1 = (jnp.asarray(v, dtype) for v in (q, r, l1))
        for name, v in (("q", self.q), ("r", self.r), ("l1", self.l1)):
            if _checks.is_concrete(v) and not bool(jnp.all(v >= 0)):
                raise ValueError(f"{name}: expected non-negative weights, got {v}")

    def __call__(self, out: Rollout) -> Float[Array, ""]:
        e = out.x - self.xref
        stage = jnp.sum(self.q * e**2, -1) + jnp.sum(self.r * out.u**2, -1) + self.l1 * jnp.sum(jnp.abs(out.u), -1)
        return jnp.mean(stage)


class TuneProblem(eqx.Module):
    """Everything the closed-loop loss needs except θ; ``loss(θ, scenarios)`` is pure (``jit``/``grad``)."""

    parameters: TwinParameters
    plant: AbstractModel
    cov0: Float[Array, "n n"]
    objective: Callable[[Rollout], Float[Array, ""]]
    samples: int = eqx.field(static=True)
    chunk: int | None = eqx.field(static=True)

    def loss(self, theta: PyTree, scenarios: Scenario) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """``(J(θ), fraction of MPC solves not solved)`` over the batch ``scenarios``."""
        out = rollout(self.plant, self.parameters.twin(theta), scenarios, self.samples, self.cov0, chunk=self.chunk)
        value = self.objective(out)
        return value, jnp.mean(~is_successful(out.status), dtype=value.dtype)


@eqx.filter_jit
def _step(problem: TuneProblem, optimizer, theta, opt_state, scenarios):
    loss_fn = lambda th: problem.loss(th, scenarios)[0]  # noqa: E731
    (value, unsolved), grad = jax.value_and_grad(problem.loss, has_aux=True)(theta, scenarios)
    updates, opt_state = optimizer.update(grad, opt_state, theta, value=value, grad=grad, value_fn=loss_fn)
    finite = jnp.isfinite(value) & jnp.isfinite(optax.tree.norm(grad))
    return optax.apply_updates(theta, updates), opt_state, value, unsolved, finite


@eqx.filter_jit
def _loss(problem: TuneProblem, theta, scenarios):
    return problem.loss(theta, scenarios)


@dataclass(frozen=True)
class TuneResult:
    """Outcome of :func:`tune`.

    * ``twin``: the twin at the best monitored loss (validation if given, else training);
      ``theta``: its unconstrained parameters; ``best_step``: the step that produced them;
    * ``initial``/``tuned``: the tuned leaves' values before and after (weights: diagonals);
    * ``train_loss``, ``validation_loss`` (NaN without validation), ``unsolved`` (fraction of
      training MPC solves not solved): [steps + 1], index 0 at the initial twin;
    * ``status``: ``completed`` or ``non_finite`` (loss or gradient became NaN/inf; stopped).
    """

    twin: Twin
    theta: PyTree
    best_step: int
    initial: dict[str, np.ndarray]
    tuned: dict[str, np.ndarray]
    train_loss: np.ndarray
    validation_loss: np.ndarray
    unsolved: np.ndarray
    status: str

    def summary(self) -> str:
        """Loss before → after (training, validation) and the tuned values."""
        i = self.best_step
        val = self.validation_loss
        lines = [
            f"tune: {self.status} after {len(self.train_loss) - 1} steps; best at step {i}: training loss "
            f"{self.train_loss[0]:.6g} -> {self.train_loss[i]:.6g}"
            + ("" if np.isnan(val[0]) else f", validation {val[0]:.6g} -> {val[i]:.6g}")
        ]
        for name, before in self.initial.items():
            lines.append(f"  {name}: {np.array2string(before, precision=4)} -> {np.array2string(self.tuned[name], precision=4)}")
        return "\n".join(lines)


def tune(
    twin: Twin,
    plant: AbstractModel,
    scenarios: Scenario,
    objective: Callable[[Rollout], Float[Array, ""]],
    params: Selection = ("controller.Q", "controller.R"),
    *,
    samples: int,
    cov0: Float[Array, "n n"],
    optimizer: optax.GradientTransformation | None = None,
    steps: int = 50,
    validation: Scenario | None = None,
    chunk: int | None = None,
    progress: bool = True,
) -> TuneResult:
    """Tune the ``params`` leaves of ``twin`` to minimise ``objective`` of the closed loop with ``plant``.

    ``scenarios`` (batched :class:`~jtwin.simulate.Scenario`, S of them) are the training batch,
    each run for ``samples`` samples from the twin's prior ``N(mean0, cov0)``; ``objective(rollout)``
    maps the batched :class:`~jtwin.simulate.Rollout` ([S, samples, ...]) to a scalar, e.g. the
    mean of a per-scenario KPI (:class:`TrackingCost`).  ``params``: names (``"controller.Q"``,
    ``"B"``), a callable or a filter spec over the twin (module docstring for the parametrisation).
    ``optimizer``: any optax transformation (default Adam(5e-2) on θ); ``steps`` optimiser steps,
    each one ``value_and_grad`` over the whole batch.  ``validation``: held-out scenarios, evaluated
    after every step; the returned twin is the one with the best validation loss (training loss
    without validation).  ``chunk``: samples per ``jax.checkpoint`` chunk (``None``: none).
    """
    for name, value in (("steps", steps), ("samples", samples)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value}")
    if not callable(objective):
        raise ValueError(f"objective: expected a callable rollout -> scalar, got {type(objective).__name__}")
    for name, batch in (("scenarios", scenarios), ("validation", validation)):
        if batch is not None:
            if not isinstance(batch, Scenario):
                kind = type(batch).__name__
                raise ValueError(f"{name}: expected a batched Scenario (jtwin.simulate.make_scenarios), got {kind}")
            try:
                _check_run(plant, twin, batch, samples, chunk)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
    n = twin.model.state_dim
    parameters = TwinParameters.select(twin, params)
    problem = TuneProblem(parameters, plant, _checks.check_covariance("cov0", cov0, n), objective, int(samples), chunk)
    optimizer = ADAM if optimizer is None else optimizer
    theta = parameters.initial()
    opt_state = jax.tree.map(lambda a: jnp.asarray(a, dtype=a.dtype), optimizer.init(theta))

    train, val, unsolved = [], [], []
    best_theta, best, best_step = theta, np.inf, 0
    status = "completed"

    def record(theta, value, frac):
        nonlocal best_theta, best, best_step
        train.append(float(value))
        unsolved.append(float(frac))
        val.append(float(_loss(problem, theta, validation)[0]) if validation is not None else np.nan)
        monitored = val[-1] if validation is not None else train[-1]
        if monitored < best:
            best_theta, best, best_step = theta, monitored, len(train) - 1

    bar = tqdm(range(steps), desc="tune", unit="step", disable=not progress, leave=False)
    for _ in bar:
        new_theta, opt_state, value, frac, finite = _step(problem, optimizer, theta, opt_state, scenarios)
        record(theta, value, frac)
        if not bool(finite):
            status = "non_finite"
            break
        bar.set_postfix(loss=f"{train[-1]:.5g}", **({"val": f"{val[-1]:.5g}"} if validation is not None else {}))
        theta = new_theta
    else:
        record(theta, *_loss(problem, theta, scenarios))
    bar.close()
    return TuneResult(
        twin=parameters.twin(best_theta),
        theta=best_theta,
        best_step=best_step,
        initial=parameters.values(parameters.initial()),
        tuned=parameters.values(best_theta),
        train_loss=np.asarray(train),
        validation_loss=np.asarray(val),
        unsolved=np.asarray(unsolved),
        status=status,
    )

