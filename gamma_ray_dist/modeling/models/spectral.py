"""Spectral models: pure evaluation functions on TeV float64 arrays plus thin model classes.

Canonical units: energy TeV, dnde cm-2 s-1 TeV-1, flux cm-2 s-1, energy flux TeV cm-2 s-1.
Models with an analytic integral in gammapy (power laws) are integrated analytically; the others use
gammapy's scheme: log-log trapezoidal rule on a grid of ``ndecade=100`` points per decade
(`integrate_loglog`).

Hot path for the map evaluator::

    flux = model.integral_values(e_edges_tev[:-1], e_edges_tev[1:])   # cm-2 s-1, float64
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, ClassVar

import numpy as np
from astropy import units as u

from .core import ModelBase, register_model

__all__ = [
    "SpectralModel",
    "PowerLawSpectralModel",
    "PowerLawNormSpectralModel",
    "LogParabolaSpectralModel",
    "ExpCutoffPowerLawSpectralModel",
    "integrate_loglog",
    "trapz_loglog",
    "powerlaw_integral",
    "powerlaw_energy_flux",
]

DNDE_UNIT = u.Unit("cm-2 s-1 TeV-1")
_TINY = np.finfo(np.float64).tiny


@lru_cache(maxsize=256)
def _conversion(unit_from: u.UnitBase, unit_to: u.UnitBase) -> float:
    return float(unit_from.to(unit_to))


@lru_cache(maxsize=512)
def _canonical_factor(unit_from: u.UnitBase, target: str) -> float:
    """Factor from a parameter's unit to the canonical unit named by ``target``.

    Cached: parsing and converting units costs ~0.1 ms per call, paid on every model evaluation.
    """
    target_unit = u.Unit(target)
    return 1.0 if unit_from == target_unit else _conversion(unit_from, target_unit)


# --- pure maths ---------------------------------------------------------------------------
def powerlaw_integral(energy_min, energy_max, index, amplitude, reference) -> np.ndarray:
    """Analytic integral of ``amplitude * (E / reference) ** -index`` (log form where index == 1)."""
    energy_min, energy_max = np.asarray(energy_min, float), np.asarray(energy_max, float)
    val = 1.0 - np.asarray(index, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        prefactor = amplitude * reference / val
        upper = np.power(energy_max / reference, val)
        lower = np.power(energy_min / reference, val)
        integral = np.asarray(prefactor * (upper - lower), dtype=float)
    mask = np.isclose(val, 0)
    if np.any(mask):
        log_form = np.broadcast_to(amplitude * reference * np.log(energy_max / energy_min), integral.shape)
        integral = np.where(np.broadcast_to(mask, integral.shape), log_form, integral)
    return integral


def powerlaw_energy_flux(energy_min, energy_max, index, amplitude, reference) -> np.ndarray:
    """Analytic integral of ``E * amplitude * (E / reference) ** -index``."""
    energy_min, energy_max = np.asarray(energy_min, float), np.asarray(energy_max, float)
    val = 2.0 - np.asarray(index, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        prefactor = amplitude * reference**2 / val
        eflux = np.asarray(prefactor * ((energy_max / reference) ** val - (energy_min / reference) ** val))
    mask = np.isclose(val, 0)
    if np.any(mask):
        log_form = np.broadcast_to(amplitude * reference**2 * np.log(energy_max / energy_min), eflux.shape)
        eflux = np.where(np.broadcast_to(mask, eflux.shape), log_form, eflux)
    return eflux


def trapz_loglog(y: np.ndarray, x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Trapezoidal rule in log-log space: each interval integrated as a power law through its ends."""
    x, y = np.moveaxis(x, axis, 0), np.moveaxis(y, axis, 0)
    e_lo, e_hi = x[:-1], x[1:]
    y_lo, y_hi = y[:-1], y[1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        # log clipped at tiny as gammapy's LogScale: zero values give an infinite index (no flux)
        index = -np.log(np.clip(y_lo / y_hi, _TINY, np.inf)) / np.log(np.clip(e_lo / e_hi, _TINY, np.inf))
        index = np.where(np.isnan(index), np.inf, index)
        return powerlaw_integral(e_lo, e_hi, index, y_lo, e_lo)


def integrate_loglog(
    func: Callable[[np.ndarray], np.ndarray], energy_min, energy_max, ndecade: int = 100,
    energy_flux: bool = False,
) -> np.ndarray:
    """Integrate ``func`` (TeV -> values) over each [energy_min, energy_max] bin.

    Each bin is sampled on ``max(ndecade * max_decades, 2)`` log-spaced points (the same count for all
    bins, as gammapy), then integrated with `trapz_loglog`. ``func`` may return extra trailing axes
    (e.g. parameter samples) after the energy grid axis.
    """
    energy_min = np.atleast_1d(np.asarray(energy_min, float))
    energy_max = np.atleast_1d(np.asarray(energy_max, float))
    num = int(np.maximum(np.max(ndecade * np.log10(energy_max / energy_min)), 2))
    energy = np.geomspace(energy_min, energy_max, num=num, axis=-1)  # (..., num)
    values = func(energy)
    if values.ndim > energy.ndim:  # samples along a trailing axis: (..., num, n) -> (..., n, num)
        energy = np.broadcast_to(energy[..., np.newaxis], values.shape)
        values, energy = np.swapaxes(values, -1, -2), np.swapaxes(energy, -1, -2)
    if energy_flux:
        values = values * energy
    return trapz_loglog(values, energy, axis=-1).sum(axis=0)


# --- model classes -----------------------------------------------------------------------
class SpectralModel(ModelBase):
    """Base of spectral models.

    Subclasses implement the pure static ``evaluate(energy, **canonical_params)`` on float64 TeV arrays
    and list the canonical unit of each parameter in ``_canonical``; optional static
    ``evaluate_integral`` / ``evaluate_energy_flux`` give analytic integrals.
    """

    type: ClassVar[str] = "spectral"
    _canonical: ClassVar[dict[str, str]] = {}
    _output_unit: ClassVar[u.UnitBase] = DNDE_UNIT
    evaluate_integral: ClassVar[Callable | None] = None
    evaluate_energy_flux: ClassVar[Callable | None] = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._covariance = None

    @property
    def is_norm_spectral_model(self) -> bool:
        return "Norm" in type(self).__name__

    def canonical_values(self) -> dict[str, float]:
        """Parameter values converted to the canonical units (TeV, cm-2 s-1 TeV-1, ...)."""
        out = {}
        for name in self._parameter_names:
            par = getattr(self, name)
            out[name] = par.value * _canonical_factor(par.unit, self._canonical.get(name, ""))
        return out

    def _unit_factors(self) -> np.ndarray:
        return np.array(
            [_canonical_factor(getattr(self, n).unit, self._canonical.get(n, "")) for n in self._parameter_names]
        )

    # plain-array API (hot path) -------------------------------------------------------
    def evaluate_values(self, energy_tev: Any) -> np.ndarray:
        """dnde (cm-2 s-1 TeV-1; dimensionless for norm models) at energies in TeV."""
        return self.evaluate(np.asarray(energy_tev, float), **self.canonical_values())

    def integral_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        """Integral flux (cm-2 s-1) over each bin; analytic when available."""
        values = self.canonical_values()
        if self.evaluate_integral is not None:
            return self.evaluate_integral(np.asarray(energy_min_tev, float), np.asarray(energy_max_tev, float), **values)
        return integrate_loglog(lambda e: self.evaluate(e, **values), energy_min_tev, energy_max_tev, **kwargs)

    def energy_flux_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        """Energy flux (TeV cm-2 s-1) over each bin."""
        values = self.canonical_values()
        if self.evaluate_energy_flux is not None:
            return self.evaluate_energy_flux(
                np.asarray(energy_min_tev, float), np.asarray(energy_max_tev, float), **values
            )
        return integrate_loglog(
            lambda e: self.evaluate(e, **values), energy_min_tev, energy_max_tev, energy_flux=True, **kwargs
        )

    # Quantity API ---------------------------------------------------------------------
    def __call__(self, energy: u.Quantity) -> u.Quantity:
        e = u.Quantity(energy).to_value(u.TeV)
        return u.Quantity(self.evaluate_values(e), self._output_unit, copy=False)

    def integral(self, energy_min: u.Quantity, energy_max: u.Quantity, **kwargs) -> u.Quantity:
        """Integral flux between ``energy_min`` and ``energy_max``."""
        lo = u.Quantity(energy_min).to_value(u.TeV)
        hi = u.Quantity(energy_max).to_value(u.TeV)
        return u.Quantity(self.integral_values(lo, hi, **kwargs), self._output_unit * u.TeV)

    def energy_flux(self, energy_min: u.Quantity, energy_max: u.Quantity, **kwargs) -> u.Quantity:
        """Energy flux between ``energy_min`` and ``energy_max``."""
        lo = u.Quantity(energy_min).to_value(u.TeV)
        hi = u.Quantity(energy_max).to_value(u.TeV)
        return u.Quantity(self.energy_flux_values(lo, hi, **kwargs), self._output_unit * u.TeV**2)

    # covariance and errors ------------------------------------------------------------
    @property
    def covariance(self) -> np.ndarray:
        """Covariance of this model's parameters (parameter units); diagonal kept equal to error**2."""
        n = len(self._parameter_names)
        if self._covariance is None or self._covariance.shape != (n, n):
            self._covariance = np.zeros((n, n))
        cov = self._covariance.copy()
        for i, par in enumerate(self.parameters):
            cov[i, i] = np.nan_to_num(par.error**2, nan=1)
        return cov

    @covariance.setter
    def covariance(self, matrix: Any) -> None:
        matrix = np.array(matrix, dtype=float)
        n = len(self._parameter_names)
        if matrix.shape != (n, n):
            raise ValueError(f"Covariance of {type(self).__name__} must have shape {(n, n)}, got {matrix.shape}")
        self._covariance = matrix
        for i, par in enumerate(self.parameters):
            par.error = np.sqrt(matrix[i, i])

    def sample_parameters(self, n_samples: int, random_state: int = 42) -> np.ndarray:
        """Canonical-unit parameter samples (n_samples, n_pars) from the covariance (gammapy's RNG use)."""
        rng = np.random.RandomState(random_state)
        values = np.array([getattr(self, n).value for n in self._parameter_names])
        samples = rng.multivariate_normal(values, self.covariance, int(n_samples))
        return samples * self._unit_factors()

    def _propagate(self, fct: Callable, n_samples: int, random_state: int) -> np.ndarray:
        samples = self.sample_parameters(len(self._parameter_names) * n_samples, random_state)
        kwargs = {name: samples[:, i] for i, name in enumerate(self._parameter_names)}
        return fct(kwargs)

    @staticmethod
    def _errors_from_samples(values: np.ndarray, n_sigma: float = 1) -> np.ndarray:
        from scipy import stats as _stats  # here: ~0.3 s to import, which every reduction worker would pay

        values = np.where(np.isfinite(values), values, np.nan)
        median = np.nanpercentile(values, 50, axis=-1)
        errn = median - np.nanpercentile(values, 100 * _stats.norm.cdf(-n_sigma), axis=-1)
        errp = np.nanpercentile(values, 100 * _stats.norm.cdf(n_sigma), axis=-1) - median
        return np.array([np.atleast_1d(median), np.atleast_1d(errn), np.atleast_1d(errp)]).squeeze()

    def evaluate_error_values(self, energy_tev: Any, n_samples: int = 3500, random_state: int = 42) -> np.ndarray:
        """(median, errn, errp) of dnde at ``energy_tev`` by sampling the covariance, as gammapy."""
        e = np.asarray(energy_tev, float)
        vals = self._propagate(lambda kw: self.evaluate(e[..., np.newaxis], **kw), n_samples, random_state)
        return self._errors_from_samples(vals)

    def evaluate_error(self, energy: u.Quantity, n_samples: int = 3500, random_state: int = 42) -> u.Quantity:
        """dnde median, errn, errp at ``energy`` (Quantity of shape (3, n)), as gammapy's ``evaluate_error``."""
        e = u.Quantity(energy).to_value(u.TeV)
        return u.Quantity(self.evaluate_error_values(e, n_samples, random_state), self._output_unit)

    def integral_error(self, energy_min, energy_max, n_samples: int = 3500, random_state: int = 42) -> u.Quantity:
        """Integral flux median, errn, errp per bin by sampling the covariance."""
        lo = u.Quantity(energy_min).to_value(u.TeV)
        hi = u.Quantity(energy_max).to_value(u.TeV)
        vals = self._propagate(
            lambda kw: integrate_loglog(lambda e: self.evaluate(e[..., np.newaxis], **kw), lo, hi),
            n_samples, random_state,
        )
        return u.Quantity(self._errors_from_samples(vals), self._output_unit * u.TeV)

    def energy_flux_error(self, energy_min: u.Quantity, energy_max: u.Quantity, n_samples: int = 3500,
                          random_state: int = 42) -> u.Quantity:
        """Energy flux median, errn, errp per bin by sampling the covariance.

        Parameters
        ----------
        energy_min, energy_max : `~astropy.units.Quantity`
            Bin edges.
        n_samples : int
            Samples per free parameter.
        random_state : int
            Seed of the sampling.

        Returns
        -------
        `~astropy.units.Quantity`
            (median, errn, errp) in ``TeV cm-2 s-1`` (times the model's output unit).
        """
        lo = u.Quantity(energy_min).to_value(u.TeV)
        hi = u.Quantity(energy_max).to_value(u.TeV)
        vals = self._propagate(
            lambda kw: integrate_loglog(lambda e: self.evaluate(e[..., np.newaxis], **kw), lo, hi, energy_flux=True),
            n_samples, random_state,
        )
        return u.Quantity(self._errors_from_samples(vals), self._output_unit * u.TeV**2)

    def error_band(self, energy: u.Quantity, sed_type: str = "dnde", n_samples: int = 3500,
                   random_state: int = 42) -> dict[str, u.Quantity]:
        """Arrays behind gammapy's ``plot_error``: energy, value (median), errn, errp for ``dnde``/``e2dnde``."""
        energy = u.Quantity(energy, u.TeV)
        median, errn, errp = self.evaluate_error(energy, n_samples, random_state)
        if sed_type == "e2dnde":
            median, errn, errp = (energy**2 * x for x in (median, errn, errp))
        elif sed_type != "dnde":
            raise ValueError(f"sed_type must be 'dnde' or 'e2dnde', got {sed_type!r}")
        return {"energy": energy, "value": median, "errn": errn, "errp": errp,
                "lower": median - errn, "upper": median + errp}

    # plotting: the drawing code is in gamma_ray_dist.visualization, imported (with matplotlib) only
    # when a plot is drawn ---------------------------------------------------------------------
    def plot(self, energy_bounds: Any, ax: Any = None, sed_type: str = "dnde", energy_power: float = 0,
             n_points: int = 100, **kwargs: Any) -> Any:
        """Plot the model between ``energy_bounds``, as gammapy.

        Parameters
        ----------
        energy_bounds : `~astropy.units.Quantity` (2,), list of two energies, or `MapAxis`
            Energy range (or the bin edges of an axis).
        ax : `~matplotlib.axes.Axes`, optional
            Axes to draw on (default: the current axes).
        sed_type : {"dnde", "e2dnde", "flux", "eflux"}
            Quantity to plot; norm models always plot "norm".
        energy_power : float
            Multiply the values by E**energy_power (E in TeV).
        n_points : int
            Number of log energy bins.
        **kwargs
            Passed to ``ax.plot``.

        Returns
        -------
        ax : `~matplotlib.axes.Axes`
        """
        from ...visualization.spectral import plot_spectrum

        return plot_spectrum(self, energy_bounds, ax=ax, sed_type=sed_type, energy_power=energy_power,
                             n_points=n_points, **kwargs)

    def plot_error(self, energy_bounds: Any, ax: Any = None, sed_type: str = "dnde", energy_power: float = 0,
                   n_points: int = 100, n_samples: int = 3500, random_state: int = 42, **kwargs: Any) -> Any:
        """Plot the 1-sigma band of the model from its parameter covariance (butterfly).

        Parameters
        ----------
        energy_bounds, ax, sed_type, energy_power, n_points
            As `plot`.
        n_samples : int
            Covariance samples per free parameter.
        random_state : int
            Seed of the sampling.
        **kwargs
            Passed to ``ax.fill_between`` (defaults ``facecolor="black"``, ``alpha=0.2``,
            ``linewidth=0``).

        Returns
        -------
        ax : `~matplotlib.axes.Axes`
        """
        from ...visualization.spectral import plot_spectrum_error

        return plot_spectrum_error(self, energy_bounds, ax=ax, sed_type=sed_type, energy_power=energy_power,
                                   n_points=n_points, n_samples=n_samples, random_state=random_state, **kwargs)


@register_model("spectral")
class PowerLawSpectralModel(SpectralModel):
    r"""Power law :math:`\phi_0 (E / E_0)^{-\Gamma}` (parameters index, amplitude, reference)."""

    tag = ["PowerLawSpectralModel", "pl"]
    _defaults = [
        ("index", 2.0, {}),
        ("amplitude", "1e-12 cm-2 s-1 TeV-1", {"interp": "log"}),
        ("reference", "1 TeV", {"frozen": True}),
    ]
    _canonical = {"amplitude": "cm-2 s-1 TeV-1", "reference": "TeV"}

    @staticmethod
    def evaluate(energy, index, amplitude, reference):
        return amplitude * np.power(energy / reference, -index)

    evaluate_integral = staticmethod(powerlaw_integral)
    evaluate_energy_flux = staticmethod(powerlaw_energy_flux)


@register_model("spectral")
class PowerLawNormSpectralModel(SpectralModel):
    r"""Norm power law :math:`n (E / E_0)^{-t}` (parameters tilt [frozen], norm, reference)."""

    tag = ["PowerLawNormSpectralModel", "pl-norm"]
    _defaults = [
        ("tilt", 0.0, {"frozen": True}),
        ("norm", 1.0, {"interp": "log"}),
        ("reference", "1 TeV", {"frozen": True}),
    ]
    _canonical = {"reference": "TeV"}
    _output_unit = u.dimensionless_unscaled

    @staticmethod
    def evaluate(energy, tilt, norm, reference):
        return norm * np.power(energy / reference, -tilt)

    @staticmethod
    def evaluate_integral(energy_min, energy_max, tilt, norm, reference):
        return powerlaw_integral(energy_min, energy_max, tilt, norm, reference)

    @staticmethod
    def evaluate_energy_flux(energy_min, energy_max, tilt, norm, reference):
        return powerlaw_energy_flux(energy_min, energy_max, tilt, norm, reference)


@register_model("spectral")
class LogParabolaSpectralModel(SpectralModel):
    r"""Log parabola :math:`\phi_0 (E/E_0)^{-\alpha - \beta \ln(E/E_0)}` (natural log, as gammapy)."""

    tag = ["LogParabolaSpectralModel", "lp"]
    _defaults = [
        ("amplitude", "1e-12 cm-2 s-1 TeV-1", {"interp": "log"}),
        ("reference", "10 TeV", {"frozen": True}),
        ("alpha", 2.0, {}),
        ("beta", 1.0, {}),
    ]
    _canonical = {"amplitude": "cm-2 s-1 TeV-1", "reference": "TeV"}

    @classmethod
    def from_log10(cls, amplitude, reference, alpha, beta) -> "LogParabolaSpectralModel":
        """Construct from the log10 parametrisation of beta."""
        return cls(amplitude=amplitude, reference=reference, alpha=alpha, beta=beta / np.log(10))

    @staticmethod
    def evaluate(energy, amplitude, reference, alpha, beta):
        xx = energy / reference
        return amplitude * np.power(xx, -alpha - beta * np.log(xx))


@register_model("spectral")
class ExpCutoffPowerLawSpectralModel(SpectralModel):
    r"""Exponential cut-off power law :math:`\phi_0 (E/E_0)^{-\Gamma} \exp(-(\lambda E)^\alpha)`."""

    tag = ["ExpCutoffPowerLawSpectralModel", "ecpl"]
    _defaults = [
        ("index", 1.5, {}),
        ("amplitude", "1e-12 cm-2 s-1 TeV-1", {"interp": "log"}),
        ("reference", "1 TeV", {"frozen": True}),
        ("lambda_", "0.1 TeV-1", {}),
        ("alpha", 1.0, {"frozen": True}),
    ]
    _canonical = {"amplitude": "cm-2 s-1 TeV-1", "reference": "TeV", "lambda_": "TeV-1"}

    @staticmethod
    def evaluate(energy, index, amplitude, reference, lambda_, alpha):
        return amplitude * np.power(energy / reference, -index) * np.exp(-np.power(energy * lambda_, alpha))

    @property
    def e_peak(self) -> u.Quantity:
        """Peak of E^2 dN/dE, NaN when there is none."""
        v = self.canonical_values()
        with np.errstate(all="ignore"):
            e_peak = np.power((2 - v["index"]) / v["alpha"], 1 / v["alpha"]) / v["lambda_"]
        return (e_peak if np.isfinite(e_peak) and e_peak > 0 else np.nan) * u.TeV

