"""Energy dispersion versus true energy, migration and FoV offset (GADF edisp_2d)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .core import TableIRF, to_canonical

__all__ = ["EnergyDispersion2D", "log_centers"]


def log_centers(edges: np.ndarray) -> np.ndarray:
    """Centres of log-spaced bins (geometric means), as gammapy's log-interpolated MapAxis."""
    edges = np.asarray(edges, dtype=np.float64)
    return np.exp(0.5 * (np.log(edges[:-1]) + np.log(edges[1:])))


class EnergyDispersion2D(TableIRF):
    """Migration probability density, axes (energy_true [TeV, log], migra [lin], offset [deg, lin]).

    Evaluation as gammapy: linear interpolation, clipped at zero; a point is set to 0 when it is
    outside the offset axis, or outside *both* the energy_true and migra axes.
    """

    tag = "edisp_2d"
    required_axes = ("energy_true", "migra", "offset")
    column = "MATRIX"
    canonical_unit = ""
    default_hdu = "ENERGY DISPERSION"

    def _mask_out_bounds(self, invalid):
        return (invalid[0] & invalid[1]) | invalid[2]

    def migra_pdf_values(self, offset_deg: np.ndarray, energy_true: np.ndarray) -> np.ndarray:
        """Migration pdf on the IRF migra centres, normalised along migra as gammapy's EDispMap.

        Returns an array of shape ``(n_energy_true, n_migra) + offset.shape``.
        """
        off = np.asarray(offset_deg, dtype=np.float64)
        e = np.asarray(energy_true, dtype=np.float64).ravel()
        migra = self.axes["migra"]
        nd = off.ndim
        values = self.evaluate_values(
            energy_true=e.reshape((-1, 1) + (1,) * nd),
            migra=migra.center.reshape((1, -1) + (1,) * nd),
            offset=off[None, None],
        )
        width = migra.bin_width.reshape((1, -1) + (1,) * nd)
        total = np.cumsum(values * width, axis=1).max(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            normed = values / total
        return np.nan_to_num(normed)

    def to_edisp_kernel_values(
        self,
        offset_deg: np.ndarray,
        energy_true_edges: np.ndarray | None,
        energy_edges: np.ndarray,
        threshold: float = 1e-8,
        energy_true_centers: np.ndarray | None = None,
    ) -> np.ndarray:
        """Energy-dispersion kernel: probability of each reconstructed bin per true-energy bin.

        Reproduces gammapy's ``make_edisp_kernel_map`` (and ``to_edisp_kernel``): the migration pdf
        is evaluated at the true-energy bin centres and the IRF migra centres, normalised along
        migra, its cumulative integral (0 at the first migra edge, piecewise linear between migra
        edges, constant outside) is read at ``energy_edges / energy_true`` and differenced; negative
        values are clipped and values below ``threshold`` set to 0.

        Parameters
        ----------
        offset_deg : np.ndarray
            FoV offsets in deg (any shape, e.g. one per coarse pixel).
        energy_true_edges : np.ndarray or None
            True-energy bin edges in TeV (centres are their geometric means).
        energy_edges : np.ndarray
            Reconstructed-energy bin edges in TeV.
        threshold : float
            Values below are set to zero (gammapy default 1e-8).
        energy_true_centers : np.ndarray, optional
            True-energy bin centres in TeV; overrides ``energy_true_edges``.

        Returns
        -------
        np.ndarray
            float64, shape ``(n_energy_true, n_energy) + offset.shape``.
        """
        if energy_true_centers is None:
            if energy_true_edges is None:
                raise ValueError("give energy_true_edges or energy_true_centers")
            e_true = log_centers(energy_true_edges)
        else:
            e_true = np.asarray(energy_true_centers, dtype=np.float64).ravel()
        e_edges = np.asarray(energy_edges, dtype=np.float64).ravel()
        off = np.asarray(offset_deg, dtype=np.float64)
        pdf = self.migra_pdf_values(off, e_true)  # (nE, nM, ...)
        migra = self.axes["migra"]
        nd = off.ndim
        width = migra.bin_width.reshape((1, -1) + (1,) * nd)
        cdf = np.cumsum(pdf * width, axis=1)
        cdf = np.concatenate([np.zeros_like(cdf[:, :1]), cdf], axis=1)  # on migra edges
        x = migra.edges
        m = e_edges[None, :] / e_true[:, None]  # (nE, n_edges)
        idx = np.clip(np.searchsorted(x, m, side="right") - 1, 0, len(x) - 2)
        t = np.clip((m - x[idx]) / (x[idx + 1] - x[idx]), 0.0, 1.0)
        rows = np.arange(len(e_true))[:, None]
        lo = cdf[rows, idx]
        hi = cdf[rows, idx + 1]
        t = t.reshape(t.shape + (1,) * nd)
        values = lo * (1.0 - t) + hi * t
        kernel = np.clip(np.diff(values, axis=1), 0, np.inf)
        kernel[kernel < threshold] = 0.0
        return kernel

    def to_edisp_kernel(self, offset: Any, energy_axis_true: Any, energy_axis: Any,
                        threshold: float = 1e-8) -> np.ndarray:
        """Kernel matrix ``(n_energy_true, n_energy)`` at one offset; edges as Quantities or TeV."""
        return self.to_edisp_kernel_values(
            to_canonical(offset, "offset"),
            to_canonical(energy_axis_true, "energy_true"),
            to_canonical(energy_axis, "energy"),
            threshold=threshold,
        )
