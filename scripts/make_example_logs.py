"""Write the example logs under examples/ that the README's `jtwin train` and `jtwin drift` commands use.

* ``examples/building_log.csv``: two weeks of hourly readings of a 3-zone building like the one of
  ``configs/building.toml`` but heavier (true ``c_air = 1.2``, ``c_wall = 12``, ``r_aw = 0.6`` against
  the config's 1, 10, 0.5; the config's noise), heated by a
  random on/off schedule (0 or 6 kW per zone, held 2 h) on the January TMY3 weather, 5 % of
  readings lost — the plant log a historian would export (``jtwin train``).
* ``examples/drift_ref.csv`` and ``examples/drift_new.csv``: two 400-sample windows of the same
  plant's inputs (heater power, outdoor temperature) and one-step prediction residuals of zone 1
  (``r_T1``); the new window is a colder spell (outdoor temperature 4 °C lower) on an unchanged
  plant, so ``jtwin drift`` decides **retrain** (covariate shift), not redesign.

Deterministic (fixed seeds): rerunning rewrites the same files.  Run: ``python scripts/make_example_logs.py``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jtwin.learn import synthetic_log
from jtwin.logs import save_log
from jtwin.models.library import BuildingRC, load_tmy3_greensboro

OUT = Path(__file__).resolve().parents[1] / "examples"
HOURS = 14 * 24
TRUTH = BuildingRC(3, c_air=1.2, c_wall=12.0, r_aw=0.6)  # the "real" building: heavier than the config's guess
X0 = np.array([20.0, 20.0, 20.0, 18.0, 18.0, 18.0])  # configs/building.toml [simulation] x0


def building_log(path: Path) -> Path:
    """The training log: the building simulated with noise under a random heating schedule."""
    model = TRUTH.to_linear(1.0, 0.05, 0.2)  # dt = 1 h, configs/building.toml's noise
    rng = np.random.default_rng(0)
    us = np.repeat(rng.choice([0.0, 6.0], (HOURS // 2, 3)), 2, axis=0)
    ds = np.asarray(load_tmy3_greensboro().disturbances(0, HOURS, 1.0))
    log = synthetic_log(model, jax.random.PRNGKey(0), jnp.asarray(X0), us, ds, dropout=0.05)
    log = type(log)(
        log.t, log.u, log.y, log.d,
        names={"u": ("heat1", "heat2", "heat3"), "y": ("T1", "T2", "T3"), "d": ("To", "G")},
        units={"t": "h", **{f"u_heat{i}": "kW" for i in (1, 2, 3)}, **{f"y_T{i}": "degC" for i in (1, 2, 3)},
               "d_To": "degC", "d_G": "kW/m2"},
    )  # fmt: skip
    return save_log(log, path)


def drift_windows(ref_path: Path, new_path: Path, samples: int = 400) -> tuple[Path, Path]:
    """Reference and new windows: inputs (heater power, outdoor temperature) and residuals of zone 1."""
    rng = np.random.default_rng(1)
    for path, outdoor_shift in ((ref_path, 0.0), (new_path, -4.0)):
        heat = rng.choice([0.0, 6.0], samples) + rng.normal(0.0, 0.3, samples)
        outdoor = 5.0 + outdoor_shift + 3.0 * rng.standard_normal(samples)
        residual = rng.normal(0.0, 0.2, samples)  # the plant did not change: same residual law
        t = np.arange(samples, dtype=float)
        np.savetxt(path, np.column_stack([t, heat, outdoor, residual]), delimiter=",", fmt="%.6g",
                   header="t,heat1,To,r_T1", comments="")  # fmt: skip
    return ref_path, new_path


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for path in (building_log(OUT / "building_log.csv"), *drift_windows(OUT / "drift_ref.csv", OUT / "drift_new.csv")):
        print(f"wrote {path.relative_to(OUT.parent)} ({path.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
