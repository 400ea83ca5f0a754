"""The per-observation task the driver runs, and the accumulator that also keeps a per-obs summary.

`reduce_task(shared, obs_id)` is ``reduce_observation((datastore_dir, obs_id), spec)`` plus optional
test hooks (random sleep to shuffle completion order, a worker crash, a reducer-actor kill) that a
test switches on through ``shared["hooks"]``; they are inert in a normal run.

`SummaryAccumulator` is `StackAccumulator` that also records, per observation, the numbers the run
report lists (safe counts, background, FoV norm, safe-mask bins); the summaries travel in the
accumulator state, so they survive actor restarts like the sums do.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..datasets.accumulator import StackAccumulator

__all__ = ["reduce_task", "make_shared", "SummaryAccumulator", "HOOKS_ENV"]

#: Environment variable (read on the driver only) with JSON test hooks, see `reduce_task`.
HOOKS_ENV = "GRD_TASK_HOOKS"

def make_shared(datastore: str, spec: Any, hooks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``shared`` input of `reduce_task`: data store path, spec, test hooks.

    The spec travels as an object; every task gets its own deserialised copy, and `reduction`'s
    per-process caches are keyed by `ReductionSpec.content_key`, so a worker builds the stacked
    dataset and the makers once per spec, not once per task.
    """
    return {"datastore": str(datastore), "spec": spec, "hooks": dict(hooks or {})}


def _spec(shared: Mapping[str, Any]) -> Any:
    return shared["spec"]


def reduce_task(shared: Mapping[str, Any], obs_id: int):
    """Reduce one observation; ``shared`` is made by `make_shared` (or holds ``spec`` directly).

    Hooks (tests only): ``sleep_max`` (s, random sleep per call), ``crash`` (obs ids whose worker
    process exits the first time), ``kill`` ({obs_id: [actor name, min acknowledged]}: kill that
    reducer actor once it holds state), ``marker_dir`` (where first-time markers are kept).
    """
    from ..reduction import reduce_observation

    hooks = shared.get("hooks") or {}
    if hooks:
        _run_hooks(hooks, int(obs_id))
    return reduce_observation((shared["datastore"], int(obs_id)), _spec(shared))


def _first_time(marker_dir: str | None, name: str) -> bool:
    if marker_dir is None:
        return True
    marker = Path(marker_dir) / name
    try:
        with open(marker, "x"):
            return True
    except FileExistsError:
        return False


def _run_hooks(hooks: Mapping[str, Any], obs_id: int) -> None:
    sleep_max = float(hooks.get("sleep_max") or 0.0)
    if sleep_max:
        time.sleep(np.random.default_rng().uniform(0.0, sleep_max))  # random per call, not per obs
    marker_dir = hooks.get("marker_dir")
    if obs_id in set(int(o) for o in hooks.get("crash", ())) and _first_time(marker_dir, f"crash-{obs_id}"):
        os._exit(1)  # the worker process dies; Ray retries the task
    kill = {int(k): v for k, v in (hooks.get("kill") or {}).items()}
    if obs_id in kill and _first_time(marker_dir, f"kill-{obs_id}"):
        import ray

        name, min_acknowledged = kill[obs_id]
        from actors.reduction import lookup_reducer

        actor = lookup_reducer(name)
        deadline = time.monotonic() + 60
        while ray.get(actor.progress.remote())["acknowledged"] < int(min_acknowledged):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name} never acknowledged {min_acknowledged} observations")
            time.sleep(0.05)
        ray.kill(actor, no_restart=False)


class SummaryAccumulator(StackAccumulator):
    """`StackAccumulator` that also keeps ``summaries[obs_id]`` for the run report.

    A summary holds ``counts`` (safe counts in the stacked geometry), ``background`` (FoV-normalised,
    in the safe mask), ``bkg_norm``, ``bkg_tilt``, ``fov_status``, ``mask_safe_bins``, ``livetime``
    and the task's stage ``timings``.
    """

    def __init__(self, geometry, name: str | None = None):
        super().__init__(geometry, name=name)
        self.summaries: dict[int, dict[str, Any]] = {}

    def add(self, partial) -> bool:
        added = super().add(partial)
        if added:
            self.summaries[int(partial.obs_id)] = {
                "counts": int(partial.counts.sum()),
                "background": float(partial.background.sum()) if partial.background is not None else None,
                "bkg_norm": float(partial.fov_norm),
                "bkg_tilt": float(partial.fov_tilt),
                "fov_status": str(partial.fov_status),
                "mask_safe_bins": int(partial.mask_safe.sum()),
                "livetime": float(partial.livetime),
            }
        return added

    def merge(self, other: StackAccumulator) -> "SummaryAccumulator":
        super().merge(other)
        self.summaries.update(getattr(other, "summaries", {}))
        return self

    def state(self) -> dict[str, Any]:
        state = super().state()
        state["summaries"] = {int(k): dict(v) for k, v in self.summaries.items()}
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SummaryAccumulator":
        acc = super().from_state(state)
        acc.summaries = {int(k): dict(v) for k, v in (state.get("summaries") or {}).items()}
        return acc
