"""Where the work runs: execution backends, the Ray driver of a reduction, reducer links.

The only package of ``gamma_ray_dist`` that imports Ray (with `actors`, which holds the actors and
their plain logic). Nothing here is imported by the science packages; the CLI, a user's script or a
benchmark creates one backend and passes it down:

    from gamma_ray_dist.distributed import RayBackend
    with RayBackend(num_cpus=2) as backend:
        result = backend.reduce(obs_ids, task_fn, shared, make_accumulator)

Modules: `settings` (one settings object and its precedence), `backend` (`SerialBackend`,
`RayBackend`), `blocks` (the reduction plan and the per-block work, Ray-free), `driver` (one
reduction on Ray), `grouped` (a grouped reduction on Ray: one state per group), `links` (driver-side
reducer handles and the warm reducer pool), `tasks` (independent jobs on Ray), `report`, `progress`. Ray itself is imported only when a Ray backend
starts, so serial runs never pay for it.
"""
from .backend import AutoBackend, Backend, RayBackend, SerialBackend, choose_backend, make_backend
from .blocks import GroupedPlan, ReductionPlan
from .report import ObsStatus, RunReport, RunResult
from .settings import BACKENDS, ExecutionSettings

__all__ = ["Backend", "SerialBackend", "RayBackend", "AutoBackend", "make_backend", "choose_backend", "ExecutionSettings", "BACKENDS",
           "ReductionPlan", "GroupedPlan", "ObsStatus", "RunReport", "RunResult"]
