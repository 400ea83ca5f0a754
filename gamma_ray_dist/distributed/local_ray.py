"""A private local Ray with only the processes one run needs.

``ray.init(address="local")`` also starts the autoscaler monitor, the log monitor and the dashboard's
API server (the latter even with ``include_dashboard=False``: it serves job submission). A run of
the command line uses none of them (its Ray is private, ``log_to_driver`` is off), and on a 2-core
machine they cost ~2 CPU-s and 1-2 s of start-up of the ~6 CPU-s Ray's own processes take. Ray has
no public switch for them, so the node is started here with Ray's node launcher (what ``ray.init``
itself calls), then joined with ``ray.init(address=...)``. Should that internal interface differ
(another Ray release), the caller falls back to ``ray.init(address="local")``: slower, same results.
"""
from __future__ import annotations

import logging
from typing import Any

__all__ = ["start_lean_node", "stop_node"]

log = logging.getLogger(__name__)


def start_lean_node(num_cpus: int | None) -> Any | None:
    """Start a local Ray head node without monitor, log monitor or API server; None when not possible.

    Returns the node (its ``address`` is what ``ray.init`` joins); stop it with `stop_node` after
    ``ray.shutdown()``. Its processes are also killed when this process exits.
    """
    try:
        from ray._private.node import Node
        from ray._private.parameter import RayParams

        class _LeanNode(Node):
            def start_api_server(self, *, include_dashboard: Any, raise_on_failure: bool) -> None:
                self._webui_url = None  # no dashboard, no job API: nothing for the run to serve

        params = RayParams(num_cpus=num_cpus, include_dashboard=False, include_log_monitor=False,
                           no_monitor=True)
        return _LeanNode(params, head=True, shutdown_at_exit=True, spawn_reaper=True, ray_init_cluster=True)
    except Exception as exc:  # noqa: BLE001 - an internal interface of another Ray release: use ray.init
        log.debug("lean local Ray not started (%s: %s); using ray.init(address='local')",
                  type(exc).__name__, exc)
        return None


def stop_node(node: Any) -> None:
    """Kill the processes of a node `start_lean_node` started (after ``ray.shutdown()``)."""
    try:
        node.kill_all_processes(check_alive=False, allow_graceful=True)
    except Exception as exc:  # noqa: BLE001 - the reaper and the exit hook still kill them
        log.debug("stopping the local Ray node: %s: %s", type(exc).__name__, exc)
