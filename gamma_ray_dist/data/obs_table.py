"""Observation index table (GADF ``obs-index``) and its selections."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from astropy.coordinates import Angle, SkyCoord
from astropy.table import Table
from astropy.time import Time
from astropy.units import Quantity

from .fits_io import make_path
from .times import time_ref_from_header

__all__ = ["ObservationTable"]


class ObservationTable(Table):
    """Observation index table: one row per observation (pointing, times, zenith, ...)."""

    @classmethod
    def read(cls, filename, **kwargs) -> "ObservationTable":
        """Read from FITS (``$VARS`` expanded)."""
        return super().read(make_path(filename), **kwargs)

    @property
    def pointing_radec(self) -> SkyCoord:
        """Pointings in ICRS (RA_PNT, DEC_PNT)."""
        return SkyCoord(self["RA_PNT"], self["DEC_PNT"], unit="deg", frame="icrs")

    @property
    def pointing_galactic(self) -> SkyCoord:
        """Pointings in Galactic coordinates (GLON_PNT, GLAT_PNT)."""
        return SkyCoord(self["GLON_PNT"], self["GLAT_PNT"], unit="deg", frame="galactic")

    @property
    def time_ref(self) -> Time:
        """MET epoch from the table header."""
        return time_ref_from_header(self.meta)

    @property
    def time_start(self) -> Time:
        """Observation start times (TSTART after `time_ref`)."""
        return self.time_ref + Quantity(self["TSTART"], "second")

    @property
    def time_stop(self) -> Time:
        """Observation stop times (TSTOP after `time_ref`)."""
        return self.time_ref + Quantity(self["TSTOP"], "second")

    def summary(self) -> str:
        name = self.meta.get("OBSERVATORY_NAME", self.meta.get("OBSERVER", "N/A"))
        return f"Observation table:\nObservatory name: {name!r}\nNumber of observations: {len(self)}\n"

    def select_obs_id(self, obs_id) -> "ObservationTable":
        """Rows of the given observation id(s), in the order asked; KeyError if one is absent."""
        ids = np.asarray(self["OBS_ID"])
        wanted = np.atleast_1d(np.asarray(obs_id))
        rows = []
        for value in wanted:
            match = np.nonzero(ids == value)[0]
            if len(match) == 0:
                raise KeyError(f"OBS_ID {value} not in observation table")
            rows.extend(match.tolist())
        return self[rows]

    def select_range(self, selection_variable: str, value_range, inverted: bool = False) -> "ObservationTable":
        """Rows with ``min <= value < max``; ``min == max`` selects that exact value.

        ``value_range`` is Quantity-like and may carry units (e.g. ``Angle([60, 70], "deg")``).
        """
        value_range = Quantity(value_range)
        value = Quantity(self[selection_variable])
        if np.allclose(value_range[0].value, value_range[1].value):
            mask = value == value_range[0]
        else:
            mask = (value_range[0] <= value) & (value < value_range[1])
        return self[~mask if inverted else mask]

    def select_time_range(self, time_range, partial_overlap: bool = False, inverted: bool = False) -> "ObservationTable":
        """Observations inside ``time_range`` (or overlapping it, with ``partial_overlap``)."""
        time_range = Time(time_range)
        if partial_overlap:
            mask = (time_range[0] <= self.time_stop) & (time_range[1] >= self.time_start)
        else:
            mask = (time_range[0] <= self.time_start) & (time_range[1] >= self.time_stop)
        return self[~mask if inverted else mask]

    def select_sky_circle(self, center: SkyCoord, radius, inverted: bool = False) -> "ObservationTable":
        """Observations whose pointing is closer than ``radius`` to ``center`` (great-circle)."""
        mask = center.separation(self.pointing_radec) < Angle(radius)
        return self[~mask if inverted else mask]

    def select_observations(self, selections: dict | Iterable[dict] | None = None) -> "ObservationTable":
        """Apply selection criteria one after the other.

        Each criterion is a dict with ``type``:

        - ``"sky_circle"``: ``frame`` ("icrs", "galactic", ...), ``lon``, ``lat``, ``radius`` and
          optional ``border`` (added to the radius); angles as Quantity/Angle or strings like
          ``"83.633 deg"`` (plain numbers are degrees).
        - ``"time_box"``: ``time_range`` (two times), optional ``partial_overlap``.
        - ``"par_box"``: ``variable`` (a column) and ``value_range`` (min, max).

        All accept ``inverted=True``.
        """
        if selections is None:
            return self
        if isinstance(selections, dict):
            selections = [selections]
        table = self
        for selection in selections:
            table = table._apply_simple_selection(selection)
        return table

    def _apply_simple_selection(self, selection: dict) -> "ObservationTable":
        selection = dict(selection)
        kind = selection.pop("type", None)
        if kind == "sky_circle":
            lon = Angle(selection.pop("lon"), "deg")
            lat = Angle(selection.pop("lat"), "deg")
            radius = Angle(selection.pop("radius"), "deg") + Angle(selection.pop("border", 0), "deg")
            center = SkyCoord(lon, lat, frame=selection.pop("frame"))
            return self.select_sky_circle(center, radius, **selection)
        if kind == "time_box":
            return self.select_time_range(selection.pop("time_range"), **selection)
        if kind == "par_box":
            variable = selection.pop("variable")
            return self.select_range(variable, **selection)
        raise ValueError(f"Invalid selection type: {kind!r} (use sky_circle, time_box or par_box)")
