"""Fast evaluation of tabulated IRFs on outer-product coordinate grids.

Map making evaluates IRFs on grids such as (true energies) x (pixels) or (energies) x (migra) x
(pixels). ``TableIRF.evaluate_values`` broadcasts such grids to every point and hands them to scipy's
RegularGridInterpolator, which searches every axis for every point. Here the bracketing index and
weight are computed once per *axis* coordinate and the 2^d corners are gathered with broadcasting
index arrays. Same conventions as `gamma_ray_dist.irf.interp.GridInterpolator` (axis and value
scales, linear extrapolation, clip at 0, fill outside the axis edges, single-bin axes ignored), so
results agree with it (and gammapy) to rounding.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..irf.axes import scale_forward, scale_inverse

__all__ = ["evaluate_outer", "supports_fast"]


def supports_fast(irf) -> bool:
    """True for tabulated IRFs (the fast path needs ``_raw``/``axes``/``values_scale``)."""
    from ..irf.core import TableIRF

    return isinstance(irf, TableIRF)


def _scaled_table(irf) -> np.ndarray:
    cache = irf.__dict__.setdefault("_grd_fast_cache", {})
    if "table" not in cache:
        cache["table"] = np.ascontiguousarray(scale_forward(irf._raw, irf.values_scale), dtype=np.float64)
    return cache["table"]


def _bracket(ax, coord: np.ndarray):
    """(index, weight) of each coordinate between the axis centres, as scipy's ``_find_indices``."""
    pts = scale_forward(ax.center, ax.interp)
    c = scale_forward(np.asarray(coord, dtype=np.float64), ax.interp)
    i = np.clip(np.searchsorted(pts, c) - 1, 0, len(pts) - 2)
    t = (c - pts[i]) / (pts[i + 1] - pts[i])
    return i, t


def evaluate_outer(irf, **coords: np.ndarray) -> np.ndarray:
    """``irf.evaluate_values(**coords)`` for coordinates that broadcast against each other.

    Each coordinate array should be small along the dimensions it does not vary on (e.g. energies
    shaped ``(n, 1, 1)`` and offsets ``(1, ny, nx)``); the cost is then dominated by 2^d gathers of
    the output size. Returns float64 in canonical units.
    """
    names = list(irf.required_axes)
    arrays = [np.asarray(coords[n], dtype=np.float64) for n in names]
    table = _scaled_table(irf)
    idx0, weights, include = [], [], []
    for ax, c in zip(irf.axes, arrays):
        if ax.nbin > 1:
            i, t = _bracket(ax, c)
            idx0.append(i)
            weights.append(t)
            include.append(True)
        else:
            idx0.append(np.zeros(c.shape, dtype=np.intp))
            weights.append(None)
            include.append(False)
    shape = np.broadcast_shapes(*[a.shape for a in arrays])
    out = np.zeros(shape, dtype=np.float64)
    dims = [k for k, inc in enumerate(include) if inc]
    for bits in itertools.product((0, 1), repeat=len(dims)):
        index = list(idx0)
        w = 1.0
        for k, b in zip(dims, bits):
            if b:
                index[k] = idx0[k] + 1
                w = w * weights[k]
            else:
                w = w * (1.0 - weights[k])
        out += table[tuple(index)] * w
    out = np.clip(scale_inverse(out, irf.values_scale), 0, np.inf)
    if irf.fill_value is not None:
        invalid = np.broadcast_arrays(*[ax.coord_to_idx(c) == -1 for ax, c in zip(irf.axes, arrays)])
        mask = irf._mask_out_bounds(invalid)
        out = np.where(mask | ~np.isfinite(out), irf.fill_value, out)
    if irf._factor != 1.0:
        out = out * irf._factor
    return out
