"""Scale benchmark: simulate N observations, reduce them on a local 2-CPU Ray, watch memory.

Usage::

    python benchmarks/bench_scale.py [--n-obs 10000] [--compare 1000] [--num-cpus 2] [--no-fit]
                                     [--block-size 8] [--merge-fan-in 256] [--max-in-flight 4]
                                     [--sim-block-size 250] [--work-dir /tmp/grd-bench-scale]
                                     [--keep] [--json PATH] [--interval 0.5]

1. Simulates (or reuses, when ``WORK_DIR/store-N`` already holds N observations) a GADF data store
   of N Crab-like observations (`gamma_ray_dist.simulate`, ~90 kB per file) whose pointings cycle
   over 8 wobble positions (4 position angles x 0.5 / 0.7 deg) around the source; the files are
   written by Ray tasks (``backend.map`` of a `RayBackend`), each writing ``--sim-block-size``
   observations.
2. Runs the pipeline (`gamma_ray_dist.pipeline.run_pipeline` on a `RayBackend`: block tasks of
   ``--block-size`` consecutive observations each folded into one state, block states merged in
   order by a root reducer (and middle reducers above ``--merge-fan-in`` blocks); every observation
   stacked onto the seed geometry, 2 x 2 deg at 0.02 deg, 4 energy bins) on a fresh local Ray:
   first on the first ``--compare`` observations, then on all N (a fresh backend and Ray each
   time), followed by the fit of the seed model (``--no-fit``: reduction and stacking only).
3. A background thread samples, every ``--interval`` s, the memory of the driver (this process) and
   of every process of the local Ray (children of this process): ``ray::ReductionActor*`` (reducer
   actors), other ``ray::*`` worker processes (reduction / simulation tasks, idle workers) and the
   Ray system processes (raylet, GCS...), reading ``/proc/PID/status`` (VmRSS, VmHWM = the kernel's
   peak RSS, RssAnon = private memory, RssShmem = mapped object-store pages), and the object store
   use (the raylet's store stats: bytes used, spilled).

Prints a table (wall times, throughput, peak RSS per process kind, object store) for each run, the
first-10% / last-10% averages of the sampled RSS during the reduction of the big run, and writes
every figure to ``--json`` (default ``WORK_DIR/bench_scale_N.json``). The data store is deleted at
the end unless ``--keep``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

MB = 1024.0 * 1024.0
KINDS = ("driver", "actor", "worker", "system")


# ------------------------------------------------------------------------------------------------
# memory sampling
# ------------------------------------------------------------------------------------------------
def _proc_status(pid: int) -> dict[str, float] | None:
    """VmRSS, VmHWM, RssAnon, RssShmem of a process in bytes (None if it is gone)."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssShmem"):
                    out[key] = float(rest.split()[0]) * 1024.0
    except OSError:
        return None
    return out


def _kind(cmdline: list[str]) -> str:
    """Process kind from its command line (Ray sets worker titles to ``ray::<Actor|task|IDLE>``)."""
    head = cmdline[0] if cmdline else ""
    if head.startswith(("ray::OrderedReducer", "ray::ReductionActor")):
        return "actor"  # ReductionActor = ray.remote(OrderedReducer): Ray titles it by the class
    if head.startswith(("ray::DashboardAgent", "ray::RuntimeEnvAgent")):
        return "system"
    return "worker" if head.startswith("ray::") else "system"


class MemorySampler(threading.Thread):
    """Samples the memory of this process, its descendant processes and the object store."""

    def __init__(self, interval: float = 0.5, on_tick=None, tick_every: float = 60.0) -> None:
        super().__init__(daemon=True, name="memory-sampler")
        import psutil  # vendored by ray: import ray first

        self._psutil = psutil
        self.interval = float(interval)
        self.samples: list[dict[str, Any]] = []
        self.phase = "idle"
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self._gcs_address: str | None = None
        self._ray_state = None
        self._kind_cache: dict[tuple[int, float], str] = {}
        self.t0 = time.perf_counter()
        self._on_tick, self._tick_every, self._last_tick = on_tick, float(tick_every), time.perf_counter()

    def set_phase(self, phase: str, gcs_address: str | None = None) -> None:
        with self._lock:
            self.phase = phase
            if gcs_address != self._gcs_address:
                self._gcs_address, self._ray_state = gcs_address, None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=10)

    def _store_stats(self) -> dict[str, float] | None:
        if self._gcs_address is None:
            return None
        try:
            from ray._private.internal_api import get_memory_info_reply, get_state_from_address

            if self._ray_state is None:
                self._ray_state = get_state_from_address(self._gcs_address)
            stats = get_memory_info_reply(self._ray_state, timeout_seconds=5).store_stats
            return {"used": float(stats.object_store_bytes_used), "avail": float(stats.object_store_bytes_avail),
                    "spilled": float(stats.spilled_bytes_total), "n_objects": float(stats.num_local_objects)}
        except Exception:  # noqa: BLE001 - Ray shutting down between runs
            self._ray_state = None
            return None

    def sample(self) -> dict[str, Any]:
        me = self._psutil.Process()
        procs: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
        status = _proc_status(me.pid)
        if status:
            procs["driver"].append(status)
        try:
            children = me.children(recursive=True)
        except self._psutil.Error:
            children = []
        for child in children:
            try:
                key = (child.pid, child.create_time())
                kind = self._kind_cache.get(key)
                cmd = child.cmdline()
                # a pooled worker changes its title when it becomes an actor: re-check non-actors
                if kind != "actor":
                    kind = self._kind_cache[key] = _kind(cmd)
            except self._psutil.Error:
                continue
            status = _proc_status(child.pid)
            if status:
                status["pid"] = child.pid
                procs[kind].append(status)
        with self._lock:
            phase, gcs = self.phase, self._gcs_address
        row: dict[str, Any] = {"t": time.perf_counter() - self.t0, "phase": phase}
        for kind, items in procs.items():
            row[kind] = {
                "n": len(items),
                "rss_max": max((p["VmRSS"] for p in items), default=0.0),
                "rss_sum": sum(p["VmRSS"] for p in items),
                "anon_max": max((p.get("RssAnon", 0.0) for p in items), default=0.0),
                "shmem_max": max((p.get("RssShmem", 0.0) for p in items), default=0.0),
                "hwm_max": max((p.get("VmHWM", 0.0) for p in items), default=0.0),
            }
        row["store"] = self._store_stats() if gcs else None
        return row

    def run(self) -> None:
        while not self._halt.is_set():
            t = time.perf_counter()
            try:
                row = self.sample()
                with self._lock:
                    self.samples.append(row)
            except Exception as exc:  # noqa: BLE001 - never kill the benchmark
                print(f"[sampler] {type(exc).__name__}: {exc}", file=sys.stderr)
            if self._on_tick is not None and time.perf_counter() - self._last_tick >= self._tick_every:
                self._last_tick = time.perf_counter()
                try:
                    self._on_tick(self)
                except Exception as exc:  # noqa: BLE001
                    print(f"[sampler] snapshot: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._halt.wait(max(0.0, self.interval - (time.perf_counter() - t)))

    def of_phase(self, phase: str) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.samples if s["phase"] == phase]


def summarize_memory(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Peaks and first/last-10% averages of the sampled memory of one phase."""
    out: dict[str, Any] = {"n_samples": len(rows)}
    if not rows:
        return out
    k = max(1, len(rows) // 10)
    warm = slice(k, 2 * k) if len(rows) >= 4 else slice(0, k)  # 10-20%: after worker start-up
    for kind in KINDS:
        rss = np.array([r[kind]["rss_max"] for r in rows])
        anon = np.array([r[kind]["anon_max"] for r in rows])
        out[kind] = {
            "max_processes": int(max(r[kind]["n"] for r in rows)),
            "peak_rss_mb": float(rss.max() / MB),
            "peak_hwm_mb": float(max(r[kind]["hwm_max"] for r in rows) / MB),
            "peak_anon_mb": float(anon.max() / MB),
            "peak_shmem_mb": float(max(r[kind]["shmem_max"] for r in rows) / MB),
            "peak_rss_sum_mb": float(max(r[kind]["rss_sum"] for r in rows) / MB),
            "first10_rss_mb": float(rss[:k].mean() / MB),
            "warm10_rss_mb": float(rss[warm].mean() / MB),
            "last10_rss_mb": float(rss[-k:].mean() / MB),
            "first10_anon_mb": float(anon[:k].mean() / MB),
            "warm10_anon_mb": float(anon[warm].mean() / MB),
            "last10_anon_mb": float(anon[-k:].mean() / MB),
        }
    store = [r["store"] for r in rows if r.get("store")]
    if store:
        used = np.array([s["used"] for s in store])
        kk = max(1, len(store) // 10)
        out["object_store"] = {
            "n_samples": len(store),
            "capacity_mb": float((store[0]["used"] + store[0]["avail"]) / MB),
            "peak_used_mb": float(used.max() / MB),
            "mean_used_mb": float(used.mean() / MB),
            "first10_used_mb": float(used[:kk].mean() / MB),
            "last10_used_mb": float(used[-kk:].mean() / MB),
            "peak_objects": int(max(s["n_objects"] for s in store)),
            "spilled_mb": float(max(s["spilled"] for s in store) / MB),
        }
    return out


class ProgressTap:
    """Progress stream for the driver: passes text on to stderr and keeps the last line."""

    def __init__(self, echo: bool) -> None:
        self.echo, self.last = echo, ""

    def write(self, text: str) -> int:
        lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
        if lines:
            self.last = lines[-1].strip()
        return sys.stderr.write(text) if self.echo else len(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return False


PROGRESS = ProgressTap(echo=False)


def write_snapshot(path: Path):
    """Sampler tick: write ``PATH.live.json`` with the memory summary of the running phase so far."""

    def tick(sampler: MemorySampler) -> None:
        phase = sampler.phase
        snap = {"phase": phase, "t": time.perf_counter() - sampler.t0, "progress": PROGRESS.last,
                "load_avg": os.getloadavg(), "memory": summarize_memory(sampler.of_phase(phase))}
        tmp = path.with_suffix(".live.tmp")
        tmp.write_text(json.dumps(snap, indent=1, default=float))
        tmp.replace(path.with_suffix(".live.json"))

    return tick


# ------------------------------------------------------------------------------------------------
# simulation (Ray tasks writing blocks of observations)
# ------------------------------------------------------------------------------------------------
def wobble_plan(n_obs: int, ra: float, dec: float):
    """Plan of ``n_obs`` observations cycling over 8 wobble positions: 4 position angles x 0.5/0.7 deg."""
    from gamma_ray_dist.simulate import plan_observations
    from gamma_ray_dist.simulate.events import offset_by

    k = np.arange(n_obs)
    pa = np.array([0.0, 180.0, 90.0, 270.0])[k % 4]
    offset = np.where((k // 4) % 2 == 0, 0.5, 0.7)
    pra, pdec = offset_by(ra, dec, pa, offset)
    return plan_observations(n_obs, ra, dec, pointings=np.column_stack([pra, pdec]))


def _write_block(path: str, plan, lo: int, hi: int, seed: int, block) -> list[dict]:
    from gamma_ray_dist.simulate import AnalyticIRFs, SourceModel, write_observation

    irfs, source = AnalyticIRFs(), SourceModel()
    return [write_observation(path, plan, i, irfs, source, seed, block) for i in range(lo, hi)]


def store_is_complete(path: Path, n_obs: int, seed: int) -> bool:
    info = path / "truth.json"
    if not (info.exists() and (path / "hdu-index.fits.gz").exists() and (path / "obs-index.fits.gz").exists()):
        return False
    meta = json.loads(info.read_text())
    return (meta.get("n_obs") == n_obs and meta.get("seed") == seed and meta.get("bench") == "wobble8"
            and len(list((path / "data").glob("obs_*.fits.gz"))) == n_obs)


def _write_block_job(shared: tuple, job: tuple[int, int]) -> list[dict]:
    """``backend.map`` job: write observations ``lo..hi-1`` (``shared`` = path, plan, seed, IRF block)."""
    path, plan, seed, block = shared
    lo, hi = job
    return _write_block(path, plan, lo, hi, seed, block)


def simulate_store(path: Path, n_obs: int, backend, seed: int = 0, block_size: int = 250) -> dict[str, Any]:
    """Write ``n_obs`` observations as ``backend.map`` jobs of ``block_size`` observations; returns figures."""
    from gamma_ray_dist.simulate import AnalyticIRFs, SourceModel, build_irf_block, truth, write_index_tables

    t0 = time.perf_counter()
    (path / "data").mkdir(parents=True, exist_ok=True)
    source, irfs = SourceModel(), AnalyticIRFs()
    plan = wobble_plan(n_obs, source.ra, source.dec)
    block = build_irf_block(irfs)
    jobs = [(lo, min(lo + block_size, n_obs)) for lo in range(0, n_obs, block_size)]
    results: list[dict] = []
    for part in backend.map(_write_block_job, jobs, shared=(str(path), plan, seed, block)):
        results.extend(part)
    write_index_tables(path, plan, results, block, False, source)
    summary = {"bench": "wobble8", "seed": int(seed), "n_obs": n_obs, "truth": truth(source),
               "n_events": int(sum(r["n_events"] for r in results))}
    (path / "truth.json").write_text(json.dumps(summary, indent=2))
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return {"seconds": time.perf_counter() - t0, "n_obs": n_obs, "n_events": summary["n_events"],
            "bytes": size, "block_size": block_size, "reused": False}


# ------------------------------------------------------------------------------------------------
# pipeline
# ------------------------------------------------------------------------------------------------
def write_config(work: Path, store: Path, obs_ids: list[int] | None, block_size: int, max_in_flight: int | None,
                 name: str, merge_fan_in: int | None = None) -> tuple[Path, Path]:
    """Analysis config (the demo's seed-like analysis on ``store``) and start models; their paths."""
    import yaml

    from gamma_ray_dist.pipeline.demo import demo_config_dict, demo_models_dict
    from gamma_ray_dist.simulate import SourceModel, truth

    source = SourceModel()
    cfg = demo_config_dict(store.resolve(), source.ra, source.dec)
    cfg.pop("flux_points", None)
    if obs_ids is not None:
        cfg["observations"]["obs_ids"] = [int(i) for i in obs_ids]
    cfg["ray"] = {"block_size": int(block_size), "max_in_flight": max_in_flight, "strict": False}
    if merge_fan_in is not None:
        cfg["ray"]["merge_fan_in"] = int(merge_fan_in)
    cfg_path = work / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t = {k: v for k, v in truth(source).items() if isinstance(v, (int, float))}
    models_path = work / "models.yaml"
    models_path.write_text(yaml.safe_dump(demo_models_dict(t), sort_keys=False))
    return cfg_path, models_path


def run_once(sampler: MemorySampler, work: Path, store: Path, n: int, args, fit: bool) -> dict[str, Any]:
    """Reduce (and fit) the first ``n`` observations on a fresh `RayBackend` (its own local Ray); figures."""
    import ray

    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.distributed import ExecutionSettings, RayBackend
    from gamma_ray_dist.pipeline import PipelineOptions, run_pipeline
    from gamma_ray_dist.pipeline.inputs import make_reduction_spec
    from gamma_ray_dist.pipeline.run import reduce_stacked, reduction_report
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    name = f"run{n}"
    cfg_path, models_path = write_config(work, store, list(range(1, n + 1)), args.block_size, args.max_in_flight,
                                         name, args.merge_fan_in)
    config = AnalysisConfig.read(cfg_path)
    out_dir = work / f"out-{n}"
    PROGRESS.echo = bool(args.progress)
    # flag > environment > config: the config written above carries block_size / max_in_flight
    settings = ExecutionSettings.resolve(config.ray, backend="ray", num_cpus=args.num_cpus, progress=PROGRESS)
    phase = f"reduce-{n}"
    peak_refs = max_refs = None
    with RayBackend(settings) as backend:
        t_ray = backend.timings.get("start", 0.0)
        sampler.set_phase(phase, ray.get_runtime_context().gcs_address)
        try:
            options = PipelineOptions(models=models_path, out_dir=out_dir)
            t1 = time.perf_counter()
            if fit:
                result = run_pipeline(config, options, backend)
                state, reduction, dataset = result.state, result.reduction, result.dataset
                timings = dict(result.timings)
                t_reduce = timings["reduce"]
            else:
                spec = make_reduction_spec(config)
                state, report = reduce_stacked(config, list(range(1, n + 1)), backend, spec)
                t_reduce = time.perf_counter() - t1
                peak_refs, max_refs = report.peak_refs_held, report.max_refs_held
                dataset = SummaryAccumulator.from_state(state).to_dataset(spec.name)
                reduction = reduction_report(list(range(1, n + 1)), state, report, {})
                timings = {"reduce": t_reduce}
                result = None
            t_total = time.perf_counter() - t1
        finally:
            sampler.set_phase("idle")
    stacked_counts = int(np.asarray(dataset.counts.data, dtype=np.int64).sum())
    per_obs = [o for o in reduction["observations"] if o.get("status") == "ok"]
    out: dict[str, Any] = {
        "n_obs": n,
        "n_ok": reduction["n_ok"],
        "n_failed": reduction["n_failed"],
        "ray_start_s": t_ray,
        "reduce_s": t_reduce,
        "total_s": t_total,
        "throughput_obs_per_s": n / t_reduce,
        "timings": timings,
        "driver_timings": reduction.get("driver_timings"),
        "task_stage_seconds": reduction.get("task_stage_seconds"),
        "mean_task_s": float(np.mean([o["seconds"] for o in per_obs])) if per_obs else None,
        "block_size": reduction.get("block_size"),
        "n_blocks": reduction.get("n_blocks"),
        "merge_fan_in": reduction.get("merge_fan_in"),
        "n_reducers": reduction.get("n_reducers"),
        "max_in_flight": reduction.get("max_in_flight"),
        "n_tasks": reduction.get("n_tasks"),
        # block-state refs held by the driver at once / its bound (only with --no-fit: run_pipeline
        # does not return the RunReport, and reduction.json does not carry these two)
        "peak_refs_held": peak_refs,
        "max_refs_held": max_refs,
        "stacked_counts": stacked_counts,
        "sum_per_obs_counts": int(sum(int(o["counts"]) for o in per_obs)),
        "memory": summarize_memory(sampler.of_phase(phase)),
    }
    if fit and result is not None and result.fit is not None:
        out["fit"] = {"success": result.fit["success"], "total_stat": result.fit["total_stat"],
                      "parameters": {p["name"]: [p["value"], p["error"]] for p in result.fit["parameters"]
                                     if not p["frozen"]}}
    shutil.rmtree(out_dir, ignore_errors=True)
    return out


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------
def _fmt(v: Any, nd: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def print_report(res: dict[str, Any]) -> None:
    runs = res["runs"]
    cols = [f"{r['n_obs']:,} obs" for r in runs]
    w = max(14, *(len(c) + 2 for c in cols))
    line = "-" * (44 + w * len(cols))

    def row(label: str, values: list[Any], nd: int = 1) -> None:
        print(f"{label:<44}" + "".join(f"{_fmt(v, nd):>{w}}" for v in values))

    sim = res["simulate"]
    print()
    print(f"simulate: {sim['n_obs']:,} observations, {sim['bytes'] / 1e9:.2f} GB, "
          + ("reused existing store" if sim["reused"] else
             f"{sim['seconds']:.1f} s ({sim['n_obs'] / sim['seconds']:.0f} obs/s, Ray tasks of {sim['block_size']} "
             f"observations)"))
    print(line)
    print(f"{'':<44}" + "".join(f"{c:>{w}}" for c in cols))
    print(line)
    row("observations reduced ok / failed", [f"{r['n_ok']}/{r['n_failed']}" for r in runs])
    row("wall time: reduce [s]", [r["reduce_s"] for r in runs])
    row("wall time: reduce + stack (+ fit) [s]", [r["total_s"] for r in runs])
    row("throughput [obs/s]", [r["throughput_obs_per_s"] for r in runs], 2)
    row("mean task time per obs [s]", [r["mean_task_s"] for r in runs], 3)
    row("blocks (block_size) / reducers", [f"{r['n_blocks']} ({r['block_size']}) / {r['n_reducers']}"
                                          for r in runs])
    row("block tasks / max in flight", [f"{r['n_tasks']} / {r['max_in_flight']}" for r in runs])
    if any(r.get("peak_refs_held") is not None for r in runs):
        row("driver refs held: peak / bound", [f"{r['peak_refs_held']} / {r['max_refs_held']}"
                                               if r.get("peak_refs_held") is not None else None for r in runs])
    row("stacked counts == sum of per-obs counts", [r["stacked_counts"] == r["sum_per_obs_counts"] for r in runs])
    labels = {"driver": "driver (this process)", "actor": "reduction actor (per process)",
              "worker": "worker (per process)", "system": "raylet/GCS/... (per process)"}
    for kind in KINDS:
        mems = [r["memory"].get(kind, {}) for r in runs]
        row(f"peak RSS {labels[kind]} [MB]", [m.get("peak_rss_mb") for m in mems])
        if kind != "system":
            row("   peak VmHWM (kernel peak RSS) [MB]", [m.get("peak_hwm_mb") for m in mems])
            row("   peak private (RssAnon) [MB]", [m.get("peak_anon_mb") for m in mems])
            row("   RSS avg first 10% -> last 10% [MB]",
                [f"{m['first10_rss_mb']:.0f} -> {m['last10_rss_mb']:.0f}" if m else None for m in mems])
            row("   RSS avg 10-20% -> last 10% [MB]",
                [f"{m['warm10_rss_mb']:.0f} -> {m['last10_rss_mb']:.0f}" if m else None for m in mems])
            row("   private avg 10-20% -> last 10% [MB]",
                [f"{m['warm10_anon_mb']:.0f} -> {m['last10_anon_mb']:.0f}" if m else None for m in mems])
            row("   max processes alive", [m.get("max_processes") for m in mems], 0)
    stores = [r["memory"].get("object_store", {}) for r in runs]
    row("object store capacity [MB]", [s.get("capacity_mb") for s in stores])
    row("object store peak used [MB]", [s.get("peak_used_mb") for s in stores])
    row("object store mean used [MB]", [s.get("mean_used_mb") for s in stores])
    row("object store used first 10% -> last 10% [MB]",
        [f"{s['first10_used_mb']:.1f} -> {s['last10_used_mb']:.1f}" if s else None for s in stores])
    row("object store peak objects", [s.get("peak_objects") for s in stores], 0)
    row("object store spilled [MB]", [s.get("spilled_mb") for s in stores])
    print(line)
    g = res.get("growth")
    if g:
        print(f"memory growth {g['small']:,} -> {g['big']:,} observations ({g['big'] / g['small']:.0f}x): "
              + ", ".join(f"{k} peak RSS x{v:.2f}" for k, v in g["peak_rss_ratio"].items())
              + (f"; object store peak x{g['store_peak_ratio']:.2f}" if g.get("store_peak_ratio") else ""))
    driver_peak = res.get("driver_ru_maxrss_mb")
    print(f"driver process peak RSS over the whole benchmark (getrusage): {driver_peak:.0f} MB")
    print(f"figures written to {res['json']}")


# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-obs", type=int, default=10_000, help="observations to simulate and reduce")
    parser.add_argument("--compare", type=int, default=None,
                        help="also reduce the first COMPARE observations first (default N/10; 0: no)")
    parser.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--no-fit", action="store_true", help="reduce and stack only (no fit)")
    parser.add_argument("--block-size", type=int, default=8,
                        help="observations folded by one reduction task into one state (ray.block_size)")
    parser.add_argument("--merge-fan-in", type=int, default=None,
                        help="block states merged per reducer below the root (ray.merge_fan_in; default 256)")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="reduction tasks in flight (default 2 x CPUs)")
    parser.add_argument("--sim-block-size", type=int, default=250, help="observations written per simulation task")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default="/tmp/grd-bench-scale", help="data store and outputs")
    parser.add_argument("--keep", action="store_true", help="keep the simulated data store")
    parser.add_argument("--json", help="output JSON (default WORK_DIR/bench_scale_N.json)")
    parser.add_argument("--interval", type=float, default=0.5, help="memory sampling period [s]")
    parser.add_argument("--progress", action="store_true", help="reduction progress on stderr")
    args = parser.parse_args(argv)

    import ray  # also puts ray's vendored psutil on sys.path

    from gamma_ray_dist.distributed import RayBackend

    n = int(args.n_obs)
    small = n // 10 if args.compare is None else int(args.compare)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    store = work / f"store-{n}"
    json_path = Path(args.json) if args.json else work / f"bench_scale_{n}.json"
    sampler = MemorySampler(args.interval, on_tick=write_snapshot(json_path), tick_every=30.0)
    sampler.start()
    res: dict[str, Any] = {"n_obs": n, "num_cpus": args.num_cpus, "block_size": args.block_size,
                           "merge_fan_in": args.merge_fan_in,
                           "max_in_flight": args.max_in_flight, "fit": not args.no_fit, "json": str(json_path),
                           "interval_s": args.interval, "load_avg_start": os.getloadavg()}
    t_all = time.perf_counter()
    try:
        if store_is_complete(store, n, args.seed):
            res["simulate"] = {"seconds": 0.0, "n_obs": n, "reused": True, "block_size": args.sim_block_size,
                               "bytes": sum(f.stat().st_size for f in store.rglob("*") if f.is_file())}
        else:
            shutil.rmtree(store, ignore_errors=True)
            with RayBackend(num_cpus=args.num_cpus, progress=False) as backend:
                sampler.set_phase("simulate", ray.get_runtime_context().gcs_address)
                try:
                    res["simulate"] = simulate_store(store, n, backend, args.seed, args.sim_block_size)
                finally:
                    sampler.set_phase("idle")
            res["simulate"]["memory"] = summarize_memory(sampler.of_phase("simulate"))
        print(f"simulate: {json.dumps({k: v for k, v in res['simulate'].items() if k != 'memory'})}", flush=True)
        res["runs"] = []
        sizes = ([small] if 0 < small < n else []) + [n]
        for size in sizes:
            r = run_once(sampler, work, store, size, args, fit=not args.no_fit)
            res["runs"].append(r)
            print(f"run {size}: reduce {r['reduce_s']:.1f} s, {r['throughput_obs_per_s']:.2f} obs/s, "
                  f"ok {r['n_ok']}/{size}", flush=True)
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(res, indent=1, default=float))  # partial results so far
        if len(res["runs"]) == 2:
            a, b = res["runs"]
            ratio = {k: b["memory"][k]["peak_rss_mb"] / a["memory"][k]["peak_rss_mb"]
                     for k in ("driver", "actor", "worker")
                     if a["memory"].get(k, {}).get("peak_rss_mb") and b["memory"].get(k)}
            sa, sb = a["memory"].get("object_store"), b["memory"].get("object_store")
            res["growth"] = {"small": a["n_obs"], "big": b["n_obs"], "peak_rss_ratio": ratio,
                             "store_peak_ratio": (sb["peak_used_mb"] / sa["peak_used_mb"])
                             if sa and sb and sa["peak_used_mb"] else None}
    finally:
        sampler.stop()
        res["total_s"] = time.perf_counter() - t_all
        res["driver_ru_maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        res["load_avg_end"] = os.getloadavg()
        res["samples"] = [s for s in sampler.samples if s["phase"] != "idle"][:: max(1, len(sampler.samples) // 2000)]
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(res, indent=1, default=float))
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True)
    print_report(res)
    ok = all(r["n_ok"] == r["n_obs"] and r["stacked_counts"] == r["sum_per_obs_counts"] for r in res["runs"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
