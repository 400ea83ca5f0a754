"""Distributed dispatch: Ray tasks over packs of observations feeding an order-fixed reduction tree.

`run_distributed` runs ``task_fn(shared, obs_id) -> Partial`` for every observation in Ray tasks
(at most ``max_in_flight`` at a time, submitted in sorted obs id order, collected with `ray.wait`
in batches) and forwards the finished partials *by ObjectRef* to the leaf reducer of their chunk
(`actors.reduction.ReductionActor`), so partials go from worker to actor without passing through
the driver. Leaves fold their chunk in sorted obs id order; a root folds the chunk states in chunk
order. The tree depends only on the sorted ids and ``fan_in``, so the float64 result is
bit-identical to `run_serial` whatever the worker count, arrival order, retries or restarts.

A task reduces a *pack* of consecutive observations and returns their partials together (one
status list, one object), because a Ray task has a fixed cost (scheduling, the driver's
bookkeeping, one reducer call: several ms of CPU, a good part of the 20 ms it takes to reduce a
H.E.S.S. observation). Packs shrink as the run proceeds (`pack_size`: the unsubmitted
observations over the cluster CPUs, at most ``max_obs_per_task``) so the last tasks are small
and the workers finish together. Packing decides only where observations are reduced: the leaves
still add partials one observation at a time in sorted order, so packs change no bit of the result.

Failures: a task raising records ``(obs_id, error type, message, file)`` and the observation is
skipped (``strict=True`` re-raises instead); a crashed worker is retried ``max_retries`` times by
Ray (exceptions are not retried: they are data errors). A reducer actor that dies is restarted by
Ray (``max_restarts``) or replaced; the driver notices a new incarnation in the replies and
re-sends everything the new incarnation has not acknowledged (adds are idempotent), restoring from
the reducer's checkpoint when there is one.

Memory is bounded independently of the number of observations:

* the root always checkpoints (atomically: temp file + ``os.replace``) every ``root_checkpoint_every``
  merges, by default to a run-local temporary directory (removed at the end of the run), and the
  driver drops each chunk-state ref as soon as the root reports it durable;
* leaves checkpoint only when ``checkpoint_dir`` is given; otherwise the driver keeps the partial
  refs of a chunk until the leaf has produced its state (that is what a restarted leaf is rebuilt
  from), so a leaf holds at most ``fan_in`` partials;
* at most ``max_open_chunks`` chunks are in the pipeline at once (leaf alive, or chunk state not yet
  durable in the root): submission waits for a slot before it opens a new chunk. So live leaf
  actors, partial refs (<= max_open_chunks x fan_in) and chunk-state refs (<= max_open_chunks) are
  bounded; the run report records the peaks (``peak_open_chunks``, ``peak_chunk_refs_held``,
  ``peak_partial_refs_held``).

The driver holds ObjectRefs only and fetches one object of dataset size: the final state.

Fixed per-run cost: reducer actors come from `REDUCER_POOL`, warm processes this driver process keeps
across runs (``reset`` for a new chunk, ``clear`` when given back), started at the beginning of a run in
parallel with its first tasks when none is idle; the task function travels inside the ``shared`` object
so the remote function is exported once per process; a one-chunk plan has no root (the leaf's state is
final). Worker processes keep their per-spec caches across tasks and runs (keyed by the spec's content).
"""
from __future__ import annotations

import itertools
import logging
import os
import pickle
import math
import shutil
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, NamedTuple, TextIO

import ray

from actors.protocols import Accumulator, AccumulatorFactory, Partial, TaskFn
from actors.reduction import OrderedReducer, ReductionActor
from actors.refs import Failed, get_each
from actors.tree import chunk_index, plan_chunks

from .progress import Progress
from .reducer_links import REDUCER_POOL, ReducerLink, ReducerPool

__all__ = [
    "Accumulator",
    "AccumulatorFactory",
    "Partial",
    "TaskFn",
    "ObsStatus",
    "RunReport",
    "RunResult",
    "ensure_ray",
    "run_distributed",
    "run_serial",
    "DEFAULT_FAN_IN",
    "DEFAULT_MAX_OBS_PER_TASK",
    "DEFAULT_ROOT_CHECKPOINT_EVERY",
    "pack_size",
    "ReducerPool",
    "REDUCER_POOL",
]

log = logging.getLogger(__name__)

#: Observations folded by one leaf reducer. Part of the result's definition (the float64 sum order).
DEFAULT_FAN_IN = 32

#: Largest pack of observations one task reduces (see `pack_size`).
DEFAULT_MAX_OBS_PER_TASK = 8

#: Chunk merges between two checkpoints of the root reducer (unless ``checkpoint_every`` is smaller).
#: A root checkpoint writes one stacked state (a few MB for DR1-like geometries: ~10-50 ms with the
#: fsync) per ``4 * fan_in`` observations, i.e. seconds of reduction work, so the cost is ~1 %;
#: the driver holds at most this many durable-pending chunk states (plus the open chunks).
DEFAULT_ROOT_CHECKPOINT_EVERY = 4


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
@dataclass
class ObsStatus:
    """Outcome of one observation."""

    obs_id: int
    status: Literal["ok", "failed"]
    error_type: str | None = None
    message: str | None = None
    filename: str | None = None
    seconds: float = 0.0  # wall time of task_fn in the worker
    started: float = 0.0  # when task_fn started (seconds since the epoch, the worker's clock)
    worker: int = 0  # process id of the worker (with ``started``: a timeline of the run)
    timings: dict[str, float] = field(default_factory=dict)  # the partial's own stage timings


@dataclass
class RunReport:
    """Per-observation status and timings of a run."""

    run_id: str
    backend: Literal["ray", "serial"]
    fan_in: int
    n_chunks: int
    max_in_flight: int
    max_obs_per_task: int = 1
    n_tasks: int = 0  # tasks submitted (packs), retries by Ray not counted
    obs: dict[int, ObsStatus] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # driver-side stages, seconds
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over tasks
    reducer_restarts: int = 0
    duplicate_obs_ids: list[int] = field(default_factory=list)
    # Memory bound (see `run_distributed`): the limit on chunks in the pipeline, the root's
    # checkpoint period, and the peaks observed by the driver.
    max_open_chunks: int = 0
    root_checkpoint_every: int = 0
    peak_open_chunks: int = 0  # leaf reducers alive at once
    peak_chunk_refs_held: int = 0  # chunk-state refs held for the root (not yet durable)
    peak_partial_refs_held: int = 0  # partial refs held for the leaves (chunk not yet finalized)

    @property
    def n_ok(self) -> int:
        return sum(s.status == "ok" for s in self.obs.values())

    @property
    def n_failed(self) -> int:
        return sum(s.status == "failed" for s in self.obs.values())

    @property
    def failures(self) -> list[ObsStatus]:
        """Failed observations, in obs id order."""
        return [s for _, s in sorted(self.obs.items()) if s.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (obs keyed by str(obs_id))."""
        out = asdict(self)
        out["obs"] = {str(k): v for k, v in out["obs"].items()}
        out["n_ok"], out["n_failed"] = self.n_ok, self.n_failed
        return out

    def _record(self, status: dict[str, Any], obs_id: int) -> ObsStatus:
        entry = ObsStatus(
            obs_id=obs_id,
            status="ok" if status["ok"] else "failed",
            error_type=status.get("error_type"),
            message=status.get("message"),
            filename=status.get("filename"),
            seconds=float(status.get("seconds", 0.0)),
            started=float(status.get("started", 0.0)),
            worker=int(status.get("worker", 0)),
            timings=dict(status.get("timings") or {}),
        )
        self.obs[obs_id] = entry
        self.stage_seconds["task"] = self.stage_seconds.get("task", 0.0) + entry.seconds
        for stage, sec in entry.timings.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + float(sec)
        return entry


class RunResult(NamedTuple):
    """``(state, report)``: the final accumulator state (``Accumulator.from_state`` input) and report."""

    state: dict[str, Any]
    report: RunReport


# ---------------------------------------------------------------------------------------------
# The task body (runs in the worker, or in-process for run_serial)
# ---------------------------------------------------------------------------------------------
def _run_one(task_fn: TaskFn, shared: Any, obs_id: int) -> tuple[dict[str, Any], Partial | None]:
    """Run one observation; exceptions become a status (so data errors are never retried)."""
    started, t0 = time.time(), time.perf_counter()
    try:
        partial = task_fn(shared, obs_id)
    except Exception as error:  # noqa: BLE001 - recorded per observation, strict mode re-raises
        status, partial = _failure_status(error, time.perf_counter() - t0), None
    else:
        status = {
            "ok": True,
            "seconds": time.perf_counter() - t0,
            "timings": dict(getattr(partial, "timings", None) or {}),
        }
    status.update(started=started, worker=os.getpid())
    return status, partial


def _run_pack(task_fn: TaskFn, shared: Any, pack: tuple[int, ...],
              strict: bool = False) -> tuple[list[dict[str, Any]], dict[int, Partial]]:
    """Reduce a pack of observations: ``(statuses in pack order, {obs_id: partial} of the ok ones)``.

    With ``strict`` the pack stops at its first failure (the driver re-raises it).
    """
    statuses, partials = [], {}
    for obs_id in pack:
        status, partial = _run_one(task_fn, shared, obs_id)
        statuses.append(status)
        if partial is not None:
            partials[obs_id] = partial
        elif strict:
            break
    return statuses, partials


def _task_body(shared: tuple[TaskFn, Any, bool], pack: tuple[int, ...]) -> tuple[list, dict]:
    task_fn, shared_value, strict = shared
    return _run_pack(task_fn, shared_value, pack, strict)


def pack_size(n_unsubmitted: int, n_cpus: int, max_obs_per_task: int = DEFAULT_MAX_OBS_PER_TASK) -> int:
    """Observations in the next task: ``n_unsubmitted // n_cpus``, between 1 and ``max_obs_per_task``.

    "Guided" self-scheduling: big tasks while much is left (few task costs), single observations
    at the end (no worker waits long for the last big task of another).
    """
    return int(max(1, min(int(max_obs_per_task), int(n_unsubmitted) // max(1, int(n_cpus)))))


_REMOTE_TASK = None


def _remote_task():
    """`_task_body` as a Ray remote function, created once per process (not exported per run)."""
    global _REMOTE_TASK
    if _REMOTE_TASK is None:
        _REMOTE_TASK = ray.remote(_task_body)
    return _REMOTE_TASK


def _failure_status(error: BaseException, seconds: float = 0.0) -> dict[str, Any]:
    try:  # carry the exception itself when it can cross a process boundary (strict mode re-raises it)
        pickle.dumps(error)
        carried: BaseException | None = error
    except Exception:  # noqa: BLE001
        carried = None
    return {
        "ok": False,
        "error_type": type(error).__name__,
        "message": str(error)[:4000],
        "filename": getattr(error, "filename", None),
        "exception": carried,
        "seconds": seconds,
    }


def _reraise(status: dict[str, Any], obs_id: int) -> None:
    error = status.get("exception")
    if isinstance(error, BaseException):
        raise error
    raise RuntimeError(f"observation {obs_id} failed: {status['error_type']}: {status['message']}")


# ---------------------------------------------------------------------------------------------
# Ray bootstrap
# ---------------------------------------------------------------------------------------------
def ensure_ray(address: str | None = None, num_cpus: int | None = None, **init_kwargs: Any) -> dict[str, float]:
    """Make sure this process is connected to Ray; return the cluster resources.

    Connects to ``address`` (or ``$RAY_ADDRESS``) when given, else starts a private local Ray
    (``address="local"``, so it never attaches to a stray cluster) without the dashboard unless
    ``include_dashboard=True`` is passed. Does nothing if Ray is already initialised.
    """
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS") or None
        if address:
            ray.init(address=address, **init_kwargs)
        else:
            init_kwargs.setdefault("include_dashboard", False)
            # Our own local Ray: workers at normal priority (Ray's default niceness 15 starves them
            # on a machine shared with other work); an explicit $RAY_worker_niceness wins.
            os.environ.setdefault("RAY_worker_niceness", "0")
            ray.init(address="local", num_cpus=num_cpus, **init_kwargs)
    return ray.cluster_resources()


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------
def _sorted_unique(obs_ids: Iterable[Any]) -> tuple[list[int], list[int]]:
    seen: set[int] = set()
    dup: list[int] = []
    for o in obs_ids:
        o = int(o)
        if o in seen:
            dup.append(o)
        seen.add(o)
    return sorted(seen), sorted(set(dup))


def run_distributed(
    obs_ids: Iterable[int],
    task_fn: TaskFn,
    shared: Any,
    make_accumulator: AccumulatorFactory,
    *,
    max_in_flight: int | None = None,
    fan_in: int = DEFAULT_FAN_IN,
    max_obs_per_task: int = DEFAULT_MAX_OBS_PER_TASK,
    strict: bool = False,
    progress: bool | TextIO = True,
    checkpoint_dir: str | os.PathLike | None = None,
    max_retries: int = 2,
    checkpoint_every: int = 8,
    actor_max_restarts: int = 3,
    run_id: str | None = None,
    wait_timeout: float = 1.0,
    root_checkpoint_every: int | None = None,
    max_open_chunks: int | None = None,
    reducer_pool: "ReducerPool | None | Literal[False]" = None,
    config_hash: str | None = None,
) -> RunResult:
    """Reduce observations on Ray into one accumulator state, bit-identical to `run_serial`.

    Parameters
    ----------
    obs_ids : iterable of int
        Observations; sorted and de-duplicated (duplicates listed in the report).
    task_fn : callable
        ``task_fn(shared, obs_id) -> Partial``, run in Ray tasks; must be picklable.
    shared : object
        Inputs common to all tasks (geometry spec, exclusion mask, data store path...);
        put into the object store once.
    make_accumulator : callable
        Zero-argument factory of an empty `Accumulator`.
    max_in_flight : int, optional
        Tasks submitted and not yet finished; default 3x the cluster CPUs.
    fan_in : int
        Observations per leaf reducer; with the sorted ids it fixes the summation order.
    max_obs_per_task : int
        Largest pack of observations one task reduces (`pack_size`); 1 = a task per observation.
        Does not change the result.
    strict : bool
        Re-raise the first task failure instead of recording it and going on.
    progress : bool or file-like
        False: silent; True: ``sys.stderr``; a stream: written there (bar on a TTY, else lines).
    checkpoint_dir : path, optional
        All reducers (leaves and root) checkpoint atomically under ``checkpoint_dir/run_id`` and
        restore from there after a restart; removed after a successful run. Without it only the
        root checkpoints, into a fresh directory under the system temp dir (``tempfile.mkdtemp``,
        removed when the run ends, however it ends); the root actor is then pinned to the driver's
        node so that a restarted root finds its checkpoint. Leaves recover by re-sending (the
        driver keeps a chunk's partial refs until its leaf has produced the chunk state).
    checkpoint_every : int
        Acknowledged observations between two checkpoints of a leaf (only with ``checkpoint_dir``).
    max_retries : int
        Ray retries of a task whose worker crashed (exceptions are never retried).
    actor_max_restarts : int
        Ray restarts of a reducer actor before the driver replaces it (only with
        ``reducer_pool=False``: pooled actors are replaced by the driver at once).
    run_id : str, optional
        Names the reducers ``"{run_id}.chunk{i:05d}"`` and ``"{run_id}.root"`` (pooled actors under
        that alias: find them with `actors.reduction.lookup_reducer`); default random.
    wait_timeout : float
        Longest single `ray.wait`, seconds (also the progress refresh period when idle).
    root_checkpoint_every : int, optional
        Chunk merges between two checkpoints of the root (and when it completes); default
        ``min(checkpoint_every, DEFAULT_ROOT_CHECKPOINT_EVERY)`` = 4. The driver drops a chunk-state
        ref once the root reports it durable.
    max_open_chunks : int, optional
        Most chunks in the pipeline at once: leaf alive, or chunk state sent to the root and not yet
        durable there. Submission does not open a new chunk beyond it. Bounds live leaf actors,
        partial refs (``max_open_chunks * fan_in``) and chunk-state refs independently of the number
        of observations. Default ``root_checkpoint_every + ceil(4 * max_in_flight / fan_in) + 2``
        (never throttles a healthy run); must be ``>= root_checkpoint_every``.
    reducer_pool : ReducerPool or False, optional
        Where the reducer actors come from: default `REDUCER_POOL`, the warm actors this process
        keeps across runs (the ones this run needs are started at its beginning, in parallel with
        the first tasks); ``False``: a new named actor per reducer, killed at its end.
    config_hash : str, optional
        Content hash of the run configuration written into the checkpoints; a checkpoint written
        for another one is refused (`actors.checkpoints`). Default `checkpoint_hash.run_config_hash`
        of ``task_fn``, ``shared``, ``make_accumulator`` and ``fan_in``.

    Returns
    -------
    RunResult
        ``(state, report)``. ``state`` arrays may be read-only views of the object store.
    """
    t_start = time.perf_counter()
    wall_start = time.time()
    ids, dups = _sorted_unique(obs_ids)
    run_id = run_id or f"grd-{uuid.uuid4().hex[:8]}"
    chunks = plan_chunks(ids, fan_in)
    where = chunk_index(chunks)
    ensure_ray()
    n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if max_in_flight is None:
        max_in_flight = max(2, 3 * n_cpus)
    max_in_flight = max(1, int(max_in_flight))
    # Submission never runs more than `window` observations ahead of the oldest unfinished one.
    window = max(4 * max_in_flight, 2)
    root_every = (min(int(checkpoint_every), DEFAULT_ROOT_CHECKPOINT_EVERY)
                  if root_checkpoint_every is None else int(root_checkpoint_every))
    root_every = max(1, root_every)
    if max_open_chunks is None:
        max_open_chunks = root_every + math.ceil(window / max(1, int(fan_in))) + 2
    max_open_chunks = int(max_open_chunks)
    if max_open_chunks < root_every:
        # fewer slots than merges between root checkpoints: the root would never free a slot
        raise ValueError(f"max_open_chunks={max_open_chunks} must be >= root_checkpoint_every={root_every}")
    max_obs_per_task = max(1, int(max_obs_per_task))
    report = RunReport(run_id, "ray", int(fan_in), len(chunks), max_in_flight, max_obs_per_task,
                       duplicate_obs_ids=dups, max_open_chunks=max_open_chunks, root_checkpoint_every=root_every)
    if not ids:
        return RunResult(make_accumulator().state(), report)

    # Checkpoints: everything under checkpoint_dir/run_id when given; else the root only, in a
    # run-local temporary directory on the driver's node (the root is pinned to that node).
    own_tmp = checkpoint_dir is None and len(chunks) > 1
    if checkpoint_dir is not None:
        ckpt_root: Path | None = Path(checkpoint_dir) / run_id
    elif own_tmp:
        ckpt_root = Path(tempfile.mkdtemp(prefix=f"{run_id}-ckpt-"))
    else:
        ckpt_root = None
    if ckpt_root is not None and not config_hash:
        from .checkpoint_hash import run_config_hash

        config_hash = run_config_hash(task_fn, shared, make_accumulator, fan_in)

    pool = REDUCER_POOL if reducer_pool is None else (reducer_pool or None)
    aliases: set[str] = set()

    def actor_args(tag: str) -> tuple[dict, int]:
        is_root = tag == "root"
        checkpoints = ckpt_root is not None and (is_root or checkpoint_dir is not None)
        return ({"checkpoint_path": ckpt_root / f"{tag}.pkl" if checkpoints else None,
                 "checkpoint_every": root_every if is_root else checkpoint_every,
                 "config_hash": config_hash if checkpoints else None})

    def spawn(tag: str, generation: int, keys: tuple, mode: str):
        if pool is not None:
            from actors.reduction import register_alias

            handle, name = pool.lease()
            handle.reset.remote(keys, make_accumulator, mode=mode, **actor_args(tag))  # first in FIFO order
            register_alias(f"{run_id}.{tag}", name)
            aliases.add(f"{run_id}.{tag}")
            return handle
        is_root = tag == "root"
        options: dict[str, Any] = {}
        if own_tmp and is_root:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
                ray.get_runtime_context().get_node_id(), soft=False)
        return ReductionActor.options(
            name=f"{run_id}.{tag}" + (f".g{generation}" if generation else ""),
            max_restarts=actor_max_restarts,
            max_task_retries=0,  # the driver re-sends; Ray must not replay calls on its own
            **options,
        ).remote(keys, make_accumulator, mode=mode, **actor_args(tag))

    def release(handle, healthy: bool) -> None:
        if pool is not None:
            pool.give_back(handle, healthy)
        else:
            ray.kill(handle, no_restart=True)

    def make_link(tag: str, keys: tuple, mode: str) -> ReducerLink:
        return ReducerLink(tag, keys, lambda t, g: spawn(t, g, keys, mode), release)

    t0 = time.perf_counter()
    if pool is not None:
        # The reducers this run will have alive at once, started now (in parallel with the first
        # tasks) unless warm ones are idle in the pool.
        pool.prestart(min(len(chunks), max_open_chunks) + (1 if len(chunks) > 1 else 0))
    report.timings["prestart_reducers"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    # task_fn travels with shared (one object, deserialised per task; a module-level function
    # pickles by reference), so the remote function itself is defined once per process and reused.
    shared_ref = ray.put((task_fn, shared, bool(strict)))
    report.timings["put_shared"] = time.perf_counter() - t0
    remote_task = _remote_task().options(num_returns=2, max_retries=int(max_retries), retry_exceptions=False)

    # Bound how far submission runs ahead of the oldest unfinished observation (partials buffered
    # in leaves) and how many chunks are in the pipeline (live leaves, chunk-state refs held).
    position = {o: i for i, o in enumerate(ids)}
    chunk_end = list(itertools.accumulate(len(chunk) for chunk in chunks))  # end of each chunk in `ids`
    finished = [False] * len(ids)
    lowest = 0
    next_i = 0
    tasks: dict[ray.ObjectRef, tuple[tuple[int, ...], ray.ObjectRef]] = {}  # status ref -> (pack, partials)
    leaves: dict[int, ReducerLink] = {}
    root = make_link("root", tuple(range(len(chunks))), "merge") if len(chunks) > 1 else None
    final_ref: ray.ObjectRef | None = None
    restarts = 0
    bar = _make_progress(len(ids), progress)
    n_done = n_failed = 0
    t_tasks_done = None

    def chunks_in_pipeline() -> int:
        return len(leaves) + (root.refs_held if root is not None else 0)

    def sample_peaks() -> None:
        report.peak_open_chunks = max(report.peak_open_chunks, len(leaves))
        if root is not None:
            report.peak_chunk_refs_held = max(report.peak_chunk_refs_held, root.refs_held)
        report.peak_partial_refs_held = max(report.peak_partial_refs_held,
                                            sum(link.refs_held for link in leaves.values()))

    completed = False
    try:
        while final_ref is None:
            while next_i < len(ids) and len(tasks) < max_in_flight and next_i < lowest + window:
                obs_id = ids[next_i]
                c = where[obs_id]
                if c not in leaves and chunks_in_pipeline() >= max_open_chunks:
                    break  # a slot frees when a leaf finishes and the root checkpoints
                # A pack stays within its chunk (one leaf) and within the submission window.
                end = min(next_i + pack_size(len(ids) - next_i, n_cpus, max_obs_per_task),
                          chunk_end[c], lowest + window)
                pack = tuple(ids[next_i:end])
                status_ref, partials_ref = remote_task.remote(shared_ref, pack)
                tasks[status_ref] = (pack, partials_ref)
                if c not in leaves:  # after the submission: the task starts while the leaf is set up
                    leaves[c] = make_link(f"chunk{c:05d}", chunks[c], "add")
                report.n_tasks += 1
                if next_i == 0:
                    report.timings["first_submit"] = time.perf_counter() - t_start
                next_i = end
            sample_peaks()

            links = list(leaves.values()) + ([root] if root is not None else [])
            refs = list(tasks) + [call[1] for link in links for call in link.calls]
            if not refs:  # nothing outstanding: the next finalize call is issued below
                ready: list = []
                time.sleep(0.001)
            else:
                ready, rest = ray.wait(refs, num_returns=1, timeout=wait_timeout)
                if ready and rest:  # sweep whatever else is done, without blocking
                    more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                    ready += more
            ready_set = set(ready)

            # Finished tasks: one batched get of the small status lists (never the partials).
            done = [r for r in ready if r in tasks]
            for ref, statuses in zip(done, get_each(done)):
                pack, partials_ref = tasks.pop(ref)
                if isinstance(statuses, Failed):  # worker crashed beyond max_retries, or lost
                    statuses = [_failure_status(statuses.error)] * len(pack)
                link = leaves[where[pack[0]]]
                ok = []
                for obs_id, status in zip(pack, statuses):
                    entry = report._record(status, obs_id)
                    if entry.status == "ok":
                        ok.append(obs_id)
                    else:
                        n_failed += 1
                        log.warning("observation %s failed: %s: %s", obs_id, entry.error_type, entry.message)
                        if strict:
                            _reraise(status, obs_id)
                        link.skip(obs_id, f"{entry.error_type}: {entry.message}")
                    finished[position[obs_id]] = True
                    n_done += 1
                if ok:
                    link.send_pack(ok, partials_ref)
            while lowest < len(ids) and finished[lowest]:
                lowest += 1
            if n_done == len(ids) and t_tasks_done is None:
                t_tasks_done = time.perf_counter()

            # Reducer replies, in call order per actor, fetched in one batch.
            popped = [(link, call) for link in links for call in link.pop_ready(ready_set)]
            for (link, call), value in zip(popped, get_each([call[1] for _, call in popped])):
                link.on_result(call, value)

            for c in sorted(leaves):
                link = leaves[c]
                link.maybe_finalize()
                if link.state_ref is not None:
                    if root is None:
                        final_ref = link.state_ref
                    else:
                        root.send(c, link.state_ref)
                    restarts += link.restarts
                    link.close()
                    del leaves[c]
            if root is not None:
                root.maybe_finalize()
                if root.state_ref is not None:
                    final_ref = root.state_ref
            sample_peaks()
            if bar is not None:
                bar.update(n_done, n_failed)

        t0 = time.perf_counter()
        state = ray.get(final_ref)
        report.timings["fetch_result"] = time.perf_counter() - t0
        completed = True
    finally:
        for ref in tasks:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
        for link in list(leaves.values()) + ([root] if root is not None else []):
            restarts += link.restarts
            try:
                link.close()
            except Exception:  # noqa: BLE001
                pass
        if bar is not None:
            bar.close()
        # Our own temporary directory cannot be resumed from: always remove it. A caller's
        # checkpoint_dir is kept after a failure (a rerun with the same run_id restores from it).
        if ckpt_root is not None and (own_tmp or completed):
            shutil.rmtree(ckpt_root, ignore_errors=True)
        if aliases:
            from actors.reduction import unregister_alias

            for alias in aliases:
                try:
                    unregister_alias(alias)
                except Exception:  # noqa: BLE001
                    pass
    report.reducer_restarts = restarts
    t_end = time.perf_counter()
    report.timings["tasks"] = (t_tasks_done or t_end) - t_start
    report.timings["reduce_tail"] = t_end - (t_tasks_done or t_end)
    report.timings["total"] = t_end - t_start
    started = [o.started for o in report.obs.values() if o.started]
    if started:  # the first task's wait for a worker (lease, shared input fetch), from the timeline
        report.timings["first_task_start"] = min(started) - wall_start
    return RunResult(state, report)


def run_serial(
    obs_ids: Iterable[int],
    task_fn: TaskFn,
    shared: Any,
    make_accumulator: AccumulatorFactory,
    *,
    max_in_flight: int | None = None,
    fan_in: int = DEFAULT_FAN_IN,
    strict: bool = False,
    progress: bool | TextIO = True,
    checkpoint_dir: str | os.PathLike | None = None,
    max_retries: int = 2,
    **_ignored: Any,
) -> RunResult:
    """`run_distributed` in this process, without Ray: same tree, same order, same bits.

    ``max_in_flight``, ``max_retries`` and ``checkpoint_dir`` are accepted for a uniform call
    signature and ignored (nothing runs concurrently, nothing can be lost).
    """
    t_start = time.perf_counter()
    ids, dups = _sorted_unique(obs_ids)
    chunks = plan_chunks(ids, fan_in)
    report = RunReport("serial", "serial", int(fan_in), len(chunks), 1, duplicate_obs_ids=dups)
    root = OrderedReducer(range(len(chunks)), make_accumulator, mode="merge") if len(chunks) > 1 else None
    state = make_accumulator().state() if not chunks else None
    bar = _make_progress(len(ids), progress)
    n_done = n_failed = 0
    try:
        for c, chunk in enumerate(chunks):
            leaf = OrderedReducer(chunk, make_accumulator, mode="add")
            for obs_id in chunk:
                status, partial = _run_one(task_fn, shared, obs_id)
                entry = report._record(status, obs_id)
                n_done += 1
                if entry.status == "ok":
                    leaf.add(obs_id, partial)
                else:
                    n_failed += 1
                    log.warning("observation %s failed: %s: %s", obs_id, entry.error_type, entry.message)
                    if strict:
                        _reraise(status, obs_id)
                    leaf.skip(obs_id, f"{entry.error_type}: {entry.message}")
                if bar is not None:
                    bar.update(n_done, n_failed)
            _, chunk_state = leaf.finalize()
            if root is None:
                state = chunk_state
            else:
                root.add(c, chunk_state)
        if root is not None:
            _, state = root.finalize()
    finally:
        if bar is not None:
            bar.close()
    report.timings["tasks"] = report.timings["total"] = time.perf_counter() - t_start
    return RunResult(state, report)


def _make_progress(total: int, progress: bool | TextIO) -> Progress | None:
    if progress is False or progress is None:
        return None
    return Progress(total, None if progress is True else progress)
