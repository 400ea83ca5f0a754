"""Execution backends: the blocked reduction on Ray equals the serial one bit for bit, whatever happens.

Uses the session Ray (``ray_session``) and the fakes of `test_driver_fakes` (float64 values over 16
decades, so any change of summation order changes the bits); faults come from `tests.faults`.
"""
from __future__ import annotations

import io
import os
import threading
import time

import numpy as np
import pytest

from gamma_ray_dist.distributed import ExecutionSettings, RayBackend, ReductionPlan, SerialBackend
from gamma_ray_dist.distributed.blocks import fold_block, fold_head, resolve_block_size
from gamma_ray_dist.errors import ConfigError, ObservationError

from .faults import FaultyTask
from .test_driver_fakes import fake_task, make_accumulator

IDS = list(range(100, 112))
BLOCK = 4
QUIET = dict(progress=False)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert np.asarray(a[key]).tobytes() == np.asarray(b[key]).tobytes(), key  # bits, incl. -0.0


@pytest.fixture(scope="module")
def serial():
    return SerialBackend(block_size=BLOCK, **QUIET)


@pytest.fixture(scope="module")
def serial_state(serial):
    return serial.reduce(IDS, fake_task, None, make_accumulator).state


@pytest.fixture(scope="module")
def ray_backend(ray_session):
    with RayBackend(block_size=BLOCK, **QUIET) as backend:
        yield backend


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------
def test_plan_depends_only_on_the_ids_and_the_settings():
    plan = ReductionPlan.create(IDS[::-1] + IDS[:3], block_size=5, merge_fan_in=2)
    assert plan.blocks == (tuple(IDS[:5]), tuple(IDS[5:10]), tuple(IDS[10:]))
    assert plan.groups == ((0, 1), (2,)) and plan.n_reducers == 3
    assert ReductionPlan.create(IDS, 5, 256).groups == () and ReductionPlan.create(IDS, 12, 2).n_reducers == 0
    with pytest.raises(ValueError, match="merge_fan_in"):
        ReductionPlan.create(IDS, 4, 1)


def test_automatic_block_size_makes_small_runs_parallel_and_caps_large_blocks():
    def sizes(n):
        return [len(b) for b in ReductionPlan.create(range(n), None, 256).blocks]

    assert sizes(4) == [1, 1, 1, 1]  # the seed's 4 observations: 4 tasks (one task with blocks of 8)
    assert sizes(5) == [2, 1, 1, 1] and sizes(21) == [6, 5, 5, 5]  # shared out evenly, the larger first
    assert sizes(32) == [8] * 4 and sizes(33) == [7, 7, 7, 6, 6] and sizes(1001) == [8] * 119 + [7] * 7
    assert [resolve_block_size(None, n) for n in (1, 5, 21, 33, 10_000)] == [1, 2, 6, 7, 8]  # the largest
    assert resolve_block_size(3, 10_000) == 3 and sizes(0) == []
    assert ReductionPlan.create(IDS, 5, 256).blocks == (tuple(IDS[:5]), tuple(IDS[5:10]), tuple(IDS[10:]))
    assert ReductionPlan.create(IDS * 2, None, 256) == ReductionPlan.create(IDS, None, 256)  # unique ids count


def test_block_size_and_tree_change_the_bits_so_equality_means_something(serial, serial_state):
    assert not np.array_equal(serial_state["values"],
                              serial.reduce(IDS, fake_task, None, make_accumulator, block_size=5).state["values"])
    flat = serial.reduce(IDS, fake_task, None, make_accumulator, block_size=1).state
    grouped = serial.reduce(IDS, fake_task, None, make_accumulator, block_size=1, merge_fan_in=2).state
    assert not np.array_equal(flat["values"], grouped["values"])
    assert list(serial_state["obs_ids"]) == IDS


# ---------------------------------------------------------------------------------------------
# Bit identity on Ray
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_in_flight, merge_fan_in", [(1, 256), (3, 256), (8, 256), (3, 2), (8, 2)])
def test_ray_is_bit_identical_to_serial_whatever_the_completion_order(ray_backend, serial, max_in_flight,
                                                                     merge_fan_in):
    shuffled = IDS[5:] + IDS[:5][::-1] + IDS[2:4]  # input order and duplicates must not matter
    task = FaultyTask(fake_task, sleep_max=0.03)
    result = ray_backend.reduce(shuffled, task, None, make_accumulator, max_in_flight=max_in_flight,
                                merge_fan_in=merge_fan_in)
    expected = serial.reduce(IDS, fake_task, None, make_accumulator, merge_fan_in=merge_fan_in).state
    _assert_same(result.state, expected)
    report = result.report
    assert report.n_ok == len(IDS) and report.n_failed == 0
    assert report.duplicate_obs_ids == IDS[2:4]
    assert report.n_blocks == report.n_tasks == 3 and report.stage_seconds["make"] == pytest.approx(0.012)
    assert report.n_reducers == (1 if merge_fan_in == 256 else 3)
    assert set(report.timings) >= {"put_shared", "tasks", "reduce_tail", "total"}


def test_one_block_needs_no_reducer_and_an_empty_run_gives_an_empty_state(ray_backend, serial):
    result = ray_backend.reduce(IDS[:3], fake_task, None, make_accumulator)
    _assert_same(result.state, serial.reduce(IDS[:3], fake_task, None, make_accumulator).state)
    assert result.report.n_reducers == 0
    empty = ray_backend.reduce([], fake_task, None, make_accumulator)
    assert empty.report.n_ok == 0 and list(empty.state["obs_ids"]) == []


# ---------------------------------------------------------------------------------------------
# The head start: the driver folds the first blocks while its local Ray starts
# ---------------------------------------------------------------------------------------------
def test_fold_head_folds_whole_blocks_in_order_until_told_to_stop():
    plan = ReductionPlan.create(IDS, block_size=BLOCK, merge_fan_in=256)
    stop = threading.Event()
    calls: list[int] = []

    def task(shared, obs_id):
        calls.append(obs_id)
        if len(calls) == BLOCK + 1:  # "Ray is up" in the middle of the second block
            stop.set()
        return fake_task(shared, obs_id)

    head = fold_head(plan, task, None, make_accumulator, stop)
    assert sorted(head) == [0, 1] and calls == IDS[:2 * BLOCK]  # the block under way is finished
    for b, (statuses, state) in head.items():
        assert (statuses, state) is not None
        _assert_same(state, fold_block(fake_task, None, plan.blocks[b], make_accumulator)[1])
    kept = fold_head(plan, fake_task, None, make_accumulator, threading.Event(), skip=[0], max_blocks=1)
    assert list(kept) == [1]  # durable blocks are passed over; at most max_blocks
    strict = fold_head(plan, FaultyTask(fake_task, fail=frozenset({IDS[1]})), None, make_accumulator,
                       threading.Event(), strict=True)
    assert list(strict) == [0] and strict[0][1] is None and not strict[0][0][1]["ok"]


class _SlowStartRay(RayBackend):
    """A RayBackend whose (joined) Ray takes a while to "start", as a fresh local Ray does."""

    def start(self, defer: bool = False):
        if not defer and self._deferred:
            time.sleep(0.5)
        return super().start(defer)


@pytest.mark.parametrize("merge_fan_in, strict", [(256, False), (2, False), (256, True)])
def test_head_start_blocks_join_the_reduction_and_the_bits_stay(ray_session, serial, merge_fan_in, strict):
    backend = _SlowStartRay(block_size=BLOCK, reuse_reducers=False, **QUIET)
    backend._deferred = True  # as start(defer=True) leaves it when no Ray runs yet (the session's does)
    ids = list(range(200, 264))  # 16 blocks: the head start may fold at most 12 (its refs bound)
    failing = frozenset({ids[9]})
    task = FaultyTask(fake_task, fail=failing, sleep_max=0.05)
    try:
        if strict:
            with pytest.raises(ObservationError, match="corrupt"):
                backend.reduce(ids, task, None, make_accumulator, strict=True)
            return
        result = backend.reduce(ids, task, None, make_accumulator, merge_fan_in=merge_fan_in)
    finally:
        backend.close()
    report = result.report
    assert 0 < report.n_head < len(ids) and report.n_head % BLOCK == 0
    assert report.n_tasks == report.n_blocks - report.n_head // BLOCK
    assert report.n_ok == len(ids) - 1 and report.failures[0].obs_id == ids[9]
    expected = serial.reduce(ids, FaultyTask(fake_task, fail=failing), None, make_accumulator,
                             merge_fan_in=merge_fan_in)
    _assert_same(result.state, expected.state)


@pytest.mark.parametrize("backend_name", ["serial", "ray"])
def test_failed_observation_is_recorded_and_the_rest_reduced(ray_backend, serial, backend_name):
    backend = serial if backend_name == "serial" else ray_backend
    failing = {IDS[1], IDS[4], IDS[5], IDS[6], IDS[7]}  # block 1 fails entirely
    result = backend.reduce(IDS, FaultyTask(fake_task, fail=frozenset(failing)), None, make_accumulator)
    report = result.report
    assert report.n_failed == 5 and report.n_ok == len(IDS) - 5
    failure = report.failures[0]
    assert failure.obs_id == IDS[1] and failure.error_type == "ObservationError"
    assert failure.filename == f"/data/run{IDS[1]}.fits.gz" and "corrupt" in failure.message
    assert sorted(result.state["obs_ids"]) == [o for o in IDS if o not in failing]
    if backend_name == "ray":
        _assert_same(result.state, serial.reduce(IDS, FaultyTask(fake_task, fail=frozenset(failing)), None,
                                                 make_accumulator).state)


@pytest.mark.parametrize("backend_name", ["serial", "ray"])
def test_strict_mode_raises_the_observation_error(ray_backend, serial, backend_name):
    backend = serial if backend_name == "serial" else ray_backend
    with pytest.raises(ObservationError, match="events table is corrupt") as info:
        backend.reduce(IDS, FaultyTask(fake_task, fail=frozenset({IDS[1]})), None, make_accumulator, strict=True)
    assert info.value.obs_id == IDS[1] and info.value.filename.endswith(f"run{IDS[1]}.fits.gz")


def test_crashed_worker_is_retried_and_the_result_is_identical(ray_backend, serial_state, tmp_path):
    task = FaultyTask(fake_task, crash=frozenset({IDS[2], IDS[9]}), marker_dir=str(tmp_path))
    result = ray_backend.reduce(IDS, task, None, make_accumulator, max_in_flight=3)
    assert (tmp_path / f"crash-{IDS[2]}").exists()  # the crash really happened
    _assert_same(result.state, serial_state)
    assert result.report.n_failed == 0


def test_crash_beyond_retries_fails_the_block_and_keeps_the_rest(ray_backend, tmp_path):
    task = FaultyTask(fake_task, crash=frozenset({IDS[0]}), marker_dir=str(tmp_path))
    result = ray_backend.reduce(IDS, task, None, make_accumulator, max_retries=0)
    failed = [f.obs_id for f in result.report.failures]
    assert failed == IDS[:BLOCK] and all("Crash" in f.error_type or "Died" in f.error_type
                                         for f in result.report.failures)
    assert list(result.state["obs_ids"]) == IDS[BLOCK:]


# ---------------------------------------------------------------------------------------------
# Reducers killed mid-run
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("checkpoint", [False, True], ids=["resend", "checkpoint"])
def test_named_reducers_killed_mid_run_give_the_identical_result(ray_session, serial, tmp_path, checkpoint):
    many = list(range(200, 216))  # 8 blocks of 2 in 4 groups of 2: a root and group reducers
    settings = dict(block_size=2, merge_fan_in=2, max_in_flight=2, **QUIET)
    expected = serial.reduce(many, fake_task, None, make_accumulator, **settings).state
    run_id = f"killtest-{int(checkpoint)}"
    # an obs of block 3 kills group 1 (blocks 2, 3) once it holds block 2; an obs of block 6 kills the
    # root once it holds groups 0 and 1
    kill = {many[6]: (f"{run_id}.group00001", 1), many[12]: (f"{run_id}.root", 2)}
    task = FaultyTask(fake_task, kill=kill, marker_dir=str(tmp_path))
    with RayBackend(reuse_reducers=False, checkpoint_dir=str(tmp_path / "ckpt") if checkpoint else None,
                    **settings) as backend:
        result = backend.reduce(many, task, None, make_accumulator, run_id=run_id, checkpoint_every=1,
                                root_checkpoint_every=1)
    assert (tmp_path / f"kill-{many[6]}").exists() and (tmp_path / f"kill-{many[12]}").exists()
    _assert_same(result.state, expected)
    assert result.report.reducer_restarts == 2
    assert not (tmp_path / "ckpt" / run_id).exists()  # checkpoints removed after success


def test_pooled_root_killed_is_replaced_and_restores_from_its_checkpoint(ray_session, serial_state, tmp_path,
                                                                         monkeypatch):
    import tempfile

    systmp = tmp_path / "systmp"
    systmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(systmp))  # where the root's run-local checkpoints go
    with RayBackend(block_size=BLOCK, max_in_flight=1, **QUIET) as backend:
        backend.pool.prestart(1)
        (root_name,) = backend.pool.idle_names  # the run leases this actor as its root
        task = FaultyTask(fake_task, kill={IDS[10]: (root_name, 2)}, marker_dir=str(tmp_path))
        result = backend.reduce(IDS, task, None, make_accumulator, root_checkpoint_every=1)
    assert (tmp_path / f"kill-{IDS[10]}").exists()
    _assert_same(result.state, serial_state)
    assert result.report.reducer_restarts == 1
    assert list(systmp.iterdir()) == []  # the temporary checkpoint directory is removed


# ---------------------------------------------------------------------------------------------
# Progress, memory bound, warm reducers
# ---------------------------------------------------------------------------------------------
def test_progress_off_tty_is_log_lines(ray_backend):
    stream = io.StringIO()
    ray_backend.reduce(IDS, fake_task, None, make_accumulator, progress=stream)
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and lines and all(line.startswith("reduce: ") for line in lines)
    assert lines[-1].startswith(f"reduce: {len(IDS)}/{len(IDS)} observations, 0 failed")


@pytest.mark.parametrize("merge_fan_in", [256, 4], ids=["root-only", "with-groups"])
def test_refs_held_are_bounded_independently_of_the_number_of_observations(ray_backend, serial, merge_fan_in):
    kw = dict(block_size=1, max_in_flight=2, root_checkpoint_every=2, checkpoint_every=2, merge_fan_in=merge_fan_in)
    peaks = []
    for n in (16, 64):
        ids = list(range(1000, 1000 + n))
        result = ray_backend.reduce(ids, fake_task, None, make_accumulator, **kw)
        expected = serial.reduce(ids, fake_task, None, make_accumulator, block_size=1, merge_fan_in=merge_fan_in)
        _assert_same(result.state, expected.state)
        report = result.report
        assert 1 <= report.peak_refs_held <= report.max_refs_held < report.n_blocks
        peaks.append(report.max_refs_held)
    assert peaks[0] == peaks[1]  # the bound does not grow with the observations


def test_later_runs_reuse_warm_reducer_actors(ray_session, serial_state):
    with RayBackend(block_size=BLOCK, **QUIET) as backend:
        first = backend.reduce(IDS, fake_task, None, make_accumulator)
        created = backend.pool.created
        assert created == 1 and backend.pool.n_idle == 1  # the root, prestarted, given back
        second = backend.reduce(IDS, fake_task, None, make_accumulator)
        assert backend.pool.created == created and backend.pool.reused >= 2  # no new process
        pool = backend.pool
    assert pool.n_idle == 0  # closed with the backend
    for result in (first, second):
        _assert_same(result.state, serial_state)


# ---------------------------------------------------------------------------------------------
# Independent jobs
# ---------------------------------------------------------------------------------------------
def _job(shared, job):
    import os

    if job == "boom":
        raise ValueError("job failed on purpose")
    return (shared["scale"] * job, id(shared), os.getpid())


def test_map_gives_the_serial_results_in_job_order_and_shares_the_input_once_per_worker(ray_backend, serial):
    shared = {"scale": 3, "payload": np.arange(100_000.0)}
    jobs = list(range(20))
    out = ray_backend.map(_job, jobs, shared=shared)
    assert [o[0] for o in out] == [r[0] for r in serial.map(_job, jobs, shared=shared)] == [3 * j for j in jobs]
    by_worker: dict[int, set] = {}
    for _, shared_id, pid in out:
        by_worker.setdefault(pid, set()).add(shared_id)
    assert all(len(ids) == 1 for ids in by_worker.values())  # deserialised once per worker process
    with pytest.raises(ValueError, match="on purpose"):
        ray_backend.map(_job, [1, "boom", 2], shared=shared)
    assert ray_backend.map(_job, [], shared=shared) == []


# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
def test_settings_precedence_is_flag_then_environment_then_config_then_default():
    from gamma_ray_dist.config.sections import RayConfig

    config = RayConfig(address="config:1", num_cpus=3, block_size=5)
    env = {"RAY_ADDRESS": "env:2"}
    assert ExecutionSettings.resolve(None, environ={}).address is None
    assert ExecutionSettings.resolve(config, environ={}).address == "config:1"
    resolved = ExecutionSettings.resolve(config, environ=env)
    assert (resolved.address, resolved.num_cpus, resolved.block_size) == ("env:2", 3, 5)
    flagged = ExecutionSettings.resolve(config, environ=env, address="flag:3", num_cpus=None, block_size=7)
    assert (flagged.address, flagged.num_cpus, flagged.block_size) == ("flag:3", 3, 7)


@pytest.mark.parametrize("change, key", [({"num_cpus": -1}, "ray.num_cpus"), ({"num_cpus": 0}, "ray.num_cpus"),
                                         ({"block_size": 0}, "ray.block_size"), ({"backend": "dask"}, "backend")])
def test_invalid_settings_name_the_key(change, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ExecutionSettings(**change)


# ---------------------------------------------------------------------------------------------
# backend="auto"
# ---------------------------------------------------------------------------------------------
def test_auto_choice_follows_the_size_of_the_work_and_a_named_cluster():
    from gamma_ray_dist.distributed import choose_backend
    from gamma_ray_dist.distributed.backend import EXPECTED_RAY_EFFICIENCY, EXPECTED_RAY_STARTUP_S

    local = ExecutionSettings(progress=False)
    assert choose_backend(local, 20, 0.5, 0.025, local_cpus=2)[0] == "serial"  # ~1 s of work
    name, reason = choose_backend(local, 1000, 0.5, 0.025, local_cpus=2)  # ~25 s: Ray saves ~9 s
    assert name == "ray" and "1000 observations" in reason and "25 ms each" in reason
    # the break-even: serial time x (1 - 1/(efficiency x cpus)) = start-up
    n_even = int(EXPECTED_RAY_STARTUP_S / (1 - 1 / (2 * EXPECTED_RAY_EFFICIENCY)) / 0.025)
    assert choose_backend(local, n_even - 20, 0.025, 0.025, local_cpus=2)[0] == "serial"
    assert choose_backend(local, n_even + 20, 0.025, 0.025, local_cpus=2)[0] == "ray"
    assert choose_backend(local, 10**6, 0.5, 0.025, local_cpus=1)[0] == "serial"
    assert choose_backend(local.replace(address="head:6379"), 4, 0.5, 0.025)[0] == "ray"
    assert choose_backend(local, 100, None, None, local_cpus=2)[0] == "ray"  # no estimate


def test_auto_backend_reduces_small_work_serially_and_says_why(serial, serial_state):
    from gamma_ray_dist.distributed import AutoBackend

    calls: list[int] = []

    def counted(shared, obs_id):
        calls.append(obs_id)
        return fake_task(shared, obs_id)

    stream = io.StringIO()
    with AutoBackend(block_size=BLOCK, progress=stream) as backend:
        result = backend.reduce(IDS, counted, None, make_accumulator)
        assert backend.choice[0] == "serial" and isinstance(backend.chosen, SerialBackend)
        assert sorted(calls) == IDS  # the probe's two observations are not reduced again
        assert backend.map(_job, [1, 2], shared={"scale": 2})[0][0] == 2
    _assert_same(result.state, serial_state)
    assert stream.getvalue().startswith("backend: serial (estimated serial reduction")


def test_serial_progress_advances_one_observation_at_a_time(serial):
    stream = io.StringIO()
    serial.reduce(IDS, fake_task, None, make_accumulator, progress=stream)
    counts = [int(line.split(":")[1].split("/")[0]) for line in stream.getvalue().splitlines()]
    # a line per decile of 12 observations in 3 blocks of 4: counts that are not multiples of the block
    assert any(c % BLOCK for c in counts) and counts[-1] == len(IDS)


def test_progress_counts_the_observation_that_stops_a_strict_run(serial):
    from gamma_ray_dist.errors import ObservationError

    def fails_on_105(shared, obs_id):
        if obs_id == 105:
            raise ObservationError("broken", obs_id=obs_id)
        return fake_task(shared, obs_id)

    stream = io.StringIO()
    with pytest.raises(ObservationError):
        serial.reduce(IDS, fails_on_105, None, make_accumulator, progress=stream, strict=True)
    last = stream.getvalue().splitlines()[-1]
    assert ", 1 failed," in last and last.endswith("stopped: observation 105 failed")


# ---------------------------------------------------------------------------------------------
# Grouped reduction: one state per group, in one pass
# ---------------------------------------------------------------------------------------------
# three groups of uneven sizes (7 ids: two blocks of 4; 4 ids: one block; 1 id), keys not comparable
GROUPS = {**{i: "night-a" for i in IDS[:7]}, **{i: ("interval", 2) for i in IDS[7:11]}, IDS[11]: 3}


def test_grouped_plan_keeps_groups_apart_and_orders_them_by_their_first_observation():
    from gamma_ray_dist.distributed.blocks import GroupedPlan

    plan = GroupedPlan.create(IDS[::-1], GROUPS, block_size=BLOCK, merge_fan_in=256)
    assert plan.keys == ("night-a", ("interval", 2), 3)
    assert [p.blocks for p in plan.plans] == [(tuple(IDS[:4]), tuple(IDS[4:7])), (tuple(IDS[7:11]),),
                                              ((IDS[11],),)]
    with pytest.raises(ValueError, match="observation 999 has no group"):
        GroupedPlan.create(IDS + [999], GROUPS, BLOCK, 256)


@pytest.mark.parametrize("merge_fan_in", [256, 2])
def test_a_group_equals_the_reduction_of_its_observations_alone(serial, merge_fan_in):
    result = serial.reduce(IDS, fake_task, None, make_accumulator, groups=GROUPS, merge_fan_in=merge_fan_in,
                           block_size=2)
    assert list(result.state) == ["night-a", ("interval", 2), 3] and result.report.n_groups == 3
    for key, ids in (("night-a", IDS[:7]), (("interval", 2), IDS[7:11]), (3, IDS[11:])):
        alone = serial.reduce(ids, fake_task, None, make_accumulator, merge_fan_in=merge_fan_in, block_size=2)
        _assert_same(result.state[key], alone.state)
    # and the groups really differ from one stack of everything
    assert not np.array_equal(result.state["night-a"]["values"],
                              serial.reduce(IDS, fake_task, None, make_accumulator).state["values"])


@pytest.mark.parametrize("max_in_flight, merge_fan_in, block_size", [(1, 256, 4), (3, 256, 2), (8, 2, 1), (2, 2, 4)])
def test_grouped_ray_is_bit_identical_to_serial(ray_backend, serial, max_in_flight, merge_fan_in, block_size):
    shuffled = IDS[5:] + IDS[:5][::-1]
    task = FaultyTask(fake_task, sleep_max=0.03)
    seen = []
    result = ray_backend.reduce(shuffled, task, None, make_accumulator, groups=GROUPS, max_in_flight=max_in_flight,
                                merge_fan_in=merge_fan_in, block_size=block_size,
                                on_group=lambda key, state: seen.append(key) or state)
    expected = serial.reduce(IDS, fake_task, None, make_accumulator, groups=GROUPS, merge_fan_in=merge_fan_in,
                             block_size=block_size).state
    assert list(result.state) == list(expected) and sorted(map(str, seen)) == sorted(map(str, expected))
    for key in expected:
        _assert_same(result.state[key], expected[key])
    assert result.report.n_ok == len(IDS) and result.report.n_groups == 3


@pytest.mark.parametrize("backend_name", ["serial", "ray"])
def test_per_observation_groups_and_a_group_that_reduced_nothing(ray_backend, serial, backend_name):
    backend = serial if backend_name == "serial" else ray_backend
    per_obs = {i: i for i in IDS}
    result = backend.reduce(IDS, FaultyTask(fake_task, fail=frozenset({IDS[3]})), None, make_accumulator,
                            groups=per_obs)
    assert list(result.state) == IDS
    assert result.state[IDS[3]] is None  # never an empty state standing for zero
    assert result.report.failures[0].obs_id == IDS[3]
    for i in IDS[:3] + IDS[4:]:
        _assert_same(result.state[i], serial.reduce([i], fake_task, None, make_accumulator).state)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_a_private_local_ray_starts_lean_and_leaves_nothing_running():
    """A fresh process's own local Ray: no monitor, log monitor or API server; its processes gone at close."""
    import subprocess
    import sys

    code = """
import os
from gamma_ray_dist.distributed import RayBackend

def alive(pid):  # running, not a zombie (Linux /proc; psutil is not a dependency)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

backend = RayBackend(num_cpus=1, progress=False).start()
node = backend._node
assert node is not None, "the lean start fell back to ray.init"
kinds = set(node.all_processes)
assert not kinds & {"monitor", "log_monitor", "dashboard"}, kinds
assert backend.map(lambda shared, job: shared + job, [1, 2, 3], 10) == [11, 12, 13]
pids = [info.process.pid for infos in node.all_processes.values() for info in infos]
backend.close()
left = [p for p in pids if alive(p)]
assert not left, left
print("ok", sorted(kinds))
"""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0 and done.stdout.startswith("ok"), done.stderr[-3000:]
