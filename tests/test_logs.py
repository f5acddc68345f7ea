"""Plant logs: CSV/NPZ round trips, missing measurements, and malformed logs failing with row/column messages."""

import numpy as np
import pytest

from jtwin.logs import PlantLog, load_log, save_log
from jtwin.models.library import cstr_model

GOOD = """# reactor log
t [min], u_Tc [K], y_T [K], d_Caf [mol/L], d_Tf [K]
0.00, 300.0, 350.12, 0.0, 0.0
0.05, 300.0, , 0.0, 0.5
0.15, 302.0, nan, 0.1, 0.0
0.20, 301.0, 349.5, 0.0, 0.0
"""


def write(tmp_path, text, name="log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_roles_units_missing_and_irregular_time(tmp_path):
    log = load_log(write(tmp_path, GOOD), expected_units={"y_T": "K", "t": "min"})
    np.testing.assert_array_equal(log.t, [0.0, 0.05, 0.15, 0.20])
    np.testing.assert_array_equal(log.u[:, 0], [300.0, 300.0, 302.0, 301.0])
    np.testing.assert_array_equal(np.isnan(log.y[:, 0]), [False, True, True, False])
    np.testing.assert_array_equal(log.d, [[0, 0], [0, 0.5], [0.1, 0], [0, 0]])
    assert log.names == {"u": ("Tc",), "y": ("T",), "d": ("Caf", "Tf")}
    assert log.units["d_Caf"] == "mol/L"
    assert log.missing_fraction == 0.5
    np.testing.assert_allclose(log.dt, [0.05, 0.10, 0.05])
    assert not log.is_regular(0.05)
    log.check_model(cstr_model())  # 1 input, 1 measurement, 2 disturbances
    with pytest.raises(ValueError, match="unit \\[K\\], expected \\[degC\\]"):
        load_log(write(tmp_path, GOOD), expected_units={"y_T": "degC"})


@pytest.mark.parametrize("suffix", ["csv", "npz"])
def test_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    y = rng.normal(size=(20, 2))
    y[rng.random(y.shape) < 0.2] = np.nan
    log = PlantLog(
        t=np.cumsum(rng.uniform(0.5, 1.5, 20)),
        u=rng.normal(size=(20, 1)),
        y=y,
        d=rng.normal(size=(20, 3)),
        names={"u": ("heat",), "y": ("a", "b"), "d": ("x", "y", "z")},
        units={"t": "h", "u_heat": "kW", "y_a": "degC"},
    )
    back = load_log(save_log(log, tmp_path / f"log.{suffix}"))
    for role in ("t", "u", "y", "d"):
        np.testing.assert_array_equal(getattr(back, role), getattr(log, role))  # exact (repr round trip)
    assert back.names == log.names
    assert back.units["u_heat"] == "kW" and back.units["y_a"] == "degC" and back.units["t"] == "h"


def test_model_dimension_mismatch_names_columns(tmp_path):
    log = PlantLog(t=np.arange(3.0), u=np.zeros((3, 2)), y=np.zeros((3, 1)), d=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="2 input column.*input_dim is 1"):
        log.check_model(cstr_model())


@pytest.mark.parametrize(
    "text, message",
    [
        ("t,u_Tc,y_T\n0,300,350\n1,300,351\n0.5,300,352\n", r":4: column 't': timestamp 0.5 is not after the previous one \(1\)"),
        ("t,u_Tc,y_T\n0,300,350\n1,300\n", r":3: row has 2 values, the header has 3 columns"),
        ("t,u_Tc,y_T\n0,300,350\n1,300,abc\n", r":3: column 'y_T': non-numeric value 'abc'"),
        ("# c\nt,u_Tc,y_T\n0,hot,350\n", r":3: column 'u_Tc': non-numeric value 'hot'"),
        ("t,u_Tc,y_T\n0,,350\n", r":2: column 'u_Tc': missing input value"),
        ("t,u_Tc,y_T\n,300,350\n", r":2: column 't': missing time value"),
        ("t,u_Tc,T\n0,300,350\n", r":1: column 3 \('T'\): expected a time column .* role prefix"),
        ("u_Tc,y_T\n300,350\n", r":1: no time column"),
        ("t,y_T,y_T\n0,1,2\n", r":1: column 3: duplicate column name 'y_T'"),
    ],
)
def test_malformed_csv_names_row_and_column(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_log(write(tmp_path, text))


def test_malformed_npz_and_arrays(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, t=np.array([0.0, 2.0, 1.0]), u=np.zeros((3, 1)), y=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"bad.npz: sample 2: column 't': timestamp 1 is not after"):
        load_log(path)
    np.savez(path, t=np.arange(3.0), u=np.zeros((4, 1)), y=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"array 'u' has shape \(4, 1\)"):
        load_log(path)
    np.savez(path, t=np.arange(3.0), u=np.array([["a"], ["b"], ["c"]]), y=np.zeros((3, 1)))
    with pytest.raises(ValueError, match="array 'u' has non-numeric dtype"):
        load_log(path)
    np.savez(path, t=np.arange(3.0), y=np.zeros((3, 1)))
    with pytest.raises(ValueError, match=r"missing array\(s\) \['u'\]"):
        load_log(path)
    u = np.zeros((3, 1))
    u[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"<arrays>: sample 1: column 'u_heat': input is nan"):
        PlantLog(t=np.arange(3.0), u=u, y=np.zeros((3, 1)), names={"u": ("heat",)})
    with pytest.raises(FileNotFoundError, match="not found"):
        load_log(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="expected a .csv or .npz"):
        load_log(write(tmp_path, "x", "log.txt"))
