"""Sky-map benchmark: gammapy vs ours serial (one core) vs ours on Ray with 2 workers, in one run.

    python benchmarks/bench_sky_maps.py              # seed TS map (100x100, 1-10 TeV, point kernel 0.5 deg) + excess map
    python benchmarks/bench_sky_maps.py --survey 1000  # also a 1000x1000 simulated survey-field TS map on 2 Ray workers

Times are best of ``--repeat`` runs; ratios are printed side by side (the machine is shared: compare
ratios of one run, not absolute times across runs). The Ray runs use `LocalRayBackend` below, a
minimal stand-in for the project backend (``map(fn, jobs, shared)``, ``cpus``): to be replaced by it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from astropy import units as u

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("GRD_SHARED", ROOT.parent / "shared"))
REF = SHARED / "reference"


class LocalRayBackend:
    """MINIMAL ADAPTER, TO BE REPLACED BY THE PROJECT BACKEND: ``ray.put(shared)`` once, one task per
    job, results collected with ``ray.wait`` (no ``ray.get`` in a loop); reports each task's peak RSS."""

    def __init__(self, num_cpus: int = 2):
        import ray

        if not ray.is_initialized():
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        self.ray = ray
        self.cpus = int(ray.cluster_resources().get("CPU", num_cpus))
        self.peak_rss_mb: dict = {}

        @ray.remote(num_cpus=1)
        def _task(fn, shared, job):
            import resource

            out = fn(shared, job)
            return out, os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        self._task = _task

    def map(self, fn, jobs, shared=None):
        ref = self.ray.put(shared)
        pending = {self._task.remote(fn, ref, job): i for i, job in enumerate(jobs)}
        results = [None] * len(jobs)
        waiting = list(pending)
        while waiting:
            done, waiting = self.ray.wait(waiting, num_returns=min(len(waiting), 16))
            for obj, (out, pid, rss) in zip(done, self.ray.get(done)):
                results[pending[obj]] = out
                self.peak_rss_mb[pid] = max(self.peak_rss_mb.get(pid, 0.0), rss)
        return results


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def seed(repeat: int, backend) -> dict:
    import gammapy.estimators as ge

    from gamma_ray_dist.estimators import ExcessMapEstimator, TSMapEstimator
    from tests.helpers import seed_best_fit_dataset

    ref = json.loads((REF / "crab_seed_gammapy.json").read_text())
    path = REF / "crab_stacked_gammapy.fits.gz"
    data = {}
    for lib in ("gammapy", "gamma_ray_dist"):
        ds = seed_best_fit_dataset(path, ref, library=lib)
        ds.models = [m for m in ds.models if m.name.endswith("-bkg")]
        data[lib] = ds
    kw = dict(kernel_width="0.5 deg", energy_edges=[1, 10] * u.TeV)
    t_gp, m_gp = best(lambda: ge.TSMapEstimator(**kw).run(data["gammapy"]), repeat)
    t_1, m_1 = best(lambda: TSMapEstimator(**kw).run(data["gamma_ray_dist"]), repeat)
    t_2, m_2 = best(lambda: TSMapEstimator(**kw, tile_size=25).run(data["gamma_ray_dist"], backend=backend), repeat)
    same = all(np.array_equal(m_1._data[k].data, m_2._data[k].data, equal_nan=True) for k in m_1.available_quantities)
    print(f"seed TS map 100x100: gammapy {t_gp:.3f} s | ours serial {t_1:.3f} s ({t_gp / t_1:.1f}x gammapy) | "
          f"ours Ray {backend.cpus} workers {t_2:.3f} s ({t_1 / t_2:.2f}x serial, {t_gp / t_2:.1f}x gammapy) | "
          f"Ray == serial bitwise: {same}")
    s_gp, s_1 = m_gp.sqrt_ts.data, m_1.sqrt_ts.data
    print(f"   max sqrt_ts {np.nanmax(s_gp):.3f} / {np.nanmax(s_1):.3f}, pixels > 5 sigma {int((s_gp > 5).sum())} / "
          f"{int((s_1 > 5).sum())}, max |d sqrt_ts| {np.nanmax(np.abs(s_gp - s_1)):.2e}")
    kx = dict(correlation_radius="0.1 deg")
    t_gx, _ = best(lambda: ge.ExcessMapEstimator(**kx).run(data["gammapy"]), repeat)
    t_ox, _ = best(lambda: ExcessMapEstimator(**kx).run(data["gamma_ray_dist"]), repeat)
    print(f"seed excess map: gammapy {t_gx:.3f} s | ours {t_ox:.3f} s ({t_gx / t_ox:.1f}x gammapy)")
    return {"ts_gammapy": t_gp, "ts_serial": t_1, "ts_ray": t_2}


def survey(npix: int, backend, tile_size: int) -> None:
    """A simulated survey field: npix x npix at 0.02 deg, 2 energy bins, flat background with Poisson
    counts and a few point-like excesses; TS map with a 0.3 deg point kernel on the Ray backend."""
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.estimators import TSMapEstimator
    from gamma_ray_dist.maps import MapAxis, WcsGeom

    from tests.helpers import seed_best_fit_dataset

    ref = json.loads((REF / "crab_seed_gammapy.json").read_text())
    seed_ds = seed_best_fit_dataset(REF / "crab_stacked_gammapy.fits.gz", ref)
    e_reco = MapAxis.from_energy_bounds(1, 10, 2, unit="TeV", name="energy")
    e_true = MapAxis.from_energy_bounds(0.5, 20, 4, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=(0, 0), binsz=0.02, npix=npix, frame="galactic", axes=[e_reco])
    ds = MapDataset.create(geom, energy_axis_true=e_true, name="survey")
    rng = np.random.default_rng(0)
    bkg = np.full(geom.data_shape, 0.05)
    ds.background.data = bkg
    ds.exposure.data = np.full(ds.exposure.data.shape, 1e6)  # m2 s
    if ds.mask_safe is not None:
        ds.mask_safe.data = np.ones(geom.data_shape, dtype=bool)
    lam = bkg.copy()
    for _ in range(20):
        y, x = rng.integers(20, npix - 20, 2)
        lam[:, y - 3:y + 4, x - 3:x + 4] += 0.3
    ds.counts.data = rng.poisson(lam).astype(float)
    ds.psf = seed_ds.psf
    est = TSMapEstimator(kernel_width="0.3 deg", tile_size=tile_size)
    t = time.perf_counter()
    maps = est.run(ds, backend=backend)
    dt = time.perf_counter() - t
    rss = ", ".join(f"{v:.0f}" for v in sorted(backend.peak_rss_mb.values()))
    print(f"survey TS map {npix}x{npix} ({npix * npix / 1e6:.1f} Mpix) on {backend.cpus} Ray workers: {dt:.1f} s, "
          f"{np.sum(maps.sqrt_ts.data > 5)} pixels > 5 sigma; peak RSS per worker process (MB): {rss}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--survey", type=int, default=0, help="side (pixels) of a simulated survey TS map; 0 = skip")
    p.add_argument("--tile-size", type=int, default=64)
    p.add_argument("--skip-seed", action="store_true")
    args = p.parse_args()
    backend = LocalRayBackend(args.workers)
    if not args.skip_seed:
        seed(args.repeat, backend)
    if args.survey:
        survey(args.survey, backend, args.tile_size)


if __name__ == "__main__":
    main()
