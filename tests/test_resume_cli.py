"""``gamma-ray-dist run`` killed with SIGKILL mid-reduction, then run again: it resumes from ``OUT/.grd-run``
and writes the stacked dataset of an uninterrupted run, bit for bit (every HDU, array and dtype), with
the failed observation of the killed attempt still in ``reduction.json``; a changed configuration is
refused in one line (exit code 2).

The command runs as a subprocess in its own process group on a simulated data store; the test waits
until the root reducer's checkpoint holds some blocks, then kills the whole process tree (the process
group, and every descendant seen just before, since Ray puts some of its processes in groups of their
own) and waits until none is left (`faults.kill_when`). Slow (~40 s each on a loaded 2-core machine:
simulation, four command runs); `test_resume.py` kills a reduction with SIGKILL in the default suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gamma_ray_dist.cli import EXIT_CONFIG, main
from gamma_ray_dist.distributed.resume import RUN_DIR_NAME

from .faults import kill_when

N_OBS = 48
MISSING = 0  # asked for, not in the data store: a failed observation of the first block


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A simulated store, the config (2-observation blocks, one missing obs id) and the models file."""
    from gamma_ray_dist.pipeline.demo import prepare_demo

    base = tmp_path_factory.mktemp("resume-cli")
    _, models, _ = prepare_demo(base / "sim", n_obs=N_OBS, seed=3)
    config = yaml.safe_load((base / "sim" / "demo.yaml").read_text())
    config["ray"] = {"block_size": 2}
    config["observations"]["obs_ids"] = [MISSING] + list(range(1, N_OBS + 1))
    path = base / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return base, path, models


@pytest.fixture(scope="module")
def reference(store):
    """The uninterrupted run (serial: every backend gives the same bits)."""
    base, config, models = store
    out = base / "reference"
    assert main(["run", str(config), "--models", str(models), "--out", str(out), "--serial", "--no-report",
                 "-q", "--fresh"]) == 0
    return out


def _command(config, models, out, *extra) -> list[str]:
    return [sys.executable, "-m", "gamma_ray_dist", "run", str(config), "--models", str(models), "--out", str(out),
            "--no-report", "--no-progress", *extra]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # a private local Ray
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    return env


def _root_blocks(out: Path) -> int:
    """Blocks the root reducer's checkpoint holds (its JSON header), 0 before the first checkpoint."""
    try:
        with open(out / RUN_DIR_NAME / "checkpoints" / "root.pkl", "rb") as f:
            f.readline()
            return int(json.loads(f.readline())["n_acknowledged"])
    except (OSError, ValueError, KeyError):
        return 0


def _kill_mid_run(command: list[str], out: Path, min_blocks: int) -> None:
    proc = subprocess.Popen(command, env=_env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    kill_when(proc, lambda: _root_blocks(out) >= min_blocks)


def _assert_same_fits(a: Path, b: Path) -> None:
    from astropy.io import fits

    with fits.open(a) as fa, fits.open(b) as fb:
        assert [h.name for h in fa] == [h.name for h in fb]
        for ha, hb in zip(fa, fb):
            if ha.data is None:
                assert hb.data is None
                continue
            if isinstance(ha, fits.BinTableHDU):
                assert ha.columns.names == hb.columns.names
                for name in ha.columns.names:
                    x, y = np.asarray(ha.data[name]), np.asarray(hb.data[name])
                    assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (ha.name, name)
            else:
                assert ha.data.dtype == hb.data.dtype and ha.data.tobytes() == hb.data.tobytes(), ha.name


def _check_resumed(result: subprocess.CompletedProcess, out: Path, reference: Path) -> None:
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = [line for line in result.stderr.splitlines() if line.startswith("resuming:")]
    assert len(resumed) == 1 and f"of {N_OBS + 1} observations already reduced" in resumed[0], result.stderr
    n_resumed = int(resumed[0].split()[1])
    assert 0 < n_resumed < N_OBS + 1
    _assert_same_fits(out / "stacked.fits.gz", reference / "stacked.fits.gz")
    report = json.loads((out / "reduction.json").read_text())
    assert report["n_resumed"] == n_resumed and report["n_failed"] == 1 and report["n_ok"] == N_OBS
    failed = report["observations"][0]
    assert failed["obs_id"] == MISSING and failed["status"] == "failed"  # recorded by the killed attempt
    assert "not in HDU index table" in failed["error"]
    assert not (out / RUN_DIR_NAME).exists()  # removed once the outputs are written


@pytest.mark.slow
def test_serial_run_killed_then_rerun_resumes_and_refuses_another_configuration(store, reference):
    base, config, models = store
    out = base / "killed-serial"
    _kill_mid_run(_command(config, models, out, "--serial"), out, min_blocks=4)
    assert (out / RUN_DIR_NAME / "run.json").exists() and not (out / "stacked.fits.gz").exists()

    # another energy axis: refused in one line, the unfinished run left as it is
    other = yaml.safe_load(config.read_text())
    other["datasets"]["geom"]["axes"]["energy"]["nbins"] = 5
    other_config = base / "other.yaml"
    other_config.write_text(yaml.safe_dump(other))
    refused = subprocess.run(_command(other_config, models, out, "--serial"), env=_env(), capture_output=True,
                             text=True, timeout=300)
    assert refused.returncode == EXIT_CONFIG
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gamma-ray-dist: error: run directory "), refused.stderr
    assert str(out / RUN_DIR_NAME) in lines[0] and "config hash" in lines[0] and "spec.geom" in lines[0]
    assert (out / RUN_DIR_NAME / "checkpoints" / "root.pkl").exists()

    resumed = subprocess.run(_command(config, models, out, "--serial"), env=_env(), capture_output=True,
                             text=True, timeout=300)
    _check_resumed(resumed, out, reference)


@pytest.mark.slow
def test_ray_run_killed_then_rerun_resumes_on_a_new_local_ray(store, reference):
    base, config, models = store
    out = base / "killed-ray"
    ray_flags = ("--backend", "ray", "--num-cpus", "2")
    _kill_mid_run(_command(config, models, out, *ray_flags), out, min_blocks=3)
    resumed = subprocess.run(_command(config, models, out, *ray_flags), env=_env(), capture_output=True, text=True,
                             timeout=600)
    _check_resumed(resumed, out, reference)


def test_a_finished_run_leaves_only_its_outputs_and_no_resume_keeps_no_run_directory(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n-obs", "3", "--serial", "--no-report", "-q"]) == 0
    assert not (out / RUN_DIR_NAME).exists() and (out / "stacked.fits.gz").exists()
    stale = out / RUN_DIR_NAME
    stale.mkdir()
    (stale / "run.json").write_text("{}")
    assert main(["demo", "--out", str(out), "--n-obs", "3", "--serial", "--no-report", "--no-resume"]) == 0
    assert (stale / "run.json").read_text() == "{}"  # someone's unfinished run: left as it is
    assert "holds an unfinished run, left as it is" in capsys.readouterr().err


def test_another_energy_axis_is_refused_in_one_line_before_any_work(tmp_path, capsys):
    """An unfinished run left in OUT (opened as the command would, then abandoned) and a run of another
    energy axis into the same OUT: exit code 2, one line naming the run directory and what differs."""
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.distributed.resume import RunDir
    from gamma_ray_dist.pipeline.demo import prepare_demo
    from gamma_ray_dist.pipeline.run import reduction_inputs
    from gamma_ray_dist.pipeline.tasks import reduce_task

    config, models, _ = prepare_demo(tmp_path / "sim", n_obs=2, seed=0)
    out = tmp_path / "out"
    shared, make_acc = reduction_inputs(config)
    RunDir.open(out / RUN_DIR_NAME, obs_ids=[1, 2], task_fn=reduce_task, shared=shared, make_accumulator=make_acc,
                block_size=None, merge_fan_in=256, announce=False).close()  # the command's (automatic) plan
    other = yaml.safe_load((tmp_path / "sim" / "demo.yaml").read_text())
    other["datasets"]["geom"]["axes"]["energy"]["nbins"] = 5
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    code = main(["run", str(tmp_path / "other.yaml"), "--models", str(models), "--out", str(out), "--serial"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == EXIT_CONFIG and len(err) == 1, err
    assert err[0].startswith(f"gamma-ray-dist: error: run directory {out / RUN_DIR_NAME} holds an unfinished run "
                             "of another configuration (config hash ")
    assert "differs: accumulator, spec.geom" in err[0] and "--fresh" in err[0]
    assert (out / RUN_DIR_NAME / "run.json").exists() and not (out / "stacked.fits.gz").exists()
    assert AnalysisConfig.read(tmp_path / "other.yaml").datasets.geom.axes.energy.nbins == 5
