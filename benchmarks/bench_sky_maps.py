"""Sky-map benchmark: gammapy vs ours serial (one core) vs ours on Ray with 2 workers, in one run.

    python benchmarks/bench_sky_maps.py              # seed TS map (100x100, 1-10 TeV, point kernel 0.5 deg) + excess map
    python benchmarks/bench_sky_maps.py --survey 200 400  # also simulated survey-field TS maps (serial / Ray / processes)
    python benchmarks/bench_sky_maps.py --optional   # also the seed TS map with selection_optional="all"

Times are best of ``--repeat`` runs; ratios are printed side by side (the machine is shared: compare
ratios of one run, not absolute times across runs). The Ray runs use the project backend
(`gamma_ray_dist.distributed.RayBackend`, started before timing); "2 processes" is the ceiling of the
same tiles on plain worker processes, without Ray.
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


class ProcessBackend:
    """The parallel ceiling without Ray: the same tiles on a pool of plain processes started beforehand
    (``shared`` pickled with every job, as a fork-started pool would inherit it for free)."""

    def __init__(self, workers: int):
        from concurrent.futures import ProcessPoolExecutor

        self.cpus = workers
        self.pool = ProcessPoolExecutor(workers)
        list(self.pool.map(abs, range(workers)))  # start the workers

    def map(self, fn, jobs, shared=None):
        return [f.result() for f in [self.pool.submit(fn, shared, job) for job in jobs]]


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def best_interleaved(fns: dict, repeat: int, cpu: dict | None = None) -> dict:
    """``{name: (best time, last output)}``, the functions run in turn ``repeat`` times: on a shared
    machine the load changes within seconds, and alternating keeps the comparison fair. ``cpu``, when
    given, receives every function's least CPU time of this process (the in-process runs' cost)."""
    times = {name: [] for name in fns}
    cpus = {name: [] for name in fns}
    outs = {}
    for _ in range(repeat):
        for name, fn in fns.items():
            t, c = time.perf_counter(), time.process_time()
            outs[name] = fn()
            times[name].append(time.perf_counter() - t)
            cpus[name].append(time.process_time() - c)
    if cpu is not None:
        cpu.update({name: min(v) for name, v in cpus.items()})
    return {name: (min(times[name]), outs[name]) for name in fns}


def load() -> str:
    return "load average {:.1f} on {} CPUs".format(os.getloadavg()[0], os.cpu_count())


def seed(repeat: int, backend, procs, optional: bool = False) -> dict:
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
    ours = data["gamma_ray_dist"]
    cpu: dict = {}
    res = best_interleaved({"gammapy": lambda: ge.TSMapEstimator(**kw).run(data["gammapy"]),
                            "serial": lambda: TSMapEstimator(**kw).run(ours),
                            "ray": lambda: TSMapEstimator(**kw).run(ours, backend=backend),
                            "processes": lambda: TSMapEstimator(**kw).run(ours, backend=procs)}, repeat, cpu)
    (t_gp, m_gp), (t_1, m_1), (t_2, m_2), (t_p, m_p) = (res[k] for k in ("gammapy", "serial", "ray", "processes"))
    same = all(np.array_equal(m_1._data[k].data, m_2._data[k].data, equal_nan=True) and
               np.array_equal(m_1._data[k].data, m_p._data[k].data, equal_nan=True) for k in m_1.available_quantities)
    print(f"seed TS map 100x100: gammapy {t_gp:.3f} s | ours serial {t_1:.3f} s ({t_gp / t_1:.1f}x gammapy) | "
          f"ours Ray {backend.cpus} workers {t_2:.3f} s ({t_1 / t_2:.2f}x serial, {t_gp / t_2:.1f}x gammapy) | "
          f"{procs.cpus} processes {t_p:.3f} s ({t_1 / t_p:.2f}x serial) | Ray == processes == serial bitwise: {same} "
          f"| {load()}")
    print(f"   one core, CPU time: gammapy {cpu['gammapy']:.3f} s | ours serial {cpu['serial']:.3f} s "
          f"({cpu['gammapy'] / cpu['serial']:.1f}x gammapy)")
    s_gp, s_1 = m_gp.sqrt_ts.data, m_1.sqrt_ts.data
    print(f"   max sqrt_ts {np.nanmax(s_gp):.3f} / {np.nanmax(s_1):.3f}, pixels > 5 sigma {int((s_gp > 5).sum())} / "
          f"{int((s_1 > 5).sum())}, max |d sqrt_ts| {np.nanmax(np.abs(s_gp - s_1)):.2e}")
    if optional:
        # every optional quantity (errn-errp, ul, stat_scan, sensitivity), one run each (gammapy: ~1 min)
        ko = dict(kw, selection_optional="all")
        cpu_o: dict = {}
        res = best_interleaved({"gammapy": lambda: ge.TSMapEstimator(**ko).run(data["gammapy"]),
                                "serial": lambda: TSMapEstimator(**ko).run(ours)}, 1, cpu_o)
        (t_go, _), (t_so, _) = res["gammapy"], res["serial"]
        print(f"seed TS map, selection_optional='all': gammapy {t_go:.2f} s (CPU {cpu_o['gammapy']:.2f} s) | "
              f"ours serial {t_so:.2f} s (CPU {cpu_o['serial']:.2f} s, {cpu_o['gammapy'] / cpu_o['serial']:.1f}x "
              f"gammapy) | {load()}")
    kx = dict(correlation_radius="0.1 deg")
    t_gx, _ = best(lambda: ge.ExcessMapEstimator(**kx).run(data["gammapy"]), repeat)
    t_ox, _ = best(lambda: ExcessMapEstimator(**kx).run(data["gamma_ray_dist"]), repeat)
    print(f"seed excess map: gammapy {t_gx:.3f} s | ours {t_ox:.3f} s ({t_gx / t_ox:.1f}x gammapy)")
    return {"ts_gammapy": t_gp, "ts_serial": t_1, "ts_ray": t_2, "ts_processes": t_p}


def survey(npix: int, backend, procs, tile_size, repeat: int = 2) -> None:
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
    res = best_interleaved({"serial": lambda: est.run(ds), "ray": lambda: est.run(ds, backend=backend),
                            "processes": lambda: est.run(ds, backend=procs)}, repeat)  # the first run warms workers
    t = {name: v[0] for name, v in res.items()}
    maps = res["serial"][1]
    print(f"survey TS map {npix}x{npix}: serial {t['serial']:.2f} s | Ray {backend.cpus} workers {t['ray']:.2f} s "
          f"({t['serial'] / t['ray']:.2f}x serial) | {procs.cpus} processes {t['processes']:.2f} s "
          f"({t['serial'] / t['processes']:.2f}x serial) | {np.sum(maps.sqrt_ts.data > 5)} pixels > 5 sigma | {load()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--survey", type=int, nargs="*", default=[],
                   help="sides (pixels) of simulated survey TS maps (serial vs Ray vs processes)")
    p.add_argument("--tile-size", type=int, default=None, help="default: the estimator's choice for the backend")
    p.add_argument("--skip-seed", action="store_true")
    p.add_argument("--optional", action="store_true",
                   help="also the seed TS map with every optional quantity (selection_optional='all')")
    args = p.parse_args()
    from gamma_ray_dist.distributed import RayBackend

    procs = ProcessBackend(args.workers)
    with RayBackend(num_cpus=args.workers, progress=False) as backend:
        backend.start()
        if not args.skip_seed:
            seed(args.repeat, backend, procs, args.optional)
        for npix in args.survey:
            survey(npix, backend, procs, args.tile_size, max(2, args.repeat))
    procs.pool.shutdown()


if __name__ == "__main__":
    main()
