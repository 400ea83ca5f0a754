"""Seed reduction per observation: gammapy 2.1 vs gamma_ray_dist, side by side in one process.

    python benchmarks/bench_reduction.py [--obs-ids 23523 23526 ...] [--targets crab pks2155]
                                         [--repeat 3] [--profile]

Both sides run the seed loop body (cutout around the pointing, MapDatasetMaker, SafeMaskMaker
offset-max + aeff-max, FoVBackgroundMaker fit with the seed exclusion) on the seed geometry
re-centred on each target. Files are read once before timing (both sides cache decompressed
files); times are per observation, best of ``--repeat`` runs, one core.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
import warnings
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

DATA = Path(os.environ.get("GRD_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data" / "hess-dl3-dr1"
TARGETS = {  # centre, obs ids
    "crab": ((83.633, 22.014), [23523, 23526, 23559, 23592]),
    "pks2155": ((329.71667, -30.2256), [33787, 33788, 33789, 33790]),
    "msh1552": ((228.53, -59.16), [20136, 20137, 20151, 20282]),
}


def _setup(mod_maps, center):
    e = mod_maps.MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = mod_maps.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = mod_maps.WcsGeom.create(skydir=center, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(*center, unit="deg"), 0.2 * u.deg)])
    return geom, et, excl


def gammapy_runner(center, obs_ids):
    from gammapy import data, datasets, makers, maps

    geom, et, excl = _setup(maps, center)
    stacked = datasets.MapDataset.create(geom, energy_axis_true=et, name="stacked")
    store = data.DataStore.from_dir(DATA)
    observations = [store.obs(i) for i in obs_ids]
    mk = makers.MapDatasetMaker()
    safe = makers.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg)
    fov = makers.FoVBackgroundMaker(method="fit", exclusion_mask=excl)

    def run(obs):
        cut = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=5 * u.deg, name=f"obs-{obs.obs_id}")
        d = fov.run(safe.run(mk.run(cut, obs), obs))
        return float(d.models[0].spectral_model.norm.value)

    return observations, run


def ours_runner(center, obs_ids):
    from gamma_ray_dist import maps
    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.reduction import ReductionSpec, reduce_observation

    geom, et, excl = _setup(maps, center)
    spec = ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl)
    store = DataStore.from_dir(DATA)

    def run(obs):
        return float(reduce_observation(obs, spec).fov_norm)

    return [store.obs(i) for i in obs_ids], run


def best_time(run, observations, repeat):
    """Best-of-``repeat`` seconds per observation for each observation, and the norms."""
    times = np.full((repeat, len(observations)), np.inf)
    norms = []
    for r in range(repeat):
        norms = []
        for j, obs in enumerate(observations):
            t0 = time.perf_counter()
            norms.append(run(obs))
            times[r, j] = time.perf_counter() - t0
    return times.min(axis=0), norms


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obs-ids", type=int, nargs="*", help="observation ids (seed geometry centred on --targets[0])")
    parser.add_argument("--targets", nargs="*", default=["crab"], choices=sorted(TARGETS))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile of our reduction")
    parser.add_argument("--no-gammapy", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    jobs = []
    for name in args.targets:
        center, ids = TARGETS[name]
        jobs.append((name, center, args.obs_ids or ids))
        if args.obs_ids:
            break
    rows = []
    for name, center, ids in jobs:
        obs_o, run_o = ours_runner(center, ids)
        for obs in obs_o:  # warm the file caches (reading is timed by neither side's loop below)
            run_o(obs)
        t_o, n_o = best_time(run_o, obs_o, args.repeat)
        t_g, n_g = (np.full(len(ids), np.nan), [np.nan] * len(ids))
        if not args.no_gammapy:
            obs_g, run_g = gammapy_runner(center, ids)
            for obs in obs_g:
                run_g(obs)
            t_g, n_g = best_time(run_g, obs_g, args.repeat)
        for i, obs_id in enumerate(ids):
            rows.append((name, obs_id, t_g[i], t_o[i], n_g[i], n_o[i]))
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            for obs in obs_o:
                run_o(obs)
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(30)
            print(out.getvalue())
    print(f"{'target':8} {'obs_id':>7} {'gammapy s':>10} {'ours s':>9} {'ratio':>7} {'norm gp':>8} {'norm ours':>9}")
    for name, obs_id, tg, to, ng, no in rows:
        print(f"{name:8} {obs_id:7d} {tg:10.4f} {to:9.4f} {tg / to:7.1f} {ng:8.4f} {no:9.4f}")
    tg = np.array([r[2] for r in rows])
    to = np.array([r[3] for r in rows])
    print(f"mean per observation: gammapy {np.mean(tg):.4f} s, ours {np.mean(to):.4f} s, "
          f"ratio {np.mean(tg) / np.mean(to):.1f}x")


if __name__ == "__main__":
    main()
