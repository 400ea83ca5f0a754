"""FoV background normalisation: `FoVBackgroundMaker` (gammapy/makers/background/fov.py, 2.1).

``method="fit"`` fits the norm of the dataset's `FoVBackgroundModel` (other parameters frozen) with
the Cash statistic over ``mask_safe & mask_fit``. With the norm as the only free parameter the
minimum is solved directly: ``sum(g b) = sum(n g b / (s + norm g b))`` (b background, g the frozen
spectral shape, s frozen signal); without signal it is ``norm = sum(n) / sum(g b)``. gammapy gets
the same minimum with migrad (to its tolerance); its checks, warnings and masking are reproduced.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import numpy as np
from scipy.optimize import brentq

from ..maps import Map

__all__ = ["FoVBackgroundMaker", "fit_norm_values", "scale_norm_values", "exclusion_mask_values"]

log = logging.getLogger(__name__)

CASH_TRUNCATION = 1e-25  # gammapy.stats.cash truncation of mu


def exclusion_mask_values(mask_data: np.ndarray, mask_geom, geom) -> np.ndarray:
    """Nearest-pixel lookup of a boolean mask on another geometry (gammapy ``interp_to_geom`` of a
    mask: pixels outside the mask's map are False). Returns bool ``geom.data_shape``."""
    mask_data = np.asarray(mask_data, dtype=bool)
    if mask_geom.to_image() == geom.to_image() and mask_data.shape[-2:] == tuple(geom.data_shape[-2:]):
        image_lookup = None
    else:
        lon, lat = geom.to_image().pixel_centers()
        if mask_geom.frame != geom.frame:
            from astropy.coordinates import SkyCoord

            c = SkyCoord(lon, lat, unit="deg", frame=geom.frame).transform_to(mask_geom.frame)
            sph = c.spherical
            lon, lat = sph.lon.deg, sph.lat.deg
        x, y = mask_geom.wcs.wcs_world2pix(lon, lat, 0)
        ny, nx = mask_data.shape[-2:]
        ix, iy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
        inside = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        image_lookup = (np.where(inside, iy, 0), np.where(inside, ix, 0), inside)
    planes = mask_data.reshape((-1,) + mask_data.shape[-2:])
    out_shape = tuple(geom.data_shape)
    if planes.shape[0] not in (1, out_shape[0]):
        planes = planes.any(axis=0, keepdims=True)  # other energy binning: spatial union
    if image_lookup is None:
        result = planes
    else:
        iy, ix, inside = image_lookup
        result = planes[:, iy, ix] & inside
    return np.ascontiguousarray(np.broadcast_to(result, out_shape))


def scale_norm_values(counts, npred, background, mask) -> tuple[float, float]:
    """gammapy's ``make_background_scale``: ``(counts - signal) / background`` over ``mask``."""
    n = float(np.sum(counts[mask]))
    bkg = float(np.sum(background[mask]))
    not_bkg = float(np.sum(npred[mask])) - bkg
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (n - not_bkg) / bkg
        error = np.sqrt(n - not_bkg) / bkg
    return value, float(error)


def fit_norm_values(counts, signal, shape, mask) -> tuple[float, float, bool]:
    """Cash-minimising norm of ``mu = signal + norm * shape`` over ``mask``.

    Parameters
    ----------
    counts, signal, shape : np.ndarray
        Observed counts, frozen signal prediction and background shape (background times the frozen
        part of the spectral model), all on the same grid.
    mask : np.ndarray
        Bins entering the statistic.

    Returns
    -------
    norm, error, success
        ``error`` from the curvature of ``2 sum(mu - n log mu)``; ``success`` False when no finite
        positive minimum exists.
    """
    n = np.asarray(counts, dtype=np.float64)[mask]
    s = np.asarray(signal, dtype=np.float64)[mask]
    b = np.asarray(shape, dtype=np.float64)[mask]
    use = b > 0  # bins without background do not depend on the norm
    n, s, b = n[use], s[use], b[use]
    if n.size == 0 or not np.all(np.isfinite(b)) or n.sum() <= 0:
        return float("nan"), float("nan"), False
    if not np.any(s != 0):
        norm = n.sum() / b.sum()
    else:
        def grad(x):
            return b.sum() - np.sum(n * b / np.maximum(s + x * b, CASH_TRUNCATION))

        lo, hi = 1e-12, 1.0
        while grad(hi) < 0 and hi < 1e12:
            hi *= 10
        if grad(lo) > 0:
            return 0.0, float("nan"), False
        try:
            norm = brentq(grad, lo, hi, xtol=1e-14, rtol=1e-14)
        except ValueError:
            return float("nan"), float("nan"), False
    mu = np.maximum(s + norm * b, CASH_TRUNCATION)
    curvature = np.sum(n * b * b / (mu * mu))
    error = 1.0 / np.sqrt(curvature) if curvature > 0 else float("nan")
    ok = bool(np.isfinite(norm) and norm > 0)
    return float(norm), float(error), ok


class FoVBackgroundMaker:
    """Normalise the background of a dataset outside an exclusion mask (gammapy API and defaults).

    Parameters
    ----------
    method : {"scale", "fit"}
    exclusion_mask : WcsNDMap, optional
        Boolean map, True where the data may be used to normalise the background.
    spectral_model : str or norm spectral model
        Default "pl-norm" (norm free, tilt frozen).
    min_counts, min_npred_background : float
        Requirements on the masked totals (default 0).
    fit : optional
        Kept for API compatibility; the one-parameter Cash fit is solved directly.
    """

    tag = "FoVBackgroundMaker"
    available_methods = ["fit", "scale"]

    def __init__(self, method: str = "scale", exclusion_mask=None, spectral_model: Any = "pl-norm",
                 spatial_model=None, min_counts: float = 0, min_npred_background: float = 0, fit=None):
        self.method = method
        self.exclusion_mask = exclusion_mask
        self.min_counts = min_counts
        self.min_npred_background = min_npred_background
        if spatial_model is not None:
            raise NotImplementedError("FoVBackgroundMaker with a spatial model is not supported")
        if isinstance(spectral_model, str):
            from ..modeling.models.core import get_model_class

            spectral_model = get_model_class("spectral", spectral_model)()
        if not spectral_model.is_norm_spectral_model:
            raise ValueError("Spectral model must be a norm spectral model")
        self.default_spectral_model = spectral_model
        self.fit = fit

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        if value not in self.available_methods:
            raise ValueError(f"Not a valid method for FoVBackgroundMaker: {value}. "
                             f"Choose from {self.available_methods}")
        self._method = value

    def make_default_fov_background_model(self, dataset):
        from ..modeling.models import FoVBackgroundModel

        model = FoVBackgroundModel(dataset_name=dataset.name, spectral_model=self.default_spectral_model.copy())
        dataset.models = model if dataset.models is None else list(dataset.models) + [model]
        return dataset

    def make_exclusion_mask(self, dataset):
        geom = dataset._geom
        if self.exclusion_mask is None:
            return Map.from_geom(geom, data=np.ones(geom.data_shape, dtype=bool), dtype=bool)
        data = exclusion_mask_values(self.exclusion_mask.data, self.exclusion_mask.geom, geom)
        return Map.from_geom(geom, data=data, dtype=bool)

    def _totals(self, dataset, mask):
        npred = np.asarray(dataset.npred().data, dtype=np.float64)
        mask = mask & ~np.isnan(npred)
        counts = np.asarray(dataset.counts.data, dtype=np.float64)
        bkg = np.asarray(dataset.npred_background().data, dtype=np.float64)
        return counts, npred, bkg, mask

    # -- array-level steps (one implementation, for `run` and the reduction fast path) -----------
    def requirements_met(self, counts: np.ndarray, npred: np.ndarray, background: np.ndarray,
                         mask: np.ndarray, name: str = "") -> bool:
        """gammapy's checks before normalising (finite norm, enough counts and background, positive
        residuals), with its warnings naming the dataset ``name``."""
        n = counts[mask].sum()
        b = background[mask].sum()
        not_bkg = npred[mask].sum() - b
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (n - not_bkg) / b
        if not np.isfinite(value):
            log.warning(f"FoVBackgroundMaker failed. Non-finite normalisation value for {name}. "
                        "Setting mask to False.")
            return False
        if b <= self.min_npred_background:
            log.warning(f"FoVBackgroundMaker failed. Only {int(b)} background counts outside exclusion "
                        f"mask for {name}. Setting mask to False.")
            return False
        if n <= self.min_counts:
            log.warning(f"FoVBackgroundMaker failed. Only {int(n)} counts outside exclusion mask for "
                        f"{name}. Setting mask to False.")
            return False
        if n - not_bkg <= 0:
            log.warning(f"FoVBackgroundMaker failed. Negative residuals counts for {name}. "
                        "Setting mask to False.")
            return False
        return True

    def normalise(self, spectral_model, counts: np.ndarray, npred: np.ndarray, background: np.ndarray,
                  mask: np.ndarray, name: str = "", unscaled: Optional[Callable[[], np.ndarray]] = None) -> str:
        """Check the requirements, then fit or scale the norm of ``spectral_model`` in place.

        Parameters
        ----------
        spectral_model : norm spectral model
            Of the dataset's `FoVBackgroundModel`; its ``norm`` is set.
        counts, npred, background : np.ndarray
            Counts, total prediction and background prediction (background times the model), float64.
        mask : np.ndarray
            Bins used (safe mask, fit mask and exclusion, NaN predictions removed).
        name : str
            Dataset name for the warnings.
        unscaled : callable, optional
            Background times the model's factor, needed only when the current norm is 0.

        Returns
        -------
        str
            "fitted", "scaled" or "failed: ..." (the caller then sets the safe mask to False).
        """
        if not self.requirements_met(counts, npred, background, mask, name):
            return "failed: requirements"
        if self.method == "scale":
            value, error = scale_norm_values(counts, npred, background, mask)
            norm = spectral_model.norm
            norm.value, norm.error = value, error
            return "scaled"
        norm = spectral_model.norm
        if norm.frozen:
            return "fitted"
        current = float(norm.value)
        shape = background / current if current != 0 else unscaled()
        value, error, ok = fit_norm_values(counts, npred - background, shape, mask)
        lo = -np.inf if norm.min is None or np.isnan(norm.min) else norm.min
        hi = np.inf if norm.max is None or np.isnan(norm.max) else norm.max
        if ok and np.isfinite(value):
            norm.value = float(np.clip(value, lo, hi))
            norm.error = error
            return "fitted"
        log.warning(f"FoVBackgroundMaker failed. Fit did not converge for {name}. "
                    "Setting mask to False.")
        return "failed: fit"

    def run(self, dataset, observation=None):
        """Add (if needed) and normalise the dataset's FoV background model; returns the dataset.

        ``dataset.meta["fov_status"]`` records the outcome: "fitted", "scaled", or "failed: ..."
        (then ``mask_safe`` is all False, as gammapy does).
        """
        mask_fit = dataset.mask_fit
        exclusion = self.make_exclusion_mask(dataset)
        fit_mask = exclusion.data if mask_fit is None else (np.asarray(mask_fit.data, bool) & exclusion.data)
        if dataset.background_model is None:
            dataset = self.make_default_fov_background_model(dataset)
        mask = np.asarray(dataset.mask_safe.data, bool) & fit_mask
        counts, npred, bkg, mask = self._totals(dataset, mask)
        status = self.normalise(
            dataset.background_model.spectral_model, counts, npred, bkg, mask, dataset.name,
            unscaled=lambda: np.asarray(dataset.background.data, np.float64)
            * np.asarray(dataset.background_factor(), np.float64))
        if status.startswith("failed"):
            dataset.mask_safe = Map.from_geom(dataset._geom, data=np.zeros(dataset._geom.data_shape, bool),
                                              dtype=bool)
        dataset.mask_fit = mask_fit
        dataset.meta = dict(dataset.meta or {}, fov_status=status)
        return dataset

    def __repr__(self) -> str:
        return f"{type(self).__name__}(method={self.method!r})"
