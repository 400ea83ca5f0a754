"""Reduction throughput on H.E.S.S. DL3 DR1: ours (serial, Ray 1 / 2 workers) vs gammapy 2.1.

One stacked dataset per target (the seed's settings: 0.02 deg pixels, 1-10 TeV in 4 bins, 0.5-20 TeV
true energy, offset-max + aeff-max safe mask, FoV background fit outside a circle on the target),
observations within 2 deg of the target. Default targets: Crab, PKS 2155-304, MSH 15-52, RX J1713
(about 60 observations). Also times likelihood profiles + MINOS of the seed fit on profile workers
against the serial loop.

Usage::

    python benchmarks/bench_distributed.py                     # everything (~3-4 min on 2 cores)
    python benchmarks/bench_distributed.py --targets crab,pks2155 --max-obs 8 --skip-gammapy-parallel
    python benchmarks/bench_distributed.py --data /path/to/hess-dl3-dr1 --json results.json

Timings are wall clock of the reduction only (data store opened, observations selected beforehand).
The reduction is blocked: each Ray task folds ``--block-size`` consecutive observations into one
state, a root reducer merges the block states in block order (`gamma_ray_dist.distributed`). One
`SerialBackend` and one `RayBackend` are created at the start and used for every run; the Ray
backend is started before any timing (a cluster is long-lived). "cold" is the first run of a backend in
the process (Ray: worker processes, imports, spec caches and reducer actors start during it); "warm"
runs repeat the same reduction in the same process (warm workers, warm reducer actors from the
backend's pool), interleaved serial / 1 worker / 2 workers, ``--repeats`` times (median and best
reported). Interleaved with them, the ceiling of any 2-worker scheme on this machine: the serial
reduction split evenly over 2 plain OS processes, no scheduler, no stacking of the halves
(`TwoProcessBound`). gammapy runs in the same process after ours. The load average is printed. Ray runs its workers at
niceness 15 by default, which on a machine shared with other jobs starves them against the serial runs
(niceness 0); the benchmark starts Ray with ``RAY_worker_niceness=0`` (``--ray-niceness``) so that all
modes compete for the CPUs on equal terms.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "hess-dl3-dr1"

#: name -> (ra, dec, map width deg, exclusion radius deg)
TARGETS = {
    "crab": (83.633, 22.014, 2.0, 0.2),
    "pks2155": (329.717, -30.226, 2.0, 0.2),
    "msh1552": (228.529, -59.157, 2.0, 0.4),
    "rxj1713": (258.25, -39.75, 3.0, 0.7),
}


def target_config(data: Path, name: str):
    """AnalysisConfig of one target (the seed's settings around it)."""
    from gamma_ray_dist.config import AnalysisConfig

    ra, dec, width, excl = TARGETS[name]
    return AnalysisConfig.from_dict({
        "observations": {"datastore": str(data),
                         "obs_cone": {"frame": "icrs", "lon": f"{ra} deg", "lat": f"{dec} deg", "radius": "2 deg"}},
        "datasets": {
            "type": "3d", "stack": True,
            "geom": {"wcs": {"skydir": {"frame": "icrs", "lon": f"{ra} deg", "lat": f"{dec} deg"},
                             "binsize": "0.02 deg", "width": {"width": f"{width} deg", "height": f"{width} deg"},
                             "binsize_irf": "0.2 deg"},
                     "selection": {"offset_max": "2.5 deg"},
                     "axes": {"energy": {"min": "1 TeV", "max": "10 TeV", "nbins": 4},
                              "energy_true": {"min": "0.5 TeV", "max": "20 TeV", "nbins": 10}}},
            "safe_mask": {"methods": ["offset-max", "aeff-max"], "parameters": {"offset_max": "2.5 deg"}},
            "background": {"method": "fov_background", "parameters": {"method": "fit"},
                           "exclusion_regions": [f"icrs;circle({ra},{dec},{excl})"]},
        },
    })


# ------------------------------------------------------------------------------------------------
# ours
# ------------------------------------------------------------------------------------------------
#: driver-side phases summed over the targets of the last `ours` call (tasks running / reducer tail)
PHASES: dict[str, dict[str, float]] = {}

#: obs id -> seconds of its reduction in the last serial run (to split work evenly for the bound)
OBS_SECONDS: dict[int, float] = {}


#: observations folded by one Ray task into one state (``--block-size``, ``ray.block_size``); part of
#: the result's definition, so every mode here (and the ceiling's processes) uses the same value
BLOCK_SIZE: int | None = None  # None: automatic (`blocks.resolve_block_size`), as a user's run


def ours(cases: list, backend, max_in_flight: int | None = None, label: str = "") -> tuple[float, list]:
    """Reduce every target on ``backend`` (a started `SerialBackend` / `RayBackend`): (seconds, states)."""
    from gamma_ray_dist.pipeline.run import reduce_stacked

    overrides: dict[str, Any] = {"block_size": BLOCK_SIZE}
    if max_in_flight is not None:
        overrides["max_in_flight"] = max_in_flight
    states = []
    phases = PHASES.setdefault(label, {})
    t0 = time.perf_counter()
    for config, ids in cases:
        state, report = reduce_stacked(config, ids, backend, **overrides)
        if report.n_failed:
            print(f"  warning: {report.n_failed} failed: {[f.message for f in report.failures]}")
        for key in ("tasks", "reduce_tail", "prestart_reducers", "fetch_result"):
            phases[key] = phases.get(key, 0.0) + report.timings.get(key, 0.0)
        phases["task_cpu_sum"] = phases.get("task_cpu_sum", 0.0) + report.stage_seconds.get("task", 0.0)
        if report.backend == "serial":
            OBS_SECONDS.update({o: st.seconds for o, st in report.obs.items()})
        phases["n_tasks"] = phases.get("n_tasks", 0.0) + report.n_tasks
        phases["n_blocks"] = phases.get("n_blocks", 0.0) + report.n_blocks
        states.append(state)
    return time.perf_counter() - t0, states


# ------------------------------------------------------------------------------------------------
# what 2 cores can give: the serial reduction split over 2 plain processes, no scheduler at all
# ------------------------------------------------------------------------------------------------
def split_evenly(ids: list[int], seconds: dict[int, float], n: int = 2) -> list[list[int]]:
    """Longest-first greedy partition of ``ids`` into ``n`` parts of near-equal summed ``seconds``."""
    parts: list[list[int]] = [[] for _ in range(n)]
    load = [0.0] * n
    for obs_id in sorted(ids, key=lambda o: -seconds.get(o, 0.0)):
        k = int(np.argmin(load))
        parts[k].append(obs_id)
        load[k] += seconds.get(obs_id, 0.0)
    return [sorted(p) for p in parts]


def _bound_process(conn, data: str, parts: list[tuple[str, list[int]]], block_size: int) -> None:
    """Child of `TwoProcessBound`: reduce its part of every target serially on each request."""
    from gamma_ray_dist.distributed import SerialBackend
    from gamma_ray_dist.pipeline.run import reduce_stacked

    cases = [(target_config(Path(data), name), ids) for name, ids in parts]
    with SerialBackend(progress=False) as backend:
        while conn.recv():
            for config, ids in cases:
                reduce_stacked(config, ids, backend, block_size=block_size)
            conn.send(True)


class TwoProcessBound:
    """The serial reduction split over 2 OS processes (no Ray, halves not stacked), timed on demand.

    Each target's observations are split into two parts of near-equal serial time (`split_evenly`
    on the per-observation times of a serial run); each process reduces its parts of all the
    targets one after the other (no barrier between targets, nothing sent back). No real scheduler
    can beat this on the same cores: it is the ceiling for "2 workers vs serial" on this machine.
    The processes stay alive (warm) so that `run` can be interleaved with the other modes.
    """

    def __init__(self, names: list[str], cases: list, data: Path) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        halves: list[list] = [[], []]
        for name, (_, ids) in zip(names, cases):
            for k, part in enumerate(split_evenly(ids, OBS_SECONDS)):
                halves[k].append((name, part))
        self.pipes, self.procs = [], []
        saved = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
        os.environ.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")  # as Ray sets for its workers
        try:
            for half in halves:
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_bound_process, args=(child, str(data), half, BLOCK_SIZE), daemon=True)
                proc.start()
                self.pipes.append(parent)
                self.procs.append(proc)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        self.run()  # warm-up: imports and per-spec caches

    def run(self) -> float:
        """Wall time of one round (both processes reduce their halves)."""
        t0 = time.perf_counter()
        for conn in self.pipes:
            conn.send(True)
        for conn in self.pipes:
            conn.recv()
        return time.perf_counter() - t0

    def close(self) -> None:
        for conn in self.pipes:
            conn.send(False)
        for proc in self.procs:
            proc.join(timeout=10)


# ------------------------------------------------------------------------------------------------
# gammapy
# ------------------------------------------------------------------------------------------------
def gammapy_case(config, ids, data: Path):
    """(stacked empty dataset, observations, makers) of one target, built with gammapy."""
    import astropy.units as u
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis, WcsGeom
    from regions import CircleSkyRegion

    g = config.datasets.geom
    sky = g.wcs.skydir
    energy = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    geom = WcsGeom.create(skydir=(sky.lon.value, sky.lat.value), binsz=0.02,
                          width=(g.wcs.width.width.value, g.wcs.width.height.value), frame="icrs", proj="CAR",
                          axes=[energy])
    energy_true = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    stacked = MapDataset.create(geom=geom, energy_axis_true=energy_true, name="stacked")
    region = config.datasets.background.exclusion_regions[0]
    circle = CircleSkyRegion(center=SkyCoord(region.center.ra, region.center.dec), radius=region.radius)
    exclusion = ~geom.region_mask(regions=[circle])
    makers = [MapDatasetMaker(), SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg),
              FoVBackgroundMaker(method="fit", exclusion_mask=exclusion)]
    observations = DataStore.from_dir(data).get_observations(ids)
    return stacked, observations, makers


def gammapy_serial(cases: list, data: Path) -> float:
    import astropy.units as u

    t0 = time.perf_counter()
    for config, ids in cases:
        stacked, observations, (maker, safe, fov) = gammapy_case(config, ids, data)
        for obs in observations:
            cutout = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=5 * u.deg, name=f"obs-{obs.obs_id}")
            dataset = fov.run(safe.run(maker.run(cutout, obs), obs))
            stacked.stack(dataset)
    return time.perf_counter() - t0


def gammapy_parallel(cases: list, data: Path, backend: str) -> float:
    from gammapy.makers import DatasetsMaker

    t0 = time.perf_counter()
    for config, ids in cases:
        stacked, observations, makers = gammapy_case(config, ids, data)
        DatasetsMaker(makers, stack_datasets=True, n_jobs=2, cutout_width="5 deg",
                      parallel_backend=backend).run(stacked, observations)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------------------------
# profiles
# ------------------------------------------------------------------------------------------------
def profiles(data: Path, n_workers: int) -> dict[str, float]:
    """Profiles + MINOS of the seed fit: serial, then ``run_profiles(dataset, backend)`` on a fresh
    `RayBackend` of ``n_workers`` CPUs (first call: the worker processes start, import, receive the
    dataset; the Ray start itself is timed apart), then again on the same, now warm, backend."""
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.distributed import RayBackend, SerialBackend
    from gamma_ray_dist.pipeline.fitting import apply_fit_range, fit_dataset, load_models, run_profiles
    from gamma_ray_dist.pipeline.inputs import open_datastore, select_obs_ids
    from gamma_ray_dist.pipeline.run import reduce_stacked
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    text = (ROOT / "examples" / "crab_3d.yaml").read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(data))
    config = AnalysisConfig.from_yaml(text)
    ids = select_obs_ids(config, open_datastore(config))
    with SerialBackend(progress=False) as serial_backend:
        state, _ = reduce_stacked(config, ids, serial_backend)
        dataset = SummaryAccumulator.from_state(state).to_dataset("stacked")
        apply_fit_range(dataset, config)
        dataset.models = load_models(config, "stacked", ROOT / "examples" / "crab_models.yaml")
        fit_dataset(dataset)
        t0 = time.perf_counter()
        serial = run_profiles(dataset, serial_backend)
        t_serial = time.perf_counter() - t0
    with RayBackend(num_cpus=n_workers, progress=False) as backend:
        t_start = backend.timings.get("start", 0.0)  # 0 when it joined the Ray of this process
        t0 = time.perf_counter()
        parallel = run_profiles(dataset, backend)  # cold: the first jobs of this Ray's workers
        t_parallel = time.perf_counter() - t0
        # Warm: the same backend again (a long-lived cluster, or the CLI's backend shared by profiles
        # and flux points); each call still ships the dataset and rebuilds the per-job copies.
        t0 = time.perf_counter()
        warm = run_profiles(dataset, backend)
        t_warm = time.perf_counter() - t0
        cpus = backend.cpus
    return {"serial": t_serial, "parallel": t_parallel, "parallel_warm": t_warm, "ray_start": t_start,
            "ray_cpus": cpus, "equal": parallel == serial and warm == serial,
            "n_parameters": len(serial), "n_jobs": 12 * len(serial)}


# ------------------------------------------------------------------------------------------------
def _same(a: list, b: list) -> bool:
    """Every buffer of every target's state bit-identical (same keys, same arrays)."""
    if len(a) != len(b):
        return False
    for sa, sb in zip(a, b):
        if set(sa["buffers"]) != set(sb["buffers"]):
            return False
        for key, va in sa["buffers"].items():
            vb = sb["buffers"][key]
            if (va is None) != (vb is None) or (va is not None and not np.array_equal(va, vb)):
                return False
    return True


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _phase_line(label: str, ph: dict) -> str:
    return (f"  {label:<34} tasks {ph.get('tasks', 0):6.2f} s  tail {ph.get('reduce_tail', 0):5.2f} s  "
            f"task sum {ph.get('task_cpu_sum', 0):6.2f} s  prestart {ph.get('prestart_reducers', 0):5.2f} s  "
            f"fetch {ph.get('fetch_result', 0):5.2f} s  tasks {ph.get('n_tasks', 0):4.0f}  "
            f"blocks {ph.get('n_blocks', 0):4.0f}")


def main(argv: list[str] | None = None) -> int:
    global BLOCK_SIZE
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("GRD_DR1", DEFAULT_DATA)))
    parser.add_argument("--targets", default=",".join(TARGETS), help=f"comma list of {list(TARGETS)}")
    parser.add_argument("--max-obs", type=int, default=None, help="at most this many observations per target")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of each of our modes (interleaved)")
    parser.add_argument("--skip-gammapy", action="store_true", help="no gammapy runs at all")
    parser.add_argument("--skip-gammapy-parallel", action="store_true", help="no DatasetsMaker(n_jobs=2) runs")
    parser.add_argument("--skip-profiles", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--block-size", type=int, default=BLOCK_SIZE,
                        help="observations folded by one Ray task (ray.block_size; every mode uses it; "
                             "default: automatic, as a user's run)")
    parser.add_argument("--ray-niceness", type=int, default=0,
                        help="niceness of the Ray worker processes (Ray's default is 15, which starves them "
                             "on a shared machine; 0 = the priority of the serial runs)")
    args = parser.parse_args(argv)

    from gamma_ray_dist.distributed import RayBackend, SerialBackend
    from gamma_ray_dist.pipeline.inputs import open_datastore, select_obs_ids

    BLOCK_SIZE = args.block_size

    cases = []
    names = [name.strip() for name in args.targets.split(",")]
    for name in names:
        config = target_config(args.data, name.strip())
        ids = select_obs_ids(config, open_datastore(config))[: args.max_obs]
        cases.append((config, ids))
        print(f"{name}: {len(ids)} observations")
    n_obs = sum(len(ids) for _, ids in cases)
    load_start = _load()
    # A cluster is long-lived: Ray is started before any timing, and its start is reported apart.
    os.environ.setdefault("RAY_worker_niceness", str(args.ray_niceness))  # read when Ray starts
    serial_backend = SerialBackend(progress=False).start()
    ray_backend = RayBackend(num_cpus=args.num_cpus, block_size=BLOCK_SIZE, progress=False)
    t0 = time.perf_counter()
    ray_backend.start()
    t_ray = time.perf_counter() - t0
    try:
        result = _compare(args, names, cases, n_obs, load_start, t_ray, serial_backend, ray_backend)
    finally:
        ray_backend.close()
        serial_backend.close()
    if not args.skip_profiles:
        # after the reduction's Ray is shut down: the profiles' backend starts its own
        prof = profiles(args.data, n_workers=args.num_cpus)
        print(f"profiles + MINOS ({prof['n_parameters']} free parameters, 11 points each): serial "
              f"{prof['serial']:.2f} s, Ray {prof['ray_cpus']} workers {prof['parallel']:.2f} s on the first call "
              f"of a fresh backend, worker processes starting ({prof['serial'] / prof['parallel']:.2f}x; Ray start "
              f"{prof['ray_start']:.1f} s apart), {prof['parallel_warm']:.2f} s on the same backend's running workers "
              f"({prof['serial'] / prof['parallel_warm']:.2f}x), results equal: {prof['equal']}")
        result["profiles"] = prof
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


def _pool_line(backend, what: str = "") -> str:
    pool = backend.pool
    if pool is None:
        return "  no reducer pool"
    return f"  reducer actors started {pool.created}, reused {pool.reused}{what}"


def _compare(args, names: list[str], cases: list, n_obs: int, load_start: str, t_ray: float,
             serial_backend, ray_backend) -> dict[str, Any]:
    """The timed modes on the two (started) backends; prints the tables, returns the figures."""
    rows: dict[str, float] = {}
    # Cold: the first run of each backend in this process. Serial builds this process's spec caches;
    # the first Ray run starts the worker processes (imports, spec caches) and the reducer actors.
    rows["ours serial, cold (first run in the process)"], ref_states = ours(cases, serial_backend,
                                                                            label="serial cold")
    rows["ours Ray 2 workers, cold (first run after Ray start)"], states_cold = ours(
        cases, ray_backend, label="Ray 2w cold")
    print(_pool_line(ray_backend))
    # Warm: repeated runs in the same process, interleaved so that load changes hit all modes.
    bound_label = "bound: serial split over 2 plain processes"
    warm: dict[str, list[float]] = {"ours serial, warm": [], "ours Ray 1 worker, warm": [],
                                    "ours Ray 2 workers, warm": [], bound_label: []}
    identical = _same(ref_states, states_cold)
    bound = TwoProcessBound(names, cases, args.data)
    try:
        for _ in range(max(1, args.repeats)):
            t, st = ours(cases, serial_backend, label="serial warm")
            warm["ours serial, warm"].append(t)
            t, st1 = ours(cases, ray_backend, max_in_flight=1, label="Ray 1w warm")
            warm["ours Ray 1 worker, warm"].append(t)
            t, st2 = ours(cases, ray_backend, label="Ray 2w warm")
            warm["ours Ray 2 workers, warm"].append(t)
            warm[bound_label].append(bound.run())
            identical = identical and _same(ref_states, st) and _same(ref_states, st1) and _same(ref_states, st2)
    finally:
        bound.close()
    print(_pool_line(ray_backend, " (all runs)"))
    for mode, ts in warm.items():
        rows[mode + " (median)"] = float(np.median(ts))
        rows[mode + " (best)"] = float(np.min(ts))
    if not args.skip_gammapy:
        rows["gammapy serial"] = gammapy_serial(cases, args.data)
        if not args.skip_gammapy_parallel:
            rows["gammapy DatasetsMaker n_jobs=2 multiprocessing"] = gammapy_parallel(cases, args.data,
                                                                                      "multiprocessing")
            rows["gammapy DatasetsMaker n_jobs=2 ray"] = gammapy_parallel(cases, args.data, "ray")

    base = rows["ours Ray 2 workers, warm (median)"]
    print(f"\n{n_obs} observations, {len(cases)} targets, {ray_backend.cpus} Ray CPUs, "
          f"block_size {BLOCK_SIZE or 'auto'}; Ray start (untimed below) {t_ray:.1f} s; load average at start {load_start}, "
          f"at end {_load()}; {args.repeats} warm repeats")
    print(f"{'mode':<56} {'time s':>8} {'ms/obs':>7} {'vs ours 2w warm':>15}")
    for mode, t in rows.items():
        print(f"{mode:<56} {t:8.2f} {1000 * t / n_obs:7.1f} {t / base:14.2f}x")
    for mode, ts in warm.items():
        print(f"  {mode}: " + ", ".join(f"{t:.2f}" for t in ts))
    print("\nours, per phase, summed over targets (averaged over the warm repeats): until the last task "
          "finished / reducer tail after it / summed task wall time in the workers")
    for label, ph in PHASES.items():
        n = max(1, args.repeats) if "warm" in label else 1
        print(_phase_line(label, {k: v / n for k, v in ph.items()}))
    speedup = rows["ours serial, warm (median)"] / base
    ceiling = rows["ours serial, warm (median)"] / rows[bound_label + " (median)"]
    speedup_best = rows["ours serial, warm (best)"] / rows["ours Ray 2 workers, warm (best)"]
    print(f"\nours Ray 2 workers vs ours serial, warm: {speedup:.2f}x median, {speedup_best:.2f}x best "
          f"(goal >= 1.5x); cold: {rows['ours serial, cold (first run in the process)'] / rows['ours Ray 2 workers, cold (first run after Ray start)']:.2f}x")
    print(f"ceiling on this machine (serial split over 2 plain processes vs serial): {ceiling:.2f}x median; "
          f"ours reaches {speedup / ceiling:.0%} of it")
    gp = [t for m, t in rows.items() if m.startswith("gammapy")]
    if gp:
        print(f"ours 2 workers warm vs gammapy's best: {min(gp) / base:.2f}x (goal >= 20x)")
    print(f"stacked arrays bit-identical serial / 1 worker / 2 workers, cold and warm: {identical}")
    result: dict[str, Any] = {"n_obs": n_obs, "targets": args.targets, "seconds": rows, "warm_runs": warm,
                              "phases": PHASES, "speedup_vs_serial": speedup, "ceiling_vs_serial": ceiling,
                              "bound_runs": warm[bound_label], "bit_identical": identical,
                              "load_start": load_start, "load_end": _load(), "ray_start": t_ray,
                              "block_size": BLOCK_SIZE}
    return result


if __name__ == "__main__":
    sys.exit(main())
