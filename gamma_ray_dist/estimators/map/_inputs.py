"""Inputs shared by the map estimators: energy groups, masks, reconstructed-energy exposure, job runner."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from astropy import units as u

from ...maps import MapAxis
from ..flux_point import snap_energy_bin
from .core import EstimatorInputError

__all__ = ["run_jobs", "energy_groups", "estimation_mask", "reco_exposure", "check_dataset"]


def _run_serial(fn: Callable, jobs: Sequence, shared: Any) -> list:
    return [fn(shared, job) for job in jobs]


def run_jobs(backend: Any, fn: Callable, jobs: Sequence, shared: Any) -> list:
    """``backend.map(fn, jobs, shared)``, or the in-process loop when ``backend`` is None."""
    jobs = list(jobs)
    if backend is None:
        return _run_serial(fn, jobs, shared)
    return list(backend.map(fn, jobs, shared=shared))


def check_dataset(dataset: Any, estimator: str) -> None:
    """Errors naming the cause for datasets a map estimator cannot use."""
    from ...datasets import MapDataset

    if not isinstance(dataset, MapDataset):
        raise EstimatorInputError(f"{estimator} needs a MapDataset, got {type(dataset).__name__}")
    if dataset.counts is None:
        raise EstimatorInputError(f"{estimator}: the dataset {dataset.name!r} has no counts map")
    mask = estimation_mask(dataset)
    counts = np.asarray(dataset.counts.data, dtype=float)
    if not np.any(mask):
        raise EstimatorInputError(f"{estimator}: the safe/fit mask of dataset {dataset.name!r} is empty")
    if not np.any(counts[mask] > 0):
        raise EstimatorInputError(f"{estimator}: the dataset {dataset.name!r} has no counts inside its mask "
                                  "(nothing to estimate)")


def energy_groups(dataset: Any, energy_edges: Any = None, sum_all: bool = True) -> tuple[list, MapAxis]:
    """Index ranges ``[i0, i1)`` of the dataset's reco-energy bins per output bin, and the output axis.

    ``energy_edges`` None: one bin over the whole axis (gammapy squashes the axis). Requested edges
    snap to the nearest dataset edges (`snap_energy_bin`); an output bin without any dataset bin is an
    error naming the range.
    """
    axis = dataset.counts.geom.axes["energy"]
    edges = axis.edges.to_value("TeV")
    if energy_edges is None:
        groups = [(0, axis.nbin)] if sum_all else [(i, i + 1) for i in range(axis.nbin)]
    else:
        req = u.Quantity(energy_edges, "TeV").to_value("TeV").ravel()
        if req.size < 2 or np.any(np.diff(req) <= 0):
            raise EstimatorInputError(f"energy_edges must be at least two increasing energies, got {energy_edges}")
        groups = []
        for lo, hi in zip(req[:-1], req[1:]):
            if hi <= edges[0] or lo >= edges[-1]:
                raise EstimatorInputError(
                    f"energy range {lo:g}-{hi:g} TeV is outside the dataset's energy axis "
                    f"({edges[0]:g}-{edges[-1]:g} TeV)")
            snapped = snap_energy_bin(edges, lo, hi)
            if snapped is None:
                raise EstimatorInputError(f"energy range {lo:g}-{hi:g} TeV contains no bin of the dataset's "
                                          f"energy axis (edges {np.round(edges, 4).tolist()} TeV)")
            groups.append(snapped)
    out_edges = [edges[groups[0][0]]] + [edges[g[1]] for g in groups]
    out_axis = MapAxis.from_energy_edges(np.asarray(out_edges) * u.TeV)
    return groups, out_axis


def estimation_mask(dataset: Any) -> np.ndarray:
    """gammapy's default estimator mask: ``mask_safe & mask_fit`` when a fit mask is set, else the safe
    mask, else everything (bool array, dataset data shape)."""
    if dataset.mask_fit is not None:
        return np.asarray(dataset.mask.data, dtype=bool)
    if dataset.mask_safe is not None:
        return np.asarray(dataset.mask_safe.data, dtype=bool)
    return np.ones(dataset.counts.data.shape, dtype=bool)


def reco_exposure(dataset: Any, spectral_model: Any) -> np.ndarray:
    """Predicted counts per reco-energy bin of a spatially constant source with ``spectral_model``
    (gammapy's ``estimate_exposure_reco_energy(normalize=False)``): exposure x flux per true bin, folded
    with the energy-dispersion matrix at the map centre. Shape ``(n_reco, ny, nx)``; sr-free."""
    from ...datasets.irf_maps import overlap_fraction

    if dataset.exposure is None:
        raise EstimatorInputError(f"the dataset {dataset.name!r} has no exposure map")
    exposure = np.asarray(dataset.exposure.data, dtype=float) * dataset.exposure.unit.to("cm2 s")
    true_edges = dataset.exposure.geom.axes["energy_true"].edges.to_value("TeV")
    reco_axis = dataset.counts.geom.axes["energy"]
    flux = np.asarray(spectral_model.integral_values(true_edges[:-1], true_edges[1:]), dtype=float)
    if dataset.edisp is not None:
        matrix = np.asarray(dataset.edisp.get_edisp_kernel(position=None, energy_axis=reco_axis).pdf_matrix,
                            dtype=float)
    else:
        matrix = overlap_fraction(reco_axis.edges.to_value("TeV"), true_edges)
    weights = flux[:, None] * matrix  # (n_true, n_reco)
    return np.einsum("tr,tyx->ryx", weights, exposure)
