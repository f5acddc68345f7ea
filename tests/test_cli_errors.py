"""Every error a new user met in issue #19 names the field, file, line or column, and `jtwin train` refuses a
fit it cannot stand behind (exit 1 or 2 with the reason) instead of exiting 0."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jtwin import cli
from jtwin.config import ConfigError, load_config
from jtwin.drift.logs import load_log as load_drift_log
from jtwin.learn import synthetic_log
from jtwin.logs import PlantLog, load_log, save_log
from jtwin.models.library import BuildingRC, load_tmy3_greensboro

from test_config import GOOD, write


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.replace("zones = 2", 'zones = "three"'), "plant.params.zones: expected int, got 'three'"),
        (lambda s: s.replace("zones = 2", "zones = -1"), "plant.params.zones: expected a positive integer"),
        (lambda s: s.replace("zones = 2", "zones = 2\nc_air = \"big\""), "plant.params.c_air: expected a number"),
        (lambda s: s.replace("zones = 2", "zones = 2\ndt = true"), "plant.params.dt: expected a number"),
        (lambda s: s.replace("setpoint = 21.0\n", ""), "controller.setpoint: missing required field"),
        (lambda s: s[: s.index("[controller]")], "controller: missing required table [controller]"),
    ],
)
def test_config_errors_name_the_field(tmp_path, edit, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(write(tmp_path, edit(GOOD))).plant.build()


def test_config_setpoint_accepts_a_number_or_a_list(tmp_path):
    assert load_config(write(tmp_path, GOOD)).controller.setpoint == 21.0
    listed = GOOD.replace("setpoint = 21.0", "setpoint = [21.0, 22.0]")
    assert load_config(write(tmp_path, listed)).controller.setpoint == (21.0, 22.0)


def test_plant_log_errors_give_the_file_line(tmp_path):
    text = "t [h], u_q [kW], y_T [degC]\n0, 1.0, 20.0\n1, 1.0, inf\n2, 1.0, 20.5\n"
    with pytest.raises(ValueError, match=re.escape("log.csv:3: column 'y_T': infinite measurement")):
        load_log(write_log(tmp_path, text))
    with pytest.raises(ValueError, match=re.escape("log.csv:4: column 'u_q': input is inf")):
        load_log(write_log(tmp_path, text.replace("inf", "20.1").replace("2, 1.0", "2, inf")))
    with pytest.raises(ValueError, match=re.escape("<arrays>: sample 1: column 'y_y0': infinite")):
        PlantLog(np.arange(3.0), np.zeros((3, 1)), np.array([[1.0], [np.inf], [2.0]]))


def write_log(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_drift_log_nan_names_file_line_and_column(tmp_path):
    path = write_log(tmp_path, "t,x1,r_T\n0,1.0,0.1\n1,2.0,0.2\n2,nan,0.3\n", "ref.csv")
    with pytest.raises(ValueError, match=re.escape("ref.csv:4: column 'x1': value 'nan'")):
        load_drift_log(path)
    with pytest.raises(ValueError, match=re.escape("ref.csv:3: column 'r_T': non-numeric value 'abc'")):
        load_drift_log(write_log(tmp_path, "t,x1,r_T\n0,1.0,0.1\n1,2.0,abc\n", "ref.csv"))


def test_schedule_flags_need_units_and_utilisations(tmp_path, capsys):
    cfg = write(tmp_path, GOOD)
    assert cli.main(["schedule", str(cfg), "--period", "20"]) == 2
    assert "--period: duration: '20' has no unit" in capsys.readouterr().err
    assert cli.main(["schedule", str(cfg), "--period", "20ms", "--u-other", "1.5"]) == 2
    assert "--u-other: expected a utilisation in [0, 1]" in capsys.readouterr().err


def test_outliers_are_flagged_where_they_are(tmp_path):
    rng = np.random.default_rng(0)
    T = 200
    y = 20 + np.cumsum(rng.normal(0, 0.05, (T, 2)), axis=0) + rng.normal(0, 0.2, (T, 2))
    y[120:, 0] += 3.0  # a real step of the plant: not an outlier
    y[49, 1] = 1e6
    y[150, 0] = -40.0
    log = PlantLog(np.arange(T, dtype=float), np.zeros((T, 1)), y, names={"u": ("q",), "y": ("a", "b")})
    path = save_log(log, tmp_path / "log.csv")
    log = load_log(path)
    mask = log.outliers()
    assert sorted(map(tuple, np.argwhere(mask))) == [(49, 1), (150, 0)]
    text = log.describe_outliers(mask)
    assert text.startswith("2 outlier reading(s)") and "log.csv:51 y_b = 1e+06" in text  # header is line 1
    assert np.isnan(log.without(mask).y[49, 1]) and not np.isnan(log.without(mask).y[48, 1])


def _building_log(tmp_path, hours=48, spike=False, empty=False, sun=True):
    """A 1-zone building log (the config below) simulated with noise; optionally one 1e6 reading, no readings,
    or no sunshine (the solar aperture then has no effect on the readings)."""
    model = BuildingRC(1).to_linear(1.0, 0.05, 0.2)
    us = np.repeat(np.random.default_rng(0).choice([0.0, 3.0], (hours // 2, 1)), 2, axis=0)
    ds = np.array(load_tmy3_greensboro().disturbances(0, hours, 1.0))
    if not sun:
        ds[:, 1] = 0.0
    log = synthetic_log(model, jax.random.PRNGKey(0), jnp.array([20.0, 18.0]), us, ds)
    y = np.array(log.y)
    if spike:
        y[20, 0] = 1e6
    if empty:
        y[:] = np.nan
    return save_log(PlantLog(log.t, log.u, y, log.d), tmp_path / "log.csv")


TRAIN = """
[plant]
kind = "building"
[plant.params]
zones = 1
[simulation]
x0 = [20.0, 18.0]
[controller]
setpoint = 21.0
[train]
trainable = "log_c_air, log_solar_area"
max_epochs = 5
"""


def test_train_without_measurements_exits_2_with_the_reason(tmp_path, capsys):
    cfg = write(tmp_path, TRAIN)
    log = _building_log(tmp_path, empty=True)
    assert cli.main(["train", str(cfg), "--logs", str(log), "--out", str(tmp_path / "out")]) == 2
    assert "no measurements" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # one short fit: 30-75 s on 2 busy cores
def test_train_exits_1_when_the_parameters_are_not_identified_and_flags_outliers(tmp_path, capsys):
    """Without sunshine in the log the solar aperture is not identifiable: exit 1 with the reason, no
    "use with" line; the 1e6 reading is flagged with its file line and the gate is suggested."""
    cfg = write(tmp_path, TRAIN)
    log = _building_log(tmp_path, sun=False, spike=True)
    code = cli.main(["train", str(cfg), "--logs", str(log), "--out", str(tmp_path / "out")])
    captured = capsys.readouterr()
    assert code == 1 and "use with" not in captured.out
    assert "parameters not identifiable" in captured.err and "log_solar_area" in captured.err
    assert "retry with --drop-outliers" in captured.err
    assert "1 outlier reading(s)" in captured.out and "log.csv:22 y_y0 = 1e+06" in captured.out  # header: line 1
    assert (tmp_path / "out" / "report.json").is_file()  # the report is still written, to look at


def test_serve_help_shows_its_defaults(capsys):
    from jtwin import cli

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 8080)" in text and "1048576 = 1 MiB" in text and "127.0.0.1" in text
