"""Small fakes of the science protocols for the driver/actor tests (this module holds no tests).

The fake partial carries float64 values spanning 16 decades, so the order of additions visibly
changes the bits of the sum: equality of results really tests the summation order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

N = 32


@dataclass
class FakePartial:
    obs_id: int
    values: np.ndarray
    counts: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def make_partial(obs_id: int, n: int = N) -> FakePartial:
    rng = np.random.default_rng(obs_id)
    values = 10.0 ** rng.uniform(-8, 8, n) * rng.choice([-1.0, 1.0], n)
    counts = rng.integers(0, 100, n).astype(np.int64)
    return FakePartial(obs_id, values, counts, {"make": 0.001})


class FakeAccumulator:
    """Sums partials; remembers which obs ids it holds (idempotent add)."""

    def __init__(self, n: int = N) -> None:
        self.values = np.zeros(n)
        self.counts = np.zeros(n, dtype=np.int64)
        self.obs_ids: list[int] = []

    def add(self, partial: FakePartial) -> bool:
        if partial.obs_id in self.obs_ids:
            return False
        self.values += partial.values
        self.counts += partial.counts
        self.obs_ids.append(int(partial.obs_id))
        return True

    def merge(self, other: "FakeAccumulator") -> None:
        self.values += other.values
        self.counts += other.counts
        self.obs_ids.extend(other.obs_ids)

    def state(self) -> dict[str, Any]:
        return {
            "values": self.values.copy(),
            "counts": self.counts.copy(),
            "obs_ids": np.array(self.obs_ids, dtype=np.int64),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "FakeAccumulator":
        acc = cls(len(state["values"]))
        acc.values = np.array(state["values"], dtype=np.float64)  # copies: inputs may be read-only
        acc.counts = np.array(state["counts"], dtype=np.int64)
        acc.obs_ids = [int(o) for o in state["obs_ids"]]
        return acc


def make_accumulator() -> FakeAccumulator:
    return FakeAccumulator()


def fake_task(shared: Any, obs_id: int) -> FakePartial:
    """The per-observation task (wrap it in `tests.faults.FaultyTask` to inject faults)."""
    return make_partial(obs_id)


def serial_sum(obs_ids, n: int = N) -> np.ndarray:
    """Plain left-to-right sum over the given order (to show that order changes the bits)."""
    out = np.zeros(n)
    for o in obs_ids:
        out += make_partial(o).values
    return out
