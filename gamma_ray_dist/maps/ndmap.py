"""Map and WcsNDMap: a numpy array on a :class:`WcsGeom`, with a unit and a meta dict.

``data`` is shaped ``geom.data_shape`` (non-spatial axes reversed, then ny, nx). FITS I/O uses gammapy's
format (see :mod:`gamma_ray_dist.maps.fitsio`).
"""
from __future__ import annotations

import copy as _copy
import functools
import operator
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits
from scipy import ndimage
from scipy.interpolate import RegularGridInterpolator

from .coord import MapCoord
from .errors import GeometryMismatch, MapError, MapFormatError
from .fitsio import (
    MASK_HDU_TAGS,
    find_bands_hdu,
    find_data_hdu,
    meta_from_header,
    meta_to_json,
    unit_from_header,
)
from .geom import WcsGeom, pix_tuple_to_idx

__all__ = ["Map", "WcsNDMap"]



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

    def __repr__(self) -> str:
        return (f"WcsNDMap(geom={self._geom!r}, unit={self._unit.to_string()!r}, dtype={self._data.dtype}, "
                f"shape={self._data.shape})")


# Plot methods (matplotlib is imported only when a plot is drawn).
from ..visualization import install_plot_methods  # noqa: E402

install_plot_methods("maps")
