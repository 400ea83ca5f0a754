"""Fast path of `reduce_observation`: the makers' array functions on the cutout window of the stacked
geometry.

Plain arrays only: no per-observation maps, WCS copies or SkyCoord/Time arithmetic; per-process caches
of the stacked pixel centres, solid angles and cutout windows. Each step calls the array-level
functions the makers' ``run`` methods call (`makers.projection`, ``SafeMaskMaker.*_mask_values``,
``FoVBackgroundMaker.normalise``). Covers the makers' usual configurations (`fast_spec_supported`);
`dispatch` falls back to the makers for anything else. tests/test_reduction.py checks both agree.
"""
from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict

import numpy as np
from astropy import units as u

from ..datasets.partial import crop_window
from ..errors import GammaRayDistError, IRFError, ObservationError
from .spec import (
    ObservationOutsideGeometry,
    ReductionSpec,
    SpecCache,
    observation_filename,
    prepare,
)

__all__ = ["fast_spec_supported", "fast_context", "reduce_fast"]

log = logging.getLogger(__name__)

_WINDOW_CACHE_SIZE = 256


def fast_spec_supported(spec: ReductionSpec) -> bool:
    """True when the fast path reproduces the makers for this spec (else the makers run)."""
    prepared = prepare(spec)
    maker, safe = prepared.maker, prepared.safe
    if set(maker.selection) != set(maker.available_selection):
        return False
    if not safe.supports_arrays:
        return False
    geoms = prepared.stacked.geoms
    if any(geoms.get(k) is None for k in ("geom", "geom_exposure", "geom_psf", "geom_edisp")):
        return False
    if geoms["geom_edisp"].axes[0].name != "energy":  # EDispMap (migra) is not supported anyway
        return False
    return True


class _Window:
    """The cutout of one pointing: window bounds in the stacked fine and coarse grids, and what
    depends only on the window (computed once with the real cutout geometries, as the makers do)."""

    __slots__ = ("fine_bounds", "coarse_bounds", "fine_cut", "coarse_cut", "aeff_pix", "psf_pix",
                 "exclusion", "counts_geom")

    def __init__(self, ctx, spec, fine_geom_cut, coarse_geom_cut):
        from ..datasets.stacking import grid_centres_in, overlap_bounds
        from ..makers.fov import exclusion_mask_values
        from ..makers.coords import nearest_pixel

        fine_parent, fine_cut = overlap_bounds(ctx.fine_image.wcs, ctx.fine_shape, fine_geom_cut.wcs,
                                               tuple(fine_geom_cut.data_shape[-2:]))
        coarse_parent, coarse_cut = overlap_bounds(ctx.coarse_image.wcs, ctx.coarse_shape,
                                                   coarse_geom_cut.wcs, tuple(coarse_geom_cut.data_shape[-2:]))
        self.fine_bounds, self.coarse_bounds = fine_parent, coarse_parent
        self.fine_cut, self.coarse_cut = fine_cut, coarse_cut
        # aeff-max reads the exposure at the pixel nearest to the cutout centre (SafeMaskMaker)
        self.aeff_pix = nearest_pixel(fine_geom_cut, fine_geom_cut.center_skydir)
        # stacking weights: coarse pixel centres in the fine cutout grid (PartialDataset.from_dataset)
        self.psf_pix = grid_centres_in(coarse_geom_cut.wcs, tuple(coarse_geom_cut.data_shape[-2:]),
                                       fine_geom_cut.wcs)
        # counts are binned with the cutout's own WCS, as the makers do
        self.counts_geom = fine_geom_cut.to_cube(list(ctx.geom.axes))
        self.exclusion = None
        if spec.exclusion_mask is not None:
            self.exclusion = exclusion_mask_values(spec.exclusion_mask, spec.exclusion_geom, self.counts_geom)


class _FastContext:
    """Per spec and process: the stacked geometry's plain arrays and the cutout windows seen."""

    def __init__(self, spec: ReductionSpec):
        from astropy.wcs.utils import proj_plane_pixel_scales

        from ..makers.coords import pixel_centers_icrs

        prepared = prepare(spec)
        self.maker, self.safe, self.fov = prepared.maker, prepared.safe, prepared.fov
        geometry = prepared.geometry
        geoms = prepared.stacked.geoms
        self.geom = geoms["geom"]
        self.fine_image = self.geom.to_image()
        self.coarse_image = geoms["geom_psf"].to_image()
        self.frame = self.fine_image.frame
        self.fine_shape = tuple(self.fine_image.data_shape[-2:])
        self.coarse_shape = tuple(self.coarse_image.data_shape[-2:])
        # pixel centres (geometry frame, for offsets; ICRS for FoV coordinates) and solid angles
        self.fine_lonlat = self.fine_image.pixel_centers()
        self.fine_radec = pixel_centers_icrs(self.fine_image)
        self.coarse_lonlat = self.coarse_image.pixel_centers()
        self.solid_angle = self.fine_image.solid_angle_values()
        self.fine_scales = proj_plane_pixel_scales(self.fine_image.wcs)
        self.coarse_scales = proj_plane_pixel_scales(self.coarse_image.wcs)
        self.energy_edges = np.asarray(self.geom.axes["energy"].edges_values, dtype=np.float64)
        self.energy_centers = np.asarray(self.geom.axes["energy"].center_values, dtype=np.float64)
        e_true = geoms["geom_exposure"].axes["energy_true"]
        self.e_true_centers = np.asarray(e_true.center_values, dtype=np.float64)
        self.e_true_edges = np.asarray(e_true.edges_values, dtype=np.float64)
        self.rad_edges = np.asarray(geoms["geom_psf"].axes["rad"].edges_values, dtype=np.float64)
        self.reference_time = geometry.reference_time
        self._windows: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def window(self, spec: ReductionSpec, obs, ra0: float, dec0: float, lon0: float,
               lat0: float) -> "_Window | None":
        """The cutout window around (lon0, lat0) (geometry frame), as ``WcsGeom.cutout`` (astropy
        ``Cutout2D``, mode "trim") selects it; None if our arithmetic disagrees with the real cutout."""
        from astropy.nddata.utils import overlap_slices

        from ..datasets.irf_maps import IRF_MIN_NPIX

        key = []
        for image, scales, shape, min_npix in (
                (self.fine_image, self.fine_scales, self.fine_shape, 1),
                (self.coarse_image, self.coarse_scales, self.coarse_shape, IRF_MIN_NPIX)):
            x, y = image.wcs.all_world2pix(np.array([lon0]), np.array([lat0]), 0)
            width_npix = np.clip(spec.width / np.asarray(scales, dtype=np.float64), min_npix, None)
            size = (int(np.round(width_npix[1])), int(np.round(width_npix[0])))
            large, _ = overlap_slices(shape, size, (float(y[0]), float(x[0])), mode="trim")
            key.append((large[0].start, large[0].stop, large[1].start, large[1].stop))
        key = tuple(key)
        with self._lock:
            win = self._windows.get(key)
            if win is not None:
                self._windows.move_to_end(key)
                return win
        from astropy.coordinates import SkyCoord

        pointing = SkyCoord(ra0, dec0, unit="deg", frame="icrs")
        width = spec.width * u.deg
        fine = self.fine_image.cutout(pointing, width, mode="trim")
        coarse = self.coarse_image.cutout(pointing, width, mode="trim", min_npix=IRF_MIN_NPIX)
        win = _Window(self, spec, fine, coarse)
        (fy0, fy1), (fx0, fx1) = win.fine_bounds
        (cy0, cy1), (cx0, cx1) = win.coarse_bounds
        if ((fy0, fy1, fx0, fx1), (cy0, cy1, cx0, cx1)) != key:
            log.warning("cutout window arithmetic disagrees with Cutout2D for obs %s; using the makers",
                        getattr(obs, "obs_id", None))
            return None
        with self._lock:
            self._windows[key] = win
            while len(self._windows) > _WINDOW_CACHE_SIZE:
                self._windows.popitem(last=False)
        return win


fast_context = SpecCache(_FastContext, maxsize=8)


def _model_factor(model, energy_centers: np.ndarray) -> np.ndarray:
    """The FoV background model's factor per reco-energy bin, shaped (n, 1, 1)."""
    return np.asarray(model.evaluate_values(energy_centers), dtype=float).reshape(-1, 1, 1)


@functools.lru_cache(maxsize=1)
def _default_reference():
    from astropy.time import Time

    from ..datasets.partial import time_to_tuple

    return time_to_tuple(Time("2000-01-01"))


def reduce_fast(obs, spec: ReductionSpec, ctx: _FastContext, t0: float):
    """`reduce_observation` on plain arrays; None when this observation needs the makers.

    Parameters
    ----------
    obs : Observation
    spec : ReductionSpec
    ctx : the spec's `fast_context`
    t0 : float
        ``time.perf_counter()`` at the start of the task (for the ``read`` timing).
    """
    from ..datasets.partial import PartialDataset, time_to_tuple
    from ..datasets.stacking import mask_linear, mask_nearest
    from ..irf.core import TableIRF
    from ..maps.errors import MapError
    from ..maps.sphere import angular_separation
    from ..makers.coords import fov_icrs_lonlat, skycoord_lonlat
    from ..makers.projection import (
        aeff_values,
        background_rate_values,
        bin_events,
        edisp_kernel_values,
        log_upsampled_edges,
        psf_values,
    )

    obs_id = getattr(obs, "obs_id", None)
    maker, safe, fov = ctx.maker, ctx.safe, ctx.fov
    # -- read (lazy parts of the observation) and check that the fast path applies ---------------
    try:
        info = obs.pointing
    except GammaRayDistError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ObservationError(f"cannot get the pointing: {type(exc).__name__}: {exc}", obs_id,
                               observation_filename(obs, "events")) from exc
    if info is None or info.fixed_icrs is None:
        return None  # drift-scan pointing: time-dependent, the makers handle it
    aeff, edisp, psf, bkg_irf = obs.aeff, obs.edisp, obs.psf, obs.bkg
    if aeff is None or edisp is None or psf is None or bkg_irf is None or obs.gti is None:
        return None  # the makers raise the right error
    if not isinstance(edisp, TableIRF):
        return None
    if "offset" not in bkg_irf.axes.names and bkg_irf.fov_alignment == "ALTAZ":
        return None  # FoV rotation followed in time steps: the makers
    events = obs.events.arrays(("RA", "DEC", "ENERGY"))
    ra0 = float(info.fixed_icrs.ra.deg)
    dec0 = float(info.fixed_icrs.dec.deg)
    t_read = time.perf_counter()

    # -- cutout window ----------------------------------------------------------------------------
    if ctx.frame == "icrs":
        lon0, lat0 = ra0, dec0
    else:
        lon0, lat0 = skycoord_lonlat(info.fixed_icrs, ctx.frame)
    try:
        win = ctx.window(spec, obs, ra0, dec0, lon0, lat0)
    except (MapError, ValueError) as exc:  # astropy's NoOverlapError is a ValueError
        raise ObservationOutsideGeometry(
            f"the cutout of width {spec.width} deg around the pointing (ra={ra0:.3f}, "
            f"dec={dec0:.3f}) does not overlap the stacked geometry", obs_id,
            observation_filename(obs, "events")) from exc
    if win is None:
        return None
    (fy0, fy1), (fx0, fx1) = win.fine_bounds
    (cy0, cy1), (cx0, cx1) = win.coarse_bounds
    t_cut = time.perf_counter()

    # -- maps (MapDatasetMaker) ----------------------------------------------------------------------
    try:
        # Observation.observation_{time,live_time}_duration, with one GTI time sum
        ontime = float(obs.gti.time_sum.to_value("s"))
        livetime = float(ontime * (1 - obs.observation_dead_time_fraction))
        lon, lat = (a[fy0:fy1, fx0:fx1] for a in ctx.fine_lonlat)
        offset = np.degrees(angular_separation(lon, lat, lon0, lat0))
        clon, clat = (a[cy0:cy1, cx0:cx1] for a in ctx.coarse_lonlat)
        offset_coarse = np.degrees(angular_separation(clon, clat, lon0, lat0))
        # counts, on the real cutout WCS (bin edges exactly where the makers put them)
        geom_cut = win.counts_geom
        if ctx.frame == "icrs":
            ev_lon, ev_lat = events["RA"], events["DEC"]
        else:
            from astropy.coordinates import SkyCoord

            c = SkyCoord(events["RA"], events["DEC"], unit="deg", frame="icrs").transform_to(ctx.frame)
            ev_lon, ev_lat = c.spherical.lon.deg, c.spherical.lat.deg
        counts = bin_events(geom_cut, ev_lon, ev_lat, events["ENERGY"])
        exposure = aeff_values(aeff, offset, ctx.e_true_centers) * livetime
        # background
        bkg = maker.prepared_background(obs)
        edges = ctx.energy_edges
        oversampling = maker.background_oversampling
        if oversampling:
            edges = log_upsampled_edges(edges, oversampling)
        if "offset" in bkg.axes.names:
            rate = background_rate_values(bkg, edges, offset=offset)
        else:
            ra, dec = (a[fy0:fy1, fx0:fx1] for a in ctx.fine_radec)
            fov_lon, fov_lat = fov_icrs_lonlat(ra, dec, ra0, dec0,
                                               reverse_lon=bkg.fov_alignment == "REVERSE_LON_RADEC")
            rate = background_rate_values(bkg, edges, fov_lon=fov_lon, fov_lat=fov_lat)
        background = rate * ctx.solid_angle[fy0:fy1, fx0:fx1][None] * ontime
        if oversampling:
            background = background.reshape((-1, int(oversampling)) + background.shape[1:]).sum(axis=1)
        # IRF maps on the coarse window
        irf_exposure = (aeff_values(aeff, offset_coarse, ctx.e_true_centers) * livetime)[:, None]
        psf_map = psf_values(psf, offset_coarse, ctx.e_true_centers, ctx.rad_edges)
        edisp_map = edisp_kernel_values(edisp, offset_coarse, ctx.e_true_edges, ctx.energy_edges)
    except GammaRayDistError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ObservationError(f"map making failed: {type(exc).__name__}: {exc}", obs_id,
                               observation_filename(obs, "events")) from exc
    for what, hdu, values in (("exposure", "aeff", exposure), ("background", "bkg", background),
                              ("psf", "psf", psf_map), ("edisp", "edisp", edisp_map)):
        if not np.all(np.isfinite(values)):
            raise IRFError(f"the {hdu} IRF gives non-finite values in the {what} map (NaN or inf in the "
                           "IRF table?)", obs.obs_id, observation_filename(obs, hdu))
    t_make = time.perf_counter()

    # -- safe mask (SafeMaskMaker.run) ------------------------------------------------------------
    shape = background.shape
    aeff_at_center = None
    if "aeff-max" in safe.methods and win.aeff_pix is not None:
        pix = win.aeff_pix
        aeff_at_center = np.asarray(exposure[:, pix[0], pix[1]], dtype=np.float64) / livetime
    mask = safe.mask_values(background, ctx.energy_edges, offset=offset, aeff_meta=aeff.meta,
                            aeff_at_center=aeff_at_center, energy_true=ctx.e_true_centers,
                            obs_id=obs_id, name=f"obs-{obs_id}")
    t_safe = time.perf_counter()

    # -- FoV background normalisation (FoVBackgroundMaker.run) -----------------------------------
    status, model = "none", None
    if fov is not None:
        from ..modeling.models import FoVBackgroundModel

        name = f"obs-{obs_id}"
        model = FoVBackgroundModel(dataset_name=name, spectral_model=fov.default_spectral_model.copy())
        factor = _model_factor(model, ctx.energy_centers)
        fit_mask = win.exclusion if win.exclusion is not None else np.ones(shape, dtype=bool)
        fmask = mask & fit_mask
        bkg_pred = background * factor
        npred = np.maximum(bkg_pred, 0)
        fmask = fmask & ~np.isnan(npred)
        status = fov.normalise(model.spectral_model, counts.astype(np.float64), npred, bkg_pred, fmask, name,
                               unscaled=lambda: background * _model_factor(model, ctx.energy_centers))
        if status.startswith("failed"):
            mask = np.zeros(shape, dtype=bool)
        factor = _model_factor(model, ctx.energy_centers)
    else:
        factor = np.ones((shape[0], 1, 1))
    t_fov = time.perf_counter()

    # -- the partial (PartialDataset.from_dataset) ------------------------------------------------
    cut = win.fine_cut
    mask_image = mask.any(axis=0)
    counts_out = np.ascontiguousarray(crop_window(counts * mask, cut, np.int64))
    background_out = crop_window(background * factor * mask, cut, np.float64)
    exposure_out = crop_window(exposure * mask_image, cut, np.float64)
    livetime_out = livetime if mask_image.any() else float("nan")
    pix_x, pix_y = win.psf_pix
    w = mask_nearest(mask_image, pix_x, pix_y)[np.newaxis, np.newaxis]
    ccut = win.coarse_cut
    # (from_dataset's inner nan_to_num: the products of finite maps are finite)
    psf_w = crop_window(psf_map * irf_exposure * w, ccut, np.float64)
    psf_e = crop_window(irf_exposure * w, ccut, np.float64)
    w = mask_linear(mask, pix_x, pix_y)[np.newaxis]
    edisp_w = crop_window(edisp_map * irf_exposure * w, ccut, np.float64)
    edisp_e = crop_window(irf_exposure * w.any(axis=1, keepdims=True), ccut, np.float64)
    gti = obs.gti
    gti_start = gti_stop = np.zeros(0)
    gti_ref = _default_reference()
    if gti is not None and len(gti.table) > 0:
        ref = gti.time_ref
        gti_ref = time_to_tuple(ref)
        gti_start = np.atleast_1d((gti.time_start - ref).to_value("s")).astype(float)
        gti_stop = np.atleast_1d((gti.time_stop - ref).to_value("s")).astype(float)
    norm, tilt = 1.0, 0.0
    if model is not None:
        sm = model.spectral_model
        norm = float(sm.norm.value) if hasattr(sm, "norm") else 1.0
        tilt = float(sm.tilt.value) if hasattr(sm, "tilt") else 0.0
    meta = {"TELESCOP": (aeff.meta.get("TELESCOP", "Unknown"), ""), "OBS_ID": (int(obs_id), ""),
            "RA_PNT": (ra0, "deg"), "DEC_PNT": (dec0, "deg")}
    partial = PartialDataset(
        obs_id=int(obs_id), fine_bounds=win.fine_bounds, coarse_bounds=win.coarse_bounds,
        counts=counts_out, background=background_out, exposure=exposure_out,
        mask_safe=crop_window(mask, cut, bool), mask_fit=None,
        psf_weighted=psf_w, psf_exposure=psf_e, edisp_weighted=edisp_w, edisp_exposure=edisp_e,
        gti_start=np.ascontiguousarray(gti_start), gti_stop=np.ascontiguousarray(gti_stop),
        gti_reference=gti_ref, livetime=livetime_out, fov_norm=norm, fov_tilt=tilt,
        fov_status=status, meta=meta)
    t_end = time.perf_counter()
    partial.timings = {"read": t_read - t0, "cutout": t_cut - t_read, "make": t_make - t_cut,
                       "safe": t_safe - t_make, "fov": t_fov - t_safe, "partial": t_end - t_fov}
    return partial
