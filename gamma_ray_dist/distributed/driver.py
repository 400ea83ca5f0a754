"""One reduction on Ray: block tasks feeding an order-fixed merge tree (used by `RayBackend.reduce`).

`RayReduction` submits one task per block of the `ReductionPlan` (in block order, a bounded number
in flight, never more than ``window`` blocks ahead of the oldest unfinished one), collects the small
status lists with `ray.wait` batches, and forwards each block's state *by ObjectRef* to the reducer
that merges it (the root, or a middle reducer of its group), so states go from worker to reducer
without passing through the driver. Reducers merge in block order (`actors.ordered.OrderedReducer`),
so the result is bit-identical to `SerialBackend.reduce` whatever the worker count, arrival order,
retries or reducer restarts.

Failures: an observation whose task function raises is recorded (obs id, error, file) and left out
of its block (``strict``: re-raised); a worker that dies is retried ``max_retries`` times by Ray, and
beyond that the block's observations are recorded as failed. A reducer actor that dies is restarted
or replaced by its `ReducerLink`, which re-sends what the new incarnation has not acknowledged.

Memory: the root checkpoints every ``root_checkpoint_every`` merges and middle reducers every
``checkpoint_every`` (to ``checkpoint_dir``, else a run-local temporary directory removed at the end),
and the driver drops each block-state ref once it is durable; with the submission window this bounds
the refs held, hence the object store, independently of the number of observations
(``RunReport.peak_refs_held`` <= ``max_refs_held``).
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

import ray

from actors.protocols import AccumulatorFactory, TaskFn
from actors.reduction import ReductionActor
from actors.refs import Failed, get_each, wait_ready

from .progress import make_progress
from .blocks import (ReductionPlan, failure_status, final_state, fold_block, record_block, resolve_block_size,
                     sorted_unique)
from .links import ReducerLink, ReducerPool
from .report import RunReport, RunResult
from .tasks import remote_function

__all__ = ["RayReduction", "DEFAULT_ROOT_CHECKPOINT_EVERY", "root_refs_bound"]

log = logging.getLogger(__name__)

#: Merges between two checkpoints of the root reducer.
DEFAULT_ROOT_CHECKPOINT_EVERY = 4


def _block_task(shared: tuple[TaskFn, Any, AccumulatorFactory, bool], block: tuple[int, ...]):
    """The Ray task: fold one block; returns ``(statuses, state)`` as two objects."""
    task_fn, value, make_accumulator, strict = shared
    return fold_block(task_fn, value, block, make_accumulator, strict)


def root_refs_bound(max_in_flight: int, root_checkpoint_every: int) -> int:
    """Block states a reduction may hold before they are durable, middle reducers aside: its submission
    window (2 x the tasks in flight) and the root's merges between two checkpoints."""
    return 2 * max(1, int(max_in_flight)) + max(1, int(root_checkpoint_every))


def finished_blocks(ready: list, tasks: dict, block_of, report: RunReport, strict: bool) -> list[tuple]:
    """The block tasks among ``ready`` (popped from ``tasks``, ref -> (block index, state ref)), with
    their statuses fetched in one batch and recorded: ``[(b, state_ref, block, statuses, n_failed)]``.

    A task whose worker died beyond its retries (or was lost) counts as every observation failed.
    """
    done = [r for r in ready if r in tasks]
    out = []
    for ref, statuses in zip(done, get_each(done)):
        b, state_ref = tasks.pop(ref)
        block = block_of(b)
        if isinstance(statuses, Failed):
            statuses = [failure_status(statuses.error)] * len(block)
        out.append((b, state_ref, block, statuses, record_block(report, block, statuses, strict, log)))
    return out


class RayReduction:
    """The state of one reduction on Ray: submission, collection, reducer links, teardown.

    Parameters
    ----------
    obs_ids : iterable of int
        Observations; sorted and de-duplicated (duplicates listed in the report).
    task_fn : callable
        ``task_fn(shared, obs_id) -> Partial``, module-level (it is pickled by reference).
    shared : object
        Put into the object store once, with ``task_fn`` and ``make_accumulator``.
    make_accumulator : callable
        Zero-argument factory of an empty accumulator.
    block_size, merge_fan_in : int
        The plan (see `blocks.ReductionPlan`).
    max_in_flight : int
        Block tasks submitted and unfinished at once.
    pool : ReducerPool or None
        Warm reducer actors to lease; None: a new named actor per reducer (``{run_id}.root``,
        ``{run_id}.group00000``), restarted by Ray, killed at the end.
    strict, max_retries, checkpoint_dir, checkpoint_every, root_checkpoint_every, run_id, progress
        See `ExecutionSettings`; ``checkpoint_every``: merges between checkpoints of middle reducers.
    config_hash : str, optional
        Content hash of the run configuration written into the checkpoints; a checkpoint written for
        another one is refused (`actors.checkpoints`). Default: `config_hash.run_config_hash` of the
        task function, ``shared``, the factory and the plan settings; a random one for checkpoints in
        a run-local temporary directory (nothing else can be there).
    run_dir : resume.RunDir, optional
        Makes the run resumable: checkpoints go to ``run_dir.checkpoint_dir`` (kept at the end: the
        run dir's owner removes it), each block's statuses are recorded there before its state is
        sent, and the blocks an earlier attempt made durable are neither reduced nor sent again.
    reducer_options : dict, optional
        Ray actor options for the (not pooled) reducers, over the defaults; e.g. a
        ``scheduling_strategy`` placing them off the driver's node (their checkpoints must then be
        on storage every node reads).
    head : dict, optional
        ``{block index: (statuses, state)}`` of blocks this process folded itself while Ray started
        (`blocks.fold_head`); they are recorded and their states sent to the reducers as if tasks had
        returned them, and no task is submitted for them.
    """

    def __init__(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any, make_accumulator: AccumulatorFactory,
                 *, block_size: int, merge_fan_in: int, max_in_flight: int, pool: ReducerPool | None,
                 strict: bool = False, max_retries: int = 2, checkpoint_dir: str | Path | None = None,
                 checkpoint_every: int = 8, root_checkpoint_every: int = DEFAULT_ROOT_CHECKPOINT_EVERY,
                 run_id: str | None = None, progress: Any = True, actor_max_restarts: int = 3,
                 wait_timeout: float = 1.0, config_hash: str | None = None, run_dir: Any = None,
                 reducer_options: dict[str, Any] | None = None,
                 head: dict[int, tuple[list, Any]] | None = None) -> None:
        self.t_start, self.wall_start = time.perf_counter(), time.time()
        ids, dups = sorted_unique(obs_ids)
        self.ids = ids
        self.plan = ReductionPlan.create(ids, block_size, merge_fan_in)  # block_size None: automatic
        self.task_fn, self.shared, self.make_accumulator = task_fn, shared, make_accumulator
        self.strict, self.max_retries = bool(strict), int(max_retries)
        self.max_in_flight = max(1, int(max_in_flight))
        self.window = 2 * self.max_in_flight  # blocks submitted ahead of the oldest unfinished one
        self.pool = pool
        self.run_id = run_id or f"grd-{uuid.uuid4().hex[:8]}"
        self.checkpoint_every = int(checkpoint_every)
        self.root_every = max(1, int(root_checkpoint_every))
        self.actor_max_restarts = int(actor_max_restarts)
        self.wait_timeout = float(wait_timeout)
        self.report = RunReport(self.run_id, "ray", resolve_block_size(block_size, len(ids)), len(self.plan.blocks),
                                int(merge_fan_in), self.max_in_flight, duplicate_obs_ids=dups,
                                n_reducers=self.plan.n_reducers)
        # Submission stops while the refs held (sent, not yet durable) plus the tasks in flight reach
        # this: the window and the root's merges between checkpoints; with middle reducers also their
        # merges between checkpoints (every reducer checkpoints, so every ref is released in time).
        self.report.max_refs_held = root_refs_bound(self.max_in_flight, self.root_every) + (
            self._max_open_groups() * self.checkpoint_every if self.plan.groups else 0)
        self.group_of = {b: g for g, group in enumerate(self.plan.groups) for b in group}
        # Checkpoints: under checkpoint_dir/run_id when given, else in a temporary directory of the
        # driver's node (pooled and named reducers are pinned there). Every reducer checkpoints, so the
        # driver can drop each block-state ref once it is durable: memory does not grow with N.
        self.run_dir = run_dir
        self.reducer_options = dict(reducer_options or {})
        self.own_tmp = checkpoint_dir is None and run_dir is None and self.plan.n_reducers > 0
        if run_dir is not None:
            self.ckpt_root = Path(run_dir.checkpoint_dir) if self.plan.n_reducers else None
            config_hash = run_dir.config_hash
        elif checkpoint_dir is not None:
            self.ckpt_root: Path | None = Path(checkpoint_dir) / self.run_id
        elif self.own_tmp:
            self.ckpt_root = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-ckpt-"))
        else:
            self.ckpt_root = None
        if self.own_tmp and not config_hash:
            # a fresh private directory holds this run's checkpoints only: no other run's to refuse,
            # so a random hash does (hashing the inputs costs ~5 ms per reduction on the driver)
            config_hash = uuid.uuid4().hex + uuid.uuid4().hex
        elif self.ckpt_root is not None and not config_hash:
            from .config_hash import run_config_hash

            config_hash = run_config_hash(task_fn, shared, make_accumulator, block_size, merge_fan_in)
        self.config_hash = config_hash
        self.tasks: dict[ray.ObjectRef, tuple[int, ray.ObjectRef]] = {}  # status ref -> (block, state ref)
        self.finished = [False] * len(self.plan.blocks)
        self.lowest = 0  # oldest unfinished block
        self.next_block = 0
        self.root: ReducerLink | None = None
        self.groups: dict[int, ReducerLink] = {}
        self.final_ref: ray.ObjectRef | None = None
        self.n_done = self.n_failed = 0
        self.t_tasks_done: float | None = None
        self.bar = make_progress(len(ids), progress)
        self.head = dict(head or {})

    # -- reducers ----------------------------------------------------------------------------
    def _actor_args(self, tag: str) -> dict[str, Any]:
        is_root = tag == "root"
        path = None
        if self.ckpt_root is not None:
            path = self.ckpt_root / f"{tag}.pkl"
        # the last checkpoint matters only to a run that can be resumed (ours are removed at the end)
        return {"checkpoint_path": path, "checkpoint_every": self.root_every if is_root else self.checkpoint_every,
                "config_hash": self.config_hash if path is not None else None, "checkpoint_last": not self.own_tmp}

    def _spawn(self, tag: str, generation: int, keys: tuple) -> Any:
        if self.pool is not None:
            handle, _ = self.pool.lease()
            handle.reset.remote(keys, self.make_accumulator, mode="merge", **self._actor_args(tag))
            return handle
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = dict(
            name=f"{self.run_id}.{tag}" + (f".g{generation}" if generation else ""),
            max_restarts=self.actor_max_restarts,
            max_task_retries=0,  # the driver re-sends; Ray must not replay calls on its own
            scheduling_strategy=NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False),
        )
        options.update(self.reducer_options)
        return ReductionActor.options(**options).remote(keys, self.make_accumulator, mode="merge",
                                                        **self._actor_args(tag))

    def _release(self, handle: Any, healthy: bool) -> None:
        if self.pool is not None:
            self.pool.give_back(handle, healthy)
        else:
            ray.kill(handle, no_restart=True)

    def _link(self, tag: str, keys: Iterable[int], held: int = 0) -> ReducerLink:
        keys = tuple(keys)
        link = ReducerLink(tag, keys, lambda t, g: self._spawn(t, g, keys), self._release)
        if held:
            link.adopt(held)
        return link

    def _links(self) -> list[ReducerLink]:
        return list(self.groups.values()) + ([self.root] if self.root is not None else [])

    def _refs_held(self) -> int:
        return sum(link.refs_held for link in self._links())

    # -- the loop ----------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Reduce every block and return the final state with the report."""
        if not self.ids:
            return RunResult(self.make_accumulator().state(), self.report)
        completed = False
        try:
            t0 = time.perf_counter()
            if self.pool is not None:  # started now, in parallel with the first tasks
                self.pool.prestart(min(self.plan.n_reducers, 1 + self._max_open_groups()))
            self.report.timings["prestart_reducers"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            # task_fn and the factory travel with shared (a module-level function pickles by
            # reference), so the remote function is defined once per process and reused.
            self.shared_ref = ray.put((self.task_fn, self.shared, self.make_accumulator, self.strict))
            self.report.timings["put_shared"] = time.perf_counter() - t0
            self.remote = remote_function(_block_task).options(num_returns=2, max_retries=self.max_retries,
                                                               retry_exceptions=False)
            n_keys = len(self.plan.groups) or len(self.plan.blocks)
            resumed = self._resume()
            if self.plan.n_reducers:
                self.root = self._link("root", range(n_keys), resumed.root)
                for g, held in sorted(resumed.groups.items()):  # groups an earlier attempt left open
                    self.groups[g] = self._link(f"group{g:05d}", self.plan.groups[g], held)
            self._adopt_head()
            while self.final_ref is None:
                self._submit()
                ready = self._wait()
                self._collect(ready)
                self._upkeep(ready)
            t0 = time.perf_counter()
            state = ray.get(self.final_ref)
            if self.root is None:
                state = final_state(state, self.make_accumulator)
            self.report.timings["fetch_result"] = time.perf_counter() - t0
            completed = True
        finally:
            self._teardown(completed)
        return RunResult(state, self.report)

    def _resume(self):
        """Blocks an earlier attempt made durable (from the run directory): finished, with their statuses."""
        from .resume import Resumed

        if self.run_dir is None:
            return Resumed()
        resumed = self.run_dir.plan_resume(self.plan)
        for b in sorted(resumed.blocks):
            block = self.plan.blocks[b]
            self.n_failed += record_block(self.report, block, resumed.statuses[b], self.strict)
            self.n_done += len(block)
            self.report.n_resumed += len(self.plan.blocks[b])
            self.finished[b] = True
        while self.lowest < len(self.finished) and self.finished[self.lowest]:
            self.lowest += 1
        if self.bar is not None and self.n_done:
            self.bar.update(self.n_done, self.n_failed)
        return resumed

    def _adopt_head(self) -> None:
        """The blocks folded in this process before Ray was up: recorded, their states put and sent."""
        items = []
        for b in sorted(self.head):
            if self.finished[b]:
                continue  # durable from an earlier attempt (the head start skips those; kept safe)
            statuses, state = self.head[b]
            block = self.plan.blocks[b]
            g = self.group_of.get(b)
            if g is not None and g not in self.groups:  # head blocks are the first: the first group(s)
                self.groups[g] = self._link(f"group{g:05d}", self.plan.groups[g])
            items.append((b, None if state is None else ray.put(state), block, statuses,
                          record_block(self.report, block, statuses, self.strict, log)))
        self.head.clear()  # the states are in the object store now
        self.report.n_head += sum(len(block) for _, _, block, _, _ in items)
        self._finish(items)

    def _max_open_groups(self) -> int:
        return self.root_every + 1 if self.plan.groups else 0

    def _submit(self) -> None:
        while self.next_block < len(self.plan.blocks) and self.finished[self.next_block]:
            self.next_block += 1  # durable from an earlier attempt
        while (self.next_block < len(self.plan.blocks) and len(self.tasks) < self.max_in_flight
               and self.next_block < self.lowest + self.window
               and self._refs_held() + len(self.tasks) < self.report.max_refs_held):
            b = self.next_block
            g = self.group_of.get(b)
            if g is not None and g not in self.groups:
                if len(self.groups) + (self.root.refs_held if self.root else 0) >= self._max_open_groups():
                    break  # a slot frees when a group finishes and the root checkpoints it
            status_ref, state_ref = self.remote.remote(self.shared_ref, self.plan.blocks[b])
            self.tasks[status_ref] = (b, state_ref)
            if g is not None and g not in self.groups:  # after the submission: the task starts meanwhile
                self.groups[g] = self._link(f"group{g:05d}", self.plan.groups[g])
            self.report.n_tasks += 1
            if b == 0:
                self.report.timings["first_submit"] = time.perf_counter() - self.t_start
            self.next_block += 1
            while self.next_block < len(self.plan.blocks) and self.finished[self.next_block]:
                self.next_block += 1
        self._sample_peaks()

    def _wait(self) -> list:
        refs = list(self.tasks) + [call[1] for link in self._links() for call in link.calls]
        if not refs:  # nothing outstanding: the next finalize call is issued by _upkeep
            time.sleep(0.001)
            return []
        return wait_ready(refs, self.wait_timeout)

    def _collect(self, ready: list) -> None:
        """Finished tasks: one batched get of their status lists (never the states)."""
        self._finish(finished_blocks(ready, self.tasks, self.plan.blocks.__getitem__, self.report, self.strict))

    def _finish(self, items: list[tuple]) -> None:
        """Blocks done, ``[(b, state ref, block, statuses, n_failed)]`` (statuses recorded): their
        states sent on to their reducer, in the run directory first when the run is resumable."""
        collected = []
        for b, state_ref, block, statuses, n_failed in items:
            self.n_done += len(block)
            self.n_failed += n_failed
            n_ok = len(block) - n_failed
            if self.ckpt_root is not None and self.run_dir is not None:
                self.run_dir.record(b, block, statuses)
            collected.append((b, state_ref, n_ok))
        if collected and self.run_dir is not None:
            self.run_dir.sync()  # statuses durable before any checkpoint can hold their blocks
        for b, state_ref, n_ok in collected:
            target = self.groups[self.group_of[b]] if self.plan.groups else self.root
            if target is None:  # a one-block run: its state is the result (made a full state below)
                self.final_ref = state_ref if n_ok else ray.put(None)
            elif n_ok:
                target.send(b, state_ref)
            else:
                target.skip(b, "no observation of the block could be reduced")
            self.finished[b] = True
        while self.lowest < len(self.finished) and self.finished[self.lowest]:
            self.lowest += 1
        if self.n_done == len(self.ids) and self.t_tasks_done is None:
            self.t_tasks_done = time.perf_counter()
        if self.bar is not None:
            self.bar.update(self.n_done, self.n_failed)

    def _upkeep(self, ready: list) -> None:
        """Reducer replies (in call order per actor, one batched get), finished groups, the root."""
        ready_set = set(ready)
        links = self._links()
        popped = [(link, call) for link in links for call in link.pop_ready(ready_set)]
        for (link, call), value in zip(popped, get_each([call[1] for _, call in popped])):
            link.on_result(call, value)
        for g in sorted(self.groups):
            link = self.groups[g]
            link.maybe_finalize()
            if link.state_ref is not None:
                self.root.send(g, link.state_ref)
                self.report.reducer_restarts += link.restarts
                link.close()
                del self.groups[g]
        if self.root is not None:
            self.root.maybe_finalize()
            if self.root.state_ref is not None:
                self.final_ref = self.root.state_ref
        self._sample_peaks()

    def _sample_peaks(self) -> None:
        self.report.peak_refs_held = max(self.report.peak_refs_held, self._refs_held())

    def _teardown(self, completed: bool) -> None:
        for ref in self.tasks:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
        for link in self._links():
            self.report.reducer_restarts += link.restarts
            try:
                link.close()
            except Exception:  # noqa: BLE001
                pass
        if self.bar is not None:
            self.bar.close()
        # Our own temporary directory cannot be resumed from: always removed. A caller's
        # checkpoint_dir is kept after a failure (a rerun with the same run_id restores from it).
        # A run directory's checkpoints are its owner's (removed once the outputs are written).
        if self.ckpt_root is not None and self.run_dir is None and (self.own_tmp or completed):
            shutil.rmtree(self.ckpt_root, ignore_errors=True)
        t_end = time.perf_counter()
        timings = self.report.timings
        timings["tasks"] = (self.t_tasks_done or t_end) - self.t_start
        timings["reduce_tail"] = t_end - (self.t_tasks_done or t_end)
        timings["total"] = t_end - self.t_start
        here = os.getpid()  # not the head start's observations, reduced in this process
        started = [o.started for o in self.report.obs.values() if o.started and o.worker != here]
        if started:  # the first task's wait for a worker (lease, shared input fetch), from the timeline
            timings["first_task_start"] = min(started) - self.wall_start
