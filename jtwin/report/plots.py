"""The plots of a ``jtwin run``: what a practitioner looks at after a batch of closed-loop scenarios.

* :func:`states_figure`: the tracked states (and all states of a small plant) over time — median
  and 5–95 % band across scenarios, a few sample scenarios, the setpoint and the constraint band —
  with the true disturbances underneath;
* :func:`inputs_figure`: each input against its limits, and the total demand ``cᵀu`` against the
  demand threshold ρ with the peak marked (when the config charges demand);
* :func:`kpi_figure`: each KPI's distribution across scenarios (histogram) with its mean, p95
  and CVaR marked.

Each function returns a matplotlib ``Figure`` (Agg backend, nothing shown); :func:`save_figures`
writes them as PNG files.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SAMPLES = 3  # sample scenarios drawn over the band
_BAND = dict(color="tab:blue", alpha=0.25, lw=0)
_MEDIAN = dict(color="tab:blue", lw=2)
_SAMPLE = dict(lw=0.8, alpha=0.8)
_LIMIT = dict(color="tab:red", lw=1.2, ls="--")
_SETPOINT = dict(color="black", lw=1.2, ls=":")


def _time(result) -> np.ndarray:
    return float(result.model.dt) * np.arange(result.steps)


def _spread(ax, t, values, label: str) -> None:
    """Median, 5–95 % band and the first :data:`SAMPLES` scenarios of ``values`` [S, T] on ``ax``."""
    lo, med, hi = np.percentile(values, [5, 50, 95], axis=0)
    ax.fill_between(t, lo, hi, label="5–95 % of scenarios", **_BAND)
    for i in range(min(SAMPLES, values.shape[0])):
        ax.plot(t, values[i], label="sample scenarios" if i == 0 else None, **_SAMPLE)
    ax.plot(t, med, label=f"median ({label})", **_MEDIAN)


def _limits(ax, lo, hi, unit: str) -> None:
    """Horizontal lines at the finite ends of a box ``[lo, hi]``."""
    for value, name in ((lo, "lower"), (hi, "upper")):
        if np.isfinite(value):
            ax.axhline(value, label=f"{name} limit {value:g} {unit}", **_LIMIT)


def _plant_offsets(result) -> tuple[np.ndarray, np.ndarray]:
    """``(x̄, ū)``: what to add to the MPC's coordinates to get plant units (zeros without an operating point)."""
    op = result.twin.operating_point
    n, m = result.model.state_dim, result.model.input_dim
    return (np.zeros(n), np.zeros(m)) if op is None else (np.asarray(op.x), np.asarray(op.u))


def plotted_states(result) -> np.ndarray:
    """Indices of the states :func:`states_figure` shows: the tracked ones (all of them for n ≤ 3)."""
    n = result.model.state_dim
    if n <= 3:
        return np.arange(n)
    return np.flatnonzero(np.diag(np.asarray(result.problem.Q)) > 0)


def _grid(count: int, cols: int, width: float = 5.0, height: float = 2.8):
    rows = -(-count // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, layout="constrained")
    for ax in axes.flat[count:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:count])


def _finish(fig, axes, result, what: str):
    """Legends outside the plots, light grids and the figure title of a time-series figure."""
    for ax in axes:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.cfg.plant.kind}: {what} in closed loop over {result.scenarios} scenarios ({result.cfg.source})")
    return fig


def states_figure(result):
    """States over time against setpoint and band, and the disturbances (module docstring)."""
    words, mpc = result.words, result.problem
    t, x = _time(result), np.asarray(result.rollout.x)
    x_off, _ = _plant_offsets(result)
    ref = np.asarray(mpc.xref)[0] + x_off
    lo, hi = np.asarray(mpc.xmin) + x_off, np.asarray(mpc.xmax) + x_off
    tracked = np.diag(np.asarray(mpc.Q)) > 0
    shown = plotted_states(result)
    p = result.model.disturbance_dim
    fig, axes = _grid(len(shown) + p, 1, width=9.0, height=2.4)
    unit = words.time_unit
    for ax, i in zip(axes, shown):
        label, u = words.states[i]
        if np.isfinite(lo[i]) and np.isfinite(hi[i]):
            ax.axhspan(lo[i], hi[i], color="tab:green", alpha=0.08, label=f"band {lo[i]:g}–{hi[i]:g} {u}")
        _spread(ax, t, x[..., i], f"{result.scenarios} scenarios")
        if tracked[i]:
            ax.axhline(ref[i], label=f"setpoint {ref[i]:g} {u}", **_SETPOINT)
        if np.isfinite(lo[i]) != np.isfinite(hi[i]):  # a one-sided limit: a line instead of a band
            _limits(ax, lo[i], hi[i], u)
        ax.set(title=label, xlabel=f"time [{unit}]", ylabel=f"{label} [{u}]")
    d = result.disturbances[: result.steps]
    for ax, j in zip(axes[len(shown):], range(p)):
        label, u = words.disturbances[j]
        ax.plot(t, d[:, j], color="tab:gray", lw=1.5, label="true (all scenarios; forecasts have errors)")
        ax.set(title=f"disturbance: {label}", xlabel=f"time [{unit}]", ylabel=f"{label} [{u}]")
    return _finish(fig, axes, result, "states")


def inputs_figure(result):
    """Inputs against their limits and the total demand against the threshold (module docstring)."""
    words, mpc = result.words, result.problem
    t, u = _time(result), np.asarray(result.rollout.u)
    _, u_off = _plant_offsets(result)
    umin, umax = np.asarray(mpc.umin) + u_off, np.asarray(mpc.umax) + u_off
    m = result.model.input_dim
    demand = float(mpc.beta) > 0
    fig, axes = _grid(m + demand, 1, width=9.0, height=2.4)
    unit = words.time_unit
    for j, ax in enumerate(axes[:m]):
        label, un = words.inputs[j]
        _spread(ax, t, u[..., j], f"{result.scenarios} scenarios")
        _limits(ax, umin[j], umax[j], un)
        ax.set(title=label, xlabel=f"time [{unit}]", ylabel=f"{label} [{un}]")
    if demand:
        ax = axes[m]
        label, un = words.demand
        load = (u - u_off) @ np.asarray(mpc.c)
        _spread(ax, t, load, f"{result.scenarios} scenarios")
        rho = float(mpc.rho)
        ax.axhline(rho, color="tab:orange", lw=1.5, ls="--", label=f"demand threshold ρ = {rho:g} {un}")
        worst = np.unravel_index(np.argmax(load), load.shape)
        peak = float(load[worst])
        ax.plot(t[worst[1]], peak, "v", color="tab:red", ms=9, label=f"peak {peak:.4g} {un} (scenario {worst[0]})")
        ax.margins(y=0.15)  # keep the peak marker inside the axes
        ax.set(title=f"{label} (the demand charge applies above ρ)", xlabel=f"time [{unit}]", ylabel=f"{label} [{un}]")
    return _finish(fig, axes, result, "inputs")


def _bins(v: np.ndarray):
    """Histogram bins: one per integer for counts with a small range, else about √S (5 to 30)."""
    if np.all(v == np.round(v)) and np.ptp(v) <= 30:
        return np.arange(v.min() - 0.5, v.max() + 1.5)
    return int(np.clip(np.sqrt(v.size), 5, 30))


def kpi_figure(result, q: float = 0.95):
    """Histogram of each KPI across scenarios with mean, p95 and CVaR_q marked (module docstring)."""
    summary = result.summary
    kpis = result.words.kpis
    fig, axes = _grid(len(kpis), 3, width=4.2, height=2.9)
    for ax, d in zip(axes, kpis):
        v = np.asarray(result.kpis[d.key], float)
        v = v[np.isfinite(v)]
        s = summary[d.key]
        if v.size and np.ptp(v) > 1e-12 * max(1.0, abs(float(v.mean()))):
            ax.hist(v, bins=_bins(v), color="tab:blue", alpha=0.6, label="scenarios")
        else:  # every scenario has the same value: say so instead of drawing one bar
            ax.text(0.5, 0.6, f"all {v.size} scenarios: {s['mean']:.4g}", transform=ax.transAxes, ha="center")
            ax.set_xlim(s["mean"] - 1, s["mean"] + 1)
        for key, style, name in (("mean", "-", "mean"), ("p95", "--", "p95"), ("cvar", ":", f"CVaR{q:g}")):
            if np.isfinite(s[key]):
                ax.axvline(s[key], color="black", ls=style, lw=1.3, label=f"{name} {s[key]:.4g}")
        ax.set(title=d.name, xlabel=f"{d.name} [{d.unit}]", ylabel="scenarios")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.cfg.plant.kind}: KPI distributions over {result.scenarios} scenarios ({result.cfg.source})")
    return fig


FIGURES = {"states": states_figure, "inputs": inputs_figure, "kpis": kpi_figure}
"""The figures a run report contains, by file stem."""


def save_figures(result, out_dir: str | Path, dpi: int = 100) -> dict[str, Path]:
    """Write :data:`FIGURES` of ``result`` as ``<name>.png`` into ``out_dir``; returns the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, make in FIGURES.items():
        fig = make(result)
        paths[name] = out / f"{name}.png"
        fig.savefig(paths[name], dpi=dpi)
        plt.close(fig)
    return paths
