"""PSF kernels at arbitrary sky positions, fast: the recipe of `PSFMap.get_psf_kernel` (gammapy 2.1)
restructured for repeated calls during a fit.

`PSFMap.get_psf_kernel` interpolates the 4D PSF map (energy, rad, lat, lon) at every oversampled kernel
pixel. Multilinear interpolation is separable, so here the map is first interpolated bilinearly at the
source pixel (giving a (n_energy, n_rad) profile table), then along energy and rad. The oversampled
pixel grids and their rad pixel coordinates depend only on the kernel geometry, not on the source
position, and are memoised. Results agree with `get_psf_kernel` to float rounding (tested against
gammapy), at ~5 ms per kernel instead of ~100 ms: a point-source fit re-anchors its kernel several
times while MIGRAD probes the position.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional

import numpy as np

from ..maps.sphere import angular_separation
from .psf_kernel import DEG2_TO_SR, round_up_to_odd, upsampling_factors

__all__ = ["PSFKernelMaker"]

_CONTAINMENT_UPSAMPLE = 20  # rad-axis upsampling of the containment search (gammapy)


def _linear_weights(pix: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower index and fraction for linear interpolation with extrapolation on the grid 0..n-1."""
    pix = np.asarray(pix, dtype=float)
    if n == 1:
        return np.zeros(pix.shape, int), np.zeros(pix.shape)
    idx = np.clip(np.floor(pix), 0, n - 2).astype(int)
    return idx, pix - idx


def _interp_axis(table: np.ndarray, pix: np.ndarray, axis: int) -> np.ndarray:
    """Linear interpolation (with extrapolation) of ``table`` along ``axis`` at float pixel ``pix``."""
    n = table.shape[axis]
    if n == 1:  # gammapy ignores length-1 dimensions
        return np.repeat(np.take(table, [0], axis=axis), np.size(pix), axis=axis)
    idx, t = _linear_weights(pix, n)
    lo = np.take(table, idx, axis=axis)
    hi = np.take(table, idx + 1, axis=axis)
    shape = [1] * table.ndim
    shape[axis] = -1
    t = t.reshape(shape)
    return lo * (1 - t) + hi * t


def _node_edges(nodes: np.ndarray) -> np.ndarray:
    if nodes.size == 1:
        return np.array([nodes[0] - 0.5, nodes[0] + 0.5])
    mid = 0.5 * (nodes[1:] + nodes[:-1])
    return np.concatenate([[2 * nodes[0] - mid[0]], mid, [2 * nodes[-1] - mid[-1]]])


@lru_cache(maxsize=64)
def _kernel_grid(center: tuple, binsz: float, proj: str, frame: str, npix: int, factor: int,
                 rad_edges: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Rad-axis interpolation indices/fractions of the oversampled pixels of an odd kernel image.

    Pure function of the kernel geometry (memoised, read-only results).
    """
    from ..maps import MapAxis, WcsGeom

    wcs = WcsGeom.create(npix=npix, skydir=center, binsz=binsz, proj=proj, frame=frame).wcs
    n_up = npix * factor
    pix = (np.arange(n_up) + 0.5) / factor - 0.5
    xx, yy = np.meshgrid(pix, pix, indexing="xy")
    lon, lat = wcs.wcs_pix2world(xx, yy, 0)
    sep = np.degrees(angular_separation(lon, lat, center[0], center[1]))
    rad_axis = MapAxis.from_edges(np.asarray(rad_edges), unit="deg", name="rad")
    r_pix = rad_axis.coord_to_pix(sep.ravel()).reshape(sep.shape)
    idx, t = _linear_weights(r_pix, len(rad_edges) - 1)
    idx.setflags(write=False)
    t.setflags(write=False)
    return idx, t


class PSFKernelMaker:
    """PSF kernels of one `PSFMap` on the pixel grid of one geometry.

    Parameters
    ----------
    psf : `PSFMap`
        PSF map (data ``(n_energy_true, n_rad, ny, nx)`` in sr-1).
    geom : `WcsGeom`
        Geometry with an ``energy_true`` axis whose pixel grid the kernel uses (the exposure geometry);
        the kernel is computed at its centre as gammapy does.
    """

    def __init__(self, psf, geom):
        psf_geom = psf.psf_map.geom
        self._data = psf.psf_values_sr()  # the containment needs sr-1 (gammapy writes deg-2)
        self._image_geom = psf_geom.to_image()
        self._frame = psf_geom.frame
        self._rad_axis = psf_geom.axes["rad"]
        self._e_axis = psf_geom.axes["energy_true"]
        self._rad_edges = self._rad_axis.edges.to_value("deg")
        e_edges = self._e_axis.edges.value
        self._e_edges = e_edges
        self._log_e_nodes = np.log(np.sqrt(e_edges[1:] * e_edges[:-1]))
        self._valid = (self._data > 0).reshape(-1, *self._data.shape[-2:]).any(axis=0)
        self._kernel_energy = geom.axes["energy_true"].center.to(self._e_axis.unit).value
        self._binsz = float(np.max(geom.pixel_scales.to_value("deg")))
        center = geom.center_skydir
        sph = center.spherical
        self._center = (float(sph.lon.deg), float(sph.lat.deg))
        self._proj = geom.projection
        self._geom_frame = geom.frame
        rad_c = 0.5 * (self._rad_edges[1:] + self._rad_edges[:-1])
        self._ring = 2 * np.pi * rad_c * np.diff(self._rad_edges) * DEG2_TO_SR
        up = np.interp(np.linspace(0, self._rad_edges.size - 1, (self._rad_edges.size - 1) * _CONTAINMENT_UPSAMPLE + 1),
                       np.arange(self._rad_edges.size), self._rad_edges)
        self._rad_up = 0.5 * (up[1:] + up[:-1])
        node_edges = _node_edges(self._rad_edges[1:])
        self._rad_up_ok = (self._rad_up >= node_edges[0]) & (self._rad_up <= node_edges[-1])
        # fractional index of the upsampled rads on the containment grid (rad_edges[1:]), extrapolating
        nodes = self._rad_edges[1:]
        rad_pix = np.interp(self._rad_up, nodes, np.arange(nodes.size, dtype=float))
        if nodes.size > 1:
            rad_pix = np.where(self._rad_up < nodes[0], (self._rad_up - nodes[0]) / (nodes[1] - nodes[0]), rad_pix)
            rad_pix = np.where(self._rad_up > nodes[-1],
                               nodes.size - 1 + (self._rad_up - nodes[-1]) / (nodes[-1] - nodes[-2]), rad_pix)
        self._rad_up_pix = rad_pix

    # -- position ---------------------------------------------------------------------------
    def _pixel(self, lon: float, lat: float) -> tuple[float, float]:
        """PSF-map pixel of the position, moved to the nearest valid pixel centre if the PSF is not
        defined there (as `PSFMap.get_psf_kernel`)."""
        x, y = self._image_geom.wcs.wcs_world2pix(lon, lat, 0)
        x, y = float(x), float(y)
        ny, nx = self._valid.shape
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        if (0 <= ix < nx and 0 <= iy < ny and self._valid[iy, ix]) or not self._valid.any():
            return x, y
        plon, plat = self._image_geom.pixel_centers()
        sep = angular_separation(plon, plat, lon, lat)
        sep = np.where(self._valid, sep, np.inf)
        iy, ix = np.unravel_index(np.argmin(sep), sep.shape)
        return float(ix), float(iy)

    def _profile_table(self, x: float, y: float, data: np.ndarray) -> np.ndarray:
        """Bilinear (extrapolating) spatial interpolation: (n_energy, n_rad) at pixel (x, y)."""
        table = _interp_axis(data, np.array([y]), axis=2)
        table = _interp_axis(table, np.array([x]), axis=3)
        return table[:, :, 0, 0]

    def _containment_radius(self, cumsum: np.ndarray, fraction: float, energy: np.ndarray,
                            inside: bool) -> np.ndarray:
        """Radius (deg) whose containment is closest to ``fraction`` at each energy."""
        energy = np.asarray(energy, dtype=float)
        if self._log_e_nodes.size > 1:
            e_pix = np.interp(np.log(energy), self._log_e_nodes, np.arange(self._log_e_nodes.size))
            # np.interp clips; extrapolate linearly as gammapy's interpolator does
            lo, hi = self._log_e_nodes[[0, -1]]
            le = np.log(energy)
            n = self._log_e_nodes.size
            e_pix = np.where(le < lo, (le - lo) / (self._log_e_nodes[1] - lo), e_pix)
            e_pix = np.where(le > hi, n - 1 + (le - hi) / (hi - self._log_e_nodes[-2]), e_pix)
            per_e = _interp_axis(cumsum, e_pix, axis=0)
        else:
            per_e = np.repeat(cumsum, energy.size, axis=0)
        cont = _interp_axis(per_e, self._rad_up_pix, axis=1)
        cont = np.clip(cont, 0, np.inf)
        invalid = (energy < self._e_edges[0]) | (energy > self._e_edges[-1]) | (not inside)
        cont = np.where(invalid[:, None] | ~self._rad_up_ok[None, :], 0.0, cont)
        cont[~np.isfinite(cont)] = 0.0
        return self._rad_up[np.argmin(np.abs(cont - fraction), axis=1)]

    # -- kernel -------------------------------------------------------------------------------
    def kernel(self, lon: float, lat: float, containment: float = 0.999, precision_factor: int = 12,
               max_radius: Optional[float] = None) -> np.ndarray:
        """Normalised PSF kernel ``(n_energy_true, k, k)`` for a source at (lon, lat) deg in the PSF
        map frame (same arguments and result as `PSFMap.get_psf_kernel(...).data`)."""
        x, y = self._pixel(lon, lat)
        ny, nx = self._valid.shape
        inside = (-0.5 <= x <= nx - 0.5) and (-0.5 <= y <= ny - 0.5)
        cumsum = np.cumsum(self._profile_table(x, y, self._data) * self._ring[None, :], axis=1)
        radii = self._containment_radius(cumsum, containment, np.sqrt(self._e_edges[1:] * self._e_edges[:-1]),
                                         inside)
        if max_radius is None:
            max_radius = float(np.max(radii))
        else:
            radii = np.minimum(radii, max_radius)
        r68 = self._containment_radius(cumsum, 0.68, self._kernel_energy, inside)
        factors = upsampling_factors(r68, self._binsz, precision_factor)

        finite = np.where(np.isfinite(self._data), self._data, 0.0)
        table = self._profile_table(x, y, finite)  # (n_e, n_rad)
        e_pix = self._e_axis.coord_to_pix(self._kernel_energy)
        npix = int(round_up_to_odd(2 * max_radius / self._binsz))
        out = np.zeros((self._kernel_energy.size, npix, npix))
        rad_edges = tuple(float(v) for v in self._rad_edges)
        for i, radius in enumerate(radii[: out.shape[0]]):
            n_i = int(round_up_to_odd(2 * radius / self._binsz))
            f = int(factors[i])
            idx, t = _kernel_grid(self._center, self._binsz, self._proj, self._geom_frame, n_i, f, rad_edges)
            profile = _interp_axis(table, np.array([e_pix[i]]), axis=0)[0]  # (n_rad,)
            if profile.size == 1:
                values = np.full(idx.shape, profile[0])
            else:
                values = profile[idx] * (1 - t) + profile[idx + 1] * t
            image = np.clip(values, 0, np.inf).reshape(n_i, f, n_i, f).sum(axis=(1, 3))
            off = (npix - n_i) // 2
            out[i, off:off + n_i, off:off + n_i] += image
        with np.errstate(invalid="ignore", divide="ignore"):
            out = np.nan_to_num(out / out.sum(axis=(1, 2), keepdims=True))
        return out
