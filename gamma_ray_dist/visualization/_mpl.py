"""Lazy access to matplotlib (an optional dependency: ``pip install gamma_ray_dist[plot]``)."""
from __future__ import annotations

__all__ = ["pyplot", "MISSING_MATPLOTLIB"]

MISSING_MATPLOTLIB = (
    "Plotting needs matplotlib, an optional dependency of gamma_ray_dist. "
    "Install it with:  pip install gamma_ray_dist[plot]"
)


def pyplot():
    """Return ``matplotlib.pyplot``; raise a clear ImportError when matplotlib is missing."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(MISSING_MATPLOTLIB) from exc
    return plt


def gca(ax=None):
    """``ax`` or the current axes of the current figure."""
    plt = pyplot()
    return plt.gca() if ax is None else ax
