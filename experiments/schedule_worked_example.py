"""The spec's schedulability example, then the same question with k and F measured on this machine.

Spec: W(n) = k n^3 with k = 200 flops, F = 1e9 flop/s, T = 20 ms, U_other = 0.5,
tau = 0.5 ms  ->  n_max = floor(((1 - 0.5 - 0.025) * 1e9 * 0.02 / 200)^(1/3)) = 36.
Then: fit k for a Kalman covariance step from XLA's cost analysis and time it.

    .venv/bin/python experiments/schedule_worked_example.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import jtwin  # noqa: F401  (float64)
from jtwin import schedule

K, F, T, U_OTHER, TAU = 200, 1e9, 0.020, 0.5, 0.0005


def kalman_covariance(n):
    rng = np.random.default_rng(n)

    def step(a, p, h, r):
        p = a @ p @ a.T
        s = h @ p @ h.T + r
        gain = jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(s), True), h @ p).T
        return p - gain @ s @ gain.T

    return step, (jnp.asarray(rng.normal(size=(n, n))), 2 * jnp.eye(n), jnp.eye(n), jnp.eye(n))


def main() -> None:
    n_max = schedule.max_state_dim(K, F, T, U_OTHER, TAU)
    budget = (1 - U_OTHER - TAU / T) * F * T / K
    print(f"spec: budget n^3 <= {budget:.0f} (cube root {budget ** (1 / 3):.3f}) -> n_max = {n_max}  (spec: 36)")
    for n in (n_max, n_max + 1):
        print(f"  n = {n}: utilisation {schedule.twin_utilisation(n, K, F, T, U_OTHER, TAU):.4f}, "
              f"schedulable: {schedule.twin_schedulable(n, K, F, T, U_OTHER, TAU)}")
    assert n_max == 36
    print()
    print(schedule.schedule_report(kalman_covariance, 36, T, u_other=U_OTHER, comm_time=TAU, ns=[16, 32, 48, 64]))


if __name__ == "__main__":
    main()
