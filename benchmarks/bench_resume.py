"""What resumability costs: ``gamma-ray-dist run`` with its run directory (the default) vs ``--no-resume``.

Usage::

    python benchmarks/bench_resume.py                       # 300 observations, 3 repeats, serial and ray
    python benchmarks/bench_resume.py --sizes 100 --repeats 1 --backends serial

For each size N a Crab-like store is simulated (as `bench_cli.py` does, ``--work-dir`` caches it), then,
``--repeats`` times, interleaved (the order rotates from one repeat to the next), each in a fresh
process tree, for each backend::

    gamma-ray-dist run demo.yaml --models demo_models.yaml --out OUT --no-report --no-progress BACKEND
    gamma-ray-dist run demo.yaml --models demo_models.yaml --out OUT --no-report --no-progress BACKEND --no-resume

Wall and CPU (every process of the run's tree, measured as `bench_cli.py` does) and ``timings.reduce``
of ``reduction.json`` are printed per variant, with the resumable / ``--no-resume`` ratios; every
stacked dataset is compared with the first serial ``--no-resume`` one (bit-identity). What the run
directory adds: on both backends the statuses of each block written and fsynced before its state is
merged; in serial mode also the root reducer's checkpoint every 4 blocks (a Ray root checkpoints that
often anyway, to bound the object store). No timing is asserted; exit code 1 if a run failed or a
dataset differs.
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cli import (_backend_args, _cli_command, _median, become_subreaper, fits_arrays,  # noqa: E402
                       prepare_store, read_reduction, run_measured, same_fits)

VARIANTS = {"resumable": [], "no-resume": ["--no-resume"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", nargs="+", default=["serial", "ray"])
    parser.add_argument("--num-cpus", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--sample-interval", type=float, default=0.05)
    args = parser.parse_args(argv)

    import ray

    tmp = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="grd-bench-resume-")) if tmp else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    cli = _cli_command(None)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    probe = subprocess.run([sys.executable, "-c", "import gamma_ray_dist; print(gamma_ray_dist.__file__)"],
                           env=env, capture_output=True, text=True).stdout.strip()
    print(f"python {platform.python_version()}, ray {ray.__version__}, os.cpu_count() {os.cpu_count()}, "
          f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}; gamma_ray_dist from {Path(probe).parent}")
    become_subreaper()
    ok = True
    try:
        for n in args.sizes:
            cfg, models, store = prepare_store(work, n, args.seed)
            runs = {(b, v): [] for b in args.backends for v in VARIANTS}
            keys = list(runs)
            ref = None
            for rep in range(max(1, args.repeats)):
                for b, v in keys[rep % len(keys):] + keys[:rep % len(keys)]:
                    out = work / "runs" / f"n{n}" / f"{b}-{v}-{rep}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    cmd = cli + ["run", str(cfg), "--models", str(models), "--out", str(out), "--no-report",
                                 "--no-progress"] + _backend_args(b, args.num_cpus) + VARIANTS[v]
                    r = run_measured(cmd, env, args.sample_interval, 30.0, out.parent / f"{b}-{v}-{rep}.log")
                    r.update(read_reduction(out))
                    stacked = out / "stacked.fits.gz"
                    if r["exit_code"] != 0 or not stacked.exists() or (out / ".grd-run").exists():
                        ok = False
                        print(f"  {b} {v} run {rep}: exit code {r['exit_code']} (see the log)")
                    else:
                        arrays = fits_arrays(stacked)
                        ref = arrays if ref is None else ref
                        r["identical"] = same_fits(ref, arrays)
                        ok = ok and r["identical"]
                    runs[(b, v)].append(r)
                    print(f"  n={n} {b:<6} {v:<9} run {rep}: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                          f"reduce {r.get('reduce_s') or float('nan'):.2f} s", flush=True)
                    shutil.rmtree(out, ignore_errors=True)
            print(f"\nN={n} ({store.get('n_obs', n)} observations), medians of {args.repeats}:")
            print(f"  {'backend':<7} {'variant':<10} {'wall s':>8} {'CPU s':>8} {'reduce s':>9}  identical")
            for b in args.backends:
                med = {v: {k: _median(runs[(b, v)], k) for k in ("wall_s", "cpu_s", "reduce_s")} for v in VARIANTS}
                for v in VARIANTS:
                    m = med[v]
                    print(f"  {b:<7} {v:<10} {m['wall_s']:>8.2f} {m['cpu_s']:>8.2f} {m['reduce_s'] or 0:>9.2f}  "
                          f"{all(r.get('identical') for r in runs[(b, v)])}")
                ratio = {k: med["resumable"][k] / med["no-resume"][k] for k in ("wall_s", "cpu_s", "reduce_s")
                         if med["resumable"][k] and med["no-resume"][k]}
                print(f"  {b:<7} resumable / no-resume: wall {ratio.get('wall_s', float('nan')):.3f}, "
                      f"CPU {ratio.get('cpu_s', float('nan')):.3f}, reduce {ratio.get('reduce_s', float('nan')):.3f}")
    finally:
        if tmp:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
