"""ProfileWorker / map_on_workers: many pure jobs on workers holding one dataset."""
from __future__ import annotations

import os

import numpy as np
import pytest

from actors.profile import ProfileEvaluator, map_on_workers, map_serial

pytestmark = pytest.mark.ray


class FakeDataset:
    """Stands for a stacked MapDataset: arrays + a statistic."""

    unpickled = 0  # per process: how many times a FakeDataset was deserialised here

    def __init__(self, n: int = 2000) -> None:
        rng = np.random.default_rng(1)
        self.counts = rng.poisson(5.0, n).astype(np.float64)
        self.background = np.full(n, 4.0)
        self.loaded_in = os.getpid()  # where __init__/unpickle ran

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.loaded_in = os.getpid()
        type(self).unpickled += 1

    def stat_sum(self, norm: float = 1.0) -> float:
        mu = norm * self.background
        return float(2 * np.sum(mu - self.counts * np.log(mu)))


def profile_point(dataset: FakeDataset, norm: float) -> tuple[float, float]:
    """A pure job: the Cash statistic at a fixed norm."""
    return norm, dataset.stat_sum(norm)


def where_loaded(dataset: FakeDataset) -> tuple[int, int, int]:
    return dataset.loaded_in, os.getpid(), type(dataset).unpickled


def failing(dataset: FakeDataset, norm: float) -> float:
    if norm > 1.0:
        raise ValueError(f"norm {norm} out of range")
    return norm


def test_plain_evaluator_resolves_callables_paths_and_methods():
    ev = ProfileEvaluator(FakeDataset())
    assert ev.evaluate(profile_point, {"norm": 1.0}) == profile_point(ev.dataset, 1.0)
    assert ev.evaluate(f"{__name__}:profile_point", {"norm": 1.0})[1] == ev.dataset.stat_sum(1.0)
    assert ev.evaluate(f"{__name__}.profile_point", {"norm": 2.0})[1] == ev.dataset.stat_sum(2.0)
    assert ev.evaluate("stat_sum", {"norm": 3.0}) == ev.dataset.stat_sum(3.0)
    with pytest.raises(AttributeError, match="no method 'nope'"):
        ev.evaluate("nope", {})


def test_map_on_workers_equals_serial_in_job_order(ray_session):
    dataset = FakeDataset()
    jobs = [(profile_point, {"norm": float(x)}) for x in np.linspace(0.5, 1.5, 11)]
    jobs += [("stat_sum", {"norm": 0.9})]
    assert map_on_workers(dataset, jobs, n_workers=2, max_in_flight_per_worker=2) == map_serial(dataset, jobs)


def test_dataset_is_deserialised_once_per_worker(ray_session):
    jobs = [(where_loaded, {})] * 8
    pairs = map_on_workers(FakeDataset(), jobs, n_workers=2)
    # The dataset was unpickled in the worker process that runs the jobs, once per worker.
    assert all(loaded == pid and count == 1 for loaded, pid, count in pairs)
    assert len({pid for _, pid, _ in pairs}) == 2


def test_failures_raise_or_are_returned(ray_session):
    jobs = [(failing, {"norm": 0.5}), (failing, {"norm": 2.0})]
    with pytest.raises(ValueError, match="norm 2.0 out of range"):
        map_on_workers(FakeDataset(10), jobs, n_workers=1)
    out = map_on_workers(FakeDataset(10), jobs, n_workers=2, return_exceptions=True)
    assert out[0] == 0.5 and isinstance(out[1], ValueError)
    assert map_on_workers(FakeDataset(10), [], n_workers=2) == []


def test_worker_group_is_reused_across_calls_with_other_datasets(ray_session):
    from actors.profile import WorkerGroup

    first, second = FakeDataset(100), FakeDataset(300)
    jobs = [(profile_point, {"norm": n}) for n in (0.5, 1.0, 1.5, 2.0)]
    where = [(where_loaded, {})] * 4
    with WorkerGroup() as group:
        assert map_on_workers(first, jobs, n_workers=2, workers=group) == map_serial(first, jobs)
        pids_first = {p for _, p, _ in map_on_workers(first, where, n_workers=2, workers=group)}
        assert map_on_workers(second, jobs, n_workers=2, workers=group) == map_serial(second, jobs)
        pids_second = {p for _, p, _ in map_on_workers(second, where, n_workers=2, workers=group)}
        assert pids_first == pids_second and len(pids_first) == 2  # the same two processes
        assert len(group.get(2)) == 2
    assert group._workers == []  # closed
