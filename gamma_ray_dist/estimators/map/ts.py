"""`TSMapEstimator`: test-statistic, flux and error maps of a source kernel at every pixel.

Method (Stewart 2009, appendix A; the same estimates as gammapy 2.1 ``TSMapEstimator``): at every
pixel the predicted counts in the kernel footprint are ``npred(norm) = background + norm * model``
with ``model = kernel x reco-energy exposure`` of the kernel source (point by default, PSF- and
EDisp-convolved, normalised to unit sum per energy bin); the best ``norm`` is the root of the Cash
statistic's derivative, found by Brent's method between the analytic bounds of Stewart's appendix;
``ts = cash(norm=0) - cash(norm)``, ``norm_err`` from the curvature, ``norm_ul`` / ``norm_errn`` /
``norm_errp`` from Brent roots of ``cash(norm) - cash_best = n_sigma^2``.

Speed and distribution: the dataset is reduced once to plain arrays (`prepare_ts_inputs`: counts,
background, exposure, kernel, mask weights, the number of counted bins in every pixel's kernel window;
optionally downsampled), shared once with the workers; the map is cut into tiles of pixels
(`ts_tile`: one job in-process, one per CPU of about equal cost on a parallel backend). Inside a tile the pixels are
ordered by their number of counted bins and fitted in blocks (one vectorised Brent with per-pixel
state) of chunks: a chunk's kernel windows are gathered with one flat index, and its ``c > 0``
entries packed into arrays only as long as the chunk's longest window. Sums over the packed entries
reproduce numpy's pairwise summation of rows zero-padded to one global width (`_packed_sum`), so every
pixel's result is a function of the shared arrays and of that pixel alone, and the assembled maps are
bit-identical whatever the tiling, chunking or number of workers.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np
from astropy.coordinates import Angle

from ...maps import Map, WcsGeom
from ...stats import TRUNCATION_VALUE, _LOG_TRUNCATION_SUM, brentq_vectorized
from .core import EstimatorInputError, FluxMaps, MapEstimator
from ._inputs import check_dataset, energy_groups, estimation_mask, reco_exposure, run_jobs

__all__ = ["TSMapEstimator", "TSOptions", "prepare_ts_inputs", "ts_tile", "ts_tile_jobs", "ts_balanced_jobs",
           "ts_pixels"]

CUTOUT_MARGIN_DEG = 0.1
_QUANTITIES = ["ts", "norm", "niter", "norm_err", "npred", "npred_excess", "stat", "stat_null", "success"]


@dataclass(frozen=True)
class TSOptions:
    """Per-pixel fit settings (picklable, part of the shared inputs)."""

    rtol: float = 0.01
    max_niter: int = 100
    n_sigma: float = 1.0
    n_sigma_ul: float = 2.0
    threshold: Optional[float] = None
    ul: bool = False
    errn_errp: bool = False


# --- per-pixel statistics on (npix, L) arrays -----------------------------------------------------
def _rowsum(a: np.ndarray) -> np.ndarray:
    # C-contiguous rows reduced one by one: each row's sum depends on that row only
    return np.ascontiguousarray(a).sum(axis=1)


@lru_cache(maxsize=64)
def _pairwise_plan(n: int, start: int = 0) -> tuple:
    """The summation tree of numpy's pairwise sum of ``n`` contiguous float64 values: leaves of fewer
    than 8 values are summed in order; leaves of 8 to 128 values in 8 interleaved accumulators, combined
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the last ``n % 8`` values in order;
    longer runs split at half the length rounded down to a multiple of 8."""
    if n < 8:
        return ("seq", start, n)
    if n <= 128:
        return ("block", start, n)
    half = n // 2
    half -= half % 8
    return ("pair", _pairwise_plan(half, start), _pairwise_plan(n - half, start + half), start + half)


def _packed_sum(a: np.ndarray, width: int) -> np.ndarray:
    """Column sums of a packed ``(w, npix)`` array (one pixel per column, ``w <= width``), equal bit for
    bit to ``np.sum`` of each column as a contiguous row zero-padded to ``width`` values (numpy's
    pairwise tree, `_pairwise_plan`; adding a zero changes no sum). A tile's packed arrays are only as
    long as its own longest column while every column is summed as if ``width`` long, so the sums do
    not depend on which pixels are processed together."""
    w, n = a.shape
    if w > width:
        raise ValueError(f"columns of {w} values are longer than the summation width {width}")

    def evaluate(node):
        if node[0] == "pair":
            left = evaluate(node[1])
            right = evaluate(node[2]) if node[3] < w else None
            return left if right is None else left + right
        _, s, m = node
        if node[0] == "seq":
            res = np.zeros(n)
            for i in range(s, min(s + m, w)):
                res = res + a[i]
            return res
        m8 = m - m % 8
        full = min(m8, w - s) // 8 * 8  # values in whole groups of 8 present
        if full:
            # the 8 accumulators, each summed in order: a reduction over the outer axis adds the
            # groups one after the other
            r = a[s:s + full].reshape(full // 8, 8, n).sum(axis=0)
        else:
            r = np.zeros((8, n))
        rest = min(m8, w - s) - full
        if rest > 0:
            r[:rest] += a[s + full:s + full + rest]
        t = r[0::2] + r[1::2]  # r0 + r1, r2 + r3, r4 + r5, r6 + r7
        t = t[0::2] + t[1::2]
        res = t[0] + t[1]
        for i in range(s + m8, min(s + m, w)):
            res = res + a[i]
        return res

    return evaluate(_pairwise_plan(width)) if w else np.zeros(n)


def _compact(mask: np.ndarray, *arrays: np.ndarray) -> list:
    """Per row of ``mask`` (npix, L), the entries where it is True in their original order, as the
    columns of ``(w, npix)`` arrays padded with zeros (``w``: the largest number of entries of a row).
    Sums go through `_packed_sum` with one summation width for all calls, so they do not depend on
    which rows are processed together."""
    n, length = mask.shape
    src = np.flatnonzero(mask)  # row-major: row by row, columns in order (faster than a 2D nonzero)
    rows = src // length
    counts = np.bincount(rows, minlength=n)
    width = int(max(1, counts.max())) if n else 1
    dest = np.arange(src.size) - (np.cumsum(counts) - counts)[rows]
    dst = rows * width + dest
    out = []
    for a in arrays:
        packed = np.zeros((n, width))
        packed.ravel()[dst] = np.ascontiguousarray(a).ravel().take(src)
        out.append(np.ascontiguousarray(packed.T))  # written row by row, then transposed
    return out


class _Rows:
    """The per-pixel arrays of one fit: full rows ``b``, ``m`` and the packed ``c > 0`` entries.

    Entries where counts, background and model are all zero contribute the truncation value 1e-25 to
    a Cash sum of order 1e2 or more (no change in double precision), so they need no masking.
    """

    def __init__(self, c: np.ndarray, b: np.ndarray, m: np.ndarray, width: int):
        self.b, self.m = b, m
        self.width = int(width)  # summation width of the packed rows (the same for every tile)
        self.cc, self.bc, self.mc = _compact(c > 0, c, b, m)
        if self.cc.shape[0] > self.width:
            raise ValueError(f"a pixel has {self.cc.shape[0]} counted bins, more than the width {self.width}")
        pos = self.mc > 0
        # derivative terms c m / (x m + b) on entries with m > 0 (others: 0 / 1)
        self.cm = np.where(pos, self.cc * self.mc, 0.0)
        self.md = np.where(pos, self.mc, 0.0)
        self.bd = np.where(pos, self.bc, 1.0)
        # finite and >= 0 (the usual case: kernel and exposure are): the m > 0 masks are no-ops, b + 0 m
        # is b, and b + x m >= b for x >= 0
        self.m_plain = bool(m.size == 0 or (m.min() >= 0 and m.max() < np.inf))
        self.s_model = _rowsum(m if self.m_plain else np.where(m > 0, m, 0.0))
        self.s_b = _rowsum(b)
        self.b_low = np.any(b <= TRUNCATION_VALUE, axis=1)  # rows with a truncated entry at norm 0

    def wsum(self, a: np.ndarray) -> np.ndarray:
        """Row sums of a packed array, as if ``width`` wide."""
        return _packed_sum(a, self.width)

    def dstat(self, x: np.ndarray, idx: Optional[np.ndarray] = None) -> np.ndarray:
        """Derivative of the Cash sum in norm, halved as in Stewart (2009): ``2 sum_m>0 m (1 - c / npred)``,
        computed ``2 (sum_m>0 m - sum_c>0,m>0 c m / npred)``."""
        if idx is None:
            t = x * self.md
            t += self.bd
            np.divide(self.cm, t, out=t)
            return 2 * (self.s_model - self.wsum(t))
        return 2 * (self.s_model[idx] - self.wsum(self.cm[:, idx] / (x * self.md[:, idx] + self.bd[:, idx])))

    def npred_sums(self, x: np.ndarray, idx: Optional[np.ndarray] = None) -> tuple:
        """``sum(b + x m)`` and the same sum with the truncation (``max(npred, 1e-25)``) per row; the
        second is the first on rows without a truncated entry (the same values summed in the same order)."""
        b, m = (self.b, self.m) if idx is None else (self.b[idx], self.m[idx])
        npr = x[:, None] * m
        npr += b  # b + x m (addition commutes exactly)
        total = _rowsum(npr)
        maybe = np.ones(len(x), dtype=bool) if not self.m_plain else \
            (x < 0) | ~(x >= 0) | (self.b_low if idx is None else self.b_low[idx])
        cand = np.nonzero(maybe)[0]
        truncated = cand[np.any(npr[cand] <= TRUNCATION_VALUE, axis=1)]
        first = total.copy()
        if truncated.size:
            first[truncated] = _rowsum(np.maximum(npr[truncated], TRUNCATION_VALUE))
        return total, first

    def null_first(self) -> Optional[np.ndarray]:
        """The truncated ``sum(npred)`` at norm 0 from ``b`` alone when ``b + 0 m`` is ``b`` (else None)."""
        if not (self.m_plain or np.all(np.isfinite(self.m))):
            return None
        first = self.s_b.copy()
        truncated = np.nonzero(self.b_low)[0]
        if truncated.size:
            first[truncated] = _rowsum(np.maximum(self.b[truncated], TRUNCATION_VALUE))
        return first

    def cash(self, x: np.ndarray, idx: Optional[np.ndarray] = None, first: Optional[np.ndarray] = None) -> np.ndarray:
        """Summed Cash statistic at norm ``x`` (gammapy's compiled ``cash_sum``, truncation included);
        ``first`` is the truncated ``sum(npred)`` term when already known (`npred_sums`)."""
        sel = (lambda a: a) if idx is None else (lambda a: a[:, idx])
        if first is None:
            first = self.npred_sums(x, idx)[1]
        nprc = sel(self.bc) + x * sel(self.mc)
        above = nprc > TRUNCATION_VALUE
        with np.errstate(divide="ignore", invalid="ignore"):
            lognpr = np.where(above, np.log(np.where(above, nprc, 1.0)), _LOG_TRUNCATION_SUM)
        return 2 * (first - self.wsum(sel(self.cc) * lognpr))

    def d2stat(self, x: np.ndarray) -> np.ndarray:
        bottom = (self.bc + x * self.mc) ** 2
        ok = bottom != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.wsum(np.where(ok, self.mc**2 * self.cc / np.where(ok, bottom, 1.0), 0.0))

    def norm_bounds(self):
        """Stewart's bracket of the root and the lowest norm keeping npred >= 0 (gammapy's ``norm_bounds``)."""
        mc, cc = self.mc, self.cc
        with np.errstate(divide="ignore", invalid="ignore"):
            sn_c = np.divide(self.bc, mc, out=np.full(mc.shape, np.inf), where=(mc > 0) & (cc > 0))
            sn = np.divide(self.b, self.m, out=np.full(self.m.shape, np.inf), where=self.m > 0)
        j = np.argmin(sn_c, axis=0)
        rows = np.arange(cc.shape[1])
        sn_min = sn_c[j, rows]
        has = sn_min < 1e14
        c_min = np.where(has, cc[j, rows], 1.0)
        sn_min = np.where(has, sn_min, 1e14)
        s_counts = self.wsum(cc)
        sn_min_total = np.minimum(np.min(sn, axis=1), 1e14)
        with np.errstate(divide="ignore", invalid="ignore"):
            return c_min / self.s_model - sn_min, s_counts / self.s_model - sn_min, -sn_min_total


class _RowSet:
    """Several `_Rows` (chunks of pixels with packed arrays of their own length) as one set of pixels:
    per-pixel arrays are concatenated in chunk order, and every evaluation runs chunk by chunk."""

    def __init__(self, parts: list):
        self.parts = parts
        self.bounds = np.concatenate([[0], np.cumsum([p.s_model.size for p in parts])]).astype(int)
        self.n = int(self.bounds[-1])
        self.s_model = np.concatenate([p.s_model for p in parts])
        self.s_b = np.concatenate([p.s_b for p in parts])

    def _slices(self):
        return zip(self.parts, self.bounds[:-1], self.bounds[1:])

    def each(self, fn, *arrays):
        """``fn(part, *slices of arrays)`` per chunk, results concatenated (tuples element-wise)."""
        out = [fn(p, *(a[lo:hi] for a in arrays)) for p, lo, hi in self._slices()]
        if isinstance(out[0], tuple):
            return tuple(np.concatenate(col) for col in zip(*out))
        return np.concatenate(out)

    def each_at(self, fn, x, idx):
        """``fn(part, x, local indices)`` for the sorted global indices ``idx`` falling in each chunk."""
        cut = np.searchsorted(idx, self.bounds)
        out = [fn(p, x[cut[k]:cut[k + 1]], idx[cut[k]:cut[k + 1]] - lo)
               for k, (p, lo, hi) in enumerate(self._slices()) if cut[k + 1] > cut[k]]
        return np.concatenate(out) if out else np.zeros(0)

    def counts_sum(self):
        return self.each(lambda p: p.wsum(p.cc))

    def norm_bounds(self):
        return self.each(lambda p: p.norm_bounds())

    def stat_null(self):
        return self.each(lambda p: p.cash(np.zeros(p.s_model.size), first=p.null_first()))

    def cash(self, x, idx=None, first=None):
        if idx is not None:
            return self.each_at(lambda p, xs, ids: p.cash(xs, ids), x, idx)
        if first is None:
            return self.each(lambda p, xs: p.cash(xs), x)
        return self.each(lambda p, xs, fs: p.cash(xs, first=fs), x, first)

    def npred_sums(self, x):
        return self.each(lambda p, xs: p.npred_sums(xs), x)

    def d2stat(self, x):
        return self.each(lambda p, xs: p.d2stat(xs), x)

    def dstat_at(self, x_all, idx):
        """``dstat`` at the sorted global indices ``idx``: the chunks holding one of them are evaluated
        whole at ``x_all`` (no gathers; each column's value depends on that column only)."""
        cut = np.searchsorted(idx, self.bounds)
        out = [p.dstat(x_all[lo:hi])[idx[cut[k]:cut[k + 1]] - lo]
               for k, (p, lo, hi) in enumerate(self._slices()) if cut[k + 1] > cut[k]]
        return np.concatenate(out) if out else np.zeros(0)


def _confidence(rows: _RowSet, norm, norm_err, stat_best, n_sigma, positive, opts: TSOptions):
    """Distance from ``norm`` to where the statistic rises by ``n_sigma**2`` (NaN where no root)."""
    target = stat_best + n_sigma**2
    if positive:
        lo, hi = norm, norm + 1e2 * norm_err
    else:
        lo, hi = norm - 1e2 * norm_err, norm

    def f(x, idx):
        return target[idx] - rows.cash(x, idx)

    root, _, conv, ok = brentq_vectorized(f, lo, hi, rtol=opts.rtol, maxiter=opts.max_niter)
    root = np.where(ok & conv, root, np.nan)
    return (root - norm) * (1 if positive else -1)


def ts_pixels(c: np.ndarray, b: np.ndarray, m: np.ndarray, norm_guess: np.ndarray, opts: TSOptions,
              width: Optional[int] = None) -> dict:
    """Fit the kernel norm of every row (one pixel per row; ``c``, ``b``, ``m`` of shape (npix, L)).

    ``width`` (>= the largest number of ``c > 0`` entries of a row; default L) is the summation width of
    the packed arrays: keep it the same for all calls whose results must be bit-identical.
    """
    c = np.ascontiguousarray(c, dtype=float)
    b = np.ascontiguousarray(b, dtype=float)
    m = np.ascontiguousarray(m, dtype=float)
    width = c.shape[1] if width is None else int(width)
    return _fit_rows(_RowSet([_Rows(c, b, m, width)]), norm_guess, opts)


def _fit_rows(rows: _RowSet, norm_guess: np.ndarray, opts: TSOptions) -> dict:
    n = rows.n
    norm_min, norm_max, norm_min_total = rows.norm_bounds()
    trivial = (rows.counts_sum() <= 0) | (rows.s_model <= 0)
    norm = norm_min_total.copy()
    niter = np.zeros(n)
    success = np.ones(n, dtype=bool)
    stat_null = rows.stat_null()

    fit = ~trivial
    if opts.threshold is not None:
        guess = np.where(np.isfinite(norm_guess), norm_guess, 1.0)
        ts_guess = stat_null - rows.cash(guess)
        default = ~(ts_guess > opts.threshold)
        fit &= ~default
        norm = np.where(default, guess, norm)
    idx = np.nonzero(fit)[0]
    if idx.size:
        x_all = np.zeros(n)

        def f(x, sub):
            gidx = idx[sub]
            x_all[gidx] = x
            return rows.dstat_at(x_all, gidx)

        root, it, conv, ok = brentq_vectorized(f, norm_min[idx], norm_max[idx], rtol=opts.rtol,
                                               maxiter=opts.max_niter)
        good = ok & conv
        norm[idx] = np.where(good, np.maximum(root, norm_min_total[idx]), norm_min_total[idx])
        niter[idx] = np.where(good, it, opts.max_niter)
        success[idx] = good

    with np.errstate(invalid="ignore", divide="ignore"):
        norm_err = np.sqrt(1 / rows.d2stat(norm)) * opts.n_sigma
    npred, first = rows.npred_sums(norm)
    stat = rows.cash(norm, first=first)
    out = {"ts": stat_null - stat, "norm": norm, "niter": niter, "norm_err": norm_err, "stat": stat,
           "stat_null": stat_null, "success": success}
    if opts.ul:
        out["norm_ul"] = norm + _confidence(rows, norm, norm_err, stat, opts.n_sigma_ul, True, opts)
    if opts.errn_errp:
        out["norm_errn"] = _confidence(rows, norm, norm_err, stat, opts.n_sigma, False, opts)
        out["norm_errp"] = _confidence(rows, norm, norm_err, stat, opts.n_sigma, True, opts)
    out["npred"] = npred
    out["npred_excess"] = npred - rows.s_b
    return out


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


CHUNK = 256  # pixels with packed arrays of one length
JOBS_PER_CPU = 1  # default jobs per CPU of a parallel backend, of about equal cost (2 per CPU: 7% slower on
                  # the 100x100 seed map on 2 Ray workers, from the extra tasks)
BLOCK = 2048  # pixels fitted together (one root finding), in chunks


def ts_tile(shared: dict, job: tuple) -> dict:
    """Fit the pixels of one tile: ``job = (group, iy, ix)`` (pixel indices in the estimation grid).

    The pixels are ordered by the number of counted bins in their kernel window and fitted in blocks,
    each made of chunks whose packed arrays are as long as the chunk's longest column (sums do not
    depend on the chunking: every pixel's result depends on that pixel alone)."""
    g, iy, ix = job
    grp = shared["groups"][g]
    order = np.argsort(grp["n_positive"][iy, ix], kind="stable")
    out: dict = {}
    for start in range(0, len(order), BLOCK):
        sel = order[start:start + BLOCK]
        parts = [_chunk_rows(grp, iy[sel[i:i + CHUNK]], ix[sel[i:i + CHUNK]]) for i in range(0, len(sel), CHUNK)]
        guess = grp["norm_guess"][iy[sel], ix[sel]] if grp["norm_guess"] is not None else np.ones(len(sel))
        res = _fit_rows(_RowSet(parts), guess, shared["options"])
        for name, values in res.items():
            if name not in out:
                out[name] = np.empty(len(iy), dtype=values.dtype)
            out[name][sel] = values
    return out


def _chunk_rows(grp: dict, iy: np.ndarray, ix: np.ndarray) -> _Rows:
    kernel = grp["kernel"]  # (n_e, ky, kx)
    shape = kernel.shape[-2:]
    npix = len(iy)
    index = _window_index(grp["counts"].shape, shape, iy, ix)  # counts, background, exposure: same planes
    counts = _window_take(grp["counts"], index, shape).reshape(npix, -1)
    background = _window_take(grp["background"], index, shape).reshape(npix, -1)
    exposure = _window_take(grp["exposure"], index, shape)
    if grp["weights"] is not None and grp["uniform_weights"]:
        # same mask in all energy bins: the weighted mean kernel is the plain mean where the mask is set
        # (the same floating-point operations as the general branch below for 0/1 weights)
        w0 = _window_take(grp["weights"], index[:, :shape[0] * shape[1]], shape)[:, 0]
        ksum = np.zeros(shape)
        for e in range(kernel.shape[0]):
            ksum = ksum + kernel[e]
        kw = np.where(w0 > 0, ksum / kernel.shape[0], 0.0)
        model = (kw[:, None] * exposure).reshape(npix, -1)
    elif grp["weights"] is not None:
        w = _windows(grp["weights"], shape, iy, ix)  # (npix, n_e, ky, kx)
        num = np.zeros((npix,) + shape)
        den = np.zeros((npix,) + shape)
        for e in range(kernel.shape[0]):
            num = num + kernel[e] * w[:, e]
            den = den + w[:, e]
        with np.errstate(invalid="ignore", divide="ignore"):
            kw = num / den
        kw[~np.isfinite(kw)] = 0
        model = (kw[:, None] * exposure).reshape(npix, -1)
    else:
        model = (kernel[None] * exposure).reshape(npix, -1)
    return _Rows(counts, background, model, grp["width"])


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
    threshold : float, optional
        Fit only pixels whose TS at the initial flux guess exceeds this value.
    rtol : float
        Relative precision of the norm (Brent stopping criterion).
    selection_optional : list of str or "all", optional
        Among ``"errn-errp"``, ``"ul"``.
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

    def __init__(self, model: Any = None, kernel_width: Any = None, downsampling_factor: Optional[int] = None,
                 n_sigma: float = 1, n_sigma_ul: float = 2, threshold: Optional[float] = None, rtol: float = 0.01,
                 selection_optional: Any = None, energy_edges: Any = None, sum_over_energy_groups: bool = True,
                 max_niter: int = 100, kernel_model: Any = None, backend: Any = None, tile_size: Optional[int] = None):
        from ...modeling.models import PointSpatialModel, PowerLawSpectralModel, SkyModel

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
        self._require_positive(n_sigma=n_sigma, n_sigma_ul=n_sigma_ul, rtol=rtol)
        if int(max_niter) < 1:
            raise EstimatorInputError(f"TSMapEstimator: max_niter must be >= 1, got {max_niter}")
        self.n_sigma = n_sigma
        self.n_sigma_ul = n_sigma_ul
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
        if "errn-errp" in self.selection_optional:
            names += ["norm_errp", "norm_errn"]
        if "ul" in self.selection_optional:
            names += ["norm_ul"]
        return names

    def options(self) -> TSOptions:
        return TSOptions(rtol=float(self.rtol), max_niter=self.max_niter, n_sigma=float(self.n_sigma),
                         n_sigma_ul=float(self.n_sigma_ul),
                         threshold=None if self.threshold is None else float(self.threshold),
                         ul="ul" in self.selection_optional, errn_errp="errn-errp" in self.selection_optional)

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
        n_groups = len(info["mask2d"])
        ny, nx = info["mask2d"][0].shape
        names = self.selection_all
        out = {name: np.full((n_groups, ny, nx), np.nan) for name in names}
        for (g, iy, ix), res in zip(jobs, results):
            for name in names:
                out[name][g, iy, ix] = res[name]
        f = info["factor"]
        py, px = info["pad"]
        maps = {}
        geom = dataset.counts.geom.to_image().to_cube([info["energy_axis"]])
        for name in names:
            data = out[name]
            if f > 1:
                data = _upsample(data, f, order=0 if name in ("niter", "success") else 1)
            data = data[:, py:data.shape[1] - py, px:data.shape[2] - px]
            if name == "success":
                data = np.where(np.isnan(data), True, data).astype(bool)
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
        width, n_positive = _max_window_count(c_pad > 0, (ky, kx), m2)
        shared_groups.append({"counts": c_pad, "background": _pad(b, hy, hx),
                              "exposure": _pad(e, hy, hx), "kernel": k, "weights": weights,
                              "uniform_weights": bool(np.all(m == m[:1])), "norm_guess": norm_guess,
                              "width": width, "n_positive": n_positive})
    if not any(np.any(m2) for m2 in mask2d):
        raise EstimatorInputError("TSMapEstimator: no pixel to fit: the background is zero everywhere inside "
                                  "the mask (check the dataset's background model and masks)")
    shared = {"options": est.options(), "groups": shared_groups}
    info = {"mask2d": mask2d, "pad": pad, "factor": factor, "energy_axis": energy_axis}
    return shared, info
