"""Instrument response functions (GADF DL3): readers and vectorised evaluation.

gammapy 2.1 is the numerical reference (interpolation scales, fill values, clipping); see each
class. Axes and values are plain float64 arrays in canonical units (TeV, deg, m2, sr-1,
s-1 TeV-1 sr-1); ``evaluate`` accepts Quantities, ``evaluate_values`` is the float hot path.
"""
from .aeff import EffectiveAreaTable2D
from .axes import AXIS_UNITS, IRFAxis
from .background import Background2D, Background3D, BackgroundIRF
from .core import FOV_ALIGNMENTS, IRFAxes, TableIRF
from .edisp import EnergyDispersion2D, log_centers
from .interp import GridInterpolator, trapz_loglog
from .parametric import EnergyDependentMultiGaussPSF, ParametricPSF, PSFKing
from .psf import PSF3D, RAD_AXIS_DEFAULT_EDGES, normalize_psf_values
from .registry import IRF_CLASSES, irf_class_from_header, irf_from_hdu

__all__ = [
    "AXIS_UNITS",
    "FOV_ALIGNMENTS",
    "IRF_CLASSES",
    "RAD_AXIS_DEFAULT_EDGES",
    "Background2D",
    "Background3D",
    "BackgroundIRF",
    "EffectiveAreaTable2D",
    "EnergyDependentMultiGaussPSF",
    "EnergyDispersion2D",
    "GridInterpolator",
    "IRFAxes",
    "IRFAxis",
    "PSF3D",
    "PSFKing",
    "ParametricPSF",
    "TableIRF",
    "irf_class_from_header",
    "irf_from_hdu",
    "log_centers",
    "normalize_psf_values",
    "trapz_loglog",
]
