"""Execution backends: where reductions and independent jobs run. Created once, at the edge.

``with RayBackend(num_cpus=2) as backend: ...`` (or `SerialBackend`, or `make_backend(settings)`)
is the only place Ray is started, joined or shut down. Everything below takes the backend object:

``backend.reduce(obs_ids, task_fn, shared, make_accumulator)``
    The blocked, order-fixed reduction (see `blocks.ReductionPlan`); bit-identical across backends.
``backend.map(fn, jobs, shared=None)``
    ``[fn(shared, job) for job in jobs]``, results in job order; on Ray ``shared`` is put into the
    object store once and deserialised once per worker process, the jobs run as tasks.
``backend.cpus``
    Workers available (1 for serial).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Iterable, Protocol, Sequence, TypeVar, runtime_checkable

from actors.protocols import AccumulatorFactory, TaskFn

from .blocks import ReductionPlan, final_state, fold_block, reraise, sorted_unique
from .progress import make_progress
from .report import RunReport, RunResult
from .settings import ExecutionSettings

__all__ = ["Backend", "SerialBackend", "RayBackend", "AutoBackend", "make_backend", "choose_backend",
           "EXPECTED_RAY_STARTUP_S", "EXPECTED_RAY_EFFICIENCY"]

#: Seconds a fresh local Ray costs before its workers reduce (``ray.init`` 3.1-4.6 s, then 2.0-2.4 s until
#: the first task runs: worker start, imports), measured with the CLI on a 2-core machine.
EXPECTED_RAY_STARTUP_S = 6.0

#: Speed-up per CPU of the reduction on a local Ray (same machine: 1000 simulated observations
#: reduced 1.53x faster on 2 CPUs than serially, the 2-process ceiling being ~1.7x).
EXPECTED_RAY_EFFICIENCY = 0.8

log = logging.getLogger(__name__)

S = TypeVar("S")
J = TypeVar("J")
R = TypeVar("R")


@runtime_checkable
class Backend(Protocol):
    """What the pipeline, the fits and the estimators need from an execution backend."""

    settings: ExecutionSettings

    @property
    def cpus(self) -> int: ...

    def reduce(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
               make_accumulator: AccumulatorFactory, **overrides: Any) -> RunResult: ...

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]: ...

    def close(self) -> None: ...


class _BackendBase:
    """Context-manager plumbing shared by the backends."""

    name = "base"

    def __init__(self, settings: ExecutionSettings | None = None, **changes: Any) -> None:
        settings = settings or ExecutionSettings(backend=self.name)
        self.settings = settings.replace(backend=self.name, **changes)

    def start(self):
        return self

    def close(self) -> None:
        pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def choice(self) -> tuple[str, str]:
        """``(backend name, reason)``: what runs, and why."""
        return self.name, "asked for"

    def _run_settings(self, overrides: dict[str, Any]) -> ExecutionSettings:
        return self.settings.replace(**overrides) if overrides else self.settings


class SerialBackend(_BackendBase):
    """Everything in this process, in order: the reference every other backend equals bit for bit."""

    name = "serial"

    @property
    def cpus(self) -> int:
        return 1

    def reduce(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
               make_accumulator: AccumulatorFactory, **overrides: Any) -> RunResult:
        """Fold the plan's blocks in order and merge them as the Ray tree does (same bits)."""
        from actors.ordered import OrderedReducer

        s = self._run_settings(overrides)
        t_start = time.perf_counter()
        ids, dups = sorted_unique(obs_ids)
        plan = ReductionPlan.create(ids, s.block_size, s.merge_fan_in)
        report = RunReport(s.run_id or "serial", "serial", s.block_size, len(plan.blocks), s.merge_fan_in,
                           duplicate_obs_ids=dups, n_reducers=plan.n_reducers)
        bar = make_progress(len(ids), s.progress)
        states: list[dict | None] = []
        n_done = n_failed = 0
        try:
            for block in plan.blocks:
                statuses, state = fold_block(task_fn, shared, block, make_accumulator, s.strict)
                report.n_tasks += 1
                for obs_id, status in zip(block, statuses):
                    entry = report.record(status, obs_id)
                    n_done += 1
                    if entry.status == "failed":
                        n_failed += 1
                        log.warning("observation %s failed: %s: %s", obs_id, entry.error_type, entry.message)
                        if s.strict:
                            reraise(status, obs_id)
                states.append(state)
                if bar is not None:
                    bar.update(n_done, n_failed)
        finally:
            if bar is not None:
                bar.close()
        final = _merge_serial(plan, states, make_accumulator, OrderedReducer)
        report.timings["tasks"] = report.timings["total"] = time.perf_counter() - t_start
        return RunResult(final, report)

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        """``[fn(shared, job) for job in jobs]``."""
        return [fn(shared, job) for job in jobs]


def _merge_serial(plan: ReductionPlan, states: list, make_accumulator: AccumulatorFactory, reducer_cls) -> dict:
    """The plan's merge tree in this process: the same folds, in the same order, as the reducers."""
    if len(plan.blocks) <= 1:
        return final_state(states[0] if states else None, make_accumulator)

    def merge(keys: Sequence[int], items: Sequence[dict | None]) -> dict:
        reducer = reducer_cls(keys, make_accumulator, mode="merge")
        for key, item in zip(keys, items):
            if item is None:
                reducer.skip(key, "empty")
            else:
                reducer.add(key, item)
        return reducer.finalize()[1]

    if not plan.groups:
        return merge(range(len(states)), states)
    group_states = [merge(group, [states[b] for b in group]) for group in plan.groups]
    return merge(range(len(group_states)), group_states)


class RayBackend(_BackendBase):
    """A local Ray of our own, or a cluster; reductions as block tasks, jobs as tasks.

    Joins a Ray already initialised in this process (and leaves it running at `close`); otherwise
    connects to ``settings.address`` or starts a private local Ray (``address="local"``: never a
    stray cluster), without the dashboard unless ``include_dashboard``, and shuts it down at `close`.
    """

    name = "ray"

    def __init__(self, settings: ExecutionSettings | None = None, *, reuse_reducers: bool = True,
                 **changes: Any) -> None:
        super().__init__(settings, **changes)
        self.reuse_reducers = reuse_reducers
        self.pool = None
        self._owns_ray = False
        self._cpus: int | None = None
        self.timings: dict[str, float] = {}

    def start(self) -> "RayBackend":
        """Start, connect to, or join Ray (idempotent)."""
        if not self.settings.address and "ray" not in sys.modules:
            # A private local Ray keeps token authentication on (Ray's default for a new local
            # cluster). Saying so with Ray's documented setting stops Ray from warning about it on
            # every run; it must be in the environment before Ray reads its configuration (at import),
            # and a value the user set is left alone.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray

        if self._cpus is not None and ray.is_initialized():
            return self
        t0 = time.perf_counter()
        if not ray.is_initialized():
            s = self.settings
            if s.address:
                ray.init(address=s.address, log_to_driver=False)
            else:
                # Our own local Ray: workers at normal priority (Ray's default niceness 15 starves
                # them on a machine shared with other work); an explicit $RAY_worker_niceness wins.
                os.environ.setdefault("RAY_worker_niceness", "0")
                ray.init(address="local", num_cpus=s.num_cpus, include_dashboard=s.include_dashboard,
                         log_to_driver=False)
            self._owns_ray = True
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if self.reuse_reducers:
            from .links import ReducerPool

            self.pool = ReducerPool()
        self.timings["start"] = time.perf_counter() - t0
        return self

    @property
    def cpus(self) -> int:
        if self._cpus is None:
            self.start()
        return self._cpus

    def close(self) -> None:
        """Kill the warm reducers; shut Ray down if this backend started or connected it."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if self._owns_ray:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            self._owns_ray = False
        self._cpus = None

    def reduce(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
               make_accumulator: AccumulatorFactory, **overrides: Any) -> RunResult:
        """The reduction on Ray (`driver.RayReduction`); same result as `SerialBackend.reduce`.

        ``overrides`` change settings for this call (e.g. ``block_size``, ``strict``, ``run_id``);
        ``root_checkpoint_every``, ``checkpoint_every`` and ``config_hash`` tune the reducers' checkpoints.
        """
        from .driver import DEFAULT_ROOT_CHECKPOINT_EVERY, RayReduction

        cpus = self.cpus
        tuning = {k: overrides.pop(k) for k in ("root_checkpoint_every", "checkpoint_every", "wait_timeout",
                                                "config_hash") if k in overrides}
        s = self._run_settings(overrides)
        run = RayReduction(obs_ids, task_fn, shared, make_accumulator, block_size=s.block_size,
                           merge_fan_in=s.merge_fan_in, max_in_flight=s.max_in_flight_for(cpus),
                           pool=self.pool, strict=s.strict, max_retries=s.max_retries,
                           checkpoint_dir=s.checkpoint_dir, run_id=s.run_id, progress=s.progress,
                           root_checkpoint_every=tuning.pop("root_checkpoint_every", DEFAULT_ROOT_CHECKPOINT_EVERY),
                           **tuning)
        return run.run()

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        """``[fn(shared, job) for job in jobs]`` as Ray tasks, results in job order.

        ``shared`` is put once and cached per worker process; at most 2 x CPUs tasks are in flight,
        handed out in job order (put the longest jobs first). The first failing job raises.
        """
        from .tasks import map_tasks

        return map_tasks(fn, list(jobs), shared, max_in_flight=2 * self.cpus)


def choose_backend(settings: ExecutionSettings, n_obs: int, first_seconds: float | None,
                   steady_seconds: float | None, local_cpus: int | None = None) -> tuple[str, str]:
    """``(backend name, reason)`` for ``backend="auto"``.

    Ray when an address names a cluster (flag, ``$RAY_ADDRESS`` or config); else Ray when the
    estimated serial reduction, shared over the local CPUs, saves more than a local Ray costs to
    start (`EXPECTED_RAY_STARTUP_S`): ``serial * (1 - 1/(efficiency * cpus)) > startup``, with the
    measured per-CPU efficiency `EXPECTED_RAY_EFFICIENCY`. The serial estimate is
    ``first + (n_obs - 1) * steady`` from observations reduced as a probe in this process.
    """
    if settings.address:
        return "ray", f"a Ray cluster is named ({settings.address})"
    cpus = int(local_cpus or settings.num_cpus or os.cpu_count() or 1)
    if cpus < 2:
        return "serial", "one CPU: Ray cannot run anything in parallel"
    if first_seconds is None:
        return "ray", "the reduction time could not be estimated (the probe observation failed)"
    steady = first_seconds if steady_seconds is None else steady_seconds
    serial = first_seconds + max(0, n_obs - 1) * steady
    saving = serial * (1.0 - 1.0 / (EXPECTED_RAY_EFFICIENCY * cpus))
    detail = (f"estimated serial reduction {serial:.1f} s for {n_obs} observations "
              f"({1e3 * steady:.0f} ms each); {cpus} CPUs would save {saving:.1f} s, a local Ray costs "
              f"~{EXPECTED_RAY_STARTUP_S:.0f} s to start")
    return ("ray", detail) if saving > EXPECTED_RAY_STARTUP_S else ("serial", detail)


class AutoBackend(_BackendBase):
    """Serial or Ray, decided at the first reduction from its size and a timed probe (see `choose_backend`).

    The probe reduces the first two observations in this process (they are reduced again by the
    chosen backend, so the result is exactly that backend's); later calls go to the chosen backend.
    ``choice`` is ``(name, reason)`` once decided.
    """

    name = "auto"

    def __init__(self, settings: ExecutionSettings | None = None, **changes: Any) -> None:
        super().__init__(settings, **changes)
        self.chosen: SerialBackend | RayBackend | None = None
        self._choice: tuple[str, str] | None = None

    @property
    def choice(self) -> tuple[str, str]:
        return self._choice or ("auto", "not decided yet: nothing was reduced")

    @property
    def cpus(self) -> int:
        return self.chosen.cpus if self.chosen is not None else 1

    def _decide(self, obs_ids: list[int], task_fn: TaskFn, shared: Any) -> None:
        times: list[float] = []
        if not self.settings.address:
            for obs_id in sorted(set(int(o) for o in obs_ids))[:2]:
                t0 = time.perf_counter()
                try:
                    task_fn(shared, obs_id)
                except Exception:  # noqa: BLE001 - the chosen backend reports it properly
                    break
                times.append(time.perf_counter() - t0)
        name, reason = choose_backend(self.settings, len(set(obs_ids)), times[0] if times else None,
                                      times[1] if len(times) > 1 else None)
        self._choice = (name, reason)
        self.chosen = (RayBackend if name == "ray" else SerialBackend)(self.settings).start()
        if self.settings.progress is not False:
            stream = None if self.settings.progress is True else self.settings.progress
            print(f"backend: {name} ({reason})", file=stream or sys.stderr, flush=True)

    def choose(self, name: str, reason: str) -> "SerialBackend | RayBackend":
        """Decide now, for work sized without a probe (a joint fit above the measured crossover).

        Returns the chosen backend, started; a backend already chosen stays as it is.
        """
        if self.chosen is None:
            self._choice = (name, reason)
            self.chosen = (RayBackend if name == "ray" else SerialBackend)(self.settings).start()
        return self.chosen

    def reduce(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
               make_accumulator: AccumulatorFactory, **overrides: Any) -> RunResult:
        obs_ids = list(obs_ids)
        if self.chosen is None:
            self._decide(obs_ids, task_fn, shared)
        return self.chosen.reduce(obs_ids, task_fn, shared, make_accumulator, **overrides)

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        if self.chosen is None:  # nothing was reduced: small work, stay in this process
            return [fn(shared, job) for job in jobs]
        return self.chosen.map(fn, jobs, shared)

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()


def make_backend(settings: ExecutionSettings) -> SerialBackend | RayBackend | AutoBackend:
    """The backend ``settings.backend`` names (not started: use it as a context manager)."""
    return {"serial": SerialBackend, "ray": RayBackend, "auto": AutoBackend}[settings.backend](settings)
