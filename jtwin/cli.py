"""The ``jtwin`` command line: ``jtwin run CONFIG`` and, as they land, more subcommands."""

from __future__ import annotations

import argparse
import sys


def _cmd_run(args: argparse.Namespace) -> int:
    from .report import default_run_dir, write_run
    from .run import run_twin

    result = run_twin(args.config, scenarios=args.scenarios, steps=args.steps, params=args.params)
    print(result.table())
    out = args.out or default_run_dir(args.config)
    paths = write_run(result, out)
    print(f"report and plots: {out}/ ({', '.join(p.name for p in paths.values())})")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .learn.train import cli_train

    text, problem = cli_train(args.config, args.logs, method=args.method, out_dir=args.out, drop_outliers=args.drop_outliers)
    print(text)
    if problem is not None:
        print(f"jtwin train: error: {problem}", file=sys.stderr)
        return 1
    return 0


def _cmd_drift(args: argparse.Namespace) -> int:
    from .config import load_config
    from .drift import cli_report

    cfg = load_config(args.config).drift
    print(cli_report(args.ref, args.new, alpha=cfg.alpha, correction=cfg.correction, min_effect=cfg.min_effect))
    return 0


def _cmd_schedule(args: argparse.Namespace) -> int:
    from .config import load_config
    from .run import build_estimator, build_twin, disturbance_series
    from .schedule import cli_report, parse_duration, utilisation

    durations = {}
    for flag, text in (("--period", args.period), ("--comm-time", args.comm_time)):
        if text is None:  # no communication time given
            durations[flag] = 0.0
            continue
        try:
            durations[flag] = parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}") from exc
    utilisation("--u-other", args.u_other)
    cfg = load_config(args.config)
    model = cfg.plant.build()
    twin = build_twin(cfg, model)
    forecast = disturbance_series(cfg, model, twin.horizon) if model.disturbance_dim else None
    print(
        cli_report(
            model,
            build_estimator(cfg),
            durations["--period"],
            twin=twin,
            mean0=cfg.simulation.x0,
            disturbances=forecast,
            u_other=args.u_other,
            comm_time=durations["--comm-time"],
        )
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jtwin",
        description="jtwin: GPU-accelerated, differentiable digital twins on JAX.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate the plant/twin described by a TOML config")
    run.add_argument("config", help="path to a TOML config (e.g. configs/building.toml)")
    run.add_argument("--scenarios", type=int, default=None, help="override [simulation].scenarios")
    run.add_argument("--steps", type=int, default=None, help="override [simulation].steps")
    run.add_argument("--params", default=None, help="fitted plant parameters (params.eqx written by jtwin train)")
    run.add_argument(
        "--out", default=None, help="directory for report.json and the plots (default: a fresh runs/<config>-<time>/)"
    )
    run.set_defaults(func=_cmd_run)
    train = sub.add_parser("train", help="fit the plant's parameters to a log (MLE or prediction error)")
    train.add_argument("config", help="TOML config (plant, [estimator], [train])")
    train.add_argument("--logs", required=True, help="plant log: CSV (t, u_*, y_*, d_* columns) or NPZ")
    train.add_argument("--method", choices=("mle", "prediction"), default=None, help="override [train].method")
    train.add_argument("--out", default=None, help="output directory (default train_<config name>)")
    train.add_argument(
        "--drop-outliers", action="store_true", help="set the readings flagged as outliers (spikes) missing before the fit"
    )
    train.set_defaults(func=_cmd_train)
    drift = sub.add_parser("drift", help="KS drift tests of a new log against a reference log: none/retrain/redesign")
    drift.add_argument("config", help="TOML config ([drift] sets alpha, correction, min_effect)")
    drift.add_argument("--ref", required=True, help="reference log (CSV: r_* columns are residuals; or NPZ with x, r)")
    drift.add_argument("--new", required=True, help="current log, same columns as --ref")
    drift.set_defaults(func=_cmd_drift)
    sched = sub.add_parser("schedule", help="does the configured twin's step (estimator + MPC) meet its period here (EDF)?")
    sched.add_argument("config", help="TOML config (plant and [estimator])")
    sched.add_argument("--period", required=True, help="control period with its unit: 20ms, 0.5s, 1h")
    sched.add_argument(
        "--u-other", type=float, default=0.0, help="utilisation of the other tasks on the processor, in [0, 1] (default 0)"
    )
    sched.add_argument("--comm-time", default=None, help="communication time per loop, e.g. 0.5ms (default none)")
    sched.set_defaults(func=_cmd_schedule)
    from .serve import add_cli as add_serve_cli

    add_serve_cli(sub)  # `jtwin export CONFIG --out F` and `jtwin serve ARTIFACT`
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:  # bad config or input: one clear line
        print(f"jtwin {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
