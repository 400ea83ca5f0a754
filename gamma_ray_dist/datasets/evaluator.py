"""Sky-model evaluation on a `MapDataset`: predicted counts of one `SkyModel` (gammapy's ``MapEvaluator``).

Pipeline for one model, following gammapy 2.1 (``datasets/evaluator.py``, "local" evaluation mode)::

    anchor position  ->  exposure cutout around it (width = PSF kernel width + 2 (evaluation radius + 0.1 deg),
                         odd number of pixels, trimmed at the map edge), PSF kernel and EDisp matrix there
    spatial fraction per cutout pixel (point: 4-pixel bilinear share; extended: pixel-centre rectangle rule,
                         oversampled for small sources)  --PSF-->  (n_true, ny, nx)
    x exposure (cm2 s) x spectral integral per true-energy bin (cm-2 s-1)  --EDisp-->  npred (n_reco, ny, nx)

The anchor (where kernels and cutout are computed) moves only when the model position drifts farther
than ``evaluation_radius + 0.1 deg`` from it, as in gammapy, so the PSF kernel is not recomputed for
every small position step of a fit.

Caching: every cached piece is keyed on the values it depends on (no invalidation to miss):

- the *setup* (cutout, exposure, kernels) on the anchor position, the evaluation radius and the identity
  of the dataset maps it was computed from;
- the PSF-convolved, exposure-weighted spatial template on (setup, spatial parameter values);
- the spectral integral on the spectral parameter values;
- the final npred cutout on both.

A spectral-only change (amplitude, index) therefore costs one small matrix product. Each evaluator
belongs to one dataset object: copies/pickles of a dataset (e.g. one per Ray worker) carry their own
evaluators and caches, so parallel evaluations never share mutable state.

Differences from gammapy, on purpose:

- a model whose cutout does not overlap the map (e.g. a point source stepped outside) contributes
  zero counts instead of failing; the statistic stays finite;
- the anchor starts at the first evaluated position (gammapy starts it at (0, 0) and therefore
  re-anchors once more at the first position change); see `MapEvaluator.update`;
- point sources are convolved by shifting the kernel (exact) instead of an FFT of the cutout.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord

from ..maps.sphere import angular_separation
from ..modeling.models.pixel_integration import (
    integrate_oversampled,
    oversampling_factor,
    upsampled_pixel_centers,
)
from ..modeling.models.spatial import PointSpatialModel
from .convolution import KernelFFT, apply_edisp_values, convolve_points_same
from .irf_maps import overlap_fraction
from .psf_kernel_maker import PSFKernelMaker
from .stat_terms import ModelStatTerms

__all__ = [
    "MapEvaluator",
    "EvaluationSetup",
    "CUTOUT_MARGIN_DEG",
    "PSF_CONTAINMENT",
    "transform_lonlat",
    "point_source_pixels",
    "extended_source_fraction",
]

CUTOUT_MARGIN_DEG = 0.1  # gammapy's CUTOUT_MARGIN
PSF_CONTAINMENT = 0.999  # containment of the PSF kernel radius (gammapy's PSF_CONTAINMENT)
_CM2_PER_M2 = 1e4


# --- frames ------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _rotation(frame_from: str, frame_to: str) -> np.ndarray:
    """Rotation matrix between two celestial frames (ICRS <-> Galactic is a fixed rotation)."""
    from astropy.coordinates import CartesianRepresentation

    basis = SkyCoord(CartesianRepresentation(x=[1.0, 0.0, 0.0], y=[0.0, 1.0, 0.0], z=[0.0, 0.0, 1.0]),
                     frame=frame_from)
    xyz = basis.transform_to(frame_to).cartesian.xyz.value  # columns: images of the basis vectors
    return np.asarray(xyz, dtype=float)


def transform_lonlat(lon_deg: Any, lat_deg: Any, frame_from: str, frame_to: str) -> tuple[np.ndarray, np.ndarray]:
    """Convert (lon, lat) in degrees between "icrs" and "galactic" (identity for equal frames)."""
    lon = np.asarray(lon_deg, dtype=float)
    lat = np.asarray(lat_deg, dtype=float)
    if frame_from == frame_to:
        return lon, lat
    lon_r, lat_r = np.radians(lon), np.radians(lat)
    vec = np.stack([np.cos(lat_r) * np.cos(lon_r), np.cos(lat_r) * np.sin(lon_r), np.sin(lat_r)])
    out = np.tensordot(_rotation(frame_from, frame_to), vec, axes=1)
    lon_out = np.degrees(np.arctan2(out[1], out[0])) % 360.0
    lat_out = np.degrees(np.arctan2(out[2], np.hypot(out[0], out[1])))
    return lon_out, lat_out


# --- spatial integration on a cutout grid ------------------------------------------------------
def point_source_pixels(x0: float, y0: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels and weights of gammapy's bilinear point-source assignment (``_grid_weights``).

    A pixel ``(iy, ix)`` gets ``max(1 - |ix - x0|, 0) * max(1 - |iy - y0|, 0)``; only pixels inside the
    image are returned, so a source within one pixel of the border loses part of its flux and a source
    farther outside none is returned.

    Returns
    -------
    iy, ix, weights : ndarray
    """
    if not (np.isfinite(x0) and np.isfinite(y0)):
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    fx, fy = np.floor(x0), np.floor(y0)
    xs = np.array([fx, fx + 1])
    ys = np.array([fy, fy + 1])
    wx = np.clip(1 - np.abs(xs - x0), 0, None)
    wy = np.clip(1 - np.abs(ys - y0), 0, None)
    iy, ix = np.meshgrid(ys, xs, indexing="ij")
    w = wy[:, None] * wx[None, :]
    keep = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny) & (w > 0)
    return iy[keep].astype(int), ix[keep].astype(int), w[keep]


def _inner_window(geom, lon: float, lat: float, width: float) -> Optional[tuple]:
    """The pixel window ``geom.cutout(position, width)`` ("trim") selects, by the arithmetic of
    ``Cutout2D`` (``all_world2pix``, ``overlap_slices``) without building a SkyCoord; None if unsure."""
    from astropy.nddata.utils import NoOverlapError, PartialOverlapError, overlap_slices

    scales = geom.pixel_scales.to_value("deg")  # (x, y)
    width_npix = np.clip(np.array([width, width]) / scales, 1, None)
    x, y = geom.wcs.all_world2pix(np.array([lon]), np.array([lat]), 0)
    if not (np.isfinite(x[0]) and np.isfinite(y[0])):
        return None
    ny, nx = geom.data_shape[-2:]
    size = (int(np.round(width_npix[1])), int(np.round(width_npix[0])))
    try:
        large, _ = overlap_slices((ny, nx), size, (float(y[0]), float(x[0])), mode="trim")
    except (NoOverlapError, PartialOverlapError, ValueError):
        return None
    return tuple((sl.start, sl.stop) for sl in large)


@dataclass(frozen=True)
class _OversampledGrid:
    """Oversampled pixel centres of an inner window, in the model frame (what `extended_source_fraction`
    evaluates the model on), and where the window sits in the image."""

    lon: np.ndarray
    lat: np.ndarray
    parent: tuple
    cutout: tuple


def _oversampled_grid(geom, lon0: float, lat0: float, width: float, factor: int, geom_frame: str,
                      frame: str, cache: Optional[dict]) -> Optional[_OversampledGrid]:
    """`_OversampledGrid` of the window of ``width`` around (lon0, lat0) (geom frame); None when that
    window does not overlap the image. Memoised in ``cache`` per (geom, window, factor, frames) once the
    window arithmetic is checked against ``geom.cutout``."""
    window = _inner_window(geom, lon0, lat0, width)
    key = (window, factor, geom_frame, frame)
    if cache is not None and window is not None:
        hit = cache.get(key)
        if hit is not None and hit[0] is geom:
            return hit[1]
    try:
        inner = geom.cutout(SkyCoord(lon0, lat0, unit="deg", frame=geom_frame), width)
    except Exception:  # no overlap: gammapy falls back to pixel centres on the whole image
        return None
    iny, inx = inner.data_shape[-2:]
    x, y = upsampled_pixel_centers(inx, iny, factor)
    lon, lat = inner.wcs.wcs_pix2world(x, y, 0)
    lon, lat = transform_lonlat(lon, lat, geom_frame, frame)
    info = inner.cutout_slices(geom)
    grid = _OversampledGrid(lon, lat, tuple(info["parent-slices"]), tuple(info["cutout-slices"]))
    parent = tuple((sl.start, sl.stop) for sl in grid.parent)
    if cache is not None and window is not None and parent == window and grid.cutout == (slice(0, iny), slice(0, inx)):
        if len(cache) > 64:
            cache.clear()
        cache[key] = (geom, grid)
    return grid


def extended_source_fraction(spatial_model, geom, geom_frame: str, cache: Optional[dict] = None) -> np.ndarray:
    """Fraction of an extended source's flux in each pixel of an image geometry (gammapy ``integrate_geom``).

    The model is integrated with the rectangle rule (pixel-centre value times solid angle); on a cutout
    of width ``2 * max(evaluation_radius, pixel scale)`` around the source the pixels are oversampled by
    ``min(ceil(pixel scale / evaluation_bin_size_min), 200)``; with a factor of 1, or when that cutout
    does not overlap the image, the whole image is evaluated at pixel centres.

    Parameters
    ----------
    spatial_model : `SpatialModel`
        Extended model with ``evaluate_values(lon_deg, lat_deg)`` in its frame.
    geom : `WcsGeom`
        Image geometry (the model-evaluation cutout).
    geom_frame : str
        Frame of ``geom``.
    cache : dict, optional
        Memo of the oversampled pixel coordinates per window (a fit moves the source by less than a
        pixel most of the time): pass the same dict on repeated calls for one ``geom``.

    Returns
    -------
    ndarray, shape (ny, nx)
    """
    ny, nx = geom.data_shape[-2:]
    frame = spatial_model.frame
    pix_scale = float(np.max(geom.pixel_scales.to_value("deg")))
    radius = spatial_model.evaluation_radius
    grid = None
    factor = None
    if radius is not None:
        lon0, lat0 = transform_lonlat(_deg(spatial_model.lon_0), _deg(spatial_model.lat_0), frame, geom_frame)
        width = 2 * max(float(radius.to_value("deg")), pix_scale)
        factor = oversampling_factor(spatial_model.evaluation_bin_size_min, pix_scale)
        if factor > 1:
            grid = _oversampled_grid(geom, float(lon0), float(lat0), width, factor, geom_frame, frame, cache)
            if grid is None:
                factor = 1
    else:
        factor = oversampling_factor(spatial_model.evaluation_bin_size_min, pix_scale)

    result = np.zeros((ny, nx))
    if factor > 1 and grid is not None:
        values = spatial_model.evaluate_values(grid.lon, grid.lat)
        block = integrate_oversampled(values, factor, 1.0)  # mean brightness per inner pixel
        result[grid.parent] = block[grid.cutout]
    else:
        key = ("centres", geom_frame, frame)
        hit = None if cache is None else cache.get(key)
        if hit is not None and hit[0] is geom:
            lon, lat = hit[1]
        else:
            lon, lat = geom.pixel_centers()
            lon, lat = transform_lonlat(lon, lat, geom_frame, frame)
            if cache is not None:
                cache[key] = (geom, (lon, lat))
        result = np.nan_to_num(np.asarray(spatial_model.evaluate_values(lon, lat), dtype=float))
    return result * geom.solid_angle_values()


# --- evaluator -----------------------------------------------------------------------------------
def _deg(par) -> float:
    """Parameter value in degrees (no Quantity on the hot path when already in deg)."""
    return float(par.value) if par.unit is u.deg or par.unit == u.deg else float(par.quantity.to_value(u.deg))


@dataclass(frozen=True)
class EvaluationSetup:
    """Everything of one model evaluation that depends on the anchor position, not on parameters.

    Attributes
    ----------
    anchor : (lon, lat)
        Model position (deg, model frame) where cutout and kernels were computed.
    radius : float
        Evaluation radius (deg) at that time; the anchor moves when the source drifts farther than
        ``radius + CUTOUT_MARGIN_DEG``.
    contributes : bool
        False when the model cannot predict counts inside the dataset mask (nothing else is set).
    slices : (slice, slice)
        Where the cutout sits in the dataset image.
    geom : `WcsGeom` or None
        Image geometry of the cutout.
    exposure : ndarray (n_true, ny, nx)
        Exposure on the cutout, cm2 s.
    psf_kernel : ndarray (n_true, k, k) or None
    edisp : ndarray (n_true, n_reco)
    token : tuple
        Identity of the dataset maps used (a new setup is made when one is replaced).
    """

    anchor: tuple[float, float]
    radius: float
    contributes: bool
    token: tuple
    slices: Optional[tuple] = None
    geom: Any = None
    exposure: Optional[np.ndarray] = None
    psf_kernel: Optional[np.ndarray] = None
    edisp: Optional[np.ndarray] = None
    energy_true_edges: Optional[np.ndarray] = None


def _dataset_token(dataset) -> tuple:
    """Identity of the maps an evaluation setup is derived from."""
    return tuple(id(getattr(dataset, key, None)) for key in ("exposure", "psf", "edisp", "mask_safe", "mask_fit"))


def _mask_image(dataset) -> Optional[np.ndarray]:
    """Spatial mask: True where any energy bin of ``mask_safe & mask_fit`` is True (None = all)."""
    mask = dataset.mask
    if mask is None:
        return None
    return np.asarray(mask.data, dtype=bool).any(axis=0)


def _mask_has_overlap(mask_image: Optional[np.ndarray], geom, position: SkyCoord, width: float) -> bool:
    """gammapy's ``SkyModel.contributes``: any True mask pixel in the trimmed cutout (False if none)."""
    try:
        cut = geom.cutout(position, width)
    except Exception:  # no overlap with the map
        return False
    if mask_image is None:
        return True
    sl = cut.cutout_slices(geom)["parent-slices"]
    return bool(np.any(mask_image[sl]))


class MapEvaluator:
    """Predicted counts of one `SkyModel` on a `MapDataset` (cached; see the module docstring).

    Parameters
    ----------
    model : `SkyModel`
        The model (shared object: parameter changes are picked up at the next evaluation).
    """

    def __init__(self, model):
        self.model = model
        self.setup: Optional[EvaluationSetup] = None
        self._spatial_cache: tuple = (None, None)
        self._spectral_cache: tuple = (None, None)
        self._npred_cache: tuple = (None, None)
        self._terms_cache: tuple = (None, None)  # (template key, static token) -> ModelStatTerms
        self._contribution_cache: tuple = (None, None)
        self._kernel_fft: tuple = (None, None)  # (setup, KernelFFT of its PSF kernel)
        self._grid_cache: tuple = (None, None)  # (setup, memo of extended_source_fraction)
        self._kernel_maker: Optional[tuple] = None  # (dataset token, PSFKernelMaker)
        self.n_updates = 0  # number of setups computed (diagnostics, tests)

    # -- parameters -------------------------------------------------------------------------
    @property
    def is_point_source(self) -> bool:
        return isinstance(self.model.spatial_model, PointSpatialModel)

    def _position(self) -> tuple[float, float]:
        sm = self.model.spatial_model
        return _deg(sm.lon_0), _deg(sm.lat_0)

    def _radius(self) -> float:
        radius = self.model.spatial_model.evaluation_radius
        return 0.0 if radius is None else float(u.Quantity(radius, u.deg).value)

    def needs_update(self, dataset) -> bool:
        """True when there is no setup, the dataset maps changed or the source left the anchor region."""
        s = self.setup
        if s is None or s.token != _dataset_token(dataset):
            return True
        lon, lat = self._position()
        if (lon, lat) == s.anchor:
            return False
        sep = np.degrees(angular_separation(lon, lat, s.anchor[0], s.anchor[1]))
        return bool(sep > s.radius + CUTOUT_MARGIN_DEG) or not np.isfinite(sep)

    # -- setup ------------------------------------------------------------------------------
    def update(self, dataset) -> EvaluationSetup:
        """Compute cutout, exposure, PSF kernel and EDisp matrix at the current model position."""
        self.n_updates += 1
        token = _dataset_token(dataset)
        lon, lat = self._position()
        radius = self._radius()
        geom = dataset.exposure.geom
        geom_frame = geom.frame
        glon, glat = transform_lonlat(lon, lat, self.model.spatial_model.frame, geom_frame)
        bad = not (np.isfinite(glon) and np.isfinite(glat))
        position = None if bad else SkyCoord(float(glon), float(glat), unit="deg", frame=geom_frame)
        mask_image = _mask_image(dataset)
        psf = dataset.psf

        # cheap pre-check with the largest possible kernel, so far-away sources skip the kernel maths
        pix = float(np.max(geom.pixel_scales.to_value("deg")))
        max_kernel = 0.0
        if psf is not None:
            max_kernel = 2 * float(psf.psf_map.geom.axes["rad"].edges[-1].to_value("deg")) + 2 * pix
        if bad or not _mask_has_overlap(mask_image, geom, position,
                                        2 * radius + CUTOUT_MARGIN_DEG + max_kernel):
            self.setup = EvaluationSetup((lon, lat), radius, False, token)
            return self.setup

        kernel = None
        psf_width = 0.0
        if psf is not None:
            if self._kernel_maker is None or self._kernel_maker[0] != token:
                self._kernel_maker = (token, PSFKernelMaker(psf, geom))
            plon, plat = transform_lonlat(glon, glat, geom_frame, psf.psf_map.geom.frame)
            kernel = self._kernel_maker[1].kernel(float(plon), float(plat), containment=PSF_CONTAINMENT)
            psf_width = kernel.shape[-1] * pix
        contributes = _mask_has_overlap(mask_image, geom, position, 2 * radius + CUTOUT_MARGIN_DEG + psf_width)
        if not contributes:
            self.setup = EvaluationSetup((lon, lat), radius, False, token)
            return self.setup

        width = psf_width + 2 * (radius + CUTOUT_MARGIN_DEG)
        try:
            cut = geom.to_image().cutout(position, width, mode="trim", odd_npix=True)
        except Exception:
            self.setup = EvaluationSetup((lon, lat), radius, False, token)
            return self.setup
        slices = tuple(cut.cutout_slices(geom.to_image())["parent-slices"])
        exposure = np.asarray(dataset.exposure.data[(Ellipsis,) + slices], dtype=float)
        exposure = exposure * dataset.exposure.unit.to("cm2 s")

        reco_axis = dataset._geom.axes["energy"]
        if dataset.edisp is not None:
            edisp = np.asarray(dataset.edisp.get_edisp_kernel(position=position, energy_axis=reco_axis).pdf_matrix,
                               dtype=float)
        else:
            true_edges = geom.axes["energy_true"].edges.to_value("TeV")
            edisp = overlap_fraction(reco_axis.edges.to_value("TeV"), true_edges)
        self.setup = EvaluationSetup((lon, lat), radius, True, token, slices=slices, geom=cut,
                                     exposure=exposure, psf_kernel=kernel, edisp=edisp,
                                     energy_true_edges=geom.axes["energy_true"].edges.to_value("TeV"))
        return self.setup

    # -- pieces -----------------------------------------------------------------------------
    def _spatial_template(self, setup: EvaluationSetup, geom_frame: str) -> np.ndarray:
        """PSF-convolved spatial fraction times exposure, (n_true, ny, nx), cached on spatial values."""
        key = (self.n_updates, self.model.spatial_model.cache_key())
        if self._spatial_cache[0] == key:
            return self._spatial_cache[1]
        sm = self.model.spatial_model
        cut = setup.geom
        ny, nx = cut.data_shape[-2:]
        if self.is_point_source:
            lon, lat = transform_lonlat(*self._position(), sm.frame, geom_frame)
            x0, y0 = cut.wcs.wcs_world2pix(float(lon), float(lat), 0)
            iy, ix, w = point_source_pixels(float(x0), float(y0), nx, ny)
            if setup.psf_kernel is not None:
                spatial = convolve_points_same(iy, ix, w, (ny, nx), setup.psf_kernel)
            else:
                spatial = np.zeros((1, ny, nx))
                spatial[0, iy, ix] = w
        else:
            if self._grid_cache[0] is not setup:
                self._grid_cache = (setup, {})
            image = extended_source_fraction(sm, cut, geom_frame, cache=self._grid_cache[1])
            if setup.psf_kernel is None:
                spatial = image[None]
            else:
                if self._kernel_fft[0] is not setup:  # the kernel is fixed per setup: transform it once
                    self._kernel_fft = (setup, KernelFFT(setup.psf_kernel, (ny, nx)))
                spatial = self._kernel_fft[1].convolve(image)
        template = spatial * setup.exposure
        self._spatial_cache = (key, template)
        return template

    def _spectral_flux(self, energy_true_edges: np.ndarray) -> np.ndarray:
        """Integral flux per true-energy bin (cm-2 s-1), cached on spectral values."""
        spectral = self.model.spectral_model
        key = spectral.cache_key()
        if self._spectral_cache[0] == key:
            return self._spectral_cache[1]
        # one model shared by many datasets (a joint fit): the integral is kept on the model object for
        # the last (values, edges), so each spectral step integrates once, not once per dataset; the key
        # holds the model's id and values, a copy of the model misses
        memo = getattr(spectral, "_integral_memo", None)
        if memo is not None and memo[0] == key and np.array_equal(memo[1], energy_true_edges):
            flux = memo[2]
        else:
            flux = np.array(spectral.integral_values(energy_true_edges[:-1], energy_true_edges[1:]), dtype=float)
            flux.setflags(write=False)
            try:
                spectral._integral_memo = (key, np.array(energy_true_edges, dtype=float), flux)
            except AttributeError:  # a model class with __slots__: no sharing
                pass
        self._spectral_cache = (key, flux)
        return flux

    # -- result -----------------------------------------------------------------------------
    def _setup_and_template(self, dataset):
        """``(setup, spatial template)`` up to date for ``dataset``, or None when the model does not contribute."""
        if self.model.spatial_model is None:
            raise NotImplementedError(f"Model {self.model.name!r}: SkyModel without a spatial model "
                                      "is not supported on a MapDataset")
        setup = self.setup
        if self.needs_update(dataset):
            setup = self.update(dataset)
        if not setup.contributes:
            return None
        return setup, self._spatial_template(setup, setup.geom.frame)

    def compute_npred(self, dataset) -> Optional[tuple[tuple, np.ndarray]]:
        """Predicted counts of the model: ``(slices, npred)`` with npred ``(n_reco, ny, nx)`` on the cutout
        at ``slices`` of the dataset image, or None when the model does not contribute.

        The returned array is cached: do not modify it.
        """
        ready = self._setup_and_template(dataset)
        if ready is None:
            return None
        setup, template = ready
        spectral_key = self.model.spectral_model.cache_key()
        key = (self._spatial_cache[0], spectral_key)
        if self._npred_cache[0] == key:
            return setup.slices, self._npred_cache[1]
        flux = self._spectral_flux(setup.energy_true_edges)
        # edisp and spectrum folded first: (n_true, n_reco) weights on the template planes
        npred = apply_edisp_values(template, flux[:, None] * setup.edisp)
        self._npred_cache = (key, npred)
        return setup.slices, npred

    def stat_contribution(self, dataset, static):
        """This model's part of the Cash statistic (`stat_terms.cash_from_terms`).

        Returns
        -------
        tuple, None or False
            ``(masked npred sum, indices of the counted bins in the cutout, npred there)`` (a cached
            object, returned again while the parameters and the setup do not change), None when the model
            does not contribute, False when the decomposition does not apply (negative or non-finite
            template or spectral weights: the dataset uses the dense path).
        """
        ready = self._setup_and_template(dataset)
        if ready is None:
            return None
        setup, template = ready
        terms_key = (self._spatial_cache[0], static.token)
        if self._terms_cache[0] != terms_key:
            self._terms_cache = (terms_key, ModelStatTerms.from_template(template, setup.slices, static))
            self._contribution_cache = (None, None)
        terms = self._terms_cache[1]
        if not terms.usable:
            return False
        key = (terms_key, self.model.spectral_model.cache_key())
        if self._contribution_cache[0] == key:
            return self._contribution_cache[1]
        weights = self._spectral_flux(setup.energy_true_edges)[:, None] * setup.edisp
        if not (np.all(np.isfinite(weights)) and np.all(weights >= 0)):
            return False
        total, values = terms.contribution(weights)
        result = (total, terms.nz_index, values)
        self._contribution_cache = (key, result)
        return result

    def reset(self) -> None:
        """Forget the setup and all caches (e.g. after editing dataset maps in place)."""
        self.setup = None
        self._kernel_maker = None
        self._spatial_cache = (None, None)
        self._spectral_cache = (None, None)
        self._npred_cache = (None, None)
        self._terms_cache = (None, None)
        self._contribution_cache = (None, None)
        self._kernel_fft = (None, None)
        self._grid_cache = (None, None)
