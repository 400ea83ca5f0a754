"""Fixed pointing of an IACT observation, from the GADF EVENTS header."""
from __future__ import annotations

from enum import Enum, auto
from typing import Mapping

import numpy as np
from astropy import units as u
from astropy.coordinates import AltAz, EarthLocation, SkyCoord
from astropy.time import Time

from ..errors import ObservationError

__all__ = ["PointingMode", "FixedPointingInfo", "earth_location_from_header"]


class PointingMode(Enum):
    """How the array pointed: fixed in ICRS (POINTING) or fixed in alt-az (DRIFT).

    GADF 0.2 files use free-form OBS_MODE values (H.E.S.S.: "WOBBLE"); as gammapy, anything but
    "DRIFT" is a fixed ICRS pointing.
    """

    POINTING = auto()
    DRIFT = auto()

    @staticmethod
    def from_gadf_string(value: str) -> "PointingMode":
        return PointingMode.DRIFT if str(value).strip().upper() == "DRIFT" else PointingMode.POINTING


class FixedPointingInfo:
    """Pointing fixed in ICRS or in alt-az during the observation.

    Parameters
    ----------
    fixed_icrs : `~astropy.coordinates.SkyCoord`, optional
        ICRS pointing (POINTING mode).
    fixed_altaz : `~astropy.coordinates.SkyCoord` or `~astropy.coordinates.AltAz`, optional
        Alt-az pointing (DRIFT mode).
    """

    def __init__(self, fixed_icrs: SkyCoord | None = None, fixed_altaz=None):
        if (fixed_icrs is None) == (fixed_altaz is None):
            raise ValueError("give exactly one of fixed_icrs and fixed_altaz")
        if fixed_icrs is not None:
            self._mode = PointingMode.POINTING
            self._fixed_icrs = SkyCoord(fixed_icrs).icrs
            self._fixed_altaz = None
        else:
            self._mode = PointingMode.DRIFT
            self._fixed_icrs = None
            self._fixed_altaz = fixed_altaz

    @classmethod
    def from_fits_header(
        cls, header: Mapping, obs_id: int | None = None, filename: str | None = None
    ) -> "FixedPointingInfo":
        """Parse RA_PNT/DEC_PNT (or ALT_PNT/AZ_PNT for OBS_MODE=DRIFT) from an EVENTS header.

        Raises
        ------
        ObservationError
            The keywords of the pointing mode are missing or not finite.
        """
        mode = PointingMode.from_gadf_string(header.get("OBS_MODE", "POINTING"))
        keys = ("ALT_PNT", "AZ_PNT") if mode is PointingMode.DRIFT else ("RA_PNT", "DEC_PNT")
        try:
            a, b = (float(header[key]) for key in keys)
        except KeyError:
            raise ObservationError(
                f"pointing keywords {list(keys)} required for OBS_MODE={mode.name} are missing",
                obs_id,
                filename,
            ) from None
        except (TypeError, ValueError) as exc:
            raise ObservationError(f"invalid pointing keywords {list(keys)}: {exc}", obs_id, filename) from exc
        if not (np.isfinite(a) and np.isfinite(b)):
            raise ObservationError(f"pointing keywords {list(keys)} are not finite", obs_id, filename)
        if mode is PointingMode.DRIFT:
            return cls(fixed_altaz=AltAz(alt=a * u.deg, az=b * u.deg))
        return cls(fixed_icrs=SkyCoord(a * u.deg, b * u.deg, frame="icrs"))

    def __str__(self) -> str:
        coord = self._fixed_icrs if self._mode is PointingMode.POINTING else self._fixed_altaz
        return f"FixedPointingInfo:\n\nmode:        {self._mode}\ncoordinates: {coord}"

    @property
    def mode(self) -> PointingMode:
        return self._mode

    @property
    def fixed_icrs(self) -> SkyCoord | None:
        """ICRS pointing, None in DRIFT mode."""
        return self._fixed_icrs

    @property
    def fixed_altaz(self):
        """Alt-az pointing, None in POINTING mode."""
        return self._fixed_altaz

    def get_icrs(self, obstime: Time | None = None, location: EarthLocation | None = None) -> SkyCoord:
        """Pointing in ICRS at ``obstime`` (obstime and location attached, as gammapy)."""
        if self._mode is PointingMode.POINTING:
            return SkyCoord(self._fixed_icrs.data, location=location, obstime=obstime)
        if obstime is None or location is None:
            raise ValueError("DRIFT pointing needs obstime and location to give ICRS coordinates")
        return self.get_altaz(obstime, location).icrs

    def get_altaz(self, obstime: Time | None = None, location: EarthLocation | None = None) -> SkyCoord:
        """Pointing in alt-az at ``obstime`` seen from ``location``."""
        frame = AltAz(location=location, obstime=obstime)
        if self._mode is PointingMode.POINTING:
            return SkyCoord(self._fixed_icrs.data, frame="icrs", location=location, obstime=obstime).transform_to(frame)
        return SkyCoord(alt=self._fixed_altaz.alt, az=self._fixed_altaz.az, frame=frame)


def earth_location_from_header(header: Mapping) -> EarthLocation | None:
    """Observatory location from GEOLON/GEOLAT/(GEOALT|ALTITUDE); None if not given."""
    if "GEOLON" not in header or "GEOLAT" not in header:
        return None
    height = header.get("GEOALT", header.get("ALTITUDE"))
    if height is None:
        return None
    return EarthLocation.from_geodetic(
        lon=float(header["GEOLON"]) * u.deg,
        lat=float(header["GEOLAT"]) * u.deg,
        height=float(height) * u.m,
    )
