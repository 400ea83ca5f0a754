"""Plain-array axis records for IRFs (no dependency on gamma_ray_dist.maps).

Axes are stored in canonical units (energies TeV, angles deg, migra dimensionless). Edges and
centers are derived from the stored nodes the way gammapy's ``MapAxis`` does: piecewise-linear in the
axis interpolation scale (log for energies), extrapolated linearly at the ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["IRFAxis", "AXIS_UNITS", "scale_forward", "scale_inverse"]

#: canonical unit of each axis name
AXIS_UNITS = {
    "energy_true": "TeV",
    "energy": "TeV",
    "offset": "deg",
    "rad": "deg",
    "fov_lon": "deg",
    "fov_lat": "deg",
    "migra": "",
}

_TINY64 = np.finfo(np.float64).tiny


def _tiny_for(values: np.ndarray) -> float:
    # gammapy's LogScale clips at the smallest normal number of the array's own float type
    values = np.asanyarray(values)
    if np.issubdtype(values.dtype, np.floating):
        return float(np.finfo(values.dtype).tiny)
    return float(np.finfo(np.float32).tiny)


def scale_forward(values: np.ndarray, scale: str) -> np.ndarray:
    """Map values to interpolation space ("lin" or "log"; log clips at the dtype's tiny)."""
    if scale == "log":
        values = np.asanyarray(values)
        return np.log(np.clip(values, _tiny_for(values), np.inf))
    return np.asanyarray(values)


def scale_inverse(values: np.ndarray, scale: str) -> np.ndarray:
    """Inverse of :func:`scale_forward`; log results within 2*tiny of zero become exactly zero."""
    if scale == "log":
        with np.errstate(over="ignore"):  # far extrapolation; masked by the caller's fill value
            out = np.exp(values)
        tiny = _tiny_for(out)
        return np.where(np.abs(out) - tiny <= tiny, 0.0, out)
    return values


def _interp_extrap(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """Linear interpolation with linear extrapolation at both ends (like interp1d 'extrapolate')."""
    x = np.asarray(x, dtype=float)
    if len(xp) == 1:
        return np.full_like(x, fp[0], dtype=float)
    idx = np.clip(np.searchsorted(xp, x, side="right") - 1, 0, len(xp) - 2)
    x0, x1 = xp[idx], xp[idx + 1]
    f0, f1 = fp[idx], fp[idx + 1]
    return f0 + (x - x0) * (f1 - f0) / (x1 - x0)


@dataclass(frozen=True)
class IRFAxis:
    """One IRF axis as plain float64 arrays in canonical units.

    Parameters
    ----------
    name : str
        gammapy axis name: energy_true, energy, offset, migra, rad, fov_lon, fov_lat.
    nodes : np.ndarray
        Bin edges (``node_type="edges"``) or bin centres (``node_type="center"``).
    interp : {"lin", "log"}
        Interpolation scale of the axis.
    node_type : {"edges", "center"}
        What ``nodes`` holds.
    """

    name: str
    nodes: np.ndarray
    interp: str = "lin"
    node_type: str = "edges"
    edges: np.ndarray = field(init=False, repr=False, compare=False)
    center: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        nodes = np.array(self.nodes, dtype=np.float64).ravel()
        nodes.setflags(write=False)
        object.__setattr__(self, "nodes", nodes)
        s = scale_forward(nodes, self.interp)
        pix = np.arange(len(nodes), dtype=float)
        if self.node_type == "edges":
            centers = scale_inverse(_interp_extrap(pix[:-1] + 0.5, pix, s), self.interp)
            edges = nodes
        elif self.node_type == "center":
            edges = scale_inverse(
                _interp_extrap(np.arange(len(nodes) + 1) - 0.5, pix, s), self.interp
            )
            centers = nodes
        else:
            raise ValueError(f"node_type must be 'edges' or 'center', got {self.node_type!r}")
        edges = np.asarray(edges, dtype=np.float64)
        centers = np.asarray(centers, dtype=np.float64)
        edges.setflags(write=False)
        centers.setflags(write=False)
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "center", centers)

    @property
    def nbin(self) -> int:
        """Number of bins."""
        return len(self.center)

    @property
    def unit(self) -> str:
        """Canonical unit string of the axis."""
        return AXIS_UNITS.get(self.name, "")

    @property
    def bin_width(self) -> np.ndarray:
        """Bin widths (edges differences)."""
        return np.diff(self.edges)

    def coord_to_idx(self, coord: np.ndarray) -> np.ndarray:
        """Bin index of each coordinate, -1 outside the edges or non-finite (gammapy convention).

        A coordinate exactly on the upper edge gets index ``nbin`` (not -1), as in gammapy.
        """
        coord = np.asarray(coord, dtype=float)
        idx = np.digitize(coord, self.edges) - 1
        with np.errstate(invalid="ignore"):
            idx = np.where((coord > self.edges[-1]) | ~np.isfinite(coord), -1, idx)
        return idx

    def upsample_centers(self, factor: int) -> np.ndarray:
        """Centres of the axis with every bin split into ``factor`` bins (edges axes only)."""
        s = scale_forward(self.edges, self.interp)
        pix = np.arange(len(self.edges), dtype=float)
        pix_new = np.linspace(0, len(self.edges) - 1, int(self.nbin * factor) + 1)
        new = IRFAxis(self.name, scale_inverse(_interp_extrap(pix_new, pix, s), self.interp),
                      interp=self.interp)
        return new.center
