"""The simulated sky model: one point or Gaussian source with a power-law or log-parabola spectrum.

Parameter names follow gammapy's models (``lon_0``, ``lat_0``, ``sigma``, ``amplitude``,
``index``, ``alpha``, ``beta``, ``reference``) so fitted and true values line up by name.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["SourceModel", "truth", "CRAB_RA", "CRAB_DEC"]

CRAB_RA = 83.6331
CRAB_DEC = 22.0145


@dataclass(frozen=True)
class SourceModel:
    """A single simulated gamma-ray source (canonical units: deg, TeV, cm-2 s-1 TeV-1).

    Parameters
    ----------
    ra, dec : float
        ICRS position in deg (default: the Crab nebula).
    spatial : {"point", "gauss"}
        Spatial model; ``sigma`` (deg) is the Gaussian width.
    spectral : {"pl", "lp"}
        Power law ``amplitude * (E / reference) ** -index`` or log parabola
        ``amplitude * (E / reference) ** (-alpha - beta * ln(E / reference))`` (gammapy's form).
    amplitude : float
        dN/dE at ``reference`` in cm-2 s-1 TeV-1.
    index, alpha, beta : float
        Spectral shape parameters (``index`` for "pl", ``alpha``/``beta`` for "lp").
    reference : float
        Reference energy in TeV.
    name : str
        Source name, written as OBJECT in the event headers.
    """

    ra: float = CRAB_RA
    dec: float = CRAB_DEC
    spatial: str = "point"
    sigma: float = 0.0
    spectral: str = "pl"
    amplitude: float = 3.85e-11
    index: float = 2.6
    alpha: float = 2.4
    beta: float = 0.1
    reference: float = 1.0
    name: str = "Crab (simulated)"

    def __post_init__(self) -> None:
        if self.spatial not in ("point", "gauss"):
            raise ValueError(f"spatial must be 'point' or 'gauss', got {self.spatial!r}")
        if self.spectral not in ("pl", "lp"):
            raise ValueError(f"spectral must be 'pl' or 'lp', got {self.spectral!r}")
        if self.spatial == "gauss" and not self.sigma > 0:
            raise ValueError("a 'gauss' source needs sigma > 0 deg")

    def dnde(self, energy) -> np.ndarray:
        """Differential flux in cm-2 s-1 TeV-1 at true energy (TeV)."""
        x = np.asarray(energy, dtype=float) / self.reference
        if self.spectral == "pl":
            return self.amplitude * x**-self.index
        return self.amplitude * x ** (-self.alpha - self.beta * np.log(x))

    def truth(self) -> dict:
        """True parameters, named as in gammapy's models, with a ``units`` entry."""
        return truth(self)

    def to_dict(self) -> dict:
        """All fields as a plain dict (JSON-serialisable)."""
        return asdict(self)


def truth(source: SourceModel | None = None) -> dict:
    """True model parameters of ``source`` (default `SourceModel()`), keyed by gammapy names.

    Returns
    -------
    truth : dict
        ``spatial_model`` / ``spectral_model`` gammapy tags, ``lon_0``, ``lat_0`` (ICRS deg),
        ``sigma`` for a Gaussian, ``amplitude``, ``reference`` and ``index`` or ``alpha``/``beta``,
        and ``units`` mapping each parameter to its unit string.
    """
    s = source or SourceModel()
    out = {
        "name": s.name,
        "frame": "icrs",
        "spatial_model": "PointSpatialModel" if s.spatial == "point" else "GaussianSpatialModel",
        "lon_0": s.ra,
        "lat_0": s.dec,
        "amplitude": s.amplitude,
        "reference": s.reference,
    }
    units = {"lon_0": "deg", "lat_0": "deg", "amplitude": "cm-2 s-1 TeV-1", "reference": "TeV"}
    if s.spatial == "gauss":
        out["sigma"] = s.sigma
        units["sigma"] = "deg"
    if s.spectral == "pl":
        out["spectral_model"] = "PowerLawSpectralModel"
        out["index"] = s.index
        units["index"] = ""
    else:
        out["spectral_model"] = "LogParabolaSpectralModel"
        out["alpha"] = s.alpha
        out["beta"] = s.beta
        units.update(alpha="", beta="")
    out["units"] = units
    return out
