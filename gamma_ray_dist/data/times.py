"""FITS time conventions (MJDREFI/MJDREFF, TIMESYS, TIMEUNIT) as GADF and gammapy read them."""
from __future__ import annotations

from typing import Mapping

from astropy import units as u
from astropy.time import Time

from ..errors import ObservationError, WrongColumnUnit

__all__ = ["time_ref_from_header", "time_unit_from_header"]


def time_ref_from_header(
    header: Mapping, obs_id: int | None = None, filename: str | None = None
) -> Time:
    """Reference epoch of mission elapsed times (MET).

    Built exactly as gammapy does (``Time(MJDREFI, MJDREFF, format="mjd", scale=TIMESYS)``), so that
    times computed from it are bit-identical to gammapy's.

    Parameters
    ----------
    header : dict-like
        FITS header or table meta with ``MJDREFI``, ``MJDREFF`` and optionally ``TIMESYS``
        (default TT).

    Raises
    ------
    ObservationError
        A reference keyword is missing or not a number, or TIMESYS is unknown.
    """
    missing = [key for key in ("MJDREFI", "MJDREFF") if key not in header]
    if missing:
        raise ObservationError(f"time reference keyword(s) {missing} missing", obs_id, filename)
    scale = str(header.get("TIMESYS", "tt")).strip().lower()
    try:
        # Some files store MJDREFF as a string.
        return Time(float(header["MJDREFI"]), float(header["MJDREFF"]), format="mjd", scale=scale)
    except (ValueError, TypeError) as exc:
        raise ObservationError(f"invalid time reference: {exc}", obs_id, filename) from exc


def time_unit_from_header(
    header: Mapping, obs_id: int | None = None, filename: str | None = None
) -> u.UnitBase:
    """TIMEUNIT of a header (seconds when absent), checked to be a time unit."""
    name = str(header.get("TIMEUNIT", "s")).strip() or "s"
    try:
        unit = u.Unit(name)
        unit.to(u.s)
    except (ValueError, u.UnitsError) as exc:
        raise WrongColumnUnit(f"TIMEUNIT {name!r} is not a time unit", obs_id, filename) from exc
    return unit
