"""``report.json`` of a ``jtwin run``: everything needed to trust, compare and reproduce the run.

The document (:func:`run_report`, schema version :data:`SCHEMA`) holds the config (path and
SHA-256 of its bytes), the software versions and devices, the seed, scenario count and steps,
the solver and its settings, the precision, the plant parameters used (configured or fitted),
per-scenario and aggregate KPIs with their plant names, units and explanations, the MPC
solves' outcome counts, and the wall time split into compilation and run.  Every number is
finite or ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
from importlib import metadata
from pathlib import Path

import jax
import numpy as np

from ..kpi import solve_outcomes

SCHEMA = 1


def _finite(value):
    """``value`` with non-finite floats as None, numpy scalars/arrays as Python numbers/lists."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _versions() -> dict:
    packages = {name: metadata.version(name) for name in ("jtwin", "jax", "jaxlib", "numpy", "equinox")}
    return {**packages, "python": platform.python_version(), "devices": [str(d) for d in jax.devices()]}


def _fitted_values(tree) -> dict[str, list | float]:
    """The array leaves of a fitted parameter pytree by name; ``log_x`` / ``logit_x`` leaves also as ``x``."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not hasattr(leaf, "shape"):
            continue
        name = jax.tree_util.keystr(path).lstrip(".")
        value = np.asarray(leaf, float)
        out[name] = value
        if name.startswith("log_"):
            out[name[4:]] = np.exp(value)
        elif name.startswith("logit_"):
            out[name[6:]] = 1 / (1 + np.exp(-value))
    return out


def _controller(cfg) -> dict:
    c = cfg.controller
    return {k: getattr(c, k) for k in c.__dataclass_fields__}


def run_report(result) -> dict:
    """The ``report.json`` document of a :class:`jtwin.run.RunResult` (module docstring)."""
    cfg, t = result.cfg, result.timing
    source = Path(cfg.source)
    summary = result.summary
    kpis = {
        d.name: {
            "key": d.key,
            "unit": d.unit,
            "explanation": d.explanation,
            "aggregate": summary[d.key],
            "per_scenario": np.asarray(result.kpis[d.key], float),
        }
        for d in result.words.kpis
    }
    parameters = {"source": "fitted" if result.params else "config", "plant.params": cfg.plant.params}
    if result.params:
        parameters.update(file=str(result.params), fitted=_fitted_values(result.fitted))
    steps = result.scenarios * result.steps
    document = {
        "schema": SCHEMA,
        "config": {
            "path": str(source),
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest() if source.is_file() else None,
            "plant": cfg.plant.kind,
        },
        "versions": _versions(),
        "seed": cfg.simulation.seed,
        "scenarios": result.scenarios,
        "steps": result.steps,
        "dt": float(result.model.dt),
        "time_unit": result.words.time_unit,
        "estimator": cfg.estimator.kind,
        "controller": _controller(cfg),
        "precision": result.precision,
        "parameters": parameters,
        "kpis": kpis,
        "solver_statistics": {
            "solves": steps,
            "outcomes": solve_outcomes(result.rollout.status),
            "failures": int(np.sum(result.kpis["solver_failures"])),
        },
        "timing": {
            "wall_s": t.wall_s,
            "compile_s": t.compile_s,
            "run_s": t.run_s,
            "scenario_steps_per_s": steps / t.run_s if t.run_s > 0 else None,
        },
    }
    return _finite(document)


def write_report(result, out_dir: str | Path) -> Path:
    """Write :func:`run_report` as ``out_dir/report.json``; returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "report.json"
    path.write_text(json.dumps(run_report(result), indent=2, ensure_ascii=False) + "\n")
    return path
