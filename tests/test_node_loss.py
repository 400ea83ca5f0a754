"""A worker node lost mid-run, with the root reducer on it: the run completes with the serial bits.

A local multi-node Ray (`ray.cluster_utils.Cluster`: a head and two worker raylets on this machine)
runs a reduction whose root reducer is placed on a worker node (a custom resource only the worker nodes
offer, and soft node affinity to one of them, so Ray may restart it on the other), with its checkpoints
in a directory every node reads. Once the root has checkpointed
some blocks, the worker node holding it is removed (its raylet, workers, object store and the reducer
die; the test removes whichever worker node the root is on):
Ray restarts the reducer on a surviving node, it restores its checkpoint, the driver re-sends what it
had not made durable, and block states that lived in the lost object store are rebuilt from lineage
(their tasks run again). The result equals the serial reduction bit for bit.

The cluster runs in a child process (the test session has its own Ray); the child prints one JSON line.
Slow: starting three raylets takes 20-60 s on a loaded 2-core machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .faults import FaultyTask, descendants, alive
from .test_driver_fakes import fake_task, make_accumulator

IDS = list(range(500, 560))  # 30 blocks of 2
TASK = FaultyTask(fake_task, sleep_max=0.2)  # slow enough for the node to go mid-run; the bits do not change


def _child(checkpoint_dir: str) -> None:
    """Run in a child process: the cluster, the reduction, the node removal; print the outcome."""
    import threading
    import time

    import numpy as np
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from gamma_ray_dist.distributed import RayBackend, SerialBackend

    expected = SerialBackend(block_size=2, progress=False).reduce(IDS, TASK, None, make_accumulator).state
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        # only the worker nodes offer a reducer slot: the root can never land on the head (the driver's
        # node), and when its node goes the surviving worker can take it
        doomed = cluster.add_node(num_cpus=1, resources={"reducer_slot": 1})
        spare = cluster.add_node(num_cpus=1, resources={"reducer_slot": 1})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        doomed_id = doomed.node_id
        run_id = "nodeloss"
        header = Path(checkpoint_dir) / run_id / "root.pkl"
        where: dict = {}

        def remove_when_checkpointed() -> None:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                try:
                    with open(header, "rb") as f:
                        f.readline()
                        if json.loads(f.readline())["n_acknowledged"] >= 3:
                            break
                except (OSError, ValueError):
                    pass
                time.sleep(0.01)
            root = ray.get_actor(f"{run_id}.root")
            where["root_node"] = ray.get(root.__ray_call__.remote(
                lambda self: ray.get_runtime_context().get_node_id()))
            where["acknowledged_at_removal"] = ray.get(root.progress.remote())["acknowledged"]
            workers = {node.node_id: node for node in (doomed, spare)}
            if where["root_node"] in workers:  # not on the head (the driver's node): never seen, but say so
                cluster.remove_node(workers[where["root_node"]])
                where["removed"] = where["root_node"]

        watcher = threading.Thread(target=remove_when_checkpointed, daemon=True)
        watcher.start()
        options = {"scheduling_strategy": NodeAffinitySchedulingStrategy(doomed_id, soft=True),
                   "resources": {"reducer_slot": 0.01}}
        with RayBackend(block_size=2, max_in_flight=3, progress=False, reuse_reducers=False,
                        checkpoint_dir=checkpoint_dir) as backend:
            result = backend.reduce(IDS, TASK, None, make_accumulator, run_id=run_id, root_checkpoint_every=1,
                                    reducer_options=options)
        watcher.join(timeout=60)
        same = all(np.asarray(result.state[k]).tobytes() == np.asarray(expected[k]).tobytes() for k in expected)
        print(json.dumps({"same": bool(same), "keys": sorted(result.state) == sorted(expected),
                          "doomed": doomed_id, "head": cluster.head_node.node_id,
                          "restarts": result.report.reducer_restarts,
                          "n_failed": result.report.n_failed, **where}), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_lost_node_with_the_root_reducer_gives_the_serial_bits(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen([sys.executable, "-c", "import sys; from tests.test_node_loss import _child; "
                             "_child(sys.argv[1])", str(tmp_path / "ckpt")], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=600)
    finally:
        tree = descendants(proc.pid)
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
        for pid in tree - {proc.pid}:
            if alive(pid):
                os.kill(pid, 9)
    assert proc.returncode == 0, err[-4000:]
    outcome = json.loads(out.strip().splitlines()[-1])
    assert outcome["root_node"] != outcome["head"], "the root reducer was placed on the head node"
    assert outcome.get("removed") == outcome["root_node"]  # the root really was lost with its node
    assert 0 < outcome["acknowledged_at_removal"] < len(IDS) // 2  # mid-run
    assert outcome["restarts"] >= 1 and outcome["n_failed"] == 0
    assert outcome["keys"] and outcome["same"]
    assert not (tmp_path / "ckpt" / "nodeloss").exists()  # checkpoints removed after success
