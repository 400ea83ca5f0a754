"""The end-to-end 3D stacked analysis: config -> reduction -> fit -> profiles -> flux points.

`run_pipeline` is what ``gamma-ray-dist run`` calls, with the execution backend the command line
created (`gamma_ray_dist.distributed`); every output goes to ``out_dir`` through the atomic writers
of `gamma_ray_dist.outputs`:

``stacked.fits.gz``  the stacked `MapDataset` (gammapy format); with ``datasets.stack: false``
                     instead ``datasets/datasets.yaml`` + ``datasets/obs-<id>.fits.gz``: one dataset
                     per observation (gammapy's ``Datasets.write`` layout), fitted jointly
                     (see `pipeline.unstacked`)
``models.yaml``      best-fit models (gammapy format) + ``models_covariance.dat``
``fit.json``         success, message, total_stat, nfev, parameters
``profiles.json``    likelihood profiles and MINOS errors (``profiles=True``)
``flux_points.ecsv`` flux points (gammapy format), when ``flux_points.energy`` is configured
``excess_map.fits.gz``, ``ts_map.fits.gz``  sky maps (gammapy ``FluxMaps``), when ``excess_map`` /
                     ``ts_map`` are in the config
``light_curve.ecsv``, ``light_curve.fits``  the light curve (gammapy "lightcurve" table), when the
                     ``light_curve`` section asks for one: on the per-observation datasets
                     (``stack: false``) or, stacked, on the observations stacked per time interval
                     (one more grouped reduction pass; `pipeline.light_curve.light_curve_datasets`)
``reduction.json``   per-observation status and numbers, run timings

While it runs, ``out_dir/.grd-run`` (`gamma_ray_dist.distributed.resume`) holds the reducers'
checkpoints and the per-observation statuses: a run that is killed or interrupted keeps it, and the
next run of the same configuration into the same ``out_dir`` resumes from it (``fresh=True``
discards it); it is removed once every output is written, and after an error a rerun would repeat
(an invalid input, a failed observation with ``strict``, nothing reduced).
"""
from __future__ import annotations

import functools
import logging
import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import outputs
from ..config import AnalysisConfig
from ..distributed.resume import RUN_DIR_NAME, RunDirError
from ..errors import GammaRayDistError
from .report import update_report_timings, write_report
from .fitting import (add_fov_background_models, apply_fit_range, fit_dataset, fit_summary, load_models,
                      run_flux_points, run_profiles)
from .inputs import datastore_dir, make_reduction_spec, open_datastore, select_obs_ids
from .tasks import SummaryAccumulator, make_shared, reduce_task
from .unstacked import DATASETS_DIR, DatasetFilesWriter, reduce_per_observation, stacked_view

__all__ = ["PipelineOptions", "PipelineResult", "NothingReduced", "run_pipeline", "reduce_stacked",
           "reduction_report"]

log = logging.getLogger(__name__)


class NothingReduced(GammaRayDistError):
    """No observation was selected, or every selected observation failed."""


@dataclass
class PipelineOptions:
    """What to produce (where and how to run is the backend's business).

    Attributes
    ----------
    models : path, optional
        Models YAML (default ``general.models_file``).
    out_dir : path, optional
        Output directory (default ``general.outdir``).
    profiles : bool
        Compute likelihood profiles and MINOS errors of every free parameter.
    report : bool
        Write the figures (PNG, needs matplotlib) and ``report.md`` (default True).
    resume : bool
        Keep the run resumable in ``out_dir/.grd-run`` and resume an unfinished run of the same
        configuration found there (default True).
    fresh : bool
        Discard an unfinished run found in ``out_dir/.grd-run`` instead of resuming it.
    """

    models: str | os.PathLike | None = None
    out_dir: str | os.PathLike | None = None
    profiles: bool = False
    report: bool = True
    resume: bool = True
    fresh: bool = False


@dataclass
class PipelineResult:
    """What a run produced (also written to ``out_dir``)."""

    out_dir: Path
    dataset: Any = None
    datasets: Any = None  # the per-observation `Datasets` (stack: false); ``dataset`` is then their stack
    state: dict | None = None
    fit: dict | None = None
    models: Any = None
    flux_points: Any = None
    profiles: dict | None = None
    sky_maps: dict | None = None
    light_curve: Any = None
    reduction: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


@contextmanager
def _timed(timings: dict, stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def reduce_stacked(config: AnalysisConfig, obs_ids: list[int], backend, spec=None, task_fn=reduce_task,
                   **overrides: Any):
    """Reduce ``obs_ids`` into the stacked accumulator state on ``backend``: ``(state, RunReport)``.

    ``task_fn`` (default `tasks.reduce_task`) is the per-observation work; tests wrap it to inject
    faults. ``overrides`` change the backend's settings for this reduction (e.g. ``block_size``).
    """
    shared, make_acc = reduction_inputs(config, spec)
    return backend.reduce(obs_ids, task_fn, shared, make_acc, **overrides)


def reduction_inputs(config: AnalysisConfig, spec=None) -> tuple[dict, Any]:
    """``(shared, make_accumulator)`` of the reduction `reduce_stacked` runs."""
    from ..datasets.partial import StackGeometry

    spec = spec if spec is not None else make_reduction_spec(config)
    geometry = StackGeometry.from_dataset(spec.stacked_dataset())
    return make_shared(str(datastore_dir(config)), spec), functools.partial(SummaryAccumulator, geometry, spec.name)


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
            entry["cpu"] = status.cpu  # CPU of the worker process during the observation
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
        "block_size": report.block_size,
        "n_blocks": report.n_blocks,
        "merge_fan_in": report.merge_fan_in,
        "n_reducers": report.n_reducers,
        "n_tasks": report.n_tasks,
        "n_groups": report.n_groups,  # datasets of a grouped reduction (stack: false); 0: one stack
        "n_resumed": report.n_resumed,
        "n_head": report.n_head,  # reduced by the driver while Ray started (RayBackend head start)
    }


def run_pipeline(config: AnalysisConfig, options: PipelineOptions | None = None, backend=None) -> PipelineResult:
    """Run the whole analysis on ``backend`` and write its outputs; see the module docstring.

    Parameters
    ----------
    config : AnalysisConfig
        The analysis.
    options : PipelineOptions, optional
        What to produce.
    backend : Backend, optional
        Where to run (`gamma_ray_dist.distributed`); default: one made from ``config.ray`` for this
        run and closed at its end.

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
    with ExitStack() as stack:
        if backend is None:
            from ..distributed import ExecutionSettings, make_backend

            backend = stack.enter_context(make_backend(ExecutionSettings.resolve(config.ray)))
        return _run(config, options, backend)


def _run(config: AnalysisConfig, options: PipelineOptions, backend) -> PipelineResult:
    out_dir = Path(options.out_dir or config.general.outdir)
    out_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    result = PipelineResult(out_dir=out_dir, timings=timings)
    t_start = time.perf_counter()

    with _timed(timings, "setup"):
        datastore = open_datastore(config)
        obs_ids = select_obs_ids(config, datastore)
        spec = make_reduction_spec(config)
        stacked = config.datasets.stack
        # fail early on a bad models file; unstacked: FoV background models per dataset come later
        models = load_models(config, spec.name if stacked else None, options.models)
    if not obs_ids:
        raise NothingReduced("no observation selected (check observations.obs_ids / obs_cone / obs_time)")
    with _timed(timings, "setup"):
        # a grouped reduction (stack: false) is not resumable: no run directory
        resumable = options.resume and stacked
        run_dir = _open_run_dir(config, options, out_dir, obs_ids, spec, backend) if resumable else None
    if run_dir is None and (out_dir / RUN_DIR_NAME).is_dir():
        log.warning("%s holds an unfinished run, left as it is (not resumed: resume=False)", out_dir / RUN_DIR_NAME)
    try:
        result = _reduce_and_analyse(config, options, backend, result, datastore, obs_ids, spec, models, run_dir,
                                     t_start)
    except RunDirError:
        run_dir.close()  # e.g. a refused checkpoint: kept for the user to look at (or --fresh)
        raise
    except GammaRayDistError:
        if run_dir is not None:  # a rerun would fail the same way: nothing worth resuming
            run_dir.discard()
        raise
    except BaseException:
        if run_dir is not None:  # interrupted or lost: resumable
            run_dir.close()
        raise
    if run_dir is not None:
        run_dir.finish()
    return result


def _open_run_dir(config: AnalysisConfig, options: PipelineOptions, out_dir: Path, obs_ids: list[int], spec,
                  backend):
    """The run directory of this run (before the backend starts: a mismatch fails at once)."""
    from ..distributed.resume import RunDir

    shared, make_acc = reduction_inputs(config, spec)
    s = backend.settings
    return RunDir.open(out_dir / RUN_DIR_NAME, obs_ids=obs_ids, task_fn=reduce_task, shared=shared,
                       make_accumulator=make_acc, block_size=s.block_size, merge_fan_in=s.merge_fan_in,
                       fresh=options.fresh, announce=logging.getLogger().isEnabledFor(logging.WARNING))


def _reduce_and_analyse(config: AnalysisConfig, options: PipelineOptions, backend, result: PipelineResult,
                        datastore, obs_ids: list[int], spec, models, run_dir, t_start: float) -> PipelineResult:
    out_dir, timings = result.out_dir, result.timings
    stacked = config.datasets.stack
    with _timed(timings, "backend_start"):
        backend.start(defer=True)  # a local Ray starts with the reduction, which uses that time (RayBackend)

    reduce_epoch = [time.time()]
    with _timed(timings, "reduce"):
        if stacked:
            state, report = reduce_stacked(config, obs_ids, backend, spec,
                                           **({"run_dir": run_dir} if run_dir is not None else {}))
        else:  # each observation's dataset is written as soon as it is final (see pipeline.unstacked)
            writer = DatasetFilesWriter(out_dir / DATASETS_DIR)
            entries, report = reduce_per_observation(config, obs_ids, backend, spec, on_group=writer)
            state = {"summaries": writer.summaries}
    result.state = state
    reduce_epoch.append(time.time())
    result.reduction = reduction_report(obs_ids, state, report, timings)
    # when the reduce stage ran (epoch seconds): a profiler can attribute CPU to it
    result.reduction["reduce_epoch"] = reduce_epoch
    name, reason = backend.choice
    result.reduction["backend_choice"] = f"{name} ({reason})"
    if report.n_ok == 0:
        outputs.write_json(out_dir / "reduction.json", result.reduction)
        raise NothingReduced(f"none of the {len(obs_ids)} selected observations could be reduced "
                             f"(see {out_dir / 'reduction.json'})")

    if stacked:
        with _timed(timings, "stack"):
            dataset = SummaryAccumulator.from_state(state).to_dataset(spec.name)
        with _timed(timings, "write_dataset"):
            outputs.write_dataset(out_dir / "stacked.fits.gz", dataset)
        fitted = dataset
    else:
        from ..modeling.dataset import Datasets

        with _timed(timings, "write_dataset"):
            index = writer.write_index(entries)
        with _timed(timings, "read_datasets"):
            fitted = result.datasets = Datasets.read(index)
        models = add_fov_background_models(models, fitted.names)
    result.dataset = fitted if stacked else None

    with _timed(timings, "fit"):
        for d in (fitted if not stacked else [fitted]):
            apply_fit_range(d, config)
        fitted.models = models
        fit_result = fit_dataset(fitted)
        result.fit = fit_summary(fit_result, fitted.models)
        result.models = fitted.models
    outputs.write_models(out_dir / "models.yaml", fitted.models)
    outputs.write_json(out_dir / "fit.json", result.fit)

    if options.profiles:
        with _timed(timings, "profiles"):
            result.profiles = run_profiles(fitted, backend)
        outputs.write_json(out_dir / "profiles.json", result.profiles)
    with _timed(timings, "flux_points"):
        result.flux_points = run_flux_points(fitted, config, backend)
    if not stacked and (options.report or config.excess_map.requested or config.ts_map.requested):
        with _timed(timings, "stack"):  # the sky maps and the figures show the stacked datasets
            dataset = result.dataset = stacked_view(fitted, spec)
    if result.flux_points is not None:
        outputs.write_flux_points(out_dir / "flux_points.ecsv", result.flux_points)
    if config.light_curve.requested:
        from .light_curve import light_curve_datasets, run_light_curve, write_light_curve

        with _timed(timings, "light_curve"):
            lc_datasets = fitted if not stacked else light_curve_datasets(
                config, obs_ids, backend, spec, fitted.models, datastore.obs_table)
            result.light_curve = run_light_curve(lc_datasets, config, backend)
        write_light_curve(result.light_curve, out_dir)
    if config.excess_map.requested or config.ts_map.requested:
        from .inputs import make_exclusion_mask
        from .sky_maps import run_sky_maps

        with _timed(timings, "sky_maps"):
            result.sky_maps = run_sky_maps(dataset, config, backend=backend, out_dir=out_dir,
                                           exclusion_mask=make_exclusion_mask(config, dataset.counts.geom))

    if options.report:
        with _timed(timings, "report"):
            write_report(out_dir, dataset, models=dataset.models, fit_result=result.fit,
                         flux_points=result.flux_points, timings=dict(timings), reduction=result.reduction,
                         source=config.flux_points.source or None,
                         exclusion_region=list(config.datasets.background.exclusion_regions) or None,
                         sky_maps=result.sky_maps, fitted_models=None if stacked else fitted.models,
                         light_curve=result.light_curve)

    timings["total"] = time.perf_counter() - t_start
    if options.report:  # the same total as the command line and reduction.json
        update_report_timings(out_dir / "report.md", timings)
    result.reduction["timings"] = dict(timings)
    outputs.write_json(out_dir / "reduction.json", result.reduction)
    return result
