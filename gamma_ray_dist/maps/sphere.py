"""Spherical geometry on plain float64 arrays: angles in degrees in, radians out.

Formulas and operation order are those of astropy's ``angular_separation`` (Vincenty) and
``position_angle`` on degree Angles: longitude differences are taken in degrees *before* converting to
radians, which matters for pixel-sized differences of large longitudes (1e-12 relative).
"""
from __future__ import annotations

import numpy as np

__all__ = ["angular_separation", "position_angle", "pixel_solid_angles"]


def angular_separation(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Great-circle distance (radians) between points given in degrees (Vincenty formula)."""
    dlon = np.radians(lon2 - lon1)
    sdlon = np.sin(dlon)
    cdlon = np.cos(dlon)
    lat1, lat2 = np.radians(lat1), np.radians(lat2)
    slat1, slat2 = np.sin(lat1), np.sin(lat2)
    clat1, clat2 = np.cos(lat1), np.cos(lat2)
    num1 = clat2 * sdlon
    num2 = clat1 * slat2 - slat1 * clat2 * cdlon
    denominator = slat1 * slat2 + clat1 * clat2 * cdlon
    return np.arctan2(np.hypot(num1, num2), denominator)


def position_angle(lon1, lat1, lon2, lat2) -> np.ndarray:
    """Position angle (East of North, radians in [0, 2 pi)) of point 2 seen from point 1 (degrees)."""
    deltalon = np.radians(lon2 - lon1)
    lat1, lat2 = np.radians(lat1), np.radians(lat2)
    colat = np.cos(lat2)
    x = np.sin(lat2) * np.cos(lat1) - colat * np.sin(lat1) * np.cos(deltalon)
    y = np.sin(deltalon) * colat
    return np.mod(np.arctan2(y, x), 2 * np.pi)


def pixel_solid_angles(lon_edges_deg: np.ndarray, lat_edges_deg: np.ndarray) -> np.ndarray:
    """Solid angle (sr) of each pixel from its corner coordinates, as gammapy's ``WcsGeom.solid_angle``.

    Each pixel is split along a diagonal into two planar triangles whose sides are great-circle
    distances between corners; the result is the sum of the two triangle areas.

    Parameters
    ----------
    lon_edges_deg, lat_edges_deg : ndarray, shape (ny + 1, nx + 1)
        Sky coordinates of the pixel corners (degrees).

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    lon, lat = lon_edges_deg, lat_edges_deg
    # Corner naming follows gammapy (first array index is the image row).
    a = (lon[:-1, :-1], lat[:-1, :-1])  # "low left"
    b = (lon[1:, :-1], lat[1:, :-1])  # "low right"
    c = (lon[:-1, 1:], lat[:-1, 1:])  # "up left"
    d = (lon[1:, 1:], lat[1:, 1:])  # "up right"
    low = angular_separation(*a, *b)
    left = angular_separation(*a, *c)
    up = angular_separation(*c, *d)
    right = angular_separation(*b, *d)
    angle_b = position_angle(*b, *d) - position_angle(*b, *a)
    angle_c = position_angle(*c, *d) - position_angle(*a, *c)
    area = 0.5 * low * right * np.sin(angle_b) + 0.5 * up * left * np.sin(angle_c)
    return np.abs(area)
