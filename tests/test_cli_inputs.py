"""Every ``gamma-ray-dist`` input fails with one line on stderr and a documented exit code, before work.

Each case runs the command as a subprocess (``python -m gamma_ray_dist``, this checkout's code) and
checks the exit code, the one-line message, the absence of a traceback, and that no empty output
directory is left behind.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "crab_3d.yaml"
MODELS = ROOT / "examples" / "crab_models.yaml"


def cli(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m gamma_ray_dist ARGS`` with this checkout first on the path, without $RAY_ADDRESS."""
    full_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    full_env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "gamma_ray_dist", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=ROOT)


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    """Exit ``code``, no traceback anywhere, stderr one ``PROG: error:`` line containing ``needles``."""
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert re.match(r"(gamma-ray-dist|seed_low_level\.py): error: ", lines[0]), lines[0]
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture
def run_args(hess_dr1):
    """``run`` arguments for the seed analysis on DR1 (GAMMAPY_DATA set through the environment)."""
    return ["run", str(CONFIG), "--models", str(MODELS), "--serial", "--no-progress", "--no-report"]


@pytest.fixture
def data_env(hess_dr1):
    return {"GAMMAPY_DATA": str(hess_dr1.parent)}


# -- output directory ------------------------------------------------------------------------------
@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_that_cannot_be_created(run_args, data_env):
    assert_one_line_error(cli(*run_args, "--out", "/proc/foo", env=data_env), 2, "--out /proc/foo",
                          "cannot be created")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_out_that_is_not_writable_fails_before_the_reduction(run_args, data_env):
    t0 = time.perf_counter()
    proc = cli(*run_args, "--out", "/proc", env=data_env)
    assert_one_line_error(proc, 2, "--out /proc", "not writable")
    assert time.perf_counter() - t0 < 30
    assert "reduce" not in proc.stderr and proc.stdout == ""


def test_out_naming_an_existing_file(run_args, data_env, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    assert_one_line_error(cli(*run_args, "--out", str(target), env=data_env), 2, "exists and is not a directory")
    assert_one_line_error(cli(*run_args, "--out", str(target / "sub"), env=data_env), 2, "is not a directory")
    assert target.read_text() == "x"


def test_general_outdir_is_checked_too(tmp_path, hess_dr1):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("outdir: results", "outdir: /proc/foo"))
    proc = cli("run", str(cfg), "--models", str(MODELS), "--serial", env={"GAMMAPY_DATA": str(hess_dr1.parent)})
    assert_one_line_error(proc, 2, "general.outdir /proc/foo")


# -- failed runs leave no empty output directory -------------------------------------------------
def test_missing_models_file_leaves_no_output_directory(tmp_path, data_env):
    out = tmp_path / "a" / "b"
    proc = cli("run", str(CONFIG), "--models", str(tmp_path / "nope.yaml"), "--serial", "--out", str(out),
               env=data_env)
    assert_one_line_error(proc, 2, "nope.yaml")
    assert not (tmp_path / "a").exists()


def test_nothing_selected_leaves_no_output_directory(tmp_path, hess_dr1):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("lat: 22.014 deg, radius: 5 deg", "lat: -80 deg, radius: 0.1 deg"))
    out = tmp_path / "out"
    proc = cli("run", str(cfg), "--models", str(MODELS), "--serial", "--out", str(out),
               env={"GAMMAPY_DATA": str(hess_dr1.parent)})
    assert_one_line_error(proc, 1, "no observation selected")
    assert not out.exists()


def test_existing_output_directory_is_kept(tmp_path, data_env):
    out = tmp_path / "mine"
    out.mkdir()
    proc = cli("run", str(CONFIG), "--models", str(tmp_path / "nope.yaml"), "--serial", "--out", str(out),
               env=data_env)
    assert_one_line_error(proc, 2)
    assert out.is_dir()  # not ours to remove


def test_strict_failure_leaves_no_output_directory(tmp_path, hess_dr1):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("    obs_cone:", "    obs_ids: [99999, 23523]\n    obs_cone:"))
    out = tmp_path / "out"
    proc = cli("run", str(cfg), "--models", str(MODELS), "--serial", "--strict", "--no-progress", "--out",
               str(out), env={"GAMMAPY_DATA": str(hess_dr1.parent)})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the run's warning about the observation
    assert last.startswith("gamma-ray-dist: error: observation failed:") and "99999" in last
    assert not out.exists()


# -- Ray address and CPUs --------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-1"])
def test_num_cpus_must_be_positive(run_args, data_env, tmp_path, value):
    out = tmp_path / "out"
    args = [a for a in run_args if a != "--serial"]
    assert_one_line_error(cli(*args, "--num-cpus", value, "--out", str(out), env=data_env), 2,
                          f"--num-cpus must be >= 1; got {value}")
    assert not out.exists()


def test_refused_address_fails_at_once(run_args, data_env, tmp_path):
    out = tmp_path / "out"
    args = [a for a in run_args if a != "--serial"]
    t0 = time.perf_counter()
    proc = cli(*args, "--address", "127.0.0.1:1", "--out", str(out), env=data_env)
    assert_one_line_error(proc, 2, "127.0.0.1:1", "cannot connect")
    assert time.perf_counter() - t0 < 30
    assert not out.exists()


def test_address_from_the_environment_is_checked(run_args, data_env, tmp_path):
    args = [a for a in run_args if a != "--serial"]
    proc = cli(*args, "--out", str(tmp_path / "out"), env={**data_env, "RAY_ADDRESS": "127.0.0.1:1"})
    assert_one_line_error(proc, 2, "127.0.0.1:1")


def test_address_that_does_not_answer_as_ray_is_bounded(run_args, data_env, tmp_path):
    """An unroutable address: no answer (or, through a proxy, not a Ray answer) within the timeout."""
    args = [a for a in run_args if a != "--serial"]
    t0 = time.perf_counter()
    proc = cli(*args, "--address", "10.255.255.1:6379", "--connect-timeout", "2", "--out", str(tmp_path / "o"),
               env=data_env)
    assert_one_line_error(proc, 2, "10.255.255.1:6379")
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("address, needle", [("nohost", "no port"), ("http://head:1", "expected host:port"),
                                             ("head:port", "not a number"),
                                             ("ray://no-such-host.invalid:10001", "unknown host")])
def test_malformed_or_unknown_address(run_args, data_env, tmp_path, address, needle):
    args = [a for a in run_args if a != "--serial"]
    assert_one_line_error(cli(*args, "--address", address, "--out", str(tmp_path / "o"), env=data_env), 2, needle)


def test_connect_timeout_must_be_positive(run_args, data_env, tmp_path):
    assert_one_line_error(cli(*run_args, "--connect-timeout", "0", "--out", str(tmp_path), env=data_env), 2,
                          "--connect-timeout")


def test_serial_ignores_the_address(tmp_path, hess_dr1):
    """--serial never uses Ray, so an address (here from the environment) is not checked."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("lat: 22.014 deg, radius: 5 deg", "lat: -80 deg, radius: 0.1 deg"))
    proc = cli("run", str(cfg), "--models", str(MODELS), "--serial", "--out", str(tmp_path / "o"),
               env={"GAMMAPY_DATA": str(hess_dr1.parent), "RAY_ADDRESS": "127.0.0.1:1"})
    assert_one_line_error(proc, 1, "no observation selected")


# -- conventions -----------------------------------------------------------------------------------
def test_version():
    from gamma_ray_dist import __version__

    proc = cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"gamma-ray-dist {__version__}"


@pytest.mark.parametrize("command", ["run", "demo"])
def test_help_shows_defaults(command):
    proc = cli(command, "--help", env={"COLUMNS": "300"})  # no line wrapping inside the defaults
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for option in ("--backend", "--address", "--connect-timeout", "--num-cpus", "--no-progress", "--no-report",
                   "-v", "-q", "--out"):
        assert option in text
    assert "(default: auto)" in text and "(default: ray.connect_timeout, else 10)" in text
    assert "flag > environment ($RAY_ADDRESS) > config file" in text
    if command == "demo":
        for default in ("(default: gamma-ray-dist-demo)", "observations (default: 4)", "simulation (default: 0)"):
            assert default in text


@pytest.mark.parametrize("args, needle", [
    (["run", "cfg.yaml", "--backend", "foo"], "run: argument --backend: invalid choice: 'foo'"),
    (["demo", "--n-obs", "two"], "demo: argument --n-obs: invalid int value: 'two'"),
    (["run"], "run: the following arguments are required: config"),
    (["run", "cfg.yaml", "--bogus"], "unrecognized arguments: --bogus"),
], ids=["choice", "int", "required", "unknown"])
def test_usage_mistakes_are_one_line(args, needle, tmp_path):
    """argparse's own errors follow the same rule: one line, exit 2, nothing done (no usage block)."""
    proc = cli(*args, "--out", str(tmp_path / "o")) if args[0] == "demo" else cli(*args)
    assert_one_line_error(proc, 2, needle, "--help")
    assert not (tmp_path / "o").exists()


def test_demo_n_obs_must_be_positive(tmp_path):
    assert_one_line_error(cli("demo", "--n-obs", "0", "--out", str(tmp_path / "d")), 2, "--n-obs")
    assert not (tmp_path / "d").exists()


def test_log_level_from_the_config_and_flags(tmp_path, hess_dr1):
    """general.log.level applies to run; -q (errors only) overrides it; an unknown level is a config error."""
    env = {"GAMMAPY_DATA": str(hess_dr1.parent)}
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("log: {level: info}", "log: {level: debug}"))
    args = ["run", str(cfg), "--models", str(tmp_path / "nope.yaml"), "--serial", "--out", str(tmp_path / "o")]
    debug = cli(*args, env=env)
    assert debug.returncode == 2 and "DEBUG gamma_ray_dist.cli: output directory" in debug.stderr
    quiet = cli(*args, "-q", env=env)
    assert_one_line_error(quiet, 2, "nope.yaml")
    cfg.write_text(CONFIG.read_text().replace("log: {level: info}", "log: {level: loud}"))
    assert_one_line_error(cli(*args, env=env), 2, "general.log.level")


# -- the examples script ----------------------------------------------------------------------------
@pytest.mark.parametrize("gammapy_data", [None, "missing"])
def test_seed_script_with_a_wrong_gammapy_data(tmp_path, gammapy_data):
    env = {k: v for k, v in os.environ.items() if k != "GAMMAPY_DATA"}
    if gammapy_data is not None:
        env["GAMMAPY_DATA"] = str(tmp_path / gammapy_data)
    env["PYTHONPATH"] = str(ROOT)
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "seed_low_level.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert_one_line_error(proc, 2, "GAMMAPY_DATA")
    assert not out.exists()  # nothing written before the check
