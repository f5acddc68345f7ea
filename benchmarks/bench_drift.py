"""Drift monitoring throughput: jtwin's batched JAX KS statistics vs a scipy.stats.ks_2samp loop.

A reference window is compared with every sliding window of a log, for every
feature: jtwin computes all statistics in one jitted vmap
(``sliding_ks_statistics``) and the p-values once per distinct lattice value;
scipy runs one ``ks_2samp`` per (window, feature).  Both sides run in this
process on the same data; agreement (max |ΔD|, max |Δp|) is reported with the
timings.  Writes benchmarks/results/drift.json.

    .venv/bin/python benchmarks/bench_drift.py [--quick]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import numpy as np
import scipy
import scipy.stats as ss

import jtwin  # noqa: F401  (float64)
from jtwin import drift


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller log (seconds instead of a minute)")
    args = parser.parse_args()
    n_ref, window, stride, d = 500, 500, 50, 8
    t = 5_000 if args.quick else 20_000
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(n_ref, d))
    log = rng.normal(size=(t, d))
    log[t // 2 :, 0] += 0.3  # a drift half way through
    log = np.round(log, 2)  # realistic sensor resolution: ties
    ref = np.round(ref, 2)
    starts = np.arange(0, t - window + 1, stride)

    def jtwin_stats():
        return np.asarray(jax.block_until_ready(drift.sliding_ks_statistics(ref, log, window, stride)))

    def jtwin_full():
        stats = jtwin_stats()
        return stats, drift.ks_pvalue(stats, n_ref, window)

    def scipy_loop():
        res = [[ss.ks_2samp(ref[:, j], log[s : s + window, j]) for j in range(d)] for s in starts]
        return np.array([[r.statistic for r in row] for row in res]), np.array([[r.pvalue for r in row] for row in res])

    jtwin_full()  # compile
    t_stats, _ = best_of(jtwin_stats, 5)
    t_full, (stats, pvals) = best_of(jtwin_full, 3)
    t_scipy, (stats_ref, pvals_ref) = best_of(scipy_loop, 1 if not args.quick else 2)
    tests = stats.size
    result = {
        "benchmark": "drift: sliding-window KS, jtwin (JAX vmap + scipy p-values) vs scipy.stats.ks_2samp loop",
        "quick": args.quick,
        "sizes": {"n_ref": n_ref, "window": window, "stride": stride, "features": d, "log_length": t, "tests": tests},
        "seconds": {"jtwin_statistics": t_stats, "jtwin_statistics_and_pvalues": t_full, "scipy_loop": t_scipy},
        "speedup_vs_scipy": {"statistics": t_scipy / t_stats, "statistics_and_pvalues": t_scipy / t_full},
        "agreement": {
            "max_abs_statistic_diff": float(np.max(np.abs(stats - stats_ref))),
            "max_abs_pvalue_diff": float(np.max(np.abs(pvals - pvals_ref))),
        },
        "versions": {"jax": jax.__version__, "scipy": scipy.__version__, "backend": jax.default_backend()},
        "machine": platform.processor() or platform.machine(),
    }
    out = Path(__file__).parent / "results" / "drift.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
