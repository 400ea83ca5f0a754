"""Effective area versus true energy and FoV offset (GADF aeff_2d)."""
from __future__ import annotations

import numpy as np

from .core import TableIRF

__all__ = ["EffectiveAreaTable2D"]


class EffectiveAreaTable2D(TableIRF):
    """Effective area in m2, axes (energy_true [TeV, log], offset [deg, lin]).

    Evaluation as gammapy: linear interpolation (log energy), clipped at zero, 0 outside the axes.
    """

    tag = "aeff_2d"
    required_axes = ("energy_true", "offset")
    column = "EFFAREA"
    canonical_unit = "m2"
    default_hdu = "EFFECTIVE AREA"

    def evaluate_grid_values(self, energy_true: np.ndarray, offset_deg: np.ndarray) -> np.ndarray:
        """Effective area (m2) on the outer grid: shape ``(n_energy,) + offset.shape``.

        Parameters
        ----------
        energy_true : np.ndarray
            True energies in TeV (1D), e.g. the bin centres of an exposure map axis.
        offset_deg : np.ndarray
            FoV offsets in deg (any shape), e.g. of each pixel centre.
        """
        e = np.asarray(energy_true, dtype=np.float64).ravel()
        off = np.asarray(offset_deg, dtype=np.float64)
        return self.evaluate_values(energy_true=e.reshape((-1,) + (1,) * off.ndim), offset=off[None])
