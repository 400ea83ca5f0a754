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
    "FastTableHDU",
    "FastHeader",
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
        self._index: dict[tuple, list] = {}  # parsed HDU layout of the cached files (same keys)
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.reads: dict[str, int] = {}

    def clear(self) -> None:
        """Drop all cached files and reset the statistics."""
        with self._lock:
            self._data.clear()
            self._index.clear()
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
        return self._get(filename, obs_id)[1]

    def _get(self, filename, obs_id) -> tuple[tuple, bytes]:
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
                return key, raw
        raw = _read_decompressed(path, obs_id)
        with self._lock:
            self.misses += 1
            self.reads[key[0]] = self.reads.get(key[0], 0) + 1
            if len(raw) <= self.max_bytes and key not in self._data:
                self._data[key] = raw
                self._size += len(raw)
                while self._size > self.max_bytes:
                    old_key, old = self._data.popitem(last=False)
                    self._index.pop(old_key, None)
                    self._size -= len(old)
        return key, raw

    def hdus(self, filename: str | os.PathLike, obs_id: int | None = None) -> tuple[bytes, list]:
        """Decompressed bytes and parsed HDU layout (`_HDUInfo` list) of a file.

        The layout is parsed once per cached file with a minimal FITS header reader; raises
        `_Unsupported` when the file needs astropy (corrupt, exotic keywords or formats).
        """
        key, raw = self._get(filename, obs_id)
        with self._lock:
            index = self._index.get(key)
        if index is None:
            index = _scan_hdus(raw)
            with self._lock:
                if key in self._data:
                    self._index[key] = index
        return raw, index

    def open(self, filename: str | os.PathLike, obs_id: int | None = None) -> fits.HDUList:
        """Open a FITS file from the cached bytes; HDUs are parsed lazily on access."""
        raw = self.get_bytes(filename, obs_id)
        try:
            return fits.open(io.BytesIO(raw), memmap=False, lazy_load_hdus=True)
        except Exception as exc:  # astropy raises OSError, ValueError, TypeError on garbage
            reason = " ".join(str(exc).split()).split(" If this is really a FITS file")[0]  # not astropy's advice
            raise ObservationError(f"not a readable FITS file: {reason}", obs_id, str(filename)) from exc

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


# ------------------------------------------------------------------------------------------------
# Minimal FITS reader for the hot path.
#
# astropy parses every card of every header it walks past (with a configuration look-up per card)
# and builds Column / FITS_rec objects per table: ~20 ms per HDU. DL3 tables are simple (fixed-width
# numeric columns, TDIM), so the headers are parsed here with plain string operations and the table
# rows are a read-only numpy view of the decompressed bytes (immutable: nothing can corrupt the
# cache). Anything unusual (scaled or variable-length columns, HIERARCH, truncated data...) raises
# `_Unsupported` and the caller falls back to astropy, which also produces the error messages.
# ------------------------------------------------------------------------------------------------
_BLOCK = 2880
_CARD = 80


class _Unsupported(Exception):
    """The minimal reader cannot handle this file or HDU: use astropy."""


class FastHeader(dict):
    """Header keyword -> value (str, int, float, bool or None), case-insensitive look-up.

    ``COMMENT`` / ``HISTORY`` / blank-keyword cards are kept as lists of strings.
    """

    def __getitem__(self, key):
        return dict.__getitem__(self, key.upper() if isinstance(key, str) else key)

    def get(self, key, default=None):
        return dict.get(self, key.upper() if isinstance(key, str) else key, default)

    def __contains__(self, key):
        return dict.__contains__(self, key.upper() if isinstance(key, str) else key)

    def copy(self) -> "FastHeader":
        return FastHeader(self)


def _parse_value(field: str, keyword: str):
    f = field.lstrip()
    if f.startswith("'"):
        i = 1
        while True:
            j = f.find("'", i)
            if j < 0:
                raise _Unsupported(f"unterminated string in {keyword}")
            if f[j + 1:j + 2] == "'":
                i = j + 2
                continue
            return f[1:j].replace("''", "'").rstrip()
    v = f.split("/", 1)[0].strip()
    if v == "":
        return None
    if v == "T":
        return True
    if v == "F":
        return False
    if v[0] == "(":
        raise _Unsupported(f"complex value in {keyword}")
    try:
        return int(v)
    except ValueError:
        pass
    try:
        return float(v.replace("D", "E").replace("d", "e"))
    except ValueError:
        raise _Unsupported(f"cannot parse value of {keyword}: {v!r}") from None


def _parse_header(raw: bytes, start: int) -> tuple[FastHeader, int]:
    """Header starting at ``start``: (header, offset of the data)."""
    header = FastHeader()
    pos = start
    n = len(raw)
    last_key = None
    while True:
        if pos + _BLOCK > n:
            raise _Unsupported("truncated header")
        block = raw[pos:pos + _BLOCK].decode("ascii", errors="strict")
        pos += _BLOCK
        for k in range(0, _BLOCK, _CARD):
            card = block[k:k + _CARD]
            keyword = card[:8].rstrip().upper()
            if keyword == "END":
                return header, pos
            if keyword in ("COMMENT", "HISTORY", "") or card[8:10] != "= ":
                if keyword == "CONTINUE":
                    prev = header.get(last_key) if last_key else None
                    if not (isinstance(prev, str) and prev.endswith("&")):
                        raise _Unsupported("CONTINUE card without a long string")
                    value = _parse_value(card[8:], keyword)
                    if not isinstance(value, str):
                        raise _Unsupported("CONTINUE card without a string")
                    dict.__setitem__(header, last_key, prev[:-1] + value)
                    continue
                if keyword.startswith("HIERARCH"):
                    raise _Unsupported("HIERARCH keywords")
                header.setdefault(keyword, []).append(card[8:].rstrip())
                continue
            dict.__setitem__(header, keyword, _parse_value(card[10:], keyword))
            last_key = keyword


class _HDUInfo:
    __slots__ = ("name", "header", "data_offset", "data_nbytes", "index")

    def __init__(self, name, header, data_offset, data_nbytes, index):
        self.name, self.header = name, header
        self.data_offset, self.data_nbytes, self.index = data_offset, data_nbytes, index

    @property
    def is_bintable(self) -> bool:
        return self.index > 0 and str(self.header.get("XTENSION", "")).strip().upper() == "BINTABLE"


def _scan_hdus(raw: bytes) -> list:
    """Headers and data locations of all HDUs of a FITS file (data is not touched)."""
    hdus = []
    pos = 0
    n = len(raw)
    try:
        while pos < n:
            if not raw[pos:pos + 80].strip(b"\0 "):
                break  # trailing padding
            header, data_offset = _parse_header(raw, pos)
            naxis = int(header.get("NAXIS", 0))
            if naxis == 0:
                nbytes = 0
            else:
                if header.get("GROUPS"):
                    raise _Unsupported("random groups")
                dims = [int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]
                nbytes = abs(int(header["BITPIX"])) // 8 * int(header.get("GCOUNT", 1)) * (
                    int(header.get("PCOUNT", 0)) + int(np.prod(dims)))
            index = len(hdus)
            name = header.get("EXTNAME")
            name = str(name).strip().upper() if name is not None else ("PRIMARY" if index == 0 else "")
            hdus.append(_HDUInfo(name, header, data_offset, nbytes, index))
            pos = data_offset + (nbytes + _BLOCK - 1) // _BLOCK * _BLOCK
            if data_offset + nbytes > n:
                break  # truncated data: only HDUs before it are usable
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise _Unsupported(f"{type(exc).__name__}: {exc}") from None
    return hdus


_TFORM_TYPES = {"B": ("u1", 1), "I": (">i2", 2), "J": (">i4", 4), "K": (">i8", 8), "E": (">f4", 4),
                "D": (">f8", 8), "A": ("S", 1)}


class FastColumn:
    """Column description (``name``, ``format``, ``unit``, ``dim``) as astropy's `Column` gives it."""

    __slots__ = ("name", "format", "unit", "dim")

    def __init__(self, name, format, unit, dim):
        self.name, self.format, self.unit, self.dim = name, format, unit, dim

    def __repr__(self) -> str:
        return f"FastColumn(name={self.name!r}, format={self.format!r}, unit={self.unit!r})"


class FastColumns:
    """Columns of a table, indexable by position or (case-insensitive) name."""

    def __init__(self, columns: list):
        self._columns = list(columns)
        self._by_name = {}
        for c in self._columns:
            self._by_name.setdefault(c.name.upper(), c)

    @property
    def names(self) -> list:
        return [c.name for c in self._columns]

    def __iter__(self):
        return iter(self._columns)

    def __len__(self) -> int:
        return len(self._columns)

    def __contains__(self, name) -> bool:
        return str(name).upper() in self._by_name

    def __getitem__(self, key):
        if isinstance(key, str):
            try:
                return self._by_name[key.upper()]
            except KeyError:
                raise KeyError(f"Key '{key}' does not exist.") from None
        return self._columns[key]


class FastTableData:
    """Read-only rows of a binary table (numpy structured view of the file bytes)."""

    def __init__(self, array: np.ndarray, names: dict):
        self._array = array
        self._names = names  # upper-case name -> field name

    def field(self, name):
        if isinstance(name, (int, np.integer)):
            return self._array[self._array.dtype.names[name]]
        try:
            return self._array[self._names[str(name).upper()]]
        except KeyError:
            raise KeyError(f"Key '{name}' does not exist.") from None

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.field(key)
        return self._array[key]

    def __len__(self) -> int:
        return len(self._array)

    @property
    def shape(self):
        return self._array.shape

    @property
    def dtype(self):
        return self._array.dtype

    @property
    def names(self):
        return list(self._array.dtype.names)


class FastTableHDU:
    """Binary-table HDU read by the minimal reader: ``name``, ``header``, ``columns``, ``data``
    (the parts of astropy's `BinTableHDU` the readers use); `to_astropy` gives the real thing."""

    def __init__(self, name, header, columns, data, source):
        self.name, self.header, self.columns, self.data = name, header, columns, data
        self._source = source  # (filename, hdu, obs_id, hdu_type, cache)

    def to_astropy(self) -> fits.BinTableHDU:
        filename, hdu, obs_id, hdu_type, cache = self._source
        return _read_table_hdu_astropy(filename, hdu, obs_id, hdu_type, cache)

    def __repr__(self) -> str:
        return f"<FastTableHDU {self.name!r} {len(self.data)} rows, columns {self.columns.names}>"


def _table_from_info(raw: bytes, info: _HDUInfo, source) -> FastTableHDU:
    h = info.header
    try:
        nfields = int(h["TFIELDS"])
        width, nrows = int(h["NAXIS1"]), int(h["NAXIS2"])
        names, formats, offsets, columns, lookup = [], [], [], [], {}
        offset = 0
        for i in range(1, nfields + 1):
            tform = str(h[f"TFORM{i}"]).strip().upper()
            digits = len(tform) - len(tform.lstrip("0123456789"))
            repeat = int(tform[:digits]) if digits else 1
            code = tform[digits:digits + 1]
            if code not in _TFORM_TYPES or repeat < 1:
                raise _Unsupported(f"column format {tform}")
            for key in (f"TSCAL{i}", f"TZERO{i}"):
                if key in h and float(h[key]) != (1.0 if key.startswith("TSCAL") else 0.0):
                    raise _Unsupported("scaled column")
            base, size = _TFORM_TYPES[code]
            name = str(h.get(f"TTYPE{i}", f"col{i}")).strip()
            tdim = h.get(f"TDIM{i}")
            if code == "A":
                if tdim is not None:
                    raise _Unsupported("string column with TDIM")
                fmt = f"S{repeat}"
            elif tdim is not None:
                shape = tuple(int(v) for v in str(tdim).strip().strip("()").split(","))[::-1]
                if int(np.prod(shape)) != repeat:
                    raise _Unsupported("TDIM does not match the repeat count")
                fmt = (base, shape)
            else:
                fmt = base if repeat == 1 else (base, (repeat,))
            if name.upper() in lookup or not name:
                raise _Unsupported("duplicate or empty column name")
            unit = h.get(f"TUNIT{i}")
            unit = str(unit).strip() if unit is not None and str(unit).strip() else None
            names.append(name)
            formats.append(fmt)
            offsets.append(offset)
            lookup[name.upper()] = name
            columns.append(FastColumn(name, tform, unit, tdim))
            offset += repeat * size
        if offset != width:
            raise _Unsupported("row width does not match the columns")
        dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": width})
        if info.data_offset + width * nrows > len(raw):
            raise _Unsupported("truncated table data")
        array = np.frombuffer(raw, dtype=dtype, count=nrows, offset=info.data_offset)
    except (KeyError, ValueError, TypeError) as exc:
        raise _Unsupported(f"{type(exc).__name__}: {exc}") from None
    return FastTableHDU(info.name, h, FastColumns(columns), FastTableData(array, lookup), source)


def _find_hdu(hdus: list, hdu: str | int):
    if isinstance(hdu, (int, np.integer)):
        return hdus[int(hdu)] if 0 <= int(hdu) < len(hdus) else None
    key = str(hdu).strip().upper()
    for info in hdus:
        if info.name == key:
            return info
    return None


def _fast_info(filename, hdu, obs_id, cache):
    """(raw bytes, `_HDUInfo`) of ``hdu``, or None when the astropy path must be used."""
    try:
        raw, hdus = cache.hdus(filename, obs_id)
    except _Unsupported:
        return None
    info = _find_hdu(hdus, hdu)
    return None if info is None else (raw, info)


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
) -> "FastTableHDU | fits.BinTableHDU":
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
    hdu : `FastTableHDU` or `~astropy.io.fits.BinTableHDU`
        A `FastTableHDU` (``name``, ``header``, ``columns``, ``data`` as astropy's, data a read-only
        view of the immutable cached bytes; ``to_astropy()`` for the astropy HDU) when the minimal
        reader handles the HDU, else an in-memory astropy HDU whose data does not alias the cache.

    Raises
    ------
    ObservationError, IRFError
        The file or the HDU cannot be read.
    """
    cache = cache or default_file_cache()
    found = _fast_info(filename, hdu, obs_id, cache)
    if found is not None and found[1].is_bintable:
        try:
            return _table_from_info(found[0], found[1], (filename, hdu, obs_id, hdu_type, cache))
        except _Unsupported:
            pass
    return _read_table_hdu_astropy(filename, hdu, obs_id, hdu_type, cache)


def _read_table_hdu_astropy(filename, hdu, obs_id, hdu_type, cache) -> fits.BinTableHDU:
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
    """Read only the header of one HDU (no table data is converted).

    A `FastHeader` (dict-like, case-insensitive) when the minimal reader can parse the file, else an
    astropy `~astropy.io.fits.Header`.
    """
    cache = cache or default_file_cache()
    found = _fast_info(filename, hdu, obs_id, cache)
    if found is not None:
        return found[1].header.copy()
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
