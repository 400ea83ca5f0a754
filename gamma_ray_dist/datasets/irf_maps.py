"""Reduced IRF maps: `PSFMap` and `EDispKernelMap`, each with its exposure map.

Both live on the coarse IRF geometry of a `MapDataset`; they are stacked as
exposure-weighted means (gammapy's ``IRFMap.stack``) and read/written as the GADF
HDUs ``PSF``/``PSF_EXPOSURE`` and ``EDISP``/``EDISP_EXPOSURE`` (with ``_BANDS``).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Optional

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits

from ..maps import Map
from .psf_kernel import (
    containment_radius_values,
    kernel_image,
    psf_profile_values,
    round_up_to_odd,
    separation_deg,
    upsampling_factors,
)
from .stacking import exposure_weighted_mean

__all__ = ["IRFMap", "PSFMap", "EDispKernelMap", "PSFKernel", "EDispKernel",
           "overlap_fraction"]

IRF_MIN_NPIX = 3  # gammapy cuts IRF maps with at least 3 pixels so interpolation works


def overlap_fraction(energy_edges: np.ndarray, energy_true_edges: np.ndarray) -> np.ndarray:
    """Diagonal response: overlap of each true-energy bin with each reco bin, ``(n_true, n_reco)``."""
    a_min, a_max = energy_edges[:-1], energy_edges[1:]
    b_min, b_max = energy_true_edges[:-1, None], energy_true_edges[1:, None]
    return np.clip(np.fmin(a_max, b_max) - np.fmax(a_min, b_min), 0, np.inf) / (b_max - b_min)


class IRFMap:
    """Base class: an IRF map with its exposure map (exposure-weighted stacking)."""

    hdu_name = ""
    required_axes: tuple = ()

    def __init__(self, irf_map, exposure_map=None):
        names = irf_map.geom.axes.names
        missing = [n for n in self.required_axes if n not in names]
        if missing:
            raise ValueError(f"{type(self).__name__} map needs axes {self.required_axes}, has {names}")
        self._irf_map = irf_map
        self.exposure_map = exposure_map

    # -- spatial helpers -------------------------------------------------------------------
    def _pix(self, position: SkyCoord):
        geom = self._irf_map.geom.to_image()
        pos = position.transform_to(geom.center_skydir.frame) if hasattr(position, "transform_to") else position
        x, y = geom.wcs.world_to_pixel(pos)
        return float(np.ravel(x)[0]), float(np.ravel(y)[0])

    @property
    def mask_safe_image(self) -> np.ndarray:
        """Pixels where the IRF is defined (any value > 0), ``(ny, nx)``."""
        data = self._irf_map.data
        return (data > 0).reshape(-1, *data.shape[-2:]).any(axis=0)

    def _nearest_valid_position(self, position: SkyCoord) -> SkyCoord:
        """The position itself if the IRF is defined there, else the nearest valid pixel centre."""
        mask = self.mask_safe_image
        x, y = self._pix(position)
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        ny, nx = mask.shape
        if 0 <= ix < nx and 0 <= iy < ny and mask[iy, ix]:
            return position
        if not mask.any():
            return position
        geom = self._irf_map.geom.to_image()
        lon, lat = geom.pixel_centers()
        frame = geom.center_skydir.frame
        pos = position.transform_to(frame)
        sph = pos.spherical
        sep = separation_deg(lon, lat, sph.lon.deg, sph.lat.deg)
        sep = np.where(mask, sep, np.inf)
        iy, ix = np.unravel_index(np.argmin(sep), sep.shape)
        return SkyCoord(lon[iy, ix], lat[iy, ix], unit="deg", frame=frame)

    # -- stacking ----------------------------------------------------------------------------
    def stack(self, other: "IRFMap", weights=None, nan_to_num: bool = True) -> None:
        """Stack another IRF map in place (exposure-weighted mean, as gammapy).

        Parameters
        ----------
        other : `IRFMap`
            IRF map on this geometry or on an aligned cutout of it.
        weights : `Map` or `~numpy.ndarray`, optional
            Stacking weights on ``other``'s spatial grid (e.g. the safe mask on the IRF grid).
        """
        if self.exposure_map is None or other.exposure_map is None:
            raise ValueError(f"Missing exposure map for {type(self).__name__}.stack")
        w = 1.0 if weights is None else np.asarray(getattr(weights, "data", weights))
        w_exp = w
        if weights is not None and self.hdu_name == "EDISP":
            w_exp = np.any(w, axis=1, keepdims=True)
        sl_parent, sl_cut = _aligned_slices(self._irf_map.geom, other._irf_map.geom)
        dtype = self._irf_map.data.dtype
        num = self._irf_map.data * self.exposure_map.data
        other_num = (other._irf_map.data * other.exposure_map.data).astype(dtype)
        other_exp = other.exposure_map.data.astype(dtype)
        if nan_to_num:
            other_num = np.nan_to_num(other_num, nan=0.0, posinf=0.0, neginf=0.0)
            other_exp = np.nan_to_num(other_exp, nan=0.0, posinf=0.0, neginf=0.0)
        num[sl_parent] += (other_num * w)[sl_cut]
        self.exposure_map.data[sl_parent] += (other_exp * w_exp)[sl_cut]
        self._irf_map.data = exposure_weighted_mean(num, self.exposure_map.data).astype(dtype)

    # -- cutouts & copies ------------------------------------------------------------------
    def cutout(self, position, width, mode: str = "trim", min_npix: int = IRF_MIN_NPIX):
        """Cutout on the IRF grid (at least ``min_npix`` pixels wide, as gammapy)."""
        irf_map = _map_cutout(self._irf_map, position, width, mode, min_npix)
        exposure = None
        if self.exposure_map is not None:
            exposure = _map_cutout(self.exposure_map, position, width, mode, min_npix)
        return self.__class__(irf_map, exposure)

    def copy(self):
        return copy.deepcopy(self)

    # -- I/O ---------------------------------------------------------------------------------
    def to_hdulist(self) -> fits.HDUList:
        """HDUs ``<NAME>``, ``<NAME>_BANDS``, ``<NAME>_EXPOSURE``, ``<NAME>_EXPOSURE_BANDS``."""
        hdulist = self._irf_map.to_hdulist(hdu=self.hdu_name)
        if self.exposure_map is not None:
            hdulist.extend(self.exposure_map.to_hdulist(hdu=self.hdu_name + "_EXPOSURE")[1:])
        return hdulist

    @classmethod
    def from_hdulist(cls, hdulist: fits.HDUList, hdu: Optional[str] = None,
                     exposure_hdu: Optional[str] = None):
        hdu = (hdu or cls.hdu_name).upper()
        exposure_hdu = (exposure_hdu or hdu + "_EXPOSURE").upper()
        irf_map = Map.from_hdulist(hdulist, hdu=hdu)
        exposure = Map.from_hdulist(hdulist, hdu=exposure_hdu) if exposure_hdu in hdulist else None
        return cls(irf_map, exposure)

    @classmethod
    def read(cls, filename, hdu: Optional[str] = None):
        with fits.open(filename, memmap=False) as hdulist:
            return cls.from_hdulist(hdulist, hdu=hdu)

    def write(self, filename, overwrite: bool = False) -> None:
        self.to_hdulist().writeto(filename, overwrite=overwrite)


def _aligned_slices(parent_geom, cutout_geom):
    if parent_geom.data_shape[-2:] == cutout_geom.data_shape[-2:] and parent_geom.is_aligned(cutout_geom):
        return (Ellipsis,), (Ellipsis,)
    info = cutout_geom.cutout_slices(parent_geom)
    return (Ellipsis,) + tuple(info["parent-slices"]), (Ellipsis,) + tuple(info["cutout-slices"])


def _map_cutout(m, position, width, mode, min_npix):
    geom = m.geom.cutout(position=position, width=width, mode=mode, min_npix=min_npix)
    info = geom.cutout_slices(m.geom, mode=mode)
    data = np.zeros(geom.data_shape, dtype=m.data.dtype)
    data[(Ellipsis,) + tuple(info["cutout-slices"])] = m.data[(Ellipsis,) + tuple(info["parent-slices"])]
    return Map.from_geom(geom, data=data, unit=m.unit, meta=copy.deepcopy(m.meta))


@dataclass
class PSFKernel:
    """PSF kernel: ``data`` ``(n_energy_true, n, n)`` normalised per energy, on ``psf_kernel_map``."""

    psf_kernel_map: object

    @property
    def data(self) -> np.ndarray:
        return self.psf_kernel_map.data


@dataclass
class EDispKernel:
    """Energy-dispersion matrix ``pdf_matrix`` ``(n_energy_true, n_energy)``."""

    pdf_matrix: np.ndarray
    energy_axis_true: object
    energy_axis: object

    @property
    def data(self) -> np.ndarray:
        return self.pdf_matrix


class PSFMap(IRFMap):
    """PSF map (axes ``rad``, ``energy_true``; data sr-1) with its exposure map."""

    hdu_name = "PSF"
    required_axes = ("rad", "energy_true")
    energy_name = "energy_true"

    def __init__(self, psf_map, exposure_map=None):
        super().__init__(psf_map, exposure_map)

    @property
    def psf_map(self):
        return self._irf_map

    @psf_map.setter
    def psf_map(self, value):
        self._irf_map = value

    @classmethod
    def from_geom(cls, geom) -> "PSFMap":
        """Zero PSF map and exposure (``geom.squash("rad")``) on ``geom``."""
        return cls(Map.from_geom(geom, unit="sr-1"), Map.from_geom(geom.squash("rad"), unit="m2 s"))

    def psf_values_sr(self) -> np.ndarray:
        """PSF map data in sr-1 as float64 (files written by gammapy 2.x hold deg-2)."""
        data = np.asarray(self.psf_map.data, dtype=float)
        unit = self.psf_map.unit
        if unit is None or unit == u.dimensionless_unscaled or unit == u.Unit("sr-1"):
            return data
        return data * u.Unit(unit).to("sr-1")

    def containment_radius(self, fraction: float, energy_true, position: Optional[SkyCoord] = None) -> u.Quantity:
        """Containment radius (deg) at ``energy_true`` and a sky position (default: map centre)."""
        geom = self.psf_map.geom
        position = geom.center_skydir if position is None else position
        e_axis = geom.axes["energy_true"]
        energy = u.Quantity(energy_true, e_axis.unit).value
        x, y = self._pix(position)
        radius = containment_radius_values(
            self.psf_values_sr(), geom.axes["rad"].edges.to_value("deg"),
            e_axis.edges.value, fraction, energy, x, y,
        )
        return u.Quantity(radius, "deg")

    def get_psf_kernel(self, geom, position: Optional[SkyCoord] = None, max_radius=None,
                       containment: float = 0.999, precision_factor: int = 12,
                       factor: Optional[int] = None) -> PSFKernel:
        """PSF kernel at ``position`` on the pixel grid of ``geom`` (gammapy 2.1 recipe).

        Parameters
        ----------
        geom : `WcsGeom`
            Target geometry with an ``energy_true`` axis (typically the exposure geometry).
        position : `~astropy.coordinates.SkyCoord`, optional
            Source position; default the PSF map centre (moved to the nearest valid pixel).
        max_radius : `~astropy.coordinates.Angle`, optional
            Kernel half-size; default the largest ``containment`` radius.
        containment : float
            Containment fraction setting the per-energy kernel radius.
        precision_factor : int
            Oversampling precision (gammapy 2.1 default 12).
        factor : int, optional
            Fixed oversampling factor (older gammapy API); overrides ``precision_factor``.
        """
        from ..maps import WcsGeom

        psf_geom = self.psf_map.geom
        position = psf_geom.center_skydir if position is None else position
        position = self._nearest_valid_position(position)
        e_axis = psf_geom.axes["energy_true"]
        radii = self.containment_radius(containment, e_axis.center, position).to_value("deg")
        if max_radius is None:
            max_radius = float(np.max(radii))
        else:
            max_radius = float(u.Quantity(max_radius, "deg").value)
            radii = np.minimum(radii, max_radius)
        binsz = float(np.max(geom.pixel_scales.to_value("deg")))
        if factor is None:
            r68 = self.containment_radius(0.68, geom.axes["energy_true"].center, position).to_value("deg")
            factors = upsampling_factors(r68, binsz, precision_factor)
        else:
            factors = [int(factor)] * len(radii)

        center = geom.center_skydir
        kw = dict(skydir=center, binsz=binsz, proj=geom.projection, frame=geom.frame)
        npix = int(round_up_to_odd(2 * max_radius / binsz))
        kernel_geom = WcsGeom.create(npix=npix, axes=[geom.axes["energy_true"]], **kw)
        sph = center.spherical
        center_lonlat = (sph.lon.deg, sph.lat.deg)
        x, y = self._pix(position)
        kernel_energy = geom.axes["energy_true"].center
        psf_values = self.psf_values_sr()
        data = np.zeros(kernel_geom.data_shape)
        for i, radius in enumerate(radii[: data.shape[0]]):
            n_i = int(round_up_to_odd(2 * radius / binsz))
            wcs_i = WcsGeom.create(npix=n_i, **kw).wcs

            def profile(rad, e=kernel_energy[i]):
                return psf_profile_values(psf_values, psf_geom.axes["rad"], e_axis, e,
                                          u.Quantity(rad, "deg"), x, y)

            image = kernel_image(profile, wcs_i, n_i, factors[i], center_lonlat)
            off = (npix - n_i) // 2
            data[i, off:off + n_i, off:off + n_i] += image
        with np.errstate(invalid="ignore", divide="ignore"):
            data = np.nan_to_num(data / data.sum(axis=(1, 2), keepdims=True))
        return PSFKernel(Map.from_geom(kernel_geom, data=data, dtype=float))


class EDispKernelMap(IRFMap):
    """Energy-dispersion kernel map (axes ``energy``, ``energy_true``) with its exposure map."""

    hdu_name = "EDISP"
    required_axes = ("energy", "energy_true")

    def __init__(self, edisp_kernel_map, exposure_map=None):
        super().__init__(edisp_kernel_map, exposure_map)

    @property
    def edisp_map(self):
        return self._irf_map

    @edisp_map.setter
    def edisp_map(self, value):
        self._irf_map = value

    @classmethod
    def from_geom(cls, geom) -> "EDispKernelMap":
        """Diagonal response on ``geom`` with a zero exposure (``geom.squash("energy")``)."""
        e_reco = geom.axes["energy"]
        e_true = geom.axes["energy_true"]
        frac = overlap_fraction(e_reco.edges.value, e_true.edges.to_value(e_reco.unit))
        data = np.zeros(geom.data_shape, dtype=np.float32)
        data += frac.reshape(frac.shape + (1, 1)).astype(np.float32)
        return cls(Map.from_geom(geom, data=data, unit=""),
                   Map.from_geom(geom.squash("energy"), unit="m2 s"))

    def get_edisp_kernel(self, position: Optional[SkyCoord] = None, energy_axis=None) -> EDispKernel:
        """Energy-dispersion matrix at a position (nearest IRF pixel), ``(n_true, n_reco)``."""
        geom = self.edisp_map.geom
        if energy_axis is not None and energy_axis != geom.axes["energy"]:
            raise ValueError("energy_axis must equal the kernel map's reconstructed energy axis")
        position = geom.center_skydir if position is None else position
        position = self._nearest_valid_position(position)
        x, y = self._pix(position)
        ny, nx = geom.data_shape[-2:]
        ix = int(np.clip(np.floor(x + 0.5), 0, nx - 1))
        iy = int(np.clip(np.floor(y + 0.5), 0, ny - 1))
        matrix = np.array(self.edisp_map.data[:, :, iy, ix], dtype=float)
        return EDispKernel(matrix, geom.axes["energy_true"], geom.axes["energy"])
