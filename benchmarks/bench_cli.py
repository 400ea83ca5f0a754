"""The CLI as a user runs it, cold: ``gamma-ray-dist run`` serial vs on a local 2-CPU Ray, per size.

Usage::

    python benchmarks/bench_cli.py                                   # sizes 20 300 1000, 3 repeats
    python benchmarks/bench_cli.py --sizes 20 --repeats 1            # ~1 min smoke run
    python benchmarks/bench_cli.py --work-dir /tmp/grd-bench-cli --keep --backends auto
    python benchmarks/bench_cli.py --sizes 1000 --ceiling            # + the 2-process ceiling

For each size N in ``--sizes``, a Crab-like data store of N observations is simulated once with the
demo's own logic (`gamma_ray_dist.pipeline.demo.prepare_demo`: ``WORK/store-N/data``, the config
``demo.yaml`` and the start models ``demo_models.yaml``), and reused when ``--work-dir`` already holds
it. Then, ``--repeats`` times, interleaved (the order of the backends rotates from one repeat to the
next), each in a fresh process tree::

    gamma-ray-dist run demo.yaml --models demo_models.yaml --out OUT --no-report --no-progress --serial
    gamma-ray-dist run demo.yaml --models demo_models.yaml --out OUT --no-report --no-progress \\
        --backend ray --num-cpus 2
    ...                                          --backend NAME --num-cpus 2   (each of --backends)

With ``--ceiling``, also ``python benchmarks/ceiling_cli.py run ... --serial``: the same command whose
reduction folds the same blocks on 2 plain spawned processes (no Ray), merged in order here
(bit-identical): the least any 2-worker scheme pays on this machine, i.e. the ceiling for Ray.

That is the whole command: interpreter start, imports, Ray start and shutdown (ray), reduction,
stacking, writing, fit, flux points. The command is the ``gamma-ray-dist`` console script next to
this interpreter (``--cli`` overrides it); ``$RAY_ADDRESS`` is removed from its environment, so every
Ray run starts its own private local Ray.

Measured per run:

wall
    From spawning the command until it has exited and been reaped (``os.wait4``, blocking).
CPU
    User + system CPU seconds of every process of the run (the CLI, GCS, raylet, Ray workers,
    reducer actors, agents...), from two sources that never count a process twice:

    1. Kernel accounting (exact). This process makes itself a *child subreaper*
       (``prctl(PR_SET_CHILD_SUBREAPER)``), so a descendant whose parent exits first is re-parented
       to it, not to init. ``os.wait4`` returns for each child it reaps the rusage of the child
       *plus* every descendant the child reaped in turn (Linux ``RUSAGE_BOTH``); the sum over all
       the processes this one reaps covers every process of the tree that was reaped normally.
    2. Sampling, for the processes no one reaps normally. The raylet ignores SIGCHLD (checked:
       ``SigIgn`` in ``/proc/PID/status``), so the kernel discards its children (workers, reducer
       actors, agents) at exit and their CPU reaches no rusage. A thread walks the process tree with
       psutil every ``--sample-interval`` s (0.05) and keeps, per process, its last ``cpu_times``
       and whether its parent ignores SIGCHLD; for those processes the last sampled own + reaped-
       children time is added. They lose at most their last sampling period (they are idle then:
       Ray kills them at shutdown).

    After the command exits, the rest of its tree is waited for (``--linger-timeout``; reported as
    "linger"); a process still alive then is killed by pid and counted from its last sample.
    Printed beside it: the plain sampled sum of every process's own time (a cross-check, a little
    low: it misses each process's last period), split by kind: CLI process, Ray workers (``ray::*``
    tasks / idle workers), reducer actors (``ray::OrderedReducer``), Ray system (raylet, GCS,
    agents); and the sampler's own CPU (in this process, not counted).
CPU during the reduce stage
    The sampled CPU of every process of the run (by kind) between the start and the end of the
    reduce stage (``reduce_epoch`` in ``OUT/reduction.json``), interpolated between sweeps: the
    issue's "CPU per observation" (the work of reducing, without interpreter start, imports, Ray
    start, fit or writing), beside the whole run's CPU above.
reduction.json
    ``timings.reduce`` (the reduction stage: tasks, merges, fetch of the stacked state),
    ``timings.backend_start`` and ``timings.total`` of the run, read from ``OUT/reduction.json``.
    The CLI starts its backend (``with make_backend(...)``) before `run_pipeline`, so
    ``backend_start`` only times the (no-op) re-start and reads ~0 for Ray too; the Ray start is in
    "outside run_pipeline" = wall - ``timings.total`` (interpreter start, imports, Ray start and
    shutdown, writing nothing else).
bit-identity
    Every FITS HDU of ``OUT/stacked.fits.gz`` of every run compared with the first serial run of the
    same size: same HDUs, data arrays equal (``np.array_equal`` per image / table column, NaNs equal).

No timing is asserted; the exit code is 1 only if a run failed or a stacked dataset differs.
Printed per size: median and best wall, median CPU-s and CPU ms per observation, reduce and
backend_start stage times, exit codes, bit-identity, with each backend / serial ratio beside it.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

PR_SET_CHILD_SUBREAPER = 36
KINDS = ("cli", "ray_workers", "reducers", "ray_system")


# ------------------------------------------------------------------------------------------------
# the data store of one size (the demo's store, config and models)
# ------------------------------------------------------------------------------------------------
def prepare_store(work: Path, n_obs: int, seed: int) -> tuple[Path, Path, dict[str, Any]]:
    """``(config path, models path, info)`` of the demo store of ``n_obs`` observations, cached in ``work``."""
    from gamma_ray_dist.pipeline.demo import prepare_demo

    root = work / f"store-{n_obs}"
    marker = root / "bench_cli_store.json"
    cfg, models = root / "demo.yaml", root / "demo_models.yaml"
    if marker.exists() and cfg.exists() and models.exists():
        info = json.loads(marker.read_text())
        n_files = len(list((root / "data").rglob("obs_*.fits.gz")))
        if info.get("n_obs") == n_obs and info.get("seed") == seed and n_files == n_obs:
            return cfg, models, dict(info, reused=True)
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    prepare_demo(root, n_obs=n_obs, seed=seed)  # data in root/data, demo.yaml, demo_models.yaml
    info = {"n_obs": n_obs, "seed": seed, "simulate_s": time.perf_counter() - t0,
            "bytes": sum(f.stat().st_size for f in (root / "data").rglob("*") if f.is_file())}
    marker.write_text(json.dumps(info))
    return cfg, models, dict(info, reused=False)


# ------------------------------------------------------------------------------------------------
# process-tree accounting
# ------------------------------------------------------------------------------------------------
def become_subreaper() -> None:
    """Orphaned descendants are re-parented to this process (Linux only), so that it reaps them."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def _kind(cmdline: list[str], pid: int, root_pid: int) -> str:
    if pid == root_pid:
        return "cli"
    head = cmdline[0] if cmdline else ""
    if head.startswith(("ray::OrderedReducer", "ray::ReductionActor")):
        return "reducers"
    if head.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "ray_system"
    if head.startswith("ray::") or "multiprocessing" in " ".join(cmdline):  # a pool process of the ceiling
        return "ray_workers"
    return "ray_system"


class TreeSampler(threading.Thread):
    """Last ``cpu_times`` (user + system, own) of every descendant of this process, by kind."""

    def __init__(self, root_pid: int, interval: float) -> None:
        super().__init__(daemon=True, name="tree-sampler")
        import psutil

        self.psutil = psutil
        self.root_pid = root_pid
        self.interval = float(interval)
        self.procs: dict[tuple[int, float], dict[str, Any]] = {}
        self.halt = threading.Event()
        self.lock = threading.Lock()
        self.thread_cpu = 0.0
        self.n_samples = 0
        self.sigchld_ignored: dict[int, bool] = {}
        # (epoch, {kind: CPU so far}) after each sweep: CPU within a time window, e.g. the reduce stage
        self.timeline: list[tuple[float, dict[str, float]]] = []

    def sample(self) -> None:
        me = self.psutil.Process()
        try:
            children = me.children(recursive=True)
        except self.psutil.Error:
            return
        for proc in children:
            try:
                with proc.oneshot():
                    key = (proc.pid, proc.create_time())
                    cpu = proc.cpu_times()
                    entry = self.procs.get(key)
                    cmdline = proc.cmdline() if entry is None or entry["kind"] not in ("reducers", "cli") else []
                    if cmdline:
                        # a pooled Ray worker changes its title when it becomes an actor: re-read
                        kind = _kind(cmdline, proc.pid, self.root_pid)
                    else:  # known already, or exiting (a zombie has no command line): keep its kind
                        kind = entry["kind"] if entry is not None else _kind(cmdline, proc.pid, self.root_pid)
            except self.psutil.Error:
                continue
            ppid = proc.ppid() if entry is None else entry["ppid"]
            with self.lock:
                self.procs[key] = {"pid": proc.pid, "ppid": ppid, "kind": kind,
                                   "cpu": float(cpu.user + cpu.system),
                                   "children_cpu": float(cpu.children_user + cpu.children_system),
                                   "auto_reaped": entry["auto_reaped"] if entry is not None
                                   else self._ignores_sigchld(ppid)}
        self.n_samples += 1
        self.timeline.append((time.time(), self.by_kind()))

    def _ignores_sigchld(self, pid: int) -> bool:
        """Whether ``pid`` ignores SIGCHLD (its children are then reaped by the kernel, unaccounted)."""
        if pid not in self.sigchld_ignored:
            try:
                with open(f"/proc/{pid}/status") as f:
                    mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
                self.sigchld_ignored[pid] = bool(mask & (1 << (signal.SIGCHLD - 1)))
            except (OSError, StopIteration, ValueError):
                self.sigchld_ignored[pid] = False
        return self.sigchld_ignored[pid]

    def run(self) -> None:
        t_cpu = time.thread_time()
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(self.interval)
        self.thread_cpu = time.thread_time() - t_cpu

    def stop(self) -> None:
        self.halt.set()
        self.join(timeout=10)

    def by_kind(self) -> dict[str, float]:
        with self.lock:
            out = {k: 0.0 for k in KINDS}
            for entry in self.procs.values():
                out[entry["kind"]] += entry["cpu"]
            return out

    def cpu_between(self, start: float, end: float) -> dict[str, float] | None:
        """CPU by kind spent between the epochs ``start`` and ``end`` (sampled, linearly interpolated
        between sweeps; a process that exits keeps its last sample); None when not covered."""
        with self.lock:
            line = list(self.timeline)
        if len(line) < 2 or start < line[0][0] or end > line[-1][0] or end <= start:
            return None
        times = np.array([t for t, _ in line])
        return {k: float(np.interp(end, times, [v[k] for _, v in line])
                         - np.interp(start, times, [v[k] for _, v in line])) for k in KINDS}

    def auto_reaped_cpu(self) -> tuple[float, int]:
        """(last own + children CPU, count) of the processes whose parent ignores SIGCHLD."""
        with self.lock:
            entries = [e for e in self.procs.values() if e["auto_reaped"]]
            return sum(e["cpu"] + e["children_cpu"] for e in entries), len(entries)

    def alive_cpu(self, pid: int) -> float:
        """Last sampled CPU of ``pid`` (for a leftover process killed by us)."""
        with self.lock:
            return max((e["cpu"] for (p, _), e in self.procs.items() if p == pid), default=0.0)


def _rusage_cpu(ru) -> float:
    return float(ru.ru_utime + ru.ru_stime)


def run_measured(cmd: list[str], env: dict[str, str], interval: float, linger_timeout: float,
                 log_path: Path) -> dict[str, Any]:
    """Run ``cmd``; wall time, exact CPU of its whole process tree (see module docstring), CPU by kind."""
    with open(log_path, "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        sampler = TreeSampler(proc.pid, interval) if interval > 0 else None
        if sampler is not None:
            sampler.start()
        cpu = 0.0
        n_reaped = 0
        exit_code = None
        wall = None
        try:
            # until the command itself exits: blocking waits on any child (orphans re-parented to us
            # are reaped as they exit, their rusage added)
            while exit_code is None:
                pid, status, ru = os.wait4(-1, 0)
                cpu += _rusage_cpu(ru)
                n_reaped += 1
                if pid == proc.pid:
                    wall = time.perf_counter() - t0
                    exit_code = os.waitstatus_to_exitcode(status)
                    proc.returncode = exit_code  # reaped here, not by Popen
            # then whatever of its tree is still running (Ray processes shutting down)
            t_cmd_end = time.perf_counter()
            leftover: list[int] = []
            while True:
                try:
                    pid, status, ru = os.wait4(-1, os.WNOHANG)
                except ChildProcessError:
                    break  # no child left: the whole tree is accounted for
                if pid:
                    cpu += _rusage_cpu(ru)
                    n_reaped += 1
                    continue
                if time.perf_counter() - t_cmd_end > linger_timeout:
                    leftover = [p.pid for p in _psutil().Process().children()]
                    break
                time.sleep(0.02)
            linger = time.perf_counter() - t_cmd_end
            killed_cpu = 0.0
            if leftover and sampler is not None:
                sampler.sample()  # their latest CPU before the kill
            for pid in leftover:  # descendants of the command still alive: count, kill, reap
                killed_cpu += sampler.alive_cpu(pid) if sampler is not None else 0.0
                try:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
        finally:
            if sampler is not None:
                sampler.stop()
    out = {"wall_s": wall, "exit_code": exit_code, "cpu_rusage_s": cpu,
           "cpu_killed_leftover_s": killed_cpu, "n_leftover_killed": len(leftover), "n_reaped": n_reaped,
           "linger_s": linger}
    auto_cpu, n_auto = sampler.auto_reaped_cpu() if sampler is not None else (0.0, 0)
    # a leftover process is a descendant still alive: not reaped by anyone, counted once from its sample
    out.update(cpu_s=cpu + auto_cpu + killed_cpu, cpu_auto_reaped_s=auto_cpu, n_auto_reaped=n_auto)
    if sampler is not None:
        kinds = sampler.by_kind()
        out.update({"cpu_sampled_s": sum(kinds.values()), "cpu_sampled_by_kind_s": kinds,
                    "sampler_cpu_s": sampler.thread_cpu, "n_samples": sampler.n_samples,
                    "n_processes_seen": len(sampler.procs)})
        out["sampler"] = sampler  # for cpu_between once the reduce window is known (dropped before saving)
    return out


def _psutil():
    import psutil

    return psutil


# ------------------------------------------------------------------------------------------------
# outputs
# ------------------------------------------------------------------------------------------------
def fits_arrays(path: Path) -> list[tuple[str, Any]]:
    """``[(hdu name, data)]`` of a FITS file; table data as ``{column: array}``."""
    from astropy.io import fits

    out = []
    with fits.open(path, memmap=False) as hdus:
        for hdu in hdus:
            data = hdu.data
            if data is None:
                out.append((hdu.name, None))
            elif isinstance(data, fits.FITS_rec):
                out.append((hdu.name, {c: np.array(data[c]) for c in data.columns.names}))
            else:
                out.append((hdu.name, np.array(data)))
    return out


def _equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_equal(a[k], b[k]) for k in a)
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    nan_ok = a.dtype.kind in "fc"
    return bool(np.array_equal(a, b, equal_nan=nan_ok))


def same_fits(ref: list, other: list) -> bool:
    """Same HDU names and every data array equal."""
    return [n for n, _ in ref] == [n for n, _ in other] and all(_equal(a, b) for (_, a), (_, b) in zip(ref, other))


def read_reduction(out: Path) -> dict[str, Any]:
    try:
        red = json.loads((out / "reduction.json").read_text())
    except (OSError, ValueError):
        return {}
    t = red.get("timings", {})
    return {"reduce_s": t.get("reduce"), "backend_start_s": t.get("backend_start"), "total_s": t.get("total"),
            "n_ok": red.get("n_ok"), "n_failed": red.get("n_failed"), "backend": red.get("backend"),
            "n_blocks": red.get("n_blocks"), "block_size": red.get("block_size"), "n_tasks": red.get("n_tasks"),
            "reduce_epoch": red.get("reduce_epoch")}


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def _median(runs: list[dict], key: str, sub: str | None = None) -> float | None:
    vals = [(r.get(key) or {}).get(sub) if sub else r.get(key) for r in runs]
    vals = [v for v in vals if v is not None]
    return float(np.median(vals)) if vals else None


def _min(runs: list[dict], key: str) -> float | None:
    vals = [r[key] for r in runs if r.get(key) is not None]
    return float(min(vals)) if vals else None


def print_size(n: int, store: dict, backends: list[str], runs: dict[str, list[dict]]) -> None:
    w = 11
    cols = list(backends) + [f"{b}/serial" for b in backends if b != "serial"]
    print()
    print(f"{n} observations ({'reused store' if store.get('reused') else 'simulated %.1f s' % store['simulate_s']}), "
          f"{len(runs['serial'])} repeat(s) per backend, medians unless stated")
    print(f"{'':<46}" + "".join(f"{c:>{w}}" for c in cols))

    def row(label: str, values: dict[str, float | None], fmt: str, ratio: bool = True) -> None:
        cells = []
        for b in backends:
            v = values.get(b)
            cells.append(f"{v:{w}{fmt}}" if v is not None else f"{'-':>{w}}")
        for b in backends:
            if b == "serial":
                continue
            v, s = values.get(b), values.get("serial")
            cells.append(f"{v / s:{w - 1}.2f}x" if ratio and v is not None and s else f"{'':>{w}}")
        print(f"{label:<46}" + "".join(cells))

    def per(fn) -> dict[str, float | None]:
        return {b: fn(runs[b]) for b in backends}

    row("wall median [s]", per(lambda r: _median(r, "wall_s")), ".2f")
    row("wall best [s]", per(lambda r: _min(r, "wall_s")), ".2f")
    row("CPU all processes [CPU-s]", per(lambda r: _median(r, "cpu_s")), ".2f")
    row("CPU per observation [ms]", per(lambda r: None if _median(r, "cpu_s") is None
                                        else 1000 * _median(r, "cpu_s") / n), ".1f")
    row("  of which kernel rusage (reaped) [CPU-s]", per(lambda r: _median(r, "cpu_rusage_s")), ".2f", ratio=False)
    row("  of which sampled, auto-reaped procs [CPU-s]", per(lambda r: _median(r, "cpu_auto_reaped_s")), ".2f",
        ratio=False)
    row("cross-check: sampled own time, all [CPU-s]", per(lambda r: _median(r, "cpu_sampled_s")), ".2f")
    for kind, label in (("cli", "CLI process"), ("ray_workers", "workers (Ray; ceiling: pool)"), ("reducers", "reducer actors"),
                        ("ray_system", "Ray system (raylet, GCS, ...)")):
        row(f"    {label} [CPU-s]", per(lambda r, k=kind: _median(r, "cpu_sampled_by_kind_s", k)), ".2f", ratio=False)
    row("CPU during the reduce stage [CPU-s]", per(lambda r: _median(r, "cpu_reduce_s")), ".2f")
    row("  per observation [ms]", per(lambda r: None if _median(r, "cpu_reduce_s") is None
                                      else 1000 * _median(r, "cpu_reduce_s") / n), ".1f")
    for kind, label in (("cli", "CLI process"), ("ray_workers", "workers (Ray; ceiling: pool)"), ("reducers", "reducer actors"),
                        ("ray_system", "Ray system (raylet, GCS, ...)")):
        row(f"    {label} [CPU-s]", per(lambda r, k=kind: _median(r, "cpu_reduce_by_kind_s", k)), ".2f", ratio=False)
    row("reduce stage [s] (reduction.json)", per(lambda r: _median(r, "reduce_s")), ".2f")
    row("backend_start [s] (reduction.json)", per(lambda r: _median(r, "backend_start_s")), ".2f", ratio=False)
    row("reduce + backend_start [s]", per(lambda r: _median(r, "reduce_plus_start_s")), ".2f")
    row("run_pipeline total [s] (reduction.json)", per(lambda r: _median(r, "total_s")), ".2f")
    row("outside run_pipeline [s] (wall - total)", per(lambda r: _median(r, "outside_s")), ".2f")
    row("linger after exit [s] (tree reaped)", per(lambda r: _median(r, "linger_s")), ".2f", ratio=False)
    print(f"{'exit codes':<46}" + "".join(
        f"{','.join(str(x['exit_code']) for x in runs[b]):>{w}}" for b in backends))
    print(f"{'stacked.fits.gz bit-identical to serial':<46}" + "".join(
        f"{('yes' if all(x.get('identical') for x in runs[b]) else 'NO'):>{w}}" for b in backends))
    walls = {b: ", ".join(f"{x['wall_s']:.2f}" for x in runs[b] if x.get("wall_s") is not None) for b in backends}
    print("  wall per run [s]: " + "; ".join(f"{b} {v}" for b, v in walls.items()))
    sampler = [x.get("sampler_cpu_s", 0.0) for b in backends for x in runs[b]]
    leftover = sum(x.get("n_leftover_killed", 0) for b in backends for x in runs[b])
    print(f"  sampler CPU (this process, not counted) per run: {np.median(sampler):.2f} s median; "
          f"leftover processes killed after --linger-timeout: {leftover}")


def _cli_command(arg: str | None) -> list[str]:
    if arg:
        return arg.split()
    script = Path(sysconfig.get_path("scripts")) / "gamma-ray-dist"
    if script.exists():
        return [str(script)]
    found = shutil.which("gamma-ray-dist")
    return [found] if found else [sys.executable, "-m", "gamma_ray_dist"]


def _backend_args(name: str, num_cpus: int) -> list[str]:
    if name in ("serial", "ceiling"):
        return ["--serial"]
    return ["--backend", name, "--num-cpus", str(num_cpus)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 300, 1000], help="observations per store")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each backend per size (interleaved)")
    parser.add_argument("--backends", nargs="*", default=[],
                        help="extra --backend names run like ray (e.g. auto), after serial and ray")
    parser.add_argument("--num-cpus", type=int, default=2, help="--num-cpus of the Ray runs")
    parser.add_argument("--ceiling", action="store_true",
                        help="also run the 2-worker ceiling: the same command with its reduction on 2 plain "
                             "processes, no Ray (benchmarks/ceiling_cli.py)")
    parser.add_argument("--seed", type=int, default=0, help="simulation seed")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="stores (cached, store-N) and run outputs (default: a temporary directory, removed)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    parser.add_argument("--cli", default=None, help="command to run instead of the gamma-ray-dist console script")
    parser.add_argument("--sample-interval", type=float, default=0.05,
                        help="psutil sampling period of the process tree [s] (0: no sampling; the CPU of processes "
                             "the raylet's kernel auto-reaps, i.e. Ray workers and actors, is then missing)")
    parser.add_argument("--linger-timeout", type=float, default=30.0,
                        help="seconds to wait for the run's processes after the command exits")
    parser.add_argument("--json", type=Path, default=None, help="results (default WORK/bench_cli.json)")
    args = parser.parse_args(argv)

    import ray

    import gamma_ray_dist

    backends = ["serial", "ray"] + [b for b in args.backends if b not in ("serial", "ray", "ceiling")]
    if args.ceiling:
        backends.append("ceiling")
    tmp = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="grd-bench-cli-")) if tmp else args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    cli = _cli_command(args.cli)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONUNBUFFERED"] = "1"
    probe = subprocess.run([sys.executable, "-c", "import gamma_ray_dist; print(gamma_ray_dist.__file__)"],
                           env=env, capture_output=True, text=True).stdout.strip()
    print(f"python {platform.python_version()}, ray {ray.__version__}, os.cpu_count() {os.cpu_count()}, "
          f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"command: {' '.join(cli)} run ...; gamma_ray_dist imported by it from {Path(probe).parent}"
          f" (this process: {Path(gamma_ray_dist.__file__).parent})")
    print(f"work dir {work}; CPU of the run's process tree: kernel rusage of every process reaped "
          f"(subreaper + wait4) + psutil samples (every {args.sample_interval} s) of those the raylet's "
          f"kernel auto-reaps")
    become_subreaper()
    result: dict[str, Any] = {"python": platform.python_version(), "ray": ray.__version__,
                              "cpu_count": os.cpu_count(), "cli": cli, "backends": backends,
                              "num_cpus": args.num_cpus, "repeats": args.repeats, "sizes": {},
                              "load_start": os.getloadavg()}
    json_path = args.json or work / "bench_cli.json"
    ok = True
    try:
        for n in args.sizes:
            cfg, models, store = prepare_store(work, n, args.seed)
            runs: dict[str, list[dict]] = {b: [] for b in backends}
            ref = None
            for rep in range(max(1, args.repeats)):
                order = backends[rep % len(backends):] + backends[:rep % len(backends)]  # rotate
                for b in order:
                    out = work / "runs" / f"n{n}" / f"{b}-{rep}"
                    shutil.rmtree(out, ignore_errors=True)
                    out.mkdir(parents=True)
                    prog = [sys.executable, str(Path(__file__).with_name("ceiling_cli.py"))] if b == "ceiling" else cli
                    cmd = prog + ["run", str(cfg), "--models", str(models), "--out", str(out), "--no-report",
                                 "--no-progress"] + _backend_args(b, args.num_cpus)
                    r = run_measured(cmd, env, args.sample_interval, args.linger_timeout, out.parent / f"{b}-{rep}.log")
                    r.update(read_reduction(out))
                    sampler = r.pop("sampler", None)
                    window = r.get("reduce_epoch")
                    during = sampler.cpu_between(*window) if sampler is not None and window else None
                    if during is not None:
                        r["cpu_reduce_by_kind_s"], r["cpu_reduce_s"] = during, sum(during.values())
                    if r.get("total_s") is not None and r.get("wall_s") is not None:
                        r["outside_s"] = r["wall_s"] - r["total_s"]
                    if r.get("reduce_s") is not None and r.get("backend_start_s") is not None:
                        r["reduce_plus_start_s"] = r["reduce_s"] + r["backend_start_s"]
                    stacked = out / "stacked.fits.gz"
                    if r["exit_code"] == 0 and stacked.exists():
                        arrays = fits_arrays(stacked)
                        if b == "serial" and ref is None:
                            ref = arrays
                            r["identical"] = True
                        else:
                            r["pending_arrays"] = arrays  # compared once the serial reference exists
                    else:
                        ok = False
                        r["identical"] = False
                        print(f"  {b} run {rep}: exit code {r['exit_code']}, see {out.parent / f'{b}-{rep}.log'}")
                    runs[b].append(r)
                    print(f"  n={n} {b:<7} run {rep}: wall {r['wall_s']:.2f} s, CPU {r['cpu_s']:.2f} s, "
                          f"reduce {r.get('reduce_s') or float('nan'):.2f} s, exit {r['exit_code']}", flush=True)
                    shutil.rmtree(out, ignore_errors=True)  # arrays are in memory; keep only the logs
            for b in backends:
                for r in runs[b]:
                    if "pending_arrays" in r:
                        r["identical"] = ref is not None and same_fits(ref, r.pop("pending_arrays"))
                    ok = ok and bool(r.get("identical"))
            print_size(n, store, backends, runs)
            result["sizes"][str(n)] = {"store": store, "runs": runs}
            json_path.write_text(json.dumps(result, indent=1, default=float))
    finally:
        result["load_end"] = os.getloadavg()
        if args.json or not tmp or args.keep:
            json_path.write_text(json.dumps(result, indent=1, default=float))
            print(f"\nresults in {json_path}")
        if tmp and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
            print(f"(work dir {work} removed; --keep or --work-dir to keep the stores and logs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
