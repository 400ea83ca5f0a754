"""`Fit`: iminuit MIGRAD + covariance, likelihood profiles, surfaces and MINOS intervals.

The Minuit set-up reproduces gammapy 2.1 (``modeling/fit.py``, ``modeling/iminuit.py``) so that the
same datasets give the same path and the same number of evaluations: parameters autoscaled
(``|factor|`` in [1, 10)), Minuit on factors named ``par_000_<name>``, ``tol=0.1``, ``errordef=1``,
``strategy=1``, initial steps ``error/scale`` (or 1), limits ``min/scale``, ``max/scale``; the covariance
step takes the MIGRAD covariance of that Minuit object and scales it back to parameter units.

Differences, on purpose:
- a statistic that is not finite (or raises ``ValueError``/``ArithmeticError``) during the
  minimisation, e.g. a point source stepped off the map, is replaced by a large finite penalty
  (worst finite value seen + `PENALTY`) so MIGRAD backs off; the count is reported in the result and a
  minimum found on a penalised point is reported as failed;
- no free parameters, no datasets, a free parameter outside its bounds (named by its unique name), a
  dataset whose ``mask_safe & mask_fit`` is empty or holds no counts (``Dataset.fit_precheck``), a
  non-finite statistic at the start: ``success=False`` with the reason, before MIGRAD (nfev 0);
- a sky model that predicts no counts in any of its datasets' fit masks whatever its spectrum
  (``Dataset.model_coverage``, e.g. a source outside the map): its parameters are kept fixed, the others
  fitted, ``success=False`` with a reason naming the model and datasets (gammapy runs MIGRAD on them);
- every profile / surface point is `profile_point`, a pure function of (datasets, parameter name,
  value) that a Ray worker holding its own copy of the datasets can evaluate.
"""
from __future__ import annotations

import itertools
import logging
from typing import Any, Sequence

import numpy as np
from astropy.table import Table

from .dataset import Dataset, Datasets
from .fit_results import CovarianceResult, FitResult, OptimizeResult
from .parameter import Parameter, Parameters

__all__ = ["Fit", "profile_point", "confidence_task", "resolve_parameter", "PENALTY"]

log = logging.getLogger(__name__)

PENALTY = 1e6  # added to the worst finite statistic seen; >> any meaningful Cash difference


def _parse_datasets(datasets: Any) -> Datasets:
    if isinstance(datasets, Datasets):
        return datasets
    if isinstance(datasets, (list, tuple, Dataset)):
        return Datasets(datasets)
    raise TypeError(f"Expected a Datasets, a Dataset or a list of Dataset, got {type(datasets).__name__}")


def resolve_parameter(datasets: "Datasets", parameter: Any) -> tuple[Parameter, str]:
    """Return (parameter object, unique name) for a Parameter, a unique name or an unambiguous name."""
    models = datasets.models
    pars = models.parameters
    names = models.parameters_unique_names
    if isinstance(parameter, Parameter):
        for par, name in zip(pars, names):
            if par is parameter:
                return par, name
        raise ValueError(f"Parameter {parameter.name!r} does not belong to these datasets' models")
    if isinstance(parameter, str):
        par = models.parameter_by_unique_name(parameter)
        return par, names[pars.index(par)]
    raise TypeError(f"parameter must be a Parameter or a str, got {type(parameter).__name__}")


def _par_names(parameters: Parameters) -> list[str]:
    return [f"par_{idx:03d}_{par.name}" for idx, par in enumerate(parameters)]


class _Cost:
    """Minuit cost on factors: sets the parameters, returns the statistic with non-finite guarding."""

    def __init__(self, datasets: "Datasets", parameters: Parameters, store_trace: bool = False):
        self.datasets = datasets
        self.parameters = parameters
        self.store_trace = store_trace
        self.trace: list[dict] = []
        self.n_penalized = 0
        self.first_error: str | None = None
        self.worst_finite = -np.inf
        self.last_penalized = False

    def __call__(self, *factors: float) -> float:
        self.parameters.set_parameter_factors(factors)
        try:
            stat = float(self.datasets.stat_sum())
        except (ValueError, ArithmeticError) as exc:
            stat = np.nan
            if self.first_error is None:
                self.first_error = f"{type(exc).__name__}: {exc}"
        if np.isfinite(stat):
            self.worst_finite = max(self.worst_finite, stat)
            self.last_penalized = False
        else:
            self.n_penalized += 1
            self.last_penalized = True
            stat = (self.worst_finite if np.isfinite(self.worst_finite) else 0.0) + PENALTY
        if self.store_trace:
            row = {"total_stat": stat}
            row.update({f"par-{i}": p.value for i, p in enumerate(self.parameters.free_parameters)})
            self.trace.append(row)
        return stat


def _setup_minuit(datasets: "Datasets", parameters: Parameters, store_trace: bool = False, **kwargs):
    from iminuit import Minuit

    cost = _Cost(datasets, parameters, store_trace)
    free = parameters.free_parameters
    names = _par_names(free)
    minuit = Minuit(cost, *[p.factor for p in free], name=names)
    minuit.tol = kwargs.pop("tol", 0.1)
    minuit.errordef = kwargs.pop("errordef", 1)
    minuit.print_level = kwargs.pop("print_level", 0)
    minuit.strategy = kwargs.pop("strategy", 1)
    for name, par in zip(names, free):
        minuit.errors[name] = 1.0 if (par.error == 0 or np.isnan(par.error)) else par.error / par.scale
        lo = None if np.isnan(par.factor_min) else par.factor_min
        hi = None if np.isnan(par.factor_max) else par.factor_max
        minuit.limits[name] = (lo, hi)
    if kwargs:
        raise TypeError(f"Unknown Minuit options {sorted(kwargs)}")
    return minuit, cost


def _minuit_message(minuit, parameters: Parameters) -> str:
    # Same wording as gammapy (taken there from iminuit's scipy-like minimize interface)
    success = minuit.valid and np.all(np.isfinite(parameters.value))
    if success:
        return "Optimization terminated successfully" + ("." if minuit.accurate else ", but uncertainties are unreliable.")
    message = "Optimization failed."
    if minuit.fmin.has_reached_call_limit:
        message += " Call limit was reached."
    if minuit.fmin.is_above_max_edm:
        message += " Estimated distance to minimum too large."
    return message


def _bound(value: float, default: float) -> float:
    return default if np.isnan(value) else value


def _precheck(datasets: "Datasets", parameters: Parameters, check_datasets: bool = True) -> str | None:
    """Reason why a fit cannot start, or None.

    Checks: datasets and free parameters present, free parameters within their bounds and, with
    ``check_datasets``, each dataset's optional ``fit_precheck()`` (e.g. an empty fit mask, no counts).
    """
    if len(datasets) == 0:
        return "No datasets to fit"
    if len(parameters.free_parameters) == 0:
        return "No free parameters for fitting"
    bad = parameters.free_parameters.out_of_limits()
    if bad:
        names = _unique_names_by_id(datasets)
        desc = ", ".join(f"{names.get(id(p), p.name)}={p.value:g} not in "
                         f"[{_bound(p.min, -np.inf):g}, {_bound(p.max, np.inf):g}]" for p in bad)
        return f"Free parameter(s) outside their bounds: {desc}"
    if check_datasets:
        problems = []
        for dataset in datasets:
            check = getattr(dataset, "fit_precheck", None)
            if check is not None:
                problems.extend(check())
        if problems:
            return "; ".join(problems)
    return None


def _unique_names_by_id(datasets: "Datasets") -> dict[int, str]:
    """First unique name (``crab.spectral.index``) of every parameter object of the datasets' models."""
    models = datasets.models
    out: dict[int, str] = {}
    for par, name in zip(models.parameters, models.parameters_unique_names):
        out.setdefault(id(par), name)
    return out


def _models_without_counts(datasets: "Datasets") -> list[tuple[Any, list[str]]]:
    """Models with free parameters that predict no counts in the fit mask of any dataset they apply to.

    Uses the datasets' optional ``model_coverage()`` (spectrum-independent: a model whose amplitude is 0
    at the start is *not* flagged, a source outside the map is). A model is flagged only when every
    dataset it belongs to reports a coverage of 0 for it. Returns ``[(model, dataset names)]``.
    """
    coverage: dict[int, list] = {}
    models: dict[int, Any] = {}
    for dataset in datasets:
        if dataset.models is None:
            continue
        hook = getattr(dataset, "model_coverage", None)
        cov = hook() if hook is not None else None
        for model in dataset.models:
            if not any(not p.frozen for p in model.parameters):
                continue
            models.setdefault(id(model), model)
            value = None if cov is None else cov.get(model.name)
            coverage.setdefault(id(model), []).append((dataset.name, value))
    out = []
    for key, entries in coverage.items():
        if all(value is not None and value == 0 for _, value in entries):
            out.append((models[key], [name for name, _ in entries]))
    return out


def _describe_dead(dead: list[tuple[Any, list[str]]]) -> str:
    parts = []
    for model, names in dead:
        where = (f"dataset {names[0]!r}" if len(names) == 1
                 else "datasets " + ", ".join(repr(n) for n in names))
        parts.append(f"model {model.name!r} predicts no counts in {where} (is it outside the map?)")
    return "; ".join(parts)


class Fit:
    """Fit datasets with iminuit (gammapy-compatible interface).

    Parameters
    ----------
    backend : {"minuit"}
        Only iminuit is supported.
    optimize_opts : dict, optional
        Minuit settings (``tol``, ``strategy``, ``print_level``, ``errordef``) and ``migrad_opts``
        (passed to ``Minuit.migrad``, e.g. ``ncall``).
    covariance_opts : dict, optional
        Minuit settings for a stand-alone HESSE.
    confidence_opts : dict, optional
        Minuit settings for MINOS.
    store_trace : bool
        Record the statistic and free parameter values at each evaluation.
    precheck : bool
        Before MIGRAD, ask the datasets (optional ``Dataset.fit_precheck``) whether a fit makes sense
        (empty fit mask, no counts in it: ``success=False``, nothing run) and which sky models predict
        no counts at all (``Dataset.model_coverage``, e.g. a source outside the map: their parameters are
        kept fixed, the others fitted, ``success=False`` naming the model). Default True; the flux-point
        estimator turns it off (a bin without counts is a legitimate measurement there).
    """

    def __init__(self, backend: str = "minuit", optimize_opts: dict | None = None,
                 covariance_opts: dict | None = None, confidence_opts: dict | None = None,
                 store_trace: bool = False, precheck: bool = True):
        if backend != "minuit":
            raise ValueError(f"Unsupported backend {backend!r}: only 'minuit' is available")
        self.backend = backend
        self.store_trace = store_trace
        self.precheck = bool(precheck)
        self.optimize_opts = {"backend": backend} if optimize_opts is None else dict(optimize_opts)
        self.covariance_opts = {"backend": backend} if covariance_opts is None else dict(covariance_opts)
        self.confidence_opts = {"backend": backend} if confidence_opts is None else dict(confidence_opts)
        self._minuit = None

    @staticmethod
    def _opts(opts: dict) -> dict:
        kwargs = dict(opts)
        backend = kwargs.pop("backend", "minuit")
        if backend != "minuit":
            raise ValueError(f"Unsupported backend {backend!r}: only 'minuit' is available")
        return kwargs

    # --- steps ----------------------------------------------------------------------------------
    def run(self, datasets: Any) -> FitResult:
        """MIGRAD then covariance; updates the datasets' models in place and sets their errors."""
        datasets = _parse_datasets(datasets)
        optimize_result = self.optimize(datasets)
        if optimize_result.minuit is None:  # the optimisation could not start
            cov = CovarianceResult(backend=self.backend, method="hesse", success=False,
                                   message="Covariance not computed: optimisation did not run", matrix=None)
            return FitResult(optimize_result, cov)
        fixed = [resolve_parameter(datasets, name)[0] for name in optimize_result.unconstrained]
        if not fixed:
            return FitResult(optimize_result, self.covariance(datasets, optimize_result=optimize_result))
        # parameters kept fixed by optimize (model predicting no counts): covariance of the others
        # (the same free set as MIGRAD's), zero rows/columns for them, reported as failed
        frozen_before = [p.frozen for p in fixed]
        try:
            for p in fixed:
                p.frozen = True
            cov = self.covariance(datasets, optimize_result=optimize_result)
        finally:
            for p, frozen in zip(fixed, frozen_before):
                p.frozen = frozen
        message = (f"Covariance not computed for the unconstrained parameter(s) "
                   f"{', '.join(optimize_result.unconstrained)}; other parameters: {cov.message}")
        cov = CovarianceResult(backend=cov.backend, method=cov.method, success=False, message=message,
                               matrix=cov.matrix)
        return FitResult(optimize_result, cov)

    def optimize(self, datasets: Any) -> OptimizeResult:
        """Run MIGRAD from the current parameter values; the best fit is left in the models."""
        datasets = _parse_datasets(datasets)
        parameters = datasets.parameters
        kwargs = self._opts(self.optimize_opts)
        reason = _precheck(datasets, parameters, check_datasets=self.precheck)
        if reason is not None:
            return self._failed_result(datasets, reason)
        start_stat = _safe_stat(datasets)
        if not np.isfinite(start_stat):
            return self._failed_result(datasets, f"Fit statistic is not finite at the start values ({start_stat})")

        dead = _models_without_counts(datasets) if self.precheck else []
        if not dead:
            return self._migrad(datasets, parameters, kwargs)
        # their parameters do not change the statistic: keep them fixed, fit the others, report failure
        live = {id(p) for m in datasets.models if all(m is not d for d, _ in dead) for p in m.parameters}
        fixed = [p for m, _ in dead for p in m.parameters if not p.frozen and id(p) not in live]
        fixed = list({id(p): p for p in fixed}.values())
        names = _unique_names_by_id(datasets)
        reason = _describe_dead(dead) + ": its parameters are unconstrained"
        if len(fixed) == len(parameters.free_parameters):
            return self._failed_result(datasets, reason)
        try:
            for p in fixed:
                p.frozen = True
            result = self._migrad(datasets, datasets.parameters, kwargs)
        finally:
            for p in fixed:
                p.frozen = False
        message = (f"Optimization failed: {reason} and were kept at their start values; the other "
                   f"parameters were fitted ({result.message})")
        return OptimizeResult(
            models=datasets.models.copy(), nfev=result.nfev, total_stat=result.total_stat, trace=result.trace,
            minuit=result.minuit, n_penalized=result.n_penalized, backend="minuit", method="migrad",
            success=False, message=message, unconstrained=[names[id(p)] for p in fixed],
        )

    def _migrad(self, datasets: "Datasets", parameters: Parameters, kwargs: dict) -> OptimizeResult:
        parameters.autoscale()
        migrad_opts = kwargs.pop("migrad_opts", {})
        minuit, cost = _setup_minuit(datasets, parameters, self.store_trace, **kwargs)
        minuit.migrad(**migrad_opts)
        self._minuit = minuit

        parameters.set_parameter_factors(minuit.values)
        total_stat = _safe_stat(datasets)
        success = bool(minuit.valid)
        message = _minuit_message(minuit, parameters)
        if not np.isfinite(total_stat):
            success = False
            message = "Optimization failed: the statistic is not finite at the final parameter values."
        if cost.n_penalized:
            message += (f" {cost.n_penalized} evaluation(s) gave a non-finite statistic and were penalised"
                        + (f" (first error: {cost.first_error})" if cost.first_error else "") + ".")
        trace = Table(rows=cost.trace) if cost.trace else Table()
        if cost.trace:
            unique_names = _free_unique_names(datasets)
            trace.rename_columns(trace.colnames[1:], unique_names)
        return OptimizeResult(
            models=datasets.models.copy(), nfev=minuit.nfcn, total_stat=total_stat, trace=trace,
            minuit=minuit, n_penalized=cost.n_penalized, backend="minuit", method="migrad",
            success=success, message=message,
        )

    def _failed_result(self, datasets: "Datasets", reason: str) -> OptimizeResult:
        log.warning(f"Fit not run: {reason}")
        stat = _safe_stat(datasets) if len(datasets) else np.nan
        return OptimizeResult(models=datasets.models.copy(), nfev=0, total_stat=stat, trace=Table(), minuit=None,
                              backend=self.backend, method="migrad", success=False, message=reason)

    def covariance(self, datasets: Any, optimize_result: OptimizeResult | None = None) -> CovarianceResult:
        """Covariance at the current values (MIGRAD's, when ``optimize_result`` carries the Minuit)."""
        datasets = _parse_datasets(datasets)
        unique_pars = datasets.parameters
        models = datasets.models
        kwargs = self._opts(self.covariance_opts)
        free = unique_pars.free_parameters
        if len(free) == 0:
            return CovarianceResult(backend=self.backend, method="hesse", success=False,
                                    message="No free parameters", matrix=None)
        minuit = None if optimize_result is None else optimize_result.minuit
        with unique_pars.restore_status():
            if minuit is None:
                minuit, _ = _setup_minuit(datasets, unique_pars, False, **kwargs)
                minuit.hesse()
            message, success = "Hesse terminated successfully.", True
            if minuit.covariance is None:
                factor_matrix = np.full((len(free), len(free)), np.nan)
                message, success = "Hesse failed", False
            else:
                factor_matrix = np.array(minuit.covariance)
            matrix = _factor_to_value_covariance(factor_matrix, models.parameters)
            models.covariance = matrix
        datasets._covariance = (models.parameters, matrix)
        if optimize_result is not None:
            optimize_result.models.covariance = matrix.copy()
        return CovarianceResult(backend="minuit", method="hesse", success=success, message=message, matrix=matrix)

    def confidence(self, datasets: Any, parameter: Any, sigma: float = 1, reoptimize: bool = True) -> dict:
        """MINOS interval of one parameter: dict with ``errp``, ``errn``, ``success``, ``message``, ``nfev``."""
        datasets = _parse_datasets(datasets)
        _, name = resolve_parameter(datasets, parameter)
        return confidence_task(datasets, name, sigma=sigma, reoptimize=reoptimize,
                               confidence_opts=self._opts(self.confidence_opts))

    def stat_profile(self, datasets: Any, parameter: Any, reoptimize: bool = False) -> dict:
        """Statistic at ``parameter.scan_values``: ``{<name>_scan, stat_scan, fit_results}``."""
        datasets = _parse_datasets(datasets)
        par, name = resolve_parameter(datasets, parameter)
        values = par.scan_values
        points = [profile_point(datasets, name, v, reoptimize, self.optimize_opts) for v in values]
        return {
            f"{name}_scan": values,
            "stat_scan": np.array([p["stat"] for p in points]),
            "fit_results": [p["fit_result"] for p in points] if reoptimize else [],
        }

    def stat_surface(self, datasets: Any, x: Any, y: Any, reoptimize: bool = False) -> dict:
        """Statistic on the grid ``x.scan_values`` x ``y.scan_values`` (shape (nx, ny))."""
        datasets = _parse_datasets(datasets)
        par_x, name_x = resolve_parameter(datasets, x)
        par_y, name_y = resolve_parameter(datasets, y)
        xs, ys = par_x.scan_values, par_y.scan_values
        points = [
            profile_point(datasets, [name_x, name_y], [xv, yv], reoptimize, self.optimize_opts)
            for xv, yv in itertools.product(xs, ys)
        ]
        shape = (len(xs), len(ys))
        fit_results: Any = []
        if reoptimize:
            fit_results = np.empty(shape, dtype=object)
            fit_results.ravel()[:] = [p["fit_result"] for p in points]
        return {
            f"{name_x}_scan": xs,
            f"{name_y}_scan": ys,
            "stat_scan": np.array([p["stat"] for p in points]).reshape(shape),
            "fit_results": fit_results,
        }


def _safe_stat(datasets: "Datasets") -> float:
    try:
        return float(datasets.stat_sum())
    except (ValueError, ArithmeticError):
        return np.nan


def _free_unique_names(datasets: "Datasets") -> list[str]:
    models = datasets.models
    pars, names = models.parameters, models.parameters_unique_names
    seen, out = set(), []
    for p, n in zip(pars, names):
        if id(p) not in seen and not p.frozen:
            out.append(n)
        seen.add(id(p))
    return out


def _factor_to_value_covariance(factor_matrix: np.ndarray, parameters: Parameters) -> np.ndarray:
    """Expand the free-unique factor covariance to all ``parameters`` (zeros elsewhere), to value units."""
    n = len(parameters)
    first = {}
    for i, p in enumerate(parameters):
        first.setdefault(id(p), i)
    is_fit = np.array([not p.frozen and first[id(p)] == i for i, p in enumerate(parameters)])
    full = np.zeros((n, n))
    full[np.ix_(is_fit, is_fit)] = factor_matrix
    # duplicates (linked parameters) get the covariance of their first occurrence
    idx = np.array([first[id(p)] for p in parameters])
    full = full[np.ix_(idx, idx)]
    full[np.ix_([p.frozen for p in parameters], np.ones(n, bool))] = 0
    full[np.ix_(np.ones(n, bool), [p.frozen for p in parameters])] = 0
    df = np.array([p.inverse_transform_derivative(p.factor) for p in parameters])
    return df[:, None] * full * df[None, :]


def profile_point(datasets: Any, parameter: str | Sequence[str], value: float | Sequence[float],
                  reoptimize: bool = False, optimize_opts: dict | None = None) -> dict:
    """Statistic with one (or several) parameter(s) fixed at ``value``; the datasets are left unchanged.

    This is the unit of work of likelihood profiles and surfaces: it only needs the datasets (held once
    by a worker), parameter unique names (e.g. ``"crab.spectral.index"``) and values.

    Returns
    -------
    dict
        ``value``, ``stat`` (float), ``success``, ``message``, ``nfev`` and ``fit_result``
        (`OptimizeResult` when ``reoptimize``, else None).
    """
    datasets = _parse_datasets(datasets)
    names = [parameter] if isinstance(parameter, str) else list(parameter)
    values = np.atleast_1d(np.asarray(value, dtype=float))
    if len(names) != len(values):
        raise ValueError(f"Got {len(names)} parameter name(s) and {len(values)} value(s)")
    pars = [resolve_parameter(datasets, n)[0] for n in names]
    with datasets.parameters.restore_status():
        for par, v in zip(pars, values):
            par.value = v
        if reoptimize:
            for par in pars:
                par.frozen = True
            fit = Fit(optimize_opts=optimize_opts)
            if len(datasets.parameters.free_parameters) == 0:
                stat = _safe_stat(datasets)
                return {"value": value, "stat": stat, "success": bool(np.isfinite(stat)),
                        "message": "No other free parameters: statistic evaluated", "nfev": 1, "fit_result": None}
            result = fit.optimize(datasets)
            return {"value": value, "stat": result.total_stat, "success": result.success,
                    "message": result.message, "nfev": result.nfev, "fit_result": result}
        stat = _safe_stat(datasets)
    return {"value": value, "stat": stat, "success": bool(np.isfinite(stat)), "message": "", "nfev": 1,
            "fit_result": None}


def confidence_task(datasets: Any, parameter: str, sigma: float = 1, reoptimize: bool = True,
                    confidence_opts: dict | None = None) -> dict:
    """MINOS interval for one parameter (gammapy's ``confidence_iminuit``); datasets left unchanged.

    A fresh Minuit is set up at the current values (current scales, no autoscale, as gammapy), MIGRAD
    is run, then MINOS at confidence level ``2 * Phi(sigma) - 1``. ``errp``/``errn`` are in parameter units.
    """
    datasets = _parse_datasets(datasets)
    par, _ = resolve_parameter(datasets, parameter)
    kwargs = dict(confidence_opts or {})
    kwargs.pop("backend", None)
    if not reoptimize:
        log.warning("reoptimize=False is ignored by the minuit backend (MINOS always re-optimises)")
    parameters = datasets.parameters
    failed = {"success": False, "errp": np.nan, "errn": np.nan, "nfev": 0}
    if par.frozen:
        return {**failed, "message": f"Parameter {par.name!r} is frozen"}
    reason = _precheck(datasets, parameters)
    if reason is not None:
        return {**failed, "message": reason}
    with parameters.restore_status():
        migrad_opts = kwargs.pop("migrad_opts", {})
        minuit, _ = _setup_minuit(datasets, parameters, False, **kwargs)
        minuit.migrad(**migrad_opts)
        idx = [p is par for p in parameters.free_parameters].index(True)
        var = _par_names(parameters.free_parameters)[idx]
        from scipy.special import ndtr  # the standard normal CDF; imported here to keep workers light

        try:
            minuit.minos(var, cl=2 * ndtr(sigma) - 1, ncall=None)
            info = minuit.merrors[var]
        except (AttributeError, RuntimeError) as error:
            return {**failed, "message": str(error)}
        message = "Minos terminated" + (" successfully." if info.is_valid else ", but result is invalid.")
        result = {"success": bool(info.is_valid), "message": message, "errp": info.upper * par.scale,
                  "errn": -info.lower * par.scale, "nfev": info.nfcn}
    return result
