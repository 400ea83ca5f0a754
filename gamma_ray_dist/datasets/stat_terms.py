"""Cash statistic of a `MapDataset` from a few precomputed sums: the fit's hot path.

The statistic over the fit mask (gammapy's ``cash_sum``, see `map_evaluation.cash_sum_sparse`) is::

    C = 2 * (sum_{mask} mu  -  sum_{mask, n > 0} n log mu),
    mu = background * f(E) + sum over models of npred_model

with ``f`` the FoV background factor per reconstructed-energy bin. When every term of ``mu`` is finite
and non-negative (the usual case: positive norms and amplitudes), both sums decompose:

- ``sum_{mask} mu = f . B + sum over models of sum_{t,r} W[t, r] M[t, r]`` where ``B[e]`` is the masked
  background of energy plane ``e`` (`CashStatic`), ``W = flux[:, None] * edisp`` the spectral weights of a
  model and ``M[t, r]`` the masked sum of its PSF-convolved exposure template of true-energy plane ``t``
  over the spatial mask of reconstructed plane ``r`` (`ModelStatTerms`, made once per spatial template);
- ``mu`` is needed only in the bins with counts (a few per cent of the map): the template is gathered there
  once per spatial template, so a spectral change costs ``O(n_true * n_counted_bins)``.

A spectral or background-norm step therefore never touches the full map. Compared with the dense path the
sums run in another order (relative differences ~1e-15 of the statistic) and bins with ``mu < 1e-25``
contribute ``mu`` instead of the truncation value 1e-25 (at most ``1e-25`` per bin, far below any
meaningful difference); the log term is truncated exactly as the dense path. Whenever a term could be
negative or non-finite the dataset falls back to the dense path (`MapDatasetEvaluation.stat_sum`); FFT
round-off negatives of a convolved template (above ``-1e-10`` of its peak) are kept as they are (the dense
path clips ``mu`` at 0 there: a difference below ``1e-10`` of the peak per bin).

`CashStatic` depends only on the counts, background and masks, keyed on the identity of those maps and of
their data arrays: replacing a map invalidates it; in-place edits of their data need
``dataset.reset_evaluators()`` (``MapDataset.stack`` does it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..stats import _LOG_TRUNCATION_SUM, TRUNCATION_VALUE

__all__ = ["CashStatic", "ModelStatTerms", "static_token", "cash_from_terms", "NEGATIVE_ROUNDOFF"]

NEGATIVE_ROUNDOFF = 1e-10  # template values above -NEGATIVE_ROUNDOFF * max count as round-off zeros


def static_token(dataset) -> tuple:
    """Identity of the maps (and data arrays) `CashStatic` is derived from."""
    token = []
    for key in ("counts", "background", "mask_safe", "mask_fit"):
        m = getattr(dataset, key, None)
        token.append(id(m))
        token.append(None if m is None else id(m.data))
    return tuple(token)


@dataclass(frozen=True)
class CashStatic:
    """The parameter-independent part of the Cash statistic of one dataset.

    Attributes
    ----------
    token : tuple
        `static_token` of the dataset it was made from.
    usable : bool
        False when the decomposition does not apply (non-finite or negative background in the mask, no
        counts): the dense path is used.
    mask : ndarray of bool, shape (n_e, ny, nx)
        ``mask_safe & mask_fit`` (all True without masks).
    background_sums : ndarray (n_e,)
        Masked background per energy plane (float64 sums of the float64 background).
    nz_energy, nz_y, nz_x : ndarray of int
        Bins inside the mask with counts, flat C order.
    nz_counts : ndarray (n_nz,)
        Their counts (float64).
    nz_background : ndarray (n_nz,)
        Their background (float64).
    """

    token: tuple
    usable: bool
    mask: Optional[np.ndarray] = None
    background_sums: Optional[np.ndarray] = None
    nz_energy: Optional[np.ndarray] = None
    nz_y: Optional[np.ndarray] = None
    nz_x: Optional[np.ndarray] = None
    nz_counts: Optional[np.ndarray] = None
    nz_background: Optional[np.ndarray] = None

    @classmethod
    def from_dataset(cls, dataset) -> "CashStatic":
        token = static_token(dataset)
        if dataset.counts is None:
            return cls(token, False)
        counts = np.asarray(dataset.counts.data)
        shape = counts.shape
        mask = dataset._mask_values()
        mask = np.ones(shape, dtype=bool) if mask is None else np.array(mask, dtype=bool)
        if dataset.background is None:
            background = np.zeros(shape)
        else:
            background = np.asarray(dataset.background.data, dtype=float)
        masked_bkg = np.where(mask, background, 0.0)
        masked_counts = np.where(mask, counts, 0)
        if not (np.all(np.isfinite(masked_bkg)) and np.all(masked_bkg >= 0)
                and np.all(np.isfinite(masked_counts)) and np.all(masked_counts >= 0)):
            return cls(token, False)
        nz = np.flatnonzero(masked_counts)
        e, y, x = np.unravel_index(nz, shape)
        for arr in (mask, e, y, x):
            arr.setflags(write=False)
        return cls(token, True, mask=mask,
                   background_sums=masked_bkg.reshape(shape[0], -1).sum(axis=1),
                   nz_energy=e, nz_y=y, nz_x=x,
                   nz_counts=masked_counts.ravel()[nz].astype(float),
                   nz_background=background.ravel()[nz])


@dataclass(frozen=True)
class ModelStatTerms:
    """What the statistic needs from one model's spatial template on one dataset.

    Attributes
    ----------
    usable : bool
        False when the template has negative or non-finite values (dense path).
    masked_sums : ndarray (n_true, n_reco)
        ``M[t, r]``: template plane ``t`` summed over the spatial mask of reconstructed plane ``r``.
    nz_index : ndarray of int
        Indices into the dataset's counted bins (`CashStatic` ``nz_*``) that fall in the cutout.
    nz_template : ndarray (n_true, n_in)
        Template values at those bins' pixels.
    nz_reco : ndarray of int
        Reconstructed-energy plane of those bins.
    """

    usable: bool
    masked_sums: Optional[np.ndarray] = None
    nz_index: Optional[np.ndarray] = None
    nz_template: Optional[np.ndarray] = None
    nz_reco: Optional[np.ndarray] = None

    @classmethod
    def from_template(cls, template: np.ndarray, slices: tuple, static: CashStatic) -> "ModelStatTerms":
        """Terms of a ``(n_true, ny, nx)`` template placed at ``slices`` of the dataset image."""
        # FFT convolution leaves round-off negatives (~1e-17 of the peak) where the template is 0; they
        # change the masked sum by less than that, not the sign of mu where it matters (bins with counts
        # are computed exactly): only real negatives send the dataset to the dense path
        if not np.all(np.isfinite(template)) or template.min(initial=0.0) < -NEGATIVE_ROUNDOFF * template.max(initial=0.0):
            return cls(False)
        n_true = template.shape[0]
        flat = template.reshape(n_true, -1)
        mask_cut = static.mask[(Ellipsis,) + tuple(slices)]
        masked_sums = flat @ mask_cut.reshape(mask_cut.shape[0], -1).T.astype(float)
        sy, sx = slices
        ny, nx = template.shape[-2:]
        inside = ((static.nz_y >= sy.start) & (static.nz_y < sy.start + ny)
                  & (static.nz_x >= sx.start) & (static.nz_x < sx.start + nx))
        index = np.flatnonzero(inside)
        pix = (static.nz_y[index] - sy.start) * nx + (static.nz_x[index] - sx.start)
        return cls(True, masked_sums=masked_sums, nz_index=index,
                   nz_template=np.ascontiguousarray(flat[:, pix]), nz_reco=static.nz_energy[index])

    def contribution(self, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """(masked sum of npred, npred at the counted bins in the cutout) for spectral weights
        ``W[t, r] = flux[t] * edisp[t, r]``."""
        total = float(np.sum(weights * self.masked_sums))
        values = np.einsum("tk,tk->k", weights[:, self.nz_reco], self.nz_template)
        return total, values


def cash_from_terms(static: CashStatic, factor: np.ndarray,
                    pieces: list[tuple[float, np.ndarray, np.ndarray]]) -> float:
    """The Cash statistic from `CashStatic`, the background factor per energy plane (n_e,) and, per model,
    ``(masked npred sum, nz_index, npred at those counted bins)``."""
    total = float(np.dot(factor, static.background_sums))
    mu = static.nz_background * factor[static.nz_energy]
    for masked_sum, index, values in pieces:
        total += masked_sum
        mu[index] += values
    above = mu > TRUNCATION_VALUE
    logs = np.where(above, np.log(np.where(above, mu, 1.0)), _LOG_TRUNCATION_SUM)
    return 2 * (total - float(np.dot(static.nz_counts, logs)))
