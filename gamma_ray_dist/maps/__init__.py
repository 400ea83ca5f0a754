"""Maps: axes, WCS geometries, maps and gammapy's FITS map format."""
from .axes import MapAxes, MapAxis
from .coord import MapCoord
from .errors import GeometryMismatch, MapError, MapFormatError
from .regions import parse_regions, region_mask_values
from .sphere import angular_separation, pixel_solid_angles, position_angle
from .wcs import Map, WcsGeom, WcsNDMap

__all__ = [
    "MapAxis",
    "MapAxes",
    "MapCoord",
    "WcsGeom",
    "Map",
    "WcsNDMap",
    "MapError",
    "MapFormatError",
    "GeometryMismatch",
    "parse_regions",
    "region_mask_values",
    "angular_separation",
    "position_angle",
    "pixel_solid_angles",
]
