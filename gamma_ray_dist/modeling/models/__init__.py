"""Spectral, spatial and sky models, the `Models` collection and its gammapy-compatible YAML I/O."""
from .collection import DatasetModels, Models
from .core import MODEL_REGISTRY, ModelBase
from .pixel_integration import (
    integrate_oversampled,
    integrate_pixel_centers,
    oversampling_factor,
    point_source_weights,
    upsampled_pixel_centers,
)
from .sky import FoVBackgroundModel, SkyModel
from .spatial import DiskSpatialModel, GaussianSpatialModel, PointSpatialModel, SpatialModel
from .spectral import (
    ExpCutoffPowerLawSpectralModel,
    LogParabolaSpectralModel,
    PowerLawNormSpectralModel,
    PowerLawSpectralModel,
    SpectralModel,
    integrate_loglog,
)

__all__ = [
    "Models", "DatasetModels", "ModelBase", "MODEL_REGISTRY", "SkyModel", "FoVBackgroundModel",
    "SpatialModel", "PointSpatialModel", "GaussianSpatialModel", "DiskSpatialModel",
    "SpectralModel", "PowerLawSpectralModel", "PowerLawNormSpectralModel", "LogParabolaSpectralModel",
    "ExpCutoffPowerLawSpectralModel", "integrate_loglog", "point_source_weights", "oversampling_factor",
    "upsampled_pixel_centers", "integrate_oversampled", "integrate_pixel_centers",
]
