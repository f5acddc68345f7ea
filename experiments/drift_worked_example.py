"""The spec's drift worked example: D_x = 0.20 above its critical value, D_r = 0.12 below -> retrain.

One input feature and one residual channel, reference and new windows of n = 200
samples each (k = 2 tests, Bonferroni alpha' = 0.05 / 2).  The new input window
is the reference shifted by 40/n on a uniform grid (so D_x = 0.20 exactly); the
new residual window is shifted by 24/n (D_r = 0.12).  Run:

    .venv/bin/python experiments/drift_worked_example.py
"""

import numpy as np
import scipy.stats as ss

import jtwin  # noqa: F401  (float64)
from jtwin import drift

N = 200


def main() -> None:
    grid = np.arange(N) + 0.5  # shift on the integer grid first, so shared values tie exactly
    x_ref, x_new = grid / N, (grid + 40) / N
    r_ref, r_new = grid / N, (grid + 24) / N
    report = drift.detect(x_ref, x_new, r_ref, r_new, alpha=0.05, correction="bonferroni")
    print(report.table())
    print()
    for name, (a, b), d, c in zip(
        ("D_x", "D_r"), ((x_ref, x_new), (r_ref, r_new)), report.statistics, report.critical_values
    ):
        print(f"{name} = {d:.2f}  critical value at alpha' = {report.levels[0]:g}: {c:.4f}  "
              f"({'above' if d >= c else 'below'}); scipy p-value {ss.ks_2samp(a, b).pvalue:.3g}")
    print(f"decision: {report.decision}  (spec: retrain)")
    assert report.decision == "retrain"


if __name__ == "__main__":
    main()
