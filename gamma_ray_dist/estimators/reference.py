"""Reference spectral models of flux points: the norm-scaled source model and tabulated references.

`ScaleSpectralModel` multiplies a spectral model by a ``norm`` parameter (what the flux-point fit
adjusts); `TabulatedSpectralModel` interpolates ``ref_dnde`` in log-log, which is what a
"likelihood" flux-point table read without a model refers to (gammapy builds a
``TemplateSpectralModel`` for that case). `reference_fluxes` gives the four reference SED values of
a model on energy bins as plain float64 arrays in canonical units.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..modeling.models.spectral import PowerLawSpectralModel, SpectralModel, integrate_loglog

__all__ = ["ScaleSpectralModel", "TabulatedSpectralModel", "reference_fluxes", "default_reference_model"]


class ScaleSpectralModel(SpectralModel):
    """``norm * model(E)``: the wrapped model's parameters stay outside ``parameters``.

    Parameters
    ----------
    model : `SpectralModel`
        Model to scale (shared, not copied).
    norm : float or `Parameter`
        Initial norm (default 1, log interpolation for scans, as gammapy).
    """

    tag = ["ScaleSpectralModel", "scale"]
    _defaults = [("norm", 1.0, {"interp": "log"})]

    def __init__(self, model: SpectralModel, norm: Any = 1.0):
        self.model = model
        super().__init__(norm=norm)

    @property
    def _output_unit(self):  # type: ignore[override]
        return self.model._output_unit

    def cache_key(self) -> tuple:
        # The wrapped model's parameters are not ours, but evaluations depend on them.
        return super().cache_key() + (self.model.cache_key(),)

    def evaluate_values(self, energy_tev: Any) -> np.ndarray:
        return self.norm.value * self.model.evaluate_values(energy_tev)

    def integral_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        return self.norm.value * self.model.integral_values(energy_min_tev, energy_max_tev, **kwargs)

    def energy_flux_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        return self.norm.value * self.model.energy_flux_values(energy_min_tev, energy_max_tev, **kwargs)

    def __repr__(self) -> str:
        return f"ScaleSpectralModel(norm={self.norm.value:g}, model={self.model!r})"


class TabulatedSpectralModel(SpectralModel):
    """dnde tabulated at nodes, interpolated (and extrapolated) linearly in log E - log dnde.

    Parameters
    ----------
    energy : array_like
        Node energies in TeV (increasing).
    values : array_like
        dnde at the nodes (cm-2 s-1 TeV-1), positive.
    """

    tag = ["TabulatedSpectralModel"]
    _defaults: list = []

    def __init__(self, energy: Any, values: Any):
        super().__init__()
        self.energy = np.asarray(energy, dtype=float).ravel()
        self.values = np.asarray(values, dtype=float).ravel()

    def evaluate_values(self, energy_tev: Any) -> np.ndarray:
        x = np.log(np.asarray(energy_tev, dtype=float))
        xp, yp = np.log(self.energy), np.log(self.values)
        if xp.size == 1:
            return np.full(x.shape, self.values[0])
        y = np.interp(x, xp, yp)
        # linear extrapolation outside the nodes (np.interp clamps)
        lo, hi = x < xp[0], x > xp[-1]
        y = np.where(lo, yp[0] + (x - xp[0]) * (yp[1] - yp[0]) / (xp[1] - xp[0]), y)
        y = np.where(hi, yp[-1] + (x - xp[-1]) * (yp[-1] - yp[-2]) / (xp[-1] - xp[-2]), y)
        return np.exp(y)

    def integral_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        return integrate_loglog(self.evaluate_values, energy_min_tev, energy_max_tev, **kwargs)

    def energy_flux_values(self, energy_min_tev: Any, energy_max_tev: Any, **kwargs) -> np.ndarray:
        return integrate_loglog(self.evaluate_values, energy_min_tev, energy_max_tev, energy_flux=True, **kwargs)


def default_reference_model() -> SpectralModel:
    """Power law of index 2 (amplitude 1e-12 cm-2 s-1 TeV-1 at 1 TeV), gammapy's default reference."""
    return PowerLawSpectralModel(index=2)


def reference_fluxes(model: SpectralModel, energy_min: Any, energy_max: Any,
                     energy_ref: Any = None) -> dict[str, np.ndarray]:
    """Reference SED values of ``model`` per bin, canonical units (TeV, cm-2 s-1 [TeV-1], TeV cm-2 s-1).

    ``energy_ref`` defaults to the geometric mean of the bin edges (gammapy's log bin centre).
    Returns ``e_ref``, ``e_min``, ``e_max``, ``ref_dnde``, ``ref_e2dnde``, ``ref_flux``, ``ref_eflux``.
    """
    e_min = np.asarray(energy_min, dtype=float)
    e_max = np.asarray(energy_max, dtype=float)
    e_ref = np.sqrt(e_min * e_max) if energy_ref is None else np.asarray(energy_ref, dtype=float)
    dnde = np.asarray(model.evaluate_values(e_ref), dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.asarray(model.integral_values(e_min, e_max), dtype=float)
        eflux = np.asarray(model.energy_flux_values(e_min, e_max), dtype=float)
    return {"e_ref": e_ref, "e_min": e_min, "e_max": e_max, "ref_dnde": dnde, "ref_e2dnde": dnde * e_ref**2,
            "ref_flux": flux, "ref_eflux": eflux}
