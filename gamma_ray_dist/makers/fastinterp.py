"""Fast evaluation of tabulated IRFs on outer-product coordinate grids.

Map making evaluates IRFs on grids such as (true energies) x (pixels) or (energies) x (migra) x
(pixels). ``TableIRF.evaluate_values`` broadcasts such grids to every point and hands them to scipy's
RegularGridInterpolator, which searches every axis for every point. Here the bracketing index and
weight are computed once per *axis* coordinate and the 2^d corners are gathered with broadcasting
index arrays. Same conventions as `gamma_ray_dist.irf.interp.GridInterpolator` (axis and value
scales, linear extrapolation, clip at 0, fill outside the axis edges, single-bin axes ignored), so
results agree with it (and gammapy) to rounding.
"""
from __future__ import annotations

import itertools

import numpy as np

from ..irf.axes import scale_forward, scale_inverse

__all__ = ["evaluate_outer", "evaluate_grid", "supports_fast"]


def supports_fast(irf) -> bool:
    """True for tabulated IRFs (the fast path needs ``_raw``/``axes``/``values_scale``)."""
    from ..irf.core import TableIRF

    return isinstance(irf, TableIRF)


def _scaled_table(irf) -> np.ndarray:
    cache = irf.__dict__.setdefault("_grd_fast_cache", {})
    if "table" not in cache:
        cache["table"] = np.ascontiguousarray(scale_forward(irf._raw, irf.values_scale), dtype=np.float64)
    return cache["table"]


def _bracket(ax, coord: np.ndarray):
    """(index, weight) of each coordinate between the axis centres, as scipy's ``_find_indices``."""
    pts = scale_forward(ax.center, ax.interp)
    c = scale_forward(np.asarray(coord, dtype=np.float64), ax.interp)
    i = np.clip(np.searchsorted(pts, c) - 1, 0, len(pts) - 2)
    t = (c - pts[i]) / (pts[i + 1] - pts[i])
    return i, t


def evaluate_outer(irf, **coords: np.ndarray) -> np.ndarray:
    """``irf.evaluate_values(**coords)`` for coordinates that broadcast against each other.

    Each coordinate array should be small along the dimensions it does not vary on (e.g. energies
    shaped ``(n, 1, 1)`` and offsets ``(1, ny, nx)``); the cost is then dominated by 2^d gathers of
    the output size. Returns float64 in canonical units.
    """
    names = list(irf.required_axes)
    arrays = [np.asarray(coords[n], dtype=np.float64) for n in names]
    table = _scaled_table(irf)
    idx0, weights, include = [], [], []
    for ax, c in zip(irf.axes, arrays):
        if ax.nbin > 1:
            i, t = _bracket(ax, c)
            idx0.append(i)
            weights.append(t)
            include.append(True)
        else:
            idx0.append(np.zeros(c.shape, dtype=np.intp))
            weights.append(None)
            include.append(False)
    shape = np.broadcast_shapes(*[a.shape for a in arrays])
    out = np.zeros(shape, dtype=np.float64)
    dims = [k for k, inc in enumerate(include) if inc]
    for bits in itertools.product((0, 1), repeat=len(dims)):
        index = list(idx0)
        w = 1.0
        for k, b in zip(dims, bits):
            if b:
                index[k] = idx0[k] + 1
                w = w * weights[k]
            else:
                w = w * (1.0 - weights[k])
        out += table[tuple(index)] * w
    out = np.clip(scale_inverse(out, irf.values_scale), 0, np.inf)
    if irf.fill_value is not None:
        invalid = np.broadcast_arrays(*[ax.coord_to_idx(c) == -1 for ax, c in zip(irf.axes, arrays)])
        mask = irf._mask_out_bounds(invalid)
        out = np.where(mask | ~np.isfinite(out), irf.fill_value, out)
    if irf._factor != 1.0:
        out = out * irf._factor
    return out


def evaluate_grid(irf, outer: dict, joint: dict, joint_first: bool = False) -> np.ndarray:
    """``irf.evaluate_values`` on the grid ``outer[a] x outer[b] x ... x P`` (the hot path).

    Parameters
    ----------
    irf : TableIRF
    outer : dict
        Axis name -> 1D coordinates; each spans its own output dimension.
    joint : dict
        Axis name -> coordinates of one common shape ``P`` (e.g. per-pixel offsets or FoV lon/lat).

    joint_first : bool
        Return the layout ``P + (len(outer[a]), ...)`` instead (contiguous along the outer axes: the
        per-point gathers copy whole rows, and sums along an outer axis are contiguous).

    Returns
    -------
    np.ndarray
        float64, shape ``(len(outer[a]), len(outer[b]), ...) + P`` with the outer axes in the IRF's
        axis order (``P + ...`` with ``joint_first``); canonical units.

    Notes
    -----
    Same conventions as `evaluate_outer` (and the scipy-based ``evaluate_values``): interpolation in
    the axes' and values' scales, linear extrapolation, clip at 0, fill outside the axis edges,
    single-bin axes ignored. Multilinear interpolation is separable, so the outer axes are contracted
    one after the other on the (small) table, touching only the table planes they bracket; only the
    joint axes are gathered per point. Results equal `evaluate_outer`'s to rounding (~1e-16).
    """
    names = list(irf.required_axes)
    axes = list(irf.axes)
    if set(outer) | set(joint) != set(names) or set(outer) & set(joint):
        raise ValueError(f"coordinates for {sorted(outer)} + {sorted(joint)}; {irf.tag} needs {names}")
    raw = irf._raw
    outer_c, brackets = {}, {}
    for k, (name, ax) in enumerate(zip(names, axes)):
        if name not in outer:
            continue
        c = np.asarray(outer[name], dtype=np.float64).ravel()
        outer_c[name] = c
        if ax.nbin > 1:
            i, t = _bracket(ax, c)
            need = np.unique(np.concatenate([i, i + 1]))
            raw = raw.take(need, axis=k)  # scale_forward is elementwise: scale only what is used
            brackets[name] = (np.searchsorted(need, i), t)
        else:
            raw = raw.take([0], axis=k)
            brackets[name] = (np.zeros(c.shape, dtype=np.intp), None)
    table = np.asarray(scale_forward(raw, irf.values_scale), dtype=np.float64)
    for k, name in enumerate(names):
        if name not in outer:
            continue
        i, t = brackets[name]
        if t is None:
            table = table.take(i, axis=k)
        else:
            shape = [1] * table.ndim
            shape[k] = -1
            tb = t.reshape(shape)
            table = table.take(i, axis=k) * (1.0 - tb) + table.take(i + 1, axis=k) * tb
    outer_idx = [k for k, n in enumerate(names) if n in outer]
    joint_idx = [k for k, n in enumerate(names) if n in joint]
    order = joint_idx + outer_idx if joint_first else outer_idx + joint_idx
    table = np.ascontiguousarray(np.moveaxis(table, order, list(range(len(names)))))
    joint_c = [np.asarray(joint[names[k]], dtype=np.float64) for k in joint_idx]
    pshape = np.broadcast_shapes(*[c.shape for c in joint_c]) if joint_c else ()
    joint_c = [np.broadcast_to(c, pshape) for c in joint_c]
    idx0, weights = [], []
    for k, c in zip(joint_idx, joint_c):
        if axes[k].nbin > 1:
            i, t = _bracket(axes[k], c)
        else:
            i, t = np.zeros(pshape, dtype=np.intp), None
        idx0.append(i)
        weights.append(t)
    n_outer = len(outer_idx)
    if not joint_idx:
        out = table
    else:
        out = _joint_product(table, idx0, weights, pshape, n_outer, joint_first)
    out = np.clip(scale_inverse(out, irf.values_scale), 0, np.inf)
    if irf.fill_value is not None:
        ndim = n_outer + len(pshape)
        coords = [outer_c[n] if n in outer else joint_c[joint_idx.index(k)] for k, n in enumerate(names)]
        if not all(_inside(ax, c) for ax, c in zip(axes, coords)):
            invalid = []
            n_p = len(pshape)
            for k, (name, ax, c) in enumerate(zip(names, axes, coords)):
                if name in outer:
                    shape = [1] * ndim
                    shape[outer_idx.index(k) + (n_p if joint_first else 0)] = -1
                else:
                    shape = pshape + (1,) * n_outer if joint_first else (1,) * n_outer + pshape
                invalid.append((ax.coord_to_idx(c) == -1).reshape(shape))
            mask = irf._mask_out_bounds(np.broadcast_arrays(*invalid))
            out = np.where(mask, irf.fill_value, out)
        bad = ~np.isfinite(out)
        if bad.any():
            out = np.where(bad, irf.fill_value, out)
    if irf._factor != 1.0:
        out = out * irf._factor
    return out


def _inside(ax, c: np.ndarray) -> bool:
    """True when every coordinate is finite and within the axis edges (``coord_to_idx`` != -1)."""
    if c.size == 0:
        return True
    lo, hi = c.min(), c.max()  # NaN propagates: the comparisons below are then False
    return bool(lo >= ax.edges[0]) and bool(hi <= ax.edges[-1])


_DENSE_MAX = 2_000_000  # entries of a dense interpolation matrix (16 MB)


def _joint_product(table, idx0, weights, pshape, n_outer, joint_first):
    """Multilinear interpolation over the joint axes as a matrix product.

    Every point is a weighted sum of the 2^d table entries around it: with the joint axes of
    ``table`` flattened (``n_j`` entries) and the outer axes flattened (``n_o``), the result is
    ``T (n_o, n_j) @ W (n_j, P)`` with ``W`` holding 2^d weights per column, dense when small, else
    sparse (CSR). Same sums as gathering the corners one by one (to rounding), without the slow
    per-point fancy indexing on the tables' trailing axes.
    """
    n_jax = len(idx0)
    jshape = table.shape[:n_jax] if joint_first else table.shape[n_outer:]
    oshape = table.shape[n_jax:] if joint_first else table.shape[:n_outer]
    n_j = int(np.prod(jshape))
    n_o = int(np.prod(oshape))
    n_p = int(np.prod(pshape))
    dims = [j for j, t in enumerate(weights) if t is not None]
    flat_idx, flat_w = [], []
    for bits in itertools.product((0, 1), repeat=len(dims)):
        index = [np.broadcast_to(i, pshape).ravel() for i in idx0]
        w = np.ones(n_p)
        for j, b in zip(dims, bits):
            t = np.broadcast_to(weights[j], pshape).ravel()
            if b:
                index[j] = index[j] + 1
                w = w * t
            else:
                w = w * (1.0 - t)
        flat_idx.append(np.ravel_multi_index(index, jshape) if n_jax > 1 else index[0])
        flat_w.append(w)
    if joint_first:
        t2 = table.reshape(n_j, n_o)
    else:
        t2 = table.reshape(n_o, n_j)
    cols = np.arange(n_p)
    if n_j * n_p <= _DENSE_MAX:
        wm = np.zeros((n_j, n_p))
        for fi, fw in zip(flat_idx, flat_w):
            wm[fi, cols] = fw  # the 2^d corners of one point are distinct entries
        out = wm.T @ t2 if joint_first else t2 @ wm
    else:
        from scipy import sparse

        k = len(flat_idx)
        indices = np.stack(flat_idx, axis=1).ravel()
        data = np.stack(flat_w, axis=1).ravel()
        wm = sparse.csr_matrix((data, indices, np.arange(0, k * n_p + 1, k)), shape=(n_p, n_j))
        prod = wm @ (t2 if joint_first else t2.T)  # (P, n_o)
        out = prod if joint_first else np.ascontiguousarray(prod.T)
    return out.reshape(pshape + oshape if joint_first else oshape + pshape)
