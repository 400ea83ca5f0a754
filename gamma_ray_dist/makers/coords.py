"""Field-of-view coordinates of map pixels, on plain float64 arrays.

gammapy projects IRFs with its ``FoVICRSFrame`` (gammapy/utils/coordinates/fov.py): the rotation
``reflect_lon @ R_y(-lat0) @ R_z(lon0)`` of the ICRS unit vectors, i.e. a sky-offset frame centred
on the pointing whose longitude axis is *reversed*. Offsets are great-circle separations from the
pointing. Here the same rotations are written out on arrays (no SkyCoord per pixel); only a geometry
in another frame than ICRS needs one astropy transform of its pixel centres.
"""
from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from ..maps.sphere import angular_separation

__all__ = [
    "skycoord_lonlat",
    "pixel_centers_icrs",
    "fov_icrs_lonlat",
    "offset_from_pointing",
    "nearest_pixel",
    "observation_pointing",
]


def skycoord_lonlat(coord: SkyCoord, frame: str = "icrs") -> tuple[float, float]:
    """(lon, lat) in deg of a scalar SkyCoord expressed in ``frame`` ("icrs" or "galactic")."""
    c = coord.icrs if frame == "icrs" else coord.transform_to(frame)
    sph = c.spherical
    return float(sph.lon.to_value(u.deg)), float(sph.lat.to_value(u.deg))


def pixel_centers_icrs(geom) -> tuple[np.ndarray, np.ndarray]:
    """ICRS (ra, dec) in deg of the pixel centres of a WcsGeom, arrays (ny, nx).

    Free for ICRS geometries (the geometry's cached centres); one astropy transform otherwise.
    """
    lon, lat = geom.pixel_centers()
    if geom.frame == "icrs":
        return lon, lat
    c = SkyCoord(lon, lat, unit="deg", frame=geom.frame).icrs
    return c.ra.deg, c.dec.deg


def fov_icrs_lonlat(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float,
                    reverse_lon: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """FoV longitude/latitude (deg) in gammapy's FoVICRSFrame centred on (ra0, dec0).

    Parameters
    ----------
    ra, dec : np.ndarray
        ICRS coordinates in deg.
    ra0, dec0 : float
        Pointing (frame origin) in deg.
    reverse_lon : bool
        Flip the longitude sign as gammapy does for ``REVERSE_LON_RADEC`` backgrounds.

    Returns
    -------
    fov_lon, fov_lat : np.ndarray
        Degrees; longitude wrapped to [-180, 180).
    """
    ra = np.radians(np.asarray(ra, dtype=np.float64))
    dec = np.radians(np.asarray(dec, dtype=np.float64))
    lon0, lat0 = np.radians(ra0), np.radians(dec0)
    cd = np.cos(dec)
    # R_z(lon0): x1 = cos d cos(a - a0), y1 = cos d sin(a - a0); written with the matrix's products
    # of cos/sin of a and a0 (as astropy does) to stay bit-close to the peer
    ca, sa = cd * np.cos(ra), cd * np.sin(ra)
    c0, s0 = np.cos(lon0), np.sin(lon0)
    x1 = c0 * ca + s0 * sa
    y1 = -s0 * ca + c0 * sa
    z1 = np.sin(dec)
    cl, sl = np.cos(lat0), np.sin(lat0)
    x2 = cl * x1 + sl * z1
    z2 = -sl * x1 + cl * z1
    # the frame reflects the longitude; REVERSE_LON_RADEC reflects it back
    y2 = y1 if reverse_lon else -y1
    lon = np.degrees(np.arctan2(y2, x2))
    lat = np.degrees(np.arctan2(z2, np.hypot(x2, y2)))
    lon = np.where(lon >= 180.0, lon - 360.0, lon)
    return lon, lat


def offset_from_pointing(geom, pointing: SkyCoord) -> np.ndarray:
    """Great-circle offset (deg) of every pixel centre of ``geom`` from ``pointing``, (ny, nx).

    As gammapy's ``skycoord.separation(fov_origin)``: computed in the geometry's frame.
    """
    lon0, lat0 = skycoord_lonlat(pointing, geom.frame)
    lon, lat = geom.pixel_centers()
    return np.degrees(angular_separation(lon, lat, lon0, lat0))


def nearest_pixel(geom, position: SkyCoord) -> tuple[int, int] | None:
    """(iy, ix) of the pixel of ``geom`` nearest to ``position``.

    Outside the map, the nearest edge pixel (gammapy's ``get_spectrum`` of a point interpolates
    "nearest" with extrapolation); None if the position has no finite pixel coordinates.
    """
    lon, lat = skycoord_lonlat(position, geom.frame)
    x, y = geom.wcs.wcs_world2pix(np.array([lon]), np.array([lat]), 0)
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        return None
    ny, nx = geom.data_shape[-2:]
    ix = int(np.clip(np.floor(x[0] + 0.5), 0, nx - 1))
    iy = int(np.clip(np.floor(y[0] + 0.5), 0, ny - 1))
    return iy, ix


def observation_pointing(observation) -> SkyCoord:
    """Pointing of ``observation`` as the makers use it: the fixed ICRS pointing when there is one,
    else the pointing at ``tmid`` (gammapy's ``get_pointing_icrs(tmid)``; for a fixed pointing both
    are the same direction, and the former needs no Time arithmetic)."""
    info = getattr(observation, "pointing", None)
    fixed = getattr(info, "fixed_icrs", None)
    return fixed if fixed is not None else observation.get_pointing_icrs(observation.tmid)
