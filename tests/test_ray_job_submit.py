"""End to end through the Ray job API: a real local Ray head, ``ray job submit`` of the seed analysis.

Starts ``ray start --head --block`` in its own process group, on free ports and with a short
private ``--temp-dir`` (Unix socket paths must stay short), so that it never meets the Ray of the
``ray_session`` fixture or any other Ray on the machine; submits ``gamma-ray-dist run crab_3d.yaml``
with the config and models as the job's ``--working-dir``, then checks the outputs against the
gammapy reference. The head is always torn down by killing its process group and every process it
started (never ``ray stop``, which would stop every Ray on the machine).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
JOB_TIMEOUT = 900  # s


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _ray_cli() -> str:
    ray_bin = Path(sys.executable).parent / "ray"
    if ray_bin.exists():
        return str(ray_bin)
    found = shutil.which("ray")
    if not found:
        pytest.skip("the ray command line is not installed")
    return found


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    env.pop("RAY_ADDRESS", None)
    # the head's workers and the job driver run this interpreter (gamma_ray_dist installed in it)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["OMP_NUM_THREADS"] = "1"
    # Ray >= 2.5x authenticates the job API with a token: give the head and the CLI the same one
    # (older versions ignore these variables)
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    return env


def _descendants(pid: int) -> list:
    import ray  # noqa: F401 - puts Ray's vendored psutil on sys.path
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def _stop_head(proc: subprocess.Popen, children: list) -> None:
    """Stop the head started by ``proc``: SIGTERM its process group and all its descendants, then SIGKILL."""
    import psutil

    procs = [p for p in children if p.is_running()]
    procs += [p for p in _descendants(proc.pid) if p not in procs]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        for p in procs:
            try:
                p.send_signal(sig)
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=10)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue
        if not alive:
            break


def _wait_for_dashboard(port: int, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{port}/api/version"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (401 when Ray's token authentication is on: the CLI sends the token)
        except OSError:
            pass
        time.sleep(1)
    raise RuntimeError(f"Ray dashboard not up on port {port} after {timeout} s:\n{log.read_text()[-4000:]}")


@pytest.mark.slow
@pytest.mark.ray
def test_ray_job_submit_seed_analysis(hess_dr1, seed_reference, tmp_path):
    yaml = pytest.importorskip("yaml")
    pytest.importorskip("aiohttp")  # ray[default]: the job API is served by the dashboard
    ray_cli = _ray_cli()

    # the job's working dir: config (datastore = the hess_dr1 fixture) and models
    work = tmp_path / "job"
    work.mkdir()
    config = yaml.safe_load((EXAMPLES / "crab_3d.yaml").read_text())
    config["observations"]["datastore"] = str(hess_dr1.resolve())
    config["general"]["outdir"] = "results"
    (work / "crab_3d.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(EXAMPLES / "crab_models.yaml", work / "crab_models.yaml")
    out_dir = (tmp_path / "out").resolve()

    gcs, dash, agent_http, agent_grpc, runtime_env, metrics, node_mgr, obj_mgr, client = _free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="grdj", dir="/tmp")  # short: Ray's socket paths live under it
    env = _clean_env()
    head_log = tmp_path / "ray-head.log"
    start_cmd = [
        ray_cli, "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs),
        "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash),
        "--dashboard-agent-listen-port", str(agent_http), "--dashboard-agent-grpc-port", str(agent_grpc),
        "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics),
        "--node-manager-port", str(node_mgr), "--object-manager-port", str(obj_mgr),
        "--ray-client-server-port", str(client),
        "--num-cpus", "2", "--temp-dir", temp_dir,
    ]
    t0 = time.perf_counter()
    with open(head_log, "w") as log:
        head = subprocess.Popen(start_cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path,
                                start_new_session=True)
    children: list = []
    try:
        _wait_for_dashboard(dash, head, head_log)
        children = _descendants(head.pid)
        submit = [
            ray_cli, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(work),
            "--", sys.executable, "-m", "gamma_ray_dist", "run", "crab_3d.yaml",
            "--models", "crab_models.yaml", "--out", str(out_dir), "--no-progress",
        ]
        job = subprocess.run(submit, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=JOB_TIMEOUT)
        job_log = job.stdout + job.stderr
        (tmp_path / "job.log").write_text(job_log)
        assert job.returncode == 0, job_log[-6000:]
        assert "succeeded" in job_log, job_log[-6000:]
    finally:
        children += [p for p in _descendants(head.pid) if p not in children]
        _stop_head(head, children)
        shutil.rmtree(temp_dir, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    print(f"ray head + job: {elapsed:.1f} s")

    # outputs written by the job's driver
    from gamma_ray_dist.maps import Map

    stacked = out_dir / "stacked.fits.gz"
    assert stacked.exists()
    counts = Map.read(stacked, hdu="COUNTS")
    assert int(counts.data.sum()) == seed_reference["stacked"]["counts"]

    fit = json.loads((out_dir / "fit.json").read_text())
    assert fit["success"] is True
    ours = {p["name"]: p for p in fit["parameters"] if p["model"] == "crab"}
    ref = {p["name"]: p for p in seed_reference["fit"]["parameters"] if p["model"] == "crab"}
    assert abs(ours["index"]["value"] - ref["index"]["value"]) < 0.1 * ref["index"]["error"], (ours, ref)

    reduction = json.loads((out_dir / "reduction.json").read_text())
    assert reduction["backend"] == "ray"
    assert reduction["n_ok"] == 4 and reduction["n_failed"] == 0
    assert sorted(o["obs_id"] for o in reduction["observations"]) == sorted(seed_reference["obs_ids"])
    assert all(o["status"] == "ok" for o in reduction["observations"])
