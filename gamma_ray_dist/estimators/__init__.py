"""Estimators: flux points (`FluxPointsEstimator`, `FluxPoints`), light curves (`LightCurveEstimator`) and
their per-bin pure functions."""
from .flux_point import (
    FluxPointJob,
    FluxPointOptions,
    NormTemplate,
    estimate_flux_point,
    estimate_flux_point_templates,
    norm_templates,
    run_flux_point_job,
    slice_templates,
    snap_energy_bin,
)
from .lightcurve import LightCurveEstimator, LightCurveJob, run_light_curve_job
from .map import EstimatorInputError, ExcessMapEstimator, FluxMaps, TSMapEstimator
from .points import FluxPoints
from .reference import ScaleSpectralModel, TabulatedSpectralModel
from .sed import FluxPointsEstimator

__all__ = [
    "ExcessMapEstimator", "TSMapEstimator", "FluxMaps", "EstimatorInputError",
    "FluxPointsEstimator", "FluxPoints", "LightCurveEstimator", "LightCurveJob", "run_light_curve_job", "FluxPointOptions", "FluxPointJob", "NormTemplate",
    "estimate_flux_point", "estimate_flux_point_templates", "norm_templates", "slice_templates",
    "run_flux_point_job", "snap_energy_bin", "ScaleSpectralModel", "TabulatedSpectralModel",
]
