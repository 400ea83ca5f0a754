"""PSF-map maths on plain arrays: containment radii and the PSF kernel (gammapy 2.1 recipe).

PSF map data are ``(n_energy_true, n_rad, ny, nx)`` in sr-1; rad in deg.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.interpolate import RegularGridInterpolator

__all__ = [
    "PSF_MAX_OVERSAMPLING",
    "round_up_to_odd",
    "separation_deg",
    "containment_radius_values",
    "upsampling_factors",
    "psf_profile_values",
    "kernel_image",
]

PSF_MAX_OVERSAMPLING = 4
DEG2_TO_SR = (np.pi / 180.0) ** 2


def separation_deg(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance (deg) between points in deg (Vincenty, as astropy)."""
    lon1, lat1, lon2, lat2 = (np.radians(np.asarray(a, float)) for a in (lon1, lat1, lon2, lat2))
    sdlon, cdlon = np.sin(lon2 - lon1), np.cos(lon2 - lon1)
    slat1, slat2, clat1, clat2 = np.sin(lat1), np.sin(lat2), np.cos(lat1), np.cos(lat2)
    num1 = clat2 * sdlon
    num2 = clat1 * slat2 - slat1 * clat2 * cdlon
    return np.degrees(np.arctan2(np.hypot(num1, num2), slat1 * slat2 + clat1 * clat2 * cdlon))


def round_up_to_odd(value) -> np.ndarray:
    """Smallest odd integer >= ceil(value) (gammapy's ``round_up_to_odd``)."""
    return (np.ceil(value) // 2 * 2 + 1).astype(int)


def _interp(points: Sequence[np.ndarray], values: np.ndarray, xi: Sequence[np.ndarray]) -> np.ndarray:
    """Linear interpolation with extrapolation, ignoring length-1 dimensions (as gammapy)."""
    keep = [len(p) > 1 for p in points]
    pts = [p for p, k in zip(points, keep) if k]
    vals = np.squeeze(values, axis=tuple(i for i, k in enumerate(keep) if not k))
    xi = np.broadcast_arrays(*[x for x, k in zip(xi, keep) if k])
    shape = xi[0].shape if xi else ()
    if not pts:
        return np.full(shape, float(vals))
    fn = RegularGridInterpolator(pts, vals, bounds_error=False, fill_value=None)
    flat = np.stack([x.ravel() for x in xi], axis=-1)
    return fn(flat).reshape(shape)


def _node_edges(nodes: np.ndarray) -> np.ndarray:
    """Edges of a linear 'center'-type axis built from nodes (mid-points, extended ends)."""
    if nodes.size == 1:
        return np.array([nodes[0] - 0.5, nodes[0] + 0.5])
    mid = 0.5 * (nodes[1:] + nodes[:-1])
    return np.concatenate([[2 * nodes[0] - mid[0]], mid, [2 * nodes[-1] - mid[-1]]])


def containment_radius_values(psf_data: np.ndarray, rad_edges: np.ndarray, energy_edges: np.ndarray,
                              fraction: float, energy_true, lon_pix, lat_pix,
                              factor: int = 20) -> np.ndarray:
    """Containment radius (deg) of a PSF map, as gammapy's ``PSFMap.containment_radius``.

    The cumulative radial integral is interpolated (log energy, linear rad, pixel
    indices) on a rad grid upsampled by ``factor`` and the upsampled rad centre whose
    containment is closest to ``fraction`` is returned.

    Parameters
    ----------
    psf_data : `~numpy.ndarray`
        ``(n_energy_true, n_rad, ny, nx)`` in sr-1.
    rad_edges, energy_edges : `~numpy.ndarray`
        Rad edges (deg) and true-energy edges (log-spaced axis, any unit).
    fraction : float
        Containment fraction.
    energy_true : array-like
        Energies (same unit as ``energy_edges``).
    lon_pix, lat_pix : float or array
        Position in pixel coordinates of the PSF map image.

    Returns
    -------
    radius : `~numpy.ndarray`
        Radii in deg, shaped like the broadcast of ``energy_true`` and the position.
    """
    rad_edges = np.asarray(rad_edges, float)
    width = np.diff(rad_edges)
    rad_center = 0.5 * (rad_edges[1:] + rad_edges[:-1])
    values = psf_data * (2 * np.pi * rad_center * width)[np.newaxis, :, np.newaxis, np.newaxis]
    cumsum = np.cumsum(values, axis=1) * DEG2_TO_SR
    energy_edges = np.asarray(energy_edges, float)
    energy_center = np.sqrt(energy_edges[1:] * energy_edges[:-1])
    rad_nodes = rad_edges[1:]
    ny, nx = psf_data.shape[-2:]
    points = [np.log(energy_center), rad_nodes, np.arange(ny, dtype=float), np.arange(nx, dtype=float)]

    # upsampled rad centres (gammapy: rad_axis.upsample(factor).center)
    rad_up_edges = np.interp(np.linspace(0, rad_edges.size - 1, (rad_edges.size - 1) * factor + 1),
                             np.arange(rad_edges.size), rad_edges)
    rad = 0.5 * (rad_up_edges[1:] + rad_up_edges[:-1])

    energy = np.asarray(energy_true, float)
    out_shape = np.broadcast(energy, np.asarray(lon_pix), np.asarray(lat_pix)).shape
    e, lon, lat = (np.broadcast_to(np.asarray(a, float), out_shape) for a in (energy, lon_pix, lat_pix))
    rr = rad.reshape((-1,) + (1,) * len(out_shape))
    cont = _interp(points, cumsum, [np.log(e)[None], rr, lat[None], lon[None]])
    cont = np.clip(cont, 0, np.inf)

    # out-of-range coordinates -> 0 (gammapy IRF.evaluate with fill_value=0)
    invalid = (e < energy_edges[0]) | (e > energy_edges[-1])
    invalid = invalid | (lat < -0.5) | (lat > ny - 0.5) | (lon < -0.5) | (lon > nx - 0.5)
    rad_ok = (rr >= _node_edges(rad_nodes)[0]) & (rr <= _node_edges(rad_nodes)[-1])
    cont = np.where(invalid[None] | ~rad_ok, 0.0, cont)
    cont[~np.isfinite(cont)] = 0.0
    idx = np.argmin(np.abs(cont - fraction), axis=0)
    return rad[idx]


def upsampling_factors(r68_deg: np.ndarray, pixel_scale_deg: float, precision_factor: int = 12) -> list:
    """Per-energy kernel oversampling factors (gammapy's ``_psf_upsampling_factor``)."""
    factors = []
    for r68 in np.atleast_1d(r68_deg):
        base = 2 * r68 / pixel_scale_deg
        factors.append(int(min(int(np.ceil(precision_factor / base)), PSF_MAX_OVERSAMPLING)))
    return factors


def psf_profile_values(psf_data: np.ndarray, rad_axis, energy_axis, energy, rad, lon_pix: float,
                       lat_pix: float) -> np.ndarray:
    """PSF values (sr-1) at one sky position for energies/rads (linear in pixel space).

    This is ``WcsNDMap.interp_by_coord`` of the PSF map (extrapolating, not clipped).
    """
    data = np.where(np.isfinite(psf_data), psf_data, 0.0)
    grid = [np.arange(n, dtype=float) for n in data.shape]
    e_pix = energy_axis.coord_to_pix(energy)
    r_pix = rad_axis.coord_to_pix(rad)
    e_pix, r_pix = np.broadcast_arrays(np.asarray(e_pix, float), np.asarray(r_pix, float))
    return _interp(grid, data, [e_pix, r_pix, np.full(e_pix.shape, lat_pix),
                                np.full(e_pix.shape, lon_pix)])


def kernel_image(profile, wcs_odd, npix_odd: int, factor: int, center_lonlat) -> np.ndarray:
    """One energy plane of the PSF kernel before normalisation.

    Parameters
    ----------
    profile : callable
        ``profile(rad_deg) -> values`` (sr-1) at the kernel energy and source position.
    wcs_odd : `~astropy.wcs.WCS`
        WCS of the odd-sized (``npix_odd``) image for this energy's radius.
    factor : int
        Oversampling factor; the oversampled image is summed back in ``factor x factor`` blocks.
    center_lonlat : tuple of float
        Kernel centre (deg), i.e. the centre of the full kernel geometry.

    Returns
    -------
    image : `~numpy.ndarray`
        ``(npix_odd, npix_odd)``.
    """
    n_up = npix_odd * factor
    pix = (np.arange(n_up) + 0.5) / factor - 0.5
    xx, yy = np.meshgrid(pix, pix, indexing="xy")
    lon, lat = wcs_odd.wcs_pix2world(xx, yy, 0)
    sep = separation_deg(lon, lat, center_lonlat[0], center_lonlat[1])
    values = np.clip(profile(sep), 0, np.inf)
    return values.reshape(npix_odd, factor, npix_odd, factor).sum(axis=(1, 3))
