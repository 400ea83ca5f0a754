"""Background rate models: bkg_3d (energy, fov_lon, fov_lat) and bkg_2d (energy, offset).

Files store s-1 MeV-1 sr-1; ``data`` and evaluations are in s-1 TeV-1 sr-1. Evaluation as gammapy:
values interpolated in log (zeros clipped to the file dtype's tiny), axis energies in log, clipped at
zero and 0 outside the axes.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from astropy import units as u

from ..errors import MissingColumns
from .core import TableIRF, to_canonical
from .interp import trapz_loglog
from .io import HDUContext, column_unit, read_column

__all__ = ["Background3D", "Background2D", "BackgroundIRF"]

FILE_UNIT = "s-1 MeV-1 sr-1"


class BackgroundIRF(TableIRF):
    """Common reading and energy integration of background rate models."""

    canonical_unit = "s-1 TeV-1 sr-1"
    default_hdu = "BACKGROUND"
    values_scale = "log"
    column = "BKG"

    @classmethod
    def _reco_energy(cls, ctx: HDUContext) -> bool:
        return True

    @classmethod
    def _allow_transposed(cls) -> bool:
        return True

    @classmethod
    def _data_column(cls, ctx: HDUContext) -> str:
        # GADF says BKG; CTA 1DC files use BGD (gammapy reads both)
        for name in ("BKG", "BGD"):
            if name in ctx.colnames:
                return name
        raise ctx.error(MissingColumns, f"missing background column 'BKG' (or 'BGD'); has {ctx.colnames}")

    @classmethod
    def _read_values(cls, ctx: HDUContext, column: str):
        if column_unit(ctx, column) is None:
            warnings.warn(
                f"{ctx.filename or ''} HDU '{ctx.name}': background column '{column}' has no valid "
                f"unit ({ctx.hdu.columns[column].unit!r}); assuming {FILE_UNIT} as gammapy does",
                stacklevel=3,
            )
        return read_column(ctx, column, cls.canonical_unit, default_unit=FILE_UNIT)

    def _integrate(self, energy_edges: np.ndarray, **spatial: np.ndarray) -> np.ndarray:
        edges = np.asarray(energy_edges, dtype=np.float64).ravel()
        nd = max(np.ndim(v) for v in spatial.values())
        spatial = {k: np.asarray(v, dtype=np.float64)[None] for k, v in spatial.items()}
        values = self.evaluate_values(energy=edges.reshape((-1,) + (1,) * nd), **spatial)
        shape = values.shape
        e = np.broadcast_to(edges.reshape((-1,) + (1,) * nd), shape)
        return trapz_loglog(values, e, axis=0)


class Background3D(BackgroundIRF):
    """Background rate in FoV coordinates, axes (energy [TeV, log], fov_lon [deg], fov_lat [deg])."""

    tag = "bkg_3d"
    required_axes = ("energy", "fov_lon", "fov_lat")

    def integrate_log_log_values(self, energy_edges: np.ndarray, fov_lon: np.ndarray,
                                 fov_lat: np.ndarray) -> np.ndarray:
        """Rate integrated over reconstructed-energy bins, in s-1 sr-1.

        As gammapy's ``integrate_project_irf_on_geom``: the rate is evaluated at the bin edges and
        integrated with ``trapz_loglog`` (power law between edges).

        Parameters
        ----------
        energy_edges : np.ndarray
            Reconstructed-energy bin edges in TeV.
        fov_lon, fov_lat : np.ndarray
            FoV coordinates in deg (broadcastable; the caller applies the REVERSE_LON_RADEC sign).

        Returns
        -------
        np.ndarray
            float64, shape ``(n_energy_bins,) + broadcast(fov_lon, fov_lat).shape``.
        """
        return self._integrate(energy_edges, fov_lon=fov_lon, fov_lat=fov_lat)

    def integrate_log_log(self, energy_edges: Any, fov_lon: Any, fov_lat: Any) -> u.Quantity:
        """:meth:`integrate_log_log_values` with Quantity or canonical-float inputs."""
        return u.Quantity(self.integrate_log_log_values(
            to_canonical(energy_edges, "energy"), to_canonical(fov_lon, "fov_lon"),
            to_canonical(fov_lat, "fov_lat")), "s-1 sr-1")


class Background2D(BackgroundIRF):
    """Radially symmetric background rate, axes (energy [TeV, log], offset [deg])."""

    tag = "bkg_2d"
    required_axes = ("energy", "offset")

    def integrate_log_log_values(self, energy_edges: np.ndarray, offset: np.ndarray) -> np.ndarray:
        """Rate integrated over reconstructed-energy bins (s-1 sr-1), shape ``(n_bins,) + offset.shape``."""
        return self._integrate(energy_edges, offset=offset)

    def integrate_log_log(self, energy_edges: Any, offset: Any) -> u.Quantity:
        """:meth:`integrate_log_log_values` with Quantity or canonical-float inputs."""
        return u.Quantity(self.integrate_log_log_values(
            to_canonical(energy_edges, "energy"), to_canonical(offset, "offset")), "s-1 sr-1")
