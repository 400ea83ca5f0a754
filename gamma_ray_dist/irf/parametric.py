"""Parametric PSFs: triple Gaussian (psf_3gauss) and King profile (psf_king).

Parameters are interpolated as gammapy does: linearly on the (energy_true [log], offset) centres,
extrapolated outside the axes (no fill value) and clipped at zero.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import IRFError
from .axes import IRFAxis
from .core import FOV_ALIGNMENTS, IRFAxes, to_canonical
from .interp import GridInterpolator
from .io import HDUContext, open_hdu, read_axes, read_column, reshape_data
from .psf import DEG2_PER_SR, PSFMixin

__all__ = ["ParametricPSF", "EnergyDependentMultiGaussPSF", "PSFKing"]


class ParametricPSF(PSFMixin):
    """Base of analytic PSFs whose parameters are tabulated on (energy_true, offset).

    Parameters
    ----------
    axes : sequence of IRFAxis
        energy_true and offset axes.
    data : dict of np.ndarray
        Parameter tables in file dtype (float32 as gammapy stores them), file units.
    factors : dict of float
        File unit -> canonical unit factor per parameter (sigmas to deg).
    meta : dict, optional
        Header of the HDU.
    """

    tag: ClassVar[str] = ""
    required_axes: ClassVar[tuple[str, ...]] = ("energy_true", "offset")
    parameters: ClassVar[dict[str, tuple[str, str | None]]] = {}  # name -> (column, unit; None: any)
    default_hdu: ClassVar[str] = ""

    def __init__(self, axes: Sequence[IRFAxis], data: dict, factors: dict | None = None,
                 meta: dict | None = None, fov_alignment: str = "RADEC"):
        self._axes = IRFAxes(axes)
        if self._axes.names != list(self.required_axes):
            raise ValueError(f"{type(self).__name__} needs axes {list(self.required_axes)}")
        factors = factors or {}
        self._raw = {}
        self._data = {}
        for name in self.parameters:
            raw = np.asarray(data[name], dtype=np.float32).reshape(self._axes.shape)
            raw.setflags(write=False)
            self._raw[name] = raw
            values = raw.astype(np.float64) * factors.get(name, 1.0)
            values.setflags(write=False)
            self._data[name] = values
        self._factors = {name: float(factors.get(name, 1.0)) for name in self.parameters}
        self.meta = dict(meta or {})
        self._fov_alignment = str(fov_alignment).upper()
        self._interps: dict[str, GridInterpolator] | None = None

    @classmethod
    def from_hdu(cls, hdu: fits.BinTableHDU, filename: str | Path | None = None,
                 obs_id: int | None = None):
        """Build from a GADF binary-table HDU; errors name ``obs_id``, ``filename`` and HDU."""
        ctx = HDUContext(hdu, filename, obs_id)
        axes = read_axes(ctx, list(cls.required_axes))
        data, factors = {}, {}
        for name, (column, unit) in cls.parameters.items():
            raw, factor = read_column(ctx, column, unit)
            raw = reshape_data(ctx, raw, axes, column).astype(np.float32)
            if "sigma" in name:
                # as gammapy: some files store sigma = 0 for unused components
                raw[raw == 0] = 1.0
            data[name], factors[name] = raw, factor
        meta = {k: v for k, v in hdu.header.items() if k not in ("COMMENT", "HISTORY", "")}
        align = str(hdu.header.get("FOVALIGN", "RADEC")).strip().upper()
        if align not in FOV_ALIGNMENTS:
            raise ctx.error(IRFError, f"unknown FOVALIGN={align!r}")
        return cls(axes, data, factors, meta=meta, fov_alignment=align)

    @classmethod
    def read(cls, filename: str | Path, hdu: str | int | None = None, obs_id: int | None = None):
        """Read from a FITS file (``hdu`` defaults to the GADF extension name)."""
        hdulist, h = open_hdu(filename, hdu, cls.default_hdu)
        with hdulist:
            return cls.from_hdu(h, filename=filename, obs_id=obs_id)

    @property
    def axes(self) -> IRFAxes:
        return self._axes

    @property
    def data(self) -> dict[str, np.ndarray]:
        """Parameter tables, float64 in canonical units (read-only)."""
        return self._data

    @property
    def unit(self) -> dict[str, u.UnitBase]:
        """Canonical unit per parameter."""
        return {name: u.Unit(unit or "") for name, (_, unit) in self.parameters.items()}

    @property
    def fov_alignment(self) -> str:
        return self._fov_alignment

    def __repr__(self) -> str:
        return f"{type(self).__name__}(axes={self._axes.names}, shape={self._axes.shape})"

    def evaluate_parameters_values(self, energy_true: np.ndarray, offset: np.ndarray) -> dict:
        """Interpolated parameters (canonical units) at energy_true (TeV) and offset (deg)."""
        if self._interps is None:
            self._interps = {
                name: GridInterpolator(self._axes, self._raw[name], "lin", None, factor=self._factors[name])
                for name in self.parameters
            }
        return {name: f(energy_true, offset) for name, f in self._interps.items()}

    def evaluate_values(self, energy_true: np.ndarray, offset: np.ndarray, rad: np.ndarray) -> np.ndarray:
        """PSF value in sr-1 at energy_true (TeV), offset (deg) and rad (deg); float64."""
        pars = self.evaluate_parameters_values(np.asarray(energy_true, dtype=float),
                                               np.asarray(offset, dtype=float))
        rad, pars = _align(np.asarray(rad, dtype=float), pars)
        return self._psf_deg2(rad, **pars) * DEG2_PER_SR

    def evaluate(self, energy_true: Any, offset: Any, rad: Any) -> u.Quantity:
        """PSF value (Quantity, sr-1) for Quantity or canonical-float coordinates."""
        return u.Quantity(self.evaluate_values(to_canonical(energy_true, "energy_true"),
                                               to_canonical(offset, "offset"),
                                               to_canonical(rad, "rad")), "sr-1")

    def containment_values(self, rad: np.ndarray, energy_true: np.ndarray,
                           offset: np.ndarray) -> np.ndarray:
        """Fraction of the PSF within ``rad`` (deg)."""
        pars = self.evaluate_parameters_values(np.asarray(energy_true, dtype=float),
                                               np.asarray(offset, dtype=float))
        rad, pars = _align(np.asarray(rad, dtype=float), pars)
        return self._containment(rad, **pars)

    @staticmethod
    def _psf_deg2(rad, **pars):  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _containment(rad, **pars):  # pragma: no cover - abstract
        raise NotImplementedError


def _align(rad: np.ndarray, pars: dict) -> tuple[np.ndarray, dict]:
    """Pad rad and parameters with leading axes to a common ndim (the Gaussian sum stacks on axis 0)."""
    nd = max([rad.ndim] + [p.ndim for p in pars.values()])
    pad = lambda a: a.reshape((1,) * (nd - a.ndim) + a.shape)  # noqa: E731
    return pad(rad), {k: pad(v) for k, v in pars.items()}


def _gauss_norms(sigma_1, sigma_2, sigma_3, scale, ampl_2, ampl_3):
    sigmas = np.stack(np.broadcast_arrays(sigma_1, sigma_2, sigma_3))
    ampl = np.stack(np.broadcast_arrays(np.ones(np.shape(scale)), ampl_2, ampl_3))
    norms = 2 * scale * ampl * sigmas**2
    with np.errstate(divide="ignore", invalid="ignore"):
        norms = np.nan_to_num(norms / np.nansum(norms, axis=0))
    return sigmas, norms


class EnergyDependentMultiGaussPSF(ParametricPSF):
    """Sum of three 2D Gaussians (GADF psf_3gauss), normalised to unit integral."""

    tag = "psf_3gauss"
    default_hdu = "PSF_2D_GAUSS"
    parameters = {
        "sigma_1": ("SIGMA_1", "deg"),
        "sigma_2": ("SIGMA_2", "deg"),
        "sigma_3": ("SIGMA_3", "deg"),
        "scale": ("SCALE", None),  # only ratios of norms matter: any unit
        "ampl_2": ("AMPL_2", ""),
        "ampl_3": ("AMPL_3", ""),
    }

    @staticmethod
    def _psf_deg2(rad, **pars):
        sigmas, norms = _gauss_norms(**pars)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = norms / (2 * np.pi * sigmas**2) * np.exp(-0.5 * rad[None] ** 2 / sigmas**2)
        return terms.sum(axis=0)

    @staticmethod
    def _containment(rad, **pars):
        sigmas, norms = _gauss_norms(**pars)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = norms * (1 - np.exp(-0.5 * rad[None] ** 2 / sigmas**2))
        return terms.sum(axis=0)


class PSFKing(ParametricPSF):
    """King profile (GADF psf_king): ``(1 - 1/g) / (2 pi s^2) (1 + r^2 / (2 g s^2))^-g``."""

    tag = "psf_king"
    default_hdu = "PSF_2D_KING"
    parameters = {"gamma": ("GAMMA", ""), "sigma": ("SIGMA", "deg")}

    @staticmethod
    def _psf_deg2(rad, gamma, sigma):
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            term1 = 1 / (2 * np.pi * sigma**2)
            term2 = 1 - 1 / gamma
            term3 = (1 + rad**2 / (2 * gamma * sigma**2)) ** (-gamma)
            return term1 * term2 * term3

    @staticmethod
    def _containment(rad, gamma, sigma):
        with np.errstate(divide="ignore", invalid="ignore"):
            return 1 - (1 + rad**2 / (2 * gamma * sigma**2)) ** (1 - gamma)
