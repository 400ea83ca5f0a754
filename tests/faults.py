"""Fault injection for the distributed tests: a wrapper around a task function (this module holds no tests).

The run path knows nothing of it: a test passes ``FaultyTask(task_fn, ...)`` where the run expects a
task function. Knobs: a random sleep per call (shuffles completion order), observations that raise
an `ObservationError`, observations whose worker process dies the first time (Ray retries the task),
and observations that kill a reducer actor (by name, public Ray API) once it has acknowledged enough.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from gamma_ray_dist.errors import ObservationError


@dataclass
class FaultyTask:
    """``task_fn(shared, obs_id)`` with injected faults; picklable (a module-level class)."""

    task_fn: Callable[[Any, int], Any]
    sleep_max: float = 0.0
    fail: frozenset = frozenset()
    crash: frozenset = frozenset()
    kill: Mapping[int, tuple[str, int]] = field(default_factory=dict)  # obs_id -> (actor name, min acknowledged)
    marker_dir: str | None = None  # where "happened once" markers go (crash and kill fire once)

    def __call__(self, shared: Any, obs_id: int) -> Any:
        obs_id = int(obs_id)
        if self.sleep_max:
            time.sleep(np.random.default_rng().uniform(0.0, self.sleep_max))  # random per call, not per obs
        if obs_id in self.fail:
            raise ObservationError("events table is corrupt", obs_id=obs_id, filename=f"/data/run{obs_id}.fits.gz")
        if obs_id in self.crash and self._first_time(f"crash-{obs_id}"):
            os._exit(1)  # the worker process dies; Ray retries the task
        if obs_id in self.kill and self._first_time(f"kill-{obs_id}"):
            kill_when_acknowledged(*self.kill[obs_id])
        return self.task_fn(shared, obs_id)

    def _first_time(self, name: str) -> bool:
        if self.marker_dir is None:
            return True
        try:
            with open(Path(self.marker_dir) / name, "x"):
                return True
        except FileExistsError:
            return False


def kill_when_acknowledged(name: str, min_acknowledged: int, timeout: float = 60.0) -> None:
    """Kill the reducer actor ``name`` once it has acknowledged ``min_acknowledged`` keys (truly mid-run)."""
    import ray

    actor = ray.get_actor(name)
    deadline = time.monotonic() + timeout
    while ray.get(actor.progress.remote())["acknowledged"] < int(min_acknowledged):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never acknowledged {min_acknowledged} keys")
        time.sleep(0.02)
    ray.kill(actor, no_restart=False)
