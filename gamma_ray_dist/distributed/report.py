"""What a reduction reports: per-observation outcome, timings, the tree it used (Ray-free)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

__all__ = ["ObsStatus", "RunReport", "RunResult"]


@dataclass
class ObsStatus:
    """Outcome of one observation."""

    obs_id: int
    status: Literal["ok", "failed"]
    error_type: str | None = None
    message: str | None = None
    filename: str | None = None
    seconds: float = 0.0  # wall time of task_fn in the worker
    cpu: float = 0.0  # CPU time of the worker process during task_fn
    started: float = 0.0  # when task_fn started (seconds since the epoch, the worker's clock)
    worker: int = 0  # process id of the worker (with ``started``: a timeline of the run)
    timings: dict[str, float] = field(default_factory=dict)  # the partial's own stage timings


@dataclass
class RunReport:
    """Per-observation status and timings of a reduction."""

    run_id: str
    backend: Literal["ray", "serial"]
    block_size: int | None  # None: each group's own automatic size (a grouped reduction)
    n_blocks: int
    merge_fan_in: int
    max_in_flight: int = 1
    n_tasks: int = 0  # block tasks submitted (retries by Ray not counted)
    obs: dict[int, ObsStatus] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # driver-side stages, seconds
    stage_seconds: dict[str, float] = field(default_factory=dict)  # summed over observations
    reducer_restarts: int = 0
    n_reducers: int = 0  # reducer actors of the tree (0: a one-block run needs none)
    n_groups: int = 0  # groups of a grouped reduction (0: not grouped)
    duplicate_obs_ids: list[int] = field(default_factory=list)
    n_resumed: int = 0  # observations an earlier attempt made durable (resumed from the run directory)
    n_head: int = 0  # observations the driver reduced itself while Ray started (`blocks.fold_head`)
    # Memory bound: block-state refs the driver held at once (sent, not yet durable in a reducer)
    peak_refs_held: int = 0
    max_refs_held: int = 0

    @property
    def n_ok(self) -> int:
        return sum(s.status == "ok" for s in self.obs.values())

    @property
    def n_failed(self) -> int:
        return sum(s.status == "failed" for s in self.obs.values())

    @property
    def failures(self) -> list[ObsStatus]:
        """Failed observations, in obs id order."""
        return [s for _, s in sorted(self.obs.items()) if s.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (obs keyed by str(obs_id))."""
        out = asdict(self)
        out["obs"] = {str(k): v for k, v in out["obs"].items()}
        out["n_ok"], out["n_failed"] = self.n_ok, self.n_failed
        return out

    def record(self, status: dict[str, Any], obs_id: int) -> ObsStatus:
        """Record the status dict a task produced for ``obs_id`` (see `blocks.run_one`)."""
        entry = ObsStatus(
            obs_id=obs_id,
            status="ok" if status["ok"] else "failed",
            error_type=status.get("error_type"),
            message=status.get("message"),
            filename=status.get("filename"),
            seconds=float(status.get("seconds", 0.0)),
            cpu=float(status.get("cpu", 0.0)),
            started=float(status.get("started", 0.0)),
            worker=int(status.get("worker", 0)),
            timings=dict(status.get("timings") or {}),
        )
        self.obs[obs_id] = entry
        self.stage_seconds["task"] = self.stage_seconds.get("task", 0.0) + entry.seconds
        self.stage_seconds["task_cpu"] = self.stage_seconds.get("task_cpu", 0.0) + entry.cpu
        for stage, sec in entry.timings.items():
            self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + float(sec)
        return entry


class RunResult(NamedTuple):
    """``(state, report)``: the final accumulator state (``Accumulator.from_state`` input) and report.

    For a grouped reduction ``state`` is ``{group key: state}`` in plan order (a state is None for a
    group none of whose observations could be reduced; with ``on_group``, its return value instead).
    """

    state: dict[str, Any]
    report: RunReport
