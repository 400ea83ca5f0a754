"""The Ray actor around `actors.ordered.OrderedReducer` (the order-fixed, checkpointable reduction).

The plain class lives in `actors.ordered`, importable without Ray (serial mode folds with it); this
module adds the actor and re-exports the plain names.
"""
from __future__ import annotations

import ray

from .ordered import CHECKPOINT_VERSION, CheckpointRefused, OrderedReducer, Reply

__all__ = ["Reply", "OrderedReducer", "ReductionActor", "CHECKPOINT_VERSION", "CheckpointRefused"]

#: The Ray actor around `OrderedReducer`. It needs no CPU of its own (folding is cheap next to
#: reducing an observation), so it never starves the tasks; the driver sets name and restarts.
ReductionActor = ray.remote(num_cpus=0)(OrderedReducer)
