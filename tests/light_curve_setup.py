"""PKS 2155-304 light-curve inputs, built the same way with gammapy 2.1 and with gamma_ray_dist.

Shared by tests/test_light_curve.py and benchmarks/bench_light_curve.py. The 21 PKS 2155-304 runs of
H.E.S.S. DL3 DR1: the July 2006 flare night 33787-33801 (28 min each; 33802-33807 are not in DR1) and
the six runs of 2008, 47802-47804 and 47827-47829; one `MapDataset` per run (the per-run loop of
gammapy's 3D light-curve tutorial): a 2 x 2 deg CAR geometry around the source, reconstructed energy
0.7-10 TeV, MapDatasetMaker, SafeMaskMaker offset-max 2.5 deg + aeff-max, FoVBackgroundMaker "fit" with
0.3 deg around the source excluded (as tests/test_fit_targets.py). The source model is a point source
with a log-parabola at fixed parameters (a light curve only fits the norm), shared by all runs; each run
has its own FoV background model (norm from the maker, frozen by the estimator).
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

PKS_CENTER = (329.71694, -30.2255)  # map centre
# the model position of tests/test_fit_targets.py: the map centre is a corner of the 0.2 deg IRF-map
# pixels of a 2 deg map, where "nearest IRF pixel" is a tie decided by rounding noise
SOURCE_POSITION = (329.72, -30.22)
PKS_RUNS = list(range(33787, 33802)) + [47802, 47803, 47804, 47827, 47828, 47829]  # all 21 DR1 runs
OFFSET_MAX = 2.5 * u.deg
DNDE = u.Unit("cm-2 s-1 TeV-1")
# a log-parabola close to the stacked fit of these runs (the estimator fits only its norm per bin)
SPECTRUM = dict(alpha=3.3, beta=0.1, amplitude=1.5e-10 * DNDE, reference=1 * u.TeV)


def lib(name: str) -> SimpleNamespace:
    """The names the per-run loop needs, from gammapy or from us (same API)."""
    if name == "gammapy":
        from gammapy import data, datasets, estimators, makers, maps
        from gammapy.modeling import models
    else:
        from gamma_ray_dist import data, datasets, estimators, makers, maps
        from gamma_ray_dist.modeling import models
    return SimpleNamespace(name=name, DataStore=data.DataStore, MapDataset=datasets.MapDataset,
                           Datasets=datasets.Datasets, MapAxis=maps.MapAxis, WcsGeom=maps.WcsGeom,
                           MapDatasetMaker=makers.MapDatasetMaker, SafeMaskMaker=makers.SafeMaskMaker,
                           FoVBackgroundMaker=makers.FoVBackgroundMaker, models=models,
                           LightCurveEstimator=estimators.LightCurveEstimator)


def per_run_datasets(L: SimpleNamespace, store_dir, obs_ids, binsz: float = 0.02, width: float = 2.0,
                     nbin: int = 6):
    """One reduced `MapDataset` per run (named by obs id), with the shared source model set."""
    store = L.DataStore.from_dir(store_dir)
    observations = store.get_observations(list(obs_ids))
    energy_axis = L.MapAxis.from_energy_bounds(0.7, 10, nbin, unit="TeV")
    energy_axis_true = L.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = L.WcsGeom.create(skydir=PKS_CENTER, binsz=binsz, width=width, frame="icrs", proj="CAR",
                            axes=[energy_axis])
    circle = CircleSkyRegion(center=SkyCoord(*PKS_CENTER, unit="deg"), radius=0.3 * u.deg)
    maker = L.MapDatasetMaker()
    maker_safe = L.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=OFFSET_MAX)
    maker_fov = L.FoVBackgroundMaker(method="fit", exclusion_mask=~geom.region_mask(regions=[circle]))
    empty = L.MapDataset.create(geom=geom, energy_axis_true=energy_axis_true, name="empty")
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gammapy: IRF-range / FITS header warnings
        for obs in observations:
            dataset = maker.run(empty.copy(name=str(obs.obs_id)), obs)
            out.append(maker_fov.run(maker_safe.run(dataset, obs), obs))
    datasets = L.Datasets(out)
    set_models(L, datasets)
    return datasets


def set_models(L: SimpleNamespace, datasets) -> None:
    """The shared point source + log-parabola, and each dataset's own (fitted) FoV background model."""
    spectral = L.models.LogParabolaSpectralModel(**SPECTRUM)
    spatial = L.models.PointSpatialModel(lon_0=SOURCE_POSITION[0] * u.deg, lat_0=SOURCE_POSITION[1] * u.deg,
                                         frame="icrs")
    source = L.models.SkyModel(spectral, spatial, name="pks2155")
    models = [source]
    for d in datasets:
        bkg = d.background_model if getattr(d, "background_model", None) is not None else None
        norm = float(bkg.spectral_model.norm.value) if bkg is not None else 1.0
        fov = L.models.FoVBackgroundModel(dataset_name=d.name)
        fov.spectral_model.norm.value = norm
        models.append(fov)
    datasets.models = models


def run_intervals(datasets) -> list:
    """One (start, stop) `~astropy.time.Time` interval per dataset: its first GTI start, last GTI stop."""
    return [(d.gti.time_start[0], d.gti.time_stop[-1]) for d in datasets]


def as_arrays(fp) -> dict:
    """flux / flux_err / flux_errn / flux_errp / flux_ul (cm-2 s-1), ts, sqrt_ts, norm as flat float arrays
    (gammapy's light curve or ours); quantities a light curve lacks are left out."""
    out = {}
    for key in ("norm", "flux", "flux_err", "flux_errn", "flux_errp", "flux_ul", "ts", "sqrt_ts"):
        try:
            x = getattr(fp, key)
        except (AttributeError, ValueError):
            continue
        if x is None:
            continue
        x = getattr(x, "quantity", x)
        if isinstance(x, u.Quantity):
            x = x.to_value("cm-2 s-1") if key.startswith("flux") else x.to_value("")
        out[key] = np.ravel(np.asarray(x, dtype=float))
    return out
