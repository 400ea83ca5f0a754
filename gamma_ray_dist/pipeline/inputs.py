"""From a validated `AnalysisConfig` to the inputs of the reduction: data store, obs ids, geometry.

Pure set-up code (no Ray): opening the data store, selecting observations (``obs_ids`` /
``obs_file`` / ``obs_cone`` / ``obs_time``), the stacked geometry and its exclusion mask, and the
`ReductionSpec` every task receives.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u

from ..config import AnalysisConfig
from ..errors import ConfigError, DataStoreError, ObservationError

__all__ = [
    "DATASET_NAME",
    "datastore_dir",
    "open_datastore",
    "select_obs_ids",
    "make_geom",
    "make_energy_axis_true",
    "make_exclusion_mask",
    "make_reduction_spec",
]

#: Name of the stacked dataset (its FoV background model is ``"stacked-bkg"``, as in the reference).
DATASET_NAME = "stacked"


def datastore_dir(config: AnalysisConfig) -> Path:
    """The data store directory with ``$VARS`` and ``~`` expanded on the driver.

    Workers receive this absolute path: they need not share the driver's environment variables.
    """
    raw = config.observations.datastore
    path = Path(os.path.expandvars(os.path.expanduser(raw)))
    if "$" in str(path):
        raise ConfigError("observations.datastore", f"undefined environment variable in {raw!r}")
    return path.resolve()


def open_datastore(config: AnalysisConfig):
    """`DataStore` of ``observations.datastore`` (raises `DataStoreError` when unusable)."""
    from ..data import DataStore

    path = datastore_dir(config)
    if not path.is_dir():  # the config's mistake: name its key
        raise ConfigError("observations.datastore", f"data store directory not found: {path}")
    return DataStore.from_dir(path)


def _read_obs_file(path: str) -> list[int]:
    """Obs ids from a text file (one per line, ``#`` comments) or a table with an ``OBS_ID`` column."""
    p = Path(os.path.expandvars(path)).expanduser()
    if not p.exists():
        raise ConfigError("observations.obs_file", f"file not found: {p}")
    if p.suffix in (".txt", ".dat", ".lis", ".list") or p.suffix == "":
        ids = []
        for line in p.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                ids.extend(int(tok) for tok in line.replace(",", " ").split())
        return ids
    from astropy.table import Table

    table = Table.read(p)
    if "OBS_ID" not in table.colnames:
        raise ConfigError("observations.obs_file", f"{p} has no OBS_ID column")
    return [int(v) for v in table["OBS_ID"]]


def select_obs_ids(config: AnalysisConfig, datastore) -> list[int]:
    """Sorted obs ids selected by the config, as gammapy's ``Analysis.get_observations``.

    ``obs_ids`` (or ``obs_file``) picks ids (all of the data store when empty); ``obs_cone`` and
    ``obs_time`` then restrict them using the observation index table. Requested ids absent from the
    data store are kept whatever the selection (the index table cannot place them in a cone or a
    time range): their reduction fails and is reported per observation, never dropped silently.
    """
    obs = config.observations
    requested = list(obs.obs_ids) or (_read_obs_file(obs.obs_file) if obs.obs_file else [])
    table = datastore.obs_table
    if table is None:
        if obs.obs_cone.is_set or obs.obs_time.is_set:
            raise ConfigError("observations", "obs_cone/obs_time need an observation index table, "
                                              "which this data store lacks")
        ids = requested or [int(i) for i in np.unique(datastore.hdu_table["OBS_ID"])]
        return sorted(set(ids))
    if requested:
        known = set(int(i) for i in table["OBS_ID"])
        unknown = [i for i in requested if i not in known]
        table = table[np.isin(np.asarray(table["OBS_ID"]), requested)]
    else:
        unknown = []
    selections = []
    if obs.obs_cone.is_set:
        selections.append(("observations.obs_cone", obs.obs_cone.to_selection()))
    for start, stop in obs.obs_time.intervals():
        selections.append(("observations.obs_time", dict(type="time_box", time_range=[start, stop])))
    for key, selection in selections:
        try:
            table = table.select_observations(selection)
        except (KeyError, ObservationError) as exc:  # a column or header keyword the selection needs
            reason = f"lacks column {exc.args[0]!r}" if isinstance(exc, KeyError) else exc.reason
            where = getattr(datastore, "obs_table_filename", None) or "of the data store"
            raise DataStoreError(f"observation index file {where}: {reason}, needed by {key}") from None
    return sorted(set(int(i) for i in table["OBS_ID"]) | set(unknown))


def make_geom(config: AnalysisConfig):
    """Stacked counts geometry (`WcsGeom`) from ``datasets.geom``."""
    from ..maps import MapAxis, WcsGeom

    g = config.datasets.geom
    if g.wcs.skydir is None or g.wcs.skydir.lon is None:
        raise ConfigError("datasets.geom.wcs.skydir", "missing required value (map centre)")
    e = g.axes.energy
    energy_axis = MapAxis.from_energy_bounds(e.min.to_value("TeV"), e.max.to_value("TeV"), e.nbins,
                                             unit="TeV")
    sky = g.wcs.skydir
    return WcsGeom.create(
        skydir=(sky.lon.to_value("deg"), sky.lat.to_value("deg")),
        binsz=g.wcs.binsize.to_value("deg"),
        width=(g.wcs.width.width.to_value("deg"), g.wcs.width.height.to_value("deg")),
        frame=sky.frame,
        proj="CAR",
        axes=[energy_axis],
    )


def make_energy_axis_true(config: AnalysisConfig):
    """True-energy axis (`MapAxis` named ``energy_true``), or None to reuse the reconstructed one."""
    from ..maps import MapAxis

    et = config.datasets.geom.axes.energy_true
    if not et.is_set:
        return None
    return MapAxis.from_energy_bounds(et.min.to_value("TeV"), et.max.to_value("TeV"), et.nbins, unit="TeV",
                                      name="energy_true")


def make_exclusion_mask(config: AnalysisConfig, geom) -> Any:
    """Boolean exclusion map (True = usable for the FoV background fit), or None.

    ``background.exclusion`` (a gammapy mask FITS file) and the ``exclusion_regions`` (excluded)
    combine; the regions are drawn on the file's geometry, else on the stacked image geometry.
    """
    from ..maps import Map

    bkg = config.datasets.background
    mask = None
    if bkg.exclusion:
        path = Path(os.path.expandvars(bkg.exclusion)).expanduser()
        if not path.exists():
            raise ConfigError("datasets.background.exclusion", f"file not found: {path}")
        try:
            mask = Map.read(path)
        except Exception as exc:  # noqa: BLE001 - any reader error is a config problem here
            raise ConfigError("datasets.background.exclusion", f"cannot read {path}: {exc}") from None
        mask = Map.from_geom(mask.geom, data=np.asarray(mask.data, dtype=bool), dtype=bool)
    if bkg.exclusion_regions:
        target = mask.geom if mask is not None else geom.to_image()
        outside = target.region_mask(list(bkg.exclusion_regions), inside=False)
        data = outside.data if mask is None else (mask.data & outside.data)
        mask = Map.from_geom(target, data=np.asarray(data, dtype=bool), dtype=bool)
    return mask


def make_reduction_spec(config: AnalysisConfig, name: str = DATASET_NAME):
    """The `ReductionSpec` (stacked geometry, makers' settings, exclusion mask) of a config."""
    from ..reduction import ReductionSpec

    ds = config.datasets
    if ds.type != "3d":
        raise ConfigError("datasets.type", "only '3d' is supported")
    geom = make_geom(config)
    offset_max = ds.geom.selection.offset_max.to_value("deg")
    safe_params = dict(ds.safe_mask.parameters)
    safe_offset = safe_params.pop("offset_max", None)
    safe_kwargs = {k: (v.to_value("deg") * u.deg if isinstance(v, u.Quantity) else v)
                   for k, v in safe_params.items()}
    fov_method = fov_kwargs = None
    if ds.background.method == "fov_background":
        params = dict(ds.background.parameters)
        fov_method = params.pop("method", "scale")
        fov_kwargs = params
    maker_kwargs = {"selection": list(ds.map_selection)}
    return ReductionSpec(
        geom=geom,
        energy_axis_true=make_energy_axis_true(config),
        binsz_irf=ds.geom.wcs.binsize_irf.to_value("deg"),
        offset_max=safe_offset.to_value("deg") if safe_offset is not None else offset_max,
        safe_mask_methods=tuple(ds.safe_mask.methods),
        safe_mask_kwargs=safe_kwargs,
        fov_method=fov_method,
        fov_kwargs=fov_kwargs or {},
        exclusion_mask=make_exclusion_mask(config, geom),
        cutout_width=2 * offset_max,
        maker_kwargs=maker_kwargs,
        name=name,
    )
