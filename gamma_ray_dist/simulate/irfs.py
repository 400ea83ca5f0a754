"""Analytic, H.E.S.S.-like instrument response functions.

Pure functions of plain float arrays in canonical units (energy TeV, angles deg) plus the
`AnalyticIRFs` dataclass holding their parameters and the binning used when they are tabulated
into GADF HDUs (see `gamma_ray_dist.simulate.gadf`).

The effective area is separable, ``A(E, theta) = A0 * turnon(E) * falloff(theta)``; the event
sampler relies only on it decreasing monotonically with offset.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

__all__ = [
    "AnalyticIRFs",
    "aeff_values",
    "edisp_bias",
    "edisp_sigma",
    "edisp_pdf",
    "edisp_bin_pdf",
    "psf_3gauss_params",
    "psf_values",
    "bkg_values",
]

DEG2RAD = np.pi / 180.0


def _log_edges(e_min: float, e_max: float, per_decade: int) -> np.ndarray:
    n = int(round(np.log10(e_max / e_min) * per_decade))
    return np.geomspace(e_min, e_max, n + 1)


def _log_edges_piecewise(breaks, per_decade) -> np.ndarray:
    """Log edges from ``breaks[0]`` to ``breaks[-1]``, ``per_decade[i]`` bins per decade in piece i."""
    pieces = [_log_edges(lo, hi, n) for lo, hi, n in zip(breaks[:-1], breaks[1:], per_decade)]
    return np.concatenate([pieces[0]] + [p[1:] for p in pieces[1:]])


def _rad_edges(step0: float = 0.0015, r_lin: float = 0.021, ratio: float = 1.05, r_max: float = 1.0) -> np.ndarray:
    """PSF rad edges: uniform ``step0`` up to ``r_lin``, then growing geometrically by ``ratio``.

    Linear interpolation of a Gaussian of width sigma between nodes spaced ``h`` errs by about
    ``h^2 / (8 sigma^2)`` of the peak, so the step must stay ~0.1 of the narrowest core width
    (0.0175 deg at 100 TeV on axis) near the centre and ~0.1 r further out.
    """
    lin = np.arange(0.0, r_lin + 0.5 * step0, step0)
    n = int(np.ceil(np.log(r_max / r_lin) / np.log(ratio)))
    return np.concatenate([lin, np.geomspace(r_lin, r_max, n + 1)[1:]])


@dataclass(frozen=True)
class AnalyticIRFs:
    """Parameters and tabulation grids of the analytic IRFs.

    Parameters
    ----------
    aeff_max : float
        Plateau effective area in m2 (on axis, high energy).
    aeff_threshold : float
        Energy (TeV) where the turn-on reaches half the plateau.
    aeff_turnon_index : float
        Steepness of the turn-on, ``1 / (1 + (E / E_thr) ** -k)``.
    aeff_offset_sigma : float
        Gaussian width (deg) of the radial acceptance falloff, shared by aeff and background.
    edisp_res_const, edisp_res_slope : float
        Energy resolution (Gaussian sigma in migra) ``c + s * (E / 1 TeV) ** -0.5``.
    edisp_bias_max, edisp_bias_energy : float
        Migra bias ``b0 / (1 + E / E_b)`` (reconstructed energies overestimated near threshold).
    psf_sigmas : tuple of 3 float
        Gaussian widths (deg) of the PSF components at 1 TeV on axis.
    psf_weights : tuple of 3 float
        Fractions of events in each component (summing to 1).
    psf_energy_index : float
        Widths scale as ``(E / 1 TeV) ** psf_energy_index``.
    psf_offset_coeff : float
        Widths scale as ``1 + c * (theta / 1 deg) ** 2``.
    bkg_norm : float
        Background rate at 1 TeV in the FoV centre, s-1 MeV-1 sr-1 (before the turn-on).
    bkg_index : float
        Power-law index of the background rate in reconstructed energy.
    energy_true_edges, offset_edges : ndarray
        True energy (TeV) and offset (deg) binning of the effective area (``energy_true_edges``
        also bounds the sampled true energies; ``offset_edges`` is also the ``bkg_2d`` offset axis).
    edisp_energy_true_edges, edisp_offset_edges, migra_edges : ndarray
        Binning of the energy dispersion (TeV, deg, -); the dispersion does not depend on offset.
    psf_energy_true_edges, psf_offset_edges, rad_edges : ndarray
        Binning of the PSF (TeV, deg, deg; ``rad_edges`` only for ``psf_table``).
    energy_edges, fov_edges : ndarray
        Reconstructed energy (TeV) and FoV lon/lat (deg) binning of the background; they also
        bound the sampled background events.

    Notes
    -----
    gammapy (and `gamma_ray_dist.irf`) interpolate the tables linearly between bin centres (log
    energy; background values in log), so the grids are chosen for an interpolation error below
    0.5 % of each IRF against the analytic function for true / reconstructed energies 0.15-90 TeV
    (where the effective area exceeds 10 % of its maximum) and offsets up to 2.5 deg: relative
    error of the effective area and background, error of the PSF relative to its peak, absolute
    error of the cumulative migration distribution (``tests/test_simulate_gammapy.py`` checks this).
    Each IRF has its own axes, as GADF allows: the steep effective-area turn-on needs many energy
    nodes, the slowly varying PSF and energy dispersion few, and the offset-independent energy
    dispersion only two offset nodes, which keeps the IRF HDUs small (~50 kB gzipped per file).
    """

    aeff_max: float = 1.0e5
    aeff_threshold: float = 0.3
    aeff_turnon_index: float = 3.0
    aeff_offset_sigma: float = 1.5
    edisp_res_const: float = 0.08
    edisp_res_slope: float = 0.04
    edisp_bias_max: float = 0.2
    edisp_bias_energy: float = 0.3
    psf_sigmas: tuple = (0.035, 0.07, 0.15)
    psf_weights: tuple = (0.6, 0.3, 0.1)
    psf_energy_index: float = -0.15
    psf_offset_coeff: float = 0.1
    bkg_norm: float = 4.0e-5
    bkg_index: float = 2.7
    energy_true_edges: np.ndarray = field(default_factory=lambda: _log_edges(10**-1.5, 100.0, 40))
    offset_edges: np.ndarray = field(default_factory=lambda: np.linspace(0.0, 3.0, 31))
    edisp_energy_true_edges: np.ndarray = field(default_factory=lambda: _log_edges(10**-1.5, 100.0, 16))
    edisp_offset_edges: np.ndarray = field(default_factory=lambda: np.array([0.0, 1.5, 3.0]))
    migra_edges: np.ndarray = field(default_factory=lambda: np.linspace(0.2, 2.5, 93))
    psf_energy_true_edges: np.ndarray = field(default_factory=lambda: _log_edges(10**-1.5, 100.0, 12))
    psf_offset_edges: np.ndarray = field(default_factory=lambda: np.r_[0.0, np.linspace(0.1, 2.9, 15), 3.0])
    rad_edges: np.ndarray = field(default_factory=_rad_edges)
    energy_edges: np.ndarray = field(
        default_factory=lambda: _log_edges_piecewise([10**-1.5, 0.1, 10**0.2, 10**2.5], [4, 30, 6]))
    fov_edges: np.ndarray = field(default_factory=lambda: np.linspace(-3.0, 3.0, 41))

    # Pure evaluations bound to the parameters (thin wrappers, for convenience).
    def aeff(self, energy_true, offset) -> np.ndarray:
        """Effective area in m2, see `aeff_values`."""
        return aeff_values(self, energy_true, offset)

    def edisp(self, migra, energy_true, offset) -> np.ndarray:
        """Energy dispersion density dP/dmigra, see `edisp_pdf`."""
        return edisp_pdf(self, migra, energy_true, offset)

    def psf(self, rad, energy_true, offset) -> np.ndarray:
        """PSF density in sr-1, see `psf_values`."""
        return psf_values(self, rad, energy_true, offset)

    def bkg(self, energy, fov_lon, fov_lat) -> np.ndarray:
        """Background rate in s-1 MeV-1 sr-1, see `bkg_values`."""
        return bkg_values(self, energy, fov_lon, fov_lat)


def _turnon(irfs: AnalyticIRFs, energy) -> np.ndarray:
    energy = np.asarray(energy, dtype=float)
    return 1.0 / (1.0 + (energy / irfs.aeff_threshold) ** -irfs.aeff_turnon_index)


def _radial(irfs: AnalyticIRFs, offset) -> np.ndarray:
    offset = np.asarray(offset, dtype=float)
    return np.exp(-0.5 * (offset / irfs.aeff_offset_sigma) ** 2)


def aeff_values(irfs: AnalyticIRFs, energy_true, offset) -> np.ndarray:
    """Effective area in m2 at true energy (TeV) and FoV offset (deg); broadcasts."""
    return irfs.aeff_max * _turnon(irfs, energy_true) * _radial(irfs, offset)


def edisp_sigma(irfs: AnalyticIRFs, energy_true) -> np.ndarray:
    """Gaussian sigma of migra = E_reco / E_true at true energy (TeV)."""
    energy_true = np.asarray(energy_true, dtype=float)
    return irfs.edisp_res_const + irfs.edisp_res_slope * energy_true**-0.5


def edisp_bias(irfs: AnalyticIRFs, energy_true) -> np.ndarray:
    """Mean of migra minus one at true energy (TeV)."""
    energy_true = np.asarray(energy_true, dtype=float)
    return irfs.edisp_bias_max / (1.0 + energy_true / irfs.edisp_bias_energy)


def edisp_pdf(irfs: AnalyticIRFs, migra, energy_true, offset=0.0) -> np.ndarray:
    """Probability density dP/dmigra (offset independent, argument kept for symmetry)."""
    migra = np.asarray(migra, dtype=float)
    sigma = edisp_sigma(irfs, energy_true)
    mu = 1.0 + edisp_bias(irfs, energy_true)
    shape = np.broadcast_shapes(np.shape(migra), np.shape(sigma), np.shape(offset))
    pdf = np.exp(-0.5 * ((migra - mu) / sigma) ** 2) / (np.sqrt(2 * np.pi) * sigma)
    return np.broadcast_to(pdf, shape)


def edisp_bin_pdf(irfs: AnalyticIRFs, migra_lo, migra_hi, energy_true) -> np.ndarray:
    """Mean density over migra bins (what the EDISP_2D MATRIX stores, as gammapy's from_gauss)."""
    migra_lo = np.asarray(migra_lo, dtype=float)
    migra_hi = np.asarray(migra_hi, dtype=float)
    s = np.sqrt(2.0) * edisp_sigma(irfs, energy_true)
    mu = 1.0 + edisp_bias(irfs, energy_true)
    return 0.5 * (erf((migra_hi - mu) / s) - erf((migra_lo - mu) / s)) / (migra_hi - migra_lo)


def psf_3gauss_params(irfs: AnalyticIRFs, energy_true, offset) -> dict:
    """Columns of the GADF ``psf_3gauss`` format at (true energy TeV, offset deg).

    Returns
    -------
    params : dict
        ``sigma_1..3`` (deg), ``ampl_2``, ``ampl_3`` (relative to component 1) and ``scale``
        (sr-1), so that ``scale * sum_i ampl_i exp(-r^2 / 2 sigma_i^2)`` integrates to one.
    """
    energy_true = np.asarray(energy_true, dtype=float)
    offset = np.asarray(offset, dtype=float)
    factor = energy_true**irfs.psf_energy_index * (1.0 + irfs.psf_offset_coeff * offset**2)
    sig0 = np.asarray(irfs.psf_sigmas, dtype=float)
    w = np.asarray(irfs.psf_weights, dtype=float)
    w = w / w.sum()
    # component i holds fraction w_i = a_i sigma_i^2 / sum_j a_j sigma_j^2
    ampl = (w / sig0**2) / (w[0] / sig0[0] ** 2)
    sigmas = [s * factor for s in sig0]
    norm = 2 * np.pi * sum(a * (s * DEG2RAD) ** 2 for a, s in zip(ampl, sigmas))
    shape = np.shape(factor)
    return {
        "sigma_1": sigmas[0],
        "sigma_2": sigmas[1],
        "sigma_3": sigmas[2],
        "scale": 1.0 / norm,
        "ampl_2": np.full(shape, ampl[1]),
        "ampl_3": np.full(shape, ampl[2]),
    }


def psf_values(irfs: AnalyticIRFs, rad, energy_true, offset) -> np.ndarray:
    """PSF density dP/dOmega in sr-1 at angular distance ``rad`` (deg); broadcasts."""
    p = psf_3gauss_params(irfs, energy_true, offset)
    rad = np.asarray(rad, dtype=float)
    val = np.exp(-0.5 * (rad / p["sigma_1"]) ** 2)
    val = val + p["ampl_2"] * np.exp(-0.5 * (rad / p["sigma_2"]) ** 2)
    val = val + p["ampl_3"] * np.exp(-0.5 * (rad / p["sigma_3"]) ** 2)
    return p["scale"] * val


def bkg_values(irfs: AnalyticIRFs, energy, fov_lon, fov_lat) -> np.ndarray:
    """Background rate in s-1 MeV-1 sr-1 at reconstructed energy (TeV) and FoV coords (deg).

    A power law with the effective-area turn-on, times the same radial falloff as the
    effective area (radially symmetric, so FoV lon/lat conventions do not matter).
    """
    energy = np.asarray(energy, dtype=float)
    offset2 = np.asarray(fov_lon, dtype=float) ** 2 + np.asarray(fov_lat, dtype=float) ** 2
    radial = np.exp(-0.5 * offset2 / irfs.aeff_offset_sigma**2)
    return irfs.bkg_norm * energy**-irfs.bkg_index * _turnon(irfs, energy) * radial
