"""Shape of the reduction tree: contiguous chunks of the sorted observation ids.

The chunking depends only on the sorted ids and ``fan_in`` (never on the number of workers), so
the order of floating point additions, hence the result bits, is a function of the inputs alone.
"""
from __future__ import annotations

from typing import Hashable, Iterable

__all__ = ["plan_chunks", "chunk_index"]


def plan_chunks(keys: Iterable[Hashable], fan_in: int) -> list[tuple]:
    """Split the sorted unique ``keys`` into consecutive chunks of ``fan_in`` (the last shorter).

    Parameters
    ----------
    keys : iterable
        Observation ids (sorted and de-duplicated here).
    fan_in : int
        Observations folded by one leaf reducer (>= 1).

    Returns
    -------
    list of tuple
        The chunks, in order; empty list for no keys.
    """
    if int(fan_in) < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    ordered = sorted(set(keys))
    return [tuple(ordered[i : i + fan_in]) for i in range(0, len(ordered), fan_in)]


def chunk_index(chunks: list[tuple]) -> dict[Hashable, int]:
    """Map each key to the index of its chunk."""
    return {k: i for i, chunk in enumerate(chunks) for k in chunk}
