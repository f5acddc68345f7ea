"""The twin in closed loop: against hand-written loops (filterpy KF + MPC), delay compensation, sharding."""

import os
import subprocess
import sys
import textwrap

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from filterpy.kalman import KalmanFilter

import jtwin as jt
from jtwin.qp import is_successful
from jtwin.simulate import make_scenarios, scenario_noise, simulate
from jtwin.twin import Twin

# a lightly damped 2-mass system, discretised exactly; one input, position measured, one disturbance
AC = np.array([[0, 1, 0, 0], [-2, -0.1, 1, 0], [0, 0, 0, 1], [1, 0, -1, -0.1]], float)
BC = np.array([[0], [1.0], [0], [0]])
EC = np.array([[0], [0], [0], [0.5]])
H = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
STEPS, HORIZON = 30, 10


def plant(q=1e-3, r=1e-2):
    return jt.models.LinearModel.from_continuous(AC, BC, H, q * np.eye(4), r * np.eye(2), 0.2, Ec=EC)


def make_twin(model, delay=0, compensate=True):
    return Twin.from_linear_model(
        model, jt.estimation.KF(), HORIZON, delay=delay, compensate=compensate,
        Q=np.diag([10.0, 0.1, 1.0, 0.1]), R=0.1 * np.eye(1), xref=np.array([1.0, 0, 0.5, 0]),
        umin=-2.0, umax=2.0, alpha=0.05, eps_abs=1e-8, eps_rel=1e-8, max_iter=20000,
    )  # fmt: skip


def scenarios(model, count=3, seed=0):
    d = 0.3 * np.sin(np.arange(STEPS + HORIZON) / 3.0)[:, None]
    return make_scenarios(jax.random.PRNGKey(seed), count, jnp.zeros(4), jnp.asarray(d), 1, x0_std=0.3)


def noiseless(model):
    zero = lambda f: jnp.zeros_like(f)  # noqa: E731
    return eqx.tree_at(lambda m: (m.Q_factor, m.R_factor), model, (zero(model.Q_factor), zero(model.R_factor)))


@pytest.mark.slow  # 44 s; the twin loop is checked against a hand loop by test_kf_twin_equals_hand_loop_with_filterpy
def test_perfect_model_reproduces_nominal_mpc_loop():
    true = noiseless(plant())
    twin_model = eqx.tree_at(lambda m: m.Q_factor, plant(), jnp.zeros((4, 4)))  # exact prediction, cov stays 0
    twin = make_twin(twin_model)
    # one scenario: a batch of problems shares its ADMM step-size adaptation, so batched solves
    # agree with single solves only to the solver tolerance; a batch of one is bit-comparable
    sc = scenarios(true, count=1)
    sc = eqx.tree_at(lambda s: s.mean0, sc, sc.x0)  # the twin knows the initial state exactly
    out = simulate(true, twin, sc, STEPS, np.zeros((4, 4)))
    mpc = twin.controller
    for i in range(1):
        x = np.asarray(sc.x0[i])
        ws = mpc.shift(mpc.solve(jnp.asarray(x), jnp.zeros((HORIZON, 1))))  # Twin.init's plan
        for k in range(STEPS):
            sol = mpc.solve(jnp.asarray(x), sc.d[i, k : k + HORIZON], warm_start=ws)
            np.testing.assert_allclose(out.u[i, k], sol.u[0], atol=1e-8)
            np.testing.assert_allclose(out.x[i, k], x, atol=1e-8)
            x = np.asarray(true.A @ x + true.B @ sol.u[0] + true.E @ sc.d[i, k])
            ws = mpc.shift(sol)


def test_kf_twin_equals_hand_loop_with_filterpy():
    model = plant()
    twin = make_twin(model)
    sc = scenarios(model, count=1, seed=1)
    cov0 = 0.2 * np.eye(4)
    out = simulate(model, twin, sc, STEPS, cov0)
    mpc = twin.controller
    A, B, E = (np.asarray(a) for a in (model.A, model.B, model.E))
    for i in range(1):
        kf = KalmanFilter(dim_x=4, dim_z=2, dim_u=2)
        kf.x, kf.P = np.asarray(sc.mean0[i], float).copy(), cov0.copy()
        kf.F, kf.B, kf.H, kf.Q, kf.R = A, np.hstack([B, E]), np.asarray(model.H), np.asarray(model.Q), np.asarray(model.R)
        x = np.asarray(sc.x0[i])
        ws = mpc.shift(mpc.solve(jnp.asarray(kf.x), jnp.zeros((HORIZON, 1))))  # Twin.init's plan
        for k in range(STEPS):
            w, v, _ = (np.asarray(a) for a in scenario_noise(model, jax.tree_util.tree_map(lambda a: a[i], sc), k))
            y = np.asarray(model.H) @ x + v
            np.testing.assert_allclose(out.xhat[i, k], kf.x, atol=1e-7)  # prior mean of x[k]
            kf.update(y)
            forecast = np.array(sc.d[i, k : k + HORIZON] + sc.forecast_error[i, k : k + HORIZON])
            forecast[0] = np.asarray(sc.d[i, k])
            sol = mpc.solve(jnp.asarray(kf.x), jnp.asarray(forecast), warm_start=ws)
            np.testing.assert_allclose(out.u[i, k], sol.u[0], atol=1e-7)
            kf.predict(u=np.concatenate([np.asarray(sol.u[0]), np.asarray(sc.d[i, k])]))
            x_last = x
            x = A @ x + B @ np.asarray(sol.u[0]) + E @ np.asarray(sc.d[i, k]) + w
            ws = mpc.shift(sol)
        np.testing.assert_allclose(out.x[i, -1], x_last, atol=1e-7)


def closed_loop_cost(out, mpc):
    e = np.asarray(out.x) - np.asarray(mpc.xref[0])
    u = np.asarray(out.u)
    return np.einsum("stn,nm,stm->s", e, np.asarray(mpc.Q), e) + np.einsum("stn,nm,stm->s", u, np.asarray(mpc.R), u)


@pytest.mark.slow  # 68 s (make test-slow)
def test_delay_compensation_removes_the_cost_of_a_known_delay():
    true = eqx.tree_at(lambda m: m.Q_factor, plant(), jnp.zeros((4, 4)))  # measurement noise only
    sc = scenarios(true, count=4, seed=2)
    costs = {}
    for name, delay, comp in (("none", 0, True), ("delayed", 3, False), ("compensated", 3, True)):
        twin = make_twin(true, delay=delay, compensate=comp)
        costs[name] = closed_loop_cost(simulate(true, twin, sc, STEPS, 0.1 * np.eye(4)), twin.controller).mean()
    assert costs["delayed"] > 1.05 * costs["none"], costs  # the delay costs something measurable...
    # ...and prediction gets it back, up to the first D samples without any measurement
    recovered = (costs["delayed"] - costs["compensated"]) / (costs["delayed"] - costs["none"])
    assert recovered > 0.95 and costs["compensated"] < 1.05 * costs["none"], costs


@pytest.mark.slow  # 55 s
def test_chunked_run_equals_single_run_and_missing_data_is_skipped():
    model = plant()
    twin = make_twin(model)
    sc = scenarios(model, count=2)
    sc = eqx.tree_at(lambda s: s.dropout, sc, jnp.full((2,), 0.3))
    one = simulate(model, twin, sc, 12, 0.1 * np.eye(4))
    chunked = simulate(model, twin, sc, 12, 0.1 * np.eye(4), chunk=5)
    for a, b in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(chunked)):
        np.testing.assert_allclose(a, b, atol=1e-12)
    missing = np.isnan(np.asarray(one.y))
    assert 0.1 < missing.mean() < 0.5
    np.testing.assert_array_equal(np.asarray(one.measured), (~missing).sum(-1))
    assert np.all(np.isfinite(np.asarray(one.u))) and np.all(np.isfinite(np.asarray(one.xhat)))


@pytest.mark.slow  # 24 s
def test_repeated_simulate_reuses_the_compiled_loop():
    """A second simulate call on new scenarios of the same shapes compiles nothing."""
    model = plant()
    twin = make_twin(model)
    cov0 = 0.1 * np.eye(4)
    simulate(model, twin, scenarios(model, count=2, seed=1), 6, cov0, chunk=3)
    compiles = []

    def listen(name, secs, **kwargs):
        compiles.append(name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        out = simulate(model, twin, scenarios(model, count=2, seed=2), 6, cov0, chunk=3)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert np.all(np.isfinite(np.asarray(out.u)))
    assert "/jax/core/compile/backend_compile_duration" not in compiles, compiles


@pytest.mark.slow  # 56 s; float32 QP solves are checked in test_qp (test_float32_runs)
def test_float32_controller_matches_float64_twin():
    """Mixed precision: the MPC in float32 (at eps 1e-4), model and KF in float64, gives the
    float64 twin's closed loop to the solver tolerance; outputs keep float64."""
    model = plant()
    twin = Twin.from_linear_model(
        model, jt.estimation.KF(), HORIZON, Q=np.diag([10.0, 0.1, 1.0, 0.1]), R=0.1 * np.eye(1),
        xref=np.array([1.0, 0, 0.5, 0]), umin=-2.0, umax=2.0, alpha=0.05, eps_abs=1e-4, eps_rel=1e-4,
    )  # fmt: skip
    twin32 = twin.with_controller_dtype(jnp.float32)
    assert twin32.controller.A.dtype == jnp.float32 and twin32.model.A.dtype == jnp.float64
    sc = scenarios(model, count=3)
    out64 = simulate(model, twin, sc, 20, 0.1 * np.eye(4))
    out32 = simulate(model, twin32, sc, 20, 0.1 * np.eye(4))
    assert out32.u.dtype == jnp.float64 and out32.xhat.dtype == jnp.float64
    assert np.all(np.asarray(is_successful(out32.status))) and np.all(np.asarray(is_successful(out64.status)))
    np.testing.assert_allclose(out32.u, out64.u, atol=1e-3)  # inputs within [-2, 2]; eps 1e-4 solves
    np.testing.assert_allclose(out32.x, out64.x, atol=1e-3)
    with pytest.raises(ValueError, match="dtype"):
        twin.with_controller_dtype(jnp.int32)


def test_twin_rejects_inconsistent_parts():
    model = plant()
    other = jt.control.LinearMPC(np.eye(2), np.ones((2, 1)), 5, np.eye(2), np.eye(1))
    with pytest.raises(ValueError, match="^controller:"):
        Twin(model, jt.estimation.KF(), other)
    with pytest.raises(ValueError, match="^delay:"):
        make_twin(model, delay=-1)
    with pytest.raises(ValueError, match="^mean0:"):
        make_twin(model).init(np.zeros(3), np.eye(4))
    with pytest.raises(ValueError, match="^scenarios.d:"):
        sc = scenarios(model)
        simulate(model, make_twin(model), sc, STEPS + 5, np.eye(4))


SHARDED = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import jax, numpy as np
    from test_twin import make_twin, plant, scenarios, STEPS
    from jtwin.simulate import simulate
    assert len(jax.devices()) == 8
    model = plant()
    for count in (8, 6):   # 6 scenarios over 8 devices are padded
        sc = scenarios(model, count=count, seed=3)
        a = simulate(model, make_twin(model), sc, 8, 0.1 * np.eye(4), shard=True)
        b = simulate(model, make_twin(model), sc, 8, 0.1 * np.eye(4), shard=False)
        print(count, max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))))
    """
)


@pytest.mark.slow  # 66 s; sharding over a device mesh is also tested by test_distributed_devices (consensus ADMM)
def test_sharded_simulation_equals_single_device():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    code = SHARDED.format(tests=os.path.dirname(__file__))
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    diffs = dict(line.split() for line in res.stdout.strip().splitlines()[-2:])
    assert float(diffs["8"]) <= 1e-12  # a multiple of the device count: the same computation
    # padding adds problems to the MPC batch, whose ADMM shares its step size: equal to solver tolerance
    assert float(diffs["6"]) <= 1e-4
