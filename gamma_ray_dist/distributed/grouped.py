"""A grouped reduction on Ray: one final state per group, in one pass (used by `RayBackend.reduce`).

`GroupedRayReduction` runs the blocks of a `blocks.GroupedPlan` (every block inside one group) as
Ray tasks, in plan order with a bounded number in flight, exactly as `driver.RayReduction` runs the
blocks of an ungrouped plan. When the last block of a group finishes, the group is finalised:
a one-block group's state is the block's (compact) state; a group of several blocks is merged by one
Ray task (`blocks.merge_group`, the block states passed by reference, in block order), so states go
from worker to worker. The driver fetches each group's final state once (batched with the others
that are ready), hands it to ``on_group`` and drops it: with a callback that writes the group out
(e.g. one dataset file per observation) the driver holds one round of finished groups at a time,
not all of them.

The folds are those of `SerialBackend.reduce` with the same ``groups``: bit-identical whatever the
worker count or completion order. No reducer actors and no checkpoints: a group's state is held in
the object store from its first finished block until it is merged (a group of ``n`` blocks holds at
most ``n`` block states), and a run that fails is run again from the start.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Hashable, Iterable, Mapping

import ray

from actors.protocols import AccumulatorFactory, TaskFn
from actors.refs import Failed, get_each, wait_ready

from .blocks import GroupedPlan, ReductionPlan, merge_group, sorted_unique
from .driver import _block_task, finished_blocks
from .progress import make_progress
from .report import RunReport, RunResult
from .tasks import remote_function

__all__ = ["GroupedRayReduction"]

log = logging.getLogger(__name__)


def _merge_task(plan: ReductionPlan, make_accumulator: AccumulatorFactory, *states: Any) -> Any:
    """The Ray task merging one group's block states (resolved by Ray from the refs passed)."""
    return merge_group(plan, list(states), make_accumulator)


class GroupedRayReduction:
    """The state of one grouped reduction on Ray.

    Parameters
    ----------
    obs_ids, task_fn, shared, make_accumulator
        As `driver.RayReduction`.
    groups : mapping
        ``obs_id -> group key`` for every observation.
    on_group : callable, optional
        ``on_group(key, state) -> value`` called in the driver as each group is final (in the order
        groups finish); the result then holds the value instead of the state.
    block_size, merge_fan_in, max_in_flight, strict, max_retries, run_id, progress, wait_timeout
        As `driver.RayReduction`.
    """

    def __init__(self, obs_ids: Iterable[int], task_fn: TaskFn, shared: Any, make_accumulator: AccumulatorFactory,
                 groups: Mapping[int, Hashable], *, on_group: Callable[[Hashable, Any], Any] | None = None,
                 block_size: int | None, merge_fan_in: int, max_in_flight: int, strict: bool = False,
                 max_retries: int = 2, run_id: str | None = None, progress: Any = True,
                 wait_timeout: float = 1.0) -> None:
        self.t_start = time.perf_counter()
        ids, dups = sorted_unique(obs_ids)
        self.ids = ids
        self.plan = GroupedPlan.create(ids, groups, block_size, merge_fan_in)
        self.blocks = self.plan.blocks
        self.task_fn, self.shared, self.make_accumulator = task_fn, shared, make_accumulator
        self.on_group = on_group
        self.strict, self.max_retries = bool(strict), int(max_retries)
        self.max_in_flight = max(1, int(max_in_flight))
        self.window = 2 * self.max_in_flight
        self.wait_timeout = float(wait_timeout)
        self.run_id = run_id or f"grd-{uuid.uuid4().hex[:8]}"
        self.report = RunReport(self.run_id, "ray", block_size, len(self.blocks), int(merge_fan_in),
                                self.max_in_flight, duplicate_obs_ids=dups, n_groups=len(self.plan.keys))
        # per group: the block states received so far (None: nothing reduced), by position in the group
        self.pending: dict[int, list[Any]] = {}
        self.remaining = [len(p.blocks) for p in self.plan.plans]
        self.first_block = []  # index in self.blocks of each group's first block
        n = 0
        for p in self.plan.plans:
            self.first_block.append(n)
            n += len(p.blocks)
        self.tasks: dict[ray.ObjectRef, tuple[int, ray.ObjectRef]] = {}  # status ref -> (block index, state ref)
        self.merges: dict[ray.ObjectRef, int] = {}  # merge task ref -> group
        self.finished = [False] * len(self.blocks)
        self.lowest = self.next_block = 0
        self.results: dict[int, Any] = {}
        self.n_done = self.n_failed = 0
        self.bar = make_progress(len(ids), progress)

    def run(self) -> RunResult:
        """Reduce every block, finalise every group; ``RunResult({key: state or value}, report)``."""
        try:
            self.shared_ref = ray.put((self.task_fn, self.shared, self.make_accumulator, self.strict))
            self.remote = remote_function(_block_task).options(num_returns=2, max_retries=self.max_retries,
                                                               retry_exceptions=False)
            self.merge_remote = remote_function(_merge_task).options(max_retries=self.max_retries)
            while len(self.results) < len(self.plan.keys):
                self._submit()
                ready = self._wait()
                self._collect(ready)
        finally:
            self._teardown()
        return RunResult({key: self.results[g] for g, key in enumerate(self.plan.keys)}, self.report)

    def _submit(self) -> None:
        while (self.next_block < len(self.blocks) and len(self.tasks) < self.max_in_flight
               and self.next_block < self.lowest + self.window):
            b = self.next_block
            status_ref, state_ref = self.remote.remote(self.shared_ref, self.blocks[b][1])
            self.tasks[status_ref] = (b, state_ref)
            self.report.n_tasks += 1
            self.next_block += 1

    def _wait(self) -> list:
        refs = list(self.tasks) + list(self.merges)
        if not refs:
            return []
        return wait_ready(refs, self.wait_timeout)

    def _collect(self, ready: list) -> None:
        final: list[tuple[int, Any]] = []  # groups whose final state ref is known now
        for b, state_ref, block, statuses, n_failed in finished_blocks(ready, self.tasks, lambda b: self.blocks[b][1],
                                                                       self.report, self.strict):
            g = self.blocks[b][0]
            self.n_done += len(block)
            self.n_failed += n_failed
            n_ok = len(block) - n_failed
            slots = self.pending.setdefault(g, [None] * len(self.plan.plans[g].blocks))
            slots[b - self.first_block[g]] = state_ref if n_ok else None
            self.finished[b] = True
            self.remaining[g] -= 1
            if self.remaining[g] == 0:
                states = self.pending.pop(g)
                if all(s is None for s in states):
                    final.append((g, None))
                elif len(states) == 1:
                    final.append((g, states[0]))
                else:
                    self.merges[self.merge_remote.remote(self.plan.plans[g], self.make_accumulator, *states)] = g
        while self.lowest < len(self.finished) and self.finished[self.lowest]:
            self.lowest += 1
        final.extend((self.merges.pop(r), r) for r in ready if r in self.merges)
        refs = [r for _, r in final if r is not None]
        values = iter(get_each(refs))
        for g, ref in final:
            state = None if ref is None else next(values)
            if isinstance(state, Failed):
                raise state.error
            key = self.plan.keys[g]
            self.results[g] = self.on_group(key, state) if self.on_group is not None else state
        if self.bar is not None:
            self.bar.update(self.n_done, self.n_failed)

    def _teardown(self) -> None:
        for ref in list(self.tasks) + list(self.merges):
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
        if self.bar is not None:
            self.bar.close()
        t = time.perf_counter() - self.t_start
        self.report.timings["tasks"] = self.report.timings["total"] = t
