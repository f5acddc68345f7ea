"""``fit``: train model parameters on a plant log with optax, then quantify their uncertainty.

One *epoch* is one pass over the training segments: a single optimiser step when the batch
holds every segment (default; then L-BFGS with a zoom line search), ``⌈S / batch_size⌉``
steps on random mini-batches otherwise (default Adam).  After each epoch the full training
and validation losses are recorded; training stops when

* ``converged``: full-batch and ``‖∇ loss‖∞ ≤ gtol``;
* ``early_stopped``: the monitored loss (validation if there is validation data, else
  training) has not improved by a relative ``tol`` for ``patience`` epochs;
* ``max_epochs``: the budget ran out;
* ``non_finite``: the loss became NaN/inf;

and the parameters with the best monitored loss are returned, with the Laplace
approximation (:mod:`jtwin.learn.laplace`) of their uncertainty.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, PyTree
from tqdm.auto import tqdm

from ..estimation import AbstractFilter
from ..logs import PlantLog
from ..models import AbstractModel
from . import report
from .laplace import HessianMode, Laplace, laplace
from .params import Selection
from .problem import Method, Problem, make_problem

STATUSES = ("converged", "early_stopped", "max_epochs", "non_finite")
# module-level optimisers: compiled steps are cached per optimiser object, so reuse them
LBFGS = optax.lbfgs()
ADAM = optax.adam(1e-2)


@dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit`.

    * ``params``: the fitted parameter pytree (same structure as the input); ``model``: ``to_model(params)``;
    * ``status``: one of ``converged | early_stopped | max_epochs | non_finite``; ``epochs`` run;
    * ``train_loss`` [epochs + 1], ``validation_loss`` [epochs + 1] (NaN without validation data):
      per-measurement objective after each epoch (index 0: initial parameters);
    * ``laplace``: :class:`~jtwin.learn.laplace.Laplace` of the trained parameters at the result;
    * ``method``, ``confidence`` (level of the reported intervals).
    """

    params: PyTree
    model: AbstractModel
    status: str
    epochs: int
    train_loss: np.ndarray
    validation_loss: np.ndarray
    laplace: Laplace
    method: str
    confidence: float

    def table(self) -> str:
        """The parameter table: estimate, standard error and confidence interval, raw and physical."""
        return report.parameter_table(self.laplace, self.confidence)

    def summary(self) -> str:
        """Status line, final losses and the parameter table."""
        val = self.validation_loss[-1]
        return (
            f"fit ({self.method}): {self.status} after {self.epochs} epochs; loss per measurement "
            f"{self.train_loss[0]:.6g} -> {self.train_loss[-1]:.6g}"
            + ("" if np.isnan(val) else f", validation {val:.6g}")
            + "\n"
            + self.table()
        )

    def save(self, directory: str | Path) -> dict[str, Path]:
        """Write ``params.eqx`` (equinox serialisation), ``report.txt``, ``report.json`` and ``loss.png``."""
        return report.save(self, Path(directory))


@eqx.filter_jit
def _step(problem: Problem, optimizer, theta, opt_state, batch):
    loss_fn = lambda th: problem.loss(th, batch)  # noqa: E731
    value, grad = jax.value_and_grad(loss_fn)(theta)
    updates, opt_state = optimizer.update(grad, opt_state, theta, value=value, grad=grad, value_fn=loss_fn)
    gnorm = optax.tree.norm(grad, ord=jnp.inf)
    return optax.apply_updates(theta, updates), opt_state, value, gnorm


@eqx.filter_jit
def _losses(problem: Problem, theta):
    return problem.loss(theta), problem.validation_loss(theta)


def fit(
    params: PyTree,
    log: PlantLog,
    *,
    mean0: Float[Array, " n"],
    cov0: Float[Array, "n n"] | None = None,
    to_model: Callable[[PyTree], AbstractModel] | None = None,
    method: Method = "mle",
    trainable: Selection = None,
    estimator: AbstractFilter | None = None,
    horizon: int = 10,
    segment_length: int | None = None,
    batch_size: int | None = None,
    validation: float = 0.0,
    optimizer: optax.GradientTransformation | None = None,
    max_epochs: int = 200,
    patience: int = 10,
    tol: float = 1e-10,
    gtol: float = 1e-7,
    seed: int = 0,
    confidence: float = 0.95,
    hessian: HessianMode = "auto",
    progress: bool = True,
) -> FitResult:
    """Fit the ``trainable`` leaves of ``params`` to ``log`` by ``method``; return a :class:`FitResult`.

    ``method="mle"`` minimises the filter's negative log-likelihood, ``"prediction"`` the
    ``horizon``-step prediction error (see :mod:`jtwin.learn.objectives`), both per measured
    entry.  Problem arguments (``mean0``, ``cov0``, ``to_model``, ``trainable``, ``estimator``,
    ``segment_length``, ``validation``) as in :func:`~jtwin.learn.problem.make_problem`.
    ``batch_size``: segments per step (``None``: all); ``optimizer``: any optax transformation
    (default L-BFGS full-batch, Adam(1e-2) on mini-batches); stopping rules in the module
    docstring; ``confidence``/``hessian``: the Laplace intervals.
    """
    if int(max_epochs) != max_epochs or max_epochs < 1:
        raise ValueError(f"max_epochs: expected a positive integer, got {max_epochs}")
    if int(patience) != patience or patience < 1:
        raise ValueError(f"patience: expected a positive integer, got {patience}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence: expected a level in (0, 1), got {confidence}")
    problem, theta = make_problem(
        params, log, mean0=mean0, cov0=cov0, to_model=to_model, method=method, trainable=trainable,
        estimator=estimator, horizon=horizon, segment_length=segment_length, validation=validation,
    )
    S = problem.train.count
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError(f"batch_size: expected None or a positive integer, got {batch_size}")
    full = batch_size is None or batch_size >= S
    optimizer = (LBFGS if full else ADAM) if optimizer is None else optimizer
    # strong types, so the state returned by a step has the same types and the step compiles once
    opt_state = jax.tree.map(lambda a: jnp.asarray(a, dtype=a.dtype), optimizer.init(theta))
    rng = np.random.default_rng(seed)
    steps_per_epoch = 1 if full else math.ceil(S / batch_size)
    monitor_validation = problem.validation is not None

    train0, val0 = (float(v) for v in _losses(problem, theta))
    train_hist, val_hist = [train0], [val0]
    best_theta, best, since_best = theta, (val0 if monitor_validation else train0), 0
    status = "max_epochs"
    bar = tqdm(range(1, max_epochs + 1), desc=f"fit ({method})", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        order = rng.permutation(S)
        previous = theta
        for i in range(steps_per_epoch):
            batch = None if full else jnp.asarray(np.resize(order, steps_per_epoch * batch_size)[i * batch_size : (i + 1) * batch_size])
            theta, opt_state, value, gnorm = _step(problem, optimizer, theta, opt_state, batch)
        if full and float(gnorm) <= gtol and np.isfinite(float(value)):
            status, theta, epoch = "converged", previous, epoch - 1  # the step's input was already optimal
            break
        train, val = (float(v) for v in _losses(problem, theta))
        train_hist.append(train)
        val_hist.append(val)
        monitored = val if monitor_validation else train
        bar.set_postfix(loss=f"{train:.5g}", **({"val": f"{val:.5g}"} if monitor_validation else {}))
        if not np.isfinite(monitored):
            status = "non_finite"
            break
        if monitored < best - tol * abs(best):
            best_theta, best, since_best = theta, monitored, 0
        else:
            since_best += 1
            if since_best >= patience:
                status = "early_stopped"
                break
    else:
        epoch = max_epochs
    bar.close()
    if not (status == "converged" and not monitor_validation):
        theta = best_theta  # early stopping keeps the best monitored parameters
    fitted = problem.params(theta)
    return FitResult(
        params=fitted,
        model=problem.to_model(fitted),
        status=status,
        epochs=epoch,
        train_loss=np.asarray(train_hist),
        validation_loss=np.asarray(val_hist),
        laplace=laplace(problem, theta, hessian),
        method=method,
        confidence=float(confidence),
    )
