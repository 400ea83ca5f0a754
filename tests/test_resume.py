"""Resumable reductions (`gamma_ray_dist.distributed.resume`): an interrupted run resumed from its run
directory gives the bits of an uninterrupted one, on either backend, and keeps its failed observations;
another configuration is refused.

Uses the fakes of `test_driver_fakes` (float64 values over 16 decades: any change of summation order
changes the bits). The interruption is a KeyboardInterrupt raised in the driver by its progress output
(as Ctrl-C would), after some blocks are durable, or SIGKILL of a process running the reduction; the
command-line kill -9 tests (serial and a local Ray) are in `test_resume_cli.py`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gamma_ray_dist.distributed import RayBackend, SerialBackend
from gamma_ray_dist.distributed.resume import RunDir, RunDirError

from .faults import FaultyTask, kill_when
from .test_driver_fakes import fake_task, make_accumulator

IDS = list(range(300, 340))  # 20 blocks of 2
FAILING = frozenset({301, 316, 317})  # one in block 0, a whole block (8): its key is skipped
QUIET = dict(progress=False)


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        x, y = np.asarray(a[key]), np.asarray(b[key])
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), key  # bits, incl. -0.0


class InterruptingStream:
    """A progress stream that raises KeyboardInterrupt at its ``after``-th line (once)."""

    def __init__(self, after: int) -> None:
        self.after, self.lines = after, 0

    def write(self, text: str) -> None:
        self.lines += text.count("\n")
        if self.lines >= self.after and self.after:
            self.after = 0
            raise KeyboardInterrupt

    def flush(self) -> None:
        pass


TASK = FaultyTask(fake_task, fail=FAILING)
SLOW_TASK = FaultyTask(fake_task, fail=FAILING, sleep_max=0.1)  # the same bits, slow enough to be killed


def _open(path, fresh=False, task=TASK, **plan):
    settings = dict(block_size=2, merge_fan_in=256) | plan
    return RunDir.open(path, obs_ids=IDS, task_fn=task, shared=None, make_accumulator=make_accumulator,
                       fresh=fresh, announce=False, **settings)


def _backend(name: str, **settings):
    return (SerialBackend if name == "serial" else RayBackend)(**settings)


@pytest.fixture(scope="module")
def expected():
    """Uninterrupted serial results (no run directory), per merge_fan_in."""
    return {fan_in: SerialBackend(block_size=2, merge_fan_in=fan_in, **QUIET).reduce(
        IDS, TASK, None, make_accumulator) for fan_in in (256, 3)}


def _interrupt_then_resume(tmp_path, first: str, second: str, fan_in: int, ray_tuning: dict):
    settings = dict(block_size=2, merge_fan_in=fan_in, max_in_flight=1)
    path = tmp_path / ".grd-run"
    run_dir = _open(path, merge_fan_in=fan_in)
    with pytest.raises(KeyboardInterrupt):
        with _backend(first, progress=InterruptingStream(after=6), **settings) as backend:
            backend.reduce(IDS, TASK, None, make_accumulator, run_dir=run_dir,
                           **(ray_tuning if first == "ray" else {}))
    run_dir.close()  # what the pipeline does on an interruption: kept, resumable
    assert (path / "status.jsonl").exists() and any((path / "checkpoints").iterdir())

    run_dir = _open(path, merge_fan_in=fan_in)
    assert run_dir.resuming and run_dir.attempt == 2
    with _backend(second, **QUIET, **settings) as backend:
        result = backend.reduce(IDS, TASK, None, make_accumulator, run_dir=run_dir,
                                **(ray_tuning if second == "ray" else {}))
    run_dir.finish()
    assert not path.exists()
    return result


@pytest.mark.parametrize("fan_in", [256, 3], ids=["root", "groups"])
def test_serial_run_interrupted_and_resumed_gives_the_same_bits_and_failures(tmp_path, expected, fan_in):
    result = _interrupt_then_resume(tmp_path, "serial", "serial", fan_in, {})
    _assert_same(result.state, expected[fan_in].state)
    report = result.report
    assert 0 < report.n_resumed < len(IDS)
    assert report.n_tasks == len(IDS) // 2 - report.n_resumed // 2  # only the blocks not durable were reduced
    assert [f.obs_id for f in report.failures] == sorted(FAILING)
    assert report.obs[301].error_type == "ObservationError" and "corrupt" in report.obs[301].message
    assert report.obs[301].filename == "/data/run301.fits.gz"


@pytest.mark.parametrize("first,second", [("ray", "serial"), ("serial", "ray"), ("ray", "ray")])
def test_runs_resume_across_backends_with_the_same_bits(ray_session, tmp_path, expected, first, second):
    # Ray: the root checkpoints after every merge, groups too (many durable blocks at the interruption)
    tuning = dict(root_checkpoint_every=1, checkpoint_every=1)
    fan_in = 3 if first == "ray" and second == "ray" else 256
    result = _interrupt_then_resume(tmp_path, first, second, fan_in, tuning)
    _assert_same(result.state, expected[fan_in].state)
    assert 0 < result.report.n_resumed < len(IDS)
    assert [f.obs_id for f in result.report.failures] == sorted(FAILING)


def _killed_child(path: str) -> None:
    """The process `test_reduction_killed_with_sigkill_resumes` kills."""
    run_dir = _open(path, task=SLOW_TASK)
    SerialBackend(block_size=2, **QUIET).reduce(IDS, SLOW_TASK, None, make_accumulator, run_dir=run_dir)


def test_reduction_killed_with_sigkill_resumes_with_the_same_bits(tmp_path, expected):
    path = tmp_path / ".grd-run"
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tests.test_resume import _killed_child; "
                             "_killed_child(sys.argv[1])", str(path)], cwd=root, env=env, start_new_session=True)

    def root_holds_blocks() -> bool:  # the root checkpoint's header: 4 or more blocks durable
        try:
            with open(path / "checkpoints" / "root.pkl", "rb") as f:
                f.readline()
                return json.loads(f.readline())["n_acknowledged"] >= 4
        except (OSError, ValueError):
            return False

    kill_when(proc, root_holds_blocks, timeout=120)
    run_dir = _open(path, task=SLOW_TASK)
    assert run_dir.resuming
    result = SerialBackend(block_size=2, **QUIET).reduce(IDS, SLOW_TASK, None, make_accumulator, run_dir=run_dir)
    run_dir.finish()
    _assert_same(result.state, expected[256].state)
    assert 8 <= result.report.n_resumed < len(IDS)
    assert [f.obs_id for f in result.report.failures] == sorted(FAILING)


def test_a_finished_run_is_resumed_without_reducing_anything(tmp_path, expected):
    path = tmp_path / ".grd-run"
    run_dir = _open(path)
    SerialBackend(block_size=2, **QUIET).reduce(IDS, TASK, None, make_accumulator, run_dir=run_dir)
    run_dir.close()  # killed after the reduction, before the outputs were written
    run_dir = _open(path)
    result = SerialBackend(block_size=2, **QUIET).reduce(IDS, TASK, None, make_accumulator, run_dir=run_dir)
    run_dir.close()
    _assert_same(result.state, expected[256].state)
    assert result.report.n_tasks == 0 and result.report.n_resumed == len(IDS)
    assert [f.obs_id for f in result.report.failures] == sorted(FAILING)


def test_another_configuration_is_refused_naming_the_directory_and_what_differs(tmp_path):
    path = tmp_path / ".grd-run"
    _open(path).close()
    with pytest.raises(RunDirError) as err:
        _open(path, block_size=3)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "differs: ray.block_size" in message and "config hash" in message and "--fresh" in message
    other = list(IDS) + [999]
    with pytest.raises(RunDirError, match=r"differs: observations \(40 selected then, 41 now\)"):
        RunDir.open(path, obs_ids=other, task_fn=TASK, shared=None, make_accumulator=make_accumulator,
                    block_size=2, merge_fan_in=256, announce=False)
    fresh = _open(path, block_size=3, fresh=True)  # discards the old run
    assert not fresh.resuming and fresh.attempt == 1 and json.loads((path / "run.json").read_text())[
        "components"]["ray.block_size"] == "3"
    fresh.close()


def test_a_run_directory_in_use_is_refused(tmp_path):
    first = _open(tmp_path / ".grd-run")
    with pytest.raises(RunDirError, match="in use by another run"):
        _open(tmp_path / ".grd-run")
    first.close()
    _open(tmp_path / ".grd-run").close()  # free again once the first is closed (or its process dies)


def test_a_checkpoint_others_could_write_is_refused_when_resuming(tmp_path):
    path = tmp_path / ".grd-run"
    run_dir = _open(path)
    with pytest.raises(KeyboardInterrupt):
        SerialBackend(block_size=2, progress=InterruptingStream(after=6)).reduce(
            IDS, TASK, None, make_accumulator, run_dir=run_dir)
    run_dir.close()
    root = path / "checkpoints" / "root.pkl"
    os.chmod(root, 0o620)
    run_dir = _open(path)
    with pytest.raises(RunDirError, match=r"root.pkl refused: writable by group.*--fresh"):
        SerialBackend(block_size=2, **QUIET).reduce(IDS, TASK, None, make_accumulator, run_dir=run_dir)
    run_dir.close()
