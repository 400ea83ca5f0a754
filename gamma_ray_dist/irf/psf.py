"""Point spread functions: tabulated (psf_table) and the shared PSF maths (containment, PSF maps)."""
from __future__ import annotations

from typing import Any

import numpy as np
from astropy import units as u

from .axes import IRFAxis
from .core import TableIRF, to_canonical
from .interp import GridInterpolator

__all__ = ["PSF3D", "PSFMixin", "RAD_AXIS_DEFAULT_EDGES", "DEG2_PER_SR", "normalize_psf_values"]

#: gammapy's RAD_AXIS_DEFAULT: 0 to 0.66 deg in 66 bins (edges)
RAD_AXIS_DEFAULT_EDGES = np.linspace(0.0, 0.66, 67)
#: square degrees per steradian
DEG2_PER_SR = (180.0 / np.pi) ** 2


def normalize_psf_values(values: np.ndarray, rad_edges: np.ndarray, axis: int = 0) -> np.ndarray:
    """Normalise PSF values (any unit per solid angle) along the rad axis as gammapy's Map.normalize.

    The integral is ``sum(2 pi r_center dr value)`` with r in deg; the result is in sr-1
    (0 where the integral is 0).
    """
    edges = np.asarray(rad_edges, dtype=np.float64)
    shape = [1] * values.ndim
    shape[axis] = -1
    centers = (0.5 * (edges[:-1] + edges[1:])).reshape(shape)
    width = np.diff(edges).reshape(shape)
    total = np.cumsum(2 * np.pi * centers * (values * width), axis=axis).max(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normed = values / total
    return np.nan_to_num(normed) * DEG2_PER_SR


class PSFMixin:
    """Containment radius and PSF-map maths common to the three PSF kinds."""

    def _rad_samples(self) -> np.ndarray:
        """Radii (deg) where containment is sampled: the rad axis upsampled 20 times, as gammapy."""
        try:
            rad_axis = self.axes["rad"]
        except KeyError:
            rad_axis = IRFAxis("rad", RAD_AXIS_DEFAULT_EDGES)
        return rad_axis.upsample_centers(20)

    def containment_values(self, rad: np.ndarray, energy_true: np.ndarray,
                           offset: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def containment(self, rad: Any, energy_true: Any, offset: Any) -> np.ndarray:
        """Fraction of the PSF inside ``rad`` (Quantities or canonical floats)."""
        return self.containment_values(to_canonical(rad, "rad"), to_canonical(energy_true, "energy_true"),
                                       to_canonical(offset, "offset"))

    def containment_radius_values(self, fraction: np.ndarray, energy_true: np.ndarray,
                                  offset: np.ndarray) -> np.ndarray:
        """Containment radius in deg: the sampled radius whose containment is closest to ``fraction``.

        Same sampling as gammapy (``containment_radius`` with ``factor=20``), so results agree to
        the sample spacing exactly, not to interpolation precision.
        """
        fraction = np.asarray(fraction, dtype=np.float64)
        energy_true = np.asarray(energy_true, dtype=np.float64)
        offset = np.asarray(offset, dtype=np.float64)
        shape = np.broadcast(energy_true, offset, fraction).shape
        rad = self._rad_samples().reshape((-1,) + (1,) * len(shape))
        cont = self.containment_values(rad, energy_true, offset)
        idx = np.argmin(np.abs(cont - fraction), axis=0)
        return rad.ravel()[idx].reshape(shape)

    def containment_radius(self, fraction: Any, energy_true: Any, offset: Any) -> u.Quantity:
        """Containment radius (Quantity, deg) for Quantity or canonical-float coordinates."""
        return u.Quantity(
            self.containment_radius_values(fraction, to_canonical(energy_true, "energy_true"),
                                           to_canonical(offset, "offset")), "deg")

    def psf_map_values(self, energy_true: np.ndarray, offset_deg: np.ndarray,
                       rad_edges: np.ndarray = RAD_AXIS_DEFAULT_EDGES) -> np.ndarray:
        """What gammapy's ``make_psf_map`` stores, in sr-1.

        The PSF at the rad-bin centres, for each true energy and offset, normalised along rad so
        that ``sum(2 pi r dr psf) = 1`` (r in deg, psf converted to deg-2).

        Parameters
        ----------
        energy_true : np.ndarray
            True energies in TeV (1D, the map axis centres).
        offset_deg : np.ndarray
            FoV offsets in deg (any shape, e.g. per coarse pixel).
        rad_edges : np.ndarray
            Rad axis edges in deg (default gammapy's RAD_AXIS_DEFAULT).

        Returns
        -------
        np.ndarray
            float64, shape ``(n_energy_true, n_rad) + offset.shape``.
        """
        e = np.asarray(energy_true, dtype=np.float64).ravel()
        off = np.asarray(offset_deg, dtype=np.float64)
        edges = np.asarray(rad_edges, dtype=np.float64)
        rad = 0.5 * (edges[:-1] + edges[1:])
        nd = off.ndim
        values = self.evaluate_values(
            energy_true=e.reshape((-1, 1) + (1,) * nd),
            offset=off[None, None],
            rad=rad.reshape((1, -1) + (1,) * nd),
        )
        values = np.broadcast_to(values, (len(e), len(rad)) + off.shape)
        return normalize_psf_values(values, edges, axis=1)


class PSF3D(PSFMixin, TableIRF):
    """Tabulated PSF in sr-1, axes (energy_true [TeV, log], offset [deg], rad [deg]).

    Evaluation as gammapy: linear interpolation, clipped at zero, 0 outside the axes.
    """

    tag = "psf_table"
    required_axes = ("energy_true", "offset", "rad")
    column = "RPSF"
    canonical_unit = "sr-1"
    default_hdu = "PSF_2D_TABLE"

    _cumsum_interp: GridInterpolator | None = None

    def _containment_interpolator(self) -> GridInterpolator:
        # gammapy integrates by interpolating the cumulative sum sum(2 pi r dr psf), tabulated at
        # the upper rad edges (a node axis) with the usual fill value 0 outside
        if self._cumsum_interp is None:
            rad = self.axes["rad"]
            w = (rad.bin_width * 2 * np.pi * rad.center)
            cumsum = np.cumsum(self._raw * w.reshape(1, 1, -1), axis=2)
            axes = [self.axes["energy_true"], self.axes["offset"],
                    IRFAxis("rad", rad.edges[1:], interp=rad.interp, node_type="center")]
            self._cumsum_interp = GridInterpolator(
                axes, cumsum, "lin", 0.0, factor=self._factor / DEG2_PER_SR
            )
        return self._cumsum_interp

    def containment_values(self, rad: np.ndarray, energy_true: np.ndarray,
                           offset: np.ndarray) -> np.ndarray:
        """Containment fraction at radius ``rad`` (deg) for energy_true (TeV) and offset (deg)."""
        return self._containment_interpolator()(energy_true, offset, rad)
