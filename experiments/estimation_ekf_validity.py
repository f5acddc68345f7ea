"""EKF validity ratio vs EKF/UKF accuracy: the spec's claim, reproduced.

Spec (D): the EKF is valid only when ``½ · L_f · tr(Σ_k) ≪ ‖Q‖^½`` (the second-order bias it
neglects is small against the process noise); jtwin reports the ratio per step.  This script
filters the scalar plant

    x[k+1] = 0.5 x[k] + 2 cos(x[k]) + w,   w ~ N(0, 0.2²)      (|f''| ≤ 2: curvature)
    y[k]   = x[k] + v,                       v ~ N(0, r²)

with the EKF and the UKF over 200 scenarios × 200 steps for increasing measurement noise r
(so increasing posterior variance Σ and ratio), and prints, per setting, the median validity
ratio, both filters' RMSE against the true state and their NEES (consistency: 1 is ideal).
Expected: when the ratio is ≪ 1 the EKF and UKF agree; when it is ≳ 1 the EKF is both less
accurate and overconfident (NEES ≫ 1) while the UKF stays close to consistent.

    .venv/bin/python experiments/estimation_ekf_validity.py
"""

import jax
import jax.numpy as jnp
import numpy as np

import jtwin  # noqa: F401  (float64)
from jtwin.estimation import EKF, UKF, run_filter, validity_ratio
from jtwin.models import FunctionModel

Q_STD, SCENARIOS, STEPS, BURN_IN = 0.2, 200, 200, 20


def plant(r_std: float) -> FunctionModel:
    return FunctionModel(
        lambda x, u, t: 0.5 * x + 2.0 * jnp.cos(x),
        lambda x, u, t: x,
        np.array([[Q_STD**2]]),
        np.array([[r_std**2]]),
    )


def evaluate(r_std: float) -> dict:
    model = plant(r_std)
    keys = jax.random.split(jax.random.PRNGKey(int(r_std * 1000)), SCENARIOS)
    trajs = jax.vmap(lambda k: model.simulate(k, jnp.array([1.0]), STEPS))(keys)

    def stats(estimator):
        res = jax.vmap(lambda ys: run_filter(estimator, model, jnp.array([1.0]), jnp.eye(1), ys))(trajs.ys)
        err = (res.means - trajs.xs)[:, BURN_IN:, 0]
        var = res.covs[:, BURN_IN:, 0, 0]
        return res, float(jnp.sqrt(jnp.mean(err**2))), float(jnp.mean(err**2 / var))

    ekf, ekf_rmse, ekf_nees = stats(EKF())
    ukf, ukf_rmse, ukf_nees = stats(UKF())
    ratio = float(jnp.median(ekf.diagnostics["validity_ratio"][:, BURN_IN:]))
    # The same ratio on the UKF's (consistent) beliefs: an overconfident EKF understates its own Σ.
    at_ukf = jax.vmap(jax.vmap(lambda m, P: validity_ratio(model, m, P, jnp.zeros(0))))(ukf.means, ukf.covs)
    return dict(
        r=r_std, ratio=ratio, ratio_ukf=float(jnp.median(at_ukf[:, BURN_IN:])),
        ekf_rmse=ekf_rmse, ukf_rmse=ukf_rmse, ekf_nees=ekf_nees, ukf_nees=ukf_nees,
    )


def main() -> None:
    print("ratio: median validity ratio on the EKF's beliefs; @UKF: on the UKF's beliefs")
    columns = ("r", "ratio", "@UKF", "EKF RMSE", "UKF RMSE", "EKF/UKF", "EKF NEES", "UKF NEES")
    print(" ".join(f"{c:>{w}}" for c, w in zip(columns, (6, 7, 7, 9, 9, 8, 9, 9))))
    rows = []
    for r_std in (0.02, 0.1, 0.3, 0.6, 1.0):
        row = evaluate(r_std)
        rows.append(row)
        print(
            f"{row['r']:6.2f} {row['ratio']:7.3f} {row['ratio_ukf']:7.3f} {row['ekf_rmse']:9.4f} "
            f"{row['ukf_rmse']:9.4f} {row['ekf_rmse'] / row['ukf_rmse']:8.3f} "
            f"{row['ekf_nees']:9.2f} {row['ukf_nees']:9.2f}"
        )
    small = [r for r in rows if r["ratio_ukf"] < 0.05]
    large = [r for r in rows if r["ratio_ukf"] >= 0.3]
    if small:
        gap = max(abs(r["ekf_rmse"] / r["ukf_rmse"] - 1) for r in small)
        print(f"ratio < 0.05: EKF and UKF RMSE agree within {100 * gap:.2f}%")
    if large:
        worst = min(r["ekf_rmse"] / r["ukf_rmse"] for r in large)
        nees = max(r["ekf_nees"] for r in large)
        print(f"ratio >= 0.3: EKF RMSE is at least {worst:.2f}x the UKF's; EKF NEES up to {nees:.1f}")


if __name__ == "__main__":
    main()
