"""`ExcessMapEstimator`: correlated counts, excess, Li & Ma significance and flux maps (gammapy 2.1 names).

Counts and predicted background (the dataset's ``npred()``: background model plus any source models
set) are summed over the energy bins of each output bin (inside the safe mask), correlated with a
top-hat of ``correlation_radius`` (FFT convolution; the counts are rounded back to integers), and
compared with `CashCountsStatistic` (known background). Fluxes are excess counts over the
reconstructed-energy exposure of ``spectral_model`` averaged over the same top-hat.

``selection_optional`` adds asymmetric errors (``norm_errn``/``norm_errp``), upper limits (``norm_ul``)
and the sensitivity (``norm_sensitivity``: the excess with a Cash significance of ``n_sigma_sensitivity``
over the correlated background, optionally raised to ``gamma_min_sensitivity`` counts and to
``bkg_syst_fraction_sensitivity`` of the background, over the exposure). ``alpha``, ``acceptance_on``
and ``acceptance_off`` are accepted as gammapy does, but they exist only for on-off datasets, which this
project does not have: on a `MapDataset` gammapy 2.1 returns no such maps, and neither do we.

The work is a handful of global FFT convolutions (a few ms for 100x100 pixels, seconds for a survey
field), so it runs in-process; ``backend`` is accepted for a uniform interface.
"""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from astropy.coordinates import Angle

from ...maps import Map
from ...stats import CashCountsStatistic, apply_threshold_sensitivity
from .core import EstimatorInputError, FluxMaps, MapEstimator
from ._inputs import check_dataset, energy_groups, estimation_mask, reco_exposure

__all__ = ["ExcessMapEstimator", "tophat_kernel"]

log = logging.getLogger(__name__)

# optional quantities that only an on-off dataset (OFF counts) defines
_ONOFF_ONLY = ("alpha", "acceptance_on", "acceptance_off")


def tophat_kernel(radius_pix: float) -> np.ndarray:
    """Top-hat of ``radius_pix`` pixels on an odd grid (1 where the pixel centre is within the radius)."""
    n = int(np.ceil(2 * radius_pix) // 2 * 2 + 1)
    r = np.arange(n) - n // 2
    return (r[None, :] ** 2 + r[:, None] ** 2 <= radius_pix**2).astype(float)


def _convolve(planes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.signal import fftconvolve

    return np.stack([fftconvolve(p, kernel, mode="same") for p in planes])


class ExcessMapEstimator(MapEstimator):
    """Correlated excess and significance maps of a `MapDataset`.

    Parameters
    ----------
    correlation_radius : `~astropy.coordinates.Angle` or str
        Radius of the top-hat correlation (default 0.1 deg).
    n_sigma, n_sigma_ul : float
        Sigma of the errors and of the upper limits.
    selection_optional : list of str or "all", optional
        Among ``"errn-errp"``, ``"ul"``, ``"sensitivity"``, ``"alpha"``, ``"acceptance_on"``,
        ``"acceptance_off"`` (the last three give no map for a `MapDataset`, as in gammapy).
    energy_edges : `~astropy.units.Quantity`, optional
        Output energy bins (snapped to the dataset's); default one bin over the whole axis.
    correlate_off : bool
        Kept for gammapy compatibility (only on-off datasets use it; those are not supported).
    spectral_model : `SpectralModel`, optional
        Spectrum converting excess counts to flux (default power law of index 2).
    n_sigma_sensitivity : float
        Significance of the sensitivity (default 5).
    gamma_min_sensitivity : float
        Minimum excess counts of the sensitivity when ``apply_threshold_sensitivity`` (default 10).
    bkg_syst_fraction_sensitivity : float
        Minimum excess of the sensitivity as a fraction of the background, when
        ``apply_threshold_sensitivity`` (default 0.05).
    apply_threshold_sensitivity : bool
        Apply the two floors above (default False, as the HGPS catalogue).
    sum_over_energy_groups : bool
        gammapy's flag (used when ``energy_edges`` is None); both values give one bin over the whole
        axis here, as in gammapy 2.1 (which squashes the axis either way).
    backend : optional
        Accepted for a uniform interface; the estimator runs in-process.
    """

    tag = "ExcessMapEstimator"
    _available_selection_optional = ["errn-errp", "ul", "sensitivity", "alpha", "acceptance_on",
                                     "acceptance_off"]

    def __init__(self, correlation_radius: Any = "0.1 deg", n_sigma: float = 1, n_sigma_ul: float = 2,
                 selection_optional: Any = None, energy_edges: Any = None, correlate_off: bool = True,
                 spectral_model: Any = None, n_sigma_sensitivity: float = 5, gamma_min_sensitivity: float = 10,
                 bkg_syst_fraction_sensitivity: float = 0.05, apply_threshold_sensitivity: bool = False,
                 sum_over_energy_groups: bool = False, backend: Any = None):
        from ...modeling.models import PowerLawSpectralModel

        self.correlation_radius = Angle(correlation_radius)
        if not self.correlation_radius.deg > 0:
            raise EstimatorInputError(f"ExcessMapEstimator: correlation_radius must be positive, "
                                      f"got {correlation_radius}")
        self._require_positive(n_sigma=n_sigma, n_sigma_ul=n_sigma_ul, n_sigma_sensitivity=n_sigma_sensitivity)
        for name, value in (("gamma_min_sensitivity", gamma_min_sensitivity),
                            ("bkg_syst_fraction_sensitivity", bkg_syst_fraction_sensitivity)):
            if not value >= 0:
                raise EstimatorInputError(f"{self.tag}: {name} must be >= 0, got {value}")
        self.n_sigma = n_sigma
        self.n_sigma_ul = n_sigma_ul
        self.n_sigma_sensitivity = n_sigma_sensitivity
        self.gamma_min_sensitivity = gamma_min_sensitivity
        self.bkg_syst_fraction_sensitivity = bkg_syst_fraction_sensitivity
        self.apply_threshold_sensitivity = bool(apply_threshold_sensitivity)
        self.sum_over_energy_groups = bool(sum_over_energy_groups)
        self.selection_optional = selection_optional
        self.energy_edges = energy_edges
        self.correlate_off = correlate_off
        self.spectral_model = PowerLawSpectralModel(index=2) if spectral_model is None else spectral_model
        self.backend = backend

    def estimate_kernel(self, dataset: Any) -> np.ndarray:
        geom = dataset.counts.geom
        binsz = float(np.mean(np.abs(geom.wcs.wcs.cdelt)))
        kernel = tophat_kernel(self.correlation_radius.deg / binsz)
        ny, nx = geom.data_shape[-2:]
        if kernel.shape[0] > max(ny, nx) + (1 - max(ny, nx) % 2):
            raise EstimatorInputError(
                f"ExcessMapEstimator: the correlation kernel ({kernel.shape[0]} pixels, radius "
                f"{self.correlation_radius.deg:g} deg) is wider than the map ({nx} x {ny} pixels); "
                "use a smaller correlation_radius")
        return kernel

    def _sensitivity_counts(self, stat: CashCountsStatistic, background: np.ndarray) -> np.ndarray:
        """Excess counts of the sensitivity: ``n_sigma_sensitivity`` over the correlated background, then
        the floors when ``apply_threshold_sensitivity``. As gammapy 2.1, the systematic floor uses the
        background of each pixel summed over the energy group (safe mask applied) but not correlated."""
        excess = stat.n_sig_matching_significance(self.n_sigma_sensitivity)
        if self.apply_threshold_sensitivity:
            excess = apply_threshold_sensitivity(background, excess, self.gamma_min_sensitivity,
                                                 self.bkg_syst_fraction_sensitivity)
        return excess

    def run(self, dataset: Any, backend: Any = None) -> FluxMaps:
        """Excess, significance and flux maps (NaN outside the mask)."""
        check_dataset(dataset, self.tag)
        groups, energy_axis = energy_groups(dataset, self.energy_edges, sum_all=True)
        kernel = self.estimate_kernel(dataset)
        mask_safe = (np.asarray(dataset.mask_safe.data, dtype=bool) if dataset.mask_safe is not None
                     else np.ones(dataset.counts.data.shape, dtype=bool))
        mask_est = estimation_mask(dataset)
        counts = np.asarray(dataset.counts.data, dtype=float) * mask_safe
        npred = np.asarray(dataset.npred().data, dtype=float) * mask_safe
        expo = reco_exposure(dataset, self.spectral_model) * mask_safe

        def grouped(a, how=np.sum):
            return np.stack([how(a[i0:i1], axis=0) for i0, i1 in groups])

        counts_g, npred_g, expo_g = grouped(counts), grouped(npred), grouped(expo)
        mask = grouped(mask_est, np.any)
        k = kernel / kernel.max()
        n_on = np.rint(_convolve(counts_g * mask, k))
        background = _convolve(npred_g * mask, k)
        stat = CashCountsStatistic(n_on, background)
        with np.errstate(invalid="ignore", divide="ignore"):
            exposure = _convolve(expo_g, k) / _convolve(mask.astype(float), k)
            data = {"npred": stat.n_on, "npred_excess": stat.n_sig, "counts": stat.n_on, "ts": stat.ts,
                    "sqrt_ts": stat.sqrt_ts, "norm": stat.n_sig / exposure,
                    "norm_err": stat.error * self.n_sigma / exposure}
            if "errn-errp" in self.selection_optional:
                data["norm_errn"] = stat.compute_errn(self.n_sigma) / exposure
                data["norm_errp"] = stat.compute_errp(self.n_sigma) / exposure
            if "ul" in self.selection_optional:
                data["norm_ul"] = stat.compute_upper_limit(self.n_sigma_ul) / exposure
            if "sensitivity" in self.selection_optional:
                data["norm_sensitivity"] = self._sensitivity_counts(stat, npred_g) / exposure
        onoff = [key for key in _ONOFF_ONLY if key in self.selection_optional]
        if onoff:
            log.info("%s: %s exist only for on-off datasets; dataset %r is a MapDataset, so they are not "
                     "computed (as in gammapy)", self.tag, ", ".join(onoff), dataset.name)
        geom = dataset.counts.geom.to_image().to_cube([energy_axis])
        maps = {}
        for name, values in data.items():
            values = np.array(values, dtype=float)
            values[~mask] = np.nan
            maps[name] = Map.from_geom(geom, data=values, unit="")
        from ...modeling.models import SkyModel

        meta = {"n_sigma": self.n_sigma, "n_sigma_ul": self.n_sigma_ul,
                "n_sigma_sensitivity": self.n_sigma_sensitivity, "sed_type_init": "likelihood"}
        if self.apply_threshold_sensitivity:
            meta["gamma_min_sensitivity"] = self.gamma_min_sensitivity
            meta["bkg_syst_fraction_sensitivity"] = self.bkg_syst_fraction_sensitivity
        return FluxMaps(maps, reference_model=SkyModel(spectral_model=self.spectral_model, name="excess-ref"),
                        meta=meta, gti=dataset.gti)
