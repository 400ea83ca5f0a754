"""Typed errors of the maps package.

They subclass both the package base error and ``ValueError``: callers written against gammapy (which
raises ``ValueError``) keep working, and ours can catch :class:`~gamma_ray_dist.errors.GammaRayDistError`.
"""
from __future__ import annotations

from ..errors import GammaRayDistError

__all__ = ["MapError", "MapFormatError", "GeometryMismatch"]


class MapError(GammaRayDistError, ValueError):
    """Invalid input to a map, axis or geometry (wrong shape, unknown axis name, bad option)."""


class MapFormatError(MapError):
    """A FITS file or HDU does not hold a map in gammapy's format; the message names the HDU."""


class GeometryMismatch(MapError):
    """Two maps that must share a geometry do not."""
