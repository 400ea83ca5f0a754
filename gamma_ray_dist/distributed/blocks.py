"""Blocks of observations and the work one task does on a block (Ray-free; serial mode runs it too).

The result of a reduction is defined by its *plan* alone: the sorted unique obs ids cut into blocks
of ``block_size`` consecutive ids; each block folded in obs id order into a fresh accumulator; the
block states merged in block order, directly by the root, or by middle reducers of ``merge_fan_in``
consecutive blocks whose states the root merges in order. The plan depends on the ids and the
settings only, never on the workers, so the float64 sums are bit-identical whatever runs them.
"""
from __future__ import annotations

import os
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from actors.protocols import AccumulatorFactory, Partial, TaskFn
from actors.tree import plan_chunks

__all__ = ["ReductionPlan", "GroupedPlan", "resolve_block_size", "auto_block_count", "MAX_BLOCK_SIZE", "MIN_BLOCKS",
           "sorted_unique", "run_one", "fold_block", "fold_head", "final_state", "merge_group", "failure_status",
           "record_block", "reraise"]


#: The automatic block size's cap: a block state is a few MB (~10 ms through the object store and a
#: merge), so blocks of 8 observations (~0.3 s of work) keep that cost to a few per cent.
MAX_BLOCK_SIZE = 8

#: The automatic block size cuts a small reduction into at least this many blocks (when it has as
#: many observations), so that a run of a few observations keeps a few workers busy: with blocks of
#: 8, the seed's 4 observations were one task, i.e. serial on any cluster.
MIN_BLOCKS = 4


def auto_block_count(n_obs: int) -> int:
    """Blocks of an automatic plan of ``n_obs`` observations: at least `MIN_BLOCKS` (or one per
    observation), at most `MAX_BLOCK_SIZE` observations each. A function of the number of observations
    only, never of the workers: the plan, hence the bits, stay the same on any backend."""
    n = int(n_obs)
    return max(min(n, MIN_BLOCKS), -(-n // MAX_BLOCK_SIZE))


def resolve_block_size(block_size: int | None, n_obs: int) -> int:
    """The (largest) block size of a plan of ``n_obs`` observations: ``block_size``, or when None the
    automatic one, ``ceil(n_obs / auto_block_count(n_obs))``."""
    if block_size is not None:
        return int(block_size)
    n = int(n_obs)
    return max(1, -(-n // auto_block_count(n))) if n else 1


@dataclass(frozen=True)
class ReductionPlan:
    """Blocks of observations and the merge tree above them.

    Attributes
    ----------
    blocks : tuple of tuple of int
        Consecutive sorted obs ids, ``block_size`` each (the last shorter).
    groups : tuple of tuple of int
        Block indices merged by one middle reducer; empty when the root merges the blocks directly.
    """

    blocks: tuple[tuple[int, ...], ...]
    groups: tuple[tuple[int, ...], ...]

    @classmethod
    def create(cls, obs_ids: Iterable[int], block_size: int | None, merge_fan_in: int) -> "ReductionPlan":
        """The plan for the sorted unique ``obs_ids``.

        A given ``block_size`` cuts blocks of exactly that many (the last shorter); None (automatic)
        shares the observations out evenly over `auto_block_count` blocks (sizes differing by at most
        one, the larger first): 21 observations give 6, 5, 5, 5, not 6, 6, 6, 3, so that two workers
        get 11 and 10 observations, not 12 and 9.
        """
        if int(merge_fan_in) < 2:
            raise ValueError(f"merge_fan_in must be >= 2, got {merge_fan_in}")
        obs_ids = sorted(set(obs_ids))
        if block_size is None and obs_ids:
            n_blocks = auto_block_count(len(obs_ids))
            q, r = divmod(len(obs_ids), n_blocks)  # the first r blocks get q + 1
            edges = [b * q + min(b, r) for b in range(n_blocks + 1)]
            blocks = tuple(tuple(obs_ids[lo:hi]) for lo, hi in zip(edges[:-1], edges[1:]))
        else:
            blocks = tuple(plan_chunks(obs_ids, resolve_block_size(block_size, len(obs_ids))))
        groups = tuple(plan_chunks(range(len(blocks)), merge_fan_in)) if len(blocks) > merge_fan_in else ()
        return cls(blocks, groups)

    @property
    def n_reducers(self) -> int:
        """Reducer actors: none for one block, a root, plus one per group."""
        return 0 if len(self.blocks) <= 1 else 1 + len(self.groups)


@dataclass(frozen=True)
class GroupedPlan:
    """One `ReductionPlan` per group: a reduction that ends in one state per group, in one pass.

    ``groups`` maps every obs id to a hashable group key (e.g. the obs id itself, a night, a time
    interval). The groups are ordered by their smallest obs id (keys need not be comparable); each
    group's sorted obs ids are cut into blocks and merged exactly as an ungrouped reduction of those
    ids alone (`ReductionPlan`), so no block straddles two groups and a group's state is bit-identical
    to reducing its observations on their own, on any backend and worker count.

    Attributes
    ----------
    keys : tuple
        Group keys, in plan order.
    plans : tuple of ReductionPlan
        The plan of each group.
    """

    keys: tuple
    plans: tuple[ReductionPlan, ...]

    @classmethod
    def create(cls, obs_ids: Iterable[int], groups: Mapping[int, Hashable], block_size: int | None,
               merge_fan_in: int) -> "GroupedPlan":
        """The plan of the sorted unique ``obs_ids`` grouped by ``groups[obs_id]``.

        Raises
        ------
        ValueError
            An obs id has no group.
        """
        members: dict[Hashable, list[int]] = {}
        for obs_id in sorted(set(int(o) for o in obs_ids)):
            if obs_id not in groups:
                raise ValueError(f"observation {obs_id} has no group in the grouping given to the reduction")
            members.setdefault(groups[obs_id], []).append(obs_id)
        keys = tuple(members)  # ids are visited in sorted order: groups come by their smallest id
        return cls(keys, tuple(ReductionPlan.create(members[k], block_size, merge_fan_in) for k in keys))

    @property
    def blocks(self) -> list[tuple[int, tuple[int, ...]]]:
        """``(group index, block)`` of every block, in plan order."""
        return [(g, block) for g, plan in enumerate(self.plans) for block in plan.blocks]


def merge_group(plan: ReductionPlan, states: Sequence[dict[str, Any] | None],
                make_accumulator: AccumulatorFactory) -> dict[str, Any] | None:
    """A group's result from its block states (in block order; None for a block that reduced nothing).

    The folds are those of the ungrouped reduction of the group's observations (an empty accumulator
    merging the block states in order, through middle groups of ``merge_fan_in`` when the plan has
    them), so the sums carry the same bits. The result is the accumulator's compact
    ``transport_state()`` when it has one (a one-observation group stays cropped to its window), or
    None when no observation of the group could be reduced: never an empty state standing for zero.
    """
    if all(s is None for s in states):
        return None
    if len(plan.blocks) == 1:
        return states[0]

    def fold(items: Sequence[dict[str, Any] | None]):
        acc = make_accumulator()
        for item in items:
            if item is not None:
                acc.merge(type(acc).from_state(item))
        return acc

    if plan.groups:
        acc = fold([fold([states[b] for b in group]).state() for group in plan.groups])
    else:
        acc = fold(states)
    return getattr(acc, "transport_state", acc.state)()


def sorted_unique(obs_ids: Iterable[Any]) -> tuple[list[int], list[int]]:
    """``(sorted unique ids, sorted ids given more than once)``."""
    seen: set[int] = set()
    dup: set[int] = set()
    for o in obs_ids:
        o = int(o)
        if o in seen:
            dup.add(o)
        seen.add(o)
    return sorted(seen), sorted(dup)


def run_one(task_fn: TaskFn, shared: Any, obs_id: int) -> tuple[dict[str, Any], Partial | None]:
    """Run one observation; an exception becomes a failed status (data errors are never retried)."""
    started, t0, c0 = time.time(), time.perf_counter(), time.process_time()
    try:
        partial = task_fn(shared, obs_id)
    except Exception as error:  # noqa: BLE001 - recorded per observation; strict mode re-raises
        status, partial = failure_status(error, time.perf_counter() - t0), None
    else:
        status = {"ok": True, "seconds": time.perf_counter() - t0,
                  "timings": dict(getattr(partial, "timings", None) or {})}
    status.update(started=started, worker=os.getpid(), cpu=time.process_time() - c0)
    return status, partial


def fold_block(task_fn: TaskFn, shared: Any, block: tuple[int, ...], make_accumulator: AccumulatorFactory,
               strict: bool = False, on_status: Callable[[dict[str, Any]], None] | None = None,
               ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Reduce a block's observations in order into one accumulator.

    ``on_status`` (in-process callers: the serial progress bar) is called with each observation's
    status as soon as it is done.

    Returns
    -------
    statuses : list of dict
        One per observation reduced (with ``strict``, the block stops at its first failure).
    state : dict or None
        The accumulator's ``transport_state()`` (compact, when it has one) or ``state()``, of the
        successful observations; None when none succeeded (or with ``strict`` after a failure).
    """
    statuses: list[dict[str, Any]] = []
    acc = None
    for obs_id in block:
        status, partial = run_one(task_fn, shared, obs_id)
        statuses.append(status)
        if on_status is not None:
            on_status(status)
        if partial is None:
            if strict:
                return statuses, None
            continue
        if acc is None:
            acc = make_accumulator()
        acc.add(partial)
    if acc is None:
        return statuses, None
    return statuses, getattr(acc, "transport_state", acc.state)()


def fold_head(plan: ReductionPlan, task_fn: TaskFn, shared: Any, make_accumulator: AccumulatorFactory,
              stop: threading.Event, *, strict: bool = False, skip: Iterable[int] = (),
              max_blocks: int | None = None) -> dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]]:
    """Fold the plan's first blocks in this process until ``stop`` is set: a driver's head start.

    While a local Ray starts (seconds in which the driver would only wait), the driver folds the
    first blocks itself, exactly as a block task would (`fold_block`); the reduction then sends their
    states to the reducers in place of task results, so the result keeps its bits. ``stop`` is
    checked before each block (the one under way is finished); blocks in ``skip`` (durable from an
    earlier attempt) are passed over; at most ``max_blocks`` are folded; with ``strict`` the head
    start ends at the first block with a failure (its statuses are returned, to be re-raised).

    Returns
    -------
    dict
        ``{block index: (statuses, state)}`` as `fold_block` returns them, in plan order.
    """
    skip = set(skip)
    head: dict[int, tuple[list[dict[str, Any]], dict[str, Any] | None]] = {}
    for b, block in enumerate(plan.blocks):
        if stop.is_set() or (max_blocks is not None and len(head) >= max_blocks):
            break
        if b in skip:
            continue
        statuses, state = fold_block(task_fn, shared, block, make_accumulator, strict)
        head[b] = (statuses, state)
        if strict and not all(s["ok"] for s in statuses):
            break
    return head


def final_state(state: dict[str, Any] | None, make_accumulator: AccumulatorFactory) -> dict[str, Any]:
    """A one-block run's result as a reducer would give it: ``state()`` of the block's accumulator
    (the block shipped its compact ``transport_state``), or the empty state when nothing was reduced."""
    empty = make_accumulator()
    return empty.state() if state is None else type(empty).from_state(state).state()


def failure_status(error: BaseException, seconds: float = 0.0) -> dict[str, Any]:
    """A failed observation's status; carries the exception itself when it pickles."""
    try:
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


def record_block(report: Any, block: Sequence[int], statuses: Sequence[dict[str, Any]], strict: bool,
                 log: Any = None) -> int:
    """Record a block's statuses in ``report`` (a `report.RunReport`); returns how many failed.

    Each failure is logged on ``log`` (None: not logged, e.g. taken over from an earlier attempt);
    with ``strict`` the first one is re-raised.
    """
    n_failed = 0
    for obs_id, status in zip(block, statuses):
        entry = report.record(status, obs_id)
        if entry.status == "ok":
            continue
        n_failed += 1
        if log is not None:
            log.warning("observation %s failed: %s: %s", obs_id, entry.error_type, entry.message)
        if strict:
            reraise(status, obs_id)
    return n_failed


def reraise(status: dict[str, Any], obs_id: int) -> None:
    """Raise the error a failed status carries (strict mode)."""
    error = status.get("exception")
    if isinstance(error, BaseException):
        raise error
    from ..errors import ObservationError  # the exception did not pickle, or was recorded by an earlier attempt

    error = ObservationError(f"{status['error_type']}: {status['message']}")  # the message names the obs
    error.obs_id, error.filename = int(obs_id), status.get("filename")
    raise error
