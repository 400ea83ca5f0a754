"""Joint fit of per-observation datasets: in-process (`Datasets`) vs sharded over Ray actors (`ShardedDatasets`).

Run::

    python benchmarks/bench_joint_fit.py --n-datasets 100                  # speed: serial vs 2 actors
    python benchmarks/bench_joint_fit.py --crossover 2 4 8 16 32 --no-speed  # where sharding starts to pay
    python benchmarks/bench_joint_fit.py --scale 1000 --no-speed            # 1,000 datasets, sharded only
    python benchmarks/bench_joint_fit.py --n-datasets 100 --gammapy          # + gammapy's serial joint fit

Datasets: a store simulated with `gamma_ray_dist.simulate` (Crab-like point source, 30 min runs), each
run reduced on the seed geometry (0.02 deg pixels, 2 x 2 deg, 4 energy bins; 40,000 bins a dataset) to
its own file (`tests/joint_data.py`, written once under ``--work-dir`` and re-used; ``--index`` takes
the first N datasets of an existing index). Model: a point source + power law shared by all datasets
and one FoV background model per dataset, norms frozen (``--free-bkg`` frees them).

Serial: read every file in this process, then `Fit().run` (MIGRAD + HESSE). Sharded: on a `RayBackend`
started before the clock (its start is printed apart), `ShardedDatasets.open` (actors start and read
their own files) then the same `Fit().run`. Wall and CPU seconds are printed for both (sharded CPU =
this process + the actors; Ray's own daemons not counted), with the ceiling of the machine: the time of
one statistic evaluation of all datasets in this process against the slowest shard's, in this process
too. The results must be equal (total statistic, values, errors): printed as max relative differences.
Figures taken on a shared machine are indicative.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _peak_rss_mb() -> float:
    from gamma_ray_dist.distributed.likelihood import _peak_rss_kb

    return _peak_rss_kb() / 1024


def _models(names, free_bkg: bool):
    from tests.joint_data import joint_models

    return joint_models(names, bkg_frozen=not free_bkg)


def _entries(args, n: int):
    from gamma_ray_dist.distributed.likelihood import read_datasets_index
    from tests.joint_data import write_observation_datasets

    if args.index:
        entries = read_datasets_index(args.index)
        if len(entries) < n:
            raise SystemExit(f"{args.index} lists {len(entries)} datasets, fewer than {n}")
        return entries[:n]
    index = write_observation_datasets(Path(args.work_dir) / f"n{n}", n, seed=1, backend=args.backend)
    return read_datasets_index(index)


def _summary(result, datasets) -> dict:
    pars = datasets.models.parameters
    return {"success": bool(result.success), "nfev": int(result.nfev), "stat": float(result.total_stat),
            "values": [p.value for p in pars], "errors": [p.error for p in pars]}


def run_serial(entries, free_bkg: bool) -> dict:
    from gamma_ray_dist.distributed.likelihood import read_datasets
    from gamma_ray_dist.modeling import Fit

    c0, t0 = time.process_time(), time.perf_counter()
    datasets = read_datasets(entries, _models([e.name for e in entries], free_bkg))
    t_read = time.perf_counter() - t0
    stat_time = [0.0, 0]
    plain = datasets.stat_sum

    stat_cpu = [0.0]

    def timed():
        s, c = time.perf_counter(), time.process_time()
        try:
            return plain()
        finally:
            stat_time[0] += time.perf_counter() - s
            stat_time[1] += 1
            stat_cpu[0] += time.process_time() - c

    datasets.stat_sum = timed
    result = Fit().run(datasets)
    out = {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "read": t_read,
           "eval_ms": 1e3 * stat_time[0] / max(1, stat_time[1]), "n_eval": stat_time[1],
           "eval_cpu_ms": 1e3 * stat_cpu[0] / max(1, stat_time[1]),
           **_summary(result, datasets)}
    out["datasets"] = datasets
    return out


def ceiling(datasets, n_shards: int, repeat: int = 5) -> dict:
    """One evaluation of all datasets vs of each shard alone, in this process (position moved each time)."""
    from gamma_ray_dist.distributed.likelihood import shard_bounds

    lon = datasets.models["crab"].spatial_model.lon_0
    start = lon.value

    def timed(items) -> float:
        best = np.inf
        for r in range(repeat):
            lon.value = start + 1e-4 * (r + 1)  # a new position: the full per-dataset evaluation
            t = time.perf_counter()
            for d in items:
                d.stat_sum()
            best = min(best, time.perf_counter() - t)
        return best

    t_all = timed(list(datasets))
    t_shards = [timed(list(datasets)[a:b]) for a, b in shard_bounds(len(datasets), n_shards)]
    lon.value = start
    return {"all_ms": 1e3 * t_all, "shard_ms": [1e3 * t for t in t_shards], "speedup": t_all / max(t_shards)}


def run_sharded(entries, free_bkg: bool, n_shards: int) -> dict:
    from gamma_ray_dist.distributed.likelihood import ShardedDatasets
    from gamma_ray_dist.modeling import Fit

    c0, t0 = time.process_time(), time.perf_counter()
    with ShardedDatasets.open(entries, _models([e.name for e in entries], free_bkg), n_shards=n_shards) as sharded:
        t_open = time.perf_counter() - t0
        result = Fit().run(sharded)
        wall = time.perf_counter() - t0
        infos = sharded.info()
        out = {"wall": wall, "open": t_open, "cpu_head": time.process_time() - c0,
               "cpu_actors": sum(i["cpu_s"] for i in infos), "eval_ms": 1e3 * sharded.timings["stat"] / max(1, sharded.n_calls),
               "n_eval": sharded.n_calls, "actor_peak_rss_mb": [i["peak_rss_kb"] / 1024 for i in infos],
               "actor_base_rss_mb": [i["rss_before_kb"] / 1024 for i in infos],
               "eval_cpu_ms_actors": [1e3 * i["stat_cpu_s"] / max(1, sharded.n_calls) for i in infos],
               "head_peak_rss_mb": _peak_rss_mb(), **_summary(result, sharded)}
    out["cpu"] = out["cpu_head"] + out["cpu_actors"]
    return out


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(a == b, 0.0, np.abs(a - b) / np.maximum(np.abs(b), 1e-300))
    return float(np.nanmax(d)) if d.size else 0.0


def run_gammapy(entries, free_bkg: bool) -> dict:
    from astropy import units as u
    from gammapy.datasets import Datasets, MapDataset
    from gammapy.modeling import Fit
    from gammapy.modeling.models import (FoVBackgroundModel, Models, PointSpatialModel, PowerLawSpectralModel,
                                         SkyModel)

    from tests.joint_data import CRAB

    c0, t0 = time.process_time(), time.perf_counter()
    datasets = Datasets([MapDataset.read(e.path, name=e.name) for e in entries])
    models = [SkyModel(PowerLawSpectralModel(index=2.6, amplitude=3.8e-11 * u.Unit("cm-2 s-1 TeV-1"), reference=1 * u.TeV),
                       PointSpatialModel(lon_0=(CRAB[0] + 0.01) * u.deg, lat_0=(CRAB[1] - 0.01) * u.deg, frame="icrs"),
                       name="crab")]
    for e in entries:
        bkg = FoVBackgroundModel(dataset_name=e.name)
        bkg.spectral_model.norm.frozen = not free_bkg
        models.append(bkg)
    datasets.models = Models(models)
    result = Fit().run(datasets)
    return {"wall": time.perf_counter() - t0, "cpu": time.process_time() - c0, "nfev": result.optimize_result.nfev,
            "stat": float(result.total_stat), "success": bool(result.success)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-datasets", type=int, default=100)
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--work-dir", default="/tmp/bench-joint-fit")
    p.add_argument("--index", help="datasets index YAML to take the first N datasets from")
    p.add_argument("--free-bkg", action="store_true", help="fit every dataset's background norm too")
    p.add_argument("--no-speed", action="store_true", help="skip the serial vs sharded comparison")
    p.add_argument("--gammapy", action="store_true", help="also gammapy's serial joint fit of the same files")
    p.add_argument("--crossover", type=int, nargs="*", default=[], help="dataset counts for the crossover")
    p.add_argument("--scale", type=int, default=0, help="sharded fit of this many datasets (no serial run)")
    p.add_argument("--repeat", type=int, default=2, help="interleaved serial/sharded runs of the speed test")
    p.add_argument("--json")
    args = p.parse_args(argv)

    from gamma_ray_dist.distributed import RayBackend

    report: dict = {"num_cpus": args.num_cpus, "free_bkg": args.free_bkg}
    t0 = time.perf_counter()
    with RayBackend(num_cpus=args.num_cpus) as backend:
        args.backend = backend
        cpus = backend.cpus
        report["ray_start_s"] = time.perf_counter() - t0
        print(f"[joint-fit] Ray started in {report['ray_start_s']:.1f} s ({cpus} CPUs); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        if args.scale:
            entries = _entries(args, args.scale)
            sh = run_sharded(entries, args.free_bkg, cpus)
            n = len(entries)
            print(f"[scale] {n} datasets on {cpus} actors: wall {sh['wall']:.1f} s (open+read {sh['open']:.1f} s, "
                  f"fit {sh['wall'] - sh['open']:.1f} s, {sh['n_eval']} evaluations, {sh['eval_ms']:.0f} ms each); "
                  f"CPU head {sh['cpu_head']:.1f} s + actors {sh['cpu_actors']:.1f} s; success {sh['success']}, "
                  f"stat {sh['stat']:.3f}")
            print(f"[scale] peak RSS: head {sh['head_peak_rss_mb']:.0f} MB, actors "
                  + ", ".join(f"{m:.0f}" for m in sh["actor_peak_rss_mb"]) + " MB; per dataset: "
                  f"{1e3 * sh['open'] / n:.0f} ms open+read (wall, {cpus} actors), {sh['eval_ms'] / n:.2f} ms per "
                  f"evaluation (wall), {max(np.subtract(sh['actor_peak_rss_mb'], sh['actor_base_rss_mb'])) / (n / cpus):.2f} "
                  f"MB actor memory (peak above the actor's RSS before reading: "
                  + ", ".join(f"{b:.0f}" for b in sh["actor_base_rss_mb"]) + " MB)")
            report["scale"] = {k: v for k, v in sh.items() if k not in ("values", "errors")} | {"n": n}
        if not args.no_speed:
            entries = _entries(args, args.n_datasets)
            # interleaved repeats (the machine's load changes): the best wall of each mode is kept
            runs_se, runs_sh = [], []
            for _ in range(max(1, args.repeat)):
                se = run_serial(entries, args.free_bkg)
                ceil = ceiling(se.pop("datasets"), cpus)
                runs_se.append(se)
                runs_sh.append(run_sharded(entries, args.free_bkg, cpus))
            se = min(runs_se, key=lambda r: r["wall"])
            sh = min(runs_sh, key=lambda r: r["wall"])
            print("[speed] walls serial " + ", ".join(f"{r['wall']:.1f}" for r in runs_se) + " s; sharded "
                  + ", ".join(f"{r['wall']:.1f}" for r in runs_sh) + " s (best of each below)")
            n = len(entries)
            print(f"[speed] {n} datasets ({n * 40000:,} bins), {sum(1 for _ in se['values'])} parameters:")
            print(f"  serial : wall {se['wall']:7.1f} s  CPU {se['cpu']:7.1f} s  (read {se['read']:.1f} s, "
                  f"{se['n_eval']} evaluations {se['eval_ms']:.1f} ms each)  stat {se['stat']:.6f}")
            print(f"  sharded: wall {sh['wall']:7.1f} s  CPU {sh['cpu']:7.1f} s  (open+read {sh['open']:.1f} s, "
                  f"{sh['n_eval']} evaluations {sh['eval_ms']:.1f} ms each, head CPU {sh['cpu_head']:.1f} s)  "
                  f"stat {sh['stat']:.6f}")
            print(f"  speed-up: wall {se['wall'] / sh['wall']:.2f}x, per evaluation {se['eval_ms'] / sh['eval_ms']:.2f}x; "
                  f"ceiling measured now (all datasets {ceil['all_ms']:.0f} ms vs slowest shard "
                  f"{max(ceil['shard_ms']):.0f} ms, in-process) {ceil['speedup']:.2f}x")
            cpu_ceiling = se["eval_cpu_ms"] / max(sh["eval_cpu_ms_actors"])
            print(f"  CPU per evaluation: serial {se['eval_cpu_ms']:.0f} ms, actors "
                  + ", ".join(f"{c:.0f}" for c in sh["eval_cpu_ms_actors"])
                  + f" ms -> {cpu_ceiling:.2f}x when each process has a CPU of its own")
            print(f"  equal: stat rel {_rel(sh['stat'], se['stat']):.1e}, values rel {_rel(sh['values'], se['values']):.1e}, "
                  f"errors rel {_rel(sh['errors'], se['errors']):.1e}, nfev {sh['nfev']} vs {se['nfev']}")
            report["speed"] = {"serial": {k: v for k, v in se.items() if k not in ("values", "errors")},
                               "sharded": {k: v for k, v in sh.items() if k not in ("values", "errors")},
                               "ceiling": ceil, "stat_rel": _rel(sh["stat"], se["stat"]),
                               "values_rel": _rel(sh["values"], se["values"]), "errors_rel": _rel(sh["errors"], se["errors"])}
            if args.gammapy:
                gp = run_gammapy(entries, args.free_bkg)
                print(f"  gammapy: wall {gp['wall']:7.1f} s  CPU {gp['cpu']:7.1f} s  nfev {gp['nfev']}  stat {gp['stat']:.6f}"
                      f"  -> ours serial {gp['wall'] / se['wall']:.2f}x, sharded {gp['wall'] / sh['wall']:.2f}x faster")
                report["speed"]["gammapy"] = gp
        if args.crossover:
            rows = []
            print("[crossover] datasets  bins        serial s  sharded s  ratio (serial wall / sharded wall, actors started per fit)")
            for n in args.crossover:
                entries = _entries(args, n)
                se = run_serial(entries, args.free_bkg)
                se.pop("datasets")
                sh = run_sharded(entries, args.free_bkg, cpus)
                rows.append({"n": n, "bins": n * 40000, "serial": se["wall"], "sharded": sh["wall"],
                             "sharded_open": sh["open"], "equal": se["stat"] == sh["stat"]})
                print(f"  {n:8d}  {n * 40000:>10,}  {se['wall']:8.1f}  {sh['wall']:9.1f}  {se['wall'] / sh['wall']:.2f}"
                      f"  (open {sh['open']:.1f} s; stat equal {se['stat'] == sh['stat']})")
            above = [r for r in rows if r["serial"] > r["sharded"]]
            if above:
                print(f"[crossover] sharded faster from {above[0]['n']} datasets ({above[0]['bins']:,} bins) on")
            report["crossover"] = rows
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
