"""Base class of the tabulated IRFs: storage, reading, coordinate handling, evaluation."""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import IRFError
from .axes import AXIS_UNITS, IRFAxis, scale_forward, scale_inverse
from .interp import GridInterpolator
from .io import HDUContext, open_hdu, read_axes, read_column, reshape_data

__all__ = ["IRFAxes", "TableIRF", "to_canonical", "FOV_ALIGNMENTS"]

FOV_ALIGNMENTS = ("RADEC", "ALTAZ", "REVERSE_LON_RADEC")


class IRFAxes(Sequence):
    """Ordered IRF axes, indexable by position or by name."""

    def __init__(self, axes: Sequence[IRFAxis]):
        self._axes = tuple(axes)

    def __getitem__(self, key):
        if isinstance(key, str):
            for ax in self._axes:
                if ax.name == key:
                    return ax
            raise KeyError(f"no axis {key!r}; axes are {self.names}")
        return self._axes[key]

    def __len__(self) -> int:
        return len(self._axes)

    def __iter__(self) -> Iterator[IRFAxis]:
        return iter(self._axes)

    @property
    def names(self) -> list[str]:
        return [ax.name for ax in self._axes]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(ax.nbin for ax in self._axes)

    def index(self, name: str) -> int:  # type: ignore[override]
        return self.names.index(name)


def to_canonical(value: Any, name: str) -> np.ndarray:
    """Coordinate (Quantity or plain number in canonical units) -> float64 array."""
    unit = AXIS_UNITS.get(name, "")
    if isinstance(value, u.Quantity):
        try:
            return np.asarray(value.to_value(unit), dtype=np.float64)
        except u.UnitConversionError:
            raise ValueError(f"coordinate '{name}' has unit {value.unit}, expected {unit!r}") from None
    return np.asarray(value, dtype=np.float64)


class TableIRF:
    """An IRF tabulated on a regular grid (aeff_2d, edisp_2d, psf_table, bkg_3d, bkg_2d).

    Parameters
    ----------
    axes : sequence of IRFAxis
        Axes in the order of ``required_axes``.
    data : np.ndarray
        Values in the file unit and dtype (``raw``); ``factor`` converts them to canonical units.
    factor : float
        File unit -> canonical unit factor.
    meta : dict, optional
        Header of the HDU.
    fov_alignment : str
        "RADEC", "ALTAZ" or "REVERSE_LON_RADEC".
    """

    tag: ClassVar[str] = ""
    required_axes: ClassVar[tuple[str, ...]] = ()
    column: ClassVar[str] = ""
    canonical_unit: ClassVar[str] = ""
    default_hdu: ClassVar[str] = ""
    values_scale: ClassVar[str] = "lin"
    fill_value: ClassVar[float | None] = 0.0

    def __init__(self, axes: Sequence[IRFAxis], data: np.ndarray, factor: float = 1.0,
                 meta: dict | None = None, fov_alignment: str = "RADEC"):
        self._axes = IRFAxes(axes)
        if self._axes.names != list(self.required_axes):
            raise ValueError(f"{type(self).__name__} needs axes {list(self.required_axes)}, "
                             f"got {self._axes.names}")
        raw = np.asarray(data)
        if raw.shape != self._axes.shape:
            raise ValueError(f"data shape {raw.shape} does not match axes shape {self._axes.shape}")
        fov_alignment = str(fov_alignment).upper()
        if fov_alignment not in FOV_ALIGNMENTS:
            raise ValueError(f"fov_alignment must be one of {FOV_ALIGNMENTS}, got {fov_alignment!r}")
        self._raw = raw.copy()
        self._raw.setflags(write=False)
        self._factor = float(factor)
        values = self._raw.astype(np.float64) * self._factor
        values.setflags(write=False)
        self._data = values
        self.meta = dict(meta or {})
        self._fov_alignment = fov_alignment
        self._interp: GridInterpolator | None = None

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_hdu(cls, hdu: fits.BinTableHDU, filename: str | Path | None = None,
                 obs_id: int | None = None):
        """Build from a GADF binary-table HDU; errors name ``obs_id``, ``filename`` and HDU."""
        ctx = HDUContext(hdu, filename, obs_id)
        axes = read_axes(ctx, list(cls.required_axes), reco_energy=cls._reco_energy(ctx))
        column = cls._data_column(ctx)
        raw, factor = cls._read_values(ctx, column)
        data = reshape_data(ctx, raw, axes, column, allow_transposed=cls._allow_transposed())
        meta = {k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")}
        align = str(hdu.header.get("FOVALIGN", "RADEC")).strip().upper()
        if align not in FOV_ALIGNMENTS:
            raise ctx.error(IRFError, f"unknown FOVALIGN={align!r}; expected one of {FOV_ALIGNMENTS}")
        return cls(axes, data, factor=factor, meta=meta, fov_alignment=align)

    @classmethod
    def read(cls, filename: str | Path, hdu: str | int | None = None, obs_id: int | None = None):
        """Read from a FITS file (``hdu`` defaults to the GADF extension name)."""
        hdulist, h = open_hdu(filename, hdu, cls.default_hdu)
        with hdulist:
            return cls.from_hdu(h, filename=filename, obs_id=obs_id)

    @classmethod
    def _reco_energy(cls, ctx: HDUContext) -> bool:
        return False

    @classmethod
    def _allow_transposed(cls) -> bool:
        return False

    @classmethod
    def _data_column(cls, ctx: HDUContext) -> str:
        return cls.column

    @classmethod
    def _read_values(cls, ctx: HDUContext, column: str) -> tuple[np.ndarray, float]:
        return read_column(ctx, column, cls.canonical_unit)

    # ---- properties -----------------------------------------------------------------------
    @property
    def axes(self) -> IRFAxes:
        """Axes (plain arrays, canonical units)."""
        return self._axes

    @property
    def data(self) -> np.ndarray:
        """Values as float64 in canonical units (read-only)."""
        return self._data

    @property
    def unit(self) -> u.UnitBase:
        """Canonical unit of ``data``."""
        return u.Unit(self.canonical_unit)

    @property
    def quantity(self) -> u.Quantity:
        return u.Quantity(self._data, self.unit, copy=False)

    @property
    def fov_alignment(self) -> str:
        """"RADEC", "ALTAZ" or "REVERSE_LON_RADEC" (FOVALIGN header, RADEC if absent)."""
        return self._fov_alignment

    def with_fov_alignment(self, fov_alignment: str):
        """Copy with another FoV alignment.

        gammapy's ``Observation.bkg`` switches old H.E.S.S. backgrounds (events header CREATOR
        'SASH FITS::EventListWriter', HDUVERS '0.2', e.g. DL3 DR1) to "REVERSE_LON_RADEC": that rule
        needs the events header, so it belongs to the observation, which calls this.
        """
        return type(self)(self._axes, self._raw, factor=self._factor, meta=self.meta,
                          fov_alignment=fov_alignment)

    @property
    def is_pointlike(self) -> bool:
        return self.meta.get("HDUCLAS3") == "POINT-LIKE"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axes={self._axes.names}, shape={self._axes.shape}, unit={self.unit})"

    # ---- evaluation ---------------------------------------------------------------------
    def _mask_out_bounds(self, invalid):
        return np.any(invalid, axis=0)

    @property
    def interpolator(self) -> GridInterpolator:
        if self._interp is None:
            mask = None if type(self)._mask_out_bounds is TableIRF._mask_out_bounds else self._mask_out_bounds
            self._interp = GridInterpolator(self._axes, self._raw, self.values_scale,
                                            self.fill_value, mask, factor=self._factor)
        return self._interp

    def _coords(self, coords: dict, convert: bool) -> list[np.ndarray]:
        unknown = set(coords) - set(self.required_axes)
        if unknown:
            raise ValueError(f"not a valid coordinate axis {sorted(unknown)}; choose from {list(self.required_axes)}")
        missing = [n for n in self.required_axes if n not in coords]
        if missing:
            raise TypeError(f"{type(self).__name__}.evaluate needs coordinates {missing}")
        if convert:
            return [to_canonical(coords[n], n) for n in self.required_axes]
        return [np.asarray(coords[n], dtype=np.float64) for n in self.required_axes]

    def evaluate_values(self, **coords: np.ndarray) -> np.ndarray:
        """Interpolate at plain float coordinates in canonical units; float64 out, canonical unit."""
        return self.interpolator(*self._coords(coords, convert=False))

    def interp_missing_data(self, axis_name: str):
        """Copy with zero or non-finite values filled by interpolation along ``axis_name``.

        gammapy's ``IRF.interp_missing_data`` (used by MapDatasetMaker on backgrounds by default):
        for each missing value, ``np.interp`` over bin *indices* of the valid values of its line, in
        the values scale; points outside the valid range stay as they are. Pure: returns a new IRF.
        """
        axis = self._axes.index(axis_name)
        data = np.array(self._raw, copy=True)
        mask = ~np.isfinite(data) | (data == 0.0)
        xp = np.arange(data.shape[axis])
        moved = np.moveaxis(data, axis, -1)
        moved_mask = np.moveaxis(mask, axis, -1)
        for line in zip(*np.nonzero(moved_mask.any(axis=-1))):
            fp, bad = moved[line], moved_mask[line]
            valid = ~bad
            if not valid.any():
                continue
            values = np.interp(xp[bad], xp[valid], scale_forward(fp[valid], self.values_scale),
                               left=np.nan, right=np.nan)
            ok = ~np.isnan(values)
            fill = fp.copy()
            fill[np.nonzero(bad)[0][ok]] = scale_inverse(values[ok], self.values_scale)
            moved[line] = fill
        return type(self)(self._axes, data, factor=self._factor, meta=self.meta,
                          fov_alignment=self._fov_alignment)

    def evaluate(self, **coords: Any) -> u.Quantity:
        """Interpolate at coordinates given as Quantities or plain floats in canonical units."""
        return u.Quantity(self.interpolator(*self._coords(coords, convert=True)), self.unit, copy=False)
