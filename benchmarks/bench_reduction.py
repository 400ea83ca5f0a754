"""Seed reduction per observation: gammapy 2.1 vs gamma_ray_dist, side by side in one process.

    python benchmarks/bench_reduction.py [--obs-ids 23523 23526 ...] [--targets crab pks2155]
                                         [--repeat 5] [--profile] [--no-gammapy]

Both sides run the seed loop body (cutout around the pointing, MapDatasetMaker, SafeMaskMaker
offset-max + aeff-max, FoVBackgroundMaker fit with the seed exclusion) on the seed geometry
re-centred on each target, one core, best of ``--repeat`` runs per observation. Three modes:

- ``cold``: a fresh observation object per run *and* our decompressed-file cache cleared, so the
  time includes reading the observation's file (gunzip + parsing EVENTS, GTI and the four IRFs);
  gammapy always reads its files when a fresh observation is used (no cache), so ``cold`` is the
  like-for-like "including reading" comparison. The OS page cache is warm on both sides.
- ``warm``: fresh observation objects, our decompressed bytes cached (parsing included, no gunzip).
- ``hot``: the same observation objects for every run: ours has everything parsed already; gammapy
  keeps its IRFs (cached by its observation) but re-reads EVENTS and GTI at each run.

The modes are interleaved inside each repeat, so machine load affects both sides alike; the load
average is printed. ``--profile`` prints our per-stage times (``PartialDataset.timings``) and a
cProfile of our cold runs.
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
MODES = ("cold", "warm", "hot")


def _setup(mod_maps, center):
    e = mod_maps.MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = mod_maps.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = mod_maps.WcsGeom.create(skydir=center, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(*center, unit="deg"), 0.2 * u.deg)])
    return geom, et, excl


class GammapySide:
    name = "gammapy"

    def __init__(self, center, obs_ids):
        from gammapy import data, datasets, makers, maps

        geom, et, excl = _setup(maps, center)
        self.stacked = datasets.MapDataset.create(geom, energy_axis_true=et, name="stacked")
        self.store = data.DataStore.from_dir(DATA)
        self.obs_ids = obs_ids
        self.kept = {i: self.store.obs(i) for i in obs_ids}
        self.mk = makers.MapDatasetMaker()
        self.safe = makers.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg)
        self.fov = makers.FoVBackgroundMaker(method="fit", exclusion_mask=excl)

    def observation(self, obs_id, mode):
        return self.kept[obs_id] if mode == "hot" else self.store.obs(obs_id)  # no file cache: reads

    def run(self, obs):
        cut = self.stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=5 * u.deg, name=f"obs-{obs.obs_id}")
        d = self.fov.run(self.safe.run(self.mk.run(cut, obs), obs))
        return float(d.models[0].spectral_model.norm.value), None


class OursSide:
    name = "ours"

    def __init__(self, center, obs_ids):
        from gamma_ray_dist import maps
        from gamma_ray_dist.data import DataStore
        from gamma_ray_dist.data.fits_io import default_file_cache
        from gamma_ray_dist.reduction import ReductionSpec, reduce_observation

        geom, et, excl = _setup(maps, center)
        self.spec = ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl)
        self.store = DataStore.from_dir(DATA)
        self.kept = {i: self.store.obs(i) for i in obs_ids}
        self.cache = default_file_cache()
        self.reduce = reduce_observation

    def observation(self, obs_id, mode):
        if mode == "hot":
            return self.kept[obs_id]
        if mode == "cold":
            self.cache.clear()
        return self.store.obs(obs_id)

    def run(self, obs):
        partial = self.reduce(obs, self.spec)
        return float(partial.fov_norm), partial.timings


def measure(sides, obs_ids, repeat):
    """{(side, mode): array (repeat, n_obs) of seconds}, norms and our stage timings (cold)."""
    times = {(s.name, m): np.full((repeat, len(obs_ids)), np.inf) for s in sides for m in MODES}
    norms, stages = {}, []
    for side in sides:  # first reads (imports, caches, page cache) are not timed
        for obs_id in obs_ids:
            side.run(side.observation(obs_id, "cold"))
    for r in range(repeat):
        for mode in MODES:
            for side in sides:
                for j, obs_id in enumerate(obs_ids):
                    obs = side.observation(obs_id, mode)
                    t0 = time.perf_counter()
                    norm, timings = side.run(obs)
                    times[(side.name, mode)][r, j] = time.perf_counter() - t0
                    norms[(side.name, obs_id)] = norm
                    if timings is not None and mode == "cold":
                        stages.append(timings)
    return times, norms, stages


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obs-ids", type=int, nargs="*", help="observation ids (seed geometry centred on --targets[0])")
    parser.add_argument("--targets", nargs="*", default=["crab"], choices=sorted(TARGETS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="our stage times and a cProfile of our cold runs")
    parser.add_argument("--no-gammapy", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    load_before = os.getloadavg()
    jobs = []
    for name in args.targets:
        center, ids = TARGETS[name]
        jobs.append((name, center, args.obs_ids or ids))
        if args.obs_ids:
            break
    rows, all_stages = [], []
    for name, center, ids in jobs:
        sides = [OursSide(center, ids)]
        if not args.no_gammapy:
            sides.append(GammapySide(center, ids))
        times, norms, stages = measure(sides, ids, args.repeat)
        all_stages += stages
        for j, obs_id in enumerate(ids):
            best = {key: float(t[:, j].min()) for key, t in times.items()}
            rows.append((name, obs_id, best, norms.get(("gammapy", obs_id), np.nan), norms[("ours", obs_id)]))
        if args.profile:
            ours = sides[0]
            prof = cProfile.Profile()
            for obs_id in ids:
                obs = ours.observation(obs_id, "cold")
                prof.enable()
                ours.run(obs)
                prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("cumulative").print_stats(35)
            print(out.getvalue())
    load_after = os.getloadavg()

    def ms(best, side, mode):
        return 1e3 * best.get((side, mode), np.nan)

    print(f"{'target':8} {'obs_id':>7} | {'ours ms: cold':>13} {'warm':>6} {'hot':>6} | "
          f"{'gammapy ms: cold':>16} {'hot':>6} | {'ratio cold':>10} {'hot':>5} | {'norm gp':>7} {'ours':>7}")
    for name, obs_id, best, ng, no in rows:
        oc, ow, oh = (ms(best, "ours", m) for m in MODES)
        gc, gh = ms(best, "gammapy", "cold"), ms(best, "gammapy", "hot")
        print(f"{name:8} {obs_id:7d} | {oc:13.1f} {ow:6.1f} {oh:6.1f} | {gc:16.1f} {gh:6.1f} | "
              f"{gc / oc:10.1f} {gh / oh:5.1f} | {ng:7.4f} {no:7.4f}")
    mean = {key: np.mean([1e3 * r[2].get(key, np.nan) for r in rows]) for key in rows[0][2]}
    oc, ow, oh = (mean.get(("ours", m), np.nan) for m in MODES)
    gc, gh = mean.get(("gammapy", "cold"), np.nan), mean.get(("gammapy", "hot"), np.nan)
    print(f"mean per observation (best of {args.repeat}): ours cold {oc:.1f} ms, warm {ow:.1f} ms, hot {oh:.1f} ms; "
          f"gammapy cold {gc:.1f} ms, hot {gh:.1f} ms; ratio cold {gc / oc:.1f}x, hot {gh / oh:.1f}x")
    print(f"load average (1, 5, 15 min): before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}; {os.cpu_count()} cores")
    if args.profile and all_stages:
        keys = list(all_stages[0])
        med = {k: 1e3 * float(np.median([s.get(k, np.nan) for s in all_stages])) for k in keys}
        best = {k: 1e3 * float(np.min([s.get(k, np.nan) for s in all_stages])) for k in keys}
        print("our stages, cold runs (median / min ms): "
              + ", ".join(f"{k} {med[k]:.1f}/{best[k]:.1f}" for k in keys))


if __name__ == "__main__":
    main()
