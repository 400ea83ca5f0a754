"""Spatial models (point, Gaussian, disk) with pure sr-1 evaluation on plain degree arrays.

``model.evaluate_values(lon_deg, lat_deg)`` takes coordinates in the model's frame (``model.frame``,
"icrs" or "galactic") and returns the surface brightness in sr-1. The pixel integration rules that
gammapy applies in ``integrate_geom`` are in `pixel_integration` (pure functions on pixel grids).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from .core import ModelBase, register_model

__all__ = [
    "SpatialModel",
    "PointSpatialModel",
    "GaussianSpatialModel",
    "DiskSpatialModel",
    "angular_separation",
    "position_angle",
]

_FRAMES = ("icrs", "galactic")


def angular_separation(lon1, lat1, lon2, lat2):
    """Great-circle distance (Vincenty formula, as astropy), all in radians."""
    sdlon, cdlon = np.sin(lon2 - lon1), np.cos(lon2 - lon1)
    slat1, slat2, clat1, clat2 = np.sin(lat1), np.sin(lat2), np.cos(lat1), np.cos(lat2)
    num1 = clat2 * sdlon
    num2 = clat1 * slat2 - slat1 * clat2 * cdlon
    denominator = slat1 * slat2 + clat1 * clat2 * cdlon
    return np.arctan2(np.hypot(num1, num2), denominator)


def position_angle(lon1, lat1, lon2, lat2):
    """Position angle (east of north) of point 2 seen from point 1, radians."""
    deltalon = lon2 - lon1
    colat = np.cos(lat2)
    x = np.sin(lat2) * np.cos(lat1) - colat * np.sin(lat1) * np.cos(deltalon)
    y = np.sin(deltalon) * colat
    return np.arctan2(y, x)


def _sigma_eff(lon0, lat0, lon, lat, phi, major, e):
    """Effective radius of an ellipse along the direction of each point (radians)."""
    d_phi = phi - position_angle(lon0, lat0, lon, lat)
    minor = major * np.sqrt(1 - e**2)
    denominator = np.sqrt((major * np.sin(d_phi)) ** 2 + (minor * np.cos(d_phi)) ** 2)
    return minor, major * minor / denominator


class SpatialModel(ModelBase):
    """Base of spatial models with a centre (lon_0, lat_0) in ``frame``.

    ``evaluation_radius`` (deg Quantity or None) and ``evaluation_bin_size_min`` (deg Quantity or None)
    drive the cutout size and oversampling factor used by the map evaluator.
    """

    type: ClassVar[str] = "spatial"
    _canonical: ClassVar[dict[str, str]] = {"lon_0": "deg", "lat_0": "deg"}

    def __init__(self, frame: str = "icrs", **kwargs):
        if frame not in _FRAMES:
            raise ValueError(f"frame must be one of {_FRAMES}, got {frame!r}")
        super().__init__(**kwargs)
        self.frame = frame

    @classmethod
    def from_position(cls, position: SkyCoord, **kwargs) -> "SpatialModel":
        frame = kwargs.pop("frame", position.frame.name)
        pos = position.transform_to(frame)
        sph = pos.spherical
        return cls(lon_0=sph.lon.to(u.deg), lat_0=sph.lat.to(u.deg), frame=frame, **kwargs)

    @property
    def position(self) -> SkyCoord:
        """Centre as a SkyCoord in the model frame."""
        return SkyCoord(self.lon_0.quantity, self.lat_0.quantity, frame=self.frame)

    @position.setter
    def position(self, skycoord: SkyCoord) -> None:
        c = skycoord.transform_to(self.frame).spherical
        self.lon_0.quantity = c.lon.to(u.deg)
        self.lat_0.quantity = c.lat.to(u.deg)

    @property
    def evaluation_radius(self) -> u.Quantity | None:
        return None

    @property
    def evaluation_bin_size_min(self) -> u.Quantity | None:
        return None

    def canonical_values(self) -> dict[str, float]:
        """Parameter values in deg (angles) or dimensionless."""
        out = {}
        for name in self._parameter_names:
            par = getattr(self, name)
            target = u.Unit(self._canonical.get(name, ""))
            out[name] = par.value if par.unit == target else par.quantity.to_value(target)
        return out

    def evaluate_values(self, lon_deg: Any, lat_deg: Any) -> np.ndarray:
        """Surface brightness in sr-1 at (lon, lat) in deg, in the model frame."""
        v = {k: np.deg2rad(val) if self._canonical.get(k) == "deg" else val for k, val in self.canonical_values().items()}
        return self.evaluate(np.deg2rad(np.asarray(lon_deg, float)), np.deg2rad(np.asarray(lat_deg, float)), **v)

    def __call__(self, lon: u.Quantity, lat: u.Quantity) -> u.Quantity:
        return u.Quantity(self.evaluate_values(u.Quantity(lon).to_value(u.deg), u.Quantity(lat).to_value(u.deg)), "sr-1")

    def to_dict(self, full_output: bool = False) -> dict:
        data = super().to_dict(full_output)
        data["spatial"]["frame"] = self.frame
        data["spatial"]["parameters"] = data["spatial"].pop("parameters")  # frame before parameters
        return data

    @classmethod
    def from_dict(cls, data: dict, **kwargs) -> "SpatialModel":
        spatial = data.get("spatial", data)
        if "frame" in spatial:
            kwargs["frame"] = spatial["frame"]
        return super().from_dict(data, **kwargs)


@register_model("spatial")
class PointSpatialModel(SpatialModel):
    """Point source at (lon_0, lat_0); integrate with `pixel_integration.point_source_weights`."""

    tag = ["PointSpatialModel", "point"]
    _defaults = [("lon_0", "0 deg", {}), ("lat_0", "0 deg", {"min": -90, "max": 90})]

    @property
    def evaluation_radius(self) -> u.Quantity:
        return 0 * u.deg

    @property
    def evaluation_bin_size_min(self) -> u.Quantity:
        return 0 * u.deg

    def evaluate_values(self, lon_deg, lat_deg):
        raise TypeError(
            "A point source has no surface brightness; use pixel_integration.point_source_weights "
            "(fraction of the flux per pixel)"
        )


@register_model("spatial")
class GaussianSpatialModel(SpatialModel):
    """2D Gaussian (sigma = major semi-axis, eccentricity e, position angle phi), normalised on the sphere."""

    tag = ["GaussianSpatialModel", "gauss"]
    _defaults = [
        ("lon_0", "0 deg", {}),
        ("lat_0", "0 deg", {"min": -90, "max": 90}),
        ("sigma", "1 deg", {"min": 0}),
        ("e", 0.0, {"min": 0, "max": 1, "frozen": True}),
        ("phi", "0 deg", {"min": -180, "max": 180, "frozen": True}),
    ]
    _canonical = {"lon_0": "deg", "lat_0": "deg", "sigma": "deg", "phi": "deg"}

    @property
    def evaluation_radius(self) -> u.Quantity:
        return 5 * self.sigma.quantity

    @property
    def evaluation_bin_size_min(self) -> u.Quantity:
        return self.sigma.quantity / 3.0

    @staticmethod
    def evaluate(lon, lat, lon_0, lat_0, sigma, e, phi):
        """sr-1; all angles in radians."""
        sep = angular_separation(lon, lat, lon_0, lat_0)
        if e == 0:
            a = 1.0 - np.cos(sigma)
            norm = 1 / (4 * np.pi * a * (1.0 - np.exp(-1.0 / a)))
        else:
            minor, sigma_eff = _sigma_eff(lon_0, lat_0, lon, lat, phi, sigma, e)
            a = 1.0 - np.cos(sigma_eff)
            norm = 1 / (2 * np.pi * sigma * minor)
        return norm * np.exp(-0.5 * (1 - np.cos(sep)) / a)


@register_model("spatial")
class DiskSpatialModel(SpatialModel):
    """Uniform (elliptical) disk of radius r_0 with an erf edge of relative width edge_width."""

    tag = ["DiskSpatialModel", "disk"]
    _defaults = [
        ("lon_0", "0 deg", {}),
        ("lat_0", "0 deg", {"min": -90, "max": 90}),
        ("r_0", "1 deg", {"min": 0}),
        ("e", 0.0, {"min": 0, "max": 1, "frozen": True}),
        ("phi", "0 deg", {"min": -180, "max": 180, "frozen": True}),
        ("edge_width", 0.01, {"min": 0, "max": 1, "frozen": True}),
    ]
    _canonical = {"lon_0": "deg", "lat_0": "deg", "r_0": "deg", "phi": "deg"}
    _EDGE_95 = 2.326174307353347  # erf argument at which the edge drops from 95% to 5%

    @property
    def evaluation_radius(self) -> u.Quantity:
        return 1.1 * self.r_0.quantity * (1 + self.edge_width.value)

    @property
    def evaluation_bin_size_min(self) -> u.Quantity:
        return self.r_0.quantity * (1 - self.edge_width.value) / 10.0

    @staticmethod
    def norm_factor(r_0: float, e: float) -> float:
        """1 / solid angle of the (elliptical) disk on the sphere; r_0 in radians."""
        semi_minor = r_0 * np.sqrt(1 - e**2)
        a_ = 1 / np.sin(r_0) ** 2
        b_ = 1 / np.sin(semi_minor) ** 2

        import scipy.integrate  # here, not at module level: reduction workers import this module

        def integrand(x):
            return 1 - np.sqrt(1 - 1 / (b_ + (a_ - b_) * np.cos(x) ** 2))

        return (2 * scipy.integrate.quad(integrand, 0, np.pi)[0]) ** -1

    @staticmethod
    def evaluate(lon, lat, lon_0, lat_0, r_0, e, phi, edge_width):
        """sr-1; all angles in radians."""
        import scipy.special

        sep = angular_separation(lon, lat, lon_0, lat_0)
        sigma_eff = r_0 if e == 0 else _sigma_eff(lon_0, lat_0, lon, lat, phi, r_0, e)[1]
        norm = DiskSpatialModel.norm_factor(r_0, e)
        with np.errstate(divide="ignore", invalid="ignore"):
            x = (sep - sigma_eff) / (sigma_eff * edge_width)
        return norm * 0.5 * (1 - scipy.special.erf(x * DiskSpatialModel._EDGE_95))
