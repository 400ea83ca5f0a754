"""Workers that hold one (stacked) dataset and evaluate many independent jobs on it.

Likelihood profiles, minos-like scans and flux-point norm scans are many small fits on the same
dataset. Each `ProfileWorker` receives the dataset once, by ObjectRef, so it is deserialised once
per worker (not once per job); jobs are ``(fn, kwargs)`` pairs evaluated as ``fn(dataset, **kwargs)``.
Jobs must be pure with respect to the dataset (e.g. work on a copy of the models) so that the
results do not depend on which worker ran which job, nor in which order.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping, Sequence, Union

import ray

from .refs import Failed, get_each

__all__ = ["Job", "resolve_job_fn", "ProfileEvaluator", "ProfileWorker", "WorkerGroup", "map_serial",
           "map_on_workers"]

#: ``fn`` is a callable ``fn(dataset, **kwargs)``, an import path ``"pkg.mod:func"`` /
#: ``"pkg.mod.func"`` of such a function, or a bare method name called as ``dataset.name(**kwargs)``.
Job = tuple[Union[str, Callable[..., Any]], Mapping[str, Any]]


def resolve_job_fn(dataset: Any, fn: str | Callable[..., Any]) -> Callable[..., Any]:
    """Turn a job's ``fn`` into a callable taking only keyword arguments."""
    if callable(fn):
        return lambda **kw: fn(dataset, **kw)
    if not isinstance(fn, str):
        raise TypeError(f"job fn must be a callable or a str, got {type(fn).__name__}")
    if ":" in fn or "." in fn:
        module, _, name = fn.partition(":") if ":" in fn else fn.rpartition(".")
        func = getattr(importlib.import_module(module), name)
        return lambda **kw: func(dataset, **kw)
    method = getattr(dataset, fn, None)
    if method is None or not callable(method):
        raise AttributeError(f"dataset of type {type(dataset).__name__} has no method {fn!r}")
    return method


class ProfileEvaluator:
    """Hold a dataset and evaluate jobs on it (the plain class behind `ProfileWorker`).

    Parameters
    ----------
    dataset : object
        Anything the jobs take as first argument. Arrays coming from the Ray object store are
        read-only views: jobs must not write into them.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def evaluate(self, fn: str | Callable[..., Any], kwargs: Mapping[str, Any] | None = None) -> Any:
        """Evaluate one job and return its result."""
        return resolve_job_fn(self.dataset, fn)(**dict(kwargs or {}))

    def load(self, dataset: Any) -> bool:
        """Hold another dataset (a reused worker between two `map_on_workers` calls)."""
        self.dataset = dataset
        return True

    def ping(self) -> bool:
        return True


#: One CPU per worker: the jobs are fits, i.e. real compute.
ProfileWorker = ray.remote(num_cpus=1)(ProfileEvaluator)


class WorkerGroup:
    """Profile workers shared by successive `map_on_workers` calls (e.g. profiles, then flux points).

    Each call loads its dataset into the workers it uses (``load``, ordered before its jobs); the
    processes (1-2 s each to start, 5-10 s on a loaded machine) are started once. Workers hold one
    CPU each while they live: close the group (or use it as a context manager) when done, so that
    later reduction tasks get the CPUs back.
    """

    def __init__(self) -> None:
        self._workers: list[Any] = []

    def get(self, n: int) -> list[Any]:
        """``n`` workers (started when missing)."""
        while len(self._workers) < n:
            self._workers.append(ProfileWorker.remote(None))
        return self._workers[:n]

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            try:
                ray.kill(worker)
            except Exception:  # noqa: BLE001
                pass

    def __enter__(self) -> "WorkerGroup":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def map_serial(dataset: Any, jobs: Sequence[Job]) -> list[Any]:
    """Evaluate ``jobs`` in order in this process (the reference for `map_on_workers`)."""
    evaluator = ProfileEvaluator(dataset)
    return [evaluator.evaluate(fn, kwargs) for fn, kwargs in jobs]


def map_on_workers(
    dataset: Any,
    jobs: Sequence[Job],
    n_workers: int | None = None,
    *,
    max_in_flight_per_worker: int = 2,
    return_exceptions: bool = False,
    wait_timeout: float = 1.0,
    workers: WorkerGroup | None = None,
) -> list[Any]:
    """Evaluate independent jobs on a few workers that each hold ``dataset`` once.

    Parameters
    ----------
    dataset : object or ray.ObjectRef
        Put into the object store once (unless already a ref) and deserialised once per worker.
    jobs : sequence of (fn, kwargs)
        See `Job`; handed out in order to whichever worker has room (put the longest jobs first).
    n_workers : int, optional
        Number of workers; default the cluster CPUs, never more than the number of jobs.
    max_in_flight_per_worker : int
        Calls queued on one worker at a time (bounds memory of arguments and results).
    return_exceptions : bool
        If True a failed job's exception is returned in its slot; else the first failure raises.
    wait_timeout : float
        Seconds per `ray.wait` round.
    workers : WorkerGroup, optional
        Reuse (and keep) these workers; default: start ``n_workers`` and kill them at the end.

    Returns
    -------
    list
        Results in job order (equal to `map_serial` for pure jobs).
    """
    jobs = list(jobs)
    if not jobs:
        return []
    if n_workers is None:
        n_workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
    n_workers = max(1, min(int(n_workers), len(jobs)))
    k = max(1, int(max_in_flight_per_worker))

    dataset_ref = dataset if isinstance(dataset, ray.ObjectRef) else ray.put(dataset)
    group = workers
    if group is None:
        workers = [ProfileWorker.remote(dataset_ref) for _ in range(n_workers)]
    else:
        workers = group.get(n_workers)
        for worker in workers:
            worker.load.remote(dataset_ref)  # before this call's jobs (actor calls run in order)
    queue = list(range(len(jobs)))[::-1]  # pop() = next job; any worker with room takes it
    in_flight = [0] * n_workers
    pending: dict[ray.ObjectRef, tuple[int, int]] = {}  # ref -> (job index, worker)
    results: list[Any] = [None] * len(jobs)
    try:
        while pending or queue:
            for w in sorted(range(n_workers), key=in_flight.__getitem__):  # emptiest worker first
                while in_flight[w] < k and queue:
                    i = queue.pop()
                    fn, kwargs = jobs[i]
                    pending[workers[w].evaluate.remote(fn, dict(kwargs or {}))] = (i, w)
                    in_flight[w] += 1
            refs = list(pending)
            ready, rest = ray.wait(refs, num_returns=1, timeout=wait_timeout)
            if ready and rest:  # sweep whatever else is done, without blocking
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
                ready += more
            if not ready:
                continue
            for ref, value in zip(ready, get_each(ready)):
                i, w = pending.pop(ref)
                in_flight[w] -= 1
                if isinstance(value, Failed):
                    if not return_exceptions:
                        raise value.error
                    value = value.error
                results[i] = value
    finally:
        if group is None:
            for worker in workers:
                ray.kill(worker)
        else:
            if pending:  # an error stopped us: let queued jobs finish before the workers are reused
                try:
                    ray.wait(list(pending), num_returns=len(pending), timeout=60)
                except Exception:  # noqa: BLE001
                    pass
            for worker in workers:
                worker.load.remote(None)  # release the dataset
    return results

