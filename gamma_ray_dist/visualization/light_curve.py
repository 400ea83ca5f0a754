"""Light-curve plot: flux of each time bin against time, with errors and upper limits (as gammapy).

Time on the x axis as MJD (tt), bins drawn as horizontal error bars from ``time_min`` to ``time_max``;
points whose ``is_ul`` is set are drawn at their upper limit with a downward arrow; empty time bins
(NaN flux) are left out of the plot.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy import units as u

from ._mpl import gca
from .spectral import DEFAULT_UNIT

__all__ = ["light_curve_values", "plot_light_curve"]


def light_curve_values(light_curve: Any, sed_type: str = "flux", energy_index: int = 0) -> dict:
    """Plain arrays of one energy bin of a light curve.

    Returns
    -------
    values : dict
        ``time`` (bin centres, MJD tt), ``time_err`` (half widths, d), ``value``, ``errn``, ``errp``
        (errn/errp fall back to the symmetric error), ``ul`` (NaN when absent), ``is_ul`` (bool) in
        ``DEFAULT_UNIT[sed_type]``.
    """
    if sed_type not in ("dnde", "e2dnde", "flux", "eflux", "norm"):
        raise ValueError(f"Not a valid SED type for a light curve: {sed_type!r}")
    t0 = np.asarray(light_curve.time_min.tt.mjd, dtype=float)
    t1 = np.asarray(light_curve.time_max.tt.mjd, dtype=float)
    unit = DEFAULT_UNIT[sed_type]

    def get(name: str) -> np.ndarray | None:
        try:
            value = getattr(light_curve, name)
        except (AttributeError, ValueError):
            return None
        value = u.Quantity(value).to_value(unit) if isinstance(value, u.Quantity) else np.asarray(value, float)
        return np.asarray(value, dtype=float)[:, energy_index]

    value = get(sed_type)
    err = get(f"{sed_type}_err")
    errn, errp = get(f"{sed_type}_errn"), get(f"{sed_type}_errp")
    nan = np.full(t0.shape, np.nan)
    err = nan if err is None else err
    ul = get(f"{sed_type}_ul") if light_curve.has_ul else None
    return dict(time=0.5 * (t0 + t1), time_err=0.5 * (t1 - t0), value=value,
                errn=err if errn is None else errn, errp=err if errp is None else errp,
                ul=nan if ul is None else ul,
                is_ul=np.asarray(light_curve.is_ul, bool)[:, energy_index] & (ul is not None))


def plot_light_curve(light_curve: Any, ax: Any = None, sed_type: str | None = None, energy_index: int = 0,
                     **kwargs: Any) -> Any:
    """Flux vs time with error bars; upper limits as downward arrows.

    Parameters
    ----------
    light_curve : `~gamma_ray_dist.estimators.FluxPoints`
        Flux points with a time axis (from `LightCurveEstimator`).
    ax : `~matplotlib.axes.Axes`, optional
    sed_type : {"flux", "dnde", "e2dnde", "eflux", "norm"}, optional
        Default "flux".
    energy_index : int
        Energy bin to draw.
    **kwargs
        Passed to ``ax.errorbar`` (default marker "o", no line).

    Returns
    -------
    ax : `~matplotlib.axes.Axes`
    """
    ax = gca(ax)
    sed_type = sed_type or "flux"
    v = light_curve_values(light_curve, sed_type=sed_type, energy_index=energy_index)
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("linestyle", "none")
    ok = np.isfinite(v["value"]) & ~v["is_ul"]
    bars = ax.errorbar(v["time"][ok], v["value"][ok], xerr=v["time_err"][ok],
                       yerr=[v["errn"][ok], v["errp"][ok]], **kwargs)
    ul = v["is_ul"] & np.isfinite(v["ul"])
    if np.any(ul):
        color = bars[0].get_color()
        ax.errorbar(v["time"][ul], v["ul"][ul], xerr=v["time_err"][ul], yerr=0.25 * v["ul"][ul], uplims=True,
                    marker="none", linestyle="none", color=color)
    ax.ticklabel_format(axis="x", useOffset=False)
    ax.set_xlabel("Time [MJD]")
    ax.set_ylabel(f"{sed_type} [{DEFAULT_UNIT[sed_type].to_string()}]")
    return ax
