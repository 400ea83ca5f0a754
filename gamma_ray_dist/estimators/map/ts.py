"""`TSMapEstimator`: test-statistic, flux and error maps of a source kernel at every pixel.

Method (Stewart 2009, appendix A; the same estimates as gammapy 2.1 ``TSMapEstimator``): at every
pixel the predicted counts in the kernel footprint are ``npred(norm) = background + norm * model``
with ``model = kernel x reco-energy exposure`` of the kernel source (point by default, PSF- and
EDisp-convolved, normalised to unit sum per energy bin); the best ``norm`` is the root of the Cash
statistic's derivative, found by Brent's method between the analytic bounds of Stewart's appendix;
``ts = cash(norm=0) - cash(norm)``, ``norm_err`` from the curvature, ``norm_ul`` / ``norm_errn`` /
``norm_errp`` from Brent roots of ``cash(norm) - cash_best = n_sigma^2``.

Speed and distribution: the dataset is reduced once to plain arrays (`prepare_ts_inputs`: counts,
background, exposure, kernel, mask weights, the number of counted bins in every pixel's kernel window,
the list of counted bins, and the norm-independent full-window sums ``sum(b)``, ``sum(m)``,
``min(b / m)`` of every pixel, computed for the whole map at once; optionally downsampled), shared once
with the workers; the map is cut into tiles of pixels (`ts_tile`: one job in-process, one per CPU of
about equal cost on a parallel backend). A tile only gathers the counted (``c > 0``) bins of its
pixels' windows (runs of the row-major list of counted bins, one per window row) and packs them
(`ts_fit.PixelSet`); the fits run on all the tile's pixels at once (one vectorised Brent with
per-pixel state). Every pixel's result is a function of the shared arrays and of that pixel alone, so
the assembled maps are bit-identical whatever the tiling or number of workers.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np
from astropy.coordinates import Angle
from numpy.lib.stride_tricks import sliding_window_view

from ...maps import Map, WcsGeom
from ...stats import _LOG_TRUNCATION_SUM, TRUNCATION_VALUE
from ._inputs import (
    check_dataset,
    energy_groups,
    estimation_mask,
    reco_exposure,
    run_jobs,
)
from .core import EstimatorInputError, FluxMaps, MapEstimator
from .ts_fit import N_SCAN, SN_CAP, PixelSet, TSOptions, fit_pixels

__all__ = ["TSMapEstimator", "TSOptions", "prepare_ts_inputs", "ts_tile", "ts_tile_jobs", "ts_balanced_jobs",
           "ts_pixels"]

CUTOUT_MARGIN_DEG = 0.1
_QUANTITIES = ["ts", "norm", "niter", "norm_err", "npred", "npred_excess", "stat", "stat_null", "success"]
_SCAN_QUANTITIES = ("stat_scan", "dnde_scan_values")  # per pixel: one value per norm of the sparse scan


def ts_pixels(c: np.ndarray, b: np.ndarray, m: np.ndarray, norm_guess: np.ndarray, opts: TSOptions) -> dict:
    """Fit the kernel norm of every row (one pixel per row; ``c``, ``b``, ``m`` of shape (npix, L), the
    pixels' kernel windows)."""
    c = np.ascontiguousarray(c, dtype=float)
    b = np.ascontiguousarray(b, dtype=float)
    m = np.ascontiguousarray(m, dtype=float)
    pos = c > 0
    sel = np.flatnonzero(pos)  # row by row, window order
    mpos = m > 0
    sn = np.divide(b, m, out=np.full(m.shape, np.inf), where=mpos).min(axis=1, initial=np.inf)
    plain = bool(np.all(np.isfinite(b)) and np.all(np.isfinite(m)) and b.min(initial=0) >= 0
                 and m.min(initial=0) >= 0)

    px = PixelSet(pos.sum(axis=1), c.ravel()[sel], b.ravel()[sel], m.ravel()[sel], b.sum(axis=1),
                  np.where(mpos, m, 0.0).sum(axis=1), np.minimum(sn, SN_CAP), plain, lambda idx: (b[idx], m[idx]))
    return fit_pixels(px, np.asarray(norm_guess, dtype=float), opts)

# --- tiles ------------------------------------------------------------------------------------------
def _windows(array: np.ndarray, shape: tuple, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """``(npix, planes, ky, kx)`` cutouts of a padded ``(planes, NY, NX)`` array at unpadded positions."""
    return _window_take(array, _window_index(array.shape, shape, iy, ix), shape)


def _window_index(array_shape: tuple, shape: tuple, iy: np.ndarray, ix: np.ndarray) -> np.ndarray:
    """Flat indices ``(npix, planes * ky * kx)`` of the kernel windows in a ``(planes, NY, NX)`` array."""
    planes, ny, nx = array_shape
    ky, kx = shape
    offsets = (np.arange(planes)[:, None, None] * (ny * nx) + np.arange(ky)[None, :, None] * nx
               + np.arange(kx)[None, None, :]).ravel()
    return (np.asarray(iy) * nx + np.asarray(ix))[:, None] + offsets[None, :]


def _window_take(array: np.ndarray, index: np.ndarray, shape: tuple) -> np.ndarray:
    return np.take(np.ascontiguousarray(array).ravel(), index).reshape((index.shape[0], -1) + tuple(shape))


JOBS_PER_CPU = 1  # default jobs per CPU of a parallel backend, of about equal cost (2 per CPU: 7% slower on
                  # the 100x100 seed map on 2 Ray workers, from the extra tasks)
BLOCK = 16384  # pixels fitted together (one root finding)


def ts_tile(shared: dict, job: tuple) -> dict:
    """Fit the pixels of one tile: ``job = (group, iy, ix)`` (pixel indices in the estimation grid).

    The pixels are ordered by the number of counted bins in their kernel window (packed chunks of
    about equal width) and fitted in blocks; every pixel's result depends on that pixel alone."""
    g, iy, ix = job
    grp = shared["groups"][g]
    order = np.argsort(grp["n_positive"][iy, ix], kind="stable")
    out: dict = {}
    for start in range(0, len(order), BLOCK):
        sel = order[start:start + BLOCK]
        px = tile_pixels(grp, iy[sel], ix[sel])
        guess = grp["norm_guess"][iy[sel], ix[sel]] if grp["norm_guess"] is not None else np.ones(len(sel))
        res = fit_pixels(px, guess, shared["options"])
        for name, values in res.items():
            if name not in out:
                out[name] = np.empty((len(iy),) + values.shape[1:], dtype=values.dtype)
            out[name][sel] = values
    return out


def tile_pixels(grp: dict, iy: np.ndarray, ix: np.ndarray) -> PixelSet:
    """The `PixelSet` of the pixels ``(iy, ix)``: their windows' counted bins, found as runs of the
    row-major list of counted bins (one run per window row: ``pos_cs`` counts the bins before every
    position), and the full-window sums precomputed for the whole map."""
    planes, ny_pad, nx_pad = grp["counts"].shape
    ky, kx = grp["kernel"].shape[-2:]
    cs = grp["pos_cs"]
    rows = (np.arange(planes)[:, None] * ny_pad + np.arange(ky)[None, :]).ravel()  # window rows (plane, dy)
    origin = iy * nx_pad + ix  # window corner in the padded plane
    row_start = (iy[:, None] + rows[None, :]) * nx_pad + ix[:, None]
    start = cs[row_start]
    length = cs[row_start + kx] - start
    n_entries = length.sum(axis=1)
    lf = length.ravel()
    total = int(lf.sum())
    seg_first = np.cumsum(lf) - lf
    gidx = np.repeat(start.ravel() - seg_first, lf) + np.arange(total)  # index in the counted-bin list
    d = grp["pos_flat"][gidx] - np.repeat(origin, n_entries)  # offset in the window, padded-cube units
    if grp["model_table"] is not None:
        m = grp["model_table"][d] * grp["pos_expo"][gidx]  # kernel value at the offset x exposure
    else:
        m = _weighted_model(grp, d, gidx)
    px = PixelSet(n_entries, grp["pos_counts"][gidx], grp["pos_background"][gidx], m,
                  grp["s_b"][iy, ix], grp["s_model"][iy, ix], grp["sn_total"][iy, ix], grp["plain"],
                  lambda idx: full_rows(grp, iy[idx], ix[idx]), s_clogb=grp["s_clogb"][iy, ix])
    return px


def _weighted_model(grp: dict, d: np.ndarray, gidx: np.ndarray) -> np.ndarray:
    """Model of counted bins with a mask-weighted kernel (masks differing between the summed energy
    bins): ``sum_e k_e w_e / sum_e w_e`` at the bin (0 where not finite) x exposure."""
    kernel = grp["kernel"]
    j = grp["offset_index"][d]  # flat kernel index of the window offset
    q = grp["pos_flat"][gidx]
    w = grp["weights"].reshape(kernel.shape[0], -1)
    num = np.zeros(d.size)
    den = np.zeros(d.size)
    for e in range(kernel.shape[0]):
        we = w[e][q]
        num = num + kernel[e].ravel()[j] * we
        den = den + we
    with np.errstate(invalid="ignore", divide="ignore"):
        kw = num / den
    kw[~np.isfinite(kw)] = 0
    return kw * grp["pos_expo"][gidx]


def full_rows(grp: dict, iy: np.ndarray, ix: np.ndarray) -> tuple:
    """Background and model of the full kernel windows of pixels ``(iy, ix)``, ``(npix, L)`` each."""
    kernel = grp["kernel"]  # (n_e, ky, kx)
    shape = kernel.shape[-2:]
    npix = len(iy)
    index = _window_index(grp["counts"].shape, shape, iy, ix)
    background = _window_take(grp["background"], index, shape).reshape(npix, -1)
    if grp["model_kernel"] is not None:
        # the kernel factor by window offset x the exposure (masked where the mask is off): the same
        # products as the packed counted bins'
        model = (grp["model_kernel"][None] * _window_take(grp["expo_model"], index, shape)).reshape(npix, -1)
        return background, model
    exposure = _window_take(grp["exposure"], index, shape)
    w = _windows(grp["weights"], shape, iy, ix)  # (npix, n_e, ky, kx)
    num = np.zeros((npix,) + shape)
    den = np.zeros((npix,) + shape)
    for e in range(kernel.shape[0]):
        num = num + kernel[e] * w[:, e]
        den = den + w[:, e]
    with np.errstate(invalid="ignore", divide="ignore"):
        kw = num / den
    kw[~np.isfinite(kw)] = 0
    return background, (kw[:, None] * exposure).reshape(npix, -1)


def window_sums(grp: dict, ny: int, nx: int) -> tuple:
    """``sum(b)``, ``sum(m)`` (``m > 0``), ``min(b / m)`` (``m > 0``, capped at `SN_CAP`) and
    ``sum_c>0(c log b)`` (the statistic's log term at norm 0, truncated as gammapy's) over the kernel
    window of every pixel of the ``(ny, nx)`` grid, for the whole map at once (the same sums for every
    tiling). Sums run over the window offsets in a fixed order."""
    kernel = grp["kernel"]
    ky, kx = kernel.shape[-2:]
    b, c = grp["background"], grp["counts"]
    with np.errstate(divide="ignore", invalid="ignore"):
        logb = np.where(b > TRUNCATION_VALUE, np.log(np.where(b > TRUNCATION_VALUE, b, 1.0)), _LOG_TRUNCATION_SUM)
    s_b = _box_sum(b, ky, kx, ny, nx)
    s_clogb = _box_sum(np.where(c > 0, c * logb, 0.0), ky, kx, ny, nx)
    s_model = np.zeros((ny, nx))
    sn = np.full((ny, nx), np.inf)
    tmp = np.empty((ny, nx))
    fast = grp["model_table"] is not None and grp["plain"]
    with np.errstate(divide="ignore", invalid="ignore"):
        _model_sums(grp, b, kx, ky, ny, nx, fast, s_model, sn, tmp)
    return s_b, s_model, np.minimum(sn, SN_CAP), s_clogb


def _box_sum(a: np.ndarray, ky: int, kx: int, ny: int, nx: int) -> np.ndarray:
    """Sum of a padded ``(planes, NY, NX)`` array over the ``(ky, kx)`` window of every pixel (rows then
    columns, in order)."""
    out = np.zeros((ny, nx))
    for p in range(a.shape[0]):
        rows = np.zeros((a.shape[1], nx))
        for dx in range(kx):
            rows += a[p, :, dx:dx + nx]
        for dy in range(ky):
            out += rows[dy:dy + ny]
    return out


def _model_sums(grp, b, kx, ky, ny, nx, fast, s_model, sn, tmp) -> None:
    """Add ``sum(m)`` and take ``min(b / m)`` (``m > 0``) over the window offsets into ``s_model``, ``sn``."""
    for p in range(b.shape[0]):
        if fast:
            kplane = grp["model_kernel"][p]
            expo = grp["expo_model"][p]
            ratio = b[p] / expo  # b / (k e) = (b / e) / k; where e = 0: inf or nan, which fmin skips
            for dy in range(ky):
                # sum_dx k[dy, dx] e[y + dy, x + dx] for all pixels (einsum's own loop, no BLAS)
                s_model += np.einsum("yxj,j->yx", sliding_window_view(expo[dy:dy + ny], kx, axis=1), kplane[dy])
                for dx in range(kx):
                    if kplane[dy, dx] > 0:
                        np.multiply(ratio[dy:dy + ny, dx:dx + nx], 1 / kplane[dy, dx], out=tmp)
                        np.fmin(sn, tmp, out=sn)
            continue
        for dy in range(ky):
            for dx in range(kx):
                mp = _model_plane(grp, p, dy, dx)[dy:dy + ny, dx:dx + nx]
                pos = mp > 0
                s_model += np.where(pos, mp, 0.0)
                np.fmin(sn, np.where(pos, b[p, dy:dy + ny, dx:dx + nx] / np.where(pos, mp, 1.0), np.inf), out=sn)


def _model_plane(grp: dict, p: int, dy: int, dx: int) -> np.ndarray:
    """Model of window offset ``(p, dy, dx)`` at every padded position (the general, slow path)."""
    kernel, w, e = grp["kernel"], grp["weights"], grp["exposure"]
    if w is None:
        return kernel[p, dy, dx] * e[p]
    num = np.zeros(e.shape[1:])
    den = np.zeros(e.shape[1:])
    for k in range(kernel.shape[0]):
        num = num + kernel[k, dy, dx] * w[k]
        den = den + w[k]
    with np.errstate(invalid="ignore", divide="ignore"):
        kw = num / den
    kw[~np.isfinite(kw)] = 0
    return kw * e[0]


def ts_tile_jobs(mask2d_per_group: list, tile_size: int) -> list:
    """Jobs ``(group, iy, ix)``: the estimated pixels of square tiles of ``tile_size`` pixels a side."""
    jobs = []
    for g, mask2d in enumerate(mask2d_per_group):
        ny, nx = mask2d.shape
        for y0 in range(0, ny, tile_size):
            for x0 in range(0, nx, tile_size):
                iy, ix = np.nonzero(mask2d[y0:y0 + tile_size, x0:x0 + tile_size])
                if iy.size:
                    jobs.append((g, iy + y0, ix + x0))
    return jobs


def ts_balanced_jobs(mask2d_per_group: list, n_positive_per_group: list, window: int, n_jobs: int) -> list:
    """Jobs ``(group, iy, ix)``: the estimated pixels in ``n_jobs`` row-major runs of about equal cost
    per group (cost of a pixel: its ``window`` bins plus 5 per counted bin, the root finding's share)."""
    jobs = []
    for g, (mask2d, n_pos) in enumerate(zip(mask2d_per_group, n_positive_per_group)):
        iy, ix = np.nonzero(mask2d)
        if not iy.size:
            continue
        cost = np.cumsum(window + 5.0 * n_pos[iy, ix])
        cuts = np.searchsorted(cost, cost[-1] * np.arange(1, n_jobs) / n_jobs)
        for sel in np.split(np.arange(iy.size), np.unique(cuts)):
            if sel.size:
                jobs.append((g, iy[sel], ix[sel]))
    return jobs


# --- array helpers ------------------------------------------------------------------------------
def _shape_2n(shape, n: int = 3) -> np.ndarray:
    shape = np.asarray(shape)
    return shape + (2**n - np.mod(shape, 2**n))


def _block(a: np.ndarray, f: int, how: str) -> np.ndarray:
    p, ny, nx = a.shape
    r = a.reshape(p, ny // f, f, nx // f, f)
    if how == "sum":
        return r.sum(axis=(2, 4))
    if how == "mean":
        return r.mean(axis=(2, 4))
    return r.any(axis=(2, 4))


def _upsample(data: np.ndarray, factor: int, order: int) -> np.ndarray:
    """gammapy's ``WcsNDMap.upsample(preserve_counts=False)`` of a (planes, ny, nx) array."""
    from scipy import ndimage

    p, ny, nx = data.shape
    ie, iy, ix = np.meshgrid(np.arange(p), np.arange(ny * factor), np.arange(nx * factor), indexing="ij")
    pix = ((ix - 0.5 * (factor - 1)) / factor, (iy - 0.5 * (factor - 1)) / factor, ie)
    return ndimage.map_coordinates(data.T, pix, order=order, mode="nearest")


def _max_window_count(indicator: np.ndarray, shape: tuple, where: np.ndarray) -> tuple:
    """Largest number of True entries of a padded ``(planes, NY, NX)`` indicator in a kernel window
    centred on a pixel of ``where``, and the numbers at every pixel (summed-area table)."""
    ky, kx = shape
    total = indicator.sum(axis=0).astype(np.int64)
    sat = np.zeros((total.shape[0] + 1, total.shape[1] + 1), dtype=np.int64)
    sat[1:, 1:] = total.cumsum(0).cumsum(1)
    ny, nx = where.shape
    win = sat[ky:ky + ny, kx:kx + nx] - sat[:ny, kx:kx + nx] - sat[ky:ky + ny, :nx] + sat[:ny, :nx]
    return int(max(1, win[where].max())) if np.any(where) else 1, win


def _counted_bins(grp: dict, uniform_weights: bool) -> dict:
    """What the tiles need to find and model the counted (``c > 0``) bins of any window: their flat
    indices in the padded cube (row-major), the number of them before every position (``pos_cs``),
    their counts, background and exposure, and the kernel factor of the model by window offset."""
    counts, kernel, weights = grp["counts"], grp["kernel"], grp["weights"]
    planes, ny_pad, nx_pad = counts.shape
    ky, kx = kernel.shape[-2:]
    pos = counts.ravel() > 0
    pos_flat = np.flatnonzero(pos)
    pos_cs = np.concatenate([[0], np.cumsum(pos)])
    offsets = (np.arange(planes)[:, None, None] * (ny_pad * nx_pad) + np.arange(ky)[None, :, None] * nx_pad
               + np.arange(kx)[None, None, :])
    exposure = grp["exposure"]
    if weights is None:
        model_kernel = kernel  # one plane per energy bin
    elif uniform_weights:
        # the same mask in all summed bins: the weighted kernel is the mean kernel where the mask is set
        ksum = np.zeros(kernel.shape[1:])
        for e in range(kernel.shape[0]):
            ksum = ksum + kernel[e]
        model_kernel = (ksum / kernel.shape[0])[None]
        exposure = np.where(weights[:1] > 0, exposure, 0.0)
    else:
        model_kernel = None
    out = {"pos_flat": pos_flat, "pos_cs": pos_cs, "pos_counts": counts.ravel()[pos_flat],
           "pos_background": grp["background"].ravel()[pos_flat], "pos_expo": exposure.ravel()[pos_flat],
           "expo_model": exposure, "model_kernel": model_kernel, "model_table": None, "offset_index": None}
    if model_kernel is not None:
        table = np.zeros(counts.size)
        table[offsets.ravel()] = model_kernel.ravel()
        out["model_table"] = table
        kvals = model_kernel
    else:
        index = np.zeros(counts.size, dtype=np.int64)
        index[offsets.ravel()] = np.arange(offsets.size)
        out["offset_index"] = index
        kvals = kernel
    out["plain"] = bool(np.all(np.isfinite(grp["background"])) and grp["background"].min() >= 0
                        and np.all(np.isfinite(exposure)) and exposure.min() >= 0
                        and np.all(np.isfinite(kvals)) and kvals.min() >= 0)
    return out


def _pad(a: np.ndarray, py: int, px: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (py, py), (px, px)))


class TSMapEstimator(MapEstimator):
    """Test-statistic map estimation (gammapy 2.1 ``TSMapEstimator`` names and defaults).

    Parameters
    ----------
    model : `SkyModel`, optional
        Source kernel model (gammapy's ``kernel_model``; ``model`` is the pre-2.1 name). Default: point
        source with a power law of index 2.
    kernel_width : `~astropy.coordinates.Angle` or str, optional
        Width of the kernel; default the PSF kernel width plus 0.2 deg (gammapy's evaluation cutout).
    downsampling_factor : int, optional
        Sum/average the maps over blocks of this many pixels (a power of two) before fitting, and
        interpolate the results back (the kernel is made at the coarse pixel size).
    n_sigma, n_sigma_ul : float
        Sigma of ``norm_err``/asymmetric errors and of the upper limit.
    n_sigma_sensitivity : float
        Significance of the flux sensitivity (``"sensitivity"``).
    threshold : float, optional
        Fit only pixels whose TS at the initial flux guess exceeds this value.
    rtol : float
        Relative precision of the norm (Brent stopping criterion).
    selection_optional : list of str or "all", optional
        Among ``"errn-errp"``, ``"ul"``, ``"stat_scan"`` (likelihood profile at 109 norms per pixel,
        ``stat_scan`` and ``dnde_scan_values`` maps with a ``dnde_bin`` axis; as gammapy, the scan's
        ``ts``, ``norm``, ``norm_err``, ``norm_errn``, ``norm_errp``, ``norm_ul`` replace the fitted
        ones), ``"sensitivity"`` (``norm_sensitivity``: the norm detected at ``n_sigma_sensitivity``
        in the Asimov dataset).
    energy_edges : `~astropy.units.Quantity`, optional
        Output energy bins (snapped to the dataset's bins); default one bin over the whole axis.
    sum_over_energy_groups : bool
        Sum counts/background/exposure over the energy bins of a group (mask-weighted kernel) or fit
        the norm on the cube.
    max_niter : int
        Maximum Brent iterations.
    backend : execution backend, optional
        Object with ``map(fn, jobs, shared)`` and ``cpus``; None runs in-process.
    tile_size : int, optional
        Side of the square pixel tiles sent to the backend (does not change any result). Default: one
        job in-process, one job per CPU of about equal cost on a parallel backend (few big jobs: the
        pixels of a job are fitted together, and each task pays a fixed cost).
    """

    tag = "TSMapEstimator"
    _available_selection_optional = ["errn-errp", "ul", "stat_scan", "sensitivity"]

    def __init__(self, model: Any = None, kernel_width: Any = None, downsampling_factor: Optional[int] = None,
                 n_sigma: float = 1, n_sigma_ul: float = 2, n_sigma_sensitivity: float = 5,
                 threshold: Optional[float] = None, rtol: float = 0.01,
                 selection_optional: Any = None, energy_edges: Any = None, sum_over_energy_groups: bool = True,
                 max_niter: int = 100, kernel_model: Any = None, backend: Any = None, tile_size: Optional[int] = None):
        from ...modeling.models import (
            PointSpatialModel,
            PowerLawSpectralModel,
            SkyModel,
        )

        if model is not None and kernel_model is not None:
            raise ValueError("give either model or kernel_model (the same argument), not both")
        kernel_model = kernel_model if kernel_model is not None else model
        if kernel_model is None:
            kernel_model = SkyModel(spectral_model=PowerLawSpectralModel(), spatial_model=PointSpatialModel(),
                                    name="ts-kernel")
        if getattr(kernel_model, "spatial_model", None) is None:
            raise EstimatorInputError("TSMapEstimator: the kernel model needs a spatial model")
        self.kernel_model = kernel_model
        self.kernel_width = None if kernel_width is None else Angle(kernel_width)
        if self.kernel_width is not None and not self.kernel_width.deg > 0:
            raise EstimatorInputError(f"TSMapEstimator: kernel_width must be positive, got {kernel_width}")
        if downsampling_factor not in (None, 1) and (int(downsampling_factor) != downsampling_factor or
                                                     downsampling_factor < 1 or
                                                     (int(downsampling_factor) & (int(downsampling_factor) - 1))):
            raise EstimatorInputError(f"TSMapEstimator: downsampling_factor must be a power of 2, "
                                      f"got {downsampling_factor}")
        self.downsampling_factor = downsampling_factor
        self._require_positive(n_sigma=n_sigma, n_sigma_ul=n_sigma_ul, n_sigma_sensitivity=n_sigma_sensitivity,
                               rtol=rtol)
        if int(max_niter) < 1:
            raise EstimatorInputError(f"TSMapEstimator: max_niter must be >= 1, got {max_niter}")
        self.n_sigma = n_sigma
        self.n_sigma_ul = n_sigma_ul
        self.n_sigma_sensitivity = n_sigma_sensitivity
        self.threshold = threshold
        self.rtol = rtol
        self.selection_optional = selection_optional
        self.energy_edges = energy_edges
        self.sum_over_energy_groups = bool(sum_over_energy_groups)
        self.max_niter = int(max_niter)
        self.backend = backend
        self.tile_size = None if tile_size is None else int(tile_size)

    @property
    def model(self):
        return self.kernel_model

    @property
    def selection_all(self) -> list:
        names = list(_QUANTITIES)
        if "stat_scan" in self.selection_optional:
            names += ["dnde_scan_values", "stat_scan", "norm_errp", "norm_errn", "norm_ul"]
        else:
            if "errn-errp" in self.selection_optional:
                names += ["norm_errp", "norm_errn"]
            if "ul" in self.selection_optional:
                names += ["norm_ul"]
        if "sensitivity" in self.selection_optional:
            names += ["norm_sensitivity"]
        return names

    def options(self) -> TSOptions:
        return TSOptions(rtol=float(self.rtol), max_niter=self.max_niter, n_sigma=float(self.n_sigma),
                         n_sigma_ul=float(self.n_sigma_ul),
                         threshold=None if self.threshold is None else float(self.threshold),
                         ul="ul" in self.selection_optional, errn_errp="errn-errp" in self.selection_optional,
                         n_sigma_sensitivity=float(self.n_sigma_sensitivity),
                         stat_scan="stat_scan" in self.selection_optional,
                         sensitivity="sensitivity" in self.selection_optional)

    # -- kernel ----------------------------------------------------------------------------------
    def _kernel_width_deg(self, dataset, binsz: float) -> float:
        if self.kernel_width is not None:
            return float(self.kernel_width.deg)
        width = 2 * CUTOUT_MARGIN_DEG
        if dataset.psf is not None:
            geom = dataset.exposure.geom
            kernel = dataset.psf.get_psf_kernel(geom=geom, position=geom.center_skydir, containment=0.999)
            width += kernel.psf_kernel_map.geom.data_shape[-1] * binsz if hasattr(kernel, "psf_kernel_map") \
                else np.asarray(kernel.data).shape[-1] * binsz
        return width

    def estimate_kernel(self, dataset: Any, factor: int = 1) -> np.ndarray:
        """Kernel of the source model on the counts grid (or a ``factor`` coarser one), ``(n_reco, k, k)``,
        normalised to unit sum per energy bin: the model placed at the map centre with the exposure of
        the nearest exposed pixel, convolved with the PSF and EDisp there (as gammapy)."""
        from ...datasets import MapDataset
        from ...modeling.models import Models

        geom = dataset.counts.geom
        binsz = float(np.max(geom.pixel_scales.to_value("deg"))) * factor
        width = self._kernel_width_deg(dataset, binsz / factor)
        npix = int(np.ceil(width / binsz) // 2 * 2 + 1)
        ny, nx = (np.asarray(geom.data_shape[-2:]) + factor - 1) // factor
        if npix > max(ny, nx) + (1 - max(ny, nx) % 2):
            raise EstimatorInputError(
                f"TSMapEstimator: the kernel ({npix} pixels = {npix * binsz:.3g} deg wide) is wider than the map "
                f"({nx} x {ny} pixels of {binsz:.3g} deg); use a smaller kernel_width")
        center = geom.center_skydir
        kw = dict(skydir=center, binsz=binsz, npix=npix, proj=geom.projection, frame=geom.frame)
        geom_reco = WcsGeom.create(axes=[geom.axes["energy"]], **kw)
        geom_true = WcsGeom.create(axes=[dataset.exposure.geom.axes["energy_true"]], **kw)

        expo = np.asarray(dataset.exposure.data, dtype=float)
        valid = np.any(expo > 0, axis=0)
        if not np.any(valid):
            raise EstimatorInputError(f"TSMapEstimator: the dataset {dataset.name!r} has no exposure "
                                      "(cannot compute the kernel)")
        egeom = dataset.exposure.geom
        cx, cy = egeom.wcs.world_to_pixel(center)
        yy, xx = np.nonzero(valid)
        k = np.argmin((xx - cx) ** 2 + (yy - cy) ** 2)
        expo_value = expo[:, yy[k], xx[k]]
        exposure = Map.from_geom(geom_true, data=np.broadcast_to(expo_value[:, None, None], geom_true.data_shape)
                                 .copy(), unit=dataset.exposure.unit)
        counts = Map.from_geom(geom_reco, data=np.zeros(geom_reco.data_shape))
        model = self.kernel_model.copy(name="ts-kernel") if hasattr(self.kernel_model, "copy") \
            else copy.deepcopy(self.kernel_model)
        spatial = model.spatial_model
        pos = center.transform_to(spatial.frame).spherical
        spatial.lon_0.value = float(pos.lon.deg)
        spatial.lat_0.value = float(pos.lat.deg)
        kds = MapDataset(counts=counts, exposure=exposure, psf=dataset.psf, edisp=dataset.edisp, name="ts-kernel")
        kds.models = Models([model])
        data = np.asarray(kds.npred_signal().data, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            data = data / data.sum(axis=(1, 2), keepdims=True)
        data[~np.isfinite(data)] = 0
        return data

    # -- inputs ----------------------------------------------------------------------------------
    def prepare(self, dataset: Any) -> tuple[dict, dict]:
        """Shared inputs of the tile jobs and what assembling the result needs (see `prepare_ts_inputs`)."""
        return prepare_ts_inputs(self, dataset)

    def run(self, dataset: Any, backend: Any = None) -> FluxMaps:
        """TS, flux and error maps of ``dataset`` (a `MapDataset` with its models set: the TS is that of a
        new source on top of them). ``backend`` overrides the estimator's."""
        backend = self.backend if backend is None else backend
        shared, info = self.prepare(dataset)
        jobs = self._jobs(shared, info, backend)
        results = run_jobs(backend, ts_tile, jobs, shared)
        return self._assemble(dataset, info, jobs, results)

    def _jobs(self, shared: dict, info: dict, backend: Any) -> list:
        """Square tiles of ``tile_size``; by default one job in-process and, on a parallel backend, one job
        per CPU, of about equal cost (the pixels of a job are fitted together; each task has a fixed cost)."""
        if self.tile_size is not None:
            return ts_tile_jobs(info["mask2d"], self.tile_size)
        cpus = int(getattr(backend, "cpus", 1) or 1) if backend is not None else 1
        window = int(np.prod(shared["groups"][0]["kernel"].shape[-2:]))
        return ts_balanced_jobs(info["mask2d"], [grp["n_positive"] for grp in shared["groups"]], window,
                                1 if cpus <= 1 else JOBS_PER_CPU * cpus)

    def _assemble(self, dataset, info, jobs, results) -> FluxMaps:
        from ...maps import MapAxis

        n_groups = len(info["mask2d"])
        ny, nx = info["mask2d"][0].shape
        names = self.selection_all
        lead = {name: (N_SCAN,) if name in _SCAN_QUANTITIES else () for name in names}
        out = {name: np.full((n_groups,) + lead[name] + (ny, nx), np.nan) for name in names}
        for (g, iy, ix), res in zip(jobs, results):
            for name in names:
                if lead[name]:
                    out[name][g, :, iy, ix] = res[name]
                else:
                    out[name][g, iy, ix] = res[name]
        f = info["factor"]
        py, px = info["pad"]
        maps = {}
        energy_axis = info["energy_axis"]
        geom = dataset.counts.geom.to_image().to_cube([energy_axis])
        if any(lead.values()):
            # gammapy's scan maps: axes (dnde_bin, energy), the 109 sparse norms as dnde at the bin centres
            scan_axis = MapAxis(np.arange(N_SCAN), interp="lin", node_type="center", name="dnde_bin")
            geom_scan = dataset.counts.geom.to_image().to_cube([scan_axis, energy_axis])
            dnde_ref = self.kernel_model.spectral_model(energy_axis.center)
        for name in names:
            data = out[name]
            shape = data.shape
            data = data.reshape((-1,) + shape[-2:])
            if f > 1:
                data = _upsample(data, f, order=0 if name in ("niter", "success") else 1)
            data = data[:, py:data.shape[1] - py, px:data.shape[2] - px]
            data = data.reshape(shape[:-2] + data.shape[-2:])
            if name == "success":
                data = np.where(np.isnan(data), True, data).astype(bool)
            if name == "dnde_scan_values":
                maps[name] = Map.from_geom(geom_scan, data=data * dnde_ref.value[:, None, None, None],
                                           unit=dnde_ref.unit)
            elif lead[name]:
                maps[name] = Map.from_geom(geom_scan, data=data, unit="")
            else:
                maps[name] = Map.from_geom(geom, data=data, unit="")
        meta = {"n_sigma": self.n_sigma, "n_sigma_ul": self.n_sigma_ul, "sed_type_init": "likelihood"}
        return FluxMaps(maps, reference_model=self.kernel_model, meta=meta, gti=dataset.gti)


def prepare_ts_inputs(est: TSMapEstimator, dataset: Any) -> tuple[dict, dict]:
    """Reduce ``dataset`` to the plain arrays the tiles need.

    Returns ``shared`` (``options`` and per energy group: padded ``counts``, ``background``,
    ``exposure`` planes, ``kernel``, mask ``weights`` or None, ``norm_guess`` or None) and ``info``
    (per-group 2D masks of the pixels to fit, padding, downsampling factor, output energy axis).
    """
    from scipy.signal import fftconvolve

    check_dataset(dataset, "TSMapEstimator")
    groups, energy_axis = energy_groups(dataset, est.energy_edges, sum_all=True)
    mask = estimation_mask(dataset)
    counts = np.asarray(dataset.counts.data, dtype=float) * mask
    npred = np.asarray(dataset.npred().data, dtype=float)
    background = npred * mask
    spectral = est.kernel_model.spectral_model
    expo_npred = reco_exposure(dataset, spectral)

    factor = int(est.downsampling_factor or 1)
    kernel = est.estimate_kernel(dataset, factor=factor)
    ky, kx = kernel.shape[-2:]
    ny, nx = counts.shape[-2:]
    if factor > 1:
        binsz = float(np.max(dataset.counts.geom.pixel_scales.to_value("deg")))
        half = int(np.ceil(est._kernel_width_deg(dataset, binsz) / binsz) // 2)  # full-resolution kernel
        new = _shape_2n((ny + 2 * half, nx + 2 * half))
        pad = (int((new[0] - ny) // 2), int((new[0] - ny) // 2))  # gammapy pads both axes by the y width
        counts = _block(_pad(counts, *pad), factor, "sum")
        background = _block(_pad(background, *pad), factor, "sum")
        mask_ds = _block(_pad(mask, *pad), factor, "any")
        expo_npred = _block(_pad(expo_npred, *pad), factor, "mean") * mask_ds
        mask = mask_ds
    else:
        pad = (0, 0)
        expo_npred = expo_npred * mask

    edges = dataset.counts.geom.axes["energy"].edges.to_value("TeV")
    shared_groups, mask2d = [], []
    hy, hx = ky // 2, kx // 2
    for i0, i1 in groups:
        c, b, e, m = counts[i0:i1], background[i0:i1], expo_npred[i0:i1], mask[i0:i1]
        k = kernel[i0:i1]
        norm_guess = None
        if est.threshold is not None:
            ref = np.asarray(spectral.integral_values(edges[i0:i1], edges[i0 + 1:i1 + 1]), dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                flux = (c - b) / (e / ref[:, None, None])
            flux = np.nan_to_num(flux)
            kn = k / np.sum(k**2)
            conv = np.stack([fftconvolve(flux[j], kn[j], mode="same") for j in range(flux.shape[0])])
            flux_ref = float(spectral.integral_values(edges[i0], edges[i1]))
            norm_guess = (conv * m).sum(axis=0) / flux_ref
        if est.sum_over_energy_groups:
            weights = _pad(m.astype(float), hy, hx)
            c, b, e = c.sum(0, keepdims=True), b.sum(0, keepdims=True), e.sum(0, keepdims=True)
        else:
            weights = None
        m2 = m.any(axis=0) & (b.sum(axis=0) > 0)
        mask2d.append(m2)
        c_pad = _pad(c, hy, hx)
        _, n_positive = _max_window_count(c_pad > 0, (ky, kx), m2)
        grp = {"counts": c_pad, "background": _pad(b, hy, hx), "exposure": _pad(e, hy, hx), "kernel": k,
               "weights": weights, "norm_guess": norm_guess, "n_positive": n_positive}
        grp.update(_counted_bins(grp, uniform_weights=bool(np.all(m == m[:1]))))
        grp["s_b"], grp["s_model"], grp["sn_total"], grp["s_clogb"] = window_sums(grp, *m2.shape)
        shared_groups.append(grp)
    if not any(np.any(m2) for m2 in mask2d):
        raise EstimatorInputError("TSMapEstimator: no pixel to fit: the background is zero everywhere inside "
                                  "the mask (check the dataset's background model and masks)")
    shared = {"options": est.options(), "groups": shared_groups}
    info = {"mask2d": mask2d, "pad": pad, "factor": factor, "energy_axis": energy_axis}
    return shared, info
