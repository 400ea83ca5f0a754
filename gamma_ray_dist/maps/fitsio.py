"""gammapy's ("gadf") FITS map format: BANDS tables, map HDU headers, META and BUNIT.

A map is one image HDU (WCS header + ``WCSSHAPE``, ``BANDSHDU``, ``META``, ``BUNIT``, ``AXCOLSi`` and
``INTERPi``) and, when it has non-spatial axes, a ``<HDU>_BANDS`` binary table with a ``CHANNEL`` column
and, per axis, a center and min/max columns (``ENERGY, E_MIN, E_MAX`` for the reconstructed energy,
``NAME, NAME_MIN, NAME_MAX`` otherwise), flattened with the first axis varying fastest.
"""
from __future__ import annotations

import json
import logging

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from .axes import MapAxes, MapAxis
from .errors import MapFormatError

__all__ = [
    "axes_to_bands_hdu",
    "axes_from_bands_hdu",
    "meta_to_json",
    "meta_from_header",
    "unit_from_header",
    "find_data_hdu",
    "find_bands_hdu",
    "MASK_HDU_TAGS",
]

log = logging.getLogger(__name__)

# gammapy reads an image HDU as boolean when its name contains one of these.
MASK_HDU_TAGS = ("mask", "is_ul", "success")


def axes_to_bands_hdu(axes: MapAxes, name: str) -> fits.BinTableHDU:
    """Build the BANDS table HDU of ``axes``.

    Parameters
    ----------
    axes : MapAxes
        Non-spatial axes (at least one).
    name : str
        EXTNAME of the table, e.g. "COUNTS_BANDS".
    """
    table = Table()
    table["CHANNEL"] = np.arange(int(np.prod(axes.shape)))
    # np.meshgrid's default "xy" indexing is what gammapy uses; keep it for identical rows.
    ctr = np.meshgrid(*[ax.center_values for ax in axes])
    lo = np.meshgrid(*[ax.edges_values[:-1] for ax in axes])
    hi = np.meshgrid(*[ax.edges_values[1:] for ax in axes])
    for idx, ax in enumerate(axes):
        if not ax.name:
            raise MapFormatError("an axis written to a BANDS table needs a name")
        for colname, grid in zip(ax._column_names(), (ctr, lo, hi)):
            table[colname] = u.Quantity(np.ravel(grid[idx]), ax.unit)
    header = fits.Header()
    for key, value in axes.to_header().items():
        header[key] = value
    return fits.BinTableHDU(table, name=name, header=header)


def _column_quantity(hdu: fits.BinTableHDU, colname: str) -> u.Quantity:
    if colname not in hdu.columns.names:
        raise MapFormatError(f"HDU {hdu.name!r}: column {colname!r} named in AXCOLS is missing")
    col = hdu.columns[colname]
    data = np.asarray(hdu.data[colname])
    if data.dtype.kind in "SU":
        raise MapFormatError(f"HDU {hdu.name!r}: label axes (column {colname!r}) are not supported")
    try:
        unit = u.Unit(col.unit or "")
    except ValueError as exc:
        raise MapFormatError(f"HDU {hdu.name!r}: column {colname!r} has invalid unit {col.unit!r}") from exc
    return u.Quantity(data.astype(float), unit)


def axes_from_bands_hdu(hdu: fits.BinTableHDU) -> MapAxes:
    """Read the axes of a gadf BANDS table (at most 5 axes, as gammapy)."""
    if not isinstance(hdu, fits.BinTableHDU):
        raise MapFormatError(f"HDU {hdu.name!r} is not a binary table, cannot hold map axes")
    axes = []
    for idx in range(1, 6):
        axcols = hdu.header.get(f"AXCOLS{idx}")
        if axcols is None:
            break
        colnames = axcols.split(",")
        node_type = "edges" if len(colnames) == 2 else "center"
        if colnames[0] == "E_MIN":
            name = "energy"
        else:
            name = colnames[0].replace("_MIN", "").lower()
            if name == "theta":  # old files
                name = "rad"
        if name == "time" or "MJDREFI" in hdu.header:
            raise MapFormatError(f"HDU {hdu.name!r}: time axes are not supported")
        interp = hdu.header.get(f"INTERP{idx}", "lin").strip()
        if node_type == "center":
            nodes = np.unique(_column_quantity(hdu, colnames[0]))
        else:
            lo = np.unique(_column_quantity(hdu, colnames[0]))
            hi = np.unique(_column_quantity(hdu, colnames[1]))
            nodes = np.append(lo.value, hi.to_value(lo.unit)[-1]) * lo.unit
        axes.append(MapAxis(nodes, node_type=node_type, interp=interp, name=name))
    return MapAxes(axes)


class _QuantityEncoder(json.JSONEncoder):
    def default(self, obj):
        if isinstance(obj, u.Quantity):
            return obj.to_string()
        if isinstance(obj, np.generic):
            return obj.item()
        return super().default(obj)


def meta_to_json(meta: dict) -> str:
    """The ``META`` header value: JSON with Quantities as strings."""
    return json.dumps(meta, cls=_QuantityEncoder)


def _decode_quantities(data: dict) -> dict:
    # Same convention as gammapy: every value that parses as a Quantity becomes one.
    for key, value in data.items():
        try:
            data[key] = u.Quantity(value)
        except (TypeError, ValueError):
            continue
    return data


def meta_from_header(header) -> dict:
    if "META" not in header:
        return {}
    try:
        return json.loads(header["META"], object_hook=_decode_quantities)
    except json.JSONDecodeError:
        log.warning("invalid META keyword in FITS header, ignored")
        return {}


def unit_from_header(header) -> u.UnitBase:
    """``BUNIT`` as a unit, with "ph" and "ct" dropped as gammapy does; invalid units give ""."""
    try:
        unit = u.Unit(header.get("BUNIT", ""))
    except ValueError:
        log.warning(f"invalid BUNIT={header.get('BUNIT')!r} in FITS header, using ''")
        unit = u.Unit("")
    keep = [(b, p) for b, p in zip(unit.bases, unit.powers) if str(b) not in {"ph", "ct"}]
    return u.CompositeUnit(unit.scale, [b for b, _ in keep], [p for _, p in keep])


def find_data_hdu(hdulist: fits.HDUList, hdu=None):
    """The map HDU: named/indexed ``hdu``, else the first HDU with data."""
    if hdu is not None:
        try:
            return hdulist[hdu]
        except KeyError as exc:
            names = [h.name for h in hdulist]
            raise MapFormatError(f"no HDU {hdu!r} in file; HDUs are {names}") from exc
    for item in hdulist:
        if item.data is not None:
            return item
    raise MapFormatError("no HDU with data found")


def find_bands_hdu(hdulist: fits.HDUList, hdu, hdu_bands=None):
    """The BANDS table of ``hdu`` (from ``hdu_bands`` or the BANDSHDU keyword), or None."""
    name = hdu_bands if hdu_bands is not None else hdu.header.get("BANDSHDU")
    if name is None:
        if hdu.header.get("NAXIS", 0) > 2:
            raise MapFormatError(f"HDU {hdu.name!r} has {hdu.header['NAXIS']} axes but no BANDSHDU keyword")
        return None
    try:
        return hdulist[name]
    except KeyError as exc:
        raise MapFormatError(f"HDU {hdu.name!r}: bands HDU {name!r} not found") from exc
