"""Per-pixel fits of the TS map on packed arrays (pure maths, no I/O, no parallelism).

A pixel's fit needs two kinds of terms of the Cash statistic over its kernel window (Stewart 2009,
appendix A; gammapy's ``SimpleMapDataset`` / ``BrentqFluxEstimator``):

* full-window sums: ``sum(b)``, ``sum(m)`` (``m > 0``) and ``min(b / m)`` (``m > 0``). They do not depend
  on the norm, so they are computed once for the whole map before tiling (`PixelSet` takes them as
  inputs), and ``sum(max(b + x m, 1e-25))`` is ``sum(b) + x sum(m)`` wherever no entry is truncated,
  i.e. for ``x >= -min(b / m)`` when ``b, m >= 0`` (``plain``);
* sums over the bins with counts (``c > 0``): a few per pixel (the counts are sparse). Only those are
  packed, chunk by chunk, into ``(w, ncol)`` arrays, one pixel per column, padded with neutral entries
  (``c = 0``); a derivative evaluation is three array operations on them (``sum c / (x + b / m)``).

Sums over the packed entries run down the columns (numpy adds the rows of a C-contiguous array one
after the other), i.e. in window order, one value after the other: the padding adds exact zeros, so
a pixel's sums do not depend on the chunk width or on which pixels share its chunk, and every result
is a function of the shared arrays and of that pixel alone (bit-identical over tilings and workers).

Only where a norm is below ``-min(b / m)`` (the lower brackets of the negative error, thresholded
initial guesses, the likelihood scan) and for the Asimov statistic of the sensitivity are the full
windows needed; ``windows`` (a callable) gathers them, a few pixels at a time.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Optional

import numpy as np

from ...stats import _LOG_TRUNCATION_SUM, TRUNCATION_VALUE, brentq_vectorized

__all__ = ["TSOptions", "PixelSet", "fit_pixels", "likelihood_scan", "norm_sensitivity", "scan_norms", "scan_grid",
           "CHUNK", "SN_CAP", "N_SCAN"]

CHUNK = 256  # pixels packed together (one column each)
WINDOW_ROWS = 1024  # full kernel windows gathered at a time
SN_CAP = 1e14  # gammapy's cap of min(b / m) (``norm_bounds``)


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
    n_sigma_sensitivity: float = 5.0
    stat_scan: bool = False
    sensitivity: bool = False


class PixelSet:
    """The per-pixel terms of one set of pixels (the pixels in columns of packed chunks).

    Parameters
    ----------
    n_entries : ndarray of int, (npix,)
        Number of ``c > 0`` bins of every pixel's window.
    c, b, m : ndarray, (sum(n_entries),)
        Counts, background and model of those bins, pixel after pixel, each pixel's in window order.
    s_b, s_model, sn_total : ndarray, (npix,)
        ``sum(b)``, ``sum(m)`` over ``m > 0`` and ``min(b / m)`` over ``m > 0`` (capped at `SN_CAP`) of
        the full windows.
    plain : bool
        Background and model are finite and >= 0 (the usual case): no entry is truncated above
        ``-sn_total``.
    s_clogb : ndarray, (npix,), optional
        ``sum_c>0(c log b)`` over the windows (the log term at norm 0), when precomputed.
    windows : callable, optional
        ``windows(idx)``: background and model of the full windows of pixels ``idx``, ``(len(idx), L)``
        each; needed below ``-sn_total`` (or everywhere if not ``plain``) and for the sensitivity.
    """

    def __init__(self, n_entries: np.ndarray, c: np.ndarray, b: np.ndarray, m: np.ndarray, s_b: np.ndarray,
                 s_model: np.ndarray, sn_total: np.ndarray, plain: bool,
                 windows: Optional[Callable] = None, s_clogb: Optional[np.ndarray] = None):
        n_entries = np.asarray(n_entries, dtype=np.int64)
        self.n = n = n_entries.size
        self.s_b = np.asarray(s_b, dtype=float)
        self.s_model = np.asarray(s_model, dtype=float)
        self.sn_total = np.asarray(sn_total, dtype=float)
        self.plain = bool(plain)
        self.windows = windows
        self.s_clogb = s_clogb
        # every chunk has CHUNK columns (the last one padded with empty columns): numpy then always
        # reduces the (w, CHUNK) arrays row after row (a single column would be summed pairwise)
        lo = np.arange(0, n, CHUNK)
        width = np.maximum(np.maximum.reduceat(n_entries, lo), 1) if n else np.zeros(0, np.int64)
        size = width * CHUNK
        base = np.cumsum(size) - size
        total = int(size.sum())
        # destination of every entry: chunk base + slot * CHUNK + column
        first = np.cumsum(n_entries) - n_entries
        pix = np.arange(n)
        ch = pix // CHUNK
        per_pixel = base[ch] + (pix - lo[ch]) - first * CHUNK
        dest = np.repeat(per_pixel, n_entries) + np.arange(int(n_entries.sum())) * CHUNK
        cb = np.zeros(total)
        bb = np.ones(total)  # padding: c = 0, b = 1, m = 0 (log 1 = 0, r = inf: every term is 0)
        mb = np.zeros(total)
        cb[dest] = c
        bb[dest] = b
        mb[dest] = m
        rb = np.full(total, np.inf)
        np.divide(bb, mb, out=rb, where=mb > 0)  # b / m; inf where m <= 0 (the terms gammapy skips)
        self.bounds = np.concatenate([lo, [n]]).astype(np.int64)
        self.chunks = []
        for k in range(lo.size):
            sl = slice(int(base[k]), int(base[k] + size[k]))
            shape = (int(width[k]), CHUNK)
            self.chunks.append((cb[sl].reshape(shape), rb[sl].reshape(shape), bb[sl].reshape(shape),
                                mb[sl].reshape(shape)))

    # -- chunk-wise evaluation ---------------------------------------------------------------
    def _spans(self):
        return zip(self.chunks, self.bounds[:-1], self.bounds[1:])

    @staticmethod
    def _cols(x: Optional[np.ndarray], lo: int, hi: int) -> Optional[np.ndarray]:
        """``x[lo:hi]`` as CHUNK columns (zeros in the empty ones)."""
        if x is None or hi - lo == CHUNK:
            return None if x is None else x[lo:hi]
        out = np.zeros(CHUNK)
        out[:hi - lo] = x[lo:hi]
        return out

    def _each(self, fn: Callable, x: Optional[np.ndarray] = None) -> np.ndarray:
        out = [fn(ck, self._cols(x, lo, hi))[:hi - lo] for ck, lo, hi in self._spans()]
        return np.concatenate(out) if out else np.zeros(0)

    def _at(self, fn: Callable, x_all: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``fn`` at the sorted indices ``idx``: the chunks holding one are evaluated whole at ``x_all``
        (each column's value depends on that column only; no column gathers)."""
        cut = np.searchsorted(idx, self.bounds)
        out = [fn(ck, self._cols(x_all, lo, hi))[idx[cut[k]:cut[k + 1]] - lo]
               for k, (ck, lo, hi) in enumerate(self._spans()) if cut[k + 1] > cut[k]]
        return np.concatenate(out) if out else np.zeros(0)

    @staticmethod
    def _dsum(ck, x):
        c, r = ck[0], ck[1]
        t = r + x  # x + b / m
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(c, t, out=t)
        return t.sum(axis=0)

    @staticmethod
    def _logsum(ck, x):
        c, b, m = ck[0], ck[2], ck[3]
        with np.errstate(divide="ignore", invalid="ignore"):
            npr = m * x
            npr += b  # b + x m
            low = npr <= TRUNCATION_VALUE
            lognpr = np.log(npr)
        if low.any():
            lognpr[low] = _LOG_TRUNCATION_SUM
        lognpr *= c
        return lognpr.sum(axis=0)

    @staticmethod
    def _d2sum(ck, x):
        c, r = ck[0], ck[1]
        t = r + x
        t *= t
        ok = t != 0
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.divide(c, t, out=np.zeros_like(t), where=ok)
        return q.sum(axis=0)

    # -- the statistic ---------------------------------------------------------------------
    def counts_sum(self) -> np.ndarray:
        return self._each(lambda ck, x: ck[0].sum(axis=0))

    def norm_bounds(self) -> tuple:
        """Stewart's bracket of the root and the lowest norm keeping npred >= 0 (gammapy's
        ``norm_bounds``: ``min(b / m)`` over ``c > 0, m > 0``, first minimum, below the cap)."""
        def per_chunk(ck, x):
            c, r = ck[0], ck[1]
            j = np.argmin(r, axis=0)
            cols = np.arange(c.shape[1])
            sn = r[j, cols]
            has = sn < SN_CAP
            return np.where(has, c[j, cols], 1.0), np.where(has, sn, SN_CAP)

        parts = [[a[:hi - lo] for a in per_chunk(ck, None)] for ck, lo, hi in self._spans()]
        c_min = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
        sn_min = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (c_min / self.s_model - sn_min, self.counts_sum() / self.s_model - sn_min, -self.sn_total)

    def dstat_at(self, x_all: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Derivative of the Cash sum in norm at the sorted indices ``idx`` (halved as Stewart and
        gammapy): ``2 (sum_m>0 m - sum_c>0,m>0 c / (x + b / m))``."""
        return 2 * (self.s_model[idx] - self._at(self._dsum, x_all, idx))

    def first(self, x: np.ndarray, idx: Optional[np.ndarray] = None) -> np.ndarray:
        """``sum(max(b + x m, 1e-25))`` over the full windows (the truncated ``sum(npred)``)."""
        idx = np.arange(self.n) if idx is None else idx
        out = self.s_b[idx] + x * self.s_model[idx]
        need = ~(x >= -self.sn_total[idx]) & np.isfinite(x) if self.plain else np.ones(x.shape, dtype=bool)
        if need.any():
            out[need] = self.exact_first(x[need, None], idx[need])[:, 0]
        return out

    def window_blocks(self, idx: np.ndarray):
        """``(positions in idx, b, m)`` of the full windows of pixels ``idx``, `WINDOW_ROWS` at a time."""
        if self.windows is None:
            raise ValueError("this computation needs the full kernel windows (windows)")
        for k in range(0, len(idx), WINDOW_ROWS):
            sl = slice(k, k + WINDOW_ROWS)
            b, m = self.windows(idx[sl])
            yield sl, b, m

    def exact_first(self, x: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """``sum(max(b + x m, 1e-25))`` over the full windows, ``x`` of shape ``(len(idx), K)``."""
        out = np.empty(x.shape)
        for sl, b, m in self.window_blocks(idx):
            for k in range(x.shape[1]):
                npr = m * x[sl, k:k + 1]
                npr += b
                np.maximum(npr, TRUNCATION_VALUE, out=npr)
                out[sl, k] = npr.sum(axis=1)
        return out

    def first_many(self, x: np.ndarray) -> np.ndarray:
        """`first` at ``x`` of shape ``(n, K)`` (several norms per pixel, as the likelihood scan's).

        Below ``-min(b / m)`` (``plain`` data): an entry is truncated exactly when ``b / m <= -x``, so
        with a window's ``b / m`` sorted, ``sum(max(b + x m, 1e-25))`` is the sums of ``b`` and ``m``
        over the entries above ``-x`` (suffix sums) plus ``1e-25`` per truncated entry: one sort per
        window instead of a pass over the window per norm."""
        out = self.s_b[:, None] + x * self.s_model[:, None]
        need = (~(x >= -self.sn_total[:, None]) & np.isfinite(x)) if self.plain else np.ones(x.shape, dtype=bool)
        rows = np.nonzero(need.any(axis=1))[0]
        for sl, b, m in self.window_blocks(rows):
            sub = rows[sl]
            xs, ns = x[sub], need[sub]
            if not self.plain:
                for k in np.nonzero(ns.any(axis=0))[0]:
                    r = np.nonzero(ns[:, k])[0]
                    npr = m[r] * xs[r, k:k + 1]
                    npr += b[r]
                    np.maximum(npr, TRUNCATION_VALUE, out=npr)
                    out[sub[r], k] = npr.sum(axis=1)
                continue
            t = np.divide(b, m, out=np.full(m.shape, np.inf), where=m > 0)
            order = np.argsort(t, axis=1, kind="stable")
            t = np.take_along_axis(t, order, axis=1)
            suffix_b = np.zeros((b.shape[0], b.shape[1] + 1))
            suffix_m = np.zeros_like(suffix_b)
            suffix_b[:, :-1] = np.cumsum(np.take_along_axis(b, order, axis=1)[:, ::-1], axis=1)[:, ::-1]
            suffix_m[:, :-1] = np.cumsum(np.take_along_axis(m, order, axis=1)[:, ::-1], axis=1)[:, ::-1]
            for i in range(len(sub)):
                ks = np.nonzero(ns[i])[0]
                y = -xs[i, ks]
                cut = np.searchsorted(t[i], y, side="right")  # entries with b / m <= -x: truncated
                out[sub[i], ks] = suffix_b[i, cut] - y * suffix_m[i, cut] + TRUNCATION_VALUE * cut
        return out

    def cash(self, x: np.ndarray, first: Optional[np.ndarray] = None) -> np.ndarray:
        """Summed Cash statistic at norm ``x`` of every pixel (gammapy's compiled ``cash_sum``)."""
        first = self.first(x) if first is None else first
        return 2 * (first - self._each(self._logsum, x))

    def stat_null(self) -> np.ndarray:
        """`cash` at norm 0 (from the precomputed log term when given)."""
        zero = np.zeros(self.n)
        if self.s_clogb is None:
            return self.cash(zero)
        return 2 * (self.first(zero) - self.s_clogb)

    def cash_at(self, x_all: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return 2 * (self.first(x_all[idx], idx) - self._at(self._logsum, x_all, idx))

    def d2stat(self, x: np.ndarray) -> np.ndarray:
        """``sum m^2 c / (b + x m)^2`` over the entries with a non-zero denominator."""
        return self._each(self._d2sum, x)


def _brent_on(fn_at: Callable, n: int, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray, opts: TSOptions):
    """`brentq_vectorized` over the problems ``idx`` of ``fn_at(x_all, global indices)``."""
    x_all = np.zeros(n)

    def f(x, sub):
        gidx = idx[sub]
        x_all[gidx] = x
        return fn_at(x_all, gidx)

    return brentq_vectorized(f, lo, hi, rtol=opts.rtol, maxiter=opts.max_niter)


def _confidence(px: PixelSet, norm, norm_err, stat_best, n_sigma, positive, opts: TSOptions):
    """Distance from ``norm`` to where the statistic rises by ``n_sigma**2`` (NaN where no root)."""
    target = stat_best + n_sigma**2
    if positive:
        lo, hi = norm, norm + 1e2 * norm_err
    else:
        lo, hi = norm - 1e2 * norm_err, norm
    idx = np.arange(px.n)
    root, _, conv, ok = _brent_on(lambda xa, gi: target[gi] - px.cash_at(xa, gi), px.n, idx, lo, hi, opts)
    root = np.where(ok & conv, root, np.nan)
    return (root - norm) * (1 if positive else -1)


def fit_pixels(px: PixelSet, norm_guess: np.ndarray, opts: TSOptions) -> dict:
    """Best norm, TS, errors (and the optional quantities) of every pixel of ``px`` (gammapy 2.1's
    ``BrentqFluxEstimator.run`` semantics, pixel by pixel)."""
    n = px.n
    norm_min, norm_max, norm_min_total = px.norm_bounds()
    trivial = (px.counts_sum() <= 0) | (px.s_model <= 0)
    norm = norm_min_total.copy()
    niter = np.zeros(n)
    success = np.ones(n, dtype=bool)
    stat_null = px.stat_null()

    fit = ~trivial
    if opts.threshold is not None:
        guess = np.where(np.isfinite(norm_guess), norm_guess, 1.0)
        ts_guess = stat_null - px.cash(guess)
        default = ~(ts_guess > opts.threshold)
        fit &= ~default
        norm = np.where(default, guess, norm)
    idx = np.nonzero(fit)[0]
    if idx.size:
        root, it, conv, ok = _brent_on(px.dstat_at, n, idx, norm_min[idx], norm_max[idx], opts)
        good = ok & conv
        norm[idx] = np.where(good, np.maximum(root, norm_min_total[idx]), norm_min_total[idx])
        niter[idx] = np.where(good, it, opts.max_niter)
        success[idx] = good

    with np.errstate(invalid="ignore", divide="ignore"):
        norm_err = np.sqrt(1 / px.d2stat(norm)) * opts.n_sigma
    stat = px.cash(norm)
    out = {"ts": stat_null - stat, "norm": norm, "niter": niter, "norm_err": norm_err, "stat": stat,
           "stat_null": stat_null, "success": success}
    if opts.stat_scan:
        # the scan's estimates replace the fitted ones (gammapy: ts, norm, errors and limits)
        out.update(likelihood_scan(px, norm, norm_err, stat_null, opts))
        norm = out["norm"]
        out["stat"] = px.cash(norm)
    else:
        if opts.ul:
            out["norm_ul"] = norm + _confidence(px, norm, norm_err, stat, opts.n_sigma_ul, True, opts)
        if opts.errn_errp:
            out["norm_errn"] = _confidence(px, norm, norm_err, stat, opts.n_sigma, False, opts)
            out["norm_errp"] = _confidence(px, norm, norm_err, stat, opts.n_sigma, True, opts)
    if opts.sensitivity:
        out["norm_sensitivity"] = norm_sensitivity(px, norm, opts)
    npred = px.s_b + norm * px.s_model
    out["npred"] = npred
    out["npred_excess"] = npred - px.s_b
    return out


# --- likelihood scan ----------------------------------------------------------------------------
N_SCAN = 109  # norms of gammapy's sparse scan (its number of values; see `scan_norms`)


@lru_cache(maxsize=1)
def scan_grid() -> np.ndarray:
    """gammapy's default norm grid of the scan (``_generate_scan_values``): from -100 to 100, steps of 1 %
    of the decade's start between 1e-6 and 100 (float32 nodes), mirrored, with 0."""
    arrays = []
    for power in range(-6, 2):
        vmin, vmax = 10.0**power, 10.0 ** (power + 1)
        n = int((vmax - vmin) / (vmin * 1e-2))
        arrays.append(np.linspace(vmin, vmax, n + 1, dtype=np.float32))
    one = np.unique(np.concatenate(arrays))
    return np.concatenate((-one[::-1], [0], one)).astype(float)


def scan_norms(norm: np.ndarray, norm_err: np.ndarray) -> np.ndarray:
    """The sparse norms of every pixel's scan, ``(npix, N_SCAN)`` sorted (gammapy's
    ``_get_norm_scan_values``): around the fitted norm in steps of its error, multiples of it, of 1,
    and the grid's ends. Where the distinct values are fewer than `N_SCAN`, gammapy adds unseeded
    random norms in [-10, 10]; here the same fixed values for every pixel (reproducible); more (never
    seen) keep the lowest."""
    err = np.where(np.isfinite(norm_err) & (norm_err != 0), norm_err, 0.1)[:, None]
    value = np.where(np.isfinite(norm) & (norm != 0), norm, 1.0)[:, None]
    grid = scan_grid()
    tens = np.linspace(-10, 10, 21)
    cols = np.concatenate([value + np.linspace(-2.5, 2.5, 51) * err, value + tens * err, np.abs(value) * tens,
                           np.broadcast_to(tens, (value.shape[0], 21)),
                           np.broadcast_to(np.linspace(grid[0], grid[-1], 2), (value.shape[0], 2))], axis=1)
    cols.sort(axis=1)
    keep = np.ones(cols.shape, dtype=bool)
    keep[:, 1:] = cols[:, 1:] != cols[:, :-1]
    count = keep.sum(axis=1)
    out = np.empty((cols.shape[0], N_SCAN))
    regular = count == N_SCAN
    out[regular] = cols[regular][keep[regular]].reshape(-1, N_SCAN)
    for i in np.nonzero(~regular)[0]:
        values = cols[i][keep[i]]
        if values.size < N_SCAN:
            extra = np.random.default_rng(0).random(N_SCAN - values.size) * 20 - 10
            values = np.concatenate([values, extra])
        out[i] = np.sort(values)[:N_SCAN]
    return out


def likelihood_scan(px: PixelSet, norm: np.ndarray, norm_err: np.ndarray, stat_null: np.ndarray,
                    opts: TSOptions) -> dict:
    """The scan of gammapy's ``BrentqFluxEstimator.estimate_scan``: the statistic minus ``stat_null`` at
    the sparse norms, interpolated linearly onto the union of the sparse norms and `scan_grid`; the
    best norm, ``ts``, ``norm_errn``/``norm_errp`` (grid norms where the statistic is closest to its
    minimum + ``n_sigma**2``, on each side), ``norm_ul`` (``n_sigma_ul``) come from that grid."""
    x = scan_norms(norm, norm_err)
    first = px.first_many(x)
    logs = np.stack([px._each(px._logsum, x[:, k]) for k in range(x.shape[1])], axis=1)
    stat = 2 * (first - logs) - stat_null[:, None]
    r = np.arange(x.shape[0])
    imin = np.argmin(stat, axis=1)  # the interpolant's minimum over the grid is at a sparse norm
    best = x[r, imin]
    d = stat - stat[r, imin][:, None]
    left = _closest_on_grid(x, d, imin, opts.n_sigma**2, right=False)
    right = _closest_on_grid(x, d, imin, opts.n_sigma**2, right=True)
    errn, errp = best - left, right - best
    return {"ts": -stat[r, imin], "norm": best, "norm_err": (errn + errp) / 2, "norm_errn": errn,
            "norm_errp": errp, "norm_ul": _closest_on_grid(x, d, imin, opts.n_sigma_ul**2, right=True),
            "stat_scan": stat, "dnde_scan_values": x}


def _closest_on_grid(x: np.ndarray, d: np.ndarray, imin: np.ndarray, level: float, right: bool) -> np.ndarray:
    """The norm of the scan grid (sparse norms and `scan_grid`) where the linear interpolant of ``d``
    is closest to ``level``: left of the minimum (``<=``) or right of it (``>``), first in order on
    ties. On a segment between sparse norms the interpolant is linear, so the candidates are the
    sparse norms and, where a segment crosses ``level``, the two grid nodes around the crossing."""
    n, k = x.shape
    cols = np.arange(k)[None, :]
    side = cols > imin[:, None] if right else cols <= imin[:, None]
    score = np.where(side, np.abs(d - level), np.inf)
    best = score.min(axis=1)
    pick = np.where((score == best[:, None]) & np.isfinite(score), x, np.inf).min(axis=1)
    # segments crossing the level on the side (few per pixel): the grid nodes next to the crossing
    seg_side = (cols[:, :-1] >= imin[:, None]) if right else (cols[:, 1:] <= imin[:, None])
    d0, d1 = d[:, :-1], d[:, 1:]
    r, s = np.nonzero(seg_side & ((d0 - level) * (d1 - level) <= 0) & (d0 != d1))
    if r.size:
        x0, x1, v0, v1 = x[r, s], x[r, s + 1], d0[r, s], d1[r, s]
        slope = (v1 - v0) / (x1 - x0)
        grid = scan_grid()
        j = np.searchsorted(grid, x0 + (level - v0) / slope)
        for g in (grid[np.clip(j - 1, 0, grid.size - 1)], grid[np.clip(j, 0, grid.size - 1)]):
            ok = (g > x0) & (g < x1)
            sc = np.where(ok, np.abs(v0 + (g - x0) * slope - level), np.inf)
            # per pixel: a lower score wins; an equal one the lower norm
            better = (sc < best[r]) | ((sc == best[r]) & (g < pick[r]))
            for i in np.nonzero(better)[0]:  # few: at most two crossings per side of a convex profile
                row = r[i]
                if sc[i] < best[row] or (sc[i] == best[row] and g[i] < pick[row]):
                    best[row], pick[row] = sc[i], g[i]
    return np.where(np.isfinite(pick) & np.isfinite(best), pick, np.nan)


# --- sensitivity ----------------------------------------------------------------------------------
def _asimov_sigma(b: np.ndarray, m: np.ndarray, bt: np.ndarray, logb: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sqrt`` of the Asimov TS of norms ``x`` (one per row): ``2 sum(bt - nt + npred (log nt - log bt))``
    over the window (``nt``, ``bt``: npred and background truncated at 1e-25, the ``npred > 0`` bins'
    log terms only), i.e. gammapy's ``stat_sum_asimov_null - stat_sum_asimov``."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        npr = m * x[:, None]
        npr += b
        low = npr <= TRUNCATION_VALUE
        nt = np.maximum(npr, TRUNCATION_VALUE)
        lognt = np.log(nt)
        if low.any():
            lognt[low] = _LOG_TRUNCATION_SUM
            npr_pos = np.where(npr > 0, npr, 0.0)
        else:
            npr_pos = npr
        lognt -= logb
        lognt *= npr_pos
        lognt += bt
        lognt -= nt
        return np.sqrt(2 * lognt.sum(axis=1))



def norm_sensitivity(px: PixelSet, norm: np.ndarray, opts: TSOptions) -> np.ndarray:
    """The norm at which the Asimov significance reaches ``n_sigma_sensitivity`` (gammapy's
    ``estimate_sensitivity``: Brent between ``norm / 1000`` and ``norm * 1000``; NaN where it fails).

    The Asimov TS of a norm ``x`` is ``cash(npred(x), b) - cash(npred(x), npred(x))`` over the full
    window; gammapy turns it into sigma with ``ts_to_sigma(ts, ts_asimov=ts)``, the noncentral chi2
    survival function inverted at the same noncentrality, which is ``sqrt(ts)`` (computed directly).
    """
    out = np.full(px.n, np.nan)
    for sl, b, m in px.window_blocks(np.arange(px.n)):
        bt = np.maximum(b, TRUNCATION_VALUE)
        logb = np.where(b > TRUNCATION_VALUE, np.log(bt), _LOG_TRUNCATION_SUM)
        xs = norm[sl]
        x_rows = np.zeros(len(xs))

        def f(x, sub, b=b, m=m, bt=bt, logb=logb, x_rows=x_rows):
            if 3 * len(sub) > len(x_rows):
                # most rows still active: all rows (each row's value depends on that row only), no row copies
                x_rows[sub] = x
                return _asimov_sigma(b, m, bt, logb, x_rows)[sub] - opts.n_sigma_sensitivity
            return _asimov_sigma(b[sub], m[sub], bt[sub], logb[sub], x) - opts.n_sigma_sensitivity

        root, _, conv, ok = brentq_vectorized(f, xs / 1000.0, xs * 1000.0, rtol=opts.rtol, maxiter=opts.max_niter)
        out[sl] = np.where(ok & conv, root, np.nan)
    return out
