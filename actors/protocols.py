"""Protocols the science side implements for the distributed machinery.

The driver and the actors only rely on these small interfaces, so that the reduction
(`reduce_observation` -> `PartialDataset`, `StackAccumulator`) and the fits can evolve without
touching the Ray code, and so that the machinery is tested with tiny fakes.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol, TypeVar, runtime_checkable

__all__ = ["Partial", "Accumulator", "AccumulatorFactory", "TaskFn"]

A = TypeVar("A", bound="Accumulator")


@runtime_checkable
class Partial(Protocol):
    """The reduced contribution of one observation (plain numpy arrays + small metadata).

    Optionally a partial may carry ``timings``: a ``dict[str, float]`` of seconds per stage
    (e.g. ``{"read": 0.02, "make": 0.2}``); the driver sums them into the run report.
    """

    obs_id: int


@runtime_checkable
class Accumulator(Protocol):
    """Float64/int64 buffers of the stacked geometry, summed observation by observation.

    The machinery calls ``add`` in sorted observation id order only and ``merge`` in chunk order
    only, so an implementation needs no ordering logic of its own to be bit-reproducible.
    """

    def add(self, partial: Partial) -> Any:
        """Add one observation; adding an obs id already present must be a no-op."""

    def merge(self, other: "Accumulator") -> Any:
        """Add another accumulator (over disjoint observations) into this one, in place."""

    def state(self) -> dict[str, Any]:
        """Plain dict of numpy arrays and scalars (picklable); the checkpoint payload.

        An accumulator may also define ``transport_state()``: a smaller state (e.g. cropped to what
        its observations cover) that ``from_state`` turns back into the same sums; a task ships that.
        """

    @classmethod
    def from_state(cls: type[A], state: Mapping[str, Any]) -> A:
        """Rebuild an accumulator from ``state()``; must not alias read-only input arrays."""


#: Zero-argument callable returning an *empty* accumulator (must be picklable with cloudpickle).
AccumulatorFactory = Callable[[], Accumulator]

#: ``task_fn(shared, obs_id) -> Partial``: the per-observation work, run in a Ray task.
TaskFn = Callable[[Any, int], Partial]
