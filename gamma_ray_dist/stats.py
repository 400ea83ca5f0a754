"""Poisson fit statistics (Cash) and test-statistic helpers, as gammapy/stats/fit_statistics.py.

References: Cash (1979), ApJ 228, 939; Sherpa statistics pages.
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TRUNCATION_VALUE", "cash", "cash_sum", "ts_from_stats", "sqrt_ts", "cash_sum_masked"]

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
