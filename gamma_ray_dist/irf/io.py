"""GADF DL3 IRF table reading: column checks, unit conversion, axes, validity checks.

All FITS access of the irf package lives here. Errors name the observation, file and HDU.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import IRFError, MissingColumns, WrongColumnUnit
from .axes import AXIS_UNITS, IRFAxis

__all__ = [
    "AXIS_COLUMNS",
    "HDUContext",
    "read_axes",
    "read_column",
    "column_unit",
    "open_hdu",
]

#: GADF column prefix -> (axis name, interpolation scale); background energies are reconstructed.
AXIS_COLUMNS = {
    "THETA": ("offset", "lin"),
    "ENERG": ("energy_true", "log"),
    "ETRUE": ("energy_true", "log"),
    "RAD": ("rad", "lin"),
    "DETX": ("fov_lon", "lin"),
    "DETY": ("fov_lat", "lin"),
    "MIGRA": ("migra", "lin"),
}


class HDUContext:
    """Where an HDU comes from, to build errors that name obs id, file and HDU."""

    def __init__(self, hdu: fits.BinTableHDU, filename: str | Path | None = None,
                 obs_id: int | None = None):
        self.hdu = hdu
        self.filename = None if filename is None else str(filename)
        self.obs_id = obs_id
        if self.obs_id is None:
            value = hdu.header.get("OBS_ID")
            if value is not None:
                try:
                    self.obs_id = int(value)
                except (TypeError, ValueError):
                    self.obs_id = None
        self.name = hdu.name

    def error(self, cls: type, reason: str):
        """Build an error of class ``cls`` naming this HDU."""
        return cls(f"HDU '{self.name}': {reason}", self.obs_id, self.filename)

    @property
    def header(self) -> fits.Header:
        return self.hdu.header

    @property
    def colnames(self) -> list[str]:
        return [c.name for c in self.hdu.columns]


def column_unit(ctx: HDUContext, name: str) -> u.UnitBase | None:
    """Unit of a column, None when the column has no (or an unparsable) unit."""
    col = ctx.hdu.columns[name]
    if not col.unit:
        return None
    return _parse_column_unit(str(col.unit))


@functools.lru_cache(maxsize=128)
def _parse_column_unit(text: str) -> u.UnitBase | None:
    # every IRF file repeats the same few unit strings: parsed once per process
    try:
        return u.Unit(text, parse_strict="raise")
    except ValueError:
        try:
            return u.Unit(text, format="fits", parse_strict="raise")
        except ValueError:
            return None


def _unit_factor(ctx: HDUContext, name: str, unit: u.UnitBase | None, target: str,
                 default: str | None) -> float:
    if unit is None:
        if default is None:
            if u.Unit(target) == u.dimensionless_unscaled:
                return 1.0
            raise ctx.error(WrongColumnUnit, f"column '{name}' has no valid unit, expected {target!r}")
        unit = u.Unit(default)
    try:
        return float(unit.to(target))
    except u.UnitConversionError:
        raise ctx.error(
            WrongColumnUnit, f"column '{name}' has unit '{unit}', not convertible to '{target}'"
        ) from None


def require_columns(ctx: HDUContext, names: list[str]) -> None:
    missing = [n for n in names if n not in ctx.colnames]
    if missing:
        raise ctx.error(MissingColumns, f"missing columns {missing}; has {ctx.colnames}")


def read_column(ctx: HDUContext, name: str, target_unit: str | None,
                default_unit: str | None = None) -> tuple[np.ndarray, float]:
    """First row of a column in file dtype, and the factor to canonical units.

    Raises IRFError on NaN or infinite values: gammapy would carry them and replace non-finite
    interpolation results by the fill value; we prefer to refuse corrupt IRFs loudly.
    """
    require_columns(ctx, [name])
    raw = np.asarray(ctx.hdu.data[name][0])
    if not np.issubdtype(raw.dtype, np.number):
        raise ctx.error(IRFError, f"column '{name}' is not numeric ({raw.dtype})")
    raw = raw.astype(raw.dtype.newbyteorder("="))
    if not np.all(np.isfinite(raw)):
        n_bad = int(np.size(raw) - np.count_nonzero(np.isfinite(raw)))
        raise ctx.error(IRFError, f"column '{name}' has {n_bad} NaN or infinite values")
    if target_unit is None:  # any unit accepted, values kept as stored
        return raw, 1.0
    factor = _unit_factor(ctx, name, column_unit(ctx, name), target_unit, default_unit)
    return raw, factor


def read_axes(ctx: HDUContext, names: list[str], reco_energy: bool = False) -> list[IRFAxis]:
    """Read the axes ``names`` (in that order) from the *_LO/*_HI columns of the table."""
    found: dict[str, IRFAxis] = {}
    for prefix, (name, interp) in AXIS_COLUMNS.items():
        if prefix == "ENERG" and reco_energy:
            name = "energy"
        if name not in names or name in found:
            continue
        lo_name, hi_name = f"{prefix}_LO", f"{prefix}_HI"
        if lo_name not in ctx.colnames or hi_name not in ctx.colnames:
            continue
        unit = AXIS_UNITS[name]
        lo, f_lo = read_column(ctx, lo_name, unit)
        hi, f_hi = read_column(ctx, hi_name, unit)
        lo = np.atleast_1d(lo).astype(np.float64) * f_lo
        hi = np.atleast_1d(hi).astype(np.float64) * f_hi
        if lo.shape != hi.shape:
            raise ctx.error(IRFError, f"{lo_name} and {hi_name} differ in length")
        if np.allclose(hi, lo):
            axis = IRFAxis(name, hi, interp=interp, node_type="center")
        else:
            axis = IRFAxis(name, np.append(lo, hi[-1]), interp=interp, node_type="edges")
        if np.any(np.diff(axis.nodes) <= 0):
            raise ctx.error(IRFError, f"axis '{name}' nodes are not strictly increasing")
        found[name] = axis
    missing = [n for n in names if n not in found]
    if missing:
        expected = [f"{p}_LO/{p}_HI" for p, (n, _) in AXIS_COLUMNS.items()
                    if n in missing or (reco_energy and p == "ENERG" and "energy" in missing)]
        raise ctx.error(MissingColumns, f"missing axis columns for {missing} (expected {expected})")
    return [found[n] for n in names]


def reshape_data(ctx: HDUContext, raw: np.ndarray, axes: list[IRFAxis], column: str,
                 allow_transposed: bool = False) -> np.ndarray:
    """FITS row data (numpy order reversed w.r.t. GADF axes) -> array in ``axes`` order."""
    shape = tuple(ax.nbin for ax in axes)
    data = np.asarray(raw).T
    if data.shape != shape and allow_transposed and data.T.shape == shape:
        # old HESS/CTA background files store (lon, lat, E) instead of (E, lat, lon)
        data = data.T
    if data.shape != shape:
        # both in axis order (the FITS TDIM order), so the sizes compare one by one
        raise ctx.error(IRFError, f"column '{column}' has shape {data.shape} along "
                                  f"{[a.name for a in axes]}, the axes need {shape}")
    return np.ascontiguousarray(data)


def open_hdu(filename: str | Path, hdu: str | int | None, default: str) -> tuple[fits.HDUList, Any]:
    """Open ``filename`` and return (hdulist, hdu); the caller closes the list."""
    hdulist = fits.open(str(Path(filename).expanduser()), memmap=False)
    key = default if hdu is None else hdu
    try:
        return hdulist, hdulist[key]
    except (KeyError, IndexError):
        names = [h.name for h in hdulist]
        hdulist.close()
        raise IRFError(f"HDU {key!r} not found (file has {names})", None, str(filename)) from None
