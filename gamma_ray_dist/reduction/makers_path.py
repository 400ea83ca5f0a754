"""The reference path: the seed loop body run through the public makers on a cutout `MapDataset`.

    cutout = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=2 * offset_max)
    dataset = MapDatasetMaker().run(cutout, obs)
    dataset = SafeMaskMaker(methods, offset_max=offset_max).run(dataset, obs)
    dataset = FoVBackgroundMaker(method, exclusion_mask).run(dataset)

`reduce_with_makers` turns the result into a `PartialDataset` (``PartialDataset.from_dataset``). It
covers every configuration the makers support; `dispatch` uses it when the fast path does not apply.
"""
from __future__ import annotations

import time
from typing import Optional

import numpy as np
from astropy import units as u

from ..errors import GammaRayDistError, IRFError, ObservationError
from .spec import (
    ObservationLike,
    ObservationOutsideGeometry,
    ReductionSpec,
    observation_filename,
    prepare,
    resolve_observation,
)

__all__ = ["reduce_to_dataset", "reduce_with_makers"]


def _check_finite(obs, dataset) -> None:
    """IRFs with NaN/inf give a clear error naming the file, not NaNs in the stacked sums."""
    checks = (("exposure", "aeff", dataset.exposure), ("background", "bkg", dataset.background),
              ("psf", "psf", dataset.psf.psf_map if dataset.psf is not None else None),
              ("edisp", "edisp", dataset.edisp.edisp_map if dataset.edisp is not None else None))
    for what, hdu, m in checks:
        if m is not None and not np.all(np.isfinite(m.data)):
            raise IRFError(f"the {hdu} IRF gives non-finite values in the {what} map (NaN or inf in the "
                           "IRF table?)", obs.obs_id, observation_filename(obs, hdu))


def _empty_cutout(stacked, position, width_deg: float, name: str):
    """``stacked.cutout(position, width)`` for an *empty* stacked dataset: the makers only read the
    cutout's geometries, so only two image cutouts (fine, and coarse with >= 3 pixels as
    ``IRFMap.cutout``) are computed and the zero maps are made on them directly."""
    from ..datasets import MapDataset
    from ..datasets.irf_maps import IRF_MIN_NPIX

    geoms = stacked.geoms
    width = width_deg * u.deg
    fine = geoms["geom"].to_image().cutout(position, width, mode="trim")
    kwargs = {"geom": fine.to_cube(list(geoms["geom"].axes))}
    if geoms.get("geom_exposure") is not None:
        kwargs["geom_exposure"] = fine.to_cube(list(geoms["geom_exposure"].axes))
    irf_geom = geoms.get("geom_psf") or geoms.get("geom_edisp")
    if irf_geom is not None:
        coarse = irf_geom.to_image().cutout(position, width, mode="trim", min_npix=IRF_MIN_NPIX)
        for key in ("geom_psf", "geom_edisp"):
            if geoms.get(key) is not None:
                kwargs[key] = coarse.to_cube(list(geoms[key].axes))
    return MapDataset.from_geoms(name=name, gti=None, **kwargs)  # gti=None: no Time parsing


def reduce_to_dataset(observation: ObservationLike, spec: ReductionSpec, timings: Optional[dict] = None):
    """The seed loop body for one observation: the reduced cutout `MapDataset` (not yet stacked).

    Parameters
    ----------
    observation : Observation or (datastore_dir, obs_id)
    spec : ReductionSpec
    timings : dict, optional
        Filled with the stage times (s): cutout, make, safe, fov.

    Raises
    ------
    ObservationError
        Unreadable or invalid data (names obs id and file); `ObservationOutsideGeometry` when the
        cutout around the pointing does not overlap the stacked geometry.
    """
    from ..maps.errors import MapError

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    obs = resolve_observation(observation)
    obs_id = getattr(obs, "obs_id", None)
    prepared = prepare(spec)
    try:
        pointing = obs.get_pointing_icrs(obs.tmid)
    except GammaRayDistError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ObservationError(f"cannot get the pointing: {type(exc).__name__}: {exc}", obs_id,
                               observation_filename(obs, "events")) from exc
    try:
        cutout = _empty_cutout(prepared.stacked, pointing, spec.width, name=f"obs-{obs_id}")
    except (MapError, ValueError) as exc:
        raise ObservationOutsideGeometry(
            f"the cutout of width {spec.width} deg around the pointing (ra={pointing.ra.deg:.3f}, "
            f"dec={pointing.dec.deg:.3f}) does not overlap the stacked geometry", obs_id,
            observation_filename(obs, "events")) from exc
    t1 = time.perf_counter()
    try:
        dataset = prepared.maker.run(cutout, obs)
    except GammaRayDistError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ObservationError(f"map making failed: {type(exc).__name__}: {exc}", obs_id,
                               observation_filename(obs, "events")) from exc
    _check_finite(obs, dataset)
    t2 = time.perf_counter()
    dataset = prepared.safe.run(dataset, obs)
    t3 = time.perf_counter()
    if prepared.fov is not None:
        dataset = prepared.fov.run(dataset, obs)
    t4 = time.perf_counter()
    timings.update({"cutout": t1 - t0, "make": t2 - t1, "safe": t3 - t2, "fov": t4 - t3})
    return dataset


def reduce_with_makers(observation: ObservationLike, spec: ReductionSpec):
    """`reduce_observation` through the public makers and `PartialDataset.from_dataset` (reference).

    Returns
    -------
    PartialDataset
        With stage ``timings`` (cutout, make, safe, fov, partial).
    """
    from ..datasets.partial import PartialDataset

    timings: dict = {}
    dataset = reduce_to_dataset(observation, spec, timings)
    t0 = time.perf_counter()
    geometry = prepare(spec).geometry
    obs_id = dataset.meta_table["OBS_ID"][0] if dataset.meta_table is not None else None
    status = (dataset.meta or {}).get("fov_status", "none")
    partial = PartialDataset.from_dataset(dataset, geometry, obs_id=obs_id, fov_status=status)
    timings["partial"] = time.perf_counter() - t0
    partial.timings = timings
    return partial
