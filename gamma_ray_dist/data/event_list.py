"""Event lists (GADF ``EVENTS`` HDU): an astropy Table at the API edge, plain float64 arrays for
the map makers."""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
from astropy import units as u
from astropy.coordinates import Angle, SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ..errors import ObservationError
from .fits_io import FitsFileCache, check_columns, column_values, make_path, read_header, read_table_hdu
from .pointing import earth_location_from_header
from .times import time_ref_from_header, time_unit_from_header

__all__ = ["EventList", "REQUIRED_EVENT_COLUMNS", "CANONICAL_EVENT_UNITS"]

REQUIRED_EVENT_COLUMNS = ("RA", "DEC", "TIME", "ENERGY")

# Units of `EventList.arrays` output, per column.
CANONICAL_EVENT_UNITS = {
    "RA": "deg",
    "DEC": "deg",
    "GLON": "deg",
    "GLAT": "deg",
    "ALT": "deg",
    "AZ": "deg",
    "DETX": "deg",
    "DETY": "deg",
    "THETA": "deg",
    "ENERGY": "TeV",
    "TIME": "s",
}

# The units a column must be convertible to for the table form (gammapy keeps the file unit).
_TABLE_UNITS = {"RA": u.deg, "DEC": u.deg, "ENERGY": u.TeV}


class _EventsSource:
    """Where an event list lives on disk; reads go through the file cache."""

    def __init__(self, filename, hdu, obs_id, cache):
        self.filename = str(filename)
        self.hdu = hdu
        self.obs_id = obs_id
        self.cache = cache
        self._header = None

    def header(self) -> fits.Header:
        if self._header is None:
            self._header = read_header(self.filename, self.hdu, self.obs_id, "events", self.cache)
        return self._header

    def table_hdu(self) -> fits.BinTableHDU:
        hdu = read_table_hdu(self.filename, self.hdu, self.obs_id, "events", self.cache)
        check_columns(hdu, REQUIRED_EVENT_COLUMNS, self.obs_id, self.filename)
        self._header = hdu.header
        return hdu


class EventList:
    """Event list.

    Parameters
    ----------
    table : `~astropy.table.Table`
        Columns ``RA``, ``DEC`` (angle), ``ENERGY`` (energy) and ``TIME`` (`~astropy.time.Time`);
        ``table.meta`` holds the EVENTS header.
    meta : dict, optional
        Extra metadata.

    Notes
    -----
    Event lists obtained from an `Observation` are lazy: nothing is read until ``table`` or
    `arrays` is used, and `arrays` reads only the columns it is asked for.
    """

    def __init__(self, table: Table | None, meta: dict | None = None):
        self._source = None
        self._table = None if table is None else self._validate_table(table)
        self._columns: dict[str, np.ndarray] = {}
        self.meta = dict(meta or {})

    # ---------------------------------------------------------------- construction
    @staticmethod
    def _validate_table(table):
        if not isinstance(table, Table):
            raise TypeError(f"EventList expects an astropy Table, got {type(table).__name__}")
        missing = set(REQUIRED_EVENT_COLUMNS).difference(table.colnames)
        if missing:
            raise KeyError(f"EventList table invalid: columns {sorted(missing)} are missing")
        if not isinstance(table["TIME"], Time):
            raise TypeError("EventList TIME column must be an astropy Time column")
        for name, unit in _TABLE_UNITS.items():
            if table[name].unit is None or not table[name].unit.is_equivalent(unit):
                raise u.UnitConversionError(f"EventList column {name} is not in {unit} units")
        return table

    @classmethod
    def _lazy(cls, filename, hdu="EVENTS", obs_id=None, cache: FitsFileCache | None = None) -> "EventList":
        events = cls(None)
        events._source = _EventsSource(filename, hdu, obs_id, cache)
        return events

    @classmethod
    def read(cls, filename, hdu: str = "EVENTS", cache: FitsFileCache | None = None) -> "EventList":
        """Read from a FITS file (``$VARS`` expanded); the table is built immediately."""
        filename = make_path(filename)
        table_hdu = read_table_hdu(filename, hdu, hdu_type="events", cache=cache)
        return cls.from_table_hdu(table_hdu, filename=str(filename))

    @classmethod
    def from_table_hdu(
        cls, table_hdu: fits.BinTableHDU, obs_id: int | None = None, filename: str | None = None
    ) -> "EventList":
        """Build from a GADF EVENTS binary-table HDU.

        Raises
        ------
        MissingColumns, WrongColumnUnit, ObservationError
        """
        return cls(_table_from_hdu(table_hdu, obs_id, filename))

    # ---------------------------------------------------------------- data access
    @property
    def _obs_id(self):
        return None if self._source is None else self._source.obs_id

    @property
    def _filename(self):
        return None if self._source is None else self._source.filename

    @property
    def table(self) -> Table:
        """The events as an astropy Table (built on first access, then kept)."""
        if self._table is None:
            src = self._source
            self._table = _table_from_hdu(src.table_hdu(), src.obs_id, src.filename)
        return self._table

    @property
    def header(self) -> dict:
        """The EVENTS header (read without the table data when the list is lazy)."""
        if self._table is None and self._source is not None:
            return self._source.header()
        return self._table.meta

    def arrays(self, columns: Sequence[str] = ("RA", "DEC", "ENERGY")) -> dict[str, np.ndarray]:
        """Columns as float64 arrays in canonical units (deg, TeV, s after the MET epoch).

        Only the requested columns are converted; results are kept so a second call is free.
        Returned arrays are read-only views of the kept ones.

        Parameters
        ----------
        columns : sequence of str
            Column names, e.g. ``("RA", "DEC", "ENERGY")``; ``TIME`` gives MET seconds.

        Returns
        -------
        arrays : dict of str to `~numpy.ndarray`

        Raises
        ------
        MissingColumns, WrongColumnUnit
        """
        columns = [str(c).upper() for c in columns]
        todo = [c for c in columns if c not in self._columns]
        if todo:
            if self._table is None and self._source is not None:
                self._read_columns_from_file(todo)
            else:
                self._read_columns_from_table(todo)
        out = {}
        for name in columns:
            view = self._columns[name].view()
            view.flags.writeable = False
            out[name] = view
        return out

    def _read_columns_from_file(self, names: Iterable[str]) -> None:
        src = self._source
        hdu = src.table_hdu()
        time_unit = time_unit_from_header(hdu.header, src.obs_id, src.filename)
        for name in names:
            unit = CANONICAL_EVENT_UNITS.get(name)
            default = time_unit if name == "TIME" else None
            values = column_values(hdu, name, unit, src.obs_id, src.filename, default_unit=default)
            self._columns[name] = np.ascontiguousarray(values, dtype=np.float64)

    def _read_columns_from_table(self, names: Iterable[str]) -> None:
        table = self.table
        for name in names:
            if name not in table.colnames:
                raise KeyError(f"EventList has no column {name!r} (has {table.colnames})")
            if name == "TIME":
                values = (table["TIME"] - self.time_ref).to_value("s")
            else:
                col = table[name]
                unit = CANONICAL_EVENT_UNITS.get(name)
                values = col.quantity.to_value(unit) if (unit and col.unit is not None) else np.asarray(col)
            self._columns[name] = np.ascontiguousarray(values, dtype=np.float64)

    def __len__(self) -> int:
        if self._table is None and self._source is not None:
            return int(self.header["NAXIS2"])
        return len(self._table)

    def __str__(self) -> str:
        meta = self.header
        info = "EventList\n---------\n\n"
        info += f"\tInstrument       : {meta.get('INSTRUME')}\n"
        info += f"\tTelescope        : {meta.get('TELESCOP')}\n"
        info += f"\tObs. ID          : {meta.get('OBS_ID', '')}\n\n"
        info += f"\tNumber of events : {len(self)}\n"
        if meta.get("TSTART", False):
            rate = len(self) / self.observation_time_duration
            info += f"\tEvent rate       : {rate:.3f}\n\n"
            info += f"\tTime start       : {self.observation_time_start}\n"
            info += f"\tTime stop        : {self.observation_time_stop}\n\n"
        energy = self.energy
        info += f"\tMin. energy      : {np.min(energy):.2e}\n"
        info += f"\tMax. energy      : {np.max(energy):.2e}\n"
        info += f"\tMedian energy    : {np.median(energy):.2e}\n\n"
        if "RA_PNT" in meta and "DEC_PNT" in meta:
            info += f"\tMax. offset      : {np.max(self.offset):.1f}\n"
        return info.expandtabs(tabsize=2)

    # ---------------------------------------------------------------- gammapy-style properties
    @property
    def time_ref(self) -> Time:
        """MET reference epoch (MJDREFI/MJDREFF, TIMESYS)."""
        return time_ref_from_header(self.header, self._obs_id, self._filename)

    @property
    def time(self) -> Time:
        """Event times."""
        return self.table["TIME"]

    @property
    def energy(self) -> u.Quantity:
        """Reconstructed energies (file unit, as gammapy)."""
        return self.table["ENERGY"].quantity

    @property
    def radec(self) -> SkyCoord:
        """Event directions in ICRS."""
        return SkyCoord(self.table["RA"], self.table["DEC"], unit="deg", frame="icrs")

    @property
    def galactic(self) -> SkyCoord:
        """Event directions in Galactic coordinates (computed from RA/DEC)."""
        return self.radec.galactic

    @property
    def pointing_radec(self) -> SkyCoord:
        """Pointing from the RA_PNT/DEC_PNT header keywords."""
        meta = self.header
        if "RA_PNT" not in meta or "DEC_PNT" not in meta:
            raise ObservationError("EVENTS header lacks RA_PNT/DEC_PNT", self._obs_id, self._filename)
        return SkyCoord(meta["RA_PNT"], meta["DEC_PNT"], unit="deg", frame="icrs")

    @property
    def offset(self) -> Angle:
        """Angular distance of each event from the pointing."""
        return Angle(self.pointing_radec.separation(self.radec), unit="deg")

    @property
    def observation_time_start(self) -> Time:
        return self.time_ref + u.Quantity(self.header["TSTART"], "s")

    @property
    def observation_time_stop(self) -> Time:
        return self.time_ref + u.Quantity(self.header["TSTOP"], "s")

    @property
    def observation_time_duration(self) -> u.Quantity:
        """TSTOP - TSTART (wall time, including dead time)."""
        return u.Quantity((self.observation_time_stop - self.observation_time_start).sec, "s")

    @property
    def observation_live_time_duration(self) -> u.Quantity:
        """LIVETIME header keyword."""
        return u.Quantity(self.header["LIVETIME"], "s")

    @property
    def observation_dead_time_fraction(self) -> float:
        """1 - DEADC."""
        return 1 - self.header["DEADC"]

    @property
    def observatory_earth_location(self):
        return earth_location_from_header(self.header)

    # ---------------------------------------------------------------- selections
    def select_row_subset(self, row_specifier) -> "EventList":
        """New event list with ``table[row_specifier]``."""
        return self.__class__(self.table[row_specifier], meta=self.meta)

    def select_energy(self, energy_range) -> "EventList":
        """Events with ``energy_range[0] <= E < energy_range[1]``."""
        energy = self.energy
        lo, hi = u.Quantity(energy_range[0]), u.Quantity(energy_range[1])
        return self.select_row_subset((energy >= lo) & (energy < hi))

    def select_offset(self, offset_band) -> "EventList":
        """Events with ``offset_band[0] <= offset < offset_band[1]``."""
        offset = self.offset
        lo, hi = Angle(offset_band[0]), Angle(offset_band[1])
        return self.select_row_subset((offset >= lo) & (offset < hi))

    def select_time(self, time_interval) -> "EventList":
        """Events with ``time_interval[0] <= t < time_interval[1]``."""
        time = self.time
        return self.select_row_subset((time >= time_interval[0]) & (time < time_interval[1]))


def _table_from_hdu(table_hdu: fits.BinTableHDU, obs_id, filename) -> Table:
    """GADF EVENTS HDU -> Table with TIME as `~astropy.time.Time`, as gammapy builds it."""
    if hasattr(table_hdu, "to_astropy"):  # FastTableHDU: the Table form needs astropy's HDU
        table_hdu = table_hdu.to_astropy()
    check_columns(table_hdu, REQUIRED_EVENT_COLUMNS, obs_id, filename)
    header = table_hdu.header
    time_ref = time_ref_from_header(header, obs_id, filename)
    time_unit = time_unit_from_header(header, obs_id, filename)
    met = column_values(table_hdu, "TIME", u.s, obs_id, filename, default_unit=time_unit)
    for name, unit in _TABLE_UNITS.items():
        column_values(table_hdu, name, unit, obs_id, filename)  # raises WrongColumnUnit
    table = Table.read(table_hdu)
    data = {"TIME": time_ref + u.Quantity(met, "s")}
    for name in ("ENERGY", "RA", "DEC"):
        data[name] = table[name].quantity
    out = Table(data, meta=table.meta)
    for name in table.colnames:
        if name not in ("RA", "DEC", "GLON", "GLAT", "TIME", "ENERGY"):
            out.add_column(table[name])
    return out
