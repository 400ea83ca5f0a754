"""Seed reduction per observation: gammapy 2.1 vs gamma_ray_dist, side by side in one process.

    python benchmarks/bench_reduction.py [--obs-ids 23523 23526 ...] [--targets crab pks2155]
                                         [--repeat 5] [--profile] [--no-gammapy]

Three sides run the seed's data reduction on the seed geometry re-centred on each target, one core,
best of ``--repeat`` runs per observation:

- ``gammapy``: the seed's low-level loop body, as /work/shared/seed/analysis_2.rst writes it
  (``stacked.cutout``, ``MapDatasetMaker.run``, ``SafeMaskMaker.run`` offset-max + aeff-max,
  ``FoVBackgroundMaker.run`` fit with the seed exclusion, ``stacked.stack``);
- ``makers``: the same loop, the same code with the gamma_ray_dist imports (what a ported script runs);
- ``fast``: ``reduce_observation`` (the fast array path) and ``StackAccumulator.add`` of its partial
  (what the distributed run does per observation).

Two modes, interleaved inside each repeat so that machine load affects every side alike (the load
average is printed):

- ``cold``: a fresh observation object per run *and* our decompressed-file cache cleared, so the
  time includes reading the observation's file (gunzip + parsing EVENTS, GTI and the four IRFs);
  gammapy always reads its files when a fresh observation is used: the like-for-like comparison.
- ``hot``: the same observation objects for every run (ours keep everything parsed; gammapy keeps
  its IRFs but re-reads EVENTS and GTI).

``--profile`` prints a cProfile of our makers loop (cold runs).
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
MODES = ("cold", "hot")
SIDES = ("gammapy", "makers", "fast")


def _setup(mod_maps, center):
    e = mod_maps.MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = mod_maps.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = mod_maps.WcsGeom.create(skydir=center, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(*center, unit="deg"), 0.2 * u.deg)])
    return geom, et, excl


class LoopSide:
    """The seed's makers loop body, written as the seed script writes it, on gammapy or on ours."""

    def __init__(self, name, package, center, obs_ids):
        import importlib

        data, datasets, makers, maps = (importlib.import_module(f"{package}.{m}")
                                        for m in ("data", "datasets", "makers", "maps"))
        self.name = name
        geom, et, excl = _setup(maps, center)
        self.stacked = datasets.MapDataset.create(geom=geom, energy_axis_true=et, name="stacked")
        self.store = data.DataStore.from_dir(DATA)
        self.kept = {i: self.store.obs(i) for i in obs_ids}
        offset_max = 2.5 * u.deg
        self.maker = makers.MapDatasetMaker()
        self.maker_safe_mask = makers.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=offset_max)
        self.maker_fov = makers.FoVBackgroundMaker(method="fit", exclusion_mask=excl)
        self.width = 2 * offset_max
        self.cache = None
        if package == "gamma_ray_dist":
            from gamma_ray_dist.data.fits_io import default_file_cache

            self.cache = default_file_cache()

    def observation(self, obs_id, mode):
        if mode == "hot":
            return self.kept[obs_id]
        if self.cache is not None:
            self.cache.clear()
        return self.store.obs(obs_id)  # gammapy: no file cache, always reads

    def run(self, obs):
        cutout = self.stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=self.width, name=f"obs-{obs.obs_id}")
        dataset = self.maker.run(cutout, obs)
        dataset = self.maker_safe_mask.run(dataset, obs)
        dataset = self.maker_fov.run(dataset)
        self.stacked.stack(dataset)
        return float(dataset.background_model.spectral_model.norm.value)


class FastSide:
    """`reduce_observation` (fast path) and the accumulator's ``add`` of its partial."""

    name = "fast"

    def __init__(self, center, obs_ids):
        from gamma_ray_dist import maps
        from gamma_ray_dist.data import DataStore
        from gamma_ray_dist.data.fits_io import default_file_cache
        from gamma_ray_dist.datasets import StackAccumulator
        from gamma_ray_dist.reduction import ReductionSpec, prepare, reduce_observation

        geom, et, excl = _setup(maps, center)
        self.spec = ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl)
        self.accumulator = StackAccumulator(prepare(self.spec).geometry)
        self.store = DataStore.from_dir(DATA)
        self.kept = {i: self.store.obs(i) for i in obs_ids}
        self.cache = default_file_cache()
        self.reduce = reduce_observation

    def observation(self, obs_id, mode):
        if mode == "hot":
            return self.kept[obs_id]
        self.cache.clear()
        return self.store.obs(obs_id)

    def run(self, obs):
        partial = self.reduce(obs, self.spec)
        assert "read" in partial.timings  # the fast path ran
        self.accumulator.obs_ids.clear()  # the same observations are added at every repeat
        self.accumulator.add(partial)
        return float(partial.fov_norm)


def measure(sides, obs_ids, repeat):
    """{(side, mode): array (repeat, n_obs) of seconds} and the FoV norms per (side, obs_id)."""
    times = {(s.name, m): np.full((repeat, len(obs_ids)), np.inf) for s in sides for m in MODES}
    norms = {}
    for side in sides:  # first reads (imports, caches, page cache) are not timed
        for obs_id in obs_ids:
            side.run(side.observation(obs_id, "cold"))
    for r in range(repeat):
        for mode in MODES:
            for side in sides:
                for j, obs_id in enumerate(obs_ids):
                    obs = side.observation(obs_id, mode)
                    t0 = time.perf_counter()
                    norms[(side.name, obs_id)] = side.run(obs)
                    times[(side.name, mode)][r, j] = time.perf_counter() - t0
    return times, norms


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--obs-ids", type=int, nargs="*", help="observation ids (seed geometry centred on --targets[0])")
    parser.add_argument("--targets", nargs="*", default=["crab"], choices=sorted(TARGETS))
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile of our makers loop (cold runs)")
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
    rows = []
    for name, center, ids in jobs:
        sides = [LoopSide("makers", "gamma_ray_dist", center, ids), FastSide(center, ids)]
        if not args.no_gammapy:
            sides.insert(0, LoopSide("gammapy", "gammapy", center, ids))
        times, norms = measure(sides, ids, args.repeat)
        for j, obs_id in enumerate(ids):
            best = {key: 1e3 * float(t[:, j].min()) for key, t in times.items()}
            rows.append((name, obs_id, best, {s: norms.get((s, obs_id), np.nan) for s in SIDES}))
        if args.profile:
            ours = sides[-2]
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

    nan = float("nan")
    for mode in MODES:
        print(f"-- {mode}: ms per observation (best of {args.repeat}) and gammapy / ours")
        print(f"{'target':8} {'obs_id':>7} | {'gammapy':>8} {'makers':>8} {'fast':>8} | {'x makers':>8} {'x fast':>7}"
              f" | {'norm gp':>7} {'makers':>7} {'fast':>7}")
        for name, obs_id, best, norm in rows:
            g, m, f = (best.get((s, mode), nan) for s in SIDES)
            print(f"{name:8} {obs_id:7d} | {g:8.1f} {m:8.1f} {f:8.1f} | {g / m:8.1f} {g / f:7.1f}"
                  f" | {norm['gammapy']:7.4f} {norm['makers']:7.4f} {norm['fast']:7.4f}")
        g, m, f = (float(np.mean([r[2].get((s, mode), nan) for r in rows])) for s in SIDES)
        print(f"mean per observation ({mode}): gammapy {g:.1f} ms, makers loop {m:.1f} ms, fast path {f:.1f} ms; "
              f"gammapy/makers {g / m:.1f}x, gammapy/fast {g / f:.1f}x")
    print(f"load average (1, 5, 15 min): before {tuple(round(v, 2) for v in load_before)}, "
          f"after {tuple(round(v, 2) for v in load_after)}; {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
