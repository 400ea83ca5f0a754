"""Pixel integration of spatial models: gammapy's ``integrate_geom`` rules as pure array functions.

How the map evaluator uses them (for one spatial model on a 2D image grid of ny x nx pixels)::

    # point source: bilinear share of the flux between the 4 nearest pixel centres
    x0, y0 = wcs.world_to_pixel(model.position)                 # 0-based pixel coords
    frac = point_source_weights(nx, ny, x0, y0)                  # (ny, nx), sums to 1 inside the map

    # extended source: pixel-centre value * solid angle, oversampled for small sources
    f = oversampling_factor(model.evaluation_bin_size_min, pix_scale_deg)
    x, y = upsampled_pixel_centers(nx, ny, f)                   # coords in the *original* pixel system
    lon, lat = <pixel -> world in model.frame>(x, y)             # e.g. wcs.pixel_to_world_values
    frac = integrate_oversampled(model.evaluate_values(lon, lat), f, solid_angle_sr)   # (ny, nx)

``frac`` is the fraction of the source flux in each pixel (dimensionless), to be multiplied by the
spectral ``integral_values`` on the true-energy edges and by the exposure. gammapy computes these on a
cutout of width ``2 * max(evaluation_radius, pixel scale)`` around the source (mode "trim") and zero
elsewhere; if that cutout does not overlap the map it uses ``f = 1`` on the whole map. gammapy stores
the results in float32 maps; these functions return float64 (differences ~1e-7 relative).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy import units as u

__all__ = [
    "MAX_OVERSAMPLING",
    "point_source_weights",
    "grid_weights",
    "oversampling_factor",
    "upsampled_pixel_centers",
    "integrate_oversampled",
    "integrate_pixel_centers",
]

MAX_OVERSAMPLING = 200


def grid_weights(x: np.ndarray, y: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Bilinear weights ``max(1-|x-x0|, 0) * max(1-|y-y0|, 0)`` (centroid-preserving)."""
    dx = np.abs(x - x0)
    dy = np.abs(y - y0)
    return np.where(dx < 1, 1 - dx, 0) * np.where(dy < 1, 1 - dy, 0)


def point_source_weights(nx: int, ny: int, x0: float, y0: float) -> np.ndarray:
    """Fraction of a point source's flux in each pixel of an (ny, nx) image.

    Parameters
    ----------
    nx, ny : int
        Image size.
    x0, y0 : float
        Source position in 0-based pixel coordinates of that image (``wcs.world_to_pixel``).

    Returns
    -------
    weights : ndarray, shape (ny, nx)
        Non-zero on at most 4 pixels; the sum is < 1 when the source is within one pixel of the
        border and 0 when it is farther outside (the evaluator should flag the latter).
    """
    y, x = np.indices((int(ny), int(nx)), dtype=float)
    return grid_weights(x, y, float(x0), float(y0))


def oversampling_factor(bin_size_min: Any, pix_scale_deg: float) -> int:
    """Oversampling factor gammapy uses for a model of minimal evaluation bin size ``bin_size_min``.

    ``None`` -> 1; ``0`` -> `MAX_OVERSAMPLING`; otherwise ``min(ceil(pix_scale / bin_size_min), 200)``.
    ``pix_scale_deg`` is the largest pixel scale of the map (deg).
    """
    if bin_size_min is None:
        return 1
    res = u.Quantity(bin_size_min, u.deg).to_value(u.deg) if isinstance(bin_size_min, u.Quantity) else float(bin_size_min)
    if res > 0:
        return int(np.minimum(int(np.ceil(pix_scale_deg / res)), MAX_OVERSAMPLING))
    return MAX_OVERSAMPLING


def upsampled_pixel_centers(nx: int, ny: int, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the ``factor x factor`` sub-pixels of an (ny, nx) image, in its own 0-based pixel coords.

    Equivalent to gammapy's ``geom.upsample(factor)`` grid: ``x = (i + 0.5) / factor - 0.5``.
    Returns ``(x, y)`` arrays of shape (ny * factor, nx * factor).
    """
    xs = (np.arange(nx * factor) + 0.5) / factor - 0.5
    ys = (np.arange(ny * factor) + 0.5) / factor - 0.5
    y, x = np.meshgrid(ys, xs, indexing="ij")
    return x, y


def integrate_oversampled(values_up: np.ndarray, factor: int, solid_angle: np.ndarray) -> np.ndarray:
    """Sum ``values / factor**2`` over each block of sub-pixels and multiply by the pixel solid angle.

    Parameters
    ----------
    values_up : ndarray, shape (..., ny * factor, nx * factor)
        Surface brightness (sr-1) at the sub-pixel centres.
    factor : int
        Oversampling factor.
    solid_angle : ndarray, shape (ny, nx)
        Solid angle of the original pixels (sr).
    """
    values_up = np.asarray(values_up, dtype=float)
    ny, nx = values_up.shape[-2] // factor, values_up.shape[-1] // factor
    blocks = values_up.reshape(values_up.shape[:-2] + (ny, factor, nx, factor))
    return np.nansum(blocks, axis=(-3, -1)) / factor**2 * solid_angle


def integrate_pixel_centers(values: np.ndarray, solid_angle: np.ndarray) -> np.ndarray:
    """Rectangle rule without oversampling: value at the pixel centre times the pixel solid angle."""
    return np.asarray(values, dtype=float) * solid_angle
