"""Groups of observations for a grouped reduction (``backend.reduce(..., groups=...)``).

A grouped reduction stacks the observations of each group into one state, in one pass over the
data: per observation (`group_by_observation`, what ``datasets.stack: false`` uses), per time
interval (`group_by_time_intervals`: a light curve's bins, or nights), or any user mapping
``obs_id -> key``.

The time rule is gammapy's ``Datasets.select_time`` (which its ``LightCurveEstimator`` applies to
unstacked datasets): an observation belongs to the interval ``[t_min, t_max]`` that contains it
entirely, from the start of its first good time interval to the end of its last, within
``atol`` (1 microsecond). An observation that overlaps an interval without being inside it
*straddles* it; what happens to it is the caller's explicit choice (``straddle``), never silent.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Mapping, Sequence

import numpy as np
from astropy import units as u
from astropy.time import Time

__all__ = ["TimeGrouping", "group_by_observation", "group_by_time_intervals", "observation_times"]


def group_by_observation(obs_ids: Iterable[int]) -> dict[int, int]:
    """``{obs_id: obs_id}``: every observation its own group."""
    return {int(o): int(o) for o in obs_ids}


@dataclass(frozen=True)
class TimeGrouping:
    """Observations assigned to time intervals.

    Attributes
    ----------
    groups : dict
        ``obs_id -> interval index``: the ``groups`` argument of a grouped reduction.
    intervals : list of (Time, Time)
        The intervals, in the order given.
    members : list of list of int
        Sorted obs ids of each interval.
    empty : list of int
        Indices of the intervals with no observation (only with ``allow_empty=True``): a light curve
        must give them an explicit empty entry.
    outside : list of int
        Obs ids that overlap no interval (not grouped).
    straddling : list of int
        Obs ids that cross an interval's edge, left out (``straddle="drop"``).
    """

    groups: dict[int, int]
    intervals: list[tuple[Time, Time]]
    members: list[list[int]]
    empty: list[int] = field(default_factory=list)
    outside: list[int] = field(default_factory=list)
    straddling: list[int] = field(default_factory=list)


def observation_times(observations: Any) -> dict[int, tuple[Time, Time]]:
    """``{obs_id: (start, stop)}`` of an `ObservationTable` (TSTART / TSTOP), `Observations` (first
    GTI start, last GTI stop) or a mapping ``obs_id -> (start, stop)``."""
    if isinstance(observations, Mapping):
        return {int(k): (Time(v[0]), Time(v[1])) for k, v in observations.items()}
    if hasattr(observations, "colnames"):  # an observation table
        start, stop = observations.time_start, observations.time_stop
        return {int(o): (start[i], stop[i]) for i, o in enumerate(observations["OBS_ID"])}
    return {int(obs.obs_id): (obs.tstart, obs.tstop) for obs in observations}


def group_by_time_intervals(observations: Any, time_intervals: Sequence[tuple[Time, Time]],
                            straddle: Literal["error", "drop", "start"] = "error", allow_empty: bool = False,
                            atol: u.Quantity = 1e-6 * u.s) -> TimeGrouping:
    """Assign observations to time intervals (see the module docstring for the rule).

    Parameters
    ----------
    observations : `ObservationTable`, `Observations` or mapping
        What `observation_times` accepts.
    time_intervals : sequence of (Time, Time)
        Disjoint intervals ``[t_min, t_max]`` (e.g. a light curve's ``time_intervals``), in any order.
    straddle : {"error", "drop", "start"}
        An observation crossing an interval's edge: raise (default), leave it out (listed in
        ``straddling``), or put it in the interval that contains its start time (left out, and listed,
        when none does).
    allow_empty : bool
        False (default): an interval without observation raises. True: it is listed in ``empty``.
    atol : Quantity
        Tolerance of the time comparisons (gammapy's default).

    Raises
    ------
    ValueError
        Overlapping intervals, ``t_min >= t_max``, a straddling observation (``straddle="error"``),
        an empty interval (``allow_empty=False``); the message names the observation / interval.
    """
    if straddle not in ("error", "drop", "start"):
        raise ValueError(f"straddle must be 'error', 'drop' or 'start', got {straddle!r}")
    intervals = [(Time(t0), Time(t1)) for t0, t1 in time_intervals]
    tol = u.Quantity(atol).to_value("d")
    bounds = np.array([[t0.tt.mjd, t1.tt.mjd] for t0, t1 in intervals], dtype=float).reshape(-1, 2)
    for i, (lo, hi) in enumerate(bounds):
        if not lo < hi:
            raise ValueError(f"time interval {i} [{intervals[i][0].isot}, {intervals[i][1].isot}] is empty or reversed")
    order = np.argsort(bounds[:, 0], kind="stable")
    for a, b in zip(order[:-1], order[1:]):
        if bounds[b, 0] < bounds[a, 1] - tol:
            raise ValueError(f"time intervals {a} and {b} overlap: an observation could belong to both")

    times = observation_times(observations)
    groups: dict[int, int] = {}
    outside: list[int] = []
    straddling: list[int] = []
    for obs_id in sorted(times):
        start, stop = (t.tt.mjd for t in times[obs_id])
        inside = np.nonzero((start >= bounds[:, 0] - tol) & (stop <= bounds[:, 1] + tol))[0]
        if inside.size:
            groups[obs_id] = int(inside[0])
            continue
        overlaps = np.nonzero((start < bounds[:, 1]) & (stop > bounds[:, 0]))[0]
        if not overlaps.size:
            outside.append(obs_id)
            continue
        if straddle == "error":
            i = int(overlaps[0])
            raise ValueError(f"observation {obs_id} ({times[obs_id][0].isot} - {times[obs_id][1].isot}) straddles "
                             f"time interval {i} [{intervals[i][0].isot}, {intervals[i][1].isot}]; "
                             "choose straddle='drop' or 'start'")
        if straddle == "start":
            by_start = np.nonzero((start >= bounds[:, 0] - tol) & (start < bounds[:, 1]))[0]
            if by_start.size:
                groups[obs_id] = int(by_start[0])
                continue
        straddling.append(obs_id)

    members: list[list[int]] = [[] for _ in intervals]
    for obs_id, i in groups.items():
        members[i].append(obs_id)
    empty = [i for i, m in enumerate(members) if not m]
    if empty and not allow_empty:
        i = empty[0]
        raise ValueError(f"time interval {i} [{intervals[i][0].isot}, {intervals[i][1].isot}] contains no "
                         f"observation ({len(empty)} empty interval(s)); pass allow_empty=True to list them")
    return TimeGrouping(groups, intervals, members, empty, outside, straddling)
