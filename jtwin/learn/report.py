"""The fit report: parameter table with confidence intervals, loss curves (PNG), and saved parameters.

Fitted parameters are stored with equinox serialisation (``eqx.tree_serialise_leaves``): the
file holds the leaves only, so loading needs a *skeleton* pytree of the same structure — the
parameters built from the same config — and :func:`load_params` fills it in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import equinox as eqx
import numpy as np
from jaxtyping import PyTree

from .laplace import Laplace
from .params import physical

if TYPE_CHECKING:
    from .fit import FitResult


def parameter_rows(laplace: Laplace, confidence: float) -> list[dict]:
    """One dict per trained scalar: raw name/estimate/stderr/interval and the physical (exp/sigmoid) form."""
    interval = laplace.interval(confidence)
    rows = []
    for i, name in enumerate(laplace.names):
        pname, value, lo, hi = physical(name, laplace.estimate[i], interval[i, 0], interval[i, 1])
        rows.append(
            dict(
                name=name,
                estimate=float(laplace.estimate[i]),
                stderr=float(laplace.stderr[i]),
                lower=float(interval[i, 0]),
                upper=float(interval[i, 1]),
                physical_name=pname,
                physical=float(value),
                physical_lower=float(lo),
                physical_upper=float(hi),
            )
        )
    return rows


def parameter_table(laplace: Laplace, confidence: float) -> str:
    """Plain-text table of :func:`parameter_rows`, with a warning when the Hessian is not positive definite."""
    pct = f"{100 * confidence:g}%"
    lines = [f"{'parameter':<28} {'estimate':>12} {'std err':>10} {pct + ' interval':>27}   {'physical':<14} {'value':>11} {pct + ' interval':>25}"]
    for r in parameter_rows(laplace, confidence):
        lines.append(
            f"{r['name']:<28} {r['estimate']:>12.6g} {r['stderr']:>10.3g} [{r['lower']:>11.6g}, {r['upper']:>11.6g}]   "
            f"{r['physical_name']:<14} {r['physical']:>11.5g} [{r['physical_lower']:>10.5g}, {r['physical_upper']:>10.5g}]"
        )
    if not laplace.identified:
        lines.append(f"warning: the Hessian is not positive definite (not identifiable): {laplace.weakest}")
    return "\n".join(lines)


def plot_losses(result: FitResult, path: Path) -> Path:
    """Training (and validation) loss per epoch, log scale if positive, as a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = np.arange(result.train_loss.size)
    ax.plot(epochs, result.train_loss, label="training")
    if np.any(np.isfinite(result.validation_loss)):
        ax.plot(epochs, result.validation_loss, label="validation")
    if np.all(result.train_loss > 0):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative log-likelihood per measurement" if result.method == "mle" else "prediction error per measurement")
    ax.set_title(f"fit ({result.method}): {result.status}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_params(params: PyTree, path: str | Path) -> Path:
    """Serialise the array leaves of ``params`` (``eqx.tree_serialise_leaves``)."""
    path = Path(path)
    eqx.tree_serialise_leaves(path, params)
    return path


def load_params(skeleton: PyTree, path: str | Path) -> PyTree:
    """Fill ``skeleton`` (a pytree of the same structure, e.g. built from the same config) with saved leaves."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fitted parameters not found: {path}")
    try:
        return eqx.tree_deserialise_leaves(path, skeleton)
    except Exception as exc:  # structure/shape mismatch between the file and the skeleton
        raise ValueError(f"{path}: does not match the parameters built from the config ({type(exc).__name__}: {exc})") from exc


def save(result: FitResult, directory: Path) -> dict[str, Path]:
    """Write ``params.eqx``, ``report.txt``, ``report.json`` and ``loss.png`` into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {
        "params": save_params(result.params, directory / "params.eqx"),
        "loss_plot": plot_losses(result, directory / "loss.png"),
    }
    (directory / "report.txt").write_text(result.summary() + "\n")
    paths["report"] = directory / "report.txt"
    lap = result.laplace
    data = dict(
        method=result.method,
        status=result.status,
        epochs=result.epochs,
        confidence=result.confidence,
        identified=lap.identified,
        train_loss=result.train_loss.tolist(),
        validation_loss=[None if np.isnan(v) else v for v in result.validation_loss.tolist()],
        parameters=parameter_rows(lap, result.confidence),
        covariance=np.where(np.isnan(lap.covariance), None, lap.covariance).tolist(),
        hessian_eigenvalues=lap.eigenvalues.tolist(),
    )
    (directory / "report.json").write_text(json.dumps(data, indent=2))
    paths["json"] = directory / "report.json"
    return paths
