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


# ---------------------------------------------------------------------------------------------
# kill -9 of a process tree (the driver, and the local Ray it started)
# ---------------------------------------------------------------------------------------------
def descendants(pid: int) -> set[int]:
    """``pid`` and every process below it (from /proc), now."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        found.add(p)
        todo.extend(children.get(p, []))
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_when(proc, ready, timeout: float = 240.0, poll: float = 0.02) -> None:
    """SIGKILL ``proc`` (a `subprocess.Popen` started with ``start_new_session=True``) and all its
    descendants as soon as ``ready()`` is true, then wait until none of them runs.

    The process group goes first; then every descendant seen just before, by pid, because a local Ray
    puts some of its processes (the reaper, ...) in process groups of their own and a killed driver's
    raylet, GCS and workers may outlive it for a while. Raises AssertionError if ``proc`` ends first,
    ``ready`` never comes, or a process is left.
    """
    import signal

    deadline = time.monotonic() + timeout
    tree: set[int] = set()
    try:
        while not ready():
            assert proc.poll() is None, "the process ended before it was killed" + (
                f": {proc.stderr.read().decode()[-2000:]}" if proc.stderr else "")
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(poll)
        tree = descendants(proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        end = time.monotonic() + 60
        while any(alive(p) for p in tree) and time.monotonic() < end:
            time.sleep(0.1)
    assert not [p for p in tree if alive(p)], "processes of the killed run are left"
