"""Per-observation IRF preparation, vectorised: background missing-data filling.

`interp_missing_values` gives the same values as ``TableIRF.interp_missing_data`` (gammapy's
``IRF.interp_missing_data``: ``np.interp`` over bin indices of the valid values, in the values'
scale, points outside the valid range kept) without a Python loop over table lines.
"""
from __future__ import annotations

import numpy as np

from ..irf.axes import scale_forward, scale_inverse

__all__ = ["interp_missing_values", "interp_missing_data"]


def interp_missing_values(raw: np.ndarray, axis: int, scale: str = "log") -> np.ndarray:
    """Fill zero / non-finite entries of ``raw`` along ``axis`` by interpolation between the nearest
    valid neighbours (in ``scale``); entries before the first or after the last valid one are kept.
    Returns a new array of ``raw``'s dtype."""
    data = np.moveaxis(np.array(raw, copy=True), axis, -1)
    bad = ~np.isfinite(data) | (data == 0.0)
    if not bad.any():
        return np.moveaxis(data, -1, axis)
    n = data.shape[-1]
    k = np.arange(n)
    # previous / next valid index of every entry (-1 / n when none)
    prev = np.maximum.accumulate(np.where(bad, -1, k), axis=-1)
    nxt = np.flip(np.minimum.accumulate(np.flip(np.where(bad, n, k), axis=-1), axis=-1), axis=-1)
    fill = bad & (prev >= 0) & (nxt < n)
    if fill.any():
        # np.interp works in float64 on the scaled valid values (scaled in the table's dtype)
        scaled = scale_forward(np.where(bad, 1, data), scale).astype(np.float64)
        p, q = prev[fill], nxt[fill]
        lines = np.nonzero(fill)[:-1]
        fp, fq = scaled[lines + (p,)], scaled[lines + (q,)]
        x = k[np.nonzero(fill)[-1]]
        slope = (fq - fp) / (q - p)
        values = slope * (x - p) + fp
        data[fill] = scale_inverse(values, scale)
    return np.moveaxis(data, -1, axis)


def interp_missing_data(irf, axis_name: str):
    """Copy of a tabulated IRF with missing data filled along ``axis_name`` (vectorised)."""
    axis = irf.axes.index(axis_name)
    raw = interp_missing_values(irf._raw, axis, irf.values_scale)
    return type(irf)(irf.axes, raw, factor=irf._factor, meta=irf.meta, fov_alignment=irf.fov_alignment)
