"""Every controller in the twin's loop (issue #17): Twin with TubeMPC, ChanceMPC, PolytopicMPC, LQR and a
user's controller against hand-written loops (numpy Kalman filter, scipy DARE, the controllers' own
closed loops), the safety layer through the interface, and the tube guarantee on the twin's estimate."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import jtwin as jt
from jtwin.control import LQR, AbstractController, ChanceMPC, ControlInfo, PolytopicMPC, TubeMPC
from jtwin.qp import RESULTS
from jtwin.simulate import noise_closed_loops
from jtwin.twin import Twin
from jtwin.uncertainty import Polytope

from test_tube import A, B, Q, R, U, W, X  # Mayne, Seron & Raković (2005): double integrator, x₂ ≤ 2, |u| ≤ 1, ‖w‖∞ ≤ 0.1

X0 = np.array([-5.0, -2.0])
STEPS = 25


def model(q=1e-2, r=1e-10):
    """The twin's model: full state measured (noise variance ``r``), process noise ``q I`` in the KF."""
    return jt.models.LinearModel(A, B, np.eye(2), q * np.eye(2), r * np.eye(2))


def twin_loop(twin, ys, cov0):
    """``u`` [T, m] of ``twin.step`` on the measurements ``ys`` [T, 2] (a plain Python loop)."""
    step = eqx.filter_jit(twin.step)
    state = twin.init(jnp.asarray(ys[0]), cov0)
    us = []
    for k, y in enumerate(ys):
        u, state = step(state, jnp.asarray(y), jnp.asarray(float(k)))
        us.append(np.asarray(u))
    return np.asarray(us), state


def closed_loop(twin, w, cov0, v=None):
    """True plant ``x⁺ = Ax + Bu + w`` under ``twin`` (measurements ``y = x + v``): ``(x [T+1, 2], u [T, 1])``."""
    step = eqx.filter_jit(twin.step)
    x = X0.copy()
    state = twin.init(jnp.asarray(X0), cov0)
    xs, us = [x], []
    for k in range(w.shape[0]):
        y = x + (0.0 if v is None else v[k])
        u, state = step(state, jnp.asarray(y), jnp.asarray(float(k)))
        u = np.asarray(u)
        x = A @ x + B @ u + w[k]
        xs.append(x)
        us.append(u)
    return np.asarray(xs), np.asarray(us)


def hand_kf_loop(controller_input, w, v, q, r, cov0):
    """The same loop with a numpy Kalman filter (update with y_k, act on the posterior, predict) and
    ``controller_input(mean, cov) -> u`` for the control: ``(x, u)``."""
    x, mean, P = X0.copy(), X0.copy(), cov0.copy()
    Qn, Rn = q * np.eye(2), r * np.eye(2)
    xs, us = [x], []
    for k in range(w.shape[0]):
        y = x + v[k]
        S = P + Rn
        G = P @ np.linalg.inv(S)
        mean = mean + G @ (y - mean)
        P = (np.eye(2) - G) @ P @ (np.eye(2) - G).T + G @ Rn @ G.T
        u = np.asarray(controller_input(mean, P))
        x = A @ x + B @ u + w[k]
        mean, P = A @ mean + B @ u, A @ P @ A.T + Qn
        xs.append(x)
        us.append(u)
    return np.asarray(xs), np.asarray(us)


@pytest.mark.slow  # 34 s
def test_tube_twin_equals_the_tube_controllers_own_closed_loop():
    """Measuring the state exactly, the tube twin is TubeMPC.simulate's loop (u = v + K(x − z))."""
    tube = TubeMPC(A, B, 9, Q, R, X, U, W)
    w = np.random.default_rng(0).uniform(-0.1, 0.1, (STEPS, 2))
    twin = Twin(model(), jt.estimation.KF(), tube)
    xs, us = closed_loop(twin, w, 1e-10 * np.eye(2))
    ref = tube.simulate(jnp.asarray(X0), jnp.asarray(w)[None])
    np.testing.assert_allclose(us, np.asarray(ref.u[0]), atol=1e-6)
    np.testing.assert_allclose(xs, np.asarray(ref.x[0]), atol=1e-6)


def test_lqr_twin_equals_numpy_kf_and_scipy_dare_gain():
    q, r = 1e-2, 1e-2
    rng = np.random.default_rng(1)
    w, v = rng.normal(0, 0.05, (STEPS, 2)), rng.normal(0, 0.1, (STEPS, 2))
    P = scipy.linalg.solve_discrete_are(A, B, Q, R)
    K = -np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
    cov0 = 0.1 * np.eye(2)
    twin = Twin(model(q, r), jt.estimation.KF(), LQR(A, B, Q, R, umin=-1.0, umax=1.0), gate=None)
    xs, us = closed_loop(twin, w, cov0, v)
    xr, ur = hand_kf_loop(lambda mean, cov: np.clip(K @ mean, -1.0, 1.0), w, v, q, r, cov0)
    assert np.abs(ur).max() == pytest.approx(1.0)  # the saturation is active: the projection is exercised
    np.testing.assert_allclose(us, ur, atol=1e-9)
    np.testing.assert_allclose(xs, xr, atol=1e-9)


@pytest.mark.slow  # 29 s (chance); the polytopic case is cheaper but shares the parametrisation
@pytest.mark.parametrize("kind", ["chance", "polytopic"])
def test_chance_and_polytopic_twins_equal_hand_kf_loops(kind):
    """The chance twin plans from the filter's mean *and covariance* at every step; the hand loop passes
    the numpy KF's covariance to ChanceMPC.solve (a twin that passed any other covariance would differ)."""
    q, r = 1e-3, 1e-3
    rng = np.random.default_rng(2)
    w, v = rng.normal(0, np.sqrt(q), (STEPS, 2)), rng.normal(0, np.sqrt(r), (STEPS, 2))
    cov0 = 0.01 * np.eye(2)
    Xc = Polytope.box([-np.inf, -np.inf], [np.inf, 0.5])
    if kind == "chance":
        ctrl = ChanceMPC(A, B, 9, Q, R, Xc, U, q * np.eye(2), eps=0.05, eps_abs=1e-9, eps_rel=1e-9)
        plan = lambda mean, cov: ctrl.solve(jnp.asarray(mean), jnp.asarray(cov)).u[0]  # noqa: E731
    else:
        ctrl = PolytopicMPC(A, B, 9, Q, R, Xc, U, eps_abs=1e-9, eps_rel=1e-9)
        plan = lambda mean, cov: ctrl.solve(jnp.asarray(mean)).u[0]  # noqa: E731
    twin = Twin(model(q, r), jt.estimation.KF(), ctrl, gate=None)
    xs, us = closed_loop(twin, w, cov0, v)
    xr, ur = hand_kf_loop(lambda mean, cov: np.clip(plan(mean, cov), -1.0, 1.0), w, v, q, r, cov0)
    np.testing.assert_allclose(us, ur, atol=1e-6)
    np.testing.assert_allclose(xs, xr, atol=1e-6)
    if kind == "chance":  # the back-off follows the covariance: planning with cov = 0 gives other inputs
        _, u0 = hand_kf_loop(lambda mean, cov: np.clip(plan(mean, 0 * cov), -1.0, 1.0), w, v, q, r, cov0)
        assert np.abs(u0 - ur).max() > 1e-3


class Flaky(AbstractController):
    """A user's controller: ``u = Kx`` with a one-step plan ``[u, u_next]``; it reports a failed solve
    (and a NaN input) on odd steps, so the twin must apply the plan's fallback."""

    K: jax.Array
    horizon: int = eqx.field(static=True, default=3)

    @property
    def n(self):
        return 2

    @property
    def m(self):
        return 1

    @property
    def disturbance_dim(self):
        return 0

    def input_bounds(self):
        return np.array([-0.5]), np.array([0.5])

    def init(self, mean, cov, d):
        return (jnp.zeros(2), jnp.zeros((), jnp.int32))

    def step(self, state, mean, cov, d):
        _, k = state
        u = self.K @ mean
        bad = k % 2 == 1
        status = RESULTS.where(bad, RESULTS.max_iterations_reached, RESULTS.successful)
        info = ControlInfo(status, jnp.zeros((), jnp.int32), jnp.zeros(()))
        return jnp.where(bad, jnp.nan, u), (jnp.concatenate([u, 7.0 + u]), k + 1), info

    def fallback(self, state, mean, cov, d):
        plan, k = state
        return plan[1:], (plan, k + 1)


def test_users_controller_plugs_in_and_its_failures_fall_back_through_the_interface():
    K = jnp.array([[-0.3, -0.8]])
    twin = Twin(model(), jt.estimation.KF(), Flaky(K), gate=None)
    us, state = twin_loop(twin, np.tile(X0, (6, 1)), 1e-10 * np.eye(2))
    # even steps: K x̂ clipped to ±0.5; odd steps: the fallback 7 + u_prev, projected to 0.5
    expected = np.clip(np.asarray(K) @ X0, -0.5, 0.5)
    np.testing.assert_allclose(us[0::2, 0], expected[0], atol=1e-8)
    np.testing.assert_allclose(us[1::2, 0], 0.5)
    assert int(state.fallbacks) == 3 and int(state.failures) == 3
    assert not bool(jt.qp.is_successful(state.status)) and int(state.fallback) == 1  # the last (odd) step fell back


def test_twin_refuses_what_is_not_a_controller_and_mismatched_disturbances():
    with pytest.raises(ValueError, match="^controller: expected a jtwin.control.AbstractController"):
        Twin(model(), jt.estimation.KF(), object())
    withd = jt.models.LinearModel(A, B, np.eye(2), np.eye(2), np.eye(2), E=np.ones((2, 1)))
    mpc = jt.control.LinearMPC(A, B, 5, Q, R, E=np.ones((2, 2)))
    with pytest.raises(ValueError, match="^controller: expected a forecast of 1 disturbance"):
        Twin(withd, jt.estimation.KF(), mpc)


@pytest.mark.parametrize(
    "kind", ["lqr", pytest.param("chance", marks=pytest.mark.slow), "polytopic", pytest.param("tube", marks=pytest.mark.slow)]
)  # chance 26 s, tube 33 s (make test-slow); the output-feedback tube twin runs by default below
def test_config_controller_kinds_build_twins_that_step(kind, tmp_path):
    """``[controller] kind`` selects the controller; the twin steps with it and keeps the coolant in its box."""
    from jtwin.config import load_config
    from jtwin.run import build_twin

    text = Path("configs/cstr.toml").read_text().replace('kind = "mpc"', f'kind = "{kind}"')
    path = tmp_path / "cstr.toml"
    path.write_text(text)
    cfg = load_config(path)
    plant = cfg.plant.build()
    twin = build_twin(cfg, plant)
    expected = {"lqr": LQR, "chance": ChanceMPC, "polytopic": PolytopicMPC, "tube": TubeMPC}[kind]
    assert type(twin.controller) is expected
    # a confident belief: at cov0 = 0.01 I (Ca's std 0.1 mol/L) the chance twin's input back-off through
    # K exceeds the coolant range, the tightened problem is infeasible and the twin falls back
    state = twin.init(jnp.array([0.5, 350.0]), 1e-4 * jnp.eye(2))
    u, state = eqx.filter_jit(twin.step)(state, jnp.array([351.0]), jnp.asarray(0.0), jnp.zeros((twin.horizon, 2)))
    assert 285.0 <= float(u[0]) <= 315.0 and int(state.fallbacks) == 0


def test_config_refuses_an_unknown_controller_kind(tmp_path):
    from jtwin.config import ConfigError, load_config

    path = tmp_path / "cstr.toml"
    path.write_text(Path("configs/cstr.toml").read_text().replace('kind = "mpc"', 'kind = "pid"'))
    with pytest.raises(ConfigError, match="^controller.kind: expected one of"):
        load_config(path)


def _kf_tube_setting(w_half=0.05, v_half=0.02):
    """Bounded uniform noise ``w ∈ W``, ``v ∈ V``; the KF's covariances are the uniform laws' variances."""
    from jtwin.control import output_feedback_tube_sets, steady_state_gain

    Wb = Polytope.box([-w_half] * 2, [w_half] * 2)
    Vb = Polytope.box([-v_half] * 2, [v_half] * 2)
    q, r = w_half**2 / 3, v_half**2 / 3
    G, P = steady_state_gain(A, np.eye(2), q * np.eye(2), r * np.eye(2))
    E, W_hat, X_tight = output_feedback_tube_sets(A, np.eye(2), G, Wb, Vb, X)
    return q, r, P, E, W_hat, X_tight


def _batch_loop(twin, cov0, w, v):
    """Closed loops of ``twin`` on the true plant for noise sequences ``w, v`` [S, T, 2]."""
    return noise_closed_loops(twin, A, B, X0, cov0, w, v)


def _noise(S, w_half, v_half, seed):
    rng = np.random.default_rng(seed)
    w = rng.uniform(-w_half, w_half, (S, STEPS, 2))
    w[: S // 2] = w_half * np.sign(w[: S // 2])  # half the sequences on W's vertices
    v = rng.uniform(-v_half, v_half, (S, STEPS, 2))
    return jnp.asarray(w), jnp.asarray(v)


@pytest.mark.parametrize("sequences", [100, pytest.param(1000, marks=pytest.mark.slow)])
def test_output_feedback_tube_twin_never_violates_and_the_nominal_twin_does(sequences):
    """The tube twin acts on the KF's estimate (started at its steady-state covariance, so its gain is
    the constant G of the error set E); tightened by E and driven by Ŵ, x₂ ≤ 2 and |u| ≤ 1 hold surely."""
    q, r, P, _, W_hat, X_tight = _kf_tube_setting()
    kf_model = model(q, r)
    tube = TubeMPC(A, B, 9, Q, R, X_tight, U, W_hat)
    plain = TubeMPC(A, B, 9, Q, R, X, U, W_hat, tighten=False)
    w, v = _noise(sequences, 0.05, 0.02, seed=3)
    xs, us = _batch_loop(Twin(kf_model, jt.estimation.KF(), tube, gate=None), jnp.asarray(P), w, v)
    assert np.asarray(xs)[..., 1].max() <= 2.0 + 1e-9
    assert np.abs(np.asarray(us)).max() <= 1.0 + 1e-9
    bad, _ = _batch_loop(Twin(kf_model, jt.estimation.KF(), plain, gate=None), jnp.asarray(P), w, v)
    assert np.asarray(bad)[..., 1].max() > 2.0 + 1e-3
