"""Interpolation scales and the 1D piecewise-linear interpolation used by map axes.

The axis <-> pixel transforms reproduce ``scipy.interpolate.interp1d(kind="linear",
fill_value="extrapolate")`` operation by operation, so edges and centers match gammapy to the last bit.
"""
from __future__ import annotations

import numpy as np

__all__ = ["scale_values", "scale_inverse", "interp1d_extrapolate", "INTERP_CHOICES"]

INTERP_CHOICES = ("lin", "log", "sqrt")


def _tiny(values: np.ndarray) -> float:
    if np.issubdtype(values.dtype, np.floating):
        return np.finfo(values.dtype).tiny
    return np.finfo(np.float32).tiny


def scale_values(values, interp: str) -> np.ndarray:
    """Map coordinate values to the interpolation space of ``interp`` ("lin", "log", "sqrt")."""
    values = np.asarray(values)
    if interp in ("lin", "linear"):
        return values
    if interp == "log":
        # Clip at the smallest normal float so that zeros give a finite (very negative) log.
        return np.log(np.clip(values, _tiny(values), np.inf))
    if interp == "sqrt":
        sign = np.sign(values)
        return sign * np.sqrt(sign * values)
    raise ValueError(f"interp must be one of {INTERP_CHOICES}, got {interp!r}")


def scale_inverse(values, interp: str) -> np.ndarray:
    """Inverse of :func:`scale_values`."""
    values = np.asarray(values)
    if interp in ("lin", "linear"):
        return values
    if interp == "log":
        out = np.exp(values)
        tiny = _tiny(out)
        return np.where(np.abs(out) - tiny <= tiny, 0, out)
    if interp == "sqrt":
        return np.power(values, 2)
    raise ValueError(f"interp must be one of {INTERP_CHOICES}, got {interp!r}")


def interp1d_extrapolate(x: np.ndarray, y: np.ndarray, xnew) -> np.ndarray:
    """Piecewise-linear interpolation with linear extrapolation beyond both ends.

    Parameters
    ----------
    x, y : ndarray
        Nodes (monotonic, either direction) and values.
    xnew : array-like
        Points to evaluate.

    Returns
    -------
    ndarray
        Interpolated values, same shape as ``xnew``.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    xnew = np.asarray(xnew, dtype=float)
    if x.size == 1:
        return np.full(xnew.shape, y[0])
    if x[0] > x[-1]:
        x, y = x[::-1], y[::-1]
    # Same interval choice and arithmetic as scipy's interp1d._call_linear.
    idx = np.clip(np.searchsorted(x, xnew), 1, x.size - 1)
    lo = idx - 1
    slope = (y[idx] - y[lo]) / (x[idx] - x[lo])
    return slope * (xnew - x[lo]) + y[lo]
