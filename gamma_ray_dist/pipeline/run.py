"""The end-to-end 3D stacked analysis: config -> reduction (Ray or serial) -> fit -> profiles -> flux points.

`run_pipeline` is what ``gamma-ray-dist run`` calls. Every output goes to ``out_dir`` through the
atomic writers of `gamma_ray_dist.outputs`:

``stacked.fits.gz``  the stacked `MapDataset` (gammapy format)
``models.yaml``      best-fit models (gammapy format) + ``models_covariance.dat``
``fit.json``         success, message, total_stat, nfev, parameters
``profiles.json``    likelihood profiles and MINOS errors (``profiles=True``)
``flux_points.ecsv`` flux points (gammapy format), when ``flux_points.energy`` is configured
``reduction.json``   per-observation status and numbers, run timings
"""
from __future__ import annotations

import functools
import json
import logging
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, TextIO

from .. import outputs
from ..config import AnalysisConfig
from ..errors import GammaRayDistError
from ..report import write_report
from .fitting import apply_fit_range, fit_dataset, fit_summary, load_models, make_mapper, run_flux_points, run_profiles
from .inputs import datastore_dir, make_reduction_spec, open_datastore, select_obs_ids
from .tasks import HOOKS_ENV, SummaryAccumulator, make_shared, reduce_task

__all__ = ["PipelineOptions", "PipelineResult", "NothingReduced", "run_pipeline", "reduce_stacked",
           "reduction_report"]

log = logging.getLogger(__name__)


class NothingReduced(GammaRayDistError):
    """No observation was selected, or every selected observation failed."""


@dataclass
class PipelineOptions:
    """How to run (the CLI flags); config values are used where an option is None.

    Attributes
    ----------
    models : path, optional
        Models YAML (default ``general.models_file``).
    out_dir : path, optional
        Output directory (default ``general.outdir``).
    address, num_cpus : Ray cluster address / local CPUs (default ``ray.address`` / ``ray.num_cpus``).
    serial : bool
        Run everything in this process, without Ray.
    strict : bool, optional
        Stop at the first failed observation (default ``ray.strict``).
    profiles : bool
        Compute likelihood profiles and MINOS errors of every free parameter.
    progress : bool or stream
        Reduction progress on stderr (or the given stream).
    max_in_flight, fan_in, max_obs_per_task : int, optional
        Driver settings (default from the ``ray`` section).
    n_workers : int, optional
        Profile / flux-point workers (default: cluster CPUs).
    task_hooks : dict, optional
        Test-only task hooks (see `tasks.reduce_task`); also read as JSON from ``$GRD_TASK_HOOKS``.
    run_id : str, optional
        Names the reducer actors (``<run_id>.chunk00000``...).
    checkpoint_dir : path, optional
        Reducer checkpoints (see `run_distributed`).
    report : bool
        Write the figures (PNG, needs matplotlib) and ``report.md`` (default True).
    """

    models: str | os.PathLike | None = None
    out_dir: str | os.PathLike | None = None
    address: str | None = None
    num_cpus: int | None = None
    serial: bool = False
    strict: bool | None = None
    profiles: bool = False
    progress: bool | TextIO = True
    max_in_flight: int | None = None
    fan_in: int | None = None
    max_obs_per_task: int | None = None
    n_workers: int | None = None
    task_hooks: dict | None = None
    run_id: str | None = None
    checkpoint_dir: str | os.PathLike | None = None
    report: bool = True


@dataclass
class PipelineResult:
    """What a run produced (also written to ``out_dir``)."""

    out_dir: Path
    dataset: Any = None
    state: dict | None = None
    fit: dict | None = None
    models: Any = None
    flux_points: Any = None
    profiles: dict | None = None
    reduction: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


@contextmanager
def _timed(timings: dict, stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _hooks(options: PipelineOptions) -> dict:
    hooks = dict(options.task_hooks or {})
    env = os.environ.get(HOOKS_ENV)
    if env:
        hooks.update(json.loads(env))
    return hooks


def reduce_stacked(config: AnalysisConfig, obs_ids: list[int], options: PipelineOptions,
                   spec=None) -> tuple[dict, Any]:
    """Reduce ``obs_ids`` into the stacked accumulator state: ``(state, RunReport)``.

    On Ray (``options.serial`` False, Ray started or joined by the caller) or in this process.
    """
    from ..datasets.partial import StackGeometry
    from ..driver import run_distributed, run_serial

    spec = spec if spec is not None else make_reduction_spec(config)
    geometry = StackGeometry.from_dataset(spec.stacked_dataset())
    hooks = _hooks(options)
    run_id = options.run_id or hooks.get("run_id")
    shared = make_shared(str(datastore_dir(config)), spec, hooks)
    strict = config.ray.strict if options.strict is None else bool(options.strict)
    fan_in = options.fan_in or config.ray.fan_in
    make_acc = functools.partial(SummaryAccumulator, geometry, spec.name)
    if options.serial:
        return run_serial(obs_ids, reduce_task, shared, make_acc, fan_in=fan_in, strict=strict,
                          progress=options.progress)
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    max_in_flight = options.max_in_flight or config.ray.resolve_max_in_flight(cpus)
    per_task = options.max_obs_per_task or config.ray.max_obs_per_task
    return run_distributed(obs_ids, reduce_task, shared, make_acc, fan_in=fan_in, strict=strict,
                           max_in_flight=max_in_flight, max_obs_per_task=per_task,
                           progress=options.progress, run_id=run_id,
                           checkpoint_dir=options.checkpoint_dir)


def reduction_report(obs_ids: list[int], state: dict | None, report, timings: dict) -> dict:
    """``reduction.json`` content: one entry per selected observation plus timings."""
    summaries = (state or {}).get("summaries") or {}
    entries = []
    for obs_id in obs_ids:
        status = report.obs.get(obs_id)
        entry: dict[str, Any] = {"obs_id": int(obs_id)}
        if status is not None and status.status == "failed":
            entry.update(status="failed", error=f"{status.error_type}: {status.message}",
                         error_type=status.error_type, file=status.filename)
        else:
            s = summaries.get(int(obs_id), {})
            entry.update(status="ok", counts=s.get("counts"), background=s.get("background"),
                         bkg_norm=s.get("bkg_norm"), fov_status=s.get("fov_status"),
                         mask_safe_bins=s.get("mask_safe_bins"), livetime=s.get("livetime"))
        if status is not None:
            entry["seconds"] = status.seconds
            entry["started"] = status.started  # epoch seconds; with "worker" (pid): a timeline of the run
            entry["worker"] = status.worker
            entry["timings"] = status.timings
        entries.append(entry)
    return {
        "backend": report.backend,
        "run_id": report.run_id,
        "n_selected": len(obs_ids),
        "n_ok": report.n_ok,
        "n_failed": report.n_failed,
        "observations": entries,
        "timings": dict(timings),
        "driver_timings": dict(report.timings),
        "task_stage_seconds": dict(report.stage_seconds),
        "reducer_restarts": report.reducer_restarts,
        "max_in_flight": report.max_in_flight,
        "fan_in": report.fan_in,
        "max_obs_per_task": report.max_obs_per_task,
        "n_tasks": report.n_tasks,
    }


def _start_ray(config: AnalysisConfig, options: PipelineOptions) -> int:
    """Join the running Ray, or connect/start one (``--address``, ``$RAY_ADDRESS``, else local); CPUs."""
    import ray

    from ..driver import ensure_ray

    if ray.is_initialized():
        resources = ray.cluster_resources()
    else:
        address = options.address or config.ray.address or os.environ.get("RAY_ADDRESS")
        if not address:
            # A local Ray of our own: workers at normal priority, as `ray job submit` runs them (Ray's
            # default niceness 15 starves them on a machine shared with other work).
            os.environ.setdefault("RAY_worker_niceness", "0")
        resources = ensure_ray(address=address,
                               num_cpus=options.num_cpus or config.ray.num_cpus, log_to_driver=False)
    return max(1, int(resources.get("CPU", 1)))


def run_pipeline(config: AnalysisConfig, options: PipelineOptions | None = None) -> PipelineResult:
    """Run the whole analysis and write its outputs; see the module docstring.

    Raises
    ------
    ConfigError
        Invalid configuration or models file.
    DataStoreError
        The data store cannot be opened.
    NothingReduced
        No observation selected, or none could be reduced (``reduction.json`` is still written).
    ObservationError
        With ``strict``, the first failed observation.
    """
    options = options or PipelineOptions()
    out_dir = Path(options.out_dir or config.general.outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    result = PipelineResult(out_dir=out_dir, timings=timings)
    t_start = time.perf_counter()

    with _timed(timings, "setup"):
        datastore = open_datastore(config)
        obs_ids = select_obs_ids(config, datastore)
        spec = make_reduction_spec(config)
        models = load_models(config, spec.name, options.models)  # fail early on a bad models file
    if not obs_ids:
        raise NothingReduced("no observation selected (check observations.obs_ids / obs_cone / obs_time)")
    n_workers = options.n_workers
    if not options.serial:
        with _timed(timings, "ray_start"):
            cpus = _start_ray(config, options)
        n_workers = n_workers or cpus

    with _timed(timings, "reduce"):
        state, report = reduce_stacked(config, obs_ids, options, spec)
    result.state = state
    result.reduction = reduction_report(obs_ids, state, report, timings)
    if report.n_ok == 0:
        outputs.write_json(out_dir / "reduction.json", result.reduction)
        raise NothingReduced(f"none of the {len(obs_ids)} selected observations could be reduced "
                             f"(see {out_dir / 'reduction.json'})")

    with _timed(timings, "stack"):
        dataset = SummaryAccumulator.from_state(state).to_dataset(spec.name)
    with _timed(timings, "write_dataset"):
        outputs.write_dataset(out_dir / "stacked.fits.gz", dataset)
    result.dataset = dataset

    with _timed(timings, "fit"):
        apply_fit_range(dataset, config)
        dataset.models = models
        fit_result = fit_dataset(dataset)
        result.fit = fit_summary(fit_result, dataset.models)
        result.models = dataset.models
    outputs.write_models(out_dir / "models.yaml", dataset.models)
    outputs.write_json(out_dir / "fit.json", result.fit)

    workers = None
    if not options.serial:
        from actors.profile import WorkerGroup

        workers = WorkerGroup()  # profiles and flux points share the worker processes
    try:
        mapper, executor = make_mapper(options.serial, n_workers, workers)
        if options.profiles:
            with _timed(timings, "profiles"):
                result.profiles = run_profiles(dataset, mapper)
            outputs.write_json(out_dir / "profiles.json", result.profiles)

        with _timed(timings, "flux_points"):
            result.flux_points = run_flux_points(dataset, config, executor)
    finally:
        if workers is not None:
            workers.close()  # give the CPUs back
    if result.flux_points is not None:
        outputs.write_flux_points(out_dir / "flux_points.ecsv", result.flux_points)

    if options.report:
        with _timed(timings, "report"):
            write_report(out_dir, dataset, models=dataset.models, fit_result=result.fit,
                         flux_points=result.flux_points, timings=dict(timings), reduction=result.reduction,
                         source=config.flux_points.source or None,
                         exclusion_region=list(config.datasets.background.exclusion_regions) or None)

    timings["total"] = time.perf_counter() - t_start
    result.reduction["timings"] = dict(timings)
    outputs.write_json(out_dir / "reduction.json", result.reduction)
    return result
