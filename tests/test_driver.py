"""run_distributed vs run_serial: bit-identical results, failures, crashes, actor kills, progress.

Uses the session Ray (``ray_session``) and the fakes of `test_driver_fakes` (float64 values over
16 decades, so any change of summation order changes the bits).
"""
from __future__ import annotations

import io

import numpy as np
import pytest

from gamma_ray_dist.driver import ensure_ray, pack_size, run_distributed, run_serial
from gamma_ray_dist.errors import ObservationError

from .test_driver_fakes import fake_task, make_accumulator

pytestmark = pytest.mark.ray

IDS = list(range(100, 112))
FAN_IN = 4


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key  # bits, incl. -0.0


@pytest.fixture(scope="module")
def serial_state():
    return run_serial(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False).state


def test_chunking_changes_bits_so_equality_means_something(serial_state):
    other = run_serial(IDS, fake_task, {}, make_accumulator, fan_in=5, progress=False).state
    assert not np.array_equal(serial_state["values"], other["values"])


@pytest.mark.parametrize("max_in_flight, per_task", [(1, 8), (3, 8), (8, 8), (3, 1), (8, 3)])
def test_ray_is_bit_identical_to_serial_whatever_the_completion_order(ray_session, serial_state, max_in_flight,
                                                                     per_task):
    shuffled = IDS[5:] + IDS[:5][::-1] + IDS[2:4]  # input order and duplicates must not matter
    result = run_distributed(
        shuffled, fake_task, {"sleep_max": 0.03}, make_accumulator,
        max_in_flight=max_in_flight, fan_in=FAN_IN, progress=False, max_obs_per_task=per_task,
    )
    _assert_same(result.state, serial_state)
    report = result.report
    assert report.n_ok == len(IDS) and report.n_failed == 0
    assert report.duplicate_obs_ids == IDS[2:4]
    assert report.n_chunks == 3 and report.stage_seconds["make"] == pytest.approx(0.012)
    assert set(report.timings) >= {"put_shared", "tasks", "reduce_tail", "total"}


def test_pack_size_shrinks_towards_the_end_of_the_run():
    sizes, left = [], 30
    while left:
        sizes.append(pack_size(left, n_cpus=2, max_obs_per_task=8))
        left -= sizes[-1]
    assert sizes == [8, 8, 7, 3, 2, 1, 1]  # left: 30, 22, 14, 7, 4, 2, 1
    assert pack_size(100, 4, 1) == 1 and pack_size(3, 8, 8) == 1 and pack_size(0, 2, 8) == 1


def test_packs_stay_within_a_chunk_and_report_their_number(ray_session, serial_state):
    result = run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, max_in_flight=8, progress=False)
    # 12 observations in chunks of 4 on 2 CPUs: packs of 4 | 4 | 2, 1, 1 (cut at the chunk ends)
    assert result.report.n_tasks == 5 and result.report.max_obs_per_task == 8
    _assert_same(result.state, serial_state)
    workers = {status.worker for status in result.report.obs.values()}
    assert all(status.started > 0 for status in result.report.obs.values()) and 0 not in workers


def test_single_chunk_run(ray_session):
    serial = run_serial(IDS[:3], fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False)
    result = run_distributed(IDS[:3], fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False)
    _assert_same(result.state, serial.state)
    assert result.report.n_chunks == 1


def test_empty_run(ray_session):
    result = run_distributed([], fake_task, {}, make_accumulator, progress=False)
    assert result.state["values"].sum() == 0 and result.report.obs == {}


def test_failed_observation_is_recorded_and_the_rest_reduced(ray_session):
    bad = IDS[5]
    shared = {"fail": {bad}}
    serial = run_serial(IDS, fake_task, shared, make_accumulator, fan_in=FAN_IN, progress=False)
    result = run_distributed(IDS, fake_task, shared, make_accumulator, fan_in=FAN_IN, progress=False)
    _assert_same(result.state, serial.state)
    assert bad not in result.state["obs_ids"] and len(result.state["obs_ids"]) == len(IDS) - 1
    (failure,) = result.report.failures
    assert failure.obs_id == bad and failure.error_type == "ObservationError"
    assert failure.filename == f"/data/run{bad}.fits.gz"
    assert "events table is corrupt" in failure.message and f"obs_id={bad}" in failure.message
    assert result.report.n_ok == len(IDS) - 1


@pytest.mark.parametrize("runner", [run_serial, run_distributed])
def test_strict_mode_raises_the_observation_error(ray_session, runner):
    with pytest.raises(ObservationError, match="events table is corrupt") as info:
        runner(IDS, fake_task, {"fail": {IDS[1]}}, make_accumulator, fan_in=FAN_IN, strict=True, progress=False)
    assert info.value.obs_id == IDS[1] and info.value.filename.endswith(f"run{IDS[1]}.fits.gz")


def test_crashed_worker_is_retried_and_the_result_is_identical(ray_session, serial_state, tmp_path):
    shared = {"crash": {IDS[2], IDS[9]}, "marker_dir": str(tmp_path)}
    result = run_distributed(IDS, fake_task, shared, make_accumulator, fan_in=FAN_IN, max_in_flight=3, progress=False)
    assert (tmp_path / f"crash-{IDS[2]}").exists()  # the crash really happened
    _assert_same(result.state, serial_state)
    assert result.report.n_failed == 0


def test_crash_beyond_retries_is_a_recorded_failure(ray_session, tmp_path):
    shared = {"crash": {IDS[0]}, "marker_dir": str(tmp_path)}
    result = run_distributed(IDS[:2], fake_task, shared, make_accumulator, max_retries=0, progress=False)
    (failure,) = result.report.failures
    assert failure.obs_id == IDS[0] and "Crash" in failure.error_type
    assert list(result.state["obs_ids"]) == [IDS[1]]


@pytest.mark.parametrize("checkpoint, per_task", [(False, 1), (True, 1), (False, 2)],
                         ids=["resend", "checkpoint", "resend-packs"])
def test_reduction_actors_killed_mid_run_give_the_identical_result(ray_session, serial_state, tmp_path, checkpoint,
                                                                   per_task):
    run_id = f"killtest-{int(checkpoint)}-{per_task}"
    shared = {
        "marker_dir": str(tmp_path),
        # obs 3 kills the leaf of chunk 0 once it holds obs 0-2 (with packs of 2: obs 0-1, the pack
        # re-sent after the kill); obs 10 kills the root once it holds chunks 0 and 1
        "kill": {IDS[3]: (f"{run_id}.chunk00000", 4 - per_task), IDS[10]: (f"{run_id}.root", 2)},
    }
    result = run_distributed(
        IDS, fake_task, shared, make_accumulator, fan_in=FAN_IN, max_in_flight=2, progress=False,
        run_id=run_id, checkpoint_dir=tmp_path / "ckpt" if checkpoint else None, checkpoint_every=1,
        max_obs_per_task=per_task,
    )
    assert (result.report.n_tasks == len(IDS)) == (per_task == 1)
    assert (tmp_path / f"kill-{IDS[3]}").exists() and (tmp_path / f"kill-{IDS[10]}").exists()
    _assert_same(result.state, serial_state)
    assert result.report.reducer_restarts == 2
    assert not (tmp_path / "ckpt" / run_id).exists()  # checkpoints removed after success


def test_progress_off_tty_is_log_lines(ray_session):
    stream = io.StringIO()
    run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=stream)
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert lines and all(line.startswith("reduce: ") for line in lines)
    assert lines[-1].startswith(f"reduce: {len(IDS)}/{len(IDS)} observations, 0 failed")


def test_ensure_ray_keeps_the_running_session(ray_session):
    assert ensure_ray()["CPU"] == 2


# ---------------------------------------------------------------------------------------------
# Memory bound: what the driver holds does not grow with the number of observations
# ---------------------------------------------------------------------------------------------
MANY = list(range(1000, 1048))


def test_refs_held_and_open_chunks_are_bounded_independently_of_the_observations(ray_session, tmp_path,
                                                                                 monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the root's default checkpoints go
    fan_in, bound, every = 2, 3, 2
    ids = MANY[:32]  # 16 chunks: many more than the bound
    serial = run_serial(ids, fake_task, {}, make_accumulator, fan_in=fan_in, progress=False)
    result = run_distributed(ids, fake_task, {"sleep_max": 0.005}, make_accumulator, fan_in=fan_in,
                             max_in_flight=4, progress=False, max_open_chunks=bound, root_checkpoint_every=every)
    _assert_same(result.state, serial.state)
    report = result.report
    assert report.n_chunks == len(ids) // fan_in and report.n_chunks > 4 * bound
    assert report.max_open_chunks == bound and report.root_checkpoint_every == every
    # the driver really held refs (the counters are live), but never more than the bound
    assert 1 <= report.peak_chunk_refs_held <= bound
    assert 1 <= report.peak_open_chunks <= bound
    assert 1 <= report.peak_partial_refs_held <= bound * fan_in
    assert list(tmp_path.iterdir()) == []  # the run-local checkpoint directory is removed


def test_default_bound_does_not_depend_on_the_number_of_observations(ray_session):
    # Defaults (no checkpoint_dir): the root checkpoints to a temporary directory, so the driver
    # drops chunk states; with 2x the observations the peaks stay under the same bound.
    kw = dict(fan_in=4, max_in_flight=1, progress=False)  # bound 4 + ceil(4 / 4) + 2 = 7 chunks
    import tempfile
    from pathlib import Path

    small = run_distributed(MANY[:24], fake_task, {}, make_accumulator, **kw).report
    result = run_distributed(MANY, fake_task, {}, make_accumulator, **kw)
    big = result.report
    _assert_same(result.state, run_serial(MANY, fake_task, {}, make_accumulator, **kw).state)
    for report in (small, big):  # the run-local checkpoint directories are gone
        assert not list(Path(tempfile.gettempdir()).glob(f"{report.run_id}-ckpt-*"))
    assert small.max_open_chunks == big.max_open_chunks == 7 < big.n_chunks == 2 * small.n_chunks
    assert big.root_checkpoint_every == 4
    for report in (small, big):
        assert report.peak_chunk_refs_held <= report.max_open_chunks
        assert report.peak_open_chunks <= report.max_open_chunks
        assert report.peak_partial_refs_held <= report.max_open_chunks * report.fan_in
    assert big.peak_chunk_refs_held < big.n_chunks


def test_open_chunk_limit_below_the_root_checkpoint_period_is_rejected(ray_session):
    with pytest.raises(ValueError, match="max_open_chunks"):
        run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False,
                        max_open_chunks=2, root_checkpoint_every=3)


def test_root_killed_restores_from_its_default_checkpoint(ray_session, serial_state, tmp_path, monkeypatch):
    # No checkpoint_dir: the root checkpoints after every merge into a run-local temp directory,
    # the driver has released the durable chunk states, and a killed root must restore from disk.
    import tempfile

    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))
    run_id = "killroot-default"
    shared = {"marker_dir": str(tmp_path), "kill": {IDS[10]: (f"{run_id}.root", 2)}}
    result = run_distributed(
        IDS, fake_task, shared, make_accumulator, fan_in=FAN_IN, max_in_flight=2, progress=False,
        run_id=run_id, root_checkpoint_every=1, max_open_chunks=1,
    )
    assert (tmp_path / f"kill-{IDS[10]}").exists()
    _assert_same(result.state, serial_state)
    assert result.report.reducer_restarts == 1
    assert result.report.peak_chunk_refs_held <= 1 and result.report.peak_open_chunks <= 1
    assert list(systmp.iterdir()) == []  # temp checkpoint directory removed


# ---------------------------------------------------------------------------------------------
# Warm reducer actors: later runs of the same process reuse them; the fresh-actor path still works
# ---------------------------------------------------------------------------------------------
def test_later_runs_reuse_warm_reducer_actors(ray_session, serial_state):
    from gamma_ray_dist.driver import ReducerPool

    pool = ReducerPool(max_size=4)
    first = run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False, reducer_pool=pool)
    created = pool.created
    assert created == 4 and pool.n_idle == 4  # 3 leaves + root, prestarted, all given back
    second = run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False, reducer_pool=pool)
    assert pool.created == created and pool.reused >= 4  # no new process
    for result in (first, second):
        _assert_same(result.state, serial_state)
    pool.shutdown()
    assert pool.n_idle == 0


def test_fresh_named_actors_without_the_pool(ray_session, serial_state):
    result = run_distributed(IDS, fake_task, {}, make_accumulator, fan_in=FAN_IN, progress=False,
                             reducer_pool=False)
    _assert_same(result.state, serial_state)
