#!/usr/bin/env bash
# The MPC batch and the building twin on a GPU (float64 and a float32 controller), one table.
#
#   benchmarks/gpu.sh                      # on the GPU machine: ~5 min on an H200 (each stage capped)
#   JAX_PLATFORMS=cpu MPC_BATCH=200 TWIN_SCENARIOS=16 TWIN_STEPS=24 benchmarks/gpu.sh   # check it on CPU
#
# Needs jtwin with a CUDA jaxlib: pip install -e '.[dev]' 'jax[cuda12]'.  The peer solvers are
# CPU-only and measured by the CPU runs (bench_mpc_batch.py, bench_twin.py); here only jtwin runs
# (OSQP's loop in bench_mpc_batch stays, as the CPU yardstick).  JSON: benchmarks/results/*_gpu.json
# (or $OUT_DIR).  Sizes: MPC_BATCH (10000), TWIN_SCENARIOS (10000), TWIN_STEPS (96).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
OUT_DIR=${OUT_DIR:-benchmarks/results}
MPC_BATCH=${MPC_BATCH:-10000}
TWIN_SCENARIOS=${TWIN_SCENARIOS:-10000}
TWIN_STEPS=${TWIN_STEPS:-96}
CHUNK=$(( TWIN_STEPS < 24 ? TWIN_STEPS : 24 ))
mkdir -p "$OUT_DIR"

"$PY" -c 'import jax; print("jax", jax.__version__, "devices:", jax.devices())'
timeout 200 "$PY" benchmarks/bench_mpc_batch.py --batch "$MPC_BATCH" --no-references \
    --out "$OUT_DIR/mpc_batch_gpu.json" > "$OUT_DIR/mpc_batch_gpu.log" 2>&1 || { tail -20 "$OUT_DIR/mpc_batch_gpu.log"; exit 1; }
timeout 260 "$PY" benchmarks/bench_twin.py --scenarios "$TWIN_SCENARIOS" --steps "$TWIN_STEPS" --chunk "$CHUNK" \
    --no-references --quiet --out "$OUT_DIR/twin_gpu.json" > "$OUT_DIR/twin_gpu.log" 2>&1 || { tail -20 "$OUT_DIR/twin_gpu.log"; exit 1; }

"$PY" - "$OUT_DIR" <<'EOF'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
m, t = (json.loads((d / f).read_text()) for f in ("mpc_batch_gpu.json", "twin_gpu.json"))
dev = m["machine"]["device"]
best = min(m["osqp"].values(), key=lambda r: r["seconds"])
rows = [
    ("MPC batch (quadcopter, N=10)", "float64", f"{m['batch']} solves", m["jtwin"]["seconds"], m["jtwin"]["solves_per_s"],
     m["jtwin"]["compile_seconds"], f"{m['jtwin']['solved']}/{m['batch']} solved, max|du0| vs 1e-9 run {m['jtwin']['max_abs_du0_vs_reference']:.1e}"),
    ("MPC batch (quadcopter, N=10)", "float32", f"{m['batch']} solves", m["jtwin_float32"]["seconds"], m["jtwin_float32"]["solves_per_s"],
     float("nan"), f"{m['jtwin_float32']['solved']}/{m['batch']} solved, max|du0| {m['jtwin_float32']['max_abs_du0_vs_reference']:.1e}"),
    ("building twin (KF + MPC N=24)", "float64", f"{t['scenarios']} x {t['steps']} steps", t["jtwin_seconds"], t["jtwin_scenario_steps_per_s"],
     t["jtwin_compile_seconds"], f"solver failures {t['solver_failures']:.3g}"),
    ("building twin (KF + MPC N=24)", "float32 MPC", f"{t['scenarios']} x {t['steps']} steps", t["float32_controller"]["jtwin_seconds"],
     t["float32_controller"]["jtwin_scenario_steps_per_s"], t["float32_controller"]["compile_seconds"],
     f"max|du| vs float64 {t['float32_controller']['max_abs_u_difference_vs_float64_twin']:.2g}"),
]
print(f"\ndevice: {dev}; OSQP loop on this host's CPU: {best['solves_per_s']:,.0f} solves/s")
print(f"| {'benchmark':<30} | {'precision':<11} | {'size':<20} | {'run s':>8} | {'per s':>12} | {'compile s':>9} | check")
print(f"|{'-' * 32}|{'-' * 13}|{'-' * 22}|{'-' * 10}|{'-' * 14}|{'-' * 11}|------")
for name, prec, size, sec, rate, comp, check in rows:
    print(f"| {name:<30} | {prec:<11} | {size:<20} | {sec:8.3f} | {rate:12,.0f} | {comp:9.1f} | {check}")
EOF
