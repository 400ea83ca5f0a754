"""Models, fit, likelihood profiles, MINOS errors and flux points of the stacked dataset.

The independent fits (profile points, MINOS intervals, flux-point bins) are jobs for the execution
backend's ``map`` (`gamma_ray_dist.distributed`: the dataset is shared once, each worker deserialises
it once); every job is a pure function of (dataset, arguments), so any backend gives the same numbers.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import AnalysisConfig
from ..errors import ConfigError

__all__ = [
    "load_models",
    "add_fov_background_models",
    "apply_fit_range",
    "fit_dataset",
    "fit_summary",
    "profile_jobs",
    "profile_job",
    "minos_job",
    "run_profiles",
    "dataset_job",
    "backend_executor",
    "run_flux_points",
    "PROFILE_POINTS",
]

#: Points of each likelihood profile (gammapy's default ``scan_n_values``).
PROFILE_POINTS = 11


def load_models(config: AnalysisConfig, dataset_name: str | list[str] | None,
                models_path: str | os.PathLike | None = None):
    """`Models` from ``models_path`` (else ``general.models_file``) plus a FoV background model for the
    dataset (or each of the datasets) ``dataset_name`` names that has none, as gammapy's
    ``Analysis.set_models`` (None: no background model added).

    Raises
    ------
    ConfigError
        No models file given, or it cannot be read.
    """
    from ..modeling.models import Models

    path = models_path or config.general.models_file
    if not path:
        raise ConfigError("general.models_file", "no models: give --models MODELS.yaml or general.models_file")
    path = Path(os.path.expandvars(str(path))).expanduser()
    try:
        models = Models.read(path)
    except ConfigError:
        raise  # names the key inside the models file, and the file
    except FileNotFoundError:
        raise ConfigError("general.models_file", f"models file not found: {path}") from None
    except OSError as exc:
        raise ConfigError("general.models_file", f"cannot read {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("general.models_file", f"invalid models file {path}: {exc}") from None
    return add_fov_background_models(models, [] if dataset_name is None else dataset_name)


def add_fov_background_models(models, dataset_names: str | list[str]):
    """``models`` plus ``FoVBackgroundModel(dataset_name=name)`` for each name without one."""
    from ..modeling.models import FoVBackgroundModel, Models

    names = [dataset_names] if isinstance(dataset_names, str) else list(dataset_names)
    added = [FoVBackgroundModel(dataset_name=name) for name in names
             if not any(isinstance(m, FoVBackgroundModel) and name in (m.datasets_names or [name]) for m in models)]
    return Models(list(models) + added) if added else models


def apply_fit_range(dataset, config: AnalysisConfig) -> None:
    """Set ``mask_fit`` to the energy bins fully inside ``fit.fit_range`` (gammapy's ``energy_mask``).

    Bin edges are compared with a relative tolerance of 1e-9, so that a log-spaced top edge of
    ``10.000000000000002`` counts as inside a range ending at 10 TeV.
    """
    from ..maps import Map

    fr = config.fit.fit_range
    if not fr.is_set:
        return
    geom = dataset.counts.geom
    edges = np.asarray(geom.axes["energy"].edges.to_value("TeV"), dtype=float)
    lo, hi = fr.min.to_value("TeV"), fr.max.to_value("TeV")
    rtol = 1e-9
    inside = (edges[:-1] >= lo * (1 - rtol)) & (edges[1:] <= hi * (1 + rtol))
    if not inside.any():
        raise ConfigError("fit.fit_range", f"no energy bin of the dataset lies inside [{lo}, {hi}] TeV")
    data = np.broadcast_to(inside[:, None, None], geom.data_shape).copy()
    dataset.mask_fit = Map.from_geom(geom, data=data, dtype=bool)


def fit_dataset(dataset) -> Any:
    """MIGRAD + covariance of the dataset's (or `Datasets`') models (updated in place); the `FitResult`."""
    from ..modeling import Fit

    return Fit().run(_as_datasets(dataset))


def _as_datasets(dataset) -> Any:
    """What `Fit` and the estimators take: a `Datasets` as it is, one dataset in a list."""
    from ..modeling.dataset import Datasets

    return dataset if isinstance(dataset, Datasets) else [dataset]


def fit_summary(result, models) -> dict[str, Any]:
    """``fit.json`` content: success, message, total_stat, nfev and the parameters table."""
    parameters = []
    for par, unique in zip(models.parameters, models.parameters_unique_names):
        parameters.append({
            "model": unique.split(".")[0],
            "name": par.name,
            "value": float(par.value),
            "error": float(par.error),
            "unit": par.unit.to_string("fits"),  # gammapy's convention (its model YAML), e.g. TeV-1 s-1 cm-2
            "frozen": bool(par.frozen),
        })
    return {
        "success": bool(result.success),
        "message": str(result.message),
        "total_stat": float(result.total_stat),
        "nfev": int(result.nfev),
        "parameters": parameters,
    }


# ------------------------------------------------------------------------------------------------
# profiles and MINOS: pure jobs on a dataset holding the best-fit models
# ------------------------------------------------------------------------------------------------
def free_parameter_names(models) -> list[str]:
    """Unique names of the free parameters, in model order."""
    seen, out = set(), []
    for par, name in zip(models.parameters, models.parameters_unique_names):
        if not par.frozen and id(par) not in seen:
            out.append(name)
        seen.add(id(par))
    return out


def _isolated(dataset):
    """A private deep copy for one job.

    The model evaluators keep history (the PSF kernel / cutout anchor moves only when the source
    drifts far enough, as in gammapy), so a job run on a dataset that earlier jobs used could differ in
    the last digits from the same job on a fresh worker. Starting every job from a copy of the same
    state makes the results independent of which worker ran which jobs, in which order.
    """
    return dataset.copy()


def profile_job(dataset, parameter: str, value: float) -> dict[str, Any]:
    """Statistic with ``parameter`` fixed at ``value`` and the others re-optimised (dataset unchanged)."""
    from ..modeling import profile_point

    point = profile_point(_as_datasets(_isolated(dataset)), parameter, float(value), reoptimize=True)
    return {"value": float(value), "stat": float(point["stat"]), "success": bool(point["success"]),
            "nfev": int(point["nfev"])}


def minos_job(dataset, parameter: str, sigma: float = 1.0) -> dict[str, Any]:
    """MINOS interval of ``parameter`` (dataset unchanged)."""
    from ..modeling import confidence_task

    out = confidence_task(_as_datasets(_isolated(dataset)), parameter, sigma=sigma)
    return {"errp": float(out["errp"]), "errn": float(out["errn"]), "success": bool(out["success"]),
            "message": str(out["message"]), "nfev": int(out["nfev"])}


def profile_jobs(models, n_points: int = PROFILE_POINTS) -> tuple[list[tuple[str, np.ndarray]], list]:
    """``([(name, scan values)], jobs)``: one MINOS job per free parameter, then ``n_points`` profile
    jobs per free parameter (jobs are ``(fn, kwargs)``, run by `dataset_job`; the MINOS jobs come
    first because they are the longest, so that no worker is left with one at the end)."""
    scans, jobs = [], []
    for name in free_parameter_names(models):
        par = models.parameter_by_unique_name(name)
        par.scan_n_values = int(n_points)
        values = np.asarray(par.scan_values, dtype=float)
        scans.append((name, values))
        jobs.extend((profile_job, {"parameter": name, "value": float(v)}) for v in values)
    return scans, [(minos_job, {"parameter": name}) for name, _ in scans] + jobs


def dataset_job(dataset, job: tuple[Callable[..., Any], dict]) -> Any:
    """Run one ``(fn, kwargs)`` job as ``fn(dataset, **kwargs)`` (the ``backend.map`` function)."""
    fn, kwargs = job
    return fn(dataset, **kwargs)


def run_profiles(dataset, backend=None) -> dict[str, Any]:
    """Profiles (11 re-optimised points) and MINOS errors of every free parameter.

    The jobs run through ``backend.map`` (default: in this process). Returns
    ``{name: {"values", "stat", "delta_stat", "success", "errp", "errn", "minos_success"}}``.
    """
    best = float(_isolated(dataset).stat_sum())
    scans, jobs = profile_jobs(dataset.models)
    results = backend.map(dataset_job, jobs, shared=dataset) if backend is not None else [
        dataset_job(dataset, job) for job in jobs]
    out: dict[str, Any] = {}
    i = len(scans)  # the MINOS results come first
    for name, values in scans:
        points = results[i:i + len(values)]
        i += len(values)
        stat = np.array([p["stat"] for p in points])
        out[name] = {"values": values.tolist(), "stat": stat.tolist(),
                     "delta_stat": (stat - best).tolist(),
                     "success": [p["success"] for p in points]}
    for k, (name, _) in enumerate(scans):
        m = results[k]
        out[name].update({"errp": m["errp"], "errn": m["errn"], "minos_success": m["success"],
                          "minos_message": m["message"]})
    return out


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def backend_executor(backend):
    """The built-in ``map`` protocol (``executor(fn, items)``) on ``backend``: ``fn`` is shared once."""
    return lambda fn, items: backend.map(_apply, list(items), shared=fn)


def run_flux_points(dataset, config: AnalysisConfig, backend=None):
    """Flux points of ``flux_points.source`` in ``flux_points.energy`` bins, or None when not configured.

    ``backend`` fans the bins out when they re-optimise the other parameters
    (``parameters.reoptimize: true``); the default fast path runs in this process.
    """
    from ..estimators import FluxPointsEstimator

    fp = config.flux_points
    edges = fp.energy.edges()
    if edges is None:
        return None
    if fp.source not in dataset.models.names:
        raise ConfigError("flux_points.source", f"no model named {fp.source!r} (models: {dataset.models.names})")
    params = dict(fp.parameters)
    estimator = FluxPointsEstimator(energy_edges=edges, source=fp.source, **params)
    # Fast path: a bin is a few ms of Cash sums on its own pixels, less than shipping the dataset
    # to a worker, so the bins run in this process unless they re-optimise.
    executor = backend_executor(backend) if backend is not None and estimator.reoptimize else None
    return estimator.run(_as_datasets(dataset), executor=executor)
