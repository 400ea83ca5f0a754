"""Pipeline on the seed data: the stacked sums are bit-identical whatever runs them.

Serial, Ray with 1 task in flight, Ray with 2 workers, Ray with a shuffled completion order, Ray with a
worker process killed mid-run and Ray with the root reducer killed mid-run all give the same raw
float64/int64 accumulator arrays (exact equality, no tolerance). Blocks of one observation, so that
the root reducer merges four states. Profiles and MINOS errors computed on Ray workers equal the
serial ones exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from gamma_ray_dist.config import AnalysisConfig
from gamma_ray_dist.distributed import RayBackend, SerialBackend
from gamma_ray_dist.pipeline.inputs import open_datastore, select_obs_ids
from gamma_ray_dist.pipeline.run import reduce_stacked
from gamma_ray_dist.pipeline.tasks import reduce_task

from .faults import FaultyTask
from .test_cli import CONFIG, MODELS

SEED_IDS = [23523, 23526, 23559, 23592]
ONE = dict(block_size=1, progress=False)  # four blocks: the root reducer merges them


@pytest.fixture(scope="module")
def config(hess_dr1):
    text = CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(hess_dr1))
    return AnalysisConfig.from_yaml(text)


@pytest.fixture(scope="module")
def serial_state(config):
    state, report = reduce_stacked(config, SEED_IDS, SerialBackend(**ONE))
    assert report.n_ok == 4 and report.n_blocks == 4
    return state


@pytest.fixture(scope="module")
def ray_backend(ray_session):
    with RayBackend(**ONE) as backend:
        yield backend


def _assert_identical(state, reference):
    assert list(state["obs_ids"]) == list(reference["obs_ids"]) == SEED_IDS
    for key, ref in reference["buffers"].items():
        got = state["buffers"][key]
        if ref is None:
            assert got is None, key
            continue
        assert got.dtype == ref.dtype and got.shape == ref.shape, key
        assert np.array_equal(got, ref), f"{key} differs"
    assert state["livetime"] == reference["livetime"]
    np.testing.assert_array_equal(state["gti_start"], reference["gti_start"])
    assert state["summaries"] == reference["summaries"]


def test_selection_is_the_seed(config):
    assert select_obs_ids(config, open_datastore(config)) == SEED_IDS


def test_serial_state_is_the_seed(serial_state, seed_reference):
    assert int(serial_state["buffers"]["counts"].sum()) == 2479
    assert serial_state["buffers"]["background"].sum() == pytest.approx(
        seed_reference["stacked"]["background"], rel=1e-3)


@pytest.mark.parametrize("max_in_flight", [1, 2], ids=["1-worker", "2-workers"])
def test_ray_is_bit_identical_to_serial(ray_backend, config, serial_state, max_in_flight):
    state, report = reduce_stacked(config, SEED_IDS, ray_backend, max_in_flight=max_in_flight)
    assert report.backend == "ray" and report.n_ok == 4 and report.n_reducers == 1
    _assert_identical(state, serial_state)


def test_default_blocks_are_bit_identical_too(ray_backend, config):
    serial, _ = reduce_stacked(config, SEED_IDS, SerialBackend(progress=False))
    state, report = reduce_stacked(config, SEED_IDS, ray_backend, block_size=8)
    assert report.n_blocks == 1 and report.n_reducers == 0  # one task folds the four observations
    _assert_identical(state, serial)


def test_shuffled_completion_order_is_bit_identical(ray_backend, config, serial_state):
    # a random sleep per task call (not per obs id): the two runs finish in different orders
    for _ in range(2):
        state, _ = reduce_stacked(config, SEED_IDS, ray_backend, task_fn=FaultyTask(reduce_task, sleep_max=1.0))
        _assert_identical(state, serial_state)


def test_killed_worker_process_gives_the_identical_result(ray_backend, config, serial_state, tmp_path):
    task = FaultyTask(reduce_task, crash=frozenset({23526}), marker_dir=str(tmp_path))
    state, report = reduce_stacked(config, SEED_IDS, ray_backend, task_fn=task)
    assert (tmp_path / "crash-23526").exists()  # the worker really died once
    assert report.n_failed == 0
    _assert_identical(state, serial_state)


def test_killed_root_reducer_gives_the_identical_result(ray_session, config, serial_state, tmp_path):
    run_id = "pipeline-kill"
    # the task of 23559 kills the root reducer once it holds 23523 and 23526
    task = FaultyTask(reduce_task, kill={23559: (f"{run_id}.root", 2)}, marker_dir=str(tmp_path))
    with RayBackend(reuse_reducers=False, **ONE) as backend:
        state, report = reduce_stacked(config, SEED_IDS, backend, task_fn=task, run_id=run_id)
    assert (tmp_path / "kill-23559").exists()
    assert report.reducer_restarts == 1 and report.n_failed == 0
    _assert_identical(state, serial_state)


def test_parallel_profiles_equal_serial(ray_backend, config, serial_state):
    from gamma_ray_dist.pipeline.fitting import apply_fit_range, fit_dataset, load_models, run_profiles
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    dataset = SummaryAccumulator.from_state(serial_state).to_dataset("stacked")
    apply_fit_range(dataset, config)
    dataset.models = load_models(config, "stacked", MODELS)
    for name in ("lat_0", "amplitude"):  # keep the test short: profile index, lon_0 and bkg norm
        dataset.models.parameters[name].frozen = True
    assert fit_dataset(dataset).success
    serial = run_profiles(dataset, SerialBackend())
    parallel = run_profiles(dataset, ray_backend)
    assert set(serial) == {"crab.spectral.index", "crab.spatial.lon_0", "stacked-bkg.spectral.norm"}
    assert parallel == serial  # exact
    for name, prof in serial.items():
        assert len(prof["values"]) == 11 and all(prof["success"])
        delta = np.array(prof["delta_stat"])
        assert delta.min() > -1e-3 and delta[0] > 1 and delta[-1] > 1  # a minimum inside the scan
        par = dataset.models.parameter_by_unique_name(name)
        assert prof["minos_success"]
        assert prof["errp"] == pytest.approx(par.error, rel=0.1) and prof["errn"] == pytest.approx(par.error, rel=0.1)


def test_spec_cache_is_keyed_by_content_not_identity(config):
    import dataclasses
    import pickle

    from gamma_ray_dist import reduction
    from gamma_ray_dist.pipeline.inputs import make_reduction_spec

    spec = make_reduction_spec(config)
    prepared = reduction.prepare(spec)
    copy = pickle.loads(pickle.dumps(spec))  # what every Ray task receives
    assert copy is not spec and copy.content_key() == spec.content_key()
    assert reduction.prepare(copy) is prepared
    assert make_reduction_spec(config).content_key() == spec.content_key()  # rebuilt: same content
    other = dataclasses.replace(make_reduction_spec(config), offset_max=2.0)
    assert other.content_key() != spec.content_key()
