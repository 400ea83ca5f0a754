"""Maps of one observation as plain arrays: counts, exposure, background, PSF and EDisp kernels.

Each function mirrors the gammapy 2.1 function of the same role (gammapy/makers/utils.py,
gammapy/maps/core.py ``fill_events``) on float64 numpy arrays; `maps.py` wraps them into
gammapy-named functions returning maps. Angles are in deg, energies in TeV, times in s.
"""
from __future__ import annotations

import numpy as np
from astropy.coordinates import SkyCoord

from ..irf.psf import normalize_psf_values
from .coords import fov_icrs_lonlat, offset_from_pointing, pixel_centers_icrs, skycoord_lonlat
from .fastinterp import evaluate_grid, supports_fast

__all__ = [
    "bin_events",
    "exposure_values",
    "aeff_values",
    "psf_values",
    "edisp_kernel_values",
    "background_rate_values",
    "background_values",
    "background_values_altaz",
    "psf_map_values",
    "edisp_kernel_map_values",
    "log_upsampled_edges",
    "pad_offset_axis",
]


def _nearest_index(pix: np.ndarray, n: int) -> np.ndarray:
    """gammapy's ``pix_tuple_to_idx`` (floor(pix + 0.5)) with -1 outside [0, n) or non-finite."""
    with np.errstate(invalid="ignore"):
        idx = np.floor(pix + 0.5)
        bad = ~np.isfinite(idx) | (idx < 0) | (idx >= n)
    idx = np.where(bad, -1, idx).astype(np.int64)
    return idx


def bin_events(geom, lon: np.ndarray, lat: np.ndarray, energy: np.ndarray) -> np.ndarray:
    """Counts cube of events binned on ``geom`` as gammapy's ``Map.fill_events``.

    Parameters
    ----------
    geom : WcsGeom
        Geometry with one ``energy`` axis.
    lon, lat : np.ndarray
        Event coordinates in deg, already in the geometry's frame.
    energy : np.ndarray
        Reconstructed energies in TeV.

    Returns
    -------
    np.ndarray
        int64 counts shaped ``geom.data_shape``; events outside the map or energy range are dropped.
    """
    ny, nx = geom.data_shape[-2:]
    axis = geom.axes["energy"]
    out = np.zeros(geom.data_shape, dtype=np.int64)
    if len(lon) == 0:
        return out
    # one vectorised WCS call per observation (what gammapy's coord_to_pix does)
    x, y = geom.wcs.wcs_world2pix(np.asarray(lon, float), np.asarray(lat, float), 0)
    ix, iy = _nearest_index(x, nx), _nearest_index(y, ny)
    ie = _nearest_index(np.asarray(axis.coord_to_pix(np.asarray(energy, float)), float), axis.nbin)
    ok = (ix >= 0) & (iy >= 0) & (ie >= 0)
    flat = np.ravel_multi_index((ie[ok], iy[ok], ix[ok]), out.shape)
    out.ravel()[:] = np.bincount(flat, minlength=out.size)
    return out


def exposure_values(aeff, pointing: SkyCoord, livetime_s: float, geom_image,
                    energy_true_centers: np.ndarray) -> np.ndarray:
    """Exposure (m2 s): effective area at each pixel centre's offset from the pointing x livetime.

    Returns float64 ``(n_energy_true, ny, nx)``.
    """
    offset = offset_from_pointing(geom_image, pointing)
    return aeff_values(aeff, offset, energy_true_centers) * float(livetime_s)


def aeff_values(aeff, offset: np.ndarray, energy_true_centers: np.ndarray) -> np.ndarray:
    """Effective area (m2) at ``offset`` (deg, any shape P), float64 ``(n_energy_true,) + P``."""
    e = np.asarray(energy_true_centers, dtype=np.float64).ravel()
    if supports_fast(aeff):
        return evaluate_grid(aeff, {"energy_true": e}, {"offset": offset})
    return aeff.evaluate_grid_values(e, offset)


def log_upsampled_edges(edges: np.ndarray, factor: int) -> np.ndarray:
    """Edges with each log bin split into ``factor`` (gammapy's ``MapAxis.upsample`` for log axes)."""
    edges = np.asarray(edges, dtype=np.float64)
    n = len(edges) - 1
    pix = np.linspace(0, n, n * int(factor) + 1)
    return np.exp(np.interp(pix, np.arange(n + 1), np.log(edges)))


def pad_offset_axis(bkg):
    """Copy of a bkg_2d with its offset axis padded by one bin per side, values repeated.

    gammapy's MapDatasetMaker does ``bkg.pad(1, mode="edge", axis_name="offset")`` by default
    (``background_pad_offset=True``) so that offsets just beyond the table are not zero.
    """
    from ..irf.axes import IRFAxis

    axes = list(bkg.axes)
    i = bkg.axes.index("offset")
    ax = axes[i]
    edges = ax.edges
    lo = edges[0] - (edges[1] - edges[0])
    hi = edges[-1] + (edges[-1] - edges[-2])
    axes[i] = IRFAxis("offset", np.concatenate([[lo], edges, [hi]]), interp=ax.interp)
    width = [(0, 0)] * bkg.data.ndim
    width[i] = (1, 1)
    raw = np.pad(bkg._raw, width, mode="edge")
    return type(bkg)(axes, raw, factor=bkg._factor, meta=bkg.meta, fov_alignment=bkg.fov_alignment)


def background_rate_values(bkg, edges: np.ndarray, **spatial: np.ndarray) -> np.ndarray:
    """Rate integrated over reco-energy bins (s-1 sr-1), as ``Background*.integrate_log_log_values``:
    evaluated at the bin edges, power law between edges (``trapz_loglog``).

    ``spatial``: ``offset`` (bkg_2d) or ``fov_lon``, ``fov_lat`` (bkg_3d) in deg, common shape P.
    Returns float64 ``(len(edges) - 1,) + P``.
    """
    from ..irf.interp import trapz_loglog

    edges = np.asarray(edges, dtype=np.float64)
    if not supports_fast(bkg):
        return bkg.integrate_log_log_values(edges, **spatial)
    values = evaluate_grid(bkg, {"energy": edges}, spatial)
    e = edges.reshape((-1,) + (1,) * (values.ndim - 1))
    return trapz_loglog(values, np.broadcast_to(e, values.shape), axis=0)


_integrate_energy = background_rate_values


def background_values(bkg, pointing: SkyCoord, ontime_s: float, geom_image,
                      energy_edges: np.ndarray, oversampling: int | None = None) -> np.ndarray:
    """Predicted background counts for a RADEC-aligned (or radial) background IRF.

    Rate at each pixel centre's FoV coordinates (offset for bkg_2d; fov_lon/fov_lat of gammapy's
    FoVICRSFrame for bkg_3d, longitude flipped for REVERSE_LON_RADEC), integrated over each
    reconstructed-energy bin with the log-log trapezoid, x pixel solid angle x ontime.

    Returns float64 ``(n_energy, ny, nx)``.
    """
    edges = np.asarray(energy_edges, dtype=np.float64)
    if oversampling:
        edges = log_upsampled_edges(edges, oversampling)
    if "offset" in bkg.axes.names:
        offset = offset_from_pointing(geom_image, pointing)
        rate = _integrate_energy(bkg, edges, offset=offset)
    else:
        ra, dec = pixel_centers_icrs(geom_image)
        ra0, dec0 = skycoord_lonlat(pointing, "icrs")
        fov_lon, fov_lat = fov_icrs_lonlat(ra, dec, ra0, dec0,
                                           reverse_lon=bkg.fov_alignment == "REVERSE_LON_RADEC")
        rate = _integrate_energy(bkg, edges, fov_lon=fov_lon, fov_lat=fov_lat)
    values = rate * geom_image.solid_angle_values()[None] * float(ontime_s)
    if oversampling:
        values = values.reshape((-1, int(oversampling)) + values.shape[1:]).sum(axis=1)
    return values


EARTH_ANGULAR_VELOCITY_DEG_S = 360.0 / 86400.0  # gammapy: 360 deg / day
MINIMUM_TIME_STEP_S = 1.0


def rotation_time_steps(pointing_icrs: SkyCoord, location, time_start, ontime_s: float,
                        fov_rotation_step_deg: float):
    """Times (astropy Time array) where the FoV rotated by ``fov_rotation_step`` in alt-az.

    Same first-order step as gammapy's ``_compute_rotation_time_steps``:
    ``dt = rot cos(alt) / (omega_earth cos(lat_site) |cos(az)|)``, at least 1 s.
    """
    from astropy import units as u
    from astropy.coordinates import AltAz
    from astropy.time import Time

    time_stop = time_start + ontime_s * u.s
    times = [time_start]
    time = time_start
    lat_site = np.radians(location.lat.deg)
    while time < time_stop:
        altaz = SkyCoord(pointing_icrs.data, frame="icrs").transform_to(AltAz(obstime=time, location=location))
        with np.errstate(divide="ignore"):
            step = (fov_rotation_step_deg * np.cos(altaz.alt.rad)
                    / (EARTH_ANGULAR_VELOCITY_DEG_S * np.cos(lat_site) * np.abs(np.cos(altaz.az.rad))))
        step = max(float(step), MINIMUM_TIME_STEP_S)
        time = min(time + step * u.s, time_stop)
        times.append(time)
    return Time(times)


def background_values_altaz(bkg, pointing_icrs: SkyCoord, location, time_start, ontime_s: float,
                            geom_image, energy_edges: np.ndarray, fov_rotation_step_deg: float = 1.0,
                            oversampling: int | None = None) -> np.ndarray:
    """Predicted background for an ALTAZ-aligned bkg_3d, following the FoV rotation in time.

    As gammapy: rotation time steps, the pixel centres' FoV alt-az coordinates at each step, the
    energy-integrated rate trapezoid-averaged over time, x solid angle x ontime.
    """
    from astropy import units as u
    from astropy.coordinates import AltAz
    from astropy.coordinates.erfa_astrom import ErfaAstromInterpolator, erfa_astrom

    times = rotation_time_steps(pointing_icrs, location, time_start, ontime_s, fov_rotation_step_deg)
    frame = AltAz(obstime=times, location=location)
    origin = SkyCoord(pointing_icrs.data, frame="icrs").transform_to(frame)
    lon, lat = geom_image.pixel_centers()
    pix = SkyCoord(lon[..., None], lat[..., None], unit="deg", frame=geom_image.frame)
    with erfa_astrom.set(ErfaAstromInterpolator(1000 * u.s)):
        pix_altaz = pix.transform_to(frame)
    az, alt = pix_altaz.az.deg, pix_altaz.alt.deg  # (ny, nx, n_times)
    fov_lon, fov_lat = fov_icrs_lonlat(az, alt, origin.az.deg, origin.alt.deg)
    fov_lon = np.moveaxis(fov_lon, -1, 0)
    fov_lat = np.moveaxis(fov_lat, -1, 0)
    edges = np.asarray(energy_edges, dtype=np.float64)
    if oversampling:
        edges = log_upsampled_edges(edges, oversampling)
    rate = bkg.integrate_log_log_values(edges, fov_lon=fov_lon, fov_lat=fov_lat)  # (n_e, n_t, ny, nx)
    t = (times - times[0]).to_value("s")
    span = t[-1] - t[0]
    rate = np.trapezoid(rate, t, axis=1) / span if len(t) > 1 else rate[:, 0]
    values = rate * geom_image.solid_angle_values()[None] * float(ontime_s)
    if oversampling:
        values = values.reshape((-1, int(oversampling)) + values.shape[1:]).sum(axis=1)
    return values


def psf_map_values(psf, pointing: SkyCoord, geom_image, energy_true_centers: np.ndarray,
                   rad_edges: np.ndarray) -> np.ndarray:
    """PSF (sr-1) at each coarse pixel's offset, normalised along rad as gammapy's ``make_psf_map``.

    Returns float64 ``(n_energy_true, n_rad, ny, nx)``.
    """
    offset = offset_from_pointing(geom_image, pointing)
    return psf_values(psf, offset, energy_true_centers, rad_edges)


def psf_values(psf, offset: np.ndarray, energy_true_centers: np.ndarray, rad_edges: np.ndarray) -> np.ndarray:
    """Normalised PSF (sr-1) at ``offset`` (deg, shape P): float64 ``(n_energy_true, n_rad) + P``."""
    if not supports_fast(psf):  # parametric PSFs: their own evaluation
        return psf.psf_map_values(energy_true_centers, offset, rad_edges)
    edges = np.asarray(rad_edges, dtype=np.float64)
    rad = 0.5 * (edges[:-1] + edges[1:])
    e = np.asarray(energy_true_centers, dtype=np.float64).ravel()
    offset = np.asarray(offset, dtype=np.float64)
    # layout (P..., energy_true, rad): the normalisation along rad is contiguous
    values = evaluate_grid(psf, {"energy_true": e, "rad": rad}, {"offset": offset}, joint_first=True)
    values = np.broadcast_to(values, offset.shape + (len(e), len(rad)))
    values = normalize_psf_values(values, edges, axis=-1)
    nd = offset.ndim
    return np.ascontiguousarray(np.moveaxis(values, list(range(nd)), list(range(2, 2 + nd))))


def edisp_kernel_map_values(edisp, pointing: SkyCoord, geom_image, energy_true_edges: np.ndarray,
                            energy_edges: np.ndarray, threshold: float = 1e-8) -> np.ndarray:
    """EDisp kernel (true -> reco energy) per coarse pixel as gammapy's ``make_edisp_kernel_map``.

    Returns float64 ``(n_energy_true, n_energy, ny, nx)``.
    """
    offset = offset_from_pointing(geom_image, pointing)
    return edisp_kernel_values(edisp, offset, energy_true_edges, energy_edges, threshold)


def edisp_kernel_values(edisp, offset: np.ndarray, energy_true_edges: np.ndarray, energy_edges: np.ndarray,
                        threshold: float = 1e-8) -> np.ndarray:
    """Kernel ``(n_energy_true, n_energy) + offset.shape`` (the maths of
    ``EnergyDispersion2D.to_edisp_kernel_values``, with the fast outer-grid evaluation).

    The migration pdf at the IRF migra centres is normalised along migra; its cumulative integral on
    the migra edges is interpolated linearly at ``E_reco / E_true`` and differenced per reco bin.
    """
    from ..irf.edisp import log_centers

    e_true = log_centers(energy_true_edges)
    e_edges = np.asarray(energy_edges, dtype=np.float64).ravel()
    migra = edisp.axes["migra"]
    offset = np.asarray(offset, dtype=np.float64)
    # layout (P..., energy_true, migra): the per-pixel work is contiguous along migra
    values = evaluate_grid(edisp, {"energy_true": e_true, "migra": migra.center}, {"offset": offset},
                           joint_first=True)
    # Cumulative integral on the migra upper edges; values are >= 0 (clipped, filled with 0), so the
    # total (gammapy: the max of the cumulative sum) is its last element. The normalisation is applied
    # to the few interpolated points only: cdf(edge k) = cum[k - 1] / total, cdf(edge 0) = 0.
    values *= migra.bin_width
    cum = np.cumsum(values, axis=-1)
    total = cum[..., -1:]
    x = migra.edges
    m = e_edges[None, :] / e_true[:, None]
    idx = np.clip(np.searchsorted(x, m, side="right") - 1, 0, len(x) - 2)
    t = np.clip((m - x[idx]) / (x[idx + 1] - x[idx]), 0.0, 1.0)
    rows = np.arange(len(e_true))[:, None]
    lo = cum[..., rows, np.maximum(idx - 1, 0)]
    lo[..., idx == 0] = 0.0
    hi = cum[..., rows, idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.nan_to_num(lo / total)
        hi = np.nan_to_num(hi / total)
    kernel = np.clip(np.diff(lo * (1.0 - t) + hi * t, axis=-1), 0, np.inf)
    kernel[kernel < threshold] = 0.0
    nd = offset.ndim
    return np.ascontiguousarray(np.moveaxis(kernel, list(range(nd)), list(range(2, 2 + nd))))
