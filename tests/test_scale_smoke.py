"""Scale smoke test: 40 simulated observations reduced on Ray, with accounting and memory sanity.

The fast version of ``benchmarks/bench_scale.py``: every observation is reduced and accounted for,
the stacked counts are the sum of the per-observation counts, the driver never fetches a partial
dataset (block states go from the workers to the reducer actors by reference), the result is
bit-identical to the serial run, and the final state has the size of the stacked geometry whatever
the number of observations.
"""
from __future__ import annotations

import numpy as np
import pytest

N_OBS = 40
BLOCK = 4  # 10 blocks in 3 groups of 4 (merge_fan_in) and a root: exercises the whole tree
MERGE_FAN_IN = 4


@pytest.fixture(scope="module")
def sim_config(tmp_path_factory):
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.pipeline.demo import demo_config_dict
    from gamma_ray_dist.simulate import SourceModel, simulate_datastore

    source = SourceModel()
    store = simulate_datastore(tmp_path_factory.mktemp("scale") / "store", n_obs=N_OBS, source=source, seed=3)
    cfg = demo_config_dict(store.resolve(), source.ra, source.dec)
    cfg["ray"] = {"block_size": BLOCK, "merge_fan_in": MERGE_FAN_IN, "max_in_flight": 4}
    return AnalysisConfig.from_dict(cfg)


def _reduce(config, obs_ids, serial: bool):
    from gamma_ray_dist.distributed import ExecutionSettings, make_backend
    from gamma_ray_dist.pipeline.inputs import make_reduction_spec
    from gamma_ray_dist.pipeline.run import reduce_stacked

    spec = make_reduction_spec(config)
    settings = ExecutionSettings.resolve(config.ray, backend="serial" if serial else "ray", progress=False)
    with make_backend(settings) as backend:  # joins the session's Ray
        return reduce_stacked(config, list(obs_ids), backend, spec)


def _arrays(state: dict) -> dict[str, np.ndarray]:
    """The numpy arrays of an accumulator state (flattened keys), without the per-obs summaries."""
    out: dict[str, np.ndarray] = {}

    def walk(prefix: str, value) -> None:
        if isinstance(value, np.ndarray):
            out[prefix] = value
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)

    walk("", {k: v for k, v in state.items() if k != "summaries"})
    return out


def _partial_types():
    from gamma_ray_dist.datasets.partial import PartialDataset

    return (PartialDataset,)


def _contains(value, types, depth: int = 0) -> bool:
    if isinstance(value, types):
        return True
    if depth < 3 and isinstance(value, (list, tuple)):
        return any(_contains(v, types, depth + 1) for v in value)
    if depth < 3 and isinstance(value, dict):
        return any(_contains(v, types, depth + 1) for v in value.values())
    return False


@pytest.mark.ray
def test_scale_smoke_accounting(ray_session, sim_config, monkeypatch):
    ray = ray_session
    ids = list(range(1, N_OBS + 1))

    # Record everything the driver fetches from the object store during the distributed run.
    fetched: list = []
    real_get = ray.get

    def spy_get(refs, *args, **kwargs):
        value = real_get(refs, *args, **kwargs)
        fetched.append(value)
        return value

    monkeypatch.setattr(ray, "get", spy_get)
    state, report = _reduce(sim_config, ids, serial=False)
    monkeypatch.setattr(ray, "get", real_get)

    # every observation reduced and recorded once
    assert report.backend == "ray"
    assert report.n_ok == N_OBS and report.n_failed == 0, report.failures
    assert sorted(report.obs) == ids
    assert report.n_blocks == N_OBS // BLOCK and report.n_reducers == 4
    assert report.duplicate_obs_ids == []
    for obs_id, status in report.obs.items():
        assert status.status == "ok" and status.seconds > 0, (obs_id, status)
    summaries = state["summaries"]
    assert sorted(int(k) for k in summaries) == ids

    # stacked counts = sum of the per-observation (safe) counts; every observation saw events
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    dataset = SummaryAccumulator.from_state(state).to_dataset("stacked")
    per_obs = [int(summaries[k]["counts"]) for k in summaries]
    assert min(per_obs) > 0
    stacked_counts = np.asarray(dataset.counts.data)
    assert int(stacked_counts.astype(np.int64).sum()) == sum(per_obs)
    assert state["obs_ids"].tolist() == ids
    assert float(state["livetime"]) == pytest.approx(sum(float(s["livetime"]) for s in summaries.values()))

    # the driver fetched small statuses, replies and the final state: never a partial dataset
    partial_types = _partial_types()
    assert not any(_contains(v, partial_types) for v in fetched)
    assert any(isinstance(v, dict) and "summaries" in v for v in fetched)  # the final state, once

    # bit-identical to the serial run (same tree, same order)
    state_serial, report_serial = _reduce(sim_config, ids, serial=True)
    assert report_serial.n_ok == N_OBS
    a, b = _arrays(state), _arrays(state_serial)
    assert a.keys() == b.keys() and a
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert np.array_equal(a[key], b[key], equal_nan=a[key].dtype.kind == "f"), key
    assert state["summaries"] == state_serial["summaries"]
    assert state["livetime"] == state_serial["livetime"] and state["fov"] == state_serial["fov"]

    # memory: the map buffers (what the reducers hold and the driver fetches) have the size of
    # the stacked geometry, independent of the number of observations (only the per-observation
    # bookkeeping, obs ids, GTIs and summaries, grows: a few numbers per observation)
    state_few, _ = _reduce(sim_config, ids[:BLOCK + 1], serial=True)
    buffers = {k: v for k, v in a.items() if k.startswith("buffers.")}
    few = {k: v for k, v in _arrays(state_few).items() if k.startswith("buffers.")}
    assert buffers and few.keys() == buffers.keys()
    assert sum(v.nbytes for v in few.values()) == sum(v.nbytes for v in buffers.values())
    assert a["buffers.counts"].dtype == np.int64
    per_obs_bytes = sum(a[k].nbytes for k in a if not k.startswith("buffers.")) / N_OBS
    assert per_obs_bytes < 64, per_obs_bytes
