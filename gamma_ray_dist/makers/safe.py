"""Safe data range masks and `SafeMaskMaker` (gammapy/makers/safe.py, gammapy 2.1 behaviour).

The energy thresholds are found as gammapy finds them: on log-log interpolated templates of the
effective area (or reconstruction bias) versus true energy, by brentq on the first sign change
among 100 log-spaced brackets; a reco-energy bin is safe when its lower edge is above the threshold.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Optional

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from scipy.optimize import brentq

from ..irf.axes import scale_forward, scale_inverse
from ..maps import Map
from .coords import offset_from_pointing

__all__ = [
    "SafeMaskMaker",
    "loglog_template",
    "find_first_root",
    "energy_mask_values",
    "mask_offset_max_values",
    "mask_bkg_invalid_values",
    "aeff_max_threshold",
    "edisp_bias_threshold",
]

log = logging.getLogger(__name__)


def loglog_template(energy: np.ndarray, values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """gammapy's ``TemplateSpectralModel``: values interpolated in log-log, extrapolated, clipped at 0."""
    x = np.log(np.asarray(energy, dtype=np.float64))
    y = scale_forward(np.asarray(values, dtype=np.float64), "log")
    if len(x) == 1:
        return lambda e: np.full(np.shape(e), scale_inverse(y[0], "log"))

    def f(e):
        le = np.log(np.asarray(e, dtype=np.float64))
        idx = np.clip(np.searchsorted(x, le, side="right") - 1, 0, len(x) - 2)
        t = (le - x[idx]) / (x[idx + 1] - x[idx])
        out = scale_inverse(y[idx] + t * (y[idx + 1] - y[idx]), "log")
        return np.clip(out, 0, np.inf)

    return f


def find_first_root(f: Callable, lower: float, upper: float, nbin: int = 100) -> float:
    """First root of the vectorised ``f`` in [lower, upper] (gammapy ``find_roots``: sign changes on
    ``nbin`` log-spaced brackets, brentq in the first); NaN if none."""
    x = np.exp(np.linspace(np.log(lower), np.log(upper), nbin + 1))
    signs = np.sign(np.asarray(f(x), dtype=np.float64))  # f is vectorised
    idx = np.nonzero(signs[:-1] != signs[1:])[0]
    if len(idx) == 0:
        return float("nan")
    try:
        return float(brentq(lambda v: float(f(v)), x[idx[0]], x[idx[0] + 1]))
    except (RuntimeError, ValueError):
        return float("nan")


def energy_mask_values(edges: np.ndarray, energy_min: Optional[float] = None,
                       energy_max: Optional[float] = None) -> np.ndarray:
    """Bins fully inside [energy_min, energy_max] (gammapy ``Geom.energy_mask``), bool (n_bins,)."""
    edges = np.asarray(edges, dtype=np.float64)
    lo = edges[0] if energy_min is None else energy_min
    hi = edges[-1] if energy_max is None else energy_max
    return (edges[:-1] >= lo) & (edges[1:] <= hi)


def mask_offset_max_values(geom, pointing: SkyCoord, offset_max_deg: float) -> np.ndarray:
    """Pixels closer than ``offset_max`` to the pointing, bool (ny, nx)."""
    return offset_from_pointing(geom.to_image(), pointing) < offset_max_deg


def mask_bkg_invalid_values(background: np.ndarray) -> np.ndarray:
    """Bins with a finite, positive background (gammapy ``make_mask_bkg_invalid`` for Cash)."""
    bkg = np.asarray(background)
    return np.isfinite(bkg) & (bkg > 0.0)


def aeff_max_threshold(energy_true: np.ndarray, aeff: np.ndarray, aeff_percent: float) -> float:
    """True energy where the effective area spectrum crosses ``aeff_percent`` % of its maximum.

    ``aeff`` (m2) is given at the true-energy bin centres; returns NaN if it is all zero.
    """
    aeff = np.asarray(aeff, dtype=np.float64)
    positive = np.nonzero(aeff > 0)[0]
    if len(positive) == 0:
        return float("nan")
    model = loglog_template(energy_true, aeff)
    e_min, e_max = float(energy_true[positive[0]]), float(energy_true[-1])
    threshold = aeff_percent / 100.0 * np.nanmax(aeff)
    root = find_first_root(lambda e: 1e12 * (model(e) - threshold), e_min, e_max)
    return e_min if np.isnan(root) else root


def edisp_bias_threshold(kernel: np.ndarray, energy_true_center: np.ndarray, energy_center: np.ndarray,
                         bias_percent: float) -> float:
    """Reco energy above which the reconstruction bias is below ``bias_percent`` % (gammapy
    ``EDispKernel.get_bias_energy``): the bias template is inverted from its peak upwards."""
    kernel = np.asarray(kernel, dtype=np.float64)
    norm = kernel.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nan_to_num((kernel * energy_center).sum(axis=-1) / norm)
    bias = (mean - energy_true_center) / energy_true_center
    e_min = float(energy_true_center[np.nanargmax(bias)])
    e_max = float(energy_true_center[-1])
    target = bias_percent / 100.0
    model = loglog_template(energy_true_center, bias)
    root = find_first_root(lambda e: 1e12 * (model(e) - target), e_min, e_max)
    if np.isnan(root):
        root = e_min
    return root * (1 + target)


def _energy_edges(geom) -> np.ndarray:
    return np.asarray(geom.axes["energy"].edges_values, dtype=np.float64)


def _broadcast_energy(mask_e: np.ndarray, shape) -> np.ndarray:
    return np.broadcast_to(mask_e.reshape(-1, 1, 1), shape)


def _nearest_pixel(geom, position: SkyCoord):
    """(iy, ix) of the pixel nearest to ``position``; outside the map the nearest edge pixel (gammapy's
    ``get_spectrum`` of a point interpolates "nearest" with extrapolation); None if not finite."""
    from .coords import skycoord_lonlat

    lon, lat = skycoord_lonlat(position, geom.frame)
    x, y = geom.wcs.wcs_world2pix(np.array([lon]), np.array([lat]), 0)
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        return None
    ny, nx = geom.data_shape[-2:]
    ix = int(np.clip(np.floor(x[0] + 0.5), 0, nx - 1))
    iy = int(np.clip(np.floor(y[0] + 0.5), 0, ny - 1))
    return iy, ix


class SafeMaskMaker:
    """Make the safe data range mask of a dataset (gammapy 2.1 API and defaults).

    Parameters
    ----------
    methods : iterable of str
        Among "aeff-default", "aeff-max", "edisp-bias", "offset-max", "bkg-peak".
    aeff_percent : float
        "aeff-max": percent of the maximum effective area (default 10).
    bias_percent : float
        "edisp-bias": percent of energy bias (default 10).
    position : SkyCoord, optional
        Where aeff-max / edisp-bias read the IRFs (default: the map centre).
    fixed_offset : Angle, optional
        Read the IRFs at this offset from the pointing instead (exclusive with ``position``).
    offset_max : Angle
        "offset-max": maximum offset (default 3 deg).
    irfs : {"DL4", "DL3"}
        Read the reduced maps (DL4, default) or the observation's IRFs (DL3, aeff-max only here).
    """

    tag = "SafeMaskMaker"
    available_methods = {"aeff-default", "aeff-max", "edisp-bias", "offset-max", "bkg-peak"}

    def __init__(self, methods: Iterable[str] = ("aeff-default",), aeff_percent: float = 10,
                 bias_percent: float = 10, position: Optional[SkyCoord] = None, fixed_offset=None,
                 offset_max="3 deg", irfs: str = "DL4"):
        methods = set(methods)
        if not methods.issubset(self.available_methods):
            raise ValueError(f"{methods.difference(self.available_methods)} is not a valid method.")
        self.methods = methods
        self.aeff_percent = aeff_percent
        self.bias_percent = bias_percent
        self.position = position
        self.fixed_offset = None if fixed_offset is None else Angle(fixed_offset)
        self.offset_max = Angle(offset_max)
        if self.position is not None and self.fixed_offset is not None:
            raise ValueError("`position` and `fixed_offset` attributes are mutually exclusive")
        if irfs not in ("DL3", "DL4"):
            raise ValueError(f"Invalid option for irfs: expected 'DL3' or 'DL4', got '{irfs}' instead.")
        self.irfs = irfs

    # -- positions ---------------------------------------------------------------------------
    def _get_offset_deg(self, observation) -> float:
        if self.fixed_offset is not None:
            return float(self.fixed_offset.deg)
        if self.position is not None:
            return float(observation.get_pointing_icrs(observation.tmid).separation(self.position).deg)
        return 0.0

    def _get_position(self, observation, geom) -> SkyCoord:
        if self.fixed_offset is not None and observation is not None:
            pointing = observation.get_pointing_icrs(observation.tmid)
            return pointing.directional_offset_by(position_angle=0 * u.deg, separation=self.fixed_offset)
        if self.position is not None:
            return self.position
        return geom.center_skydir

    # -- single masks (bool arrays shaped like the counts cube) -------------------------------
    def make_mask_offset_max(self, dataset, observation) -> np.ndarray:
        if observation is None:
            raise ValueError("Method 'offset-max' requires an observation object.")
        geom = dataset._geom
        image = mask_offset_max_values(geom, observation.get_pointing_icrs(observation.tmid),
                                       float(self.offset_max.deg))
        return np.broadcast_to(image, geom.data_shape)

    @staticmethod
    def make_mask_energy_aeff_default(dataset, observation) -> np.ndarray:
        if observation is None:
            raise ValueError("Method 'aeff-default' requires an observation object.")
        meta = observation.aeff.meta
        e_max, e_min = meta.get("HI_THRES"), meta.get("LO_THRES")
        if not e_max:
            log.warning(f"No default upper safe energy threshold defined for obs {observation.obs_id}")
        if not e_min:
            log.warning(f"No default lower safe energy threshold defined for obs {observation.obs_id}")
        geom = dataset._geom
        mask = energy_mask_values(_energy_edges(geom), float(e_min) if e_min else None,
                                  float(e_max) if e_max else None)
        return _broadcast_energy(mask, geom.data_shape)

    def make_mask_energy_aeff_max(self, dataset, observation=None) -> np.ndarray:
        if self.fixed_offset is not None and observation is None:
            raise ValueError(f"{observation} argument is mandatory with {self.fixed_offset}")
        geom = dataset._geom
        if self.irfs == "DL3":
            aeff = observation.aeff
            e_edges = aeff.axes["energy_true"].edges
            values = aeff.evaluate_values(energy_true=e_edges,
                                          offset=np.full(e_edges.shape, self._get_offset_deg(observation)))
            energy_min = float(np.min(e_edges[values > self.aeff_percent * np.max(values) / 100]))
        else:
            exposure = dataset.exposure
            position = self._get_position(observation, geom)
            pix = _nearest_pixel(exposure.geom, position)
            aeff = None
            if pix is not None:
                livetime = u.Quantity(exposure.meta["livetime"], "s").value
                aeff = np.asarray(exposure.data[:, pix[0], pix[1]], dtype=np.float64) / livetime
            if aeff is None or not np.any(aeff > 0.0):
                log.warning(f"Effective area is all zero at [{position.to_string('dms')}]. No safe energy "
                            f"band can be defined for the dataset '{dataset.name}': setting `mask_safe` "
                            "to all False.")
                return np.zeros(geom.data_shape, dtype=bool)
            e_true = np.asarray(exposure.geom.axes["energy_true"].center_values, dtype=np.float64)
            energy_min = aeff_max_threshold(e_true, aeff, self.aeff_percent)
        return _broadcast_energy(energy_mask_values(_energy_edges(geom), energy_min), geom.data_shape)

    def make_mask_energy_edisp_bias(self, dataset, observation=None) -> np.ndarray:
        if self.fixed_offset is not None and observation is None:
            raise ValueError(f"{observation} argument is mandatory with {self.fixed_offset}")
        if self.irfs == "DL3":
            raise NotImplementedError("edisp-bias with irfs='DL3' is not implemented; use 'DL4'")
        geom = dataset._geom
        kernel = dataset.edisp.get_edisp_kernel(position=self._get_position(observation, geom))
        e_true = np.asarray(kernel.energy_axis_true.center_values, dtype=np.float64)
        e_reco = np.asarray(kernel.energy_axis.center_values, dtype=np.float64)
        energy_min = edisp_bias_threshold(kernel.data, e_true, e_reco, self.bias_percent)
        return _broadcast_energy(energy_mask_values(_energy_edges(geom), energy_min), geom.data_shape)

    def make_mask_energy_bkg_peak(self, dataset, observation=None) -> np.ndarray:
        if self.irfs == "DL3":
            raise NotImplementedError("bkg-peak with irfs='DL3' is not implemented; use 'DL4'")
        geom = dataset._geom
        spectrum = np.nansum(np.asarray(dataset.npred_background().data, dtype=np.float64), axis=(-2, -1))
        edges = _energy_edges(geom)
        idx = int(np.argmax(spectrum))
        return _broadcast_energy(energy_mask_values(edges, edges[idx]), geom.data_shape)

    @staticmethod
    def make_mask_bkg_invalid(dataset) -> np.ndarray:
        return mask_bkg_invalid_values(dataset.background.data)

    def run(self, dataset, observation=None):
        """Set ``dataset.mask_safe`` (AND of the existing mask and every method's mask)."""
        if self.irfs == "DL3" and observation is None:
            raise ValueError("observation argument is mandatory with DL3 irfs")
        geom = dataset._geom
        if dataset.mask_safe is not None:
            mask = np.array(dataset.mask_safe.data, dtype=bool)
        else:
            mask = np.ones(geom.data_shape, dtype=bool)
        if dataset.background is not None:
            # first, so that bkg-peak only sees clipped values removed (as gammapy)
            mask &= self.make_mask_bkg_invalid(dataset)
        if "offset-max" in self.methods:
            mask &= self.make_mask_offset_max(dataset, observation)
        if "aeff-default" in self.methods:
            mask &= self.make_mask_energy_aeff_default(dataset, observation)
        if "aeff-max" in self.methods:
            mask &= self.make_mask_energy_aeff_max(dataset, observation)
        if "edisp-bias" in self.methods:
            mask &= self.make_mask_energy_edisp_bias(dataset, observation)
        if "bkg-peak" in self.methods:
            mask &= self.make_mask_energy_bkg_peak(dataset, observation)
        dataset.mask_safe = Map.from_geom(geom, data=mask, dtype=bool)
        return dataset

    def __repr__(self) -> str:
        return f"{type(self).__name__}(methods={sorted(self.methods)}, offset_max={self.offset_max})"
