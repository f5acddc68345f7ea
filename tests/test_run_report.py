"""`jtwin run --out DIR`: report.json (schema, finiteness, numbers that agree with the rollout) and the plots."""

import hashlib
import json
import math
from pathlib import Path

import jax
import matplotlib.image
import numpy as np
import pytest

from jtwin import cli
from jtwin.config import load_config
from jtwin.kpi import format_summary, summarize
from jtwin.report import CompileTimer, default_run_dir, vocabulary, write_run
from jtwin.report.plots import FIGURES
from jtwin.run import run_twin

from test_config import GOOD

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TINY = GOOD.replace("steps = 5", "steps = 6\nseed = 3\ndropout = 0.1").replace("scenarios = 3", "scenarios = 4") + (
    "alpha = 0.1\nbeta = 1.0\nrho = 6.0\n"  # appended to [controller]: an energy price and a demand charge
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("run")
    config = tmp / "tiny.toml"
    config.write_text(TINY)
    result = run_twin(str(config))
    paths = write_run(result, tmp / "out")
    return config, result, paths


def _numbers(value):
    """Every number in a JSON document."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in _numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def test_report_schema_and_finiteness(run):
    config, result, paths = run
    doc = json.loads(paths["report"].read_text())
    assert {"schema", "config", "versions", "seed", "scenarios", "steps", "dt", "time_unit", "controller", "precision",
            "parameters", "kpis", "solver_statistics", "timing"} <= set(doc)
    assert doc["config"]["sha256"] == hashlib.sha256(config.read_bytes()).hexdigest()
    assert doc["versions"]["jax"] == jax.__version__ and doc["seed"] == 3
    assert (doc["scenarios"], doc["steps"], doc["time_unit"]) == (4, 6, "h")
    assert doc["parameters"] == {"source": "config", "plant.params": {"zones": 2}}
    assert doc["precision"] == {"model_and_estimator": "float64", "mpc": "float64"}
    assert all(math.isfinite(v) for v in _numbers(doc))
    for name, kpi in doc["kpis"].items():
        assert len(kpi["per_scenario"]) == 4 and kpi["unit"] and kpi["explanation"], name
        assert kpi["aggregate"]["mean"] == pytest.approx(np.mean(kpi["per_scenario"]), rel=1e-12, abs=1e-12)
    t = doc["timing"]
    assert t["compile_s"] > 0 and t["run_s"] > 0 and t["compile_s"] + t["run_s"] == pytest.approx(t["wall_s"])
    assert t["scenario_steps_per_s"] == pytest.approx(24 / t["run_s"])
    assert sum(doc["solver_statistics"]["outcomes"].values()) == doc["solver_statistics"]["solves"] == 24


def test_report_kpis_agree_with_the_rollout(run):
    _, result, paths = run
    doc = json.loads(paths["report"].read_text())
    u = np.asarray(result.rollout.u)
    total = u.sum(axis=2)  # two heaters, c = 1
    np.testing.assert_allclose(doc["kpis"]["peak_demand"]["per_scenario"], total.max(axis=1), rtol=1e-12)
    np.testing.assert_allclose(doc["kpis"]["heat_energy"]["per_scenario"], np.abs(u).sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(doc["kpis"]["demand_excess"]["per_scenario"],
                               np.maximum(total - 6.0, 0).sum(axis=1), rtol=1e-9, atol=1e-12)
    assert doc["kpis"]["heat_energy"]["unit"] == "kWh" and doc["kpis"]["peak_demand"]["unit"] == "kW"


@pytest.mark.parametrize("name", list(FIGURES))
def test_plots_are_written_and_labelled(run, name):
    _, result, paths = run
    image = matplotlib.image.imread(paths[name])
    assert image.shape[0] >= 400 and image.shape[1] >= 600 and image[..., :3].std() > 0.01  # not blank
    fig = FIGURES[name](result)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes and fig.get_suptitle()
    for ax in axes:
        assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title(), (name, ax.get_title())
        assert ax.get_legend() is not None and ax.get_legend().get_texts()
        assert "[" in ax.get_xlabel() and "[" in ax.get_ylabel() or name == "kpis"  # units on time plots


def test_state_and_input_plots_show_setpoint_band_limits_and_threshold(run):
    _, result, _ = run
    legends = lambda fig: [t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts()]
    states = legends(FIGURES["states"](result))
    assert "setpoint 21 degC" in states and "band 20–24 degC" in states and "5–95 % of scenarios" in states
    inputs = legends(FIGURES["inputs"](result))
    assert "upper limit 5 kW" in inputs and "demand threshold ρ = 6 kW" in inputs
    peak = float(np.asarray(result.rollout.u).sum(axis=2).max())
    assert any(t.startswith(f"peak {peak:.4g} kW") for t in inputs)


def test_cli_run_writes_out_dir_and_prints_units(tmp_path, capsys):
    """With another controller kind (an LQR): the report and plots score the configured MPC problem's
    costs and bounds, which the LQR does not carry (they read LinearMPC attributes and failed)."""
    config = tmp_path / "tiny.toml"
    assert 'kind = "mpc"' in TINY
    config.write_text(TINY.replace('kind = "mpc"', 'kind = "lqr"'))
    out = tmp_path / "report"
    assert cli.main(["run", str(config), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"report and plots: {out}/" in text
    assert {p.name for p in out.iterdir()} == {"report.json", "states.png", "inputs.png", "kpis.png"}
    assert "KF + LQR (horizon" in text and "precision: model and estimator float64, controller float64\n" in text
    assert "heat_energy" in text and "kWh" in text
    assert "parameters: configured [plant.params] zones=2" in text and "compilation" in text


def test_header_names_the_controller_and_its_qp_solver(run):
    header = run[1].header()
    assert "KF + MPC (horizon 4 steps" in header
    assert "precision: model and estimator float64, controller float64 (QP solver admm, eps 0.0001" in header


def test_kpi_words_per_plant():
    words = {}
    for kind in ("building", "cstr", "inventory"):
        cfg = load_config(CONFIGS / f"{kind}.toml")
        words[kind] = vocabulary(kind, cfg.plant.build(), cfg.controller)
    names = {kind: {d.key: (d.name, d.unit) for d in w.kpis} for kind, w in words.items()}
    assert names["building"]["energy"] == ("heat_energy", "kWh")
    assert names["inventory"]["energy"] == ("items_ordered", "items")
    assert names["inventory"]["peak_demand"] == ("peak_weekly_orders", "items/week")
    assert names["cstr"]["energy"] == ("coolant_moves", "K·min") and names["cstr"]["tracking_rmse"][1] == "K"
    assert "peak_demand" not in names["cstr"]  # no demand charge configured for the reactor
    assert words["inventory"].states[0] == ("echelon 1 on hand", "items")
    assert words["inventory"].states[2] == ("echelon 2 on hand", "items")  # retailer's lead time is 1 week
    assert words["cstr"].time_unit == "min" and words["inventory"].time_unit == "week"


def test_format_summary_with_descriptions_has_units_and_meanings():
    cfg = load_config(CONFIGS / "inventory.toml")
    words = vocabulary("inventory", cfg.plant.build(), cfg.controller)
    kpis = {d.key: np.arange(20.0) for d in words.kpis}
    lines = format_summary(summarize(kpis), descriptions=words.kpis).splitlines()
    row = next(line for line in lines if line.startswith("items_ordered"))
    assert row.split()[1] == "items" and float(row.split()[2]) == pytest.approx(9.5)
    assert "all orders placed" in row and "CVaR0.95 = mean of the worst 5% of scenarios" in lines[-1]


def test_compile_timer_separates_compilation():
    f = jax.jit(lambda x: jax.numpy.sin(x) * 3.0 + x.sum())
    with CompileTimer() as first:
        f(jax.numpy.ones(7)).block_until_ready()
    with CompileTimer() as second:
        f(jax.numpy.ones(7)).block_until_ready()
    assert first.compile_s > 0 and second.compile_s == 0
    assert first.run_s >= 0 and first.compile_s + first.run_s == pytest.approx(first.wall_s)


def test_default_run_dir_is_fresh(tmp_path):
    first = default_run_dir("configs/building.toml", root=tmp_path)
    assert first.parent == tmp_path and first.name.startswith("building-")
    first.mkdir()
    assert default_run_dir("configs/building.toml", root=tmp_path) != first
