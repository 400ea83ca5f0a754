"""One flux point: fit the ``norm`` of the source's spectral model inside one energy bin.

Everything here is a pure function of its inputs, so bins can be computed anywhere (a Ray actor, a
process pool) and give the same numbers as the serial loop.

Fast path (``reoptimize=False``, the default): every other parameter is frozen, so the predicted
counts are *linear* in the norm, ``npred(norm) = other + norm * signal``. `norm_templates` evaluates
the models once per dataset (``signal`` = the source alone, ``other`` = background and the other
models), and the fit, TS, profile crossings and scans of a bin only do Cash sums on the pixels of that
bin. The statistic is the same function gammapy minimises (``MapDataset.stat_sum`` with the source
spectrum scaled by ``norm``), evaluated without re-running PSF/EDisp convolutions.

Generic path (``reoptimize=True``): the datasets themselves, restricted to the bin with ``mask_fit``,
with the other free parameters re-fitted at each step.

The estimation steps follow gammapy 2.1 ``ParameterEstimator`` / ``FluxEstimator`` with the flux-point
defaults: MIGRAD + covariance for norm and ``norm_err``; ``ts = stat(norm=0) - stat(best)``;
``norm_errn``/``norm_errp``/``norm_ul`` from Brent root finding of ``stat(norm) - stat_best = n_sigma^2``
between the best fit and the parameter's confidence bounds (gammapy's scipy ``confidence`` backend);
``stat_scan`` at ``norm.scan_values``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from scipy.optimize import brentq

from ..modeling.dataset import Dataset, Datasets
from ..modeling.fit import Fit
from ..modeling.models import Models, SkyModel
from ..modeling.models.spectral import SpectralModel
from ..modeling.parameter import Parameter
from ..stats import cash_sum
from .reference import ScaleSpectralModel

__all__ = [
    "FluxPointOptions", "NormTemplate", "FluxPointJob", "default_norm", "snap_energy_bin",
    "norm_templates", "estimate_flux_point", "estimate_flux_point_templates", "run_flux_point_job",
    "SELECTION_OPTIONAL",
]

SELECTION_OPTIONAL = ("errn-errp", "ul", "scan")


def default_norm(norm: Any = None, n_sigma_ul: float = 2, n_sigma_sensitivity: float = 5) -> Parameter:
    """The ``norm`` parameter as gammapy's FluxEstimator builds it (a `Parameter` or dict of overrides).

    Defaults: value 1, log interpolation, scan 0.2 to 5 in 11 values, ``scan_n_sigma =
    max(n_sigma_ul, n_sigma_sensitivity) + 1``.
    """
    if isinstance(norm, Parameter):
        par = norm.copy()
    else:
        kwargs = dict(name="norm", value=1, unit="", interp="log", frozen=False, scan_min=0.2, scan_max=5,
                      scan_n_values=11, scan_n_sigma=int(max(n_sigma_ul, n_sigma_sensitivity) + 1))
        if norm is not None:
            if not isinstance(norm, dict):
                raise TypeError(f"norm must be a Parameter, a dict or None, got {type(norm).__name__}")
            kwargs.update(norm)
        par = Parameter(**kwargs)
    if par.name != "norm":
        raise ValueError(f"The norm parameter must be named 'norm', got {par.name!r}")
    return par


@dataclass(frozen=True)
class FluxPointOptions:
    """Settings of a flux-point estimation (picklable, shared by all bins).

    Attributes
    ----------
    n_sigma, n_sigma_ul : float
        Sigma of the asymmetric errors and of the upper limit.
    selection_optional : tuple of str
        Subset of ``("errn-errp", "ul", "scan")``.
    reoptimize : bool
        Re-fit the other free parameters (slow generic path) or keep them frozen (fast path).
    norm : `Parameter`
        Template of the norm parameter (start value, bounds, scan values).
    optimize_opts, covariance_opts : dict
        Passed to `Fit`.
    """

    n_sigma: float = 1.0
    n_sigma_ul: float = 2.0
    selection_optional: tuple = ()
    reoptimize: bool = False
    norm: Parameter = field(default_factory=default_norm)
    optimize_opts: dict | None = None
    covariance_opts: dict | None = None

    def make_fit(self) -> Fit:
        # no dataset/model precheck: a bin without counts is a legitimate measurement (upper limit)
        return Fit(optimize_opts=self.optimize_opts, covariance_opts=self.covariance_opts, precheck=False)


@dataclass
class NormTemplate:
    """Pixels of one dataset inside the fit mask and one energy bin, linear in the norm.

    ``npred(norm) = other + norm * signal``; arrays are 1D float64 of the same length.
    """

    name: str
    counts: np.ndarray
    signal: np.ndarray
    other: np.ndarray


@dataclass
class FluxPointJob:
    """Unit of work of `run_flux_point_job`: one energy bin.

    Exactly one of ``templates`` (fast path) or ``datasets`` (generic path, with ``source``) is set.
    ``energy_min``/``energy_max`` are the snapped bin edges in TeV.
    """

    energy_min: float
    energy_max: float
    options: FluxPointOptions
    templates: list | None = None
    datasets: Any = None
    source: Any = None
    dataset_names: list = field(default_factory=list)


# --- energy bins ------------------------------------------------------------------------------
def snap_energy_bin(edges: np.ndarray, energy_min: float, energy_max: float) -> tuple[int, int] | None:
    """Index range ``[i0, i1)`` of the axis bins a requested bin maps to, or None if it is empty.

    As gammapy's ``MapAxis.group_table`` for a log energy axis: each requested edge goes to the nearest
    axis edge in log(E) (pixel coordinate rounded half-to-even), clipped to the axis.
    """
    edges = np.asarray(edges, dtype=float)
    nbin = edges.size - 1
    log_edges = np.log(edges)
    pix_nodes = np.arange(nbin + 1) - 0.5
    req = np.log(np.asarray([energy_min, energy_max], dtype=float))
    pix = np.interp(req, log_edges, pix_nodes)  # values outside are clipped just below anyway
    pix = np.clip(pix, -0.5, nbin - 0.5)
    idx = np.unique(np.round(pix + 0.5) - 0.5)
    if idx.size < 2:
        return None
    return int(idx[0] + 0.5), int(idx[1] + 0.5)


def _energy_edges(dataset) -> np.ndarray:
    return dataset._geom.axes["energy"].edges.to_value("TeV")


def _fit_mask(dataset) -> np.ndarray:
    mask = dataset.mask
    if mask is None:
        return np.ones(dataset.data_shape, dtype=bool)
    return np.asarray(mask.data, dtype=bool)


# --- templates (fast path) -----------------------------------------------------------------------
def _source_model(models: Models, source: Any):
    return models[source] if isinstance(source, (str, int, np.integer)) else source


def norm_templates(datasets: Any, source: Any) -> list[dict]:
    """Evaluate each dataset once: full-cube ``counts``, ``mask``, ``signal``, ``other`` and ``edges``.

    ``signal`` is the source's npred (its current parameters), ``other`` the npred of the background
    and of every other model. The datasets are not modified.
    """
    datasets = Datasets(datasets)
    out = []
    for dataset in datasets:
        models = dataset.models if dataset.models is not None else Models([])
        names = models.names
        name = _source_model(datasets.models, source).name
        if name not in names:
            continue  # the source does not apply to this dataset: nothing to fit there
        # the dataset's own (cached) evaluators; "other" = all sky models but the source + background
        signal = np.asarray(dataset.npred_signal(model_names=[name]).data, dtype=float)
        other = np.asarray(dataset.npred_signal().data, dtype=float) - signal
        if dataset.background is not None:
            other = other + np.asarray(dataset.npred_background().data, dtype=float)
        out.append({"name": dataset.name, "counts": np.asarray(dataset.counts.data, dtype=float),
                    "mask": _fit_mask(dataset), "signal": signal, "other": other,
                    "edges": _energy_edges(dataset)})
    return out


def slice_templates(full: list[dict], energy_min: float, energy_max: float) -> tuple[list[NormTemplate], float, float]:
    """Restrict full-cube templates to a requested bin; returns (templates, e_min, e_max) snapped.

    When no dataset bin snaps into the requested one, ``([], energy_min, energy_max)``: the (NaN) row
    keeps the requested edges, as in gammapy.
    """
    templates, e_lo, e_hi = [], [], []
    for t in full:
        idx = snap_energy_bin(t["edges"], energy_min, energy_max)
        if idx is None:
            continue
        i0, i1 = idx
        sel = t["mask"][i0:i1]
        templates.append(NormTemplate(t["name"], t["counts"][i0:i1][sel], t["signal"][i0:i1][sel],
                                      t["other"][i0:i1][sel]))
        e_lo.append(t["edges"][i0])
        e_hi.append(t["edges"][i1])
    if not templates:
        return [], float(energy_min), float(energy_max)
    return templates, float(min(e_lo)), float(max(e_hi))


class _TemplateDataset(Dataset):
    """Dataset whose statistic is the Cash sum of a `NormTemplate` at the model's norm."""

    def __init__(self, template: NormTemplate, models: Models):
        super().__init__(name=template.name, models=models)
        self.template = template
        self._norm = models[0].spectral_model.norm

    def npred_values(self) -> np.ndarray:
        t = self.template
        return np.clip(t.other + self._norm.value * t.signal, 0, None)

    def stat_sum(self) -> float:
        # cash_sum truncates npred <= 1e-25 like gammapy (negative norms give a finite statistic)
        t = self.template
        return cash_sum(t.counts, t.other + self._norm.value * t.signal)

    def npred_sums(self) -> tuple[float, float]:
        return float(self.npred_values().sum()), float(self._norm.value * self.template.signal.sum())

    def counts_sum(self) -> float:
        return float(self.template.counts.sum())


# --- the estimation steps --------------------------------------------------------------------------
def _stat_at(datasets: Datasets, norm: Parameter, value: float, reoptimize: bool, fit: Fit) -> float:
    with datasets.parameters.restore_status():
        norm.value = value
        if reoptimize and len(datasets.parameters.free_parameters) > 1:
            norm.frozen = True
            fit.optimize(datasets)
        return float(datasets.stat_sum())


def _crossing(datasets: Datasets, norm: Parameter, sigma: float, reoptimize: bool, fit: Fit, upper: bool) -> float:
    """Distance from the best fit to where the statistic rises by ``sigma**2`` (gammapy's scipy backend)."""
    reoptimize = reoptimize and len(datasets.parameters.free_parameters) > 1
    with datasets.parameters.restore_status():
        stat_best = float(datasets.stat_sum())
        start, scale = norm.factor, norm.scale
        lo, hi = norm.conf_bounds()
        bound = (hi if upper else lo) / scale

        def delta(factor: float) -> float:
            norm.factor = factor
            if reoptimize:
                norm.frozen = True
                fit.optimize(datasets)
            return float(datasets.stat_sum()) - stat_best - sigma**2

        try:
            root = brentq(delta, start, bound)
        except (ValueError, RuntimeError):
            return np.nan
    return abs(root - start) * scale


def _npred_sums(datasets: Datasets, source_name: str) -> tuple[np.ndarray, np.ndarray]:
    npred, excess = [], []
    for d in datasets:
        if isinstance(d, _TemplateDataset):
            a, b = d.npred_sums()
        else:
            mask = _fit_mask(d)
            a = float(d.npred().data[mask].sum())
            b = float(d.npred_signal(model_names=[source_name]).data[mask].sum())
        npred.append(a)
        excess.append(b)
    return np.array(npred), np.array(excess)


def _counts_sums(datasets: Datasets) -> np.ndarray:
    out = []
    for d in datasets:
        if isinstance(d, _TemplateDataset):
            out.append(d.counts_sum())
        else:
            out.append(float(d.counts.data[_fit_mask(d)].sum()))
    return np.array(out)


def _estimate(datasets: Datasets, norm: Parameter, source_name: str, options: FluxPointOptions) -> dict:
    """gammapy's ParameterEstimator.run for the norm (null value 0)."""
    fit = options.make_fit()
    selection = options.selection_optional
    result: dict = {}
    with datasets.parameters.restore_status():
        if not options.reoptimize:
            datasets.parameters.freeze_all()
            norm.frozen = False
        fit_result = fit.run(datasets)
        result["norm"] = norm.value
        result["stat"] = fit_result.total_stat
        result["success"] = bool(fit_result.success)
        result["norm_err"] = norm.error * options.n_sigma

        stat = float(datasets.stat_sum())
        result["npred"], result["npred_excess"] = _npred_sums(datasets, source_name)
        stat_null = _stat_at(datasets, norm, 0.0, options.reoptimize, fit)
        result["ts"] = stat_null - stat
        result["stat_null"] = stat_null

        if "errn-errp" in selection:
            fit.optimize(datasets)
            result["norm_errp"] = _crossing(datasets, norm, options.n_sigma, options.reoptimize, fit, upper=True)
            result["norm_errn"] = _crossing(datasets, norm, options.n_sigma, options.reoptimize, fit, upper=False)
        if "ul" in selection:
            fit.optimize(datasets)
            errp = _crossing(datasets, norm, options.n_sigma_ul, options.reoptimize, fit, upper=True)
            result["norm_ul"] = norm.value + errp
        if "scan" in selection:
            fit.optimize(datasets)
            values = norm.scan_values
            result["norm_scan"] = values
            result["stat_scan"] = np.array([_stat_at(datasets, norm, v, options.reoptimize, fit) for v in values])
    result["counts"] = _counts_sums(datasets)
    return result


def _nan_result(options: FluxPointOptions, n_datasets: int) -> dict:
    result = {"norm": np.nan, "stat": np.nan, "success": False, "norm_err": np.nan, "ts": np.nan,
              "stat_null": np.nan, "counts": np.zeros(n_datasets), "npred": np.full(n_datasets, np.nan),
              "npred_excess": np.full(n_datasets, np.nan)}
    if "errn-errp" in options.selection_optional:
        result.update(norm_errp=np.nan, norm_errn=np.nan)
    if "ul" in options.selection_optional:
        result["norm_ul"] = np.nan
    if "scan" in options.selection_optional:
        values = options.norm.scan_values
        result.update(norm_scan=values, stat_scan=np.full(values.shape, np.nan))
    return result


def estimate_flux_point_templates(templates: Sequence[NormTemplate], energy_min: float, energy_max: float,
                                  options: FluxPointOptions, source_name: str = "source") -> dict:
    """Fast-path flux point from bin templates (see `slice_templates`); pure and cheap.

    Returns a dict with ``e_min``, ``e_max``, ``e_ref`` (TeV), ``norm``, ``norm_err``, ``ts``, ``stat``,
    ``stat_null``, ``success``, ``npred``/``npred_excess``/``counts`` (one entry per template) and the
    optional ``norm_errp``, ``norm_errn``, ``norm_ul``, ``norm_scan``, ``stat_scan``.
    """
    out = {"e_min": energy_min, "e_max": energy_max, "e_ref": float(np.sqrt(energy_min * energy_max))}
    if len(templates) == 0:
        out.update(_nan_result(options, 0))
        return out
    norm = options.norm.copy()
    scale_model = ScaleSpectralModel(_FlatSpectrum(), norm=norm)
    models = Models([SkyModel(scale_model, name=source_name)])
    datasets = Datasets([_TemplateDataset(t, models) for t in templates])
    norm = scale_model.norm
    if options.reoptimize:
        options = FluxPointOptions(**{**options.__dict__, "reoptimize": False})
    out.update(_estimate(datasets, norm, source_name, options))
    out["datasets"] = [t.name for t in templates]
    return out


def _bin_datasets(datasets: Datasets, source: Any, energy_min: float, energy_max: float, norm: Parameter):
    """Shallow copies restricted to the bin by ``mask_fit``, the source spectrum norm-scaled.

    Returns ``(datasets, e_min, e_max, (scale_model, source name))`` with the snapped edges, or
    ``(None, energy_min, energy_max, None)`` (the requested edges) when no dataset bin snaps into it.
    """
    from ..maps import Map

    out, e_lo, e_hi = [], [], []
    for d in datasets:
        edges = _energy_edges(d)
        idx = snap_energy_bin(edges, energy_min, energy_max)
        if idx is None:
            continue
        sel = np.zeros(d.data_shape, dtype=bool)
        sel[idx[0]:idx[1]] = True
        if d.mask_fit is not None:
            sel &= np.asarray(d.mask_fit.data, dtype=bool)
        new = copy.copy(d)
        new.mask_fit = Map.from_geom(d._geom, data=sel, dtype=bool)
        out.append(new)
        e_lo.append(edges[idx[0]])
        e_hi.append(edges[idx[1]])
    if not out:
        return None, float(energy_min), float(energy_max), None
    models = datasets.models.copy()
    src = _source_model(models, source)
    src.parameters.freeze_all()
    scale_model = ScaleSpectralModel(src.spectral_model, norm=norm.copy())
    scale_model.norm._type = "spectral"
    src.spectral_model = scale_model
    binned = Datasets(out)
    binned.models = models
    return binned, float(min(e_lo)), float(max(e_hi)), (scale_model, src.name)


def estimate_flux_point(datasets: Any, energy_min: float, energy_max: float, source: Any = 0,
                        options: FluxPointOptions | None = None) -> dict:
    """Flux point of ``source`` in the requested bin ``[energy_min, energy_max]`` (TeV, snapped).

    Pure: the datasets and their models are left unchanged. Uses the template fast path unless
    ``options.reoptimize``.
    """
    options = options or FluxPointOptions()
    datasets = Datasets(datasets)
    source_name = _source_model(datasets.models, source).name
    if not options.reoptimize:
        templates, e_lo, e_hi = slice_templates(norm_templates(datasets, source_name), energy_min, energy_max)
        return estimate_flux_point_templates(templates, e_lo, e_hi, options, source_name)
    binned, e_lo, e_hi, extra = _bin_datasets(datasets, source_name, energy_min, energy_max, options.norm)
    out = {"e_min": e_lo, "e_max": e_hi, "e_ref": float(np.sqrt(e_lo * e_hi))}
    if binned is None:
        out.update(_nan_result(options, 0))
        return out
    scale_model, _ = extra
    out.update(_estimate(binned, scale_model.norm, source_name, options))
    out["datasets"] = binned.names
    return out


def run_flux_point_job(job: FluxPointJob) -> dict:
    """Executor entry point: compute one `FluxPointJob` (see `FluxPointsEstimator.run`)."""
    if job.templates is not None:
        return estimate_flux_point_templates(job.templates, job.energy_min, job.energy_max, job.options,
                                             source_name=job.source or "source")
    return estimate_flux_point(job.datasets, job.energy_min, job.energy_max, job.source, job.options)


class _FlatSpectrum(SpectralModel):
    """Unit spectrum: the templates already hold the source's npred at norm = 1."""

    tag = ["_FlatSpectrum"]
    _defaults: list = []

    def evaluate_values(self, energy_tev: Any) -> np.ndarray:
        return np.ones_like(np.asarray(energy_tev, dtype=float))
