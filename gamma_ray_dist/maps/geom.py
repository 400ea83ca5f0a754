"""WcsGeom: a sky image (astropy WCS, nx x ny pixels) times optional non-spatial axes.

Pixel conventions follow gammapy: pixel (0, 0) is the centre of the first pixel, CRPIX is 1-based,
``create`` puts the reference pixel at ``((nx + 1) / 2, (ny + 1) / 2)`` and the number of pixels is
``rint(width / binsz)``. Data arrays are shaped ``axes[::-1] + (ny, nx)``.
Only regular geometries (one pixel size for all image planes) are supported.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord, frame_transform_graph
from astropy.nddata import Cutout2D
from astropy.nddata.utils import NoOverlapError, PartialOverlapError, overlap_slices
from astropy.wcs import WCS
from astropy.wcs.utils import celestial_frame_to_wcs, proj_plane_pixel_scales, wcs_to_celestial_frame

from .axes import MapAxes
from .coord import MapCoord, skycoord_to_lonlat
from .errors import MapError
from .sphere import angular_separation, pixel_solid_angles

__all__ = ["WcsGeom", "pix_tuple_to_idx"]

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
        from .ndmap import WcsNDMap
        from .regions import region_mask_values

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
            new.__dict__[key] = {} if key == "_cache" else copy.deepcopy(value, memo)
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
