"""``jtwin train CONFIG --logs FILE``: fit the configured plant's parameters to a log; and loading them back.

The fitted parameters are saved with equinox serialisation (``params.eqx``).  They are the
leaves of the plant's *parameter pytree* built from the same config (:func:`plant_parameters`):
``BuildingRC`` for the building (its physical parameters; the ``LinearModel`` is derived by
exact discretisation), the model itself for the other plants.  :func:`load_fitted` rebuilds
that pytree from the config, fills it from the file and returns the model.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import PyTree

from ..config import Config, ConfigError, load_config, plant_params_error
from ..logs import load_log
from ..models import AbstractModel
from ..models.library import BuildingRC
from .fit import FitResult, fit
from .options import TrainOptions
from .report import load_params

# parameters that the plant's logs identify (see experiments/learn_identifiability.py)
DEFAULT_TRAINABLE = {
    "building": ("log_c_air", "log_c_wall", "log_r_aw"),
    "cstr": ("log_k0", "log_ua", "log_neg_dh"),
}


def plant_parameters(cfg: Config) -> tuple[PyTree, Callable[[PyTree], AbstractModel] | None]:
    """``(params, to_model)`` of the configured plant: what ``fit`` trains and how it becomes a model."""
    if cfg.plant.kind == "building":
        builder = dict(cfg.plant.params)
        model_kw = {k: builder.pop(k) for k in ("dt", "q_std", "r_std") if k in builder}
        try:
            params = BuildingRC(**builder)
        except (TypeError, ValueError) as exc:
            raise plant_params_error(exc, cfg.plant.params) from exc
        return params, functools.partial(BuildingRC.to_linear, **model_kw)
    return cfg.plant.build(), None


def load_fitted_parameters(cfg: Config, path: str | Path) -> PyTree:
    """The parameter pytree of ``cfg``'s plant (:func:`plant_parameters`) filled from ``jtwin train``'s ``params.eqx``."""
    return load_params(plant_parameters(cfg)[0], path)


def load_fitted(cfg: Config, path: str | Path) -> AbstractModel:
    """The plant model of ``cfg`` with the parameters fitted by ``jtwin train`` (``params.eqx``) loaded."""
    params, to_model = load_fitted_parameters(cfg, path), plant_parameters(cfg)[1]
    return params if to_model is None else to_model(params)


def _estimator(cfg: Config):
    from ..run import build_estimator  # the twin's estimator, as `jtwin run` builds it

    return build_estimator(cfg)


def _prior_covariance(cfg: Config, n: int):
    from ..run import prior_covariance  # the twin's prior, as `jtwin run` builds it

    return prior_covariance(cfg, n)


def train_config(
    config: str | Path,
    logs: str | Path,
    *,
    method: str | None = None,
    out_dir: str | Path | None = None,
    options: TrainOptions | None = None,
    progress: bool = True,
    drop_outliers: bool = False,
) -> tuple[FitResult, dict[str, Path]]:
    """Fit the plant of ``config`` to the log ``logs`` and write the report into ``out_dir``.

    Options come from ``options`` or the config's ``[train]`` table (defaults otherwise);
    ``method`` overrides ``train.method``.  The state prior is ``N(simulation.x0, P0)`` with ``P0`` from ``estimator.cov0`` (:func:`jtwin.run.prior_covariance`)
    and the filter is the config's ``[estimator]``.  ``out_dir`` defaults to ``train_<config stem>``.
    A log without any measurement is refused (``ValueError``); with ``drop_outliers`` the readings
    :meth:`~jtwin.logs.PlantLog.outliers` flags are set missing before the fit.
    Returns the fit and the written files (``params``, ``report``, ``json``, ``loss_plot``).
    """
    cfg = load_config(config)
    opts = options or getattr(cfg, "train", None) or TrainOptions()
    if method is not None:
        opts = TrainOptions(**{**opts.__dict__, "method": method})
    params, to_model = plant_parameters(cfg)
    model = params if to_model is None else to_model(params)
    n = model.state_dim
    x0 = np.zeros(n) if cfg.simulation.x0 is None else np.asarray(cfg.simulation.x0)
    if x0.shape != (n,):
        raise ConfigError(f"simulation.x0: expected {n} values (the {cfg.plant.kind} state), got {x0.shape[0]}")
    log = load_log(logs)
    if not np.any(np.isfinite(log.y)):
        raise ValueError(f"{logs}: no measurements: every y_ entry is empty or NaN, so there is nothing to fit")
    if drop_outliers:
        log = log.without(log.outliers())
    result = fit(
        params,
        log,
        mean0=jnp.asarray(x0),
        cov0=jnp.asarray(_prior_covariance(cfg, n)),
        to_model=to_model,
        method=opts.method,
        trainable=opts.trainable_names or DEFAULT_TRAINABLE.get(cfg.plant.kind),
        estimator=_estimator(cfg),
        horizon=opts.horizon,
        segment_length=opts.segment_length or None,
        batch_size=opts.batch_size or None,
        validation=opts.validation,
        optimizer=None if not opts.batch_size else _adam(opts.learning_rate),
        max_epochs=opts.max_epochs,
        patience=opts.patience,
        seed=opts.seed,
        confidence=opts.confidence,
        progress=progress,
    )
    out = Path(out_dir) if out_dir is not None else Path(f"train_{Path(config).stem}")
    return result, result.save(out)


@functools.cache
def _adam(learning_rate: float) -> optax.GradientTransformation:
    """One Adam object per learning rate, so compiled training steps are reused."""
    return optax.adam(learning_rate)


def identification_problem(result: FitResult) -> str | None:
    """Why the fit cannot be used (``"parameters not identifiable: …"``, a non-finite loss), or None."""
    if result.status == "non_finite":
        return "the loss became non-finite during the fit (see loss.png); check the log for wild readings"
    if not result.laplace.identified:
        return f"parameters not identifiable: {result.laplace.weakest} (the Hessian is not positive definite)"
    return None


def cli_train(
    config: str, logs: str, method: str | None = None, out_dir: str | None = None, drop_outliers: bool = False
) -> tuple[str, str | None]:
    """``(text, problem)`` of ``jtwin train``: the fit summary, the flagged outliers and where the files are, and
    why the fit is unusable (None when it is identified; :func:`identification_problem`)."""
    log = load_log(logs)
    flagged = log.outliers()
    result, paths = train_config(config, logs, method=method, out_dir=out_dir, drop_outliers=drop_outliers)
    files = "\n".join(f"  {name:<9} {path}" for name, path in paths.items())
    text = f"{result.summary()}\nwrote:\n{files}"
    if flagged.any():
        action = "set missing before the fit (--drop-outliers)" if drop_outliers else "kept; --drop-outliers sets them missing"
        text = f"log: {log.describe_outliers(flagged)} ({action})\n{text}"
    problem = identification_problem(result)
    if problem is None:
        text += f"\nuse with: jtwin run {config} --params {paths['params']}"
    elif flagged.any() and not drop_outliers:
        problem += "; the log has outlier readings: retry with --drop-outliers"
    return text, problem
