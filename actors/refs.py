"""Waiting for and fetching batches of Ray results, telling which refs failed (the drivers)."""
from __future__ import annotations

from typing import Any

import ray

__all__ = ["Failed", "get_each", "wait_ready"]


class Failed:
    """Stands in for the value of a ref whose task or actor call raised."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def get_each(refs: list[ray.ObjectRef]) -> list[Any]:
    """One `ray.get` for the batch; only if it fails, one by one to tell which refs failed."""
    if not refs:
        return []
    try:
        return ray.get(refs)
    except Exception:  # noqa: BLE001
        out: list[Any] = []
        for ref in refs:
            try:
                out.append(ray.get(ref))
            except Exception as error:  # noqa: BLE001 - handed to the caller
                out.append(Failed(error))
        return out


def wait_ready(refs: list[ray.ObjectRef], timeout: float) -> list[ray.ObjectRef]:
    """The refs that are ready: waits (at most ``timeout`` s) for one, then sweeps the rest without blocking."""
    ready, rest = ray.wait(refs, num_returns=1, timeout=timeout)
    if ready and rest:
        more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
        ready += more
    return ready
