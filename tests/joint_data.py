"""Per-observation datasets for joint-fit tests and benchmarks: simulated DL3 runs, reduced one by one.

Each observation of a store written by `gamma_ray_dist.simulate` is reduced on the seed geometry
(0.02 deg pixels, 2 x 2 deg around the Crab, 1-10 TeV in 4 bins, 0.5-20 TeV true energy in 10 bins,
FoV background norm fitted) with our fast path (`reduce_observation`), turned into its own `MapDataset`
(``obs-<id>``) and written with `MapDataset.write`, next to a datasets index YAML in gammapy's
``Datasets.write`` layout (``datasets: [{name, type: MapDataset, filename}]``).
"""
from __future__ import annotations

from pathlib import Path

from astropy import units as u
from astropy.coordinates import SkyCoord

CRAB = (83.633, 22.014)


def seed_spec():
    """The seed's reduction settings (as tests/test_reduction.py ``_seed_spec``)."""
    from regions import CircleSkyRegion

    from gamma_ray_dist.maps import MapAxis, WcsGeom
    from gamma_ray_dist.reduction import ReductionSpec

    e = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=CRAB, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)])
    return ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl)


def _write_chunk(shared: tuple, obs_ids: list) -> list[dict]:
    """Reduce ``obs_ids`` of the store ``shared[0]`` to one dataset file each in ``shared[1]``."""
    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.datasets.accumulator import StackAccumulator
    from gamma_ray_dist.reduction import prepare, reduce_observation

    store, directory, suffix = shared
    data_store = DataStore.from_dir(store)
    spec = seed_spec()
    geometry = prepare(spec).geometry
    entries = []
    for obs_id in obs_ids:
        name = f"obs-{obs_id}"
        acc = StackAccumulator(geometry, name)
        acc.add(reduce_observation(data_store.obs(obs_id), spec))
        filename = f"{name}{suffix}"
        acc.to_dataset(name).write(Path(directory) / filename, overwrite=True)
        entries.append({"name": name, "type": "MapDataset", "filename": filename})
    return entries


def write_observation_datasets(directory: str | Path, n_obs: int, seed: int = 0, livetime: float = 1800.0,
                               backend=None, suffix: str = ".fits.gz", chunk: int = 50) -> Path:
    """Simulate ``n_obs`` runs, reduce each to its own dataset file; returns the index YAML path.

    Re-uses ``directory/datasets.yaml`` when it already lists ``n_obs`` existing files. With a
    ``backend``, chunks of ``chunk`` observations are written in parallel (`backend.map`).
    """
    import yaml

    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.simulate import simulate_datastore

    directory = Path(directory)
    index = directory / "datasets.yaml"
    if index.exists():
        entries = yaml.safe_load(index.read_text())["datasets"]
        if len(entries) == n_obs and all((directory / e["filename"]).exists() for e in entries):
            return index
    store = directory / "store"
    if not (store / "obs-index.fits.gz").exists() or len(DataStore.from_dir(store).obs_ids) != n_obs:
        simulate_datastore(store, n_obs=n_obs, seed=seed, livetime=livetime)
    obs_ids = sorted(int(o) for o in DataStore.from_dir(store).obs_ids)
    jobs = [obs_ids[i:i + chunk] for i in range(0, len(obs_ids), chunk)]
    shared = (str(store), str(directory), suffix)
    results = backend.map(_write_chunk, jobs, shared) if backend is not None else [_write_chunk(shared, j) for j in jobs]
    entries = [e for part in results for e in part]
    index.write_text(yaml.safe_dump({"datasets": entries}, sort_keys=False))
    return index


def joint_models(names, crab=(2.6, 3.8e-11), bkg_frozen: bool = False, tilt_free: bool = False):
    """A point source + power law shared by all datasets, one FoV background model per dataset."""
    from gamma_ray_dist.modeling.models import (FoVBackgroundModel, Models, PointSpatialModel,
                                                PowerLawSpectralModel, SkyModel)

    spectral = PowerLawSpectralModel(index=crab[0], amplitude=crab[1] * u.Unit("cm-2 s-1 TeV-1"),
                                     reference=1 * u.TeV)
    spatial = PointSpatialModel(lon_0=(CRAB[0] + 0.01) * u.deg, lat_0=(CRAB[1] - 0.01) * u.deg, frame="icrs")
    models = [SkyModel(spectral, spatial, name="crab")]
    for name in names:
        bkg = FoVBackgroundModel(dataset_name=name)
        bkg.spectral_model.norm.frozen = bkg_frozen
        bkg.spectral_model.tilt.frozen = not tilt_free
        models.append(bkg)
    return Models(models)
