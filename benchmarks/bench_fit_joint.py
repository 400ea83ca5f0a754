"""Fit benchmark, gammapy 2.1 vs gamma_ray_dist side by side, wall and CPU time, on DR1:

- joint fit of the 21 PKS 2155-304 runs (one `MapDataset` per run, a free FoV background norm each, point
  source + log-parabola: 26 free parameters; the set-up of ``tests/test_fit_joint.py``);
- MSH 15-52: Gaussian + power law on the 4-run stacked dataset (``tests/test_fit_targets.py``);
- the seed fit: Crab point source + power law on the stacked reference dataset (``benchmarks/bench_fit.py``).

Both libraries fit the same files: the datasets are reduced once with gammapy's makers and written to
``--work-dir`` (reused when present). Each fit starts from fresh datasets and models; times are the best
of ``--repeat`` (gammapy's 21-run fit: ``--repeat-joint``, it takes minutes). The machine is usually
shared: CPU time (``time.process_time``, this process only) is more robust than wall time under load, and
the load average is printed with each line.

Usage::

    python benchmarks/bench_fit_joint.py [--repeat 3] [--repeat-joint 1] [--only joint msh seed]
                                         [--work-dir /tmp/grd-bench-fit] [--json PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
HESS_DR1 = SHARED / "data" / "hess-dl3-dr1"
SEED_DATASET = SHARED / "reference" / "crab_stacked_gammapy.fits.gz"
DNDE = u.Unit("cm-2 s-1 TeV-1")
OFFSET_MAX = 2.5 * u.deg
PKS_RUNS = list(range(33787, 33802)) + [47802, 47803, 47804, 47827, 47828, 47829]
PKS = dict(center=(329.71694, -30.2255), binsz=0.02, width=2.0, energy=(0.7, 10.0, 6), exclusion=0.3)
MSH = dict(center=(228.53, -59.16), obs_ids=[20136, 20137, 20282, 20283], binsz=0.04, width=3.0,
           energy=(1.0, 10.0, 4), exclusion=0.5)


def _gammapy_runs(target: dict, obs_ids: list[int]) -> tuple:
    """The seed's reduction loop (gammapy), one dataset per run, named ``obs-<id>``; also the empty
    dataset on the target geometry."""
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis, WcsGeom

    observations = DataStore.from_dir(HESS_DR1).get_observations(obs_ids)
    e_min, e_max, nbin = target["energy"]
    geom = WcsGeom.create(skydir=target["center"], binsz=target["binsz"], width=target["width"], frame="icrs",
                          axes=[MapAxis.from_energy_bounds(e_min, e_max, nbin, unit="TeV")])
    empty = MapDataset.create(geom=geom, name="empty",
                              energy_axis_true=MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true"))
    circle = CircleSkyRegion(center=SkyCoord(*target["center"], unit="deg"), radius=target["exclusion"] * u.deg)
    maker, safe = MapDatasetMaker(), SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=OFFSET_MAX)
    fov = FoVBackgroundMaker(method="fit", exclusion_mask=~geom.region_mask(regions=[circle]))
    runs = []
    for obs in observations:
        cutout = empty.cutout(obs.get_pointing_icrs(obs.tmid), width=2 * OFFSET_MAX, name=f"obs-{obs.obs_id}")
        runs.append(fov.run(safe.run(maker.run(cutout, obs), obs)))
    return empty, runs


def prepare(work_dir: Path) -> dict:
    """Write the gammapy-reduced datasets once; returns the paths per benchmark."""
    work_dir.mkdir(parents=True, exist_ok=True)
    pks_paths = [work_dir / f"pks-obs-{i}.fits.gz" for i in PKS_RUNS]
    msh_path = work_dir / "msh1552-stacked.fits.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not all(p.exists() for p in pks_paths):
            for ds, path in zip(_gammapy_runs(PKS, PKS_RUNS)[1], pks_paths):
                ds.write(path, overwrite=True)
        if not msh_path.exists():
            empty, runs = _gammapy_runs(MSH, MSH["obs_ids"])
            stacked = empty.copy(name="msh1552-stacked")
            for ds in runs:
                stacked.stack(ds)
            stacked.write(msh_path, overwrite=True)
    return {"joint": pks_paths, "msh": [msh_path], "seed": [SEED_DATASET]}


def _lib(name: str) -> dict:
    if name == "gammapy":
        from gammapy.datasets import Datasets, MapDataset
        from gammapy.modeling import Fit
        from gammapy.modeling import models
    else:
        from gamma_ray_dist.datasets import Datasets, MapDataset
        from gamma_ray_dist.modeling import Fit
        from gamma_ray_dist.modeling import models
    return dict(Datasets=Datasets, MapDataset=MapDataset, Fit=Fit, models=models)


def _source(models, case: str):
    if case == "joint":
        spectral = models.LogParabolaSpectralModel(alpha=3.2, beta=0.2, amplitude=2e-11 * DNDE, reference=1 * u.TeV)
        spatial = models.PointSpatialModel(lon_0=329.72 * u.deg, lat_0=-30.22 * u.deg, frame="icrs")
    elif case == "msh":
        spectral = models.PowerLawSpectralModel(index=2.3, amplitude=5e-12 * DNDE, reference=1 * u.TeV)
        spatial = models.GaussianSpatialModel(lon_0=228.53 * u.deg, lat_0=-59.16 * u.deg, sigma=0.1 * u.deg,
                                              frame="icrs")
    else:  # the seed
        spectral = models.PowerLawSpectralModel(index=2.702, amplitude=4.712e-11 * DNDE, reference=1 * u.TeV)
        spatial = models.PointSpatialModel(lon_0=83.63308 * u.deg, lat_0=22.0145 * u.deg, frame="icrs")
    if case != "seed":  # position bounds as the parity tests
        for par in (spatial.lon_0, spatial.lat_0):
            par.min, par.max = par.value - 0.5, par.value + 0.5
    return models.SkyModel(spectral, spatial, name=case)


def fit_once(name: str, case: str, paths: list) -> dict:
    lib = _lib(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = lib["Datasets"]([lib["MapDataset"].read(p) for p in paths])
        datasets.models = [_source(lib["models"], case)] + [lib["models"].FoVBackgroundModel(dataset_name=n)
                                                             for n in datasets.names]
        t0, c0 = time.perf_counter(), time.process_time()
        result = lib["Fit"]().run(datasets)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"wall": wall, "cpu": cpu, "nfev": int(result.nfev), "stat": float(result.total_stat),
            "success": bool(result.success), "load": os.getloadavg()[0],
            "n_free": len(datasets.models.parameters.free_parameters)}


def bench(case: str, paths: list, repeat: int, repeat_gammapy: int) -> dict:
    rows = {"gammapy": [], "ours": []}
    for i in range(max(repeat, repeat_gammapy)):  # interleaved: the load changes within seconds
        if i < repeat_gammapy:
            rows["gammapy"].append(fit_once("gammapy", case, paths))
        if i < repeat:
            rows["ours"].append(fit_once("ours", case, paths))
    return {name: min(r, key=lambda row: row["cpu"]) for name, r in rows.items()}


LABELS = {"joint": "PKS 2155-304, 21 runs joint", "msh": "MSH 15-52 Gaussian (stacked)",
          "seed": "Crab seed point source"}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--repeat-joint", type=int, default=1, help="gammapy runs of the 21-run joint fit")
    parser.add_argument("--only", nargs="+", choices=list(LABELS), default=list(LABELS))
    parser.add_argument("--work-dir", default="/tmp/grd-bench-fit")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args(argv)

    paths = prepare(Path(args.work_dir))
    print(f"load average at start: {os.getloadavg()}  (2 CPUs; best of {args.repeat} by CPU time, gammapy's "
          f"joint fit {args.repeat_joint}x)")
    header = (f"{'fit':30s} {'free':>4s} {'gp wall':>8s} {'gp CPU':>8s} {'our wall':>8s} {'our CPU':>8s} "
              f"{'wall x':>7s} {'CPU x':>7s} {'nfev g/o':>10s} {'d stat':>9s} {'load':>5s}")
    print(header)
    report = {}
    for case in args.only:
        repeat_gp = args.repeat_joint if case == "joint" else args.repeat
        res = bench(case, paths[case], args.repeat, repeat_gp)
        g, o = res["gammapy"], res["ours"]
        report[case] = res
        print(f"{LABELS[case]:30s} {o['n_free']:4d} {g['wall']:8.2f} {g['cpu']:8.2f} {o['wall']:8.2f} {o['cpu']:8.2f} "
              f"{g['wall'] / o['wall']:6.1f}x {g['cpu'] / o['cpu']:6.1f}x {g['nfev']:4d}/{o['nfev']:<5d} "
              f"{o['stat'] - g['stat']:+9.3f} {o['load']:5.1f}", flush=True)
        if not (g["success"] and o["success"]):
            print(f"  fit failed: gammapy {g['success']}, ours {o['success']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
