"""Flux-point plots (the module `gamma_ray_dist.estimators.FluxPoints.plot` calls)."""
from .spectral import flux_points_values, plot_flux_points

__all__ = ["plot_flux_points", "flux_points_values"]
