"""Config loader and the jtwin CLI: bad files are rejected with the offending field named."""

import re

import pytest

from jtwin import cli
from jtwin.config import ConfigError, load_config

GOOD = """
[plant]
kind = "building"
[plant.params]
zones = 2
[simulation]
scenarios = 3
steps = 5
x0 = [20.0, 20.0, 18.0, 18.0]
[controller]
kind = "mpc"
horizon = 4
setpoint = 21.0
umin = 0.0
umax = 5.0
xmin = 20.0
xmax = 24.0
"""


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.plant.kind == "building" and cfg.simulation.steps == 5 and cfg.controller.horizon == 4
    assert cfg.simulation.x0 == (20.0, 20.0, 18.0, 18.0)
    assert cfg.plant.build().state_dim == 4


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda s: s.replace('kind = "building"', 'kind = "rocket"'), "plant.kind"),
        (lambda s: s.replace("zones = 2", "zones = 2\nwings = 3"), "plant.params.wings"),
        (lambda s: s.replace("steps = 5", 'steps = "five"'), "simulation.steps"),
        (lambda s: s.replace("steps = 5", "steps = 0"), "simulation.steps"),
        (lambda s: s.replace("steps = 5", "stpes = 5"), "simulation.stpes"),
        (lambda s: s.replace("umin = 0.0", "umin = 9.0"), "controller.umin"),
        (lambda s: s.replace('kind = "mpc"', 'kind = "pid"'), "controller.kind"),
        (lambda s: s.replace("horizon = 4", "horizon = 0"), "controller.horizon"),
        (lambda s: s.replace("xmin = 20.0", "xmin = 25.0"), "controller.xmin"),
        (lambda s: s.replace("horizon = 4", 'horizon = 4\nprecision = "float16"'), "controller.precision"),
        (lambda s: s.replace("horizon = 4", 'horizon = 4\nadaptive_rho_rule = "boyd"'), "controller.adaptive_rho_rule"),
        (lambda s: s.replace("horizon = 4", "horizon = 4\nadaptive_rho_tolerance = 0.5"), "controller.adaptive_rho_tolerance"),
        (lambda s: s.replace("horizon = 4", 'horizon = 4\nprecision = "float32"\neps = 1e-6'), "controller.eps"),
        (lambda s: s + "[estimator]\nkind = \"particle\"\n", "estimator.kind"),
        (lambda s: s + "[sync]\ndelay = -1\n", "sync.delay"),
        (lambda s: s.replace("steps = 5", "steps = 5\ndropout = 1.5"), "simulation.dropout"),
        (lambda s: s.replace("x0 = [20.0, 20.0, 18.0, 18.0]", 'x0 = ["a"]'), "simulation.x0"),
        (lambda s: s.replace("[plant]\n", "[plant]\nfoo = 1\n"), "plant.foo"),
        (lambda s: s.replace("[simulation]", "[simulaton]"), "simulaton"),
        (lambda s: s.replace("[plant]", "[plant"), "malformed TOML"),
        (lambda s: s.replace("zones = 2", "zones = -1"), "plant.params"),
    ],
)
def test_bad_config_names_the_field(tmp_path, edit, field):
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_config(write(tmp_path, edit(GOOD))).plant.build()


def test_missing_plant_table(tmp_path):
    with pytest.raises(ConfigError, match=r"^plant: missing"):
        load_config(write(tmp_path, "[simulation]\nsteps = 3\n"))


@pytest.mark.slow  # 30 s; `jtwin run` is exercised by test_run_report
def test_cli_run_prints_kpis(tmp_path, capsys):
    assert cli.main(["run", str(write(tmp_path, GOOD)), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    for kpi in ("comfort_rmse", "heat_energy", "comfort_violations", "solver_failures", "nis"):
        assert kpi in out
    row = next(line for line in out.splitlines() if line.startswith("heat_energy"))
    assert row.split()[1] == "kWh" and 0.0 <= float(row.split()[2]) <= 5 * 2 * 5.0 + 1e-6  # 5 h, two zones <= umax


def test_cli_reports_bad_config_and_x0_length(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace("x0 = [20.0, 20.0, 18.0, 18.0]", "x0 = [20.0]"))
    assert cli.main(["run", str(bad)]) == 2
    assert "simulation.x0: expected 4 values" in capsys.readouterr().err
    assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_cli_drift_decides_retrain_on_input_shift(tmp_path, capsys):
    import numpy as np

    rng = np.random.default_rng(0)
    cfg = write(tmp_path, GOOD + "[drift]\nalpha = 0.05\ncorrection = \"holm\"\n")
    for name, shift in (("ref", 0.0), ("new", 1.0)):
        x = rng.normal(size=(400, 2)) + shift  # covariate shift in both inputs
        r = rng.normal(size=(400, 1))  # residuals unchanged
        np.savetxt(tmp_path / f"{name}.csv", np.hstack([x, r]), delimiter=",", header="x1,x2,r_temp", comments="")
    assert cli.main(["drift", str(cfg), "--ref", str(tmp_path / "ref.csv"), "--new", str(tmp_path / "new.csv")]) == 0
    assert "retrain" in capsys.readouterr().out
    bad = write(tmp_path, GOOD + "[drift]\ncorrection = \"sidak\"\n")
    assert cli.main(["drift", str(bad), "--ref", "a.csv", "--new", "b.csv"]) == 2
    assert "drift.correction" in capsys.readouterr().err


@pytest.mark.slow  # 18 s; test_schedule runs the schedule CLI
def test_cli_schedule_reports_deadline(tmp_path, capsys):
    """The report names the deadline outcome and n_max (a period far above a step's cost, so machine load cannot flip it)."""
    cfg = write(tmp_path, GOOD + '[estimator]\nkind = "kf"\n')
    assert cli.main(["schedule", str(cfg), "--period", "1s", "--u-other", "0.5", "--comm-time", "0.5ms"]) == 0
    out = capsys.readouterr().out
    assert "deadline MET" in out and "n_max" in out
    assert cli.main(["schedule", str(cfg), "--period", "soon"]) == 2
    assert "period" in capsys.readouterr().err
