"""Pure stacking maths on plain numpy arrays (no maps, no astropy units, no Ray).

These functions reproduce what gammapy 2.1 computes in ``MapDataset.stack`` and
``IRFMap.stack``:

- counts and background are summed inside the other dataset's safe mask;
- exposure is summed inside the spatial safe mask image (OR over energy);
- PSF / EDisp maps are exposure-weighted means, with stacking weights given by the
  fine safe mask brought to the coarse IRF grid (nearest pixel for the PSF, linear
  interpolation with extrapolation for the energy dispersion, as gammapy does);
- safe masks are OR-ed.

Array layouts follow ``geom.data_shape`` (non-spatial axes first, then lat, lon).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

__all__ = [
    "Bounds",
    "window_slices",
    "overlap_bounds",
    "grid_centres_in",
    "mask_nearest",
    "mask_linear",
    "psf_stack_weights",
    "edisp_stack_weights",
    "exposure_weighted_mean",
]

# ((y_start, y_stop), (x_start, x_stop))
Bounds = Tuple[Tuple[int, int], Tuple[int, int]]


def window_slices(bounds: Bounds) -> tuple:
    """Index ``(..., y0:y1, x0:x1)`` of the window ``bounds`` in an array of the parent grid."""
    (y0, y1), (x0, x1) = bounds
    return Ellipsis, slice(y0, y1), slice(x0, x1)


def overlap_bounds(parent_wcs, parent_shape: Tuple[int, int], cutout_wcs,
                   cutout_shape: Tuple[int, int]) -> Tuple[Bounds, Bounds]:
    """Pixel bounds of an aligned cutout inside its parent grid.

    Equivalent to gammapy's ``cutout_slices(parent, mode="partial")`` for aligned
    grids: the cutout centre is projected on the parent grid and the integer offset
    of the cutout's first pixel is derived from it.

    Parameters
    ----------
    parent_wcs, cutout_wcs : `~astropy.wcs.WCS`
        Celestial (2D) WCS of both grids.
    parent_shape, cutout_shape : tuple of int
        Spatial shapes ``(ny, nx)``.

    Returns
    -------
    parent_bounds, cutout_bounds : tuple
        ``((y0, y1), (x0, x1))`` for the parent and for the cutout arrays.
    """
    ny, nx = cutout_shape
    cx, cy = (nx - 1) / 2.0, (ny - 1) / 2.0
    world = cutout_wcs.wcs_pix2world(np.array([[cx, cy]]), 0)
    px, py = parent_wcs.wcs_world2pix(world, 0)[0]
    # same rounding as astropy overlap_slices: ceil(pos - size / 2)
    x0 = int(np.ceil(px - nx / 2.0))
    y0 = int(np.ceil(py - ny / 2.0))
    bounds_parent, bounds_cutout = [], []
    for start, size, parent_size in ((y0, ny, parent_shape[0]), (x0, nx, parent_shape[1])):
        lo, hi = max(start, 0), min(start + size, parent_size)
        if hi <= lo:
            raise ValueError("cutout does not overlap the parent geometry")
        bounds_parent.append((lo, hi))
        bounds_cutout.append((lo - start, hi - start))
    return tuple(bounds_parent), tuple(bounds_cutout)


def grid_centres_in(from_wcs, from_shape: Tuple[int, int], to_wcs) -> Tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates, in ``to_wcs``, of the pixel centres of another grid.

    Returns
    -------
    pix_x, pix_y : `~numpy.ndarray`
        float64 arrays shaped ``from_shape``.
    """
    ny, nx = from_shape
    yy, xx = np.meshgrid(np.arange(ny, dtype=float), np.arange(nx, dtype=float), indexing="ij")
    lon, lat = from_wcs.wcs_pix2world(xx, yy, 0)
    pix_x, pix_y = to_wcs.wcs_world2pix(lon, lat, 0)
    return np.asarray(pix_x, dtype=float), np.asarray(pix_y, dtype=float)


def mask_nearest(mask_image: np.ndarray, pix_x: np.ndarray, pix_y: np.ndarray) -> np.ndarray:
    """Nearest-pixel lookup of a 2D boolean image; False outside the image.

    This is gammapy's ``Map.interp_to_geom`` path for boolean maps with a fill value
    (``get_by_coord``: index ``floor(pix + 0.5)``).
    """
    ny, nx = mask_image.shape
    ix = np.floor(pix_x + 0.5).astype(np.int64)
    iy = np.floor(pix_y + 0.5).astype(np.int64)
    inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & np.isfinite(pix_x) & np.isfinite(pix_y)
    out = np.zeros(pix_x.shape, dtype=bool)
    out[inside] = mask_image[iy[inside], ix[inside]]
    return out


def _linear_axis(pix: np.ndarray, n: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    # scipy RegularGridInterpolator (linear, fill_value=None) uses the edge cell to extrapolate
    if n == 1:
        zeros = np.zeros(pix.shape, dtype=np.int64)
        return zeros, zeros, np.zeros(pix.shape)
    i0 = np.clip(np.floor(pix).astype(np.int64), 0, n - 2)
    return i0, i0 + 1, pix - i0


def mask_linear(mask_cube: np.ndarray, pix_x: np.ndarray, pix_y: np.ndarray) -> np.ndarray:
    """Bilinear interpolation (with extrapolation) of boolean planes, then ``!= 0``.

    This is gammapy's ``interp_to_geom(..., fill_value=None)`` for boolean maps, used for
    the energy-dispersion stacking weights: any non-zero interpolated value counts as True.

    Parameters
    ----------
    mask_cube : `~numpy.ndarray`
        Boolean array ``(..., ny, nx)``.
    pix_x, pix_y : `~numpy.ndarray`
        Target pixel coordinates in the mask grid, shape ``(my, mx)``.

    Returns
    -------
    mask : `~numpy.ndarray`
        Boolean array ``(..., my, mx)``.
    """
    data = np.asarray(mask_cube, dtype=float)
    ny, nx = data.shape[-2:]
    y0, y1, ty = _linear_axis(pix_y, ny)
    x0, x1, tx = _linear_axis(pix_x, nx)
    value = (
        data[..., y0, x0] * (1 - ty) * (1 - tx)
        + data[..., y0, x1] * (1 - ty) * tx
        + data[..., y1, x0] * ty * (1 - tx)
        + data[..., y1, x1] * ty * tx
    )
    return value != 0


def psf_stack_weights(mask_safe: np.ndarray, fine_wcs, coarse_wcs,
                      coarse_shape: Tuple[int, int]) -> np.ndarray:
    """PSF-map stacking weights ``(1, 1, cy, cx)`` from a fine safe mask ``(ne, ny, nx)``."""
    image = np.any(mask_safe, axis=0)
    pix_x, pix_y = grid_centres_in(coarse_wcs, coarse_shape, fine_wcs)
    return mask_nearest(image, pix_x, pix_y)[np.newaxis, np.newaxis]


def edisp_stack_weights(mask_safe: np.ndarray, fine_wcs, coarse_wcs,
                        coarse_shape: Tuple[int, int]) -> np.ndarray:
    """EDisp-kernel stacking weights ``(1, ne, cy, cx)`` from a fine safe mask ``(ne, ny, nx)``."""
    pix_x, pix_y = grid_centres_in(coarse_wcs, coarse_shape, fine_wcs)
    return mask_linear(mask_safe, pix_x, pix_y)[np.newaxis]


def exposure_weighted_mean(weighted_sum: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """``weighted_sum / exposure`` with non-finite results (zero exposure) set to 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        out = weighted_sum / exposure
    return np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
