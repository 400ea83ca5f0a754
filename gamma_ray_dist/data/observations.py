"""One observation (events, GTI, IRFs read lazily from its DL3 files) and a list of them."""
from __future__ import annotations

import collections.abc
import logging
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from astropy import units as u
from astropy.coordinates import EarthLocation, SkyCoord
from astropy.time import Time

from ..errors import GammaRayDistError, IRFError, ObservationError
from .event_list import EventList
from .fits_io import FitsFileCache, default_file_cache, read_table_hdu
from .gti import GTI
from .hdu_index_table import HDULocation
from .pointing import FixedPointingInfo, earth_location_from_header

__all__ = ["Observation", "Observations", "ObservationMetaData", "IRF_HDU_TYPES"]

log = logging.getLogger(__name__)

IRF_HDU_TYPES = ("aeff", "edisp", "psf", "bkg", "rad_max")

# Optional EVENTS header keywords kept in `ObservationMetaData.optional` (as gammapy).
_OPTIONAL_KEYWORDS = (
    "OBSERVER", "EV_CLASS", "TELAPSE", "TELLIST", "N_TELS", "TASSIGN", "DST_VER", "ANA_VER",
    "CAL_VER", "CONV_DEP", "CONV_RA", "CONV_DEC", "TRGRATE", "ZTRGRATE", "MUONEFF", "BROKPIX",
    "AIRTEMP", "PRESSURE", "RELHUM", "NSBLEVEL", "CREATOR", "HDUVERS",
)


@dataclass
class ObservationMetaData:
    """Observation metadata (from the EVENTS header when read from a data store).

    Attributes
    ----------
    deadtime_fraction : float
        1 - DEADC.
    location : `~astropy.coordinates.EarthLocation` or None
        Observatory location.
    optional : dict
        Selected optional GADF keywords (CREATOR, HDUVERS, N_TELS, ...).
    header : dict
        The full EVENTS header.
    """

    deadtime_fraction: float = 0.0
    location: EarthLocation | None = None
    optional: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)

    @classmethod
    def from_header(cls, header: Mapping, obs_id: int | None = None, filename: str | None = None) -> "ObservationMetaData":
        """Parse an EVENTS header.

        The dead-time fraction is ``1 - DEADC``; without DEADC it is derived from LIVETIME/ONTIME.
        With neither, an `ObservationError` is raised: a silent zero dead time would bias fluxes.
        """
        if "DEADC" in header:
            deadc = float(header["DEADC"])
        elif "LIVETIME" in header and "ONTIME" in header and float(header["ONTIME"]) > 0:
            deadc = float(header["LIVETIME"]) / float(header["ONTIME"])
        else:
            raise ObservationError("EVENTS header has neither DEADC nor LIVETIME/ONTIME", obs_id, filename)
        if not (0.0 <= 1.0 - deadc <= 1.0):
            raise ObservationError(f"dead-time correction DEADC={deadc} outside [0, 1]", obs_id, filename)
        optional = {key: header[key] for key in _OPTIONAL_KEYWORDS if key in header}
        return cls(
            deadtime_fraction=1.0 - deadc,
            location=earth_location_from_header(header),
            optional=optional,
            header=dict(header),
        )


class _Lazy:
    """Attribute read from the data store on first access, then kept on the instance."""

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        loaded = instance._loaded
        if self.name not in loaded:
            loaded[self.name] = instance._load(self.name)
        return loaded[self.name]

    def __set__(self, instance, value):
        instance._loaded[self.name] = value


class Observation:
    """An observation: events, GTI, pointing and IRFs.

    Built by `DataStore.obs` (lazy: every part is read on first access, once) or in memory with the
    parts given as arguments.

    Parameters
    ----------
    obs_id : int, optional
        Observation id.
    meta : `ObservationMetaData`, optional
        Metadata (dead-time fraction, location, ...).
    gti : `GTI`, optional
    aeff, edisp, psf, bkg, rad_max : IRF objects, optional
    events : `EventList`, optional
    pointing : `FixedPointingInfo`, optional
    location : `~astropy.coordinates.EarthLocation`, optional
    """

    events = _Lazy()
    gti = _Lazy()
    aeff = _Lazy()
    edisp = _Lazy()
    psf = _Lazy()
    bkg = _Lazy()
    rad_max = _Lazy()
    pointing = _Lazy()
    meta = _Lazy()

    def __init__(
        self,
        obs_id: int | None = None,
        meta: ObservationMetaData | None = None,
        gti: GTI | None = None,
        aeff=None,
        edisp=None,
        psf=None,
        bkg=None,
        rad_max=None,
        events: EventList | None = None,
        pointing: FixedPointingInfo | None = None,
        location: EarthLocation | None = None,
    ):
        self.obs_id = None if obs_id is None else int(obs_id)
        self._locations: dict[str, HDULocation] = {}
        self._cache: FitsFileCache | None = None
        self._location = location
        self._loaded: dict[str, Any] = {
            "meta": meta or ObservationMetaData(),
            "gti": gti, "aeff": aeff, "edisp": edisp, "psf": psf, "bkg": bkg,
            "rad_max": rad_max, "events": events, "pointing": pointing,
        }

    @classmethod
    def _from_locations(
        cls, obs_id: int, locations: Mapping[str, HDULocation], cache: FitsFileCache | None = None
    ) -> "Observation":
        """Lazy observation over the HDUs of a data store (nothing is read here)."""
        obs = cls(obs_id=obs_id)
        obs._locations = dict(locations)
        obs._cache = cache
        obs._loaded = {}
        return obs

    # ---------------------------------------------------------------- loading
    def _file(self, hdu_type: str) -> str:
        return str(self._locations[hdu_type].path())

    def _events_header(self):
        return self.events.header

    def _load(self, name: str):
        if name in ("meta", "pointing"):
            if "events" not in self._locations:
                if name == "meta":
                    return ObservationMetaData()
                return None
            filename = self._file("events")
            header = self._events_header()
            if name == "meta":
                return ObservationMetaData.from_header(header, self.obs_id, filename)
            return FixedPointingInfo.from_fits_header(header, self.obs_id, filename)
        loc = self._locations.get(name)
        if loc is None:
            return None
        filename = str(loc.path())
        cache = self._cache or default_file_cache()
        if name == "events":
            return EventList._lazy(filename, loc.hdu_name, self.obs_id, cache)
        hdu = read_table_hdu(filename, loc.hdu_name, self.obs_id, name, cache)
        if name == "gti":
            gti = GTI.from_table_hdu(hdu, self.obs_id, filename)
            start, stop = gti.met_values()
            if not np.sum(stop - start) > 0:  # events with no good time: counts without exposure
                raise ObservationError(f"GTI HDU {loc.hdu_name!r} has no good time ({len(start)} interval(s), "
                                       f"0 s in total)", self.obs_id, filename)
            return gti
        irf = _read_irf(hdu, filename, self.obs_id, name)
        if name == "bkg":
            irf = self._fix_legacy_hess_bkg(irf)
        return irf

    def _fix_legacy_hess_bkg(self, bkg):
        # H.E.S.S. DL3 DR1 (SASH writer, GADF 0.2) stores background FoV longitudes mirrored; gammapy
        # flags these as REVERSE_LON_RADEC (gammapy/data/observations.py, Observation.bkg).
        if bkg is None or "events" not in self._locations:
            return bkg
        optional = self.meta.optional
        if optional.get("CREATOR") == "SASH FITS::EventListWriter" and str(optional.get("HDUVERS")).strip() == "0.2":
            return bkg.with_fov_alignment("REVERSE_LON_RADEC")
        return bkg

    def preload(self, names=("events", "gti", "aeff", "edisp", "psf", "bkg")) -> "Observation":
        """Read the named parts now (e.g. inside a worker task) and return self."""
        for name in names:
            value = getattr(self, name)
            if name == "events" and value is not None:
                value.table  # noqa: B018 - force the read
        return self

    # ---------------------------------------------------------------- description
    @property
    def available_hdus(self) -> list[str]:
        """HDU types present (in the data store or in memory)."""
        names = ["events", "gti", "aeff", "edisp", "psf", "bkg", "rad_max"]
        return [n for n in names if n in self._locations or self._loaded.get(n) is not None]

    @property
    def available_irfs(self) -> list[str]:
        return [n for n in self.available_hdus if n not in ("events", "gti")]

    @property
    def filenames(self) -> dict[str, str]:
        """File of each HDU type (data-store observations)."""
        return {name: str(loc.path()) for name, loc in self._locations.items()}

    def __str__(self) -> str:
        pointing = self.get_pointing_icrs(self.tmid)
        pointing = f"{pointing.ra.deg:.1f} deg, {pointing.dec.deg:.1f} deg\n"
        return (
            f"{self.__class__.__name__}\n\n"
            f"\tobs id            : {self.obs_id} \n "
            f"\ttstart            : {self.tstart.mjd:.2f}\n"
            f"\ttstop             : {self.tstop.mjd:.2f}\n"
            f"\tduration          : {self.observation_time_duration:.2f}\n"
            f"\tpointing (icrs)   : {pointing}\n"
            f"\tdeadtime fraction : {self.observation_dead_time_fraction:.1%}\n"
        )

    def __repr__(self) -> str:
        return f"<Observation obs_id={self.obs_id}>"

    # ---------------------------------------------------------------- times
    def _require_gti(self) -> GTI:
        gti = self.gti
        if gti is None:
            raise ObservationError("observation has no GTI", self.obs_id, None)
        return gti

    @property
    def tstart(self) -> Time:
        """Start of the first good time interval."""
        return self._require_gti().time_start[0]

    @property
    def tstop(self) -> Time:
        """End of the last good time interval (gammapy uses the first; same for one GTI)."""
        return self._require_gti().time_stop[-1]

    @property
    def tmid(self) -> Time:
        """Midpoint of `tstart` and `tstop`."""
        return self.tstart + 0.5 * (self.tstop - self.tstart)

    @property
    def observation_time_duration(self) -> u.Quantity:
        """Sum of the good time intervals (wall time including dead time)."""
        return self._require_gti().time_sum

    @property
    def observation_dead_time_fraction(self) -> float:
        """Dead-time fraction, 1 - DEADC."""
        return self.meta.deadtime_fraction

    @property
    def observation_live_time_duration(self) -> u.Quantity:
        """Live time: ``observation_time_duration * (1 - dead-time fraction)``."""
        return self.observation_time_duration * (1 - self.observation_dead_time_fraction)

    # ---------------------------------------------------------------- pointing
    @property
    def fixed_pointing_info(self) -> FixedPointingInfo | None:
        return self.pointing

    @property
    def observatory_earth_location(self) -> EarthLocation | None:
        return self._location if self._location is not None else self.meta.location

    @property
    def pointing_radec(self) -> SkyCoord:
        """Fixed ICRS pointing (RA_PNT/DEC_PNT)."""
        pointing = self.pointing
        if pointing is None:
            raise ObservationError("observation has no pointing information", self.obs_id, None)
        if pointing.fixed_icrs is not None:
            return pointing.fixed_icrs
        return self.get_pointing_icrs(self.tmid)

    def get_pointing_icrs(self, time: Time) -> SkyCoord:
        """Pointing in ICRS at ``time``."""
        return self.pointing.get_icrs(time, self.observatory_earth_location)

    def get_pointing_altaz(self, time: Time) -> SkyCoord:
        """Pointing in alt-az at ``time``."""
        return self.pointing.get_altaz(time, self.observatory_earth_location)

    # ---------------------------------------------------------------- plotting
    def peek(self, figsize: tuple = (15, 10)) -> Any:
        """Six-panel quick look: events image, event energies, effective area, background rate,
        energy dispersion and PSF containment (a missing part leaves an empty panel saying so).

        Parameters
        ----------
        figsize : tuple
            Figure size in inches.

        Returns
        -------
        fig : `~matplotlib.figure.Figure`
        """
        # imported here: the plotting code (and matplotlib) only when a plot is drawn
        from ..visualization.observation import peek_observation

        return peek_observation(self, figsize=figsize)

    # ---------------------------------------------------------------- pickling (Ray)
    def __getstate__(self):
        state = self.__dict__.copy()
        if self._locations:
            # Data-store observations travel as locations; each worker reads what it needs.
            state["_loaded"] = {}
            state["_cache"] = None
        return state


def _read_irf(hdu, filename: str, obs_id: int, hdu_type: str):
    from ..irf import irf_from_hdu  # the irf package imports nothing from data

    try:
        return irf_from_hdu(hdu, filename=filename, obs_id=obs_id)
    except GammaRayDistError:
        raise
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise IRFError(f"cannot read {hdu_type} HDU {hdu.name!r}: {type(exc).__name__}: {exc}", obs_id, filename) from exc


class Observations(collections.abc.MutableSequence):
    """A list of observations, indexable by position or by obs id string (as gammapy)."""

    def __init__(self, observations=None):
        self._observations: list[Observation] = []
        for obs in observations or []:
            self.append(obs)

    def __getitem__(self, item):
        if isinstance(item, (list, np.ndarray)) and len(item) and all(isinstance(x, str) for x in item):
            return self.__class__([self._observations[self.index(x)] for x in item])
        if isinstance(item, slice):
            return self.__class__(self._observations[item])
        if isinstance(item, (list, np.ndarray)):
            item = np.asarray(item)
            idx = np.nonzero(item)[0] if item.dtype == bool else item
            return self.__class__([self._observations[int(i)] for i in idx])
        return self._observations[self.index(item)]

    def __delitem__(self, key):
        del self._observations[self.index(key)]

    def __setitem__(self, key, obs):
        if not isinstance(obs, Observation):
            raise TypeError(f"Invalid type: {type(obs)!r}")
        self._observations[self.index(key)] = obs

    def insert(self, idx, obs):
        if not isinstance(obs, Observation):
            raise TypeError(f"Invalid type: {type(obs)!r}")
        if obs in self._observations:
            log.warning(f"Observation with obs_id {obs.obs_id} already belongs to Observations.")
        self._observations.insert(idx, obs)

    def __len__(self) -> int:
        return len(self._observations)

    def __str__(self) -> str:
        return f"Observations\nNumber of observations: {len(self)}\n" + "".join(str(o) for o in self)

    def index(self, key):
        if isinstance(key, (int, np.integer, slice)):
            return key
        if isinstance(key, str):
            try:
                return self.ids.index(key)
            except ValueError:
                raise KeyError(f"obs_id {key!r} not in Observations") from None
        if isinstance(key, Observation):
            return self._observations.index(key)
        raise TypeError(f"Invalid type: {type(key)!r}")

    @property
    def ids(self) -> list[str]:
        """Observation ids as strings (as gammapy)."""
        return [str(obs.obs_id) for obs in self]

