"""Region masks on WCS images with the `regions` package (same pixels as gammapy's ``region_mask``).

A pixel belongs to a region when its centre (integer pixel index) is inside the region projected to
pixel coordinates with the geometry's WCS.
"""
from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord

from .errors import MapError

__all__ = ["parse_regions", "region_mask_values"]


def parse_regions(regions) -> list:
    """Normalise ``regions`` (DS9 string, region, list, SkyCoord) to a list of regions."""
    # imported here: `regions` imports matplotlib when it is installed, and importing the maps
    # must not (plotting is optional)
    from regions import PixelRegion, PointSkyRegion, Regions, SkyRegion

    if regions is None:
        return []
    if isinstance(regions, str):
        try:
            return list(Regions.parse(data=regions, format="ds9"))
        except Exception as exc:  # regions raises several parser error types
            raise MapError(f"cannot parse DS9 region string {regions!r}: {exc}") from exc
    if isinstance(regions, (SkyRegion, PixelRegion)):
        return [regions]
    if isinstance(regions, SkyCoord):
        return [PointSkyRegion(center=c) for c in np.atleast_1d(regions)]
    out = []
    for reg in regions:
        if isinstance(reg, str):
            out.extend(parse_regions(reg))
        elif isinstance(reg, (SkyRegion, PixelRegion)):
            out.append(reg)
        elif isinstance(reg, SkyCoord):
            out.extend(parse_regions(reg))
        else:
            raise MapError(f"unsupported region type {type(reg).__name__}")
    return out


def region_mask_values(geom, regions) -> np.ndarray:
    """Boolean (ny, nx) image: True for pixels inside the union of ``regions``.

    Point regions mark the single pixel that contains the point (gammapy evaluates a point-source model
    there, which selects the same pixel).
    """
    from regions import PixCoord, PointSkyRegion, SkyRegion  # see parse_regions

    ny, nx = geom.data_shape[-2:]
    mask = np.zeros((ny, nx), dtype=bool)
    y, x = np.indices((ny, nx))
    pix = PixCoord(x, y)
    for reg in parse_regions(regions):
        if isinstance(reg, PointSkyRegion):
            px, py = geom.wcs.world_to_pixel(reg.center)
            ix, iy = int(np.floor(px + 0.5)), int(np.floor(py + 0.5))
            if 0 <= ix < nx and 0 <= iy < ny:
                mask[iy, ix] = True
            continue
        reg_pix = reg.to_pixel(geom.wcs) if isinstance(reg, SkyRegion) else reg
        mask |= np.asarray(reg_pix.contains(pix), dtype=bool)
    return mask
