"""The nonlinear twin on the CSTR (configs/cstr.toml): where to linearise the MPC.

The twin estimates with the nonlinear reactor (UKF) and controls with its linearisation.  Linearised
at the steady state of the setpoint (the default, found by ``jtwin.models.steady_state``), the target
is an exact equilibrium of the closed loop; linearised at the starting steady state (350 K, coolant
300 K) the model error and the input weight on ``u − u_op`` leave an offset.  Prints both KPI tables.

    .venv/bin/python experiments/twin_cstr.py [--scenarios 32]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from jtwin.run import run_config

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "cstr.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", type=int, default=32)
    args = parser.parse_args()
    text = CONFIG.read_text()
    print("== linearised at the setpoint's steady state (configs/cstr.toml) ==")
    print(run_config(str(CONFIG), scenarios=args.scenarios))
    start = text.replace("soft_penalty = 100.0", "soft_penalty = 100.0\nx_op = [0.5, 350.0]\nu_op = [300.0]")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cstr_start_point.toml"
        path.write_text(start)
        print("\n== linearised at the starting steady state (T = 350 K, Tc = 300 K) ==")
        print(run_config(str(path), scenarios=args.scenarios))


if __name__ == "__main__":
    main()
