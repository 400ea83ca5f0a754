"""The per-observation task function of the reduction, and the accumulator that also keeps summaries.

`reduce_task(shared, obs_id)` is ``reduce_observation((datastore_dir, obs_id), spec)``; the backend
runs it for every observation of a block and folds the partials in obs id order.

`SummaryAccumulator` is `StackAccumulator` that also records, per observation, the numbers the run
report lists (safe counts, background, FoV norm, safe-mask bins); the summaries travel in the
accumulator state, so they survive actor restarts like the sums do.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..datasets.accumulator import StackAccumulator

__all__ = ["reduce_task", "make_shared", "SummaryAccumulator"]


def make_shared(datastore: str, spec: Any) -> dict[str, Any]:
    """The ``shared`` input of `reduce_task`: data store path and reduction spec.

    The spec travels as an object; every task gets its own deserialised copy, and the reduction's
    per-process caches are keyed by the spec's content, so a worker builds the stacked dataset and
    the makers once per spec, not once per task.
    """
    return {"datastore": str(datastore), "spec": spec}


def reduce_task(shared: Mapping[str, Any], obs_id: int):
    """Reduce one observation; ``shared`` is made by `make_shared`."""
    from ..reduction import reduce_observation

    return reduce_observation((shared["datastore"], int(obs_id)), shared["spec"])


class SummaryAccumulator(StackAccumulator):
    """`StackAccumulator` that also keeps ``summaries[obs_id]`` for the run report.

    A summary holds ``counts`` (safe counts in the stacked geometry), ``background`` (FoV-normalised,
    in the safe mask), ``bkg_norm``, ``bkg_tilt``, ``fov_status``, ``mask_safe_bins``, ``livetime``
    and the task's stage ``timings``.
    """

    def __init__(self, geometry, name: str | None = None):
        super().__init__(geometry, name=name)
        self.summaries: dict[int, dict[str, Any]] = {}

    def add(self, partial) -> bool:
        added = super().add(partial)
        if added:
            self.summaries[int(partial.obs_id)] = {
                "counts": int(partial.counts.sum()),
                "background": float(partial.background.sum()) if partial.background is not None else None,
                "bkg_norm": float(partial.fov_norm),
                "bkg_tilt": float(partial.fov_tilt),
                "fov_status": str(partial.fov_status),
                "mask_safe_bins": int(partial.mask_safe.sum()),
                "livetime": float(partial.livetime),
            }
        return added

    def merge(self, other: StackAccumulator) -> "SummaryAccumulator":
        super().merge(other)
        self.summaries.update(getattr(other, "summaries", {}))
        return self

    def state(self, compact: bool = False) -> dict[str, Any]:
        state = super().state(compact)
        state["summaries"] = {int(k): dict(v) for k, v in self.summaries.items()}
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "SummaryAccumulator":
        acc = super().from_state(state)
        acc.summaries = {int(k): dict(v) for k, v in (state.get("summaries") or {}).items()}
        return acc
