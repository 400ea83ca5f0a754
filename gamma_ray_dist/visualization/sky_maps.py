"""Figures of the sky-map step: significance map with source positions, significance distribution."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["plot_significance_map", "plot_significance_distribution"]


def plot_significance_map(sqrt_ts_map: Any, positions: Optional[list] = None, ax: Any = None,
                          vmin: float = -5, vmax: Optional[float] = None, cmap: str = "coolwarm", **kwargs):
    """The first energy bin of a significance map (`WcsNDMap`) with ``positions`` ((name, SkyCoord)
    pairs) marked; returns the axes."""
    from ._mpl import pyplot

    plt = pyplot()
    geom = sqrt_ts_map.geom.to_image()
    if ax is None:
        fig = plt.figure(figsize=(6, 5))
        ax = fig.add_subplot(1, 1, 1, projection=geom.wcs)
    data = np.asarray(sqrt_ts_map.data, dtype=float).reshape((-1,) + geom.data_shape)[0]
    vmax = np.nanmax(data) if vmax is None else vmax
    im = ax.imshow(data, origin="lower", vmin=vmin, vmax=vmax, cmap=cmap, **kwargs)
    ax.figure.colorbar(im, ax=ax, label=r"significance $\sqrt{TS}$")  # ax's figure, not pyplot's current one
    for name, pos in positions or []:
        transform = ax.get_transform(pos.frame.name) if hasattr(ax, "get_transform") else None
        sph = pos.spherical
        kw = {"transform": transform} if transform is not None else {}
        ax.plot(sph.lon.deg, sph.lat.deg, marker="+", color="k", markersize=12, mew=1.5, **kw)
        ax.text(sph.lon.deg, sph.lat.deg, f" {name}", color="k", fontsize=8, **kw)
    ax.set_title("Significance")
    return ax


def plot_significance_distribution(values: Any, mean: Optional[float] = None, sigma: Optional[float] = None,
                                   ax: Any = None, bins: Any = None):
    """Histogram (density) of significance values outside the exclusion regions, the fitted Gaussian
    (``mean``, ``sigma``; fitted here when not given) and the standard normal; returns the axes."""
    from ._mpl import pyplot
    from scipy.stats import norm

    plt = pyplot()
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if mean is None or sigma is None:
        mean, sigma = (float(np.mean(values)), float(np.std(values))) if values.size else (np.nan, np.nan)
    ax = plt.figure(figsize=(6, 4)).add_subplot(1, 1, 1) if ax is None else ax
    bins = np.linspace(-6, 8, 71) if bins is None else bins
    ax.hist(values, bins=bins, density=True, histtype="stepfilled", alpha=0.5, color="gray",
            label=f"outside exclusion ({values.size} px)")
    x = np.linspace(bins[0], bins[-1], 400)
    ax.plot(x, norm.pdf(x, mean, sigma), color="C3", label=f"fit: mean {mean:.2f}, width {sigma:.2f}")
    ax.plot(x, norm.pdf(x), color="k", ls="--", label="standard normal")
    ax.set_yscale("log")
    ax.set_ylim(1e-5, 1)
    ax.set_xlabel(r"significance $\sqrt{TS}$")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax
