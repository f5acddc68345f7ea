"""The nonlinear twin: linearisation and steady states against finite differences and scipy, the CSTR
twin (UKF on the reactor + MPC on its linearisation) in closed loop, and the cstr/inventory configs."""

from pathlib import Path

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import fsolve

import jtwin as jt
from jtwin.config import ConfigError, load_config
from jtwin.models.library import CSTRDynamics, cstr_model, inventory_model
from jtwin.qp import is_successful
from jtwin.run import build_twin, run_config, run_twin
from jtwin.twin import Twin

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
# Seborg's CSTR constants (jtwin.models.library.cstr), written out for the scipy references
K0, E_R, UA, NEG_DH, Q_V, CAF, TF, RHO_CP, V = 7.2e10, 8750.0, 5.0e4, 5.0e4, 1.0, 1.0, 350.0, 239.0, 100.0


def cstr_rhs(ca, temp, tc, d1=0.0, d2=0.0):
    """The CSTR vector field in numpy (independent of jtwin)."""
    rate = K0 * np.exp(-E_R / temp) * ca
    dtemp = Q_V * (TF + d2 - temp) + NEG_DH / RHO_CP * rate + UA / (V * RHO_CP) * (tc - temp)
    return np.array([Q_V * (CAF + d1 - ca) - rate, dtemp])


def steady_at_temperature(temp):
    """``(Ca, Tc)`` of the steady state with reactor temperature ``temp`` (scipy fsolve on dx/dt = 0)."""
    ca, tc = fsolve(lambda z: cstr_rhs(z[0], temp, z[1]), [0.5, 300.0], xtol=1e-12)
    return np.array([ca, temp]), np.array([tc])


def steady_at_coolant(tc):
    return fsolve(lambda x: cstr_rhs(x[0], x[1], tc), [0.5, 350.0], xtol=1e-12)


def finite_difference_jacobian(fn, z, steps):
    cols = []
    for i, h in enumerate(steps):
        e = np.zeros_like(z)
        e[i] = h
        cols.append((np.asarray(fn(z + e)) - np.asarray(fn(z - e))) / (2 * h))
    return np.stack(cols, axis=1)


def forward_mode_cstr():
    """The CSTR with diffrax's forward-mode adjoint (so linearize takes the jacfwd path)."""
    return jt.models.ODEModel(
        CSTRDynamics(), lambda x, u, t: x[1:], 0.05, np.diag([1e-6, 2.5e-3]), np.eye(1) * 0.04,
        input_dim=1, disturbance_dim=2, substeps=4, adjoint=diffrax.ForwardMode(),
    )  # fmt: skip


@pytest.mark.parametrize("model", [cstr_model(substeps=4), forward_mode_cstr()], ids=["jacrev", "jacfwd"])
def test_linearize_equals_finite_differences_of_the_transition(model):
    x, u, d = np.array([0.45, 352.0]), np.array([299.0]), np.array([0.05, 1.0])
    lin = jt.models.linearize(model, x, u, 0.0, d)
    f = jax.jit(lambda z: model.transition(z[:2], z[2:3], 0.0, z[3:]))
    fd = finite_difference_jacobian(f, np.concatenate([x, u, d]), [1e-5, 1e-3, 1e-3, 1e-5, 1e-3])
    for got, want in ((lin.A, fd[:, :2]), (lin.B, fd[:, 2:3]), (lin.E, fd[:, 3:])):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(lin.H, [[0.0, 1.0]])
    np.testing.assert_allclose(lin.Q, model.Q)


def test_linearize_reproduces_a_linear_model_exactly():
    model = inventory_model(lead_times=(1, 2))
    rng = np.random.default_rng(0)
    lin = jt.models.linearize(model, rng.normal(size=5), rng.normal(size=2), 3.0, rng.normal(size=1))
    for name in ("A", "B", "E", "H", "Q", "R"):
        np.testing.assert_array_equal(getattr(lin, name), getattr(model, name), err_msg=name)


def test_steady_state_equals_scipy_fsolve_of_the_vector_field():
    model = cstr_model(substeps=4)
    ss = jt.models.steady_state(model, [0.5, 350.0], [300.0], [[0.0, 1.0]], [355.0])
    x_ref, u_ref = steady_at_temperature(355.0)
    assert bool(is_successful(ss.status)) and int(ss.iterations) < 10
    np.testing.assert_allclose(ss.x, x_ref, rtol=1e-7)
    np.testing.assert_allclose(ss.u, u_ref, rtol=1e-7)
    with pytest.raises(ValueError, match="target"):
        jt.models.steady_state(model, [0.5, 350.0], [300.0], [[0.0, 1.0]], [355.0, 1.0])


@eqx.filter_jit
def closed_loop(twin, plant, x0, steps):
    """Noise-free loop of ``twin`` with ``plant`` from ``x0``, the twin's prior centred there (no jtwin.simulate)."""
    p = plant.disturbance_dim
    state = twin.init(x0, 1e-4 * jnp.eye(x0.shape[0], dtype=x0.dtype))

    def body(carry, k):
        x, s = carry
        t = k * plant.dt
        u, s = twin.step(s, plant.observe(x, jnp.zeros(plant.input_dim), t), t)
        return (plant.transition(x, u, t, jnp.zeros(p)), s), (x, u)

    _, (xs, us) = jax.lax.scan(body, (x0, state), jnp.arange(steps))
    return xs, us


def cstr_twin(model, x_op, u_op, setpoint):
    """EKF (its prediction is f(mean): no sigma-point bias at an equilibrium) + MPC tracking T."""
    return Twin.from_model(
        model, jt.estimation.EKF(), 20, x_op, u_op, Q=np.diag([0.0, 1.0]), R=0.1 * np.eye(1),
        xref=np.array([x_op[0], setpoint]), umin=285.0, umax=315.0, eps_abs=1e-6, eps_rel=1e-6,
    )  # fmt: skip


@pytest.fixture(scope="module")
def step_twin():
    """The twin for a setpoint of 355 K, linearised at the steady state jtwin finds for it."""
    model = cstr_model(substeps=4)
    ss = jt.models.steady_state(model, [0.5, 350.0], [300.0], [[0.0, 1.0]], [355.0])
    return model, cstr_twin(model, np.asarray(ss.x), np.asarray(ss.u), 355.0)


def test_cstr_twin_at_its_operating_point_stays_there(step_twin):
    model, twin = step_twin
    x_s, u_s = steady_at_temperature(355.0)  # the operating point, from scipy
    xs, us = closed_loop(twin, model, jnp.asarray(x_s), 120)
    np.testing.assert_allclose(us, np.broadcast_to(u_s, us.shape), atol=1e-4)
    np.testing.assert_allclose(xs, np.broadcast_to(x_s, xs.shape), rtol=1e-7, atol=1e-7)


def test_cstr_twin_drives_a_setpoint_step_to_the_nonlinear_steady_state(step_twin):
    """From the open-loop-unstable steady state at 350 K to 355 K, checked against scipy's steady state of the ODE."""
    model, twin = step_twin
    xs, us = closed_loop(twin, model, jnp.asarray(steady_at_coolant(300.0)), 120)
    x_ref, u_ref = steady_at_temperature(355.0)
    assert abs(float(xs[20, 1]) - 355.0) < 1.0  # within 1 K after one minute
    assert abs(float(xs[-1, 0]) - x_ref[0]) < 1e-4  # Ca [mol/L] after 6 min
    assert abs(float(xs[-1, 1]) - x_ref[1]) < 1e-3  # T [K]
    np.testing.assert_allclose(us[-1], u_ref, atol=1e-3)
    assert np.all((np.asarray(us) >= 285.0 - 1e-6) & (np.asarray(us) <= 315.0 + 1e-6))


def test_from_model_rejects_an_explicit_disturbance_matrix():
    model = cstr_model(substeps=4)
    with pytest.raises(ValueError, match="E"):
        Twin.from_model(model, jt.estimation.UKF(), 5, [0.5, 350.0], [300.0], Q=np.eye(2), R=np.eye(1), E=np.eye(2))


def test_fresh_and_stepped_states_have_the_same_types():
    model = inventory_model(lead_times=(1,))
    twin = Twin.from_linear_model(model, jt.estimation.KF(), 3, Q=np.eye(2), R=np.eye(1))
    state = twin.init(jnp.zeros(2), jnp.eye(2))
    _, stepped = jax.eval_shape(twin.step, state, jnp.zeros(1), 0.0)
    types = lambda s: jax.tree_util.tree_map(lambda a: (a.shape, a.dtype, a.weak_type), s)  # noqa: E731
    assert types(jax.eval_shape(lambda: state)) == types(stepped)


CSTR = """
[plant]
kind = "cstr"
[plant.params]
substeps = 2
[simulation]
scenarios = 2
steps = 3
x0 = [0.5, 350.0]
[disturbance]
step = [0.0, 2.0]
step_time = 0.05
[estimator]
kind = "ukf"
cov0 = 0.01
[controller]
kind = "mpc"
horizon = 5
setpoint = 355.0
umin = 285.0
umax = 315.0
"""


def write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda s: s.replace('kind = "ukf"', 'kind = "kf"'), "estimator.kind"),
        (lambda s: s.replace("setpoint = 355.0", "setpoint = [355.0, 1.0]"), "controller.setpoint"),
        (lambda s: s.replace("setpoint = 355.0", 'setpoint = "hot"'), "controller.setpoint"),
        (lambda s: s.replace("umax = 315.0", "umax = [315.0, 320.0]"), "controller.umax"),
        (lambda s: s.replace("umin = 285.0", "umin = 285.0\nu_op = [300.0]"), "controller.x_op"),
        (lambda s: s.replace("umin = 285.0", "umin = 285.0\nx_op = [0.5]\nu_op = [300.0]"), "controller.x_op"),
        (lambda s: s.replace("step_time = 0.05", "step_time = 0.05\nperiod = 0.0"), "disturbance.period"),
        (lambda s: s.replace("step = [0.0, 2.0]", "step = [2.0]"), "disturbance.step"),
        (lambda s: s.replace("step = [0.0, 2.0]", "mean = [0.0, 0.0, 1.0]"), "disturbance.mean"),
        (lambda s: s.replace("steps = 3", "steps = 3\nx0_std = [0.1, -1.0]"), "simulation.x0_std"),
        (lambda s: s.replace('kind = "cstr"', 'kind = "building"').replace("[plant.params]\nsubsteps = 2", ""),
         "disturbance"),
        (lambda s: s.replace("substeps = 2", "substeps = 2\nmeasure_concentration = true")
         .replace("setpoint = 355.0", "setpoint = [0.9, 355.0]"), "controller.setpoint"),
    ],
)
def test_bad_nonlinear_config_fields_are_named(tmp_path, edit, field):
    with pytest.raises(ConfigError, match=field):
        run_config(str(write(tmp_path, edit(CSTR))))


def test_config_operating_point_is_the_steady_state_at_the_setpoint(tmp_path):
    cfg = load_config(write(tmp_path, CSTR))
    twin = build_twin(cfg, cfg.plant.build())
    x_ref, u_ref = steady_at_temperature(355.0)
    np.testing.assert_allclose(twin.operating_point.x, x_ref, rtol=1e-7)
    np.testing.assert_allclose(twin.operating_point.u, u_ref, rtol=1e-7)
    np.testing.assert_allclose(twin.controller.umin, 285.0 - u_ref)  # boxes in deviation variables
    np.testing.assert_allclose(twin.controller.xref[0], [0.0, 0.0], atol=1e-12)


@pytest.mark.slow  # 20 s each, smoke runs: the twins they build are tested above and in test_config
@pytest.mark.parametrize("name", ["cstr", "inventory"])
def test_shipped_configs_run(name):
    summary = run_twin(str(CONFIGS / f"{name}.toml"), scenarios=2, steps=3).summary
    assert {"tracking_rmse", "final_error", "energy", "solver_failures", "nis"} <= set(summary)
    assert summary["solver_failures"]["mean"] == 0.0 and all(np.isfinite(list(summary["tracking_rmse"].values())))


def test_shipped_cstr_twin_is_gated_consistent_and_reaches_its_setpoint():
    """The shipped CSTR config with the twin's default χ² gate (issue 18): its prior is the one the scenarios
    are drawn from, so the UKF is consistent (mean NIS of the one thermometer ≈ E χ²₁ = 1), the gate refuses
    almost nothing, and every scenario ends near 355 K.  (With cov0 = 0.01·I the first readings were refused
    and the reactor ran away.)"""
    result = run_twin(str(CONFIGS / "cstr.toml"), scenarios=8)
    assert result.twin.gate == jt.twin.DEFAULT_GATE == 1e-4
    nis = np.asarray(result.rollout.nis)
    assert 0.7 < np.nanmean(nis) < 1.4, np.nanmean(nis)
    refused = np.mean(nis[np.isfinite(nis)] > 15.1)  # χ²₁ quantile at 1e-4: what the gate refuses
    assert refused < 0.005, refused
    final = np.asarray(result.rollout.x)[:, -1, 1]
    assert np.all(np.abs(final - 355.0) < 1.5), final
    assert int(np.sum(result.kpis["solver_failures"])) == 0
