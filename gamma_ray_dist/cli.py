"""``gamma-ray-dist`` command line: ``run`` an analysis config, or a self-contained ``demo``.

Examples
--------
::

    gamma-ray-dist run examples/crab_3d.yaml --models examples/crab_models.yaml --out results/
    gamma-ray-dist run analysis.yaml --address auto --profiles        # on a Ray cluster's head node
    gamma-ray-dist run analysis.yaml --serial                         # no Ray at all
    gamma-ray-dist demo --out demo/ --n-obs 4

Settings are resolved once (`gamma_ray_dist.distributed.ExecutionSettings.resolve`), with one
precedence for every setting: command-line flag > environment variable (only ``$RAY_ADDRESS``) >
config file > default. The same holds for the output directory (``--out`` > ``general.outdir``) and
the log level (``-v``/``-q`` > ``general.log.level``). The command creates the execution backend and
closes it (shutting down a Ray it started) when the run ends.

Every input is checked before any work starts: the config, the output directory (created if needed,
and written to once), ``--num-cpus``, and a Ray address (a connection within ``--connect-timeout``
seconds). A failed run removes the output directory it created if that is still empty.

Resuming: while a run reduces, ``OUT/.grd-run`` holds the reducers' checkpoints and the observations'
statuses (`gamma_ray_dist.distributed.resume`). A run that is killed or interrupted keeps it, and the
same command run again resumes from it, reducing only what is not yet durable (it prints how much it
resumes); ``--fresh`` discards it instead. A run of another configuration into the same ``OUT`` is
refused (exit code 2) while it holds an unfinished run. It is removed once every output is written.

Exit codes: 0 success; 1 nothing could be reduced or a run error; 2 invalid usage or configuration
(one line on stderr, no traceback); 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

from . import __version__

__all__ = ["main", "build_parser", "UsageError"]

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_INTERRUPTED = 0, 1, 2, 130

log = logging.getLogger(__name__)

PRECEDENCE = ("settings: command-line flag > environment ($RAY_ADDRESS) > config file (ray:, general:) > "
              "default. Exit codes: 0 success, 1 nothing reduced or run error, 2 invalid usage or "
              "configuration, 130 interrupted.")


class UsageError(Exception):
    """A command-line input cannot be used (exit code 2, one line naming it)."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage mistakes on one line (``gamma-ray-dist: error: ...``, exit 2), like every other input."""

    def error(self, message: str):
        command = self.prog.split(" ", 1)[1] + ": " if " " in self.prog else ""
        self.exit(EXIT_CONFIG, f"gamma-ray-dist: error: {command}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``gamma-ray-dist``."""
    parser = _Parser(prog="gamma-ray-dist",
                                     description="Distributed gammapy-compatible 3D stacked analysis on Ray.",
                                     epilog=PRECEDENCE)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the analysis of a config file (gammapy AnalysisConfig YAML)",
                         description="Run the analysis of a config file (gammapy AnalysisConfig YAML).",
                         epilog=PRECEDENCE)
    run.add_argument("config", help="analysis config YAML")
    run.add_argument("--models", help="models YAML (default: general.models_file)")
    run.add_argument("--out", help="output directory, created if needed (default: general.outdir)")
    _add_ray_options(run)
    run.add_argument("--strict", action="store_true", default=None,
                     help="stop at the first observation that fails (default: ray.strict, else off)")
    _add_resume_options(run)
    run.add_argument("--profiles", action="store_true",
                     help="likelihood profiles (11 re-optimised points) and MINOS errors of free parameters "
                          "(default: off)")
    _add_log_options(run, "general.log.level, else info")

    demo = sub.add_parser("demo", help="simulate a small Crab-like data store and analyse it (offline)",
                          description="Simulate a small Crab-like data store into OUT/data and analyse it "
                                      "(offline).",
                          epilog=PRECEDENCE)
    demo.add_argument("--out", default="gamma-ray-dist-demo",
                      help="output directory, data in OUT/data (default: %(default)s)")
    demo.add_argument("--n-obs", type=int, default=4, help="number of simulated observations (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default: %(default)s)")
    _add_ray_options(demo)
    _add_resume_options(demo)
    _add_log_options(demo, "warning")
    return parser


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=("auto", "serial", "ray"),
                   help="where to run: serial (this process, no Ray), ray (a local Ray, or --address), or auto: "
                        "Ray for a cluster address, else serial or a local Ray by the size of the work; the run "
                        "prints which and why (default: auto)")
    p.add_argument("--address", help="Ray cluster address: auto, HOST:PORT or ray://HOST:PORT "
                                     "(default: $RAY_ADDRESS, else ray.address, else a new local Ray)")
    p.add_argument("--connect-timeout", type=float, metavar="SECONDS",
                   help="seconds to wait for the Ray address to answer before giving up "
                        "(default: ray.connect_timeout, else 10)")
    p.add_argument("--num-cpus", type=int, help="CPUs of a local Ray, >= 1 (default: ray.num_cpus, else all)")
    p.add_argument("--serial", action="store_true", help="same as --backend serial")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress output (default: a bar on a terminal, else log lines, on stderr; on Ray "
                        "it advances as each block of ray.block_size observations completes)")
    p.add_argument("--no-report", action="store_true",
                   help="skip the figures (PNG) and report.md (default: written, figures need matplotlib)")


def _add_resume_options(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fresh", action="store_true",
                       help="discard an unfinished run found in OUT/.grd-run and start over (default: resume it "
                            "when it is of the same configuration and observations, refuse to run when it is not)")
    group.add_argument("--no-resume", action="store_true",
                       help="keep no run directory: a killed run starts over (default: OUT/.grd-run, removed "
                            "when the outputs are written)")


def _add_log_options(p: argparse.ArgumentParser, default: str) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help=f"more log output: -v info, -vv debug (default: {default})")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="errors only: no warnings, no progress output")


def _error(message: str) -> None:
    print(f"gamma-ray-dist: error: {message}", file=sys.stderr)


#: Maths libraries run single-threaded in our processes unless the user says otherwise: parallelism
#: comes from the backend's processes (Ray sets the same for its workers). Multi-threaded BLAS only
#: spins here: a 300-observation serial run took 23 CPU-s instead of 11 for the same wall time.
SINGLE_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (``sys.exit(main())`` in ``__main__``)."""
    for variable in SINGLE_THREAD_VARIABLES:  # before numpy loads its BLAS
        os.environ.setdefault(variable, "1")
    from .distributed.address import AddressError
    from .distributed.resume import RunDirError
    from .errors import ConfigError, DataStoreError, GammaRayDistError, ObservationError
    from .pipeline.run import NothingReduced

    args = build_parser().parse_args(argv)
    _configure_logging(_flag_log_level(args) or logging.WARNING)
    try:
        if args.command == "run":
            return _run(args)
        return _demo(args)
    except (UsageError, AddressError, RunDirError) as exc:
        _error(str(exc))
        return EXIT_CONFIG
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
    except OSError as exc:  # an output that cannot be written, a Ray that cannot be reached, ...
        _error(f"{type(exc).__name__}: {exc}".splitlines()[0])
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


# -- logging -------------------------------------------------------------------------------------
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _flag_log_level(args: argparse.Namespace) -> int | None:
    """The level ``-q`` / ``-v`` / ``-vv`` ask for, or None."""
    if getattr(args, "quiet", False):
        return logging.ERROR
    verbose = getattr(args, "verbose", 0)
    if verbose:
        return logging.DEBUG if verbose > 1 else logging.INFO
    return None


def _configure_logging(level: int, log_config=None) -> None:
    """Root logging: ``level``, plus file, mode, format and date format of ``general.log`` if given."""
    kwargs = {"format": LOG_FORMAT}
    if log_config is not None:
        kwargs.update({k: v for k, v in (("filename", log_config.filename), ("filemode", log_config.filemode),
                                         ("format", log_config.format), ("datefmt", log_config.datefmt))
                       if v})
    logging.basicConfig(level=level, force=True, **kwargs)


def _config_log_level(config) -> int:
    """``general.log.level`` as a logging level (a ConfigError names the key when unknown)."""
    from .errors import ConfigError

    name = str(config.general.log.level).upper()
    level = logging.getLevelName(name)
    if not isinstance(level, int):
        raise ConfigError("general.log.level", f"unknown level {config.general.log.level!r} "
                                               "(debug, info, warning, error or critical)")
    return level


# -- checks made before any work -------------------------------------------------------------------
def _settings(args: argparse.Namespace, config_ray=None):
    """The run's execution settings: flags > environment > config > defaults (ConfigError if invalid)."""
    from .distributed import ExecutionSettings

    if args.num_cpus is not None and args.num_cpus < 1:
        raise UsageError(f"--num-cpus must be >= 1; got {args.num_cpus}")
    if args.connect_timeout is not None and not args.connect_timeout > 0:
        raise UsageError(f"--connect-timeout must be > 0 seconds; got {args.connect_timeout:g}")
    backend = "serial" if args.serial else args.backend
    progress = False if (args.no_progress or args.quiet) else None
    return ExecutionSettings.resolve(config_ray, backend=backend, address=args.address, num_cpus=args.num_cpus,
                                     strict=getattr(args, "strict", None), progress=progress,
                                     connect_timeout=args.connect_timeout)


def _check_address(settings) -> None:
    """The Ray address answers within ``settings.connect_timeout`` (skipped without Ray or address)."""
    if settings.backend == "serial" or not settings.address:
        return
    from .distributed.address import check_address

    checked = check_address(settings.address, settings.connect_timeout)
    log.debug("Ray address %s answers", checked)


def _prepare_out_dir(raw: str | os.PathLike, key: str) -> tuple[Path, Path | None]:
    """Create the output directory if needed and check that it is writable.

    Returns ``(path, created)``: ``created`` is the outermost directory this call made (None if the
    directory existed), which `_remove_if_empty` removes after a failed run.
    """
    import tempfile

    shown = str(raw)
    path = Path(os.path.expanduser(shown))
    if path.exists() and not path.is_dir():
        raise UsageError(f"{key} {shown}: exists and is not a directory")
    created = None
    if not path.is_dir():
        missing = path.absolute()
        while not missing.parent.exists() and missing.parent != missing:
            missing = missing.parent
        if missing.parent.exists() and not missing.parent.is_dir():
            raise UsageError(f"{key} {shown}: {missing.parent} is not a directory")
        try:
            path.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(f"{key} {shown}: cannot be created ({exc.strerror or exc})") from None
        created = missing
    try:
        fd, probe = tempfile.mkstemp(prefix=".gamma-ray-dist-write-check-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        _remove_if_empty(path, created)
        import errno

        reason = "" if exc.errno == errno.ENOENT else f" ({exc.strerror or exc})"
        raise UsageError(f"{key} {shown}: not writable{reason}") from None
    log.debug("output directory %s", path)
    return path, created


def _remove_if_empty(path: Path, created: Path | None) -> None:
    """Remove ``path`` and its parents up to ``created`` (the directories this run made) while empty."""
    if created is None:
        return
    current, stop = path.absolute(), created.absolute()
    while True:
        try:
            current.rmdir()
        except OSError:
            return
        if current == stop or current.parent == current:
            return
        current = current.parent


# -- commands --------------------------------------------------------------------------------------
def _execute(config, settings, options, out_dir: Path, created: Path | None):
    """Run the pipeline on the backend the settings name; the backend is closed at the end.

    The backend is not started here: `run_pipeline` starts it after reading the inputs, so a bad data
    store or models file fails before Ray starts, and ``backend_start`` times what it costs. A failed
    run removes the output directory it created while that is empty.
    """
    from contextlib import closing

    from .distributed import make_backend
    from .pipeline import run_pipeline

    try:
        with closing(make_backend(settings)) as backend:
            return run_pipeline(config, options, backend)
    except BaseException as exc:
        from .distributed.resume import RUN_DIR_NAME, RunDirError

        if not isinstance(exc, RunDirError) and (out_dir / RUN_DIR_NAME).is_dir():
            print(f"gamma-ray-dist: the run is resumable: run the same command again to resume it "
                  f"({out_dir / RUN_DIR_NAME})", file=sys.stderr)
        _remove_if_empty(out_dir, created)
        raise


def _run(args: argparse.Namespace) -> int:
    from .config import AnalysisConfig
    from .pipeline import PipelineOptions

    config = AnalysisConfig.read(args.config)
    flag_level = _flag_log_level(args)
    _configure_logging(flag_level or _config_log_level(config), config.general.log)
    settings = _settings(args, config.ray)
    out_dir, created = _prepare_out_dir(args.out or config.general.outdir,
                                        "--out" if args.out else "general.outdir")
    try:
        _check_address(settings)
    except BaseException:
        _remove_if_empty(out_dir, created)
        raise
    options = PipelineOptions(models=args.models, out_dir=out_dir, profiles=args.profiles,
                              report=not args.no_report, fresh=args.fresh, resume=not args.no_resume)
    result = _execute(config, settings, options, out_dir, created)
    _print_summary(result)
    return EXIT_OK


def _print_summary(result, truth: dict | None = None) -> None:
    red = result.reduction
    if result.datasets is not None:  # stack: false
        counts = f"counts {sum(int(d.counts.data.sum()) for d in result.datasets)} in {len(result.datasets)} datasets"
    else:
        counts = f"stacked counts {int(result.dataset.counts.data.sum())}"
    print(f"reduced {red['n_ok']}/{red['n_selected']} observations"
          + (f" ({red['n_failed']} failed, see reduction.json)" if red["n_failed"] else "") + f"; {counts}")
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
        raise UsageError(f"--n-obs must be >= 1; got {args.n_obs}")
    settings = _settings(args)  # the demo's config has no ray section
    out_dir, created = _prepare_out_dir(args.out, "--out")
    try:
        _check_address(settings)
        config, models_path, truth = prepare_demo(out_dir, n_obs=args.n_obs, seed=args.seed)
    except BaseException:
        _remove_if_empty(out_dir, created)
        raise
    options = PipelineOptions(models=models_path, out_dir=out_dir, report=not args.no_report, fresh=args.fresh,
                              resume=not args.no_resume)
    result = _execute(config, settings, options, out_dir, created)
    _print_summary(result, truth=truth)
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
