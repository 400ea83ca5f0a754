"""Low-level FITS access for DL3 files: path expansion, a bounded cache of decompressed files,
HDU look-up and column reading with typed errors that name the observation and the file.

A DL3 observation usually lives in one gzipped file holding EVENTS, GTI and the IRFs; a CTA-style
store points many observations at one IRF file. Gunzipping is the dominant cost of opening such a file,
so the decompressed bytes are kept in a small process-wide LRU cache and every HDU access parses only
the HDU it needs from those bytes. Arrays handed out are always fresh copies: no caller can corrupt the
cache by mutating what it got.
"""
from __future__ import annotations

import gzip
import io
import os
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np
from astropy import units as u
from astropy.io import fits

from ..errors import IRFError, MissingColumns, ObservationError, WrongColumnUnit

__all__ = [
    "make_path",
    "FitsFileCache",
    "default_file_cache",
    "read_table_hdu",
    "read_header",
    "check_columns",
    "column_values",
]

_GZIP_MAGIC = b"\x1f\x8b"
_IRF_HDU_TYPES = {"aeff", "edisp", "psf", "bkg", "rad_max"}


def make_path(path: str | os.PathLike | None) -> Path | None:
    """Expand ``$VARS`` and ``~`` in a path.

    Parameters
    ----------
    path : str or `~pathlib.Path` or None
        Path as a user writes it, e.g. ``"$GAMMAPY_DATA/hess-dl3-dr1"``.

    Returns
    -------
    path : `~pathlib.Path` or None
    """
    if path is None:
        return None
    return Path(os.path.expanduser(os.path.expandvars(str(path))))


class FitsFileCache:
    """Bounded LRU cache of decompressed FITS file contents.

    Keys include the file's modification time and size, so a rewritten file is never served stale.
    Files larger than ``max_bytes`` are read but not kept.

    Parameters
    ----------
    max_bytes : int
        Upper bound of the total cached bytes.
    """

    def __init__(self, max_bytes: int = 64 * 2**20):
        self.max_bytes = int(max_bytes)
        self._data: OrderedDict[tuple, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reads: dict[str, int] = {}

    def clear(self) -> None:
        """Drop all cached files and reset the statistics."""
        with self._lock:
            self._data.clear()
            self._size = 0
            self.hits = self.misses = 0
            self.reads = {}

    def get_bytes(self, filename: str | os.PathLike, obs_id: int | None = None) -> bytes:
        """Return the decompressed content of a FITS file (``.fits`` or ``.fits.gz``).

        Raises
        ------
        ObservationError
            The file does not exist, cannot be read or is a truncated / corrupt gzip stream.
        """
        path = Path(filename)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise ObservationError("file not found", obs_id, str(path)) from None
        except OSError as exc:
            raise ObservationError(f"cannot access file: {exc}", obs_id, str(path)) from exc
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        with self._lock:
            raw = self._data.get(key)
            if raw is not None:
                self._data.move_to_end(key)
                self.hits += 1
                return raw
        raw = _read_decompressed(path, obs_id)
        with self._lock:
            self.misses += 1
            self.reads[key[0]] = self.reads.get(key[0], 0) + 1
            if len(raw) <= self.max_bytes and key not in self._data:
                self._data[key] = raw
                self._size += len(raw)
                while self._size > self.max_bytes:
                    _, old = self._data.popitem(last=False)
                    self._size -= len(old)
        return raw

    def open(self, filename: str | os.PathLike, obs_id: int | None = None) -> fits.HDUList:
        """Open a FITS file from the cached bytes; HDUs are parsed lazily on access."""
        raw = self.get_bytes(filename, obs_id)
        try:
            return fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=True)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError on garbage
            raise ObservationError(f"not a readable FITS file: {exc}", obs_id, str(filename)) from exc

    def __getstate__(self):
        # A cache is process-local: ship an empty one to Ray workers.
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])


def _read_decompressed(path: Path, obs_id: int | None) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ObservationError(f"cannot read file: {exc}", obs_id, str(path)) from exc
    if data[:2] != _GZIP_MAGIC:
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as exc:
        raise ObservationError(
            f"corrupt or truncated gzip file ({type(exc).__name__}: {exc})", obs_id, str(path)
        ) from exc


_DEFAULT_CACHE = FitsFileCache()


def default_file_cache() -> FitsFileCache:
    """The process-wide cache used by `DataStore` and `Observation` unless told otherwise."""
    return _DEFAULT_CACHE


def _error_class(hdu_type: str | None) -> type[ObservationError]:
    return IRFError if hdu_type in _IRF_HDU_TYPES else ObservationError


def read_table_hdu(
    filename: str | os.PathLike,
    hdu: str | int,
    obs_id: int | None = None,
    hdu_type: str | None = None,
    cache: FitsFileCache | None = None,
) -> fits.BinTableHDU:
    """Read one binary-table HDU (header and data) from a FITS file.

    Parameters
    ----------
    filename : str or `~pathlib.Path`
        FITS file (gzipped or not).
    hdu : str or int
        HDU name (case-insensitive) or index.
    obs_id : int, optional
        Observation the HDU belongs to, for error messages.
    hdu_type : str, optional
        GADF HDU type ("events", "gti", "aeff", ...); missing IRF HDUs raise `IRFError`.
    cache : `FitsFileCache`, optional
        Cache of decompressed files; default: the process-wide cache.

    Returns
    -------
    hdu : `~astropy.io.fits.BinTableHDU`
        An in-memory HDU whose data does not alias the cache.

    Raises
    ------
    ObservationError, IRFError
        The file or the HDU cannot be read.
    """
    cache = cache or default_file_cache()
    with cache.open(filename, obs_id) as hdul:
        try:
            table_hdu = hdul[hdu]
        except (KeyError, IndexError):
            names = _hdu_names(hdul)
            raise _error_class(hdu_type)(
                f"HDU {hdu!r} not found (file has {names})", obs_id, str(filename)
            ) from None
        except Exception as exc:  # truncated FITS (not gzip): astropy fails while scanning
            raise ObservationError(
                f"corrupt FITS file while looking for HDU {hdu!r}: {exc}", obs_id, str(filename)
            ) from exc
        if not isinstance(table_hdu, fits.BinTableHDU):
            raise _error_class(hdu_type)(
                f"HDU {hdu!r} is a {type(table_hdu).__name__}, expected a binary table",
                obs_id,
                str(filename),
            )
        try:
            # Force the data read while the file object is open; copy() detaches it from the buffer.
            data = table_hdu.data
            header = table_hdu.header.copy()
            out = fits.BinTableHDU(data=None if data is None else data.copy(), header=header)
        except Exception as exc:
            raise ObservationError(
                f"cannot read data of HDU {hdu!r} (truncated file?): {exc}", obs_id, str(filename)
            ) from exc
    return out


def read_header(
    filename: str | os.PathLike,
    hdu: str | int,
    obs_id: int | None = None,
    hdu_type: str | None = None,
    cache: FitsFileCache | None = None,
) -> fits.Header:
    """Read only the header of one HDU (no table data is converted)."""
    cache = cache or default_file_cache()
    with cache.open(filename, obs_id) as hdul:
        try:
            return hdul[hdu].header.copy()
        except (KeyError, IndexError):
            names = _hdu_names(hdul)
            raise _error_class(hdu_type)(
                f"HDU {hdu!r} not found (file has {names})", obs_id, str(filename)
            ) from None
        except Exception as exc:
            raise ObservationError(
                f"corrupt FITS file while looking for HDU {hdu!r}: {exc}", obs_id, str(filename)
            ) from exc


def _hdu_names(hdul: fits.HDUList) -> list[str]:
    names = []
    try:
        for item in hdul:
            names.append(item.name)
    except Exception:  # a truncated file still lets us report what we saw
        names.append("<unreadable>")
    return names


def check_columns(
    hdu: fits.BinTableHDU, required, obs_id: int | None, filename: str | None
) -> None:
    """Raise `MissingColumns` naming the HDU when one of ``required`` is absent."""
    present = {name.upper() for name in hdu.columns.names}
    missing = [name for name in required if name.upper() not in present]
    if missing:
        raise MissingColumns(
            f"HDU {hdu.name!r} lacks required column(s) {missing} (has {hdu.columns.names})",
            obs_id,
            filename,
        )


def column_values(
    hdu: fits.BinTableHDU,
    name: str,
    unit: str | u.UnitBase | None,
    obs_id: int | None = None,
    filename: str | None = None,
    default_unit: str | None = None,
) -> np.ndarray:
    """A column as float64 in ``unit``, converted from the column's TUNIT.

    Parameters
    ----------
    hdu : `~astropy.io.fits.BinTableHDU`
        Table HDU.
    name : str
        Column name.
    unit : str or `~astropy.units.Unit` or None
        Target unit; None returns the raw values.
    default_unit : str, optional
        Unit assumed when the column has no TUNIT (e.g. TIME in seconds); without it a missing unit
        is an error, as a silent guess could be off by 10^6 (MeV vs TeV).

    Raises
    ------
    MissingColumns, WrongColumnUnit
    """
    check_columns(hdu, [name], obs_id, filename)
    values = np.asarray(hdu.data.field(name), dtype=np.float64)
    if unit is None:
        return values
    column_unit = hdu.columns[name].unit or default_unit
    if not column_unit:
        raise WrongColumnUnit(
            f"column {name!r} of HDU {hdu.name!r} has no unit, expected {u.Unit(unit)}",
            obs_id,
            filename,
        )
    try:
        factor = u.Unit(column_unit).to(unit)
    except (ValueError, u.UnitsError) as exc:
        raise WrongColumnUnit(
            f"column {name!r} of HDU {hdu.name!r} has unit {column_unit!r}, "
            f"not convertible to {u.Unit(unit)}",
            obs_id,
            filename,
        ) from exc
    return values if factor == 1.0 else values * factor
