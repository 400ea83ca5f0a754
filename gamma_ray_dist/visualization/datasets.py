"""Dataset plots: predicted counts per model, spatial and spectral residuals (as gammapy's
``plot_npred_signal`` and ``MapDataset.plot_residuals*``)."""
from __future__ import annotations

import numpy as np

from ._mpl import gca
from .maps import plot_map, sky_axes

__all__ = [
    "plot_npred_signal",
    "npred_signal_spectra",
    "compute_residuals",
    "residuals_spatial_map",
    "residuals_spectral",
    "plot_residuals_spatial",
    "plot_residuals_spectral",
    "plot_residuals",
    "RESIDUAL_LABELS",
]

RESIDUAL_LABELS = {
    "diff": "data - model",
    "diff/model": "(data - model) / model",
    "diff/sqrt(model)": "(data - model) / sqrt(model)",
}


# ---- numbers behind the plots (no matplotlib) ----------------------------------------------
def compute_residuals(data, model, method: str = "diff"):
    """Residuals of arrays (or maps) ``data`` and ``model`` with gammapy's three methods."""
    if method not in RESIDUAL_LABELS:
        raise ValueError(f"Invalid method {method!r} for residuals; choose one of {list(RESIDUAL_LABELS)}")
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "diff":
            return data - model
        if method == "diff/model":
            return (data - model) / model
        return (data - model) / np.sqrt(model)


def _is_background_model(dataset, model) -> bool:
    bkg = getattr(dataset, "background_model", None)
    if bkg is not None and model is bkg:
        return True
    return type(model).__name__ == "FoVBackgroundModel"


def _energy_axis(dataset):
    return dataset.counts.geom.axes["energy"]


def npred_signal_spectra(dataset, model_names=None, region=None) -> dict:
    """Predicted signal counts per energy bin for each source model, summed over space (or ``region``).

    Uses ``dataset.npred_signal(model_names=[name])`` (gammapy's interface); when the dataset only
    offers ``npred_signal()`` it is used for a single source model.

    Returns
    -------
    dict of str to ndarray
        Model name -> float64 array (n_energy,).
    """
    models = [m for m in (dataset.models or []) if not _is_background_model(dataset, m)]
    names = [m.name for m in models]
    if model_names is not None:
        unknown = [n for n in model_names if n not in names]
        if unknown:
            raise ValueError(f"models {unknown} are not source models of dataset {dataset.name!r}: {names}")
        names = [n for n in names if n in model_names]
    spatial = _region_weights(dataset, region)
    out = {}
    for name in names:
        try:
            npred = dataset.npred_signal(model_names=[name])
        except TypeError:
            if len(models) != 1:
                raise NotImplementedError(
                    "per-model predicted counts need MapDataset.npred_signal(model_names=...)") from None
            npred = dataset.npred_signal()
        out[name] = _sum_spatial(npred, spatial)
    return out


def _region_weights(dataset, region):
    """Boolean (ny, nx) pixel selection of ``region`` on the counts geometry (None: all pixels)."""
    if region is None:
        return None
    return np.asarray(dataset.counts.geom.to_image().region_mask(region).data, bool).reshape(
        dataset.counts.geom.data_shape[-2:])


def _sum_spatial(m, spatial) -> np.ndarray:
    data = np.asarray(getattr(m, "data", m), dtype=float)
    if spatial is not None:
        data = np.where(spatial, data, 0.0)
    return np.nansum(data, axis=(-2, -1))


def _masked_counts_npred(dataset):
    counts = np.asarray(dataset.counts.data, dtype=float)
    npred = np.asarray(dataset.npred().data, dtype=float)
    mask = dataset.mask
    if mask is not None:
        mask = np.asarray(mask.data, bool)
        counts = counts * mask
        npred = npred * mask
    return counts, npred, mask


def residuals_spatial_map(dataset, method: str = "diff", smooth_kernel: str = "gauss",
                          smooth_radius="0.1 deg"):
    """Residual image as gammapy's ``plot_residuals_spatial``: counts and npred masked, summed over
    energy, each smoothed, then combined; pixels outside the mask are NaN."""
    counts, npred, mask = _masked_counts_npred(dataset)
    geom = dataset.counts.geom
    cls = type(dataset.counts)
    image_geom = geom.to_image()
    c_img = cls(image_geom, data=counts.sum(axis=0), dtype=float).smooth(smooth_radius, kernel=smooth_kernel)
    n_img = cls(image_geom, data=npred.sum(axis=0), dtype=float).smooth(smooth_radius, kernel=smooth_kernel)
    data = compute_residuals(np.asarray(c_img.data), np.asarray(n_img.data), method)
    if mask is not None:
        data = np.where(mask.any(axis=0), data, np.nan)
    return cls(image_geom, data=data, dtype=float)


def residuals_spectral(dataset, method: str = "diff", region=None) -> dict:
    """Spectral residuals in ``region`` (all pixels by default), as gammapy's ``plot_residuals_spectral``.

    Returns a dict with ``energy_edges`` (TeV), ``counts``, ``npred``, ``residuals`` and ``yerr``
    (Cash: sqrt(counts), divided by sqrt(npred) for ``diff/sqrt(model)``).
    """
    if method not in ("diff", "diff/sqrt(model)"):
        raise ValueError('Invalid method, choose between "diff" and "diff/sqrt(model)"')
    counts, npred, _ = _masked_counts_npred(dataset)
    spatial = _region_weights(dataset, region)
    counts_spec, npred_spec = _sum_spatial(counts, spatial), _sum_spatial(npred, spatial)
    residuals = compute_residuals(counts_spec, npred_spec, method)
    yerr = np.sqrt(counts_spec)
    if method == "diff/sqrt(model)":
        with np.errstate(invalid="ignore", divide="ignore"):
            yerr = yerr / np.sqrt(npred_spec)
    edges = _energy_axis(dataset).edges.to_value("TeV")
    return {"energy_edges": edges, "counts": counts_spec, "npred": npred_spec, "residuals": residuals,
            "yerr": yerr}


# ---- plots -----------------------------------------------------------------------------------
def _errorbar_bins(ax, edges, values, **kwargs):
    center = np.sqrt(edges[:-1] * edges[1:])
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("markersize", 4)
    kwargs.setdefault("ls", "None")
    kwargs.setdefault("xerr", (center - edges[:-1], edges[1:] - center))
    return ax.errorbar(center, values, **kwargs)


def plot_npred_signal(dataset, ax=None, model_names=None, region=None, **kwargs):
    """Predicted counts per energy bin of each source model, their sum and the background.

    Parameters
    ----------
    dataset : `MapDataset`
    ax : `~matplotlib.axes.Axes`, optional
    model_names : list of str, optional
        Source models to show (default: all but the background model).
    region : `regions.SkyRegion` or DS9 string, optional
        Sum over the pixels inside it instead of the whole map.
    **kwargs
        Passed to ``errorbar`` for every curve.

    Returns
    -------
    ax : `~matplotlib.axes.Axes`
    """
    ax = gca(ax)
    edges = _energy_axis(dataset).edges.to_value("TeV")
    spectra = npred_signal_spectra(dataset, model_names=model_names, region=region)
    spatial = _region_weights(dataset, region)
    for name, values in spectra.items():
        _errorbar_bins(ax, edges, values, label=name, **dict(kwargs))
    if len(spectra) > 1:
        _errorbar_bins(ax, edges, np.sum(list(spectra.values()), axis=0), label="stacked models", **dict(kwargs))
    background = dataset.npred_background()
    if background is not None:
        _errorbar_bins(ax, edges, _sum_spatial(background, spatial), label="background", **dict(kwargs))
    ax.set_xscale("log")
    ax.set_yscale("log", nonpositive="clip")
    ax.set_xlabel("Energy [TeV]")
    ax.set_ylabel("Predicted counts")
    ax.legend()
    return ax


def plot_residuals_spatial(dataset, ax=None, method: str = "diff", smooth_kernel: str = "gauss",
                           smooth_radius="0.1 deg", **kwargs):
    """Residual image summed over energy (see `residuals_spatial_map`), on WCS axes.

    ``kwargs`` go to `plot_map` (defaults ``add_cbar=True``, ``cmap="coolwarm"``, ``vmin=-5``,
    ``vmax=5``).
    """
    residuals = residuals_spatial_map(dataset, method=method, smooth_kernel=smooth_kernel,
                                      smooth_radius=smooth_radius)
    kwargs.setdefault("add_cbar", True)
    kwargs.setdefault("cmap", "coolwarm")
    kwargs.setdefault("vmin", -5)
    kwargs.setdefault("vmax", 5)
    ax = plot_map(residuals, ax=ax, **kwargs)
    ax.set_title(f"Residuals ({RESIDUAL_LABELS[method]})", fontsize="medium")
    return ax


def _shade_mask(ax, edges, mask_1d, **kwargs):
    """Shade contiguous runs of True energy bins."""
    mask_1d = np.asarray(mask_1d, bool)
    label = kwargs.pop("label", None)
    start = None
    for i, flag in enumerate(list(mask_1d) + [False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            ax.axvspan(edges[start], edges[i], label=label, **kwargs)
            label = None
            start = None


def plot_residuals_spectral(dataset, ax=None, method: str = "diff", region=None, kwargs_fit=None,
                            kwargs_safe=None, **kwargs):
    """Counts minus npred per energy bin inside ``region`` with Poisson error bars, and the energy
    ranges of the fit and safe masks shaded."""
    ax = gca(ax)
    res = residuals_spectral(dataset, method=method, region=region)
    edges, residuals, yerr = res["energy_edges"], res["residuals"], res["yerr"]
    kwargs.setdefault("color", kwargs.pop("c", "black"))
    _errorbar_bins(ax, edges, residuals, yerr=yerr, **kwargs)
    ax.axhline(0, color=kwargs["color"], lw=0.5)
    ax.set_xscale("log")
    ax.set_yscale("linear")
    ax.set_xlabel("Energy [TeV]")
    ax.set_ylabel(f"Residuals ({RESIDUAL_LABELS[method]})")
    lo, hi = np.nanmin(residuals - yerr), np.nanmax(residuals + yerr)
    if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
        ax.set_ylim(lo - 0.05 * abs(lo), hi + 0.05 * abs(hi))
    kwargs_fit = dict(kwargs_fit or {})
    kwargs_safe = dict(kwargs_safe or {})
    kwargs_fit.setdefault("label", "Mask fit")
    kwargs_fit.setdefault("color", "tab:green")
    kwargs_safe.setdefault("label", "Mask safe")
    kwargs_safe.setdefault("color", "black")
    for mask, kw in ((dataset.mask_fit, kwargs_fit), (dataset.mask_safe, kwargs_safe)):
        if mask is not None:
            kw.setdefault("alpha", 0.2)
            per_energy = np.asarray(mask.data, bool).reshape(len(edges) - 1, -1).any(axis=1)
            _shade_mask(ax, edges, per_energy, **kw)
    ax.legend()
    return ax


def plot_residuals(dataset, ax_spatial=None, ax_spectral=None, kwargs_spatial=None, kwargs_spectral=None):
    """Spatial residual image (left) and spectral residuals in a region (right); the region is
    drawn on the image.

    Returns
    -------
    ax_spatial, ax_spectral
    """
    from ._mpl import pyplot

    plt = pyplot()
    if ax_spatial is None or ax_spectral is None:
        fig = plt.figure(figsize=(12, 4))
        if ax_spatial is None:
            ax_spatial = sky_axes(dataset.counts.geom, fig=fig, subplot=(1, 2, 1))
        if ax_spectral is None:
            ax_spectral = fig.add_subplot(1, 2, 2)
    kwargs_spatial = dict(kwargs_spatial or {})
    kwargs_spectral = dict(kwargs_spectral or {})
    plot_residuals_spatial(dataset, ax=ax_spatial, **kwargs_spatial)
    plot_residuals_spectral(dataset, ax=ax_spectral, **kwargs_spectral)
    region = kwargs_spectral.get("region")
    if region is not None:
        from ..maps import parse_regions

        wcs = dataset.counts.geom.to_image().wcs
        for reg in parse_regions(region):
            pix = reg.to_pixel(wcs) if hasattr(reg, "to_pixel") else reg
            pix.plot(ax=ax_spatial, edgecolor="black", facecolor="none")
    return ax_spatial, ax_spectral
