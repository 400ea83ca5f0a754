"""How a run executes: one settings object, resolved once from flags, environment and config.

Precedence, for every setting (stated once, here; ``--help`` and docs/config.md repeat it):

    command-line flag  >  environment variable  >  config file (``ray:`` section)  >  default

Only the Ray address has an environment variable (``RAY_ADDRESS``, which ``ray job submit`` and
KubeRay's RayJob set for the job they run).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from typing import Any, Literal, Mapping, TextIO

from ..errors import ConfigError

__all__ = ["ExecutionSettings", "BACKENDS", "DEFAULT_BLOCK_SIZE", "DEFAULT_MERGE_FAN_IN",
           "DEFAULT_CONNECT_TIMEOUT"]

#: Backend names accepted by `ExecutionSettings.backend`.
BACKENDS = ("auto", "serial", "ray")

#: Observations one task folds into one accumulator state (part of the result's definition: the
#: float64 summation order is "observations within a block, then blocks in order"). None: chosen from
#: the number of observations (`blocks.resolve_block_size`: at least 4 blocks, at most 8 per block).
DEFAULT_BLOCK_SIZE: int | None = None

#: Block states merged by one reducer below the root; more blocks than this get a middle level.
#: Part of the result's definition too (it fixes the tree), never derived from the cluster size.
DEFAULT_MERGE_FAN_IN = 256

#: Seconds to wait for a TCP connection to a Ray address before the run is refused.
DEFAULT_CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ExecutionSettings:
    """Where and how reductions and parallel jobs run.

    Attributes
    ----------
    backend : {"auto", "serial", "ray"}
        ``"serial"``: everything in this process; ``"ray"``: a local Ray (or ``address``);
        ``"auto"`` (default): Ray for a cluster address, else serial or a local Ray by the size of
        the work (see `gamma_ray_dist.distributed.choose_backend`).
    address : str or None
        Ray cluster address; None = a new private local Ray.
    num_cpus : int or None
        CPUs of a local Ray (None = all of this machine).
    max_in_flight : int or None
        Reduction tasks submitted and unfinished at once; None = 2 x cluster CPUs.
    block_size : int or None
        Observations folded by one task, in obs id order, into one state; None (default) = chosen
        from the number of observations (`blocks.resolve_block_size`).
    merge_fan_in : int
        Block states merged per reducer below the root (>= 2).
    strict : bool
        Stop at the first observation that fails (else record it and go on).
    max_retries : int
        Ray retries of a task whose worker process died.
    checkpoint_dir : str or None
        Where reducers checkpoint (a path every node reads); None = the root checkpoints into a
        run-local temporary directory, removed at the end.
    run_id : str or None
        Names the run's reducers and checkpoints; None = a random id.
    include_dashboard : bool
        Start the Ray dashboard with a local Ray (off: it costs start-up time and memory).
    progress : bool or stream
        Progress on stderr (True), nowhere (False), or on the given stream.
    connect_timeout : float
        Seconds the command line waits for a TCP connection to ``address`` before it gives up
        (checked before Ray is started; see `gamma_ray_dist.distributed.address`).
    """

    backend: Literal["auto", "serial", "ray"] = "auto"
    address: str | None = None
    num_cpus: int | None = None
    max_in_flight: int | None = None
    block_size: int | None = DEFAULT_BLOCK_SIZE
    merge_fan_in: int = DEFAULT_MERGE_FAN_IN
    strict: bool = False
    max_retries: int = 2
    checkpoint_dir: str | None = None
    run_id: str | None = None
    include_dashboard: bool = False
    progress: bool | TextIO = True
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError("backend", f"must be one of {', '.join(BACKENDS)}; got {self.backend!r}")
        for name, low in (("num_cpus", 1), ("max_in_flight", 1), ("block_size", 1), ("merge_fan_in", 2),
                          ("max_retries", 0)):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                raise ConfigError(f"ray.{name}", f"must be an integer >= {low}; got {value!r}")
        timeout = self.connect_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigError("ray.connect_timeout", f"must be a number of seconds > 0; got {timeout!r}")

    @classmethod
    def resolve(cls, config_ray: Any = None, *, environ: Mapping[str, str] | None = None,
                **flags: Any) -> "ExecutionSettings":
        """Settings from command-line ``flags`` > ``environ`` > the config's ``ray`` section > defaults.

        Parameters
        ----------
        config_ray : RayConfig, optional
            The ``ray`` section of an `AnalysisConfig` (any object with the same attributes).
        environ : mapping, optional
            Environment (default ``os.environ``); ``RAY_ADDRESS`` gives the address.
        **flags
            Field values from the command line; None means "not given".
        """
        names = {f.name for f in fields(cls)}
        unknown = set(flags) - names
        if unknown:
            raise TypeError(f"unknown execution settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        if config_ray is not None:
            for name in ("address", "num_cpus", "max_in_flight", "block_size", "merge_fan_in", "strict",
                         "connect_timeout"):
                value = getattr(config_ray, name, None)
                if value is not None:
                    values[name] = value
        env = os.environ if environ is None else environ
        if env.get("RAY_ADDRESS"):
            values["address"] = env["RAY_ADDRESS"]
        values.update({k: v for k, v in flags.items() if v is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> "ExecutionSettings":
        """A copy with ``changes`` applied (validated)."""
        return replace(self, **changes)

    def max_in_flight_for(self, cluster_cpus: int) -> int:
        """Tasks-in-flight bound: ``max_in_flight`` if set, else ``2 x cluster_cpus``."""
        return self.max_in_flight if self.max_in_flight is not None else max(2, 2 * int(cluster_cpus))
