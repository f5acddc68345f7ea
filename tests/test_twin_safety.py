"""The twin's safety layer on the shipped building twin (KF + MPC, heaters boxed to 0-10 kW): outliers
gated, limits held, poisoned beliefs re-initialised.  Closed loops against the twin's own model as
the plant (seeded noise), vmapped over runs so one compilation serves every test."""

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jtwin.serve as serve
from jtwin.twin import DEFAULT_GATE, Twin, belief_is_healthy

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "building.toml"
WARMUP, LONGEST, AFTER = 8, 3, 48  # steps before a burst, longest burst, steps after it
T = WARMUP + LONGEST + AFTER + 1
RUNS = 48  # closed loops per batch (one compiled shape for every test here)
UMAX = 10.0  # configs/building.toml [controller] umax (umin = 0)


@pytest.fixture(scope="module")
def building():
    twin, state0 = serve.twin_from_config(str(CONFIG))
    hours = np.arange(T + twin.horizon)
    phase = 2 * np.pi * hours / 24
    weather = np.column_stack([5 + 5 * np.sin(phase - np.pi / 2), np.maximum(0.0, 0.5 * np.sin(phase - np.pi / 2))])
    return twin, state0, jnp.asarray(weather)


@eqx.filter_jit
def closed_loops(twin: Twin, state0, weather, w, v, bad, value):
    """``RUNS`` closed loops of ``T`` steps: plant ``x⁺ = A x + B u + E d + w``, reading ``y = H x + v`` except
    where ``bad`` [R, T, ny], there ``value``.  Returns inputs [R, T, m], estimates [R, T, n], states [R, T, n]
    and the final twin states."""
    model, N = twin.model, twin.horizon

    def run(w, v, bad, value):
        def one(carry, k):
            x, s = carry
            y = jnp.where(bad[k], value[k], model.H @ x + v[k])
            u, s = twin.step(s, y, k.astype(x.dtype), jax.lax.dynamic_slice_in_dim(weather, k, N))
            x_next = model.A @ x + model.B @ u + model.E @ weather[k] + w[k]
            return (x_next, s), (u, s.belief.mean, x)

        (_, final), (us, means, xs) = jax.lax.scan(one, (state0.belief.mean, state0), jnp.arange(T))
        return us, means, xs, final

    return jax.vmap(run)(w, v, bad, value)


def noise(twin, rng, runs):
    """Process and measurement noise [runs, T, n], [runs, T, ny] drawn from the twin's own Q and R."""
    lq, lr = (np.linalg.cholesky(np.asarray(c)) for c in (twin.model.Q, twin.model.R))
    w = rng.normal(size=(runs, T, lq.shape[0])) @ lq.T
    v = rng.normal(size=(runs, T, lr.shape[0])) @ lr.T
    return w, v


def outlier_cases(rng, ny):
    """Run 0: no outliers.  Then bursts of 1-3 steps from step WARMUP, in one channel (each in turn) or all,
    of readings ±10^e (e uniform in [3, 300]), ±inf and NaN: ``(bad [R, T, ny], value [R, T, ny], length [R])``."""
    bad, value = np.zeros((RUNS, T, ny), bool), np.zeros((RUNS, T, ny))
    specials = [np.inf, -np.inf, np.nan]
    length = np.zeros(RUNS, int)
    for r in range(1, RUNS):
        length[r] = 1 + (r - 1) % LONGEST
        channels = slice(None) if r % (ny + 1) == ny else (r % (ny + 1))
        steps = slice(WARMUP, WARMUP + length[r])
        if r <= len(specials) * LONGEST:
            value[r, steps, channels] = specials[(r - 1) // LONGEST]
        else:
            sign = rng.choice([-1.0, 1.0], size=(length[r], ny))
            value[r, steps, :] = sign * 10.0 ** rng.uniform(3, 300, size=(length[r], ny))
        bad[r, steps, channels] = True
    return bad, value, length


def test_outlier_bursts_never_push_inputs_out_of_the_box_and_leave_no_trace(building):
    """Fuzz: 47 bursts (1-3 steps, one channel or all, 1e3 to 1e300 either sign, ±inf, NaN) -> every input finite
    and in [0, 10] kW, and 48 normal steps after the burst within 0.5 kW of the twin that never saw one."""
    twin, state0, weather = building
    rng = np.random.default_rng(18)
    bad, value, length = outlier_cases(rng, twin.model.output_dim)
    w, v = (np.broadcast_to(a[:1], (RUNS,) + a.shape[1:]) for a in noise(twin, rng, 1))  # one plant noise path
    us, _, _, final = jax.device_get(closed_loops(twin, state0, weather, w, v, bad, value))
    assert np.all(np.isfinite(us)) and us.min() >= 0.0 and us.max() <= UMAX
    later = WARMUP + length + AFTER
    gap = np.abs(us[np.arange(RUNS), later] - us[0, later]).max(axis=1)
    assert gap.max() <= 0.5, (gap.max(), int(gap.argmax()))
    finite_outliers = (bad & np.isfinite(value)).any(axis=2).sum(axis=1)
    assert np.all(final.rejections >= finite_outliers)  # every finite outlier step was gated, not absorbed
    assert final.rejections[0] == 0 and final.resets[0] == 0 and np.all(final.fallbacks == 0)
    assert np.all(np.isfinite(final.belief.mean)) and np.all(np.isfinite(final.plan.objective))


def test_false_rejection_rate_is_the_gate_level(building):
    """48 x 60 steps of consistent readings: the gate at α = 1e-4 rejects about α of them (0.29 expected)."""
    twin, state0, weather = building
    w, v = noise(twin, np.random.default_rng(1), RUNS)
    none = np.zeros(v.shape, bool)
    _, means, xs, final = jax.device_get(closed_loops(twin, state0, weather, w, v, none, np.zeros(v.shape)))
    assert DEFAULT_GATE == twin.gate == 1e-4
    assert final.rejections.sum() <= 2 and final.resets.sum() == 0
    assert np.abs(means - xs)[:, WARMUP:, :3].max() < 1.0  # and the gated KF tracks the zones


def test_a_plant_that_really_moved_is_accepted_after_reset_after_rejections(building):
    """Every state 3 degC warmer at once (far outside the gate): rejected exactly ``reset_after`` times, then the
    belief is re-initialised (widened) once and re-synchronised: within 1 degC of the plant 8 steps after the
    jump."""
    twin, state0, weather = building
    w, v = noise(twin, np.random.default_rng(2), RUNS)
    w[:, WARMUP, :] += 3.0
    none = np.zeros(v.shape, bool)
    us, means, xs, final = jax.device_get(closed_loops(twin, state0, weather, w, v, none, np.zeros(v.shape)))
    assert np.all(final.resets == 1) and np.all(final.rejections == twin.reset_after)
    error = np.abs(means - xs)[:, :, :3].max(axis=(0, 2))
    assert error[WARMUP + 1] > 2.5 and error[WARMUP + 8 :].max() < 1.0, error
    assert us.min() >= 0.0 and us.max() <= UMAX


@pytest.mark.slow  # 39 s; the fuzz test (1e300 bursts) and the HTTP reset test run by default
def test_a_poisoned_state_is_reinitialised_inside_the_step(building):
    """An incoming belief with a non-PSD covariance, a NaN mean or a NaN plan, or a NaN forecast: finite, boxed
    inputs, the reset / fallback flags set and counted, and a healthy belief stored."""
    twin, state0, weather = building
    step = eqx.filter_jit(Twin.step)
    y, d = jnp.array([20.5, 20.2, 20.1]), weather[: twin.horizon]
    poisons = {
        "cov = -I": eqx.tree_at(lambda s: s.belief.cov, state0, -jnp.eye(6)),
        "asymmetric cov": eqx.tree_at(lambda s: s.belief.cov, state0, jnp.eye(6) + jnp.triu(jnp.ones((6, 6)), 1)),
        "NaN mean": eqx.tree_at(lambda s: s.belief.mean, state0, jnp.full(6, jnp.nan)),
        "inf plan": eqx.tree_at(lambda s: s.plan.z, state0, jnp.full_like(state0.plan.z, jnp.inf)),
    }
    for name, state in poisons.items():
        assert not belief_is_healthy(state.belief) or name == "inf plan", name
        u, s = step(twin, state, y, 0.0, d)
        assert np.all(np.isfinite(u)) and np.all((u >= 0) & (u <= UMAX)), name
        assert bool(belief_is_healthy(s.belief)) and all(np.isfinite(a).all() for a in jax.tree.leaves(s.plan)), name
        assert int(s.reset) == int(s.resets) == (name != "inf plan"), name
        u2, s2 = step(twin, s, y, 1.0, weather[1 : 1 + twin.horizon])  # and the next normal step is normal
        assert int(s2.reset) == 0 and int(s2.fallback) == 0 and np.all((u2 >= 0) & (u2 <= UMAX)), name
    u, s = step(twin, state0, y, 0.0, d.at[3, 0].set(jnp.nan))  # the MPC cannot solve: shifted plan, projected
    assert int(s.fallback) == int(s.fallbacks) == 1 and int(s.reset) == 0  # d[0] is finite: the prediction is kept
    np.testing.assert_allclose(u, twin.project_input(twin.controller.shift(state0.plan).u[0]))
    assert bool(belief_is_healthy(s.belief))


def test_gate_and_reset_after_are_validated():
    twin, _ = serve.twin_from_config(str(CONFIG))
    for field, value in (("gate", 1.5), ("gate", 0.0), ("reset_after", 0)):
        with pytest.raises(ValueError, match=f"^{field}:"):
            Twin(twin.model, twin.estimator, twin.controller, **{field: value})
