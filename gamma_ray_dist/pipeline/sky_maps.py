"""Pipeline step: the sky maps the configuration asks for (``excess_map``, ``ts_map``) of the stacked dataset.

`run_sky_maps` computes them on the background-only dataset (the fitted FoV background norm kept, the
fitted sources removed, so that they show up in the maps), writes ``excess_map.fits.gz`` /
``ts_map.fits.gz`` atomically in gammapy's ``FluxMaps`` format (each with its reference-model YAML),
and returns what the report needs: the maps, the fitted source positions and the significance
distribution outside the exclusion regions with its fitted Gaussian.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .outputs import atomic_path

__all__ = ["run_sky_maps", "write_flux_maps", "background_only", "significance_outside", "source_positions"]

EXCESS_MAP_FILE = "excess_map.fits.gz"
TS_MAP_FILE = "ts_map.fits.gz"


def write_flux_maps(path: Any, flux_maps: Any) -> Path:
    """Write `FluxMaps` atomically: the model YAML (``<path>_model.yaml``) first, then the FITS file
    whose header names the YAML's final (absolute) path."""
    path = Path(path).resolve()
    model_path = flux_maps.default_model_filename(path)
    with atomic_path(path) as tmp, atomic_path(model_path) as tmp_model:
        flux_maps.write(tmp, filename_model=tmp_model, overwrite=True, model_path_in_header=model_path)
    return path


def background_only(dataset: Any, models: Any = None) -> Any:
    """A copy of ``dataset`` whose models are only its background model(s) (fitted norm kept)."""
    from ..modeling.models import FoVBackgroundModel, Models

    models = dataset.models if models is None else models
    bkg = [m for m in (models or []) if isinstance(m, FoVBackgroundModel)]
    out = dataset.copy(name=dataset.name)
    out.models = Models([m.copy() if hasattr(m, "copy") else m for m in bkg]) if bkg else None
    return out


def source_positions(models: Any) -> list[tuple[str, Any]]:
    """``(name, SkyCoord)`` of the models with a spatial position."""
    from astropy.coordinates import SkyCoord

    out = []
    for m in models or []:
        sm = getattr(m, "spatial_model", None)
        if sm is None or not hasattr(sm, "lon_0"):
            continue
        out.append((m.name, SkyCoord(sm.lon_0.quantity, sm.lat_0.quantity, frame=sm.frame)))
    return out


def _usable_pixels(geom: Any, exclusion_mask: Any, positions: list, radius_deg: float) -> np.ndarray:
    """2D bool: True outside the exclusion regions and farther than ``radius_deg`` from every fitted
    source (a source's PSF and kernel wings reach beyond a tight exclusion region)."""
    image = geom.to_image()
    usable = np.ones(image.data_shape, dtype=bool)
    if exclusion_mask is not None:
        if tuple(exclusion_mask.geom.data_shape[-2:]) == tuple(image.data_shape) and \
                exclusion_mask.geom.to_image().is_allclose(image):
            usable &= np.asarray(exclusion_mask.data, dtype=bool).reshape(image.data_shape)
        else:
            values = exclusion_mask.get_by_coord(image.get_coord(), fill_value=0)
            usable &= np.asarray(values, dtype=float).reshape(image.data_shape) > 0.5
    for _, pos in positions:
        usable &= np.asarray(image.separation(pos).deg) > radius_deg
    return usable


def significance_outside(sqrt_ts: np.ndarray, usable: np.ndarray) -> dict:
    """Finite significance values on usable pixels and their fitted Gaussian (maximum likelihood)."""
    values = np.asarray(sqrt_ts, dtype=float)
    values = values.reshape((-1,) + usable.shape)[:, usable].ravel()
    values = values[np.isfinite(values)]
    if values.size < 2:
        return {"values": values, "mean": float("nan"), "sigma": float("nan"), "n": int(values.size)}
    return {"values": values, "mean": float(np.mean(values)), "sigma": float(np.std(values)),
            "n": int(values.size)}


def run_sky_maps(dataset: Any, config: Any, models: Any = None, backend: Any = None, out_dir: Any = ".",
                 exclusion_mask: Any = None, exclusion_radius_deg: float = 0.3) -> dict:
    """Compute and write the sky maps ``config`` asks for.

    Parameters
    ----------
    dataset : `MapDataset`
        The stacked dataset (its models, or ``models``, hold the fitted background model and sources).
    config : `AnalysisConfig`
        ``config.excess_map`` / ``config.ts_map``: a map is made when its section is present.
    models : `Models`, optional
        Fitted models (default ``dataset.models``): the FoV background model is kept on the dataset,
        the sources are removed and their positions returned for the figure.
    backend : execution backend, optional
        ``map(fn, jobs, shared)`` / ``cpus``; the TS map tiles run on it (None: in-process).
    out_dir : path
        Folder of ``excess_map.fits.gz`` and ``ts_map.fits.gz``.
    exclusion_mask : `WcsNDMap`, optional
        True = usable pixel (gammapy's convention, e.g. from ``pipeline.inputs.make_exclusion_mask``);
        pixels within ``exclusion_radius_deg`` of a fitted source are left out as well.

    Returns
    -------
    dict
        ``excess_map`` / ``ts_map`` (`FluxMaps` or None), ``paths`` (name -> written file),
        ``source_positions`` (list of (name, SkyCoord)), ``usable`` (2D bool mask outside exclusions),
        ``significance`` (name -> dict(values, mean, sigma, n) of ``sqrt_ts`` on usable pixels).
    """
    from ..estimators import ExcessMapEstimator, TSMapEstimator

    out_dir = Path(out_dir)
    models = dataset.models if models is None else models
    positions = source_positions([m for m in (models or []) if getattr(m, "spatial_model", None) is not None])
    bkg_dataset = background_only(dataset, models)
    usable = _usable_pixels(dataset.counts.geom, exclusion_mask, positions, exclusion_radius_deg)
    result: dict = {"excess_map": None, "ts_map": None, "paths": {}, "source_positions": positions,
                    "usable": usable, "significance": {}}
    if config.excess_map.requested:
        maps = ExcessMapEstimator(**config.excess_map.estimator_kwargs()).run(bkg_dataset)
        result["excess_map"] = maps
        result["paths"]["excess_map"] = write_flux_maps(out_dir / EXCESS_MAP_FILE, maps)
        result["significance"]["excess_map"] = significance_outside(maps.sqrt_ts.data, usable)
    if config.ts_map.requested:
        maps = TSMapEstimator(**config.ts_map.estimator_kwargs()).run(bkg_dataset, backend=backend)
        result["ts_map"] = maps
        result["paths"]["ts_map"] = write_flux_maps(out_dir / TS_MAP_FILE, maps)
        result["significance"]["ts_map"] = significance_outside(maps.sqrt_ts.data, usable)
    return result
