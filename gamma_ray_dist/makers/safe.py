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
from .coords import nearest_pixel, observation_pointing, offset_from_pointing

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

    # -- array-level steps (one implementation, for `run` and the reduction fast path) -----------
    #: Methods `mask_values` computes from plain arrays (with ``position``/``fixed_offset`` unset, DL4).
    array_methods = frozenset({"offset-max", "aeff-default", "aeff-max", "bkg-peak"})

    @property
    def supports_arrays(self) -> bool:
        """True when `mask_values` gives this maker's whole mask (else `run` is needed)."""
        return (self.methods <= self.array_methods and self.position is None
                and self.fixed_offset is None and self.irfs == "DL4")

    def offset_max_mask_values(self, offset: np.ndarray) -> np.ndarray:
        """"offset-max": pixels closer than ``offset_max`` (``offset`` in deg, any shape)."""
        return offset < float(self.offset_max.deg)

    @staticmethod
    def aeff_default_energy_mask(aeff_meta, energy_edges: np.ndarray, obs_id=None) -> np.ndarray:
        """"aeff-default": reco bins inside the IRF's LO_THRES/HI_THRES (bool per bin)."""
        e_max, e_min = aeff_meta.get("HI_THRES"), aeff_meta.get("LO_THRES")
        if not e_max:
            log.warning(f"No default upper safe energy threshold defined for obs {obs_id}")
        if not e_min:
            log.warning(f"No default lower safe energy threshold defined for obs {obs_id}")
        return energy_mask_values(energy_edges, float(e_min) if e_min else None,
                                  float(e_max) if e_max else None)

    def aeff_max_energy_mask(self, aeff: Optional[np.ndarray], energy_true: np.ndarray,
                             energy_edges: np.ndarray, where: str = "", name: str = "") -> Optional[np.ndarray]:
        """"aeff-max" (DL4): reco bins above the energy where ``aeff`` (m2 at the true-energy centres,
        None if unknown) crosses ``aeff_percent`` % of its maximum; None when it is all zero (the
        whole mask is then False, as gammapy, with its warning naming ``where`` and ``name``)."""
        if aeff is None or not np.any(aeff > 0.0):
            log.warning(f"Effective area is all zero at {where}. No safe energy band can be defined for the "
                        f"dataset '{name}': setting `mask_safe` to all False.")
            return None
        energy_min = aeff_max_threshold(energy_true, aeff, self.aeff_percent)
        return energy_mask_values(energy_edges, energy_min)

    @staticmethod
    def bkg_peak_energy_mask(background: np.ndarray, energy_edges: np.ndarray) -> np.ndarray:
        """"bkg-peak": reco bins from the peak of the background spectrum up."""
        spectrum = np.nansum(np.asarray(background, dtype=np.float64), axis=(-2, -1))
        idx = int(np.argmax(spectrum))
        return energy_mask_values(energy_edges, energy_edges[idx])

    def mask_values(self, background: np.ndarray, energy_edges: np.ndarray, offset: Optional[np.ndarray] = None,
                    aeff_meta=None, aeff_at_center: Optional[np.ndarray] = None,
                    energy_true: Optional[np.ndarray] = None, obs_id=None, name: str = "",
                    center: str = "the cutout centre") -> np.ndarray:
        """The safe mask of `array_methods` from plain arrays (bool, ``background.shape``).

        Parameters
        ----------
        background : np.ndarray
            Predicted background ``(n_energy, ny, nx)`` (before any FoV normalisation).
        energy_edges : np.ndarray
            Reco-energy bin edges (TeV).
        offset : np.ndarray, optional
            Pixel offsets from the pointing (deg, ``(ny, nx)``), for "offset-max".
        aeff_meta : mapping, optional
            Effective-area header (LO_THRES/HI_THRES), for "aeff-default".
        aeff_at_center, energy_true : np.ndarray, optional
            Effective area (m2) at the map centre and its true energies (TeV), for "aeff-max".
        obs_id, name, center : optional
            For the warnings (observation id, dataset name, where the effective area was read).
        """
        mask = mask_bkg_invalid_values(background)
        if "offset-max" in self.methods:
            mask &= self.offset_max_mask_values(offset)[None]
        if "aeff-default" in self.methods:
            mask &= self.aeff_default_energy_mask(aeff_meta, energy_edges, obs_id)[:, None, None]
        if "aeff-max" in self.methods:
            mask_e = self.aeff_max_energy_mask(aeff_at_center, energy_true, energy_edges, center, name)
            if mask_e is None:
                mask[...] = False
            else:
                mask &= mask_e[:, None, None]
        if "bkg-peak" in self.methods:
            mask &= self.bkg_peak_energy_mask(background, energy_edges)[:, None, None]
        return mask

    # -- single masks (bool arrays shaped like the counts cube) -------------------------------
    def make_mask_offset_max(self, dataset, observation) -> np.ndarray:
        if observation is None:
            raise ValueError("Method 'offset-max' requires an observation object.")
        geom = dataset._geom
        image = self.offset_max_mask_values(offset_from_pointing(geom.to_image(), observation_pointing(observation)))
        return np.broadcast_to(image, geom.data_shape)

    @classmethod
    def make_mask_energy_aeff_default(cls, dataset, observation) -> np.ndarray:
        if observation is None:
            raise ValueError("Method 'aeff-default' requires an observation object.")
        geom = dataset._geom
        mask = cls.aeff_default_energy_mask(observation.aeff.meta, _energy_edges(geom), observation.obs_id)
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
            return _broadcast_energy(energy_mask_values(_energy_edges(geom), energy_min), geom.data_shape)
        exposure = dataset.exposure
        position = self._get_position(observation, geom)
        pix = nearest_pixel(exposure.geom, position)
        aeff = None
        if pix is not None:
            livetime = u.Quantity(exposure.meta["livetime"], "s").value
            aeff = np.asarray(exposure.data[:, pix[0], pix[1]], dtype=np.float64) / livetime
        e_true = np.asarray(exposure.geom.axes["energy_true"].center_values, dtype=np.float64)
        mask = self.aeff_max_energy_mask(aeff, e_true, _energy_edges(geom), f"[{position.to_string('dms')}]",
                                         dataset.name)
        if mask is None:
            return np.zeros(geom.data_shape, dtype=bool)
        return _broadcast_energy(mask, geom.data_shape)

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
        mask = self.bkg_peak_energy_mask(dataset.npred_background().data, _energy_edges(geom))
        return _broadcast_energy(mask, geom.data_shape)

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
