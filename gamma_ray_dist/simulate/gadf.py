"""GADF (v0.2) HDUs for the simulator: IRFs tabulated from `AnalyticIRFs`, EVENTS, GTI, POINTING.

Array layout follows gammapy's own writer: an IRF whose axes are ``(a0, a1, a2)`` stores its
data column as one row of shape ``(n2, n1, n0)``, i.e. ``TDIM = (n0, n1, n2)``.
"""
from __future__ import annotations

import numpy as np
from astropy.io import fits

from .events import SimulatedEvents
from .fitsbytes import bintable_bytes
from .irfs import AnalyticIRFs, aeff_values, bkg_values, edisp_bin_pdf, psf_3gauss_params, psf_values

__all__ = [
    "HDU_CLASSES",
    "aeff_hdu",
    "edisp_hdu",
    "psf_3gauss_hdu",
    "psf_table_hdu",
    "bkg_3d_hdu",
    "bkg_2d_hdu",
    "irf_hdus",
    "events_bytes",
    "gti_bytes",
    "pointing_bytes",
]

COMMON = [
    ("HDUCLASS", "GADF", "Signal conformance with HEASARC/OGIP convention"),
    ("HDUDOC", "https://github.com/open-gamma-ray-astro/gamma-astro-data-formats", ""),
    ("HDUVERS", "0.2", "DL3 specification version"),
]
INSTRUMENT = [
    ("TELESCOP", "HESS", "mission name (H.E.S.S.-like simulation)"),
    ("INSTRUME", "gamma_ray_dist.simulate", "analytic IRF simulation"),
    ("ORIGIN", "gamma_ray_dist", ""),
]
# (HDUCLAS2, HDUCLAS4, EXTNAME used in per-observation files) per GADF class tag
HDU_CLASSES = {
    "aeff_2d": ("EFF_AREA", "AEFF_2D", "AEFF"),
    "edisp_2d": ("EDISP", "EDISP_2D", "EDISP"),
    "psf_3gauss": ("RPSF", "PSF_3GAUSS", "PSF"),
    "psf_table": ("RPSF", "PSF_TABLE", "PSF"),
    "bkg_3d": ("BKG", "BKG_3D", "BKG"),
    "bkg_2d": ("BKG", "BKG_2D", "BKG"),
}


def _centers(edges: np.ndarray, log: bool) -> np.ndarray:
    return np.sqrt(edges[:-1] * edges[1:]) if log else 0.5 * (edges[:-1] + edges[1:])


def _axis_columns(prefix: str, edges: np.ndarray, unit: str | None) -> list[fits.Column]:
    n = len(edges) - 1
    fmt = f"{n}E"
    return [
        fits.Column(f"{prefix}_LO", fmt, unit=unit, array=edges[None, :-1].astype(np.float32)),
        fits.Column(f"{prefix}_HI", fmt, unit=unit, array=edges[None, 1:].astype(np.float32)),
    ]


def _data_column(name: str, data: np.ndarray, unit: str | None) -> fits.Column:
    """One-row column holding ``data`` (gammapy axis order) transposed, TDIM = data.shape."""
    dim = "(" + ",".join(str(s) for s in data.shape) + ")"
    arr = np.ascontiguousarray(data.T[None], dtype=np.float32)
    return fits.Column(name, f"{data.size}E", unit=unit, dim=dim, array=arr)


def _irf_hdu(tag: str, columns: list[fits.Column], extname: str | None, extra=()) -> fits.BinTableHDU:
    clas2, clas4, default_name = HDU_CLASSES[tag]
    hdu = fits.BinTableHDU.from_columns(columns, name=extname or default_name)
    cards = COMMON + [
        ("HDUCLAS1", "RESPONSE", ""),
        ("HDUCLAS2", clas2, ""),
        ("HDUCLAS3", "FULL-ENCLOSURE", ""),
        ("HDUCLAS4", clas4, ""),
        *extra,
        *INSTRUMENT,
    ]
    for key, value, comment in cards:
        hdu.header[key] = (value, comment)
    return hdu


def aeff_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``aeff_2d`` HDU (EFFAREA in m2 at the bin centres of true energy x offset)."""
    e = _centers(irfs.energy_true_edges, log=True)
    th = _centers(irfs.offset_edges, log=False)
    data = aeff_values(irfs, e[:, None], th[None, :])
    # safe-energy keywords as in H.E.S.S. files: where the on-axis area reaches 10 %
    lo_thres = irfs.aeff_threshold * 9.0 ** (-1.0 / irfs.aeff_turnon_index)
    cols = _axis_columns("ENERG", irfs.energy_true_edges, "TeV") + _axis_columns("THETA", irfs.offset_edges, "deg")
    cols.append(_data_column("EFFAREA", data, "m2"))
    extra = [("LO_THRES", float(lo_thres), "[TeV]"), ("HI_THRES", float(irfs.energy_true_edges[-1]), "[TeV]")]
    return _irf_hdu("aeff_2d", cols, extname, extra)


def edisp_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``edisp_2d`` HDU: MATRIX = mean dP/dmigra per migra bin (true energy x migra x offset).

    The Gaussian is truncated to the migra axis and renormalised, as the event sampler does.
    """
    e = _centers(irfs.edisp_energy_true_edges, log=True)
    m = irfs.migra_edges
    pdf = edisp_bin_pdf(irfs, m[None, :-1], m[None, 1:], e[:, None])
    pdf = pdf / edisp_bin_pdf(irfs, m[0], m[-1], e)[:, None] / (m[-1] - m[0])
    data = np.repeat(pdf[:, :, None], len(irfs.edisp_offset_edges) - 1, axis=2)
    cols = (
        _axis_columns("ENERG", irfs.edisp_energy_true_edges, "TeV")
        + _axis_columns("MIGRA", m, None)
        + _axis_columns("THETA", irfs.edisp_offset_edges, "deg")
    )
    cols.append(_data_column("MATRIX", data, None))
    return _irf_hdu("edisp_2d", cols, extname)


def psf_3gauss_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``psf_3gauss`` HDU: SCALE (sr-1), SIGMA_1..3 (deg), AMPL_2, AMPL_3 on true energy x offset."""
    e = _centers(irfs.psf_energy_true_edges, log=True)
    th = _centers(irfs.psf_offset_edges, log=False)
    p = psf_3gauss_params(irfs, e[:, None], th[None, :])
    cols = _axis_columns("ENERG", irfs.psf_energy_true_edges, "TeV") + _axis_columns("THETA", irfs.psf_offset_edges, "deg")
    units = {"SCALE": "sr-1", "SIGMA_1": "deg", "SIGMA_2": "deg", "SIGMA_3": "deg", "AMPL_2": "", "AMPL_3": ""}
    for col, unit in units.items():
        cols.append(_data_column(col, np.broadcast_to(p[col.lower()], (len(e), len(th))), unit or None))
    return _irf_hdu("psf_3gauss", cols, extname)


def psf_table_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``psf_table`` HDU: RPSF (sr-1) at bin centres of true energy x offset x rad."""
    e = _centers(irfs.psf_energy_true_edges, log=True)
    th = _centers(irfs.psf_offset_edges, log=False)
    rad = _centers(irfs.rad_edges, log=False)
    data = psf_values(irfs, rad[None, None, :], e[:, None, None], th[None, :, None])
    cols = (
        _axis_columns("ENERG", irfs.psf_energy_true_edges, "TeV")
        + _axis_columns("THETA", irfs.psf_offset_edges, "deg")
        + _axis_columns("RAD", irfs.rad_edges, "deg")
    )
    cols.append(_data_column("RPSF", data, "sr-1"))
    return _irf_hdu("psf_table", cols, extname)


def bkg_3d_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``bkg_3d`` HDU (FOVALIGN=RADEC): BKG in s-1 MeV-1 sr-1 on energy x fov_lon x fov_lat."""
    e = _centers(irfs.energy_edges, log=True)
    x = _centers(irfs.fov_edges, log=False)
    data = bkg_values(irfs, e[:, None, None], x[None, :, None], x[None, None, :])
    cols = (
        _axis_columns("ENERG", irfs.energy_edges, "TeV")
        + _axis_columns("DETX", irfs.fov_edges, "deg")
        + _axis_columns("DETY", irfs.fov_edges, "deg")
    )
    cols.append(_data_column("BKG", data, "s-1 MeV-1 sr-1"))
    return _irf_hdu("bkg_3d", cols, extname, [("FOVALIGN", "RADEC", "FoV coordinates aligned with RA/DEC")])


def bkg_2d_hdu(irfs: AnalyticIRFs, extname: str | None = None) -> fits.BinTableHDU:
    """``bkg_2d`` HDU: BKG in s-1 MeV-1 sr-1 on energy x offset (offset axis of the aeff)."""
    e = _centers(irfs.energy_edges, log=True)
    th = _centers(irfs.offset_edges, log=False)
    data = bkg_values(irfs, e[:, None], th[None, :], 0.0)
    cols = _axis_columns("ENERG", irfs.energy_edges, "TeV") + _axis_columns("THETA", irfs.offset_edges, "deg")
    cols.append(_data_column("BKG", data, "s-1 MeV-1 sr-1"))
    return _irf_hdu("bkg_2d", cols, extname)


_BUILDERS = {
    "aeff_2d": aeff_hdu,
    "edisp_2d": edisp_hdu,
    "psf_3gauss": psf_3gauss_hdu,
    "psf_table": psf_table_hdu,
    "bkg_3d": bkg_3d_hdu,
    "bkg_2d": bkg_2d_hdu,
}
# CTA caldb extension names, used when all observations share one IRF file
CALDB_NAMES = {"aeff": "EFFECTIVE AREA", "edisp": "ENERGY DISPERSION", "psf": "POINT SPREAD FUNCTION", "bkg": "BACKGROUND"}


def irf_hdus(
    irfs: AnalyticIRFs, psf: str = "psf_3gauss", bkg: str = "bkg_3d", caldb_names: bool = False
) -> list[tuple[str, str, fits.BinTableHDU]]:
    """All four IRF HDUs as ``(hdu_type, hdu_class, hdu)``.

    Parameters
    ----------
    psf : {"psf_3gauss", "psf_table"}
    bkg : {"bkg_3d", "bkg_2d"}
    caldb_names : bool
        Use CTA caldb EXTNAMEs ("EFFECTIVE AREA", ...) instead of H.E.S.S.-style ("AEFF", ...).
    """
    if psf not in ("psf_3gauss", "psf_table"):
        raise ValueError(f"psf must be 'psf_3gauss' or 'psf_table', got {psf!r}")
    if bkg not in ("bkg_3d", "bkg_2d"):
        raise ValueError(f"bkg must be 'bkg_3d' or 'bkg_2d', got {bkg!r}")
    out = []
    for hdu_type, tag in (("aeff", "aeff_2d"), ("edisp", "edisp_2d"), ("psf", psf), ("bkg", bkg)):
        name = CALDB_NAMES[hdu_type] if caldb_names else None
        out.append((hdu_type, tag, _BUILDERS[tag](irfs, name)))
    return out


def events_bytes(events: SimulatedEvents, cards: list[tuple]) -> bytes:
    """EVENTS HDU (EVENT_ID, TIME, RA, DEC, ENERGY, MC_ID); ``cards`` = observation keywords."""
    n = len(events)
    cols = [
        ("EVENT_ID", "K", None, np.arange(1, n + 1, dtype=np.int64)),
        ("TIME", "D", "s", events.time),
        ("RA", "E", "deg", events.ra),
        ("DEC", "E", "deg", events.dec),
        ("ENERGY", "E", "TeV", events.energy),
        ("MC_ID", "I", None, events.mc_id),  # 1 = source, 0 = background (simulation truth)
    ]
    return bintable_bytes("EVENTS", cols, COMMON + [("HDUCLAS1", "EVENTS", "")] + INSTRUMENT + list(cards))


def gti_bytes(tstart: float, tstop: float, time_cards: list[tuple]) -> bytes:
    """GTI HDU with one interval [tstart, tstop] (s, MET)."""
    cols = [("START", "D", "s", np.array([tstart])), ("STOP", "D", "s", np.array([tstop]))]
    return bintable_bytes("GTI", cols, COMMON + [("HDUCLAS1", "GTI", "")] + list(time_cards))


def pointing_bytes(time: float, ra: float, dec: float, alt: float, az: float, cards: list[tuple]) -> bytes:
    """GADF POINTING HDU with one row (fixed RA/DEC pointing, Alt/Az at ``time``)."""
    cols = [
        ("TIME", "D", "s", np.array([time])),
        ("RA_PNT", "D", "deg", np.array([ra])),
        ("DEC_PNT", "D", "deg", np.array([dec])),
        ("ALT_PNT", "D", "deg", np.array([alt])),
        ("AZ_PNT", "D", "deg", np.array([az])),
    ]
    return bintable_bytes("POINTING", cols, COMMON + [("HDUCLAS1", "POINTING", "")] + list(cards))
