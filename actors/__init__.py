"""Ray actors: the order-fixed tree reduction and the profile/fit workers.

Plain classes (`OrderedReducer`, `ProfileEvaluator`) hold the logic and are testable without Ray;
the actor classes (`ReductionActor`, `ProfileWorker`) are thin `ray.remote` wrappers.
"""
from .profile import Job, ProfileEvaluator, ProfileWorker, map_on_workers, map_serial
from .protocols import Accumulator, AccumulatorFactory, Partial, TaskFn
from .reduction import OrderedReducer, ReductionActor, Reply
from .tree import chunk_index, plan_chunks

__all__ = [
    "Accumulator",
    "AccumulatorFactory",
    "Partial",
    "TaskFn",
    "OrderedReducer",
    "ReductionActor",
    "Reply",
    "plan_chunks",
    "chunk_index",
    "Job",
    "ProfileEvaluator",
    "ProfileWorker",
    "map_on_workers",
    "map_serial",
]
