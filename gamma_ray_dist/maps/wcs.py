"""WCS maps: the geometry `WcsGeom` and the maps on it, `Map` and `WcsNDMap`.

`WcsGeom` is a sky image (astropy WCS, nx x ny pixels) times optional non-spatial axes. Pixel
conventions follow gammapy: pixel (0, 0) is the centre of the first pixel, CRPIX is 1-based, ``create``
puts the reference pixel at ``((nx + 1) / 2, (ny + 1) / 2)`` and the number of pixels is
``rint(width / binsz)``. Only regular geometries (one pixel size for all image planes) are supported.

`WcsNDMap` is a numpy array on a `WcsGeom`, with a unit and a meta dict; ``data`` is shaped
``geom.data_shape``: the non-spatial axes reversed, then (ny, nx). FITS I/O uses gammapy's format (see
:mod:`gamma_ray_dist.maps.fitsio`).

The geometry and the maps share one module because each needs the other: maps are built on a
geometry, and ``WcsGeom.region_mask`` returns a map.
"""
from __future__ import annotations

import copy as _copy
from collections import OrderedDict
import functools
import operator
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord, frame_transform_graph
from astropy.io import fits
from astropy.wcs import WCS
from astropy.wcs.utils import celestial_frame_to_wcs, proj_plane_pixel_scales, wcs_to_celestial_frame

from .axes import MapAxes
from .coord import MapCoord, skycoord_to_lonlat
from .errors import GeometryMismatch, MapError, MapFormatError
from .fitsio import (
    MASK_HDU_TAGS,
    find_bands_hdu,
    find_data_hdu,
    meta_from_header,
    meta_to_json,
    unit_from_header,
)
from .regions import region_mask_values
from .sphere import angular_separation, pixel_solid_angles

__all__ = ["WcsGeom", "Map", "WcsNDMap", "pix_tuple_to_idx"]

#: Cutout geometries kept per parent geometry (one per distinct window: pointings of a run).
_CUTOUT_CACHE_SIZE = 64



def _unpickle_geom(cls, header: str, array_shape, pixel_bounds, state: dict) -> "WcsGeom":
    """Inverse of `WcsGeom.__reduce__`."""
    geom = cls.__new__(cls)
    geom.__dict__.update(state)
    wcs = WCS(header, relax=True)
    wcs.array_shape = array_shape
    wcs.pixel_bounds = pixel_bounds
    geom._wcs = wcs
    return geom


def _two_floats(value, what: str) -> tuple[float, float]:
    """Angle-like scalar or (lon, lat) pair -> two floats in deg."""
    if isinstance(value, tuple):
        return float(Angle(value[0], "deg").deg), float(Angle(value[1], "deg").deg)
    angle = np.atleast_1d(Angle(value, "deg").deg)
    if angle.size == 1:
        return float(angle[0]), float(angle[0])
    if angle.size == 2:
        return float(angle[0]), float(angle[1])
    raise MapError(f"{what} must be a scalar or a (lon, lat) pair; per-plane values are not supported")


def _read_only(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def pix_tuple_to_idx(pix) -> tuple:
    """Round pixel coordinates to the nearest integer index; non-finite values give -1."""
    idx = []
    for p in pix:
        p = np.array(p, ndmin=1)
        if np.issubdtype(p.dtype, np.integer):
            idx.append(p)
            continue
        with np.errstate(invalid="ignore"):
            p_idx = np.floor(p + 0.5).astype(int)
        p_idx[~np.isfinite(p)] = -1
        idx.append(p_idx)
    return tuple(idx)


class WcsGeom:
    """Geometry of a WCS map.

    Parameters
    ----------
    wcs : `~astropy.wcs.WCS`
        Celestial 2D WCS.
    npix : tuple of int
        Number of pixels (nx, ny); default from ``wcs.array_shape``.
    cdelt : tuple of float, optional
        Absolute pixel sizes (deg); default ``abs(wcs.wcs.cdelt)``.
    crpix : tuple, optional
        Kept for signature compatibility with gammapy (irregular geometries); unused.
    axes : list of MapAxis, optional
        Non-spatial axes.
    """

    def __init__(self, wcs: WCS, npix=None, cdelt=None, crpix=None, axes=None):
        self._wcs = wcs
        self._frame = wcs_to_celestial_frame(wcs).name
        self._projection = wcs.wcs.ctype[0][5:]
        self._axes = MapAxes.from_default(axes, n_spatial_axes=2)
        if npix is None:
            npix = wcs.array_shape[::-1] if wcs.array_shape is not None else (0, 0)
        nx, ny = (np.ravel(n) for n in npix)
        if nx.size != 1 or ny.size != 1:
            raise MapError("irregular geometries (a different npix per image plane) are not supported")
        self._nx, self._ny = int(nx[0]), int(ny[0])
        if cdelt is None:
            cdelt = tuple(np.abs(wcs.wcs.cdelt))
        cx, cy = (np.ravel(c) for c in (cdelt if isinstance(cdelt, tuple) else (cdelt, cdelt)))
        self._cdelt = (np.array([float(cx[0])]), np.array([float(cy[0])]))
        self._crpix = crpix
        self._cache: dict = {}

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def create(cls, npix=None, binsz=0.5, proj: str = "CAR", frame: str = "icrs", refpix=None, axes=None,
               skydir=None, width=None) -> "WcsGeom":
        """Geometry centred on ``skydir`` (SkyCoord or (lon, lat) deg in ``frame``).

        Give ``binsz`` (deg) and either ``npix`` or ``width`` (deg); with neither, an all-sky map.
        """
        if skydir is None:
            crval = (0.0, 0.0)
        elif isinstance(skydir, tuple):
            crval = (float(u.Quantity(skydir[0], "deg").value), float(u.Quantity(skydir[1], "deg").value))
        elif isinstance(skydir, SkyCoord):
            lon, lat, frame = skycoord_to_lonlat(skydir, frame=frame)
            crval = (float(lon), float(lat))
        else:
            raise MapError(f"skydir must be a SkyCoord or a (lon, lat) tuple, got {type(skydir).__name__}")
        binsz = _two_floats(binsz, "binsz")
        if npix is None:
            width = (360.0, 180.0) if width is None else _two_floats(width, "width")
            npix = (int(np.rint(width[0] / binsz[0])), int(np.rint(width[1] / binsz[1])))
        else:
            npix = tuple(int(v) for v in (npix if isinstance(npix, tuple) else (npix, npix)))
        if min(npix) < 1:
            raise MapError(f"geometry needs at least one pixel per side, got npix={npix}")
        if refpix is None:
            refpix = ((npix[0] + 1) / 2.0, (npix[1] + 1) / 2.0)
        try:
            frame_obj = frame_transform_graph.lookup_name(frame)()
            wcs = celestial_frame_to_wcs(frame_obj, projection=proj)
        except (TypeError, ValueError) as exc:
            raise MapError(f"cannot build a WCS with frame={frame!r}, proj={proj!r}: {exc}") from exc
        wcs.wcs.crpix = refpix
        wcs.wcs.crval = crval
        wcs.wcs.cdelt = (-binsz[0], binsz[1])
        wcs.array_shape = npix[1], npix[0]
        wcs.wcs.datfix()
        try:
            wcs.wcs.set()  # validates the projection code now rather than at first use
        except ValueError as exc:  # astropy's WcsError subclasses ValueError
            raise MapError(f"invalid WCS for frame={frame!r}, proj={proj!r}: {exc}") from exc
        return cls(wcs, npix, cdelt=binsz, axes=axes)

    @classmethod
    def from_header(cls, header, hdu_bands=None) -> "WcsGeom":
        """Geometry from a map HDU header (``WCSSHAPE`` or NAXISi) and its BANDS table."""
        wcs = WCS(header, naxis=2).sub(2)
        axes = MapAxes.from_table_hdu(hdu_bands)
        if "WCSSHAPE" in header:
            shape = [int(v) for v in header["WCSSHAPE"].strip("()").split(",")]
            npix = (shape[0], shape[1])
        else:
            npix = (header["NAXIS1"], header["NAXIS2"])
        wcs.array_shape = npix[1], npix[0]
        return cls(wcs, npix, axes=axes)

    def _init_copy(self, **kwargs) -> "WcsGeom":
        args = dict(wcs=self._wcs.deepcopy(), npix=self.npix, cdelt=self._cdelt, axes=self._axes.copy())
        args.update(kwargs)
        return WcsGeom(**args)

    def copy(self, **kwargs) -> "WcsGeom":
        """Copy, overriding any of ``wcs, npix, cdelt, axes``."""
        return self._init_copy(**kwargs)

    # -- properties -------------------------------------------------------------------------------
    @property
    def wcs(self) -> WCS:
        return self._wcs

    @property
    def frame(self) -> str:
        return self._frame

    @property
    def projection(self) -> str:
        return self._projection

    @property
    def axes(self) -> MapAxes:
        return self._axes

    @property
    def axes_names(self) -> list[str]:
        return ["lon", "lat"] + self._axes.names

    @property
    def npix(self) -> tuple[np.ndarray, np.ndarray]:
        """(nx, ny) as one-element int arrays, as in gammapy."""
        return np.array([self._nx]), np.array([self._ny])

    @property
    def data_shape(self) -> tuple[int, ...]:
        return self._axes.shape[::-1] + (self._ny, self._nx)

    @property
    def data_shape_image(self) -> tuple[int, ...]:
        return (1,) * len(self._axes) + (self._ny, self._nx)

    @property
    def data_shape_axes(self) -> tuple[int, ...]:
        return self._axes.shape[::-1] + (1, 1)

    @property
    def ndim(self) -> int:
        return len(self.data_shape)

    @property
    def is_image(self) -> bool:
        return len(self._axes) == 0

    @property
    def is_flat(self) -> bool:
        return all(ax.nbin == 1 for ax in self._axes)

    @property
    def is_regular(self) -> bool:
        return True

    @property
    def is_allsky(self) -> bool:
        return bool(np.isclose(self._nx * self._cdelt[0][0], 360.0)
                    and np.isclose(self._ny * self._cdelt[1][0], 180.0))

    @property
    def width(self) -> u.Quantity:
        """(lon, lat) widths in deg, shape (2, 1) as in gammapy."""
        return (self._cdelt[0] * self._nx, self._cdelt[1] * self._ny) * u.deg

    @property
    def pixel_scales(self) -> Angle:
        return Angle(proj_plane_pixel_scales(self._wcs), "deg")

    @property
    def center_pix(self) -> tuple:
        return tuple((np.array(self.data_shape) - 1.0) / 2)[::-1]

    @property
    def center_coord(self) -> tuple:
        return self.pix_to_coord(self.center_pix)

    @property
    def center_skydir(self) -> SkyCoord:
        if "center_skydir" not in self._cache:  # geometries are immutable: computed once
            pix = self.center_pix
            self._cache["center_skydir"] = SkyCoord.from_pixel(pix[0], pix[1], self._wcs)
        return self._cache["center_skydir"]

    # -- plain-array hot paths --------------------------------------------------------------------
    def pixel_centers(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (deg, geom frame) of the pixel centres, float64 arrays (ny, nx).

        Cached and read-only: copy before modifying.
        """
        if "centers" not in self._cache:
            y, x = np.indices((self._ny, self._nx), dtype=float)
            lon, lat = self._wcs.wcs_pix2world(x, y, 0)
            self._cache["centers"] = (_read_only(lon), _read_only(lat))
        return self._cache["centers"]

    def pixel_edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (deg) of the pixel corners, float64 arrays (ny + 1, nx + 1)."""
        if "edges" not in self._cache:
            y, x = np.indices((self._ny + 1, self._nx + 1), dtype=float) - 0.5
            lon, lat = self._wcs.wcs_pix2world(x, y, 0)
            self._cache["edges"] = (_read_only(lon), _read_only(lat))
        return self._cache["edges"]

    def solid_angle_values(self) -> np.ndarray:
        """Pixel solid angles (sr), float64 array (ny, nx), computed as gammapy does. Read-only."""
        if "solid_angle" not in self._cache:
            self._cache["solid_angle"] = _read_only(pixel_solid_angles(*self.pixel_edges()))
        return self._cache["solid_angle"]

    def solid_angle(self) -> u.Quantity:
        """Pixel solid angles as a Quantity (sr) shaped ``data_shape_image``."""
        return u.Quantity(self.solid_angle_values().reshape(self.data_shape_image), "sr")

    def bin_volume(self) -> u.Quantity:
        """Solid angle times the widths of all non-spatial bins."""
        value = self.solid_angle()
        for idx, ax in enumerate(self._axes):
            shape = [1] * self.ndim
            shape[self._axes.index_data(ax.name)] = -1
            value = value * ax.bin_width.reshape(shape)
        return value

    def separation(self, center: SkyCoord) -> Angle:
        """Angular distance of every pixel centre from ``center``, Angle (ny, nx)."""
        lon, lat, _ = skycoord_to_lonlat(center, frame=self._frame)
        lon_px, lat_px = self.pixel_centers()
        sep = angular_separation(lon, lat, lon_px, lat_px)
        return Angle(np.degrees(sep), "deg")

    # -- coordinates ------------------------------------------------------------------------------
    def _axis_pix(self, mode: str, axis_name) -> list[np.ndarray]:
        out = []
        for ax in self._axes:
            if mode == "edges" and ax.name in axis_name:
                out.append(np.arange(-0.5, ax.nbin, dtype=float))
            else:
                out.append(np.arange(ax.nbin, dtype=float))
        return out

    def get_coord(self, mode: str = "center", frame: str | None = None, sparse: bool = False,
                  axis_name=None) -> MapCoord:
        """Coordinates of all pixels (``mode="edges"``: corners for ``axis_name``, default lon/lat)."""
        axis_name = ("lon", "lat") if axis_name is None else (
            (axis_name,) if isinstance(axis_name, str) else tuple(axis_name))
        spatial_edges = mode == "edges" and ("lon" in axis_name or "lat" in axis_name)
        lon, lat = self.pixel_edges() if spatial_edges else self.pixel_centers()
        naxes = len(self._axes)
        data = {"lon": u.Quantity(lon.reshape((1,) * naxes + lon.shape), "deg"),
                "lat": u.Quantity(lat.reshape((1,) * naxes + lat.shape), "deg")}
        for ax, pix in zip(self._axes, self._axis_pix(mode, axis_name)):
            shape = [1] * (naxes + 2)
            shape[self._axes.index_data(ax.name)] = -1
            data[ax.name] = ax.pix_to_coord(pix).reshape(shape)
        coords = MapCoord(data, frame=self._frame)
        if not sparse:
            coords = coords.broadcasted
            coords = MapCoord({k: v.copy() for k, v in coords._data.items()}, frame=self._frame)
        if frame is not None and frame != self._frame:
            coords = coords.to_frame(frame)
        return coords

    def get_idx(self) -> tuple[np.ndarray, ...]:
        """Integer index arrays (x, y, i_0, ...) of all pixels, each shaped ``data_shape``."""
        grids = np.meshgrid(*[np.arange(n) for n in self.data_shape], indexing="ij")
        return tuple(grids[::-1])

    def coord_to_pix(self, coords) -> tuple:
        """Map coordinates (tuple, dict, MapCoord or SkyCoord) to float pixel coordinates."""
        coords = MapCoord.create(coords, frame=self._frame, axis_names=self._axes.names)
        lon = np.asarray(u.Quantity(coords.lon, "deg").value, dtype=float)
        lat = np.asarray(u.Quantity(coords.lat, "deg").value, dtype=float)
        if lon.size == 0:
            return tuple(np.array([]) for _ in range(2 + len(self._axes)))
        x, y = self._wcs.wcs_world2pix(lon, lat, 0)
        missing = [ax.name for ax in self._axes if ax.name not in coords.axis_names]
        if missing:
            raise MapError(f"coordinates lack the non-spatial axes {missing}")
        return (x, y) + self._axes.coord_to_pix(coords)

    def pix_to_coord(self, pix) -> tuple:
        """Pixel coordinates (x, y, p_0, ...) to map coordinates (lon, lat as deg Quantities, ...)."""
        lon, lat = self._wcs.wcs_pix2world(pix[0], pix[1], 0)
        return (u.Quantity(lon, "deg"), u.Quantity(lat, "deg")) + self._axes.pix_to_coord(pix[2:])

    def pix_to_idx(self, pix, clip: bool = False) -> tuple:
        """Integer indices; -1 outside the geometry unless ``clip``."""
        pix = pix_tuple_to_idx(pix)
        idx_axes = self._axes.pix_to_idx(pix[2:], clip=clip)
        idx_spatial = []
        for idx, n in zip(pix[:2], (self._nx, self._ny)):
            idx_spatial.append(np.clip(idx, 0, n - 1) if clip else np.where((idx < 0) | (idx >= n), -1, idx))
        return tuple(idx_spatial) + tuple(idx_axes)

    def coord_to_idx(self, coords, clip: bool = False) -> tuple:
        return self.pix_to_idx(self.coord_to_pix(coords), clip=clip)

    def contains(self, coords) -> np.ndarray:
        idx = self.coord_to_idx(coords)
        return np.all(np.stack([np.asarray(t) != -1 for t in np.broadcast_arrays(*idx)]), axis=0)

    def contains_pix(self, pix) -> np.ndarray:
        idx = self.pix_to_idx(pix)
        return np.all(np.stack([np.asarray(t) != -1 for t in np.broadcast_arrays(*idx)]), axis=0)

    # -- derived geometries -----------------------------------------------------------------------
    def to_image(self) -> "WcsGeom":
        if "image" not in self._cache:
            self._cache["image"] = WcsGeom(self._wcs, (self._nx, self._ny), cdelt=self._cdelt)
        return self._cache["image"]

    def to_cube(self, axes) -> "WcsGeom":
        return WcsGeom(self._wcs.deepcopy(), (self._nx, self._ny), cdelt=self._cdelt,
                       axes=self._axes.copy() + list(axes))

    def squash(self, axis_name: str) -> "WcsGeom":
        key = ("squash", axis_name)
        if key not in self._cache:  # immutable: the same object (and its pixel centres) every time
            self._cache[key] = self.to_image().to_cube(self._axes.squash(axis_name))
        return self._cache[key]

    def drop(self, axis_name: str) -> "WcsGeom":
        return self.to_image().to_cube(self._axes.drop(axis_name))

    def slice_by_idx(self, slices: dict) -> "WcsGeom":
        """Slice non-spatial axes by name; an integer drops the axis."""
        return self._init_copy(axes=self._axes.slice_by_idx(slices))

    def to_binsz(self, binsz) -> "WcsGeom":
        return WcsGeom.create(skydir=self.center_skydir, binsz=binsz, width=tuple(self.width[:, 0]),
                              proj=self._projection, frame=self._frame, axes=self._axes.copy())

    def _resampled(self, factor: float) -> "WcsGeom":
        wcs = self._wcs.deepcopy()
        wcs.wcs.cdelt *= factor
        wcs.wcs.crpix = (wcs.wcs.crpix - 0.5) / factor + 0.5
        npix = (int(round(self._nx / factor)), int(round(self._ny / factor)))
        cdelt = (self._cdelt[0] * factor, self._cdelt[1] * factor)
        return self._init_copy(wcs=wcs, npix=npix, cdelt=cdelt)

    def upsample(self, factor: int) -> "WcsGeom":
        """Spatially finer geometry (pixel size / factor)."""
        return self._resampled(1.0 / factor)

    def downsample(self, factor: int) -> "WcsGeom":
        """Spatially coarser geometry (pixel size * factor); npix must be divisible by factor."""
        if self._nx % factor or self._ny % factor:
            raise MapError(f"spatial shape ({self._nx}, {self._ny}) not divisible by factor {factor}")
        return self._resampled(float(factor))

    # -- cutouts ----------------------------------------------------------------------------------
    def cutout(self, position, width, mode: str = "trim", odd_npix: bool = False,
               min_npix: int = 1) -> "WcsGeom":
        """Geometry of the window of ``width`` (deg or Angle; scalar or (lon, lat)) around ``position``.

        The window is the one astropy's ``Cutout2D`` selects, as in gammapy. "trim" cutouts are
        cached per window (see `_cached_cutout`): the same window gives the same (immutable)
        geometry object, with its pixel centres and solid angles already computed.
        """
        if isinstance(position, tuple):
            position = SkyCoord(*position, unit="deg", frame=self._frame)
        width = np.array(_two_floats(width, "width")) * u.deg
        width_npix = np.clip((width / self.pixel_scales).to_value(""), min_npix, None)
        if odd_npix:
            width_npix = (np.ceil(width_npix) // 2 * 2 + 1).astype(int)
        key = self._window_key(position, width_npix, mode)
        cutouts = self._cache.setdefault("cutouts", OrderedDict())
        if key is not None and key in cutouts:
            cutouts.move_to_end(key)
            return cutouts[key]
        from astropy.nddata import Cutout2D, NoOverlapError, PartialOverlapError

        dummy = np.broadcast_to(np.False_, (self._ny, self._nx))
        try:
            c2d = Cutout2D(data=dummy, wcs=self._wcs, position=position, size=width_npix[::-1], mode=mode)
        except (NoOverlapError, PartialOverlapError, ValueError) as exc:
            raise MapError(f"cutout at {position} of width {width} (mode={mode!r}): {exc}") from exc
        geom = self._init_copy(wcs=c2d.wcs, npix=c2d.shape[::-1])
        large = tuple((sl.start, sl.stop) for sl in c2d.slices_original)
        if key is not None and key[-1] == large:  # our window arithmetic agrees with Cutout2D's
            cutouts[key] = geom
            while len(cutouts) > _CUTOUT_CACHE_SIZE:
                cutouts.popitem(last=False)
        return geom

    def _window_key(self, position: SkyCoord, width_npix: np.ndarray, mode: str):
        """Cache key of a "trim" cutout: the window ``Cutout2D`` would select, computed as it does
        (``skycoord_to_pixel`` with all distortions, ``overlap_slices``); None when not cached."""
        if mode != "trim" or not isinstance(position, SkyCoord) or not position.isscalar:
            return None
        # astropy.nddata and scipy are imported where used: a reducer process unpickles geometries
        # (this module) but never cuts or interpolates, and their imports cost it ~0.4 s of CPU.
        from astropy.nddata.utils import NoOverlapError, PartialOverlapError, overlap_slices

        if position.frame.name == self._frame:  # no transform (a pointing carries obstime/location)
            lon, lat = position.spherical.lon.deg, position.spherical.lat.deg
        else:
            lon, lat, _ = skycoord_to_lonlat(position, self._frame)
        x, y = self._wcs.all_world2pix(np.array([lon]), np.array([lat]), 0)
        if not (np.isfinite(x[0]) and np.isfinite(y[0])):
            return None
        size = (int(np.round(width_npix[1])), int(np.round(width_npix[0])))
        try:
            large, _ = overlap_slices((self._ny, self._nx), size, (float(y[0]), float(x[0])), mode="trim")
        except (NoOverlapError, PartialOverlapError, ValueError):
            return None
        return mode, size, tuple((sl.start, sl.stop) for sl in large)

    def cutout_slices(self, geom: "WcsGeom", mode: str = "partial") -> dict:
        """Slices of this (cutout) geometry inside the parent ``geom`` and vice versa.

        Returns ``{"parent-slices": (slice_y, slice_x), "cutout-slices": (slice_y, slice_x)}``.
        """
        cache = self._cache.setdefault("cutout_slices", {})
        cached = cache.get((id(geom), mode))
        if cached is not None and cached[0] is geom:
            return cached[1]
        from astropy.nddata.utils import overlap_slices

        x, y = geom.to_image().coord_to_pix(self.center_skydir)
        parent, cutout = overlap_slices(large_array_shape=geom.data_shape[-2:],
                                        small_array_shape=self.data_shape[-2:],
                                        position=[float(np.ravel(y)[0]), float(np.ravel(x)[0])], mode=mode)
        result = {"parent-slices": parent, "cutout-slices": cutout}
        cache[(id(geom), mode)] = (geom, result)
        return result

    # -- masks ------------------------------------------------------------------------------------
    def region_mask(self, regions, inside: bool = True):
        """Boolean map, True inside the union of ``regions`` (or outside with ``inside=False``).

        ``regions``: a DS9 string, a `regions` sky/pixel region, a list of them, or SkyCoord points.
        """
        image = region_mask_values(self, regions)
        if not inside:
            image = ~image
        data = np.broadcast_to(image, self.data_shape).copy()
        return WcsNDMap(self, data=data)

    # -- FITS -------------------------------------------------------------------------------------
    def to_header(self):
        """FITS header: WCS keywords, AXCOLSi/INTERPi and WCSSHAPE."""
        header = self._wcs.to_header()
        for key, value in self._axes.to_header().items():
            header[key] = value
        shape = f"{self._nx},{self._ny}" + "".join(f",{ax.nbin}" for ax in self._axes)
        header["WCSSHAPE"] = f"({shape})"
        return header

    def to_bands_hdu(self, hdu_bands: str = "BANDS"):
        return self._axes.to_table_hdu(hdu_bands=hdu_bands)

    # -- comparison -------------------------------------------------------------------------------
    def is_allclose(self, other, rtol_axes: float = 1e-6, atol_axes: float = 1e-6,
                    rtol_wcs: float = 1e-6) -> bool:
        if not isinstance(other, WcsGeom) or self.data_shape != other.data_shape:
            return False
        axes_eq = self._axes.is_allclose(other.axes, rtol=rtol_axes, atol=atol_axes)
        return bool(axes_eq and self._wcs.wcs.compare(other.wcs.wcs, cmp=1, tolerance=rtol_wcs))

    def is_aligned(self, other, tolerance: float = 1e-6) -> bool:
        if any(a != b for a, b in zip(self._axes, other.axes)):
            return False
        return bool(self._wcs.wcs.compare(other.wcs.wcs, cmp=2, tolerance=tolerance))

    def __eq__(self, other) -> bool:
        return isinstance(other, WcsGeom) and self.is_allclose(other)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = object.__hash__

    def __deepcopy__(self, memo) -> "WcsGeom":
        # the cache holds derived objects (and cached cutouts): a copy starts without it
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            new.__dict__[key] = {} if key == "_cache" else _copy.deepcopy(value, memo)
        return new

    def __getstate__(self):
        # The cache holds derived arrays only; rebuild it lazily after unpickling (e.g. on a Ray worker).
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __reduce__(self):
        # astropy pickles a WCS by writing and re-reading an in-memory FITS file (~12 ms per WCS on
        # the driver, for every spec sent to Ray); that file holds the WCS's header text, so sending
        # the text is the same round trip without the FITS machinery (~0.2 ms). A WCS with
        # distortions (not representable by the header alone) keeps astropy's own pickling.
        wcs = self._wcs
        if wcs.has_distortion:
            return object.__reduce_ex__(self, 2)
        state = self.__getstate__()
        del state["_wcs"]
        return (_unpickle_geom, (type(self), wcs.to_header_string(relax=True), wcs.array_shape,
                                 wcs.pixel_bounds, state))

    def __repr__(self) -> str:
        return (f"WcsGeom(npix=({self._nx}, {self._ny}), binsz={self._cdelt[0][0]:g}, frame={self._frame!r}, "
                f"proj={self._projection!r}, center={tuple(np.round(self._wcs.wcs.crval, 4))}, "
                f"axes={self._axes.names})")


# ---- maps on a WcsGeom -----------------------------------------------------------------------------



@functools.lru_cache(maxsize=64)
def _parse_unit(text: str) -> u.UnitBase:
    return u.Unit(text)


def as_unit(unit) -> u.UnitBase:
    """``u.Unit(unit)``, with unit strings parsed once per process (astropy re-parses them at every
    call, a noticeable cost for the maps of every observation)."""
    return _parse_unit(unit) if isinstance(unit, str) else u.Unit(unit)


class Map:
    """Entry point mirroring ``gammapy.maps.Map``: construction and reading of WCS maps."""

    @staticmethod
    def from_geom(geom: WcsGeom, meta: dict | None = None, data=None, unit="",
                  dtype: str = "float32") -> "WcsNDMap":
        """Map of zeros (or ``data``) on ``geom``."""
        if not isinstance(geom, WcsGeom):
            raise MapError(f"only WcsGeom geometries are supported, got {type(geom).__name__}")
        return WcsNDMap(geom, data=data, dtype=dtype, meta=meta, unit=unit)

    @staticmethod
    def create(**kwargs) -> "WcsNDMap":
        """``WcsGeom.create(**geom_kwargs)`` then an empty map (dtype, meta, unit keywords)."""
        map_kwargs = {k: kwargs.pop(k) for k in ("dtype", "meta", "unit") if k in kwargs}
        kwargs.pop("map_type", None)
        return Map.from_geom(WcsGeom.create(**kwargs), **map_kwargs)

    @staticmethod
    def read(filename, hdu=None, hdu_bands=None, map_type: str = "auto") -> "WcsNDMap":
        """Read a map written in gammapy's FITS format."""
        path = Path(filename).expanduser()
        if not path.exists():
            raise MapFormatError(f"map file not found: {path}")
        with fits.open(path, memmap=False) as hdulist:
            return Map.from_hdulist(hdulist, hdu=hdu, hdu_bands=hdu_bands, map_type=map_type)

    @staticmethod
    def from_hdulist(hdulist: fits.HDUList, hdu=None, hdu_bands=None, map_type: str = "auto") -> "WcsNDMap":
        if map_type not in ("auto", "wcs"):
            raise MapError(f"only WCS maps are supported, got map_type={map_type!r}")
        return WcsNDMap.from_hdulist(hdulist, hdu=hdu, hdu_bands=hdu_bands)


def _binary(op, reverse: bool = False):
    def method(self, other):
        return self._arithmetics(op, other, copy=True, reverse=reverse)
    return method


def _inplace(op):
    def method(self, other):
        return self._arithmetics(op, other, copy=False)
    return method


def _logical(op, copy: bool = True):
    def method(self, other):
        return self._boolean_arithmetics(op, other, copy=copy)
    return method


class WcsNDMap(Map):
    """A map on a WCS geometry.

    Parameters
    ----------
    geom : WcsGeom
        Geometry.
    data : ndarray, optional
        Data shaped ``geom.data_shape`` (broadcastable arrays and scalars are accepted); zeros if None.
    dtype : str
        dtype of the default data.
    meta : dict, optional
        Metadata (written as JSON to the META keyword).
    unit : str or `~astropy.units.Unit`
        Data unit (ignored when ``data`` is a Quantity, whose unit is used).
    """

    def __init__(self, geom: WcsGeom, data=None, dtype: str = "float32", meta: dict | None = None, unit=""):
        self._geom = geom
        if data is None:
            data = np.zeros(geom.data_shape, dtype=dtype)
        if isinstance(data, u.Quantity):
            unit = data.unit
            data = data.value
        self.data = data
        self._unit = as_unit(unit)
        self.meta = {} if meta is None else meta

    # -- basic properties -------------------------------------------------------------------------
    @property
    def geom(self) -> WcsGeom:
        return self._geom

    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        if isinstance(value, u.Quantity):
            raise MapError("map data must be a numpy array; set the unit separately or use .quantity")
        if np.isscalar(value):
            value = value * np.ones(self._geom.data_shape, dtype=type(value))
        value = np.asarray(value)
        if value.shape != self._geom.data_shape:
            try:
                value = np.broadcast_to(value, self._geom.data_shape)
            except ValueError as exc:
                raise MapError(f"data shape {value.shape} does not match geometry shape "
                               f"{self._geom.data_shape}") from exc
        self._data = value

    @property
    def unit(self) -> u.UnitBase:
        return self._unit

    @property
    def meta(self) -> dict:
        return self._meta

    @meta.setter
    def meta(self, value: dict) -> None:
        self._meta = value

    @property
    def quantity(self) -> u.Quantity:
        return u.Quantity(self._data, self._unit, copy=None)

    @quantity.setter
    def quantity(self, value) -> None:
        value = u.Quantity(value)
        self.data = value.value
        self._unit = value.unit

    @property
    def is_mask(self) -> bool:
        return self._data.dtype == bool

    def __array__(self, dtype=None, copy=None):
        return self._data if dtype is None else self._data.astype(dtype)

    def copy(self, **kwargs) -> "WcsNDMap":
        """Deep copy, overriding any of ``geom, data, unit, meta`` (geom must keep the data shape)."""
        if "geom" in kwargs and kwargs["geom"].data_shape != self._geom.data_shape:
            raise MapError(f"copy cannot change the data shape {self._geom.data_shape} to "
                           f"{kwargs['geom'].data_shape}")
        return self._init_copy(**kwargs)

    def _init_copy(self, **kwargs) -> "WcsNDMap":
        args = {}
        args["geom"] = kwargs.pop("geom", self._geom)
        args["data"] = kwargs.pop("data") if "data" in kwargs else self._data.copy()
        args["unit"] = kwargs.pop("unit", self._unit)
        args["meta"] = kwargs.pop("meta") if "meta" in kwargs else _copy.deepcopy(self._meta)
        if kwargs:
            raise MapError(f"unknown map attributes {sorted(kwargs)}")
        return WcsNDMap(**args)

    def to_unit(self, unit) -> "WcsNDMap":
        return self.copy(data=self.quantity.to_value(unit), unit=unit)

    # -- slicing and reductions -------------------------------------------------------------------
    def slice_by_idx(self, slices: dict) -> "WcsNDMap":
        """Sub-map selecting non-spatial bins by axis name; an integer index drops the axis."""
        geom = self._geom.slice_by_idx(slices)
        index = tuple(slices.get(ax.name, slice(None)) for ax in self._geom.axes)
        return WcsNDMap(geom, data=self._data[index[::-1]], unit=self._unit, meta=self._meta)

    def get_image_by_idx(self, idx) -> "WcsNDMap":
        """Image plane at integer indices ``idx`` (one per non-spatial axis, in axes order)."""
        if len(idx) != len(self._geom.axes):
            raise MapError(f"need {len(self._geom.axes)} indices (one per non-spatial axis), got {len(idx)}")
        idx = tuple(int(np.asarray(i).item()) for i in idx)
        return WcsNDMap(self._geom.to_image(), data=self._data[idx[::-1]], unit=self._unit, meta=self._meta)

    def iter_by_image_data(self):
        """Yield (image, index) for every image plane; ``index`` indexes ``data``."""
        for index in np.ndindex(self._geom.data_shape[:-2]):
            yield self._data[index], index

    def reduce(self, axis_name: str, func=np.add, keepdims: bool = False, weights=None) -> "WcsNDMap":
        """Reduce over one non-spatial axis with a numpy ufunc."""
        idx = self._geom.axes.index_data(axis_name)
        data = self._data if weights is None else self._data * np.asarray(weights.data if isinstance(
            weights, WcsNDMap) else weights)
        if keepdims:
            geom = self._geom.squash(axis_name)
            data = func.reduce(data, axis=idx, keepdims=True)
        else:
            geom = self._geom.drop(axis_name)
            data = func.reduce(data, axis=idx)
        return self._init_copy(geom=geom, data=data)

    def reduce_over_axes(self, func=np.add, keepdims: bool = False, axes_names=None,
                         weights=None) -> "WcsNDMap":
        axes_names = self._geom.axes.names if axes_names is None else axes_names
        out = self.copy()
        if weights is not None:
            out.data = out.data * np.asarray(weights.data if isinstance(weights, WcsNDMap) else weights)
        for name in axes_names:
            out = out.reduce(name, func=func, keepdims=keepdims)
        return out

    def sum_over_axes(self, axes_names=None, keepdims: bool = True, weights=None) -> "WcsNDMap":
        """Sum over non-spatial axes (all by default); summed axes keep one bin if ``keepdims``."""
        return self.reduce_over_axes(np.add, keepdims=keepdims, axes_names=axes_names, weights=weights)

    # -- spatial operations -----------------------------------------------------------------------
    def smooth(self, width, kernel: str = "gauss", **kwargs) -> "WcsNDMap":
        """Smooth each image plane (copy); ``width`` in pixels (float) or as an angle.

        gauss: ``width`` is the Gaussian sigma; disk: the radius of a normalised top-hat (astropy
        ``Tophat2DKernel``); box: the side of a uniform filter. ``kwargs`` go to scipy.ndimage.
        """
        if isinstance(width, (u.Quantity, str)):
            width = (u.Quantity(width) / self._geom.pixel_scales.mean()).to_value("")
        if kernel == "disk":
            from astropy.convolution import Tophat2DKernel

            disk = Tophat2DKernel(width)
            disk.normalize("integral")
        elif kernel not in ("gauss", "box"):
            raise MapError(f"kernel must be 'gauss', 'disk' or 'box', got {kernel!r}")
        from scipy import ndimage

        out = np.empty(self._data.shape, dtype=float)
        for img, idx in self.iter_by_image_data():
            img = img.astype(float)
            if kernel == "gauss":
                out[idx] = ndimage.gaussian_filter(img, width, **kwargs)
            elif kernel == "disk":
                out[idx] = ndimage.convolve(img, disk.array, **kwargs)
            else:
                out[idx] = ndimage.uniform_filter(img, width, **kwargs)
        return self._init_copy(data=out)

    def cutout(self, position, width, mode: str = "trim", odd_npix: bool = False,
               min_npix: int = 1) -> "WcsNDMap":
        """Map on ``geom.cutout(...)``; pixels outside the parent (mode="partial") are zero."""
        geom = self._geom.cutout(position=position, width=width, mode=mode, odd_npix=odd_npix,
                                 min_npix=min_npix)
        info = geom.cutout_slices(self._geom, mode=mode)
        data = np.zeros(geom.data_shape, dtype=self._data.dtype)
        data[(Ellipsis,) + tuple(info["cutout-slices"])] = self._data[(Ellipsis,) + tuple(info["parent-slices"])]
        return self._init_copy(geom=geom, data=data)

    # -- access by coordinate ---------------------------------------------------------------------
    def get_by_idx(self, idx) -> np.ndarray:
        return self._data.T[pix_tuple_to_idx(idx)]

    def get_by_pix(self, pix, fill_value=np.nan) -> np.ndarray:
        pix = np.broadcast_arrays(*pix)
        idx = self._geom.pix_to_idx(pix)
        vals = self.get_by_idx(idx)
        inside = self._geom.contains_pix(pix)
        if not inside.all():
            vals = vals.astype(type(fill_value))
            vals[~inside] = fill_value
        return vals

    def get_by_coord(self, coords, fill_value=np.nan) -> np.ndarray:
        """Values of the pixels containing ``coords``; ``fill_value`` outside the map."""
        return self.get_by_pix(self._geom.coord_to_pix(coords), fill_value=fill_value)

    def interp_by_pix(self, pix, method: str = "linear", fill_value=None) -> np.ndarray:
        """Multilinear (or nearest) interpolation in pixel space, extrapolating unless ``fill_value``."""
        data = self._data.T
        if not np.all(np.isfinite(data)):
            data = np.where(np.isfinite(data), data, 0.0)
        grid = [np.arange(n, dtype=float) for n in data.shape]
        keep = [n > 1 for n in data.shape]  # length-1 dimensions cannot be interpolated along
        pts = np.broadcast_arrays(*[np.asarray(p, dtype=float) for p in pix])
        shape = pts[0].shape
        if not any(keep):
            values = np.full(shape, data.ravel()[0], dtype=float)
        else:
            from scipy.interpolate import RegularGridInterpolator

            fn = RegularGridInterpolator([g for g, k in zip(grid, keep) if k], np.squeeze(data, axis=tuple(
                i for i, k in enumerate(keep) if not k)), method=method, bounds_error=False, fill_value=None)
            xi = np.stack([p.ravel() for p, k in zip(pts, keep) if k], axis=-1)
            values = fn(xi).reshape(shape)
        if fill_value is not None:
            idx = self._geom.pix_to_idx(pts, clip=False)
            outside = np.any(np.stack([np.broadcast_to(i == -1, shape) for i in idx]), axis=0)
            values = np.array(values, ndmin=1) if values.ndim == 0 else values
            values[outside.reshape(values.shape)] = fill_value
            values[~np.isfinite(values)] = fill_value
        return values

    def interp_by_coord(self, coords, method: str = "linear", fill_value=None) -> np.ndarray:
        """Interpolate at map coordinates (pixel-space multilinear, as gammapy)."""
        return self.interp_by_pix(self._geom.coord_to_pix(coords), method=method, fill_value=fill_value)

    def fill_by_idx(self, idx, weights=None) -> None:
        idx = pix_tuple_to_idx(idx)
        valid = np.all(np.stack([np.broadcast_to(t != -1, np.broadcast_shapes(*[i.shape for i in idx]))
                                 for t in idx]), axis=0)
        idx = [np.broadcast_to(t, valid.shape)[valid] for t in idx]
        if weights is not None:
            weights = weights.to_value(self._unit) if isinstance(weights, u.Quantity) else np.asarray(weights)
            weights = np.broadcast_to(weights, valid.shape)[valid]
        flat = np.ravel_multi_index(idx, self._data.T.shape)
        add = np.bincount(flat, weights=weights, minlength=self._data.size)
        # flat indexes data.T in C order; transpose back to the data layout.
        self._data += add.reshape(self._data.T.shape).T.astype(self._data.dtype)

    def fill_by_coord(self, coords, weights=None) -> None:
        """Histogram ``coords`` into the map (adding ``weights`` or 1 per point)."""
        self.fill_by_idx(self._geom.coord_to_idx(coords), weights=weights)

    def set_by_idx(self, idx, vals) -> None:
        self._data.T[pix_tuple_to_idx(idx)] = vals

    def set_by_coord(self, coords, vals) -> None:
        self.set_by_idx(self._geom.coord_to_idx(coords), vals)

    # -- arithmetic -------------------------------------------------------------------------------
    def _arithmetics(self, op, other, copy: bool, reverse: bool = False) -> "WcsNDMap":
        if isinstance(other, WcsNDMap):
            if self._geom != other.geom:
                raise GeometryMismatch("map arithmetic: inconsistent geometries")
            other_q = other.quantity
        else:
            other_q = u.Quantity(other, copy=None)
        unit = None
        other_data = other_q.value
        if op in (operator.mul, operator.truediv):
            unit = op(self._unit, other_q.unit) if not reverse else op(other_q.unit, self._unit)
        else:
            try:
                other_data = other_q.unit.get_converter(self._unit)(other_data)
            except u.UnitConversionError as exc:
                raise MapError(f"map arithmetic: cannot combine units {self._unit} and {other_q.unit}") from exc
        out = self.copy() if copy else self
        result = op(other_data, out.data) if reverse else op(out.data, other_data)
        out.data = result
        if unit is not None:
            out._unit = unit
        return out

    def _boolean_arithmetics(self, op, other, copy: bool = True) -> "WcsNDMap":
        out = self.copy() if copy else self
        if op is np.logical_not:
            out.data = op(out.data)
            return out
        if isinstance(other, WcsNDMap):
            if self._geom != other.geom:
                raise GeometryMismatch("map boolean operation: inconsistent geometries")
            other = other.data
        out.data = op(out.data, other)
        return out

    __add__ = _binary(operator.add)
    __radd__ = _binary(operator.add, reverse=True)
    __sub__ = _binary(operator.sub)
    __rsub__ = _binary(operator.sub, reverse=True)
    __mul__ = _binary(operator.mul)
    __rmul__ = _binary(operator.mul, reverse=True)
    __truediv__ = _binary(operator.truediv)
    __rtruediv__ = _binary(operator.truediv, reverse=True)
    __iadd__ = _inplace(operator.add)
    __isub__ = _inplace(operator.sub)
    __imul__ = _inplace(operator.mul)
    __itruediv__ = _inplace(operator.truediv)
    __lt__ = _binary(operator.lt)
    __le__ = _binary(operator.le)
    __gt__ = _binary(operator.gt)
    __ge__ = _binary(operator.ge)
    __eq__ = _binary(operator.eq)
    __ne__ = _binary(operator.ne)
    __and__ = _logical(np.logical_and)
    __or__ = _logical(np.logical_or)
    __xor__ = _logical(np.logical_xor)
    __iand__ = _logical(np.logical_and, copy=False)
    __ior__ = _logical(np.logical_or, copy=False)
    __ixor__ = _logical(np.logical_xor, copy=False)

    def __invert__(self) -> "WcsNDMap":
        return self._boolean_arithmetics(np.logical_not, None)

    __hash__ = object.__hash__

    def is_allclose(self, other: "WcsNDMap", rtol_axes: float = 1e-3, atol_axes: float = 1e-6,
                    **kwargs) -> bool:
        """Same geometry, unit and data (np.allclose with ``kwargs``)."""
        if not isinstance(other, WcsNDMap) or self._geom.data_shape != other.geom.data_shape:
            return False
        if not self._geom.is_allclose(other.geom, rtol_axes=rtol_axes, atol_axes=atol_axes):
            return False
        if self.is_mask:
            return bool(np.array_equal(self._data, other.data))
        return self._unit == other.unit and bool(np.allclose(self._data, other.data, **kwargs))

    # -- FITS -------------------------------------------------------------------------------------
    def to_hdu(self, hdu: str = "SKYMAP", hdu_bands: str | None = None):
        """Image HDU (PrimaryHDU when ``hdu == "PRIMARY"``) with the geometry header."""
        header = self._geom.to_header()
        data = self._data.astype(int) if self.is_mask else self._data
        if hdu_bands is not None:
            header["BANDSHDU"] = hdu_bands
        if hdu == "PRIMARY":
            return fits.PrimaryHDU(data, header=header)
        return fits.ImageHDU(data, header=header, name=hdu)

    def to_hdulist(self, hdu: str | None = None, hdu_bands: str | None = None) -> fits.HDUList:
        """HDU list in gammapy's format: [Primary,] map HDU [, <HDU>_BANDS]."""
        hdu = "PRIMARY" if hdu is None else hdu.upper()
        hdu_bands = f"{hdu}_BANDS" if hdu_bands is None else hdu_bands
        bands = None
        if len(self._geom.axes):
            bands = self._geom.to_bands_hdu(hdu_bands=hdu_bands)
            hdu_bands = bands.name
        else:
            hdu_bands = None
        out = self.to_hdu(hdu=hdu, hdu_bands=hdu_bands)
        out.header["META"] = meta_to_json(self._meta)
        out.header["BUNIT"] = self._unit.to_string("fits")
        hdus = [out] if hdu == "PRIMARY" else [fits.PrimaryHDU(), out]
        if bands is not None:
            hdus.append(bands)
        return fits.HDUList(hdus)

    def write(self, filename, overwrite: bool = False, hdu: str | None = None,
              hdu_bands: str | None = None, checksum: bool = False) -> None:
        """Write to a FITS file in gammapy's format."""
        self.to_hdulist(hdu=hdu, hdu_bands=hdu_bands).writeto(Path(filename).expanduser(), overwrite=overwrite,
                                                              checksum=checksum)

    @classmethod
    def from_hdu(cls, hdu, hdu_bands=None) -> "WcsNDMap":
        """Map from an image HDU and its BANDS table (HDUs whose name holds "mask" are boolean)."""
        if isinstance(hdu, fits.BinTableHDU):
            raise MapFormatError(f"HDU {hdu.name!r}: sparse (binary table) maps are not supported")
        try:
            geom = WcsGeom.from_header(hdu.header, hdu_bands)
        except (KeyError, ValueError) as exc:
            raise MapFormatError(f"HDU {hdu.name!r}: cannot read geometry: {exc}") from exc
        data = hdu.data
        if data is None:
            raise MapFormatError(f"HDU {hdu.name!r} has no data")
        if any(tag in hdu.name.lower() for tag in MASK_HDU_TAGS):
            data = data.astype(bool)
        elif not data.dtype.isnative:
            # FITS is big-endian; native order keeps later numpy work fast (values unchanged).
            data = data.astype(data.dtype.newbyteorder("="))
        if data.shape != geom.data_shape:
            raise MapFormatError(f"HDU {hdu.name!r}: data shape {data.shape} does not match the header "
                                 f"geometry {geom.data_shape}")
        return cls(geom, data=data, meta=meta_from_header(hdu.header), unit=unit_from_header(hdu.header))

    @classmethod
    def from_hdulist(cls, hdulist: fits.HDUList, hdu=None, hdu_bands=None) -> "WcsNDMap":
        data_hdu = find_data_hdu(hdulist, hdu)
        bands = find_bands_hdu(hdulist, data_hdu, hdu_bands)
        if bands is not None and bands.name in ("EBOUNDS", "ENERGIES"):
            raise MapFormatError(f"HDU {data_hdu.name!r}: Fermi-LAT ({bands.name}) map formats are not supported")
        return cls.from_hdu(data_hdu, bands)

    # -- plotting: the drawing code is in gamma_ray_dist.visualization, imported (with matplotlib)
    # only when a plot is drawn, so importing the maps needs neither.
    def plot(self, ax: Any = None, fig: Any = None, add_cbar: bool = False, stretch: str = "linear",
             **kwargs: Any) -> Any:
        """Plot a 2D map (or one with length-1 non-spatial axes) on WCS axes, as gammapy.

        Parameters
        ----------
        ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
            Axes to draw on; default: a new WCSAxes (the map's WCS) in ``fig``.
        fig : `~matplotlib.figure.Figure`, optional
            Figure for the new axes (default: the current figure).
        add_cbar : bool
            Add a colour bar labelled with the map unit.
        stretch : {"linear", "sqrt", "log", "asinh", "sinh", "power"}
            Colour stretch; ``vmin``/``vmax`` kwargs set the cuts.
        **kwargs
            Passed to `~gamma_ray_dist.visualization.plot_map` (then ``imshow``).

        Returns
        -------
        ax : `~astropy.visualization.wcsaxes.WCSAxes`
        """
        from ..visualization.maps import plot_map

        return plot_map(self, ax=ax, fig=fig, add_cbar=add_cbar, stretch=stretch, **kwargs)

    def plot_grid(self, ncols: int = 3, figsize: Any = None, **kwargs: Any) -> list:
        """One image per bin of the non-spatial axes (e.g. per energy band) on a grid of WCS axes.

        Parameters
        ----------
        ncols : int
            Panels per row.
        figsize : tuple, optional
            Figure size (default: 4 inches per panel).
        **kwargs
            Passed to `~gamma_ray_dist.visualization.plot_grid` (``add_cbar``, ``stretch``, ``imshow``
            options).

        Returns
        -------
        axes : list of `~astropy.visualization.wcsaxes.WCSAxes`
        """
        from ..visualization.maps import plot_grid

        return plot_grid(self, ncols=ncols, figsize=figsize, **kwargs)

    def __repr__(self) -> str:
        return (f"WcsNDMap(geom={self._geom!r}, unit={self._unit.to_string()!r}, dtype={self._data.dtype}, "
                f"shape={self._data.shape})")
