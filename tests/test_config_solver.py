"""``[controller] solver``: the MPC's QP solver chosen by name in a config, its options checked by the solver."""

import numpy as np
import pytest

from jtwin.config import ConfigError, load_config
from jtwin.qp import ADMM, InteriorPoint
from jtwin.run import build_twin
from test_config import GOOD

BASE = GOOD  # the config tests' small building twin


def load(tmp_path, extra):
    path = tmp_path / "c.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def test_solver_by_name_builds_that_solver(tmp_path):
    cfg = load(tmp_path, 'solver = "ipm"\neps = 1e-7\n')
    twin = build_twin(cfg, cfg.plant.build())
    assert twin.controller.solver == InteriorPoint(eps_abs=1e-7, eps_rel=1e-7, max_iter=4000)
    default = load(tmp_path, 'adaptive_rho_rule = "residual"\n')
    assert default.controller.qp_solver() == ADMM(adaptive_rho_rule="residual")
    plan = twin.controller.solve(np.array([19.0, 19.5, 18.0, 18.0]))  # below the band: heat, within 0-5 kW
    assert np.all(np.asarray(plan.u) >= 0.0) and np.all(np.asarray(plan.u) <= 5.0) and float(plan.u[0].sum()) > 0


@pytest.mark.parametrize(
    "extra, match",
    [
        ('solver = "simplex"\n', r"controller\.solver: expected one of \['admm', 'ipm', 'fista'\]"),
        ('solver = "ipm"\nadaptive_rho_rule = "residual"\n', r"controller\.adaptive_rho_rule: not an option of InteriorPoint"),
        ('adaptive_rho_rule = "boyd"\n', r"controller\.adaptive_rho_rule: expected one of"),
        ('adaptive_rho_tolerance = 0.5\n', r"controller\.adaptive_rho_tolerance: expected a number >= 1"),
    ],
)
def test_bad_solver_settings_name_the_field(tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, extra)
