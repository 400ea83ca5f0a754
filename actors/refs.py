"""Fetching a batch of Ray results while telling which refs failed (driver and profile workers)."""
from __future__ import annotations

from typing import Any

import ray

__all__ = ["Failed", "get_each"]


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
