"""gammapy's ("gadf") FITS map format: map HDU headers, META and BUNIT, finding the HDUs.

A map is one image HDU (WCS header + ``WCSSHAPE``, ``BANDSHDU``, ``META``, ``BUNIT``, ``AXCOLSi`` and
``INTERPi``) and, when it has non-spatial axes, a ``<HDU>_BANDS`` binary table, which `MapAxes` writes
and reads (``MapAxes.to_table_hdu`` / ``from_table_hdu``).
"""
from __future__ import annotations

import json
import logging

import numpy as np
from astropy import units as u
from astropy.io import fits

from .errors import MapFormatError

__all__ = [
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
