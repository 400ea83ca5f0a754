"""`FluxPointsEstimator`: flux points of one source in a list of energy bins (gammapy 2.1 API).

Each bin is an independent job (`FluxPointJob`) computed by the pure `run_flux_point_job`; ``run``
takes an optional ``executor`` with the protocol of the built-in ``map``::

    executor(fn, jobs) -> iterable of results, in the order of ``jobs``

so bins can be fanned out to Ray actors, a process pool, ... and give the same numbers as the serial
default. On the fast path (``reoptimize=False``) the models are evaluated once per dataset on the
driver and a job only carries the pixels of its bin (a few kB); with ``reoptimize=True`` a job carries
the datasets.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

from astropy import units as u

from ..modeling.dataset import Datasets
from .flux_point import (
    SELECTION_OPTIONAL,
    FluxPointJob,
    FluxPointOptions,
    default_norm,
    norm_templates,
    run_flux_point_job,
    slice_templates,
)
from .points import FluxPoints

__all__ = ["FluxPointsEstimator", "Executor"]

Executor = Callable[[Callable[[Any], dict], Iterable[Any]], Iterable[dict]]


def _parse_selection(selection: Any) -> tuple:
    if selection is None:
        return ()
    if isinstance(selection, str):
        selection = [selection]
    selection = list(selection)
    if "all" in selection:
        return SELECTION_OPTIONAL
    unknown = set(selection) - set(SELECTION_OPTIONAL)
    if unknown:
        raise ValueError(f"{unknown} is not a valid method; choose from {list(SELECTION_OPTIONAL)} or 'all'"
                         + (" (sensitivity is not supported)" if "sensitivity" in unknown else ""))
    return tuple(s for s in SELECTION_OPTIONAL if s in selection)


class FluxPointsEstimator:
    """Flux points estimator (fit of a norm on the source's spectral model per energy bin).

    Parameters
    ----------
    energy_edges : `~astropy.units.Quantity`
        Requested bin edges; each is snapped to the nearest dataset energy edge (in log E), as gammapy.
    source : str or int
        Source model (name or index in ``datasets.models``).
    n_sigma, n_sigma_ul : float
        Sigma of ``norm_errn``/``norm_errp`` and of ``norm_ul``.
    selection_optional : list of str, optional
        ``"errn-errp"``, ``"ul"``, ``"scan"`` or ``"all"``.
    fit : `Fit`, optional
        Only its ``optimize_opts``/``covariance_opts`` are used (a fresh `Fit` is made per job).
    reoptimize : bool
        Re-fit the other free parameters in each bin (slow generic path).
    sum_over_energy_groups : bool
        Only False is supported.
    norm : `Parameter` or dict, optional
        Norm parameter or overrides (``scan_min``, ``scan_max``, ``scan_n_values``, ``scan_values``,
        ``min``, ``max``...); ``norm_min``, ``norm_max``, ``norm_n_values``, ``norm_values`` are accepted
        as shortcuts for the scan settings (older gammapy spelling).
    n_jobs : int, optional
        Ignored (use ``executor``); kept for signature compatibility.
    """

    tag = "FluxPointsEstimator"

    def __init__(self, energy_edges=[1, 10] * u.TeV, source: Any = 0, n_sigma: float = 1, n_sigma_ul: float = 2,
                 selection_optional: Any = None, fit: Any = None, reoptimize: bool = False,
                 sum_over_energy_groups: bool = False, norm: Any = None, n_jobs: int | None = None,
                 norm_min: float | None = None, norm_max: float | None = None, norm_n_values: int | None = None,
                 norm_values: Any = None, n_sigma_sensitivity: float = 5):
        if sum_over_energy_groups:
            raise NotImplementedError("sum_over_energy_groups=True is not supported")
        self.energy_edges = u.Quantity(energy_edges, "TeV")
        self.source = source
        self.n_sigma = n_sigma
        self.n_sigma_ul = n_sigma_ul
        self.selection_optional = _parse_selection(selection_optional)
        self.fit = fit
        self.reoptimize = bool(reoptimize)
        self.sum_over_energy_groups = False
        self.n_jobs = n_jobs
        if isinstance(norm, dict) or norm is None:
            norm = dict(norm or {})
            for key, value in (("scan_min", norm_min), ("scan_max", norm_max),
                               ("scan_n_values", norm_n_values), ("scan_values", norm_values)):
                if value is not None:
                    norm[key] = value
            norm = norm or None
        self.norm = default_norm(norm, n_sigma_ul=n_sigma_ul, n_sigma_sensitivity=n_sigma_sensitivity)

    @property
    def options(self) -> FluxPointOptions:
        """The picklable settings every job receives."""
        opt = cov = None
        if self.fit is not None:
            opt = dict(self.fit.optimize_opts)
            cov = dict(self.fit.covariance_opts)
        return FluxPointOptions(n_sigma=self.n_sigma, n_sigma_ul=self.n_sigma_ul,
                                selection_optional=self.selection_optional, reoptimize=self.reoptimize,
                                norm=self.norm.copy(), optimize_opts=opt, covariance_opts=cov)

    def jobs(self, datasets: Any) -> list[FluxPointJob]:
        """One `FluxPointJob` per requested bin (models evaluated here once on the fast path)."""
        datasets = Datasets(datasets)
        models = datasets.models
        model = models[self.source]
        options = self.options
        edges = self.energy_edges.to_value("TeV")
        jobs = []
        if not self.reoptimize:
            full = norm_templates(datasets, model.name)
            for lo, hi in zip(edges[:-1], edges[1:]):
                templates, e_lo, e_hi = slice_templates(full, lo, hi)
                jobs.append(FluxPointJob(e_lo, e_hi, options, templates=templates, source=model.name,
                                         dataset_names=datasets.names))
        else:
            for lo, hi in zip(edges[:-1], edges[1:]):
                jobs.append(FluxPointJob(float(lo), float(hi), options, datasets=datasets, source=model.name,
                                         dataset_names=datasets.names))
        return jobs

    def run(self, datasets: Any, executor: Executor | None = None) -> FluxPoints:
        """Flux points for all bins.

        Parameters
        ----------
        datasets : `Datasets` or list of datasets
        executor : callable, optional
            ``executor(fn, jobs)`` returning the results of ``fn(job)`` in job order (default: ``map``).
        """
        datasets = Datasets(datasets)
        model = datasets.models[self.source]
        jobs = self.jobs(datasets)
        mapper = executor if executor is not None else map
        rows = list(mapper(run_flux_point_job, jobs))
        if len(rows) != len(jobs):
            raise RuntimeError(f"executor returned {len(rows)} results for {len(jobs)} jobs")
        meta = {"n_sigma": self.n_sigma, "n_sigma_ul": self.n_sigma_ul, "sed_type_init": "likelihood"}
        return FluxPoints.from_rows(rows, datasets.names, reference_model=model.spectral_model.copy(), meta=meta)

    def __str__(self) -> str:
        lines = [f"{type(self).__name__}", "-" * len(type(self).__name__), ""]
        for key in ("energy_edges", "source", "n_sigma", "n_sigma_ul", "selection_optional", "reoptimize"):
            lines.append(f"  {key:20s}: {getattr(self, key)}")
        return "\n".join(lines) + "\n"
