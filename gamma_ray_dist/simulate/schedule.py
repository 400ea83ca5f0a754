"""Observation planning: wobble pointings, start times around transit, Alt/Az, metadata strings.

All per-observation quantities are computed at once as arrays (10,000 observations cost a few
ms). Alt/Az uses a closed-form GMST (accurate to ~0.01 deg), so no IERS tables or network are
needed; that is ample for bookkeeping columns of a simulation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from astropy.coordinates import SkyCoord
from astropy.time import Time

from .events import angular_separation, offset_by

__all__ = ["ObservationPlan", "plan_observations", "altaz", "HESS_SITE", "MJDREFI", "MJDREFF"]

# Time reference of the H.E.S.S. DL3 DR1 files (TT; MET 0 = 2001-01-01T00:00:00 UTC)
MJDREFI = 51910
MJDREFF = 0.000742870370370241
HESS_SITE = {"GEOLON": 16.5002222222222, "GEOLAT": -23.2717777777778, "ALTITUDE": 1835.0}
_TT_MINUS_UT = 64.6  # s, around 2004-2005; only moves Alt/Az by < 0.001 deg if off by a second
_SIDEREAL_DAY = 86164.0905  # s
_DEG = np.pi / 180.0


@dataclass
class ObservationPlan:
    """Per-observation arrays (all of length n_obs), sorted by obs id order given."""

    obs_id: np.ndarray
    ra_pnt: np.ndarray
    dec_pnt: np.ndarray
    glon_pnt: np.ndarray
    glat_pnt: np.ndarray
    alt_pnt: np.ndarray
    az_pnt: np.ndarray
    tstart: np.ndarray  # s MET (TT)
    tstop: np.ndarray
    ontime: np.ndarray
    livetime: np.ndarray
    deadc: np.ndarray
    date_obs: np.ndarray  # "YYYY-MM-DD" (UTC)
    time_obs: np.ndarray  # "hh:mm:ss.sss"
    date_end: np.ndarray
    time_end: np.ndarray

    def __len__(self) -> int:
        return len(self.obs_id)


def _met_to_mjd_tt(met) -> np.ndarray:
    return MJDREFI + MJDREFF + np.asarray(met, dtype=float) / 86400.0


def _lst_deg(met, lon_deg: float) -> np.ndarray:
    jd_ut = _met_to_mjd_tt(met) + 2400000.5 - _TT_MINUS_UT / 86400.0
    return np.mod(280.46061837 + 360.98564736629 * (jd_ut - 2451545.0) + lon_deg, 360.0)


def altaz(ra, dec, met, site: dict = HESS_SITE) -> tuple[np.ndarray, np.ndarray]:
    """Altitude and azimuth (deg, azimuth from North through East) of ICRS (ra, dec) at MET."""
    h = (_lst_deg(met, site["GEOLON"]) - np.asarray(ra, dtype=float)) * _DEG
    d, phi = np.asarray(dec, dtype=float) * _DEG, site["GEOLAT"] * _DEG
    alt = np.arcsin(np.sin(phi) * np.sin(d) + np.cos(phi) * np.cos(d) * np.cos(h))
    az = np.arctan2(-np.cos(d) * np.sin(h), np.sin(d) * np.cos(phi) - np.cos(d) * np.sin(phi) * np.cos(h))
    return alt / _DEG, np.mod(az / _DEG, 360.0)


def _utc_strings(met: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    isot = Time(_met_to_mjd_tt(met), format="mjd", scale="tt").utc.isot
    isot = np.asarray(isot, dtype="U23")
    return np.char.ljust(isot, 10).astype("U10"), np.array([s[11:23] for s in isot], dtype="U12")


def wobble_pointings(ra: float, dec: float, n_obs: int, offset: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Wobble pointings cycling North, South, East, West of (ra, dec) at ``offset`` deg."""
    pa = np.array([0.0, 180.0, 90.0, 270.0])[np.arange(n_obs) % 4]
    return offset_by(ra, dec, pa, np.full(n_obs, offset))


def plan_observations(
    n_obs: int,
    target_ra: float,
    target_dec: float,
    pointings=None,
    livetime: float = 1800.0,
    deadc: float = 0.95,
    obs_ids=None,
    start_time: str = "2004-12-04T18:00:00",
    wobble_offset: float = 0.5,
    runs_per_night: int = 6,
    gap: float = 120.0,
    site: dict = HESS_SITE,
) -> ObservationPlan:
    """Plan ``n_obs`` observations: pointings, obs ids and times around the target's transit.

    Parameters
    ----------
    n_obs : int
        Number of observations (ignored when ``pointings`` or ``obs_ids`` give a length).
    target_ra, target_dec : float
        Target (ICRS deg); wobble centre and transit reference.
    pointings : array-like (n, 2) of (ra, dec) deg or SkyCoord, optional
        Explicit pointings; default wobble offsets around the target.
    livetime, deadc : float
        Live time (s) and dead-time correction factor (live / on time) of every observation.
    obs_ids : array-like of int, optional
        Default ``1 .. n_obs``. Observation ``k`` (its id) gets wobble direction ``(k - 1) % 4``
        and schedule slot ``k - 1``, independent of the other ids.
    start_time : str
        UTC (ISO) time after which the first night starts.
    wobble_offset : float
        Default wobble offset in deg.
    runs_per_night, gap : int, float
        Observations are packed ``runs_per_night`` per sidereal day, centred on the target's
        transit, separated by ``gap`` seconds.
    """
    if pointings is not None:
        if isinstance(pointings, SkyCoord):
            p = pointings.icrs
            ra, dec = np.atleast_1d(p.ra.deg).astype(float), np.atleast_1d(p.dec.deg).astype(float)
        else:
            arr = np.atleast_2d(np.asarray(pointings, dtype=float))
            ra, dec = arr[:, 0], arr[:, 1]
        n_obs = len(ra)
    if obs_ids is not None:
        obs_ids = np.asarray(obs_ids, dtype=np.int64)
        if pointings is not None and len(obs_ids) != n_obs:
            raise ValueError(f"obs_ids has {len(obs_ids)} entries, pointings {n_obs}")
        n_obs = len(obs_ids)
    else:
        obs_ids = np.arange(1, n_obs + 1, dtype=np.int64)
    if len(np.unique(obs_ids)) != n_obs:
        raise ValueError("obs_ids must be unique")
    if np.any(obs_ids < 1):
        raise ValueError("obs_ids must be >= 1")
    # schedule slot and wobble direction follow the obs id (not the list position), so a
    # subset of obs ids gets exactly the rows it has in the full plan
    idx = obs_ids - 1
    if pointings is None:
        pa = np.array([0.0, 180.0, 90.0, 270.0])[idx % 4]
        ra, dec = offset_by(target_ra, target_dec, pa, np.full(n_obs, wobble_offset))

    ontime = livetime / deadc
    t0 = (Time(start_time, scale="utc").tt.mjd - MJDREFI - MJDREFF) * 86400.0
    # first transit of the target after t0: LST advances 360.9856 deg per solar day
    dt = np.mod(target_ra - _lst_deg(t0, site["GEOLON"]), 360.0) / 360.98564736629 * 86400.0
    night, slot = idx // runs_per_night, idx % runs_per_night
    slot_len = ontime + gap
    tstart = t0 + dt + night * _SIDEREAL_DAY + (slot - runs_per_night / 2.0) * slot_len
    tstart = np.round(tstart)  # whole seconds, like H.E.S.S. runs
    tstop = tstart + ontime
    alt, az = altaz(ra, dec, 0.5 * (tstart + tstop), site)
    gal = SkyCoord(ra, dec, unit="deg", frame="icrs").galactic
    date_obs, time_obs = _utc_strings(tstart)
    date_end, time_end = _utc_strings(tstop)
    full = np.full(n_obs, 1.0)
    return ObservationPlan(
        obs_id=obs_ids,
        ra_pnt=np.asarray(ra, dtype=float),
        dec_pnt=np.asarray(dec, dtype=float),
        glon_pnt=gal.l.deg,
        glat_pnt=gal.b.deg,
        alt_pnt=alt,
        az_pnt=az,
        tstart=tstart,
        tstop=tstop,
        ontime=full * ontime,
        livetime=full * livetime,
        deadc=full * deadc,
        date_obs=date_obs,
        time_obs=time_obs,
        date_end=date_end,
        time_end=time_end,
    )


def offset_from_target(plan: ObservationPlan, ra: float, dec: float) -> np.ndarray:
    """Angular distance (deg) between each pointing and (ra, dec)."""
    return angular_separation(plan.ra_pnt, plan.dec_pnt, ra, dec)
