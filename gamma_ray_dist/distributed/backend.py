"""Execution backends: where reductions and independent jobs run. Created once, at the edge.

``with RayBackend(num_cpus=2) as backend: ...`` (or `SerialBackend`, or `make_backend(settings)`)
is the only place Ray is started, joined or shut down. Everything below takes the backend object:

``backend.reduce(obs_ids, task_fn, shared, make_accumulator)``
    The blocked, order-fixed reduction (see `blocks.ReductionPlan`); bit-identical across backends.
``backend.reduce(..., groups={obs_id: key}, on_group=None)``
    The same, one final state per group (per observation, night, time interval...) in one pass
    (see `blocks.GroupedPlan`): ``result.state`` is ``{key: state}`` in plan order.
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
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol, Sequence, TypeVar, runtime_checkable

from actors.protocols import AccumulatorFactory, TaskFn

from .blocks import (GroupedPlan, ReductionPlan, final_state, fold_block, fold_head, merge_group, record_block,
                     resolve_block_size, sorted_unique)
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

#: ``on_group(key, state) -> value``: called once per group as its state is final (state None when no
#: observation of the group could be reduced); ``result.state[key]`` is then the value, not the state.
GroupCallback = Callable[[Hashable, Any], Any]

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
               make_accumulator: AccumulatorFactory, *, groups: Mapping[int, Hashable] | None = None,
               on_group: GroupCallback | None = None, **overrides: Any) -> RunResult: ...

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]: ...

    def close(self) -> None: ...


class _BackendBase:
    """Context-manager plumbing shared by the backends."""

    name = "base"

    def __init__(self, settings: ExecutionSettings | None = None, **changes: Any) -> None:
        settings = settings or ExecutionSettings(backend=self.name)
        self.settings = settings.replace(backend=self.name, **changes)

    def start(self, defer: bool = False):
        """Ready the backend; ``defer`` lets a backend start at its first reduction instead, when
        it can use its start-up time better there (`RayBackend`)."""
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
               make_accumulator: AccumulatorFactory, *, groups: Mapping[int, Hashable] | None = None,
               on_group: GroupCallback | None = None, **overrides: Any) -> RunResult:
        """Fold the plan's blocks in order and merge them as the Ray tree does (same bits).

        With ``groups`` (obs id -> key): one state per group (`blocks.GroupedPlan`), ``on_group``
        called as each group is final; ``result.state`` is ``{key: state or on_group's value}``.

        ``run_dir`` (a `resume.RunDir`) makes an ungrouped run resumable: the reducers checkpoint there
        as on Ray, each block's statuses are recorded before its state is merged, and the blocks an
        earlier attempt made durable are not reduced again (a grouped run is not resumable).
        """
        from actors.ordered import OrderedReducer

        run_dir = overrides.pop("run_dir", None)
        for key in ("root_checkpoint_every", "checkpoint_every", "wait_timeout", "config_hash", "reducer_options"):
            overrides.pop(key, None)  # Ray tuning: nothing to tune here
        if groups is not None:
            return self._reduce_grouped(obs_ids, task_fn, shared, make_accumulator, groups, on_group, overrides)
        s = self._run_settings(overrides)
        t_start = time.perf_counter()
        ids, dups = sorted_unique(obs_ids)
        plan = ReductionPlan.create(ids, s.block_size, s.merge_fan_in)
        report = RunReport(s.run_id or "serial", "serial", resolve_block_size(s.block_size, len(ids)),
                           len(plan.blocks), s.merge_fan_in,
                           duplicate_obs_ids=dups, n_reducers=plan.n_reducers)
        resumed = run_dir.plan_resume(plan) if run_dir is not None else None
        tree = _SerialTree(plan, make_accumulator, OrderedReducer, run_dir, resumed)
        bar = make_progress(len(ids), s.progress)
        tick = _ObservationTicker(bar)
        n_done = n_failed = 0
        try:
            for b, block in enumerate(plan.blocks):
                if b in tree.held:
                    statuses, state = resumed.statuses[b], None
                    report.n_resumed += len(block)
                else:
                    tick.start(n_done, n_failed)
                    statuses, state = fold_block(task_fn, shared, block, make_accumulator, s.strict, tick)
                    report.n_tasks += 1
                n_failed += record_block(report, block, statuses, s.strict, None if b in tree.held else log)
                n_done += len(block)
                if b not in tree.held:
                    if run_dir is not None and tree.checkpointed:
                        run_dir.record(b, block, statuses)
                        run_dir.sync()
                    tree.add(b, state)
                if bar is not None:
                    bar.update(n_done, n_failed)
            final = tree.result()
        finally:
            if bar is not None:
                bar.close()
        report.timings["tasks"] = report.timings["total"] = time.perf_counter() - t_start
        return RunResult(final, report)

    def _reduce_grouped(self, obs_ids, task_fn, shared, make_accumulator, groups, on_group,
                        overrides) -> RunResult:
        s = self._run_settings(overrides)
        t_start = time.perf_counter()
        ids, dups = sorted_unique(obs_ids)
        plan = GroupedPlan.create(ids, groups, s.block_size, s.merge_fan_in)
        report = RunReport(s.run_id or "serial", "serial", s.block_size, len(plan.blocks), s.merge_fan_in,
                           duplicate_obs_ids=dups, n_groups=len(plan.keys))
        bar = make_progress(len(ids), s.progress)
        tick = _ObservationTicker(bar)
        results: dict[Hashable, Any] = {}
        n_done = n_failed = 0
        try:
            for key, group_plan in zip(plan.keys, plan.plans):
                states: list[dict | None] = []
                for block in group_plan.blocks:
                    tick.start(n_done, n_failed)
                    statuses, state = fold_block(task_fn, shared, block, make_accumulator, s.strict, tick)
                    report.n_tasks += 1
                    n_failed += record_block(report, block, statuses, s.strict, log)
                    n_done += len(block)
                    states.append(state)
                    if bar is not None:
                        bar.update(n_done, n_failed)
                state = merge_group(group_plan, states, make_accumulator)
                results[key] = on_group(key, state) if on_group is not None else state
        finally:
            if bar is not None:
                bar.close()
        report.timings["tasks"] = report.timings["total"] = time.perf_counter() - t_start
        return RunResult(results, report)

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        """``[fn(shared, job) for job in jobs]``."""
        return [fn(shared, job) for job in jobs]


class _ObservationTicker:
    """Serial progress per observation: the bar moves as each observation of a block is reduced.

    Failures are counted when the block's statuses are recorded (right after the block, as on Ray),
    so that a strict run's stopping observation is counted once, by the bar's ``close``.
    """

    def __init__(self, bar) -> None:
        self.bar, self.done, self.failed = bar, 0, 0

    def start(self, done: int, failed: int) -> None:
        self.done, self.failed = done, failed

    def __call__(self, status: dict) -> None:
        if self.bar is not None and status["ok"]:
            self.done += 1
            self.bar.update(self.done, self.failed)


class _SerialTree:
    """The plan's merge tree in this process: the same folds, in the same order, as the Ray reducers,
    done as the blocks come (one block state held at a time); with a run directory the reducers
    checkpoint into it exactly as the Ray ones do (same files, same keys), so either backend resumes
    the other's run."""

    def __init__(self, plan: ReductionPlan, make_accumulator: AccumulatorFactory, reducer_cls, run_dir=None,
                 resumed=None) -> None:
        self.plan, self.make, self.cls, self.run_dir = plan, make_accumulator, reducer_cls, run_dir
        self.checkpointed = run_dir is not None and plan.n_reducers > 0
        self.held = resumed.blocks if resumed is not None else frozenset()
        self.group_of = {b: g for g, group in enumerate(plan.groups) for b in group}
        self.single: dict | None = None
        self.root = None
        self.group: tuple[int, Any] | None = None  # (index, reducer) of the group being merged
        if plan.n_reducers:
            self.root = self._reducer("root", range(len(plan.groups) or len(plan.blocks)))
            self.next_group = self.root.progress()["acknowledged"] if plan.groups else 0

    def _reducer(self, tag: str, keys):
        from .resume import CHECKPOINT_EVERY

        kwargs = {}
        if self.checkpointed:
            kwargs = dict(checkpoint_path=self.run_dir.checkpoint_dir / f"{tag}.pkl",
                          checkpoint_every=CHECKPOINT_EVERY["root" if tag == "root" else "group"],
                          config_hash=self.run_dir.config_hash)
        return self.cls(keys, self.make, mode="merge", **kwargs)

    @staticmethod
    def _offer(reducer, key: int, state: dict | None) -> None:
        if state is None:
            reducer.skip(key, "no observation of the block could be reduced")
        else:
            reducer.add(key, state)

    def add(self, b: int, state: dict | None) -> None:
        if self.root is None:
            self.single = state
        elif not self.plan.groups:
            self._offer(self.root, b, state)
        else:
            self._close_groups_before(self.group_of[b])
            self._offer(self._group(self.group_of[b]), b, state)

    def _group(self, g: int):
        if self.group is None or self.group[0] != g:
            self.group = (g, self._reducer(f"group{g:05d}", self.plan.groups[g]))
        return self.group[1]

    def _close_groups_before(self, g_stop: int) -> None:
        """Merge into the root every group below ``g_stop`` (a group all of whose blocks were held
        by an earlier attempt is restored from its checkpoint and merged here)."""
        while self.next_group < g_stop:
            g = self.next_group
            _, state = self._group(g).finalize()
            if state is None:
                raise RuntimeError(f"group {g} of the merge tree is incomplete")
            self.root.add(g, state)
            self.group = None
            self.next_group += 1

    def result(self) -> dict:
        if self.root is None:
            return final_state(self.single, self.make)
        if self.plan.groups:
            self._close_groups_before(len(self.plan.groups))
        _, state = self.root.finalize()
        if state is None:
            raise RuntimeError("the merge tree is incomplete")
        return state


class RayBackend(_BackendBase):
    """A local Ray of our own, or a cluster; reductions as block tasks, jobs as tasks.

    Joins a Ray already initialised in this process (and leaves it running at `close`); otherwise
    connects to ``settings.address`` or starts a private local Ray (never a stray cluster) with only
    the processes a run needs (`local_ray`; the dashboard only with ``include_dashboard``), and shuts
    it down at `close`.

    Head start: when a reduction finds the private local Ray still to be started (``start(defer=True)``,
    as the pipeline does), this process folds the plan's first blocks itself while Ray starts, then
    hands them to the reduction (`blocks.fold_head`): the seconds of ``ray.init`` are not lost, and the
    result keeps its bits (the same blocks, folded the same way).
    """

    name = "ray"

    def __init__(self, settings: ExecutionSettings | None = None, *, reuse_reducers: bool = True,
                 **changes: Any) -> None:
        super().__init__(settings, **changes)
        self.reuse_reducers = reuse_reducers
        self.pool = None
        self._owns_ray = False
        self._cpus: int | None = None
        self._deferred = False
        self._node = None  # the local node this backend started itself (`local_ray.start_lean_node`)
        self.timings: dict[str, float] = {}

    def start(self, defer: bool = False) -> "RayBackend":
        """Start, connect to, or join Ray (idempotent).

        With ``defer``, a private local Ray (no address, none running in this process) is started by
        the first reduction instead, behind its head start (see the class docstring); anything else
        that needs Ray (``cpus``, `map`) starts it first.
        """
        if defer and self._cpus is None and not self.settings.address and not self._ray_running():
            self._deferred = True
            return self
        self._deferred = False
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
                if not s.include_dashboard:  # only the processes the run needs (see local_ray)
                    from .local_ray import start_lean_node

                    self._node = start_lean_node(s.num_cpus)
                if self._node is not None:
                    try:
                        ray.init(address=self._node.address, log_to_driver=False)
                    except BaseException:
                        from .local_ray import stop_node

                        stop_node(self._node)
                        self._node = None
                        raise
                else:
                    ray.init(address="local", num_cpus=s.num_cpus, include_dashboard=s.include_dashboard,
                             log_to_driver=False)
            self._owns_ray = True
        self._cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        if self.reuse_reducers:
            from .links import ReducerPool

            self.pool = ReducerPool()
        self.timings["start"] = time.perf_counter() - t0
        return self

    @staticmethod
    def _ray_running() -> bool:
        return "ray" in sys.modules and sys.modules["ray"].is_initialized()

    @property
    def cpus(self) -> int:
        if self._cpus is None:
            self.start()
        return self._cpus

    def _start_with_head(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
                         make_accumulator: AccumulatorFactory, settings: ExecutionSettings,
                         run_dir: Any, max_blocks: int) -> dict[int, tuple[list, Any]]:
        """Start Ray (in this thread, as Ray wants) while a thread folds the plan's first blocks;
        returns them (`blocks.fold_head`). The blocks a run directory holds already are skipped."""
        import threading

        plan = ReductionPlan.create(sorted_unique(obs_ids)[0], settings.block_size, settings.merge_fan_in)
        skip = run_dir.plan_resume(plan).blocks if run_dir is not None else ()
        stop, box = threading.Event(), {}

        def fold() -> None:
            try:
                box["head"] = fold_head(plan, task_fn, shared, make_accumulator, stop, strict=settings.strict,
                                        skip=skip, max_blocks=max_blocks)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                box["error"] = exc

        thread = threading.Thread(target=fold, name="grd-head-start", daemon=True)
        thread.start()
        try:
            self.start()
            # Ray is up, its workers are not: start them (and the root reducer) while the head start
            # goes on, so that the reduction's first tasks find them ready
            if self.pool is not None:
                self.pool.prestart(1)
            from .tasks import warm_workers

            warm_workers(min(self.cpus, len(plan.blocks)), _task_modules(task_fn, shared, make_accumulator))
        finally:
            stop.set()  # the block under way is finished, then the thread returns
            thread.join()
        if "error" in box:
            raise box["error"]
        return box.get("head", {})

    def close(self) -> None:
        """Kill the warm reducers; shut Ray down if this backend started or connected it."""
        if self.pool is not None:
            self.pool.shutdown()
            self.pool = None
        if self._owns_ray:
            import ray

            if ray.is_initialized():
                ray.shutdown()
            if self._node is not None:
                from .local_ray import stop_node

                stop_node(self._node)
                self._node = None
            self._owns_ray = False
        self._cpus = None

    def reduce(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any,
               make_accumulator: AccumulatorFactory, *, groups: Mapping[int, Hashable] | None = None,
               on_group: GroupCallback | None = None, **overrides: Any) -> RunResult:
        """The reduction on Ray (`driver.RayReduction`); same result as `SerialBackend.reduce`.

        ``overrides`` change settings for this call (e.g. ``block_size``, ``strict``, ``run_id``);
        ``root_checkpoint_every``, ``checkpoint_every`` and ``config_hash`` tune the reducers' checkpoints,
        ``reducer_options`` their Ray actor options; ``run_dir`` (a `resume.RunDir`) makes the run
        resumable (see `driver.RayReduction`). With ``groups``: `grouped.GroupedRayReduction` (one state
        per group, as `SerialBackend.reduce`; not resumable).
        """
        from .driver import DEFAULT_ROOT_CHECKPOINT_EVERY, RayReduction, root_refs_bound

        obs_ids = list(obs_ids)
        head: dict[int, tuple[list, Any]] = {}
        if self._deferred and groups is None:
            s = self._run_settings({k: v for k, v in overrides.items()
                                    if k in ExecutionSettings.__dataclass_fields__})
            # at most what the reduction may hold before it is durable (the local Ray: num_cpus, else all)
            limit = root_refs_bound(s.max_in_flight_for(self.settings.num_cpus or os.cpu_count() or 1),
                                    overrides.get("root_checkpoint_every", DEFAULT_ROOT_CHECKPOINT_EVERY))
            head = self._start_with_head(obs_ids, task_fn, shared, make_accumulator, s,
                                         overrides.get("run_dir"), limit)
        cpus = self.cpus
        if groups is not None:
            from .grouped import GroupedRayReduction

            for key in ("root_checkpoint_every", "checkpoint_every", "config_hash", "run_dir", "reducer_options"):
                overrides.pop(key, None)  # a grouped run has no reducer actors to checkpoint
            wait_timeout = overrides.pop("wait_timeout", 1.0)
            s = self._run_settings(overrides)
            return GroupedRayReduction(obs_ids, task_fn, shared, make_accumulator, groups, on_group=on_group,
                                       block_size=s.block_size, merge_fan_in=s.merge_fan_in,
                                       max_in_flight=s.max_in_flight_for(cpus), strict=s.strict,
                                       max_retries=s.max_retries, run_id=s.run_id, progress=s.progress,
                                       wait_timeout=wait_timeout).run()
        tuning = {k: overrides.pop(k) for k in ("root_checkpoint_every", "checkpoint_every", "wait_timeout",
                                                "config_hash", "run_dir", "reducer_options") if k in overrides}
        s = self._run_settings(overrides)
        run = RayReduction(obs_ids, task_fn, shared, make_accumulator, block_size=s.block_size,
                           merge_fan_in=s.merge_fan_in, max_in_flight=s.max_in_flight_for(cpus),
                           pool=self.pool, strict=s.strict, max_retries=s.max_retries,
                           checkpoint_dir=s.checkpoint_dir, run_id=s.run_id, progress=s.progress,
                           root_checkpoint_every=tuning.pop("root_checkpoint_every", DEFAULT_ROOT_CHECKPOINT_EVERY),
                           head=head, **tuning)
        return run.run()

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        """``[fn(shared, job) for job in jobs]`` as Ray tasks, results in job order.

        ``shared`` is put once and cached per worker process; at most 2 x CPUs tasks are in flight,
        handed out in job order (put the longest jobs first). The first failing job raises.
        """
        from .tasks import map_tasks

        return map_tasks(fn, list(jobs), shared, max_in_flight=2 * self.cpus)


def _task_modules(task_fn: Any, shared: Any, make_accumulator: Any) -> list[str]:
    """The modules unpickling a reduction's task inputs imports (the warm-up of `RayBackend`)."""
    objects = [task_fn, getattr(make_accumulator, "func", make_accumulator)]
    objects += list(shared.values()) if isinstance(shared, dict) else [shared]
    names = {getattr(o, "__module__", None) if callable(o) else type(o).__module__ for o in objects}
    return sorted(n for n in names if n and n != "builtins" and not n.startswith("__"))


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

    The probe reduces the first two observations in this process. When serial is chosen, their
    results are used as they are (the same function on the same input: the same bits), so a small
    run pays nothing for the probe; Ray reduces them again. Later calls go to the chosen backend.
    ``choice`` is ``(name, reason)`` once decided.
    """

    name = "auto"

    def __init__(self, settings: ExecutionSettings | None = None, **changes: Any) -> None:
        super().__init__(settings, **changes)
        self.chosen: SerialBackend | RayBackend | None = None
        self._choice: tuple[str, str] | None = None
        self._probed: dict[int, Any] = {}

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
                    self._probed[obs_id] = task_fn(shared, obs_id)
                except Exception:  # noqa: BLE001 - the chosen backend reports it properly
                    break
                times.append(time.perf_counter() - t0)
        name, reason = choose_backend(self.settings, len(set(obs_ids)), times[0] if times else None,
                                      times[1] if len(times) > 1 else None)
        self._choice = (name, reason)
        # Ray is started by its first reduction, behind a head start (see RayBackend)
        self.chosen = (RayBackend if name == "ray" else SerialBackend)(self.settings).start(defer=True)
        if name == "ray":
            self._probed.clear()
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
               make_accumulator: AccumulatorFactory, *, groups: Mapping[int, Hashable] | None = None,
               on_group: GroupCallback | None = None, **overrides: Any) -> RunResult:
        obs_ids = list(obs_ids)
        if self.chosen is None:
            self._decide(obs_ids, task_fn, shared)
        if self._probed:  # serial chosen: the probe's results stand for their observations (once)
            task_fn, self._probed = _Probed(task_fn, self._probed), {}
        if groups is not None:
            overrides.update(groups=groups, on_group=on_group)
        return self.chosen.reduce(obs_ids, task_fn, shared, make_accumulator, **overrides)

    def map(self, fn: Callable[[S, J], R], jobs: Sequence[J], shared: S = None) -> list[R]:
        if self.chosen is None:  # nothing was reduced: small work, stay in this process
            return [fn(shared, job) for job in jobs]
        return self.chosen.map(fn, jobs, shared)

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()


class _Probed:
    """``task_fn`` that first returns the results the auto backend's probe already computed."""

    def __init__(self, task_fn: TaskFn, results: dict[int, Any]) -> None:
        self.task_fn, self.results = task_fn, dict(results)

    def __call__(self, shared: Any, obs_id: int) -> Any:
        if obs_id in self.results:
            return self.results.pop(obs_id)
        return self.task_fn(shared, obs_id)


def make_backend(settings: ExecutionSettings) -> SerialBackend | RayBackend | AutoBackend:
    """The backend ``settings.backend`` names (not started: use it as a context manager)."""
    return {"serial": SerialBackend, "ray": RayBackend, "auto": AutoBackend}[settings.backend](settings)
