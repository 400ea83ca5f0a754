"""``gamma-ray-dist`` command line: ``run`` an analysis config, or a self-contained ``demo``.

Examples
--------
::

    gamma-ray-dist run examples/crab_3d.yaml --models examples/crab_models.yaml --out results/
    gamma-ray-dist run analysis.yaml --address auto --profiles        # on a Ray cluster's head node
    gamma-ray-dist run analysis.yaml --serial                         # no Ray at all
    gamma-ray-dist demo --out demo/ --n-obs 4

Settings are resolved once (`gamma_ray_dist.distributed.ExecutionSettings.resolve`): command-line
flag > environment (``RAY_ADDRESS``) > config file (``ray:`` section) > default. The command creates
the execution backend and closes it (shutting down a Ray it started) when the run ends.

Exit codes: 0 success; 1 nothing could be reduced or a run error; 2 invalid usage or configuration
(one line on stderr, no traceback).
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gamma-ray-dist``."""
    parser = argparse.ArgumentParser(prog="gamma-ray-dist",
                                     description="Distributed gammapy-compatible 3D stacked analysis on Ray.")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the analysis of a config file (gammapy AnalysisConfig YAML)")
    run.add_argument("config", help="analysis config YAML")
    run.add_argument("--models", help="models YAML (default: general.models_file)")
    run.add_argument("--out", help="output directory (default: general.outdir)")
    _add_ray_options(run)
    run.add_argument("--strict", action="store_true", default=None,
                     help="stop at the first observation that fails (default: ray.strict)")
    run.add_argument("--profiles", action="store_true",
                     help="likelihood profiles (11 re-optimised points) and MINOS errors of free parameters")

    demo = sub.add_parser("demo", help="simulate a small Crab-like data store and analyse it (offline)")
    demo.add_argument("--out", default="gamma-ray-dist-demo", help="output directory (data in OUT/data)")
    demo.add_argument("--n-obs", type=int, default=4, help="number of simulated observations")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the simulation")
    _add_ray_options(demo)
    return parser


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("auto", "serial", "ray"),
                   help="where to run: serial (this process, no Ray), ray (a local Ray, or --address), or auto "
                        "(default: Ray for a cluster address, else serial or a local Ray by the size of the work; "
                        "the run prints which and why)")
    p.add_argument("--address", help="Ray cluster address (precedence: this flag > $RAY_ADDRESS > ray.address "
                                     "in the config; none of them: a new local Ray on this machine)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray (default: ray.num_cpus, else all)")
    p.add_argument("--serial", action="store_true", help="same as --backend serial")
    p.add_argument("--no-progress", action="store_true", help="no progress output")
    p.add_argument("--no-report", action="store_true", help="skip the figures (PNG) and report.md")


def _error(message: str) -> None:
    print(f"gamma-ray-dist: error: {message}", file=sys.stderr)


#: Maths libraries run single-threaded in our processes unless the user says otherwise: parallelism
#: comes from the backend's processes (Ray sets the same for its workers). Multi-threaded BLAS only
#: spins here: a 300-observation serial run took 23 CPU-s instead of 11 for the same wall time.
SINGLE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (``sys.exit(main())`` in ``__main__``)."""
    import os

    for variable in SINGLE_THREAD_VARIABLES:  # before numpy loads its BLAS
        os.environ.setdefault(variable, "1")
    from .errors import ConfigError, DataStoreError, GammaRayDistError, ObservationError
    from .pipeline.run import NothingReduced

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            return _run(args)
        return _demo(args)
    except ConfigError as exc:
        _error(str(exc))
        return EXIT_CONFIG
    except DataStoreError as exc:
        _error(f"data store: {exc}")
        return EXIT_CONFIG
    except NothingReduced as exc:
        _error(str(exc))
        return EXIT_FAILED
    except ObservationError as exc:  # --strict
        _error(f"observation failed: {exc}")
        return EXIT_FAILED
    except GammaRayDistError as exc:
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return 130


def _settings(args: argparse.Namespace, config):
    """The run's execution settings: flags > environment > config > defaults."""
    from .distributed import ExecutionSettings

    backend = "serial" if args.serial else args.backend
    return ExecutionSettings.resolve(config.ray, backend=backend, address=args.address, num_cpus=args.num_cpus,
                                     strict=getattr(args, "strict", None),
                                     progress=False if args.no_progress else None)


def _execute(config, settings, options):
    """Run the pipeline on the backend the settings name; the backend is closed at the end.

    The backend is not started here: `run_pipeline` starts it after reading the inputs, so a bad data
    store or models file fails before Ray starts, and ``backend_start`` times what it costs.
    """
    from contextlib import closing

    from .distributed import make_backend
    from .pipeline import run_pipeline

    with closing(make_backend(settings)) as backend:
        return run_pipeline(config, options, backend)


def _run(args: argparse.Namespace) -> int:
    from .config import AnalysisConfig
    from .pipeline import PipelineOptions

    config = AnalysisConfig.read(args.config)
    options = PipelineOptions(models=args.models, out_dir=args.out, profiles=args.profiles,
                              report=not args.no_report)
    result = _execute(config, _settings(args, config), options)
    _print_summary(result)
    return EXIT_OK


def _print_summary(result, truth: dict | None = None) -> None:
    red = result.reduction
    print(f"reduced {red['n_ok']}/{red['n_selected']} observations"
          + (f" ({red['n_failed']} failed, see reduction.json)" if red["n_failed"] else "")
          + f"; stacked counts {int(result.dataset.counts.data.sum())}")
    fit = result.fit
    if red.get("backend_choice"):
        print(f"backend: {red['backend_choice']}")
    print(f"fit: success={fit['success']} total_stat={fit['total_stat']:.2f} nfev={fit['nfev']}")
    header = f"  {'model':<14} {'parameter':<10} {'value':>13} {'error':>11}  unit"
    if truth is not None:
        header += "            true"
    print(header)
    for p in fit["parameters"]:
        if p["frozen"]:
            continue
        line = f"  {p['model']:<14} {p['name']:<10} {p['value']:>13.5g} {p['error']:>11.3g}  {p['unit']:<16}"
        if truth is not None and p["name"] in truth:
            line += f" {truth[p['name']]:.5g}"
        print(line)
    timings = " ".join(f"{k}={v:.2f}s" for k, v in result.timings.items())
    print(f"timings: {timings}")
    print(f"outputs in {result.out_dir}")


def _demo(args: argparse.Namespace) -> int:
    from .pipeline import PipelineOptions
    from .pipeline.demo import prepare_demo

    if args.n_obs < 1:
        _error("--n-obs must be >= 1")
        return EXIT_CONFIG
    config, models_path, truth = prepare_demo(args.out, n_obs=args.n_obs, seed=args.seed)
    options = PipelineOptions(models=models_path, out_dir=args.out, report=not args.no_report)
    result = _execute(config, _settings(args, config), options)
    _print_summary(result, truth=truth)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
