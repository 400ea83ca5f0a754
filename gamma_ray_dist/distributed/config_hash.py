"""Content hash of a run's reduction configuration, recorded in and checked against reducer checkpoints.

`run_config_hash` is the SHA-256 of a canonical description of what a reducer's state depends on:
the task function, the ``shared`` input of the tasks (for the pipeline: the data store path, the
`ReductionSpec` - geometry, energy axes, makers, safe mask, exclusion mask - and the test hooks), the
accumulator factory (the stacked geometry) and the plan settings (``block_size``, ``merge_fan_in``: they
fix the summation order). The observation ids are not in it: each checkpoint records its own keys and
is ignored when they differ (see `actors.reduction`).

Objects with a ``content_key()`` (a `ReductionSpec`) contribute that key; functions and classes
their qualified name; a ``functools.partial`` its function, arguments and keywords; everything else
goes through `reduction.spec.digest_update` (arrays by bytes, WCS by header, objects by their attributes).
"""
from __future__ import annotations

import functools
import hashlib
from typing import Any

__all__ = ["run_config_hash"]


def run_config_hash(task_fn: Any, shared: Any, make_accumulator: Any, block_size: int | None,
                    merge_fan_in: int) -> str:
    """Hex SHA-256 of the run configuration the reducers' checkpoints are written for (``block_size``
    None: the automatic plan, which differs from any fixed size)."""
    from ..reduction.spec import digest_update

    digest = hashlib.sha256(b"gamma_ray_dist run configuration v2;")
    digest_update({"task_fn": _describe(task_fn), "shared": _describe(shared),
                   "accumulator": _describe(make_accumulator),
                   "block_size": "auto" if block_size is None else int(block_size),
                   "merge_fan_in": int(merge_fan_in)}, digest)
    return digest.hexdigest()


def _describe(value: Any) -> Any:
    """Replace what `digest_update` cannot describe stably (callables, content-keyed objects)."""
    if isinstance(value, dict):
        return {k: _describe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_describe(v) for v in value]
    if isinstance(value, tuple):  # named tuples too (their class does not take one iterable)
        return tuple(_describe(v) for v in value)
    if isinstance(value, functools.partial):
        return ("partial", _describe(value.func), _describe(value.args), _describe(value.keywords))
    if callable(getattr(value, "content_key", None)):
        cls = type(value)
        return ("content_key", f"{cls.__module__}.{cls.__qualname__}", value.content_key())
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return ("callable", f"{getattr(value, '__module__', '?')}.{value.__qualname__}")
    return value
