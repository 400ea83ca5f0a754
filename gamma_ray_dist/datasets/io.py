"""FITS layout of a `MapDataset` (gammapy 2.1 "gadf" format) and GTI / meta-table helpers.

HDU order as gammapy writes it: PRIMARY (NAME, CREATOR, CREATED), COUNTS, EXPOSURE,
BACKGROUND, EDISP, EDISP_EXPOSURE, PSF, PSF_EXPOSURE, MASK_SAFE, MASK_FIT (each map with
its ``_BANDS`` table), GTI, META_TABLE.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ..data.gti import GTI

__all__ = [
    "CREATOR",
    "creation_header",
    "gti_from_met",
    "gti_union_met",
    "gti_to_table_hdu",
    "gti_from_table_hdu",
    "meta_table_from_rows",
    "rows_from_meta_table",
    "hstack_meta_tables",
]

try:  # pragma: no cover - version lookup only
    from importlib.metadata import version as _version

    CREATOR = f"gamma_ray_dist {_version('gamma_ray_dist')}"
except Exception:  # noqa: BLE001 - package metadata missing in a bare checkout
    CREATOR = "gamma_ray_dist"


def creation_header() -> Dict[str, str]:
    """``CREATOR`` / ``CREATED`` cards (gammapy writes them on every HDU)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return {"CREATOR": CREATOR, "CREATED": now}


def gti_from_met(start: np.ndarray, stop: np.ndarray, reference_time: Time) -> GTI:
    """GTI from MET seconds after ``reference_time``."""
    return GTI.create(u.Quantity(np.asarray(start, float), "s"), u.Quantity(np.asarray(stop, float), "s"),
                      reference_time=reference_time)


def gti_union_met(start: np.ndarray, stop: np.ndarray):
    """Union of intervals (sorted by start, overlapping or touching ones merged, as gammapy)."""
    start, stop = np.asarray(start, float), np.asarray(stop, float)
    if start.size == 0:
        return start.copy(), stop.copy()
    order = np.argsort(start, kind="stable")
    merged_start, merged_stop = [start[order[0]]], [stop[order[0]]]
    for i in order[1:]:
        if merged_stop[-1] < start[i]:
            merged_start.append(start[i])
            merged_stop.append(stop[i])
        else:
            merged_stop[-1] = max(merged_stop[-1], stop[i])
    return np.array(merged_start), np.array(merged_stop)


def _time_ref_header(time_ref: Time) -> Dict[str, Any]:
    mjd = time_ref.mjd
    mjdrefi = int(np.floor(mjd))
    mjdreff = float(mjd - mjdrefi)  # split as gammapy's time_ref_to_dict
    return {"MJDREFI": mjdrefi, "MJDREFF": mjdreff, "TIMESYS": time_ref.scale}


def gti_to_table_hdu(gti: GTI) -> fits.BinTableHDU:
    """``GTI`` HDU: START/STOP (s) relative to MJDREFI/MJDREFF in TIMESYS, as gammapy writes."""
    start, stop = gti.met_values()
    table = Table({"START": u.Quantity(start, "s"), "STOP": u.Quantity(stop, "s")})
    hdu = fits.BinTableHDU(table, name="GTI")
    for key, value in {**creation_header(), **_time_ref_header(gti.time_ref)}.items():
        hdu.header[key] = value
    return hdu


def gti_from_table_hdu(hdu: fits.BinTableHDU) -> GTI:
    """Read a ``GTI`` HDU (the reference of a dataset file is TT unless TIMESYS says otherwise)."""
    header = hdu.header
    scale = str(header.get("TIMESYS", "tt")).strip().lower() or "tt"
    ref = Time(float(header.get("MJDREFI", 0)), float(header.get("MJDREFF", 0.0)), format="mjd", scale=scale)
    unit = u.Unit(str(header.get("TIMEUNIT", "s")).strip() or "s")
    data = hdu.data
    start = np.zeros(0) if data is None else u.Quantity(np.asarray(data["START"], float), unit).to_value("s")
    stop = np.zeros(0) if data is None else u.Quantity(np.asarray(data["STOP"], float), unit).to_value("s")
    return gti_from_met(start, stop, ref)


def meta_table_from_rows(rows: Sequence[Dict[str, Any]]):
    """Meta table as gammapy builds it: one row; columns hstacked when several observations."""
    if not rows:
        return None
    names = list(rows[0].keys())
    if len(rows) == 1:
        table = Table([{name: rows[0][name][0] for name in names}])
    else:
        table = Table()
        for name in names:
            values = np.hstack([np.atleast_1d(r[name][0]) for r in rows if name in r])
            table[name] = values[np.newaxis, :]
    for name in names:
        unit = rows[0][name][1]
        if unit:
            table[name].unit = u.Unit(unit)
    return table


def hstack_meta_tables(table: Table, other: Table) -> Table:
    """gammapy's ``hstack_columns``: concatenate the first row of each column."""
    stacked = Table()
    for name in table.colnames:
        data = np.hstack([np.atleast_1d(table[name].data[0]), np.atleast_1d(other[name].data[0])])
        stacked[name] = data[np.newaxis, :]
        if table[name].unit is not None:
            stacked[name].unit = table[name].unit
    return stacked


def rows_from_meta_table(table: Table) -> List[Dict[str, Any]]:
    """Split a (possibly hstacked) gammapy meta table into per-observation rows.

    The inverse of `meta_table_from_rows`.

    Parameters
    ----------
    table : `~astropy.table.Table`
        One row; each column holds one value per observation.

    Returns
    -------
    list of dict
        One ``{column: (value, unit string)}`` per observation.
    """
    rows: List[Dict[str, Any]] = []
    n = int(np.size(table[table.colnames[0]].data)) if table.colnames else 0
    for i in range(n):
        row = {}
        for name in table.colnames:
            value = np.ravel(table[name].data)[i]
            value = value.item() if hasattr(value, "item") else value
            if isinstance(value, bytes):
                value = value.decode()
            unit = table[name].unit
            row[name] = (value, "" if unit is None else unit.to_string())
        rows.append(row)
    return rows
