"""Independent jobs as Ray tasks, with a shared input put once and deserialised once per worker."""
from __future__ import annotations

import importlib
import os
from collections import OrderedDict
from typing import Any, Callable, Sequence

import ray

from actors.refs import Failed, get_each

__all__ = ["map_tasks", "remote_function", "warm_workers"]

#: Remote functions defined in this process, so each is exported to the cluster once, not per call.
_REMOTE: dict[Callable[..., Any], Any] = {}


def remote_function(fn: Callable[..., Any]) -> Any:
    """``ray.remote(fn)``, created once per process."""
    if fn not in _REMOTE:
        _REMOTE[fn] = ray.remote(fn)
    return _REMOTE[fn]

#: Shared inputs deserialised in this (worker) process, keyed by their object id. Small: a worker
#: serves one map call at a time, and a finished call's input is dropped when the next arrives.
_SHARED: OrderedDict[str, Any] = OrderedDict()
_SHARED_KEEP = 2


def _shared_value(box: list) -> Any:
    """The value of the ref in ``box`` (a list, so that Ray does not resolve it per task)."""
    ref = box[0]
    if ref is None:
        return None
    key = ref.hex()
    if key in _SHARED:
        _SHARED.move_to_end(key)
        return _SHARED[key]
    value = ray.get(ref)
    _SHARED[key] = value
    while len(_SHARED) > _SHARED_KEEP:
        _SHARED.popitem(last=False)
    return value


def _import_modules(names: list[str]) -> int:
    """A worker's warm-up: import the modules its tasks will need; returns the worker's pid."""
    for name in names:
        importlib.import_module(name)
    return os.getpid()


def warm_workers(n: int, modules: Sequence[str], timeout: float = 30.0) -> None:
    """Start ``n`` worker processes and import ``modules`` in them, waiting at most ``timeout`` s.

    Ray starts a worker process when a task needs one; its interpreter, Ray and the task's imports
    then take a second or more before the task runs. Asked while the driver has other work (the
    head start), that second is not lost. Tasks run concurrently on as many workers as there are
    free CPUs, but Ray does not promise one task per worker: this is a warm-up, not a guarantee.
    """
    refs = [remote_function(_import_modules).remote(list(modules)) for _ in range(max(0, int(n)))]
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=timeout)


def _job_task(box: list, fn: Callable[[Any, Any], Any], job: Any) -> Any:
    return fn(_shared_value(box), job)


def map_tasks(fn: Callable[[Any, Any], Any], jobs: Sequence[Any], shared: Any = None, *,
              max_in_flight: int = 4, wait_timeout: float = 1.0) -> list[Any]:
    """``[fn(shared, job) for job in jobs]`` as Ray tasks (see `RayBackend.map`)."""
    if not jobs:
        return []
    box = [None if shared is None else ray.put(shared)]
    remote = remote_function(_job_task)
    results: list[Any] = [None] * len(jobs)
    pending: dict[ray.ObjectRef, int] = {}
    next_job = 0
    try:
        while pending or next_job < len(jobs):
            while next_job < len(jobs) and len(pending) < max_in_flight:
                pending[remote.remote(box, fn, jobs[next_job])] = next_job
                next_job += 1
            ready, rest = ray.wait(list(pending), num_returns=1, timeout=wait_timeout)
            if ready and rest:  # sweep whatever else is done, without blocking
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            for ref, value in zip(ready, get_each(ready)):
                i = pending.pop(ref)
                if isinstance(value, Failed):
                    raise value.error
                results[i] = value
    finally:
        for ref in pending:
            try:
                ray.cancel(ref)
            except Exception:  # noqa: BLE001
                pass
    return results
