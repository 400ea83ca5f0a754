"""MapCoord: sky longitude/latitude (deg, in a frame) plus named non-spatial coordinates."""
from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from .errors import MapError

__all__ = ["MapCoord", "skycoord_to_lonlat"]


def skycoord_to_lonlat(skycoord: SkyCoord, frame: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(lon_deg, lat_deg, frame_name) of a SkyCoord, optionally transformed to ``frame`` first."""
    if frame:
        skycoord = skycoord.transform_to(frame)
    return skycoord.data.lon.deg, skycoord.data.lat.deg, skycoord.frame.name


def _deg(value):
    if isinstance(value, u.Quantity):
        return value.to_value("deg")
    return np.asarray(value, dtype=float)


class MapCoord:
    """Coordinates of map points.

    Parameters
    ----------
    data : dict
        "lon" and "lat" (deg, floats or angle Quantities) and one entry per non-spatial axis.
    frame : str or None
        Frame of lon/lat ("icrs", "galactic"); None means "the frame of the geometry".
    match_by_name : bool
        Whether non-spatial coordinates are matched to axes by name (dict input) or by position.
    """

    def __init__(self, data: dict, frame: str | None = None, match_by_name: bool = True):
        if "lon" not in data or "lat" not in data:
            raise MapError("MapCoord needs 'lon' and 'lat'")
        self._data = dict(data)
        self._frame = frame
        self._match_by_name = match_by_name

    @classmethod
    def create(cls, data, frame: str | None = None, axis_names=None) -> "MapCoord":
        """From a MapCoord, a SkyCoord, a dict (lon/lat or skycoord + axes) or a tuple (lon, lat, ...)."""
        if isinstance(data, cls):
            if data.frame is None or frame is None or frame == data.frame:
                return data
            return data.to_frame(frame)
        if isinstance(data, SkyCoord):
            data = (data,)
        if isinstance(data, dict):
            data = dict(data)
            if "skycoord" in data:
                lon, lat, frame = skycoord_to_lonlat(data.pop("skycoord"), frame=frame)
                return cls({"lon": lon, "lat": lat, **data}, frame=frame)
            return cls(data, frame=frame)
        if isinstance(data, (list, tuple)):
            if isinstance(data[0], SkyCoord):
                lon, lat, frame = skycoord_to_lonlat(data[0], frame=frame)
                data = (lon, lat) + tuple(data[1:])
            if len(data) < 2:
                raise MapError("coordinate tuple needs at least (lon, lat)")
            names = axis_names if axis_names is not None else [f"axis{i}" for i in range(len(data) - 2)]
            coords = {"lon": data[0], "lat": data[1]}
            coords.update(zip(names, data[2:]))
            return cls(coords, frame=frame, match_by_name=False)
        raise MapError(f"unsupported coordinate input type {type(data).__name__}")

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._data[key]
        return list(self._data.values())[key]

    def __setitem__(self, key: str, value) -> None:
        self._data[key] = value

    def __iter__(self):
        return iter(self._data.values())

    @property
    def lon(self) -> np.ndarray:
        return self._data["lon"]

    @property
    def lat(self) -> np.ndarray:
        return self._data["lat"]

    @property
    def frame(self) -> str | None:
        return self._frame

    @property
    def match_by_name(self) -> bool:
        return self._match_by_name

    @property
    def axis_names(self) -> list[str]:
        return list(self._data.keys())

    @property
    def ndim(self) -> int:
        return len(self._data)

    @property
    def shape(self) -> tuple:
        return np.broadcast_shapes(*[np.shape(v) for v in self._data.values()])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def skycoord(self) -> SkyCoord:
        return SkyCoord(_deg(self.lon), _deg(self.lat), unit="deg", frame=self._frame or "icrs")

    def to_frame(self, frame: str) -> "MapCoord":
        """Same coordinates with lon/lat transformed to ``frame``."""
        if frame == self._frame:
            return self.copy()
        lon, lat, frame = skycoord_to_lonlat(self.skycoord, frame=frame)
        data = dict(self._data)
        data["lon"] = u.Quantity(lon, "deg") if isinstance(self.lon, u.Quantity) else lon
        data["lat"] = u.Quantity(lat, "deg") if isinstance(self.lat, u.Quantity) else lat
        return MapCoord(data, frame, self._match_by_name)

    @property
    def broadcasted(self) -> "MapCoord":
        values = np.broadcast_arrays(*self._data.values(), subok=True)
        return MapCoord(dict(zip(self._data.keys(), values)), self._frame, self._match_by_name)

    def apply_mask(self, mask) -> "MapCoord":
        return MapCoord({k: v[mask] for k, v in self._data.items()}, self._frame, self._match_by_name)

    @property
    def flat(self) -> "MapCoord":
        """Broadcast, flattened to the points with finite longitude."""
        coords = self.broadcasted
        return coords.apply_mask(np.isfinite(_deg(coords.lon)))

    def copy(self) -> "MapCoord":
        return MapCoord({k: np.copy(v) if not isinstance(v, u.Quantity) else v.copy()
                         for k, v in self._data.items()}, self._frame, self._match_by_name)

    def __repr__(self) -> str:
        return f"MapCoord(axes={self.axis_names}, frame={self._frame!r}, shape={self.shape})"
