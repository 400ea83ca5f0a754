"""Good time intervals (GTI), read from the GADF ``GTI`` HDU."""
from __future__ import annotations

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time

from ..errors import ObservationError
from .fits_io import FitsFileCache, column_values, make_path, read_table_hdu
from .times import time_ref_from_header, time_unit_from_header

__all__ = ["GTI"]

# gammapy's default epoch for GTIs created without one.
TIME_REF_DEFAULT = Time("2000-01-01T00:00:00", scale="tt")


class GTI:
    """Good time intervals.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Table with ``START`` and ``STOP`` columns of `~astropy.time.Time`.
    reference_time : `~astropy.time.Time`, optional
        Epoch of the mission elapsed times (MET); default 2000-01-01 TT as in gammapy.
    """

    def __init__(self, table: Table, reference_time: Time | None = None):
        self.table = self._validate_table(table)
        self._time_ref = TIME_REF_DEFAULT if reference_time is None else reference_time
        self._met = None  # (start, stop) float64 seconds, exact file values when read from FITS

    @staticmethod
    def _validate_table(table):
        if not isinstance(table, Table):
            raise TypeError(f"GTI table must be an astropy Table, got {type(table).__name__}")
        if not {"START", "STOP"}.issubset(table.colnames):
            raise ValueError(f"GTI table needs START and STOP columns, has {table.colnames}")
        if len(table) and not all(isinstance(table[n], Time) for n in ("START", "STOP")):
            raise TypeError("GTI START and STOP columns must be astropy Time columns")
        return table

    @classmethod
    def create(cls, start, stop, reference_time: Time | None = None) -> "GTI":
        """Create from start and stop times.

        Parameters
        ----------
        start, stop : `~astropy.time.Time` or `~astropy.units.Quantity`
            Interval bounds; Quantities are offsets from ``reference_time``.
        reference_time : `~astropy.time.Time`, optional
            MET epoch; default 2000-01-01 TT.
        """
        reference_time = Time(TIME_REF_DEFAULT if reference_time is None else reference_time)
        reference_time.format = "mjd"
        if not isinstance(start, Time):
            start = reference_time + u.Quantity(start)
        if not isinstance(stop, Time):
            stop = reference_time + u.Quantity(stop)
        table = Table({"START": np.atleast_1d(start), "STOP": np.atleast_1d(stop)})
        return cls(table, reference_time=reference_time)

    @classmethod
    def from_table_hdu(
        cls, table_hdu: fits.BinTableHDU, obs_id: int | None = None, filename: str | None = None
    ) -> "GTI":
        """Build from a GADF GTI binary-table HDU.

        Raises
        ------
        MissingColumns, WrongColumnUnit, ObservationError
        """
        header = table_hdu.header
        time_ref = time_ref_from_header(header, obs_id, filename)
        unit = time_unit_from_header(header, obs_id, filename)
        start = column_values(table_hdu, "START", u.s, obs_id, filename, default_unit=unit)
        stop = column_values(table_hdu, "STOP", u.s, obs_id, filename, default_unit=unit)
        if not (np.all(np.isfinite(start)) and np.all(np.isfinite(stop))):
            raise ObservationError("GTI START/STOP contain non-finite values", obs_id, filename)
        if np.any(stop < start):
            raise ObservationError("GTI has intervals with STOP < START", obs_id, filename)
        # Same construction as gammapy (epoch + Quantity in s) so Time values agree bit for bit.
        gti = cls.create(u.Quantity(start, u.s), u.Quantity(stop, u.s), time_ref)
        gti._met = (start, stop)
        return gti

    @classmethod
    def read(cls, filename, hdu: str = "GTI", cache: FitsFileCache | None = None) -> "GTI":
        """Read from a FITS file (``$VARS`` expanded)."""
        filename = make_path(filename)
        table_hdu = read_table_hdu(filename, hdu, hdu_type="gti", cache=cache)
        return cls.from_table_hdu(table_hdu, filename=str(filename))

    def __str__(self) -> str:
        start, stop = self.met_values()
        return (
            "GTI info:\n"
            f"- Number of GTIs: {len(self.table)}\n"
            f"- Duration: {self.time_sum}\n"
            f"- Start: {start[0]} s MET\n"
            f"- Start: {self.time_start[0].fits} (time standard: {self.time_start[-1].scale.upper()})\n"
            f"- Stop: {stop[-1]} s MET\n"
            f"- Stop: {self.time_stop[-1].fits} (time standard: {self.time_stop[-1].scale.upper()})\n"
        )

    def __len__(self) -> int:
        return len(self.table)

    @property
    def time_ref(self) -> Time:
        """MET reference epoch."""
        return self._time_ref

    @property
    def time_start(self) -> Time:
        """Interval start times."""
        return self.table["START"]

    @property
    def time_stop(self) -> Time:
        """Interval stop times."""
        return self.table["STOP"]

    @property
    def time_delta(self) -> u.Quantity:
        """Interval durations (s)."""
        return (self.time_stop - self.time_start).to("s")

    @property
    def time_sum(self) -> u.Quantity:
        """Total good time (s), computed as gammapy does (from the Time columns)."""
        return self.time_delta.sum()

    def met_values(self) -> tuple[np.ndarray, np.ndarray]:
        """Start and stop as float64 seconds after `time_ref` (MET).

        Exact file values for a GTI read from FITS (gammapy's ``met_start`` carries a ~1e-8 s
        round-off from the Time arithmetic).
        """
        if self._met is None:
            start = (self.time_start - self.time_ref).to_value("s")
            stop = (self.time_stop - self.time_ref).to_value("s")
            self._met = (np.atleast_1d(np.asarray(start, float)), np.atleast_1d(np.asarray(stop, float)))
        return self._met[0].copy(), self._met[1].copy()

    @property
    def met_start(self) -> u.Quantity:
        """Start times in s after `time_ref` (see `met_values`)."""
        return u.Quantity(self.met_values()[0], u.s)

    @property
    def met_stop(self) -> u.Quantity:
        """Stop times in s after `time_ref` (see `met_values`)."""
        return u.Quantity(self.met_values()[1], u.s)

    @property
    def time_intervals(self) -> list:
        """List of (start, stop) `~astropy.time.Time` pairs."""
        return list(zip(self.time_start, self.time_stop))

    def stack(self, other: "GTI") -> None:
        """Append the intervals of ``other`` in place (no merging of overlaps, as gammapy)."""
        self.table = self._validate_table(vstack([self.table, other.table]))
        self._met = None

    def copy(self) -> "GTI":
        gti = GTI(self.table.copy(), reference_time=self._time_ref)
        gti._met = self._met
        return gti
