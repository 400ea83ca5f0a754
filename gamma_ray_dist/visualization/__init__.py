"""Plotting (optional: ``pip install gamma_ray_dist[plot]``).

Pure functions taking the package objects and an optional matplotlib ``ax``; matplotlib is imported
only when a function is called. The gammapy-named methods (``WcsNDMap.plot``/``plot_grid``,
``Observation.peek``, ``MapDataset.plot_residuals*``/``plot_npred_signal``, ``SpectralModel.plot``/
``plot_error``, ``FluxPoints.plot``, light curves included) are defined on those classes and call these functions, importing
them when called: this package sits above the science packages and none of them imports it at load.
"""
from ._mpl import MISSING_MATPLOTLIB
from .datasets import (
    RESIDUAL_LABELS,
    compute_residuals,
    npred_signal_spectra,
    plot_npred_signal,
    plot_residuals,
    plot_residuals_spatial,
    plot_residuals_spectral,
    residuals_spatial_map,
    residuals_spectral,
)
from .light_curve import light_curve_values, plot_light_curve
from .maps import add_colorbar, plot_grid, plot_map
from .observation import (
    events_counts_image,
    peek_observation,
    plot_aeff,
    plot_background_rate,
    plot_edisp,
    plot_events_energy,
    plot_events_image,
    plot_psf_containment,
)
from .spectral import (
    DEFAULT_UNIT,
    flux_points_values,
    plot_flux_points,
    plot_spectrum,
    plot_spectrum_error,
    spectrum_error_values,
    spectrum_values,
)

__all__ = [
    "MISSING_MATPLOTLIB",
    "plot_map", "plot_grid", "add_colorbar",
    "peek_observation", "plot_aeff", "plot_background_rate", "plot_edisp", "plot_psf_containment",
    "events_counts_image", "plot_events_image", "plot_events_energy",
    "plot_npred_signal", "npred_signal_spectra", "plot_residuals_spatial", "plot_residuals_spectral",
    "plot_residuals", "residuals_spatial_map", "residuals_spectral", "compute_residuals", "RESIDUAL_LABELS",
    "plot_spectrum", "plot_spectrum_error", "plot_flux_points", "spectrum_values", "spectrum_error_values",
    "flux_points_values", "DEFAULT_UNIT", "plot_light_curve", "light_curve_values",
]
