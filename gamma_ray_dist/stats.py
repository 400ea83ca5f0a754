"""Poisson fit statistics (Cash) and test-statistic helpers, as gammapy/stats/fit_statistics.py.

References: Cash (1979), ApJ 228, 939; Sherpa statistics pages.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TRUNCATION_VALUE", "cash", "cash_sum", "ts_from_stats", "sqrt_ts", "cash_sum_masked",
           "excess_matching_significance", "apply_threshold_sensitivity"]

TRUNCATION_VALUE = 1e-25  # npred below this is replaced by it, so log() stays finite
# gammapy's compiled cash_sum takes log(TRUNCATION_VALUE) after a C float conversion; reproduce it so
# sums with counts in truncated bins agree to 1e-12 (the difference is 1.8e-8 per count otherwise).
_LOG_TRUNCATION_SUM = float(np.log(np.float64(np.float32(TRUNCATION_VALUE))))


def cash(n_on: Any, mu_on: Any, truncation_value: Any = None) -> np.ndarray:
    r"""Cash statistic per bin, :math:`C = 2 (\mu - n \log \mu)`, with :math:`\mu` truncated.

    Parameters
    ----------
    n_on : array_like
        Observed counts.
    mu_on : array_like
        Predicted counts; values ``<= truncation_value`` are replaced by ``truncation_value``.
    truncation_value : float or array_like, optional
        Default `TRUNCATION_VALUE` (1e-25). Must be positive.

    Notes
    -----
    No constant term: the ``log(n!)`` part of the Poisson likelihood is dropped, so only differences of
    the statistic are meaningful (as gammapy).
    """
    if truncation_value is None:
        truncation_value = TRUNCATION_VALUE
    n_on = np.asanyarray(n_on)
    mu_on = np.asanyarray(mu_on)
    truncation_value = np.asanyarray(truncation_value)
    if np.any(truncation_value <= 0):
        raise ValueError("Cash statistic truncation value must be positive.")
    mu_on = np.where(mu_on <= truncation_value, truncation_value, mu_on)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * (mu_on - n_on * np.log(mu_on))


def cash_sum(counts: np.ndarray, npred: np.ndarray) -> float:
    """Summed Cash statistic, equivalent to gammapy's ``cash_sum_cython`` (vectorised).

    ``npred`` is truncated at `TRUNCATION_VALUE`; bins with ``counts == 0`` contribute ``2 * npred``
    (so a zero prediction where there are no counts costs nothing).

    Difference from gammapy, on purpose: a NaN in ``npred`` gives a NaN sum (gammapy's compiled loop
    treats NaN as below the truncation value and silently returns a finite number); `Fit` then
    penalises the step and reports it.
    """
    counts = np.asarray(counts, dtype=np.float64).ravel()
    npred = np.asarray(npred, dtype=np.float64).ravel()
    if counts.shape != npred.shape:
        raise ValueError(f"counts and npred must have the same size, got {counts.shape} and {npred.shape}")
    above = npred > TRUNCATION_VALUE
    npr = np.where(above, npred, TRUNCATION_VALUE)
    with np.errstate(divide="ignore", invalid="ignore"):
        lognpr = np.where(above, np.log(npr), _LOG_TRUNCATION_SUM)
        logterm = np.where(counts > 0, counts * lognpr, 0.0)
    if np.isnan(npred).any():
        return float("nan")
    return float(2 * (np.sum(npr) - np.sum(logterm)))


def cash_sum_masked(counts: np.ndarray, npred: np.ndarray, mask: np.ndarray | None = None) -> float:
    """`cash_sum` over the bins where ``mask`` is True (all bins if None)."""
    if mask is None:
        return cash_sum(counts, npred)
    mask = np.asarray(mask, dtype=bool)
    return cash_sum(np.asarray(counts)[mask], np.asarray(npred)[mask])


def ts_from_stats(stat_null: Any, stat: Any) -> np.ndarray:
    """Test statistic ``TS = stat_null - stat`` (likelihood-ratio, -2 log L units)."""
    return np.asarray(stat_null, dtype=float) - np.asarray(stat, dtype=float)


def sqrt_ts(ts: Any, sign: Any = 1) -> np.ndarray:
    """Signed significance: ``sqrt(TS)`` where ``sign > 0`` else ``-sqrt(TS)`` (TS clipped at 0).

    ``sign`` is usually the best-fit norm, as gammapy's flux points ``sqrt_ts``.
    """
    root = np.sqrt(np.clip(np.asarray(ts, dtype=float), 0, None))
    return np.where(np.asarray(sign) > 0, root, -root)


# --- counts statistics with a known background (gammapy's CashCountsStatistic) ------------------
class CashCountsStatistic:
    r"""Poisson counts ``n_on`` over a known background ``mu_bkg`` (arrays, element-wise).

    The best-fit signal is ``n_sig = n_on - mu_bkg``; ``ts = cash(n_on, mu_bkg) - cash(n_on, n_on)``
    (clipped at 0) and ``sqrt_ts = sign(n_sig) sqrt(ts)``: the Li & Ma (1983, eq. 17) significance in
    the limit of a perfectly known background. Asymmetric errors and upper limits are the closed-form
    solutions of ``cash(n_on, n_on + s) - cash(n_on, n_on) = n_sigma^2`` in terms of the Lambert W
    function (the same equations gammapy solves; Cash 1979).
    """

    def __init__(self, n_on: Any, mu_bkg: Any):
        self.n_on = np.asanyarray(n_on, dtype=float)
        self.mu_bkg = np.asanyarray(mu_bkg, dtype=float)

    @property
    def n_bkg(self) -> np.ndarray:
        return self.mu_bkg

    @property
    def n_sig(self) -> np.ndarray:
        return self.n_on - self.mu_bkg

    @property
    def error(self) -> np.ndarray:
        """Symmetric error of the excess, ``sqrt(n_on)``."""
        return np.sqrt(self.n_on)

    @property
    def stat_null(self) -> np.ndarray:
        return cash(self.n_on, self.mu_bkg)

    @property
    def stat_max(self) -> np.ndarray:
        return cash(self.n_on, self.n_on)

    @property
    def ts(self) -> np.ndarray:
        return np.clip(self.stat_null - self.stat_max, 0, None)

    @property
    def sqrt_ts(self) -> np.ndarray:
        return np.sign(self.n_sig) * np.sqrt(self.ts)

    def _lambert(self, n_sigma: float, branch: int) -> tuple[np.ndarray, np.ndarray, float]:
        from scipy.special import lambertw

        c = n_sigma**2 / 2
        on = np.where(self.n_on > 0, self.n_on, 1.0)
        with np.errstate(over="ignore", under="ignore"):
            w = lambertw(-np.exp(-c / on - 1), k=branch).real
        return on * (w + 1), self.n_on > 0, c

    def compute_errn(self, n_sigma: float = 1.0) -> np.ndarray:
        """Downward error of the excess (positive number)."""
        value, positive, _ = self._lambert(n_sigma, 0)
        return np.where(positive, value, 0.0)

    def compute_errp(self, n_sigma: float = 1.0) -> np.ndarray:
        """Upward error of the excess."""
        value, positive, c = self._lambert(n_sigma, -1)
        return np.where(positive, -value, c)

    def compute_upper_limit(self, n_sigma: float = 2.0) -> np.ndarray:
        """Upper limit on the excess: ``n_sig + errp(n_sigma)``."""
        value, positive, c = self._lambert(n_sigma, -1)
        return np.where(positive, -value + self.n_sig, c)

    def n_sig_matching_significance(self, significance: float) -> np.ndarray:
        """Excess that has ``significance`` over this background (the inverse of `sqrt_ts`); NaN where
        the background is not positive. See `excess_matching_significance`."""
        return excess_matching_significance(self.mu_bkg, significance)


def brentq_vectorized(f, a: Any, b: Any, xtol: float = 2e-12, rtol: float = 4 * np.finfo(float).eps,
                      maxiter: int = 100, fa: Any = None, fb: Any = None):
    """Brent's root finding on many independent brackets at once (Brent 1973, as scipy's ``brentq``).

    ``f(x, idx)`` evaluates the function of the problems ``idx`` (integer array) at ``x`` (same length).
    Every problem runs the scalar algorithm of ``scipy.optimize.brentq`` step for step; problems only
    share the loop, so each root is a function of its own bracket and function alone (it does not
    depend on which other problems are solved together).

    Returns ``root, iterations, converged, bracket_ok`` arrays. Problems whose bracket has no sign
    change get ``bracket_ok = False`` (scipy raises ValueError there), ``converged`` False after
    ``maxiter`` iterations (scipy raises RuntimeError).
    """
    xpre = np.array(a, dtype=float, copy=True).ravel()
    xcur = np.array(b, dtype=float, copy=True).ravel()
    n = xpre.size
    all_idx = np.arange(n)
    fpre = np.asarray(f(xpre, all_idx) if fa is None else fa, dtype=float).copy()
    fcur = np.asarray(f(xcur, all_idx) if fb is None else fb, dtype=float).copy()
    root = np.full(n, np.nan)
    niter = np.zeros(n, dtype=np.int64)
    converged = np.zeros(n, dtype=bool)
    bracket_ok = np.ones(n, dtype=bool)

    zero_pre = fpre == 0
    root[zero_pre] = xpre[zero_pre]
    converged[zero_pre] = True
    zero_cur = (fcur == 0) & ~zero_pre
    root[zero_cur] = xcur[zero_cur]
    converged[zero_cur] = True
    bad = ~(zero_pre | zero_cur) & ((np.signbit(fpre) == np.signbit(fcur)) | ~np.isfinite(fpre * fcur))
    bracket_ok[bad] = False
    active = ~(zero_pre | zero_cur | bad)

    xblk = np.zeros(n)
    fblk = np.zeros(n)
    spre = np.zeros(n)
    scur = np.zeros(n)
    for _ in range(maxiter):
        idx = np.nonzero(active)[0]
        if idx.size == 0:
            break
        niter[idx] += 1
        xp, xc, fp, fc = xpre[idx], xcur[idx], fpre[idx], fcur[idx]
        xb, fbk, sp, sc = xblk[idx], fblk[idx], spre[idx], scur[idx]
        new_block = (fp != 0) & (fc != 0) & (np.signbit(fp) != np.signbit(fc))
        xb = np.where(new_block, xp, xb)
        fbk = np.where(new_block, fp, fbk)
        sp = np.where(new_block, xc - xp, sp)
        sc = np.where(new_block, xc - xp, sc)
        swap = np.abs(fbk) < np.abs(fc)
        xp, xc, xb = np.where(swap, xc, xp), np.where(swap, xb, xc), np.where(swap, xc, xb)
        fp, fc, fbk = np.where(swap, fc, fp), np.where(swap, fbk, fc), np.where(swap, fc, fbk)

        delta = (xtol + rtol * np.abs(xc)) / 2
        sbis = (xb - xc) / 2
        done = (fc == 0) | (np.abs(sbis) < delta)

        with np.errstate(divide="ignore", invalid="ignore"):
            interp = xp == xb
            stry_i = -fc * (xc - xp) / (fc - fp)
            dpre = (fp - fc) / (xp - xc)
            dblk = (fbk - fc) / (xb - xc)
            stry_e = -fc * (fbk * dblk - fp * dpre) / (dblk * dpre * (fbk - fp))
        stry = np.where(interp, stry_i, stry_e)
        try_step = (np.abs(sp) > delta) & (np.abs(fc) < np.abs(fp))
        good = try_step & (2 * np.abs(stry) < np.minimum(np.abs(sp), 3 * np.abs(sbis) - delta))
        sp_new = np.where(good, sc, sbis)
        sc_new = np.where(good, stry, sbis)
        step = np.where(np.abs(sc_new) > delta, sc_new, np.where(sbis > 0, delta, -delta))
        xn = xc + step

        fin = idx[done]
        root[fin] = xc[done]
        converged[fin] = True
        active[fin] = False

        go = ~done
        gidx = idx[go]
        xpre[gidx], fpre[gidx] = xc[go], fc[go]
        xblk[gidx], fblk[gidx] = xb[go], fbk[go]
        spre[gidx], scur[gidx] = sp_new[go], sc_new[go]
        xcur[gidx] = xn[go]
        if gidx.size:
            fcur[gidx] = f(xn[go], gidx)
    left = np.nonzero(active)[0]
    root[left] = xcur[left]
    return root, niter, converged, bracket_ok


def excess_matching_significance(mu_bkg: Any, significance: float) -> np.ndarray:
    r"""Excess counts :math:`s` whose Cash significance over a known background :math:`b` is ``significance``.

    Solves :math:`\operatorname{sign}(s)\sqrt{2[(b+s)\ln(1+s/b) - s]} = S` in closed form: with
    :math:`x = 1 + s/b = e^{w+1}` the equation becomes :math:`w e^w = (S^2/(2b) - 1)/e`, so
    :math:`w = W_k((S^2/(2b) - 1)/e)` (Lambert W; branch 0 for :math:`S > 0`, where :math:`x > 1`,
    branch -1 otherwise) and :math:`s = b\,(e^{w+1} - 1)`. The same equation as gammapy's
    ``CashCountsStatistic.n_sig_matching_significance``.

    Parameters
    ----------
    mu_bkg : array_like
        Expected background counts.
    significance : float
        Target significance (sigma).

    Returns
    -------
    n_sig : `numpy.ndarray`
        Excess counts, float, NaN where ``mu_bkg`` is not positive (no finite solution).
    """
    from scipy.special import lambertw

    bkg = np.asarray(mu_bkg, dtype=float)
    positive = bkg > 0
    b = np.where(positive, bkg, 1.0)
    c = significance**2 / 2
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        w = lambertw((c / b - 1) / np.e, k=0 if significance > 0 else -1).real
        n_sig = b * np.expm1(w + 1)
    return np.where(positive, n_sig, np.nan)


def apply_threshold_sensitivity(background: Any, excess_counts: Any, gamma_min: float = 10,
                                bkg_syst_fraction: float = 0.05) -> np.ndarray:
    """Excess counts raised to the sensitivity floors: at least ``gamma_min`` counts, and at least
    ``bkg_syst_fraction`` of the ``background`` (the systematic floor), applied in that order as gammapy's
    ``apply_threshold_sensitivity`` (NaN stays NaN). Returns a new array."""
    excess = np.array(excess_counts, dtype=float)
    bkg = np.broadcast_to(np.asarray(background, dtype=float), excess.shape)
    excess[excess < gamma_min] = gamma_min
    syst = bkg_syst_fraction * bkg
    low = excess < syst
    excess[low] = syst[low]
    return excess
