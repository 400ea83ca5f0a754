"""Grid interpolation of IRF tables, following gammapy's ``IRF.evaluate`` conventions.

gammapy interpolates linearly on the axis centres, each axis in its own scale (log for energies),
values optionally in log; it extrapolates inside the interpolator, clips the result at zero and then
sets every point outside the axis *edges* (and every non-finite result) to ``fill_value``. Axes of
length one are ignored by the interpolation.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from scipy.interpolate import RegularGridInterpolator

from .axes import IRFAxis, scale_forward, scale_inverse

__all__ = ["GridInterpolator", "trapz_loglog"]


class GridInterpolator:
    """Linear interpolation on an IRF grid, in the axes' and values' scales.

    Parameters
    ----------
    axes : sequence of IRFAxis
        Axes in data order.
    values : np.ndarray
        Data in the file dtype (log scaling is applied in that dtype, as gammapy does).
    values_scale : {"lin", "log"}
        Scale in which values are interpolated.
    fill_value : float or None
        Value outside the axis edges; None keeps the extrapolated values.
    mask_out_bounds : callable, optional
        ``f(list_of_invalid_bool_arrays) -> bool array``; default: invalid on any axis.
    factor : float
        Multiplied into the result (unit conversion from file to canonical units).
    """

    def __init__(
        self,
        axes: Sequence[IRFAxis],
        values: np.ndarray,
        values_scale: str = "lin",
        fill_value: float | None = 0.0,
        mask_out_bounds: Callable | None = None,
        factor: float = 1.0,
    ):
        self.axes = list(axes)
        self.values_scale = values_scale
        self.fill_value = fill_value
        self.mask_out_bounds = mask_out_bounds
        self.factor = float(factor)
        self._include = [ax.nbin > 1 for ax in self.axes]
        scaled = scale_forward(values, values_scale)
        points = [scale_forward(ax.center, ax.interp) for ax, inc in zip(self.axes, self._include) if inc]
        if not points:
            raise ValueError("cannot interpolate an IRF whose axes all have a single bin")
        scaled = np.asarray(scaled).reshape([ax.nbin for ax, inc in zip(self.axes, self._include) if inc])
        self._rgi = RegularGridInterpolator(
            points, scaled, method="linear", bounds_error=False, fill_value=None
        )

    def __call__(self, *coords: np.ndarray) -> np.ndarray:
        """Interpolate at broadcastable coordinate arrays (canonical units), float64 out."""
        coords = np.broadcast_arrays(*[np.asarray(c, dtype=np.float64) for c in coords])
        shape = coords[0].shape
        pts = [
            scale_forward(c, ax.interp).ravel()
            for c, ax, inc in zip(coords, self.axes, self._include)
            if inc
        ]
        values = self._rgi(np.stack(pts, axis=-1)).reshape(shape)
        values = scale_inverse(values, self.values_scale)
        values = np.clip(values, 0, np.inf)
        if self.fill_value is not None:
            invalid = [ax.coord_to_idx(c) == -1 for ax, c in zip(self.axes, coords)]
            if self.mask_out_bounds is None:
                mask = np.any(invalid, axis=0)
            else:
                mask = self.mask_out_bounds(invalid)
            values = np.where(mask | ~np.isfinite(values), self.fill_value, values)
        if self.factor != 1.0:
            values = values * self.factor
        return np.asarray(values, dtype=np.float64)


def trapz_loglog(y: np.ndarray, x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Integrate ``y(x)`` bin by bin along ``axis`` assuming a power law in each bin.

    Same maths as gammapy's ``trapz_loglog``: the local index from the two end values (zeros clipped
    to the float64 tiny before the log), analytic power-law integral, ``log`` form where the index is
    one, zero where both ends are zero. Returns one value less than ``y`` along ``axis``.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, 0)
    x_lo, x_hi = x[:-1], x[1:]
    y_lo, y_hi = y[:-1], y[1:]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        index = -scale_forward(y_lo / y_hi, "log") / scale_forward(x_lo / x_hi, "log")
        index = np.where(np.isnan(index), np.inf, index)
        val = 1.0 - index
        integral = y_lo * x_lo / val * (np.power(x_hi / x_lo, val) - 1.0)
        near_one = np.isclose(val, 0)
        if np.any(near_one):
            integral = np.where(near_one, y_lo * x_lo * np.log(x_hi / x_lo), integral)
    return np.moveaxis(integral, 0, axis)
