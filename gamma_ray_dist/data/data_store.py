"""Data store: the HDU and observation index files of a DL3 data release."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from astropy import table as astropy_table

from ..errors import DataStoreError, IRFError, ObservationError
from .fits_io import FitsFileCache, default_file_cache, make_path
from .hdu_index_table import REQUIRED_HDU_INDEX_COLUMNS, HDUIndexTable
from .obs_table import ObservationTable
from .observations import Observation, Observations

__all__ = ["DataStore", "MissingRequiredHDU", "REQUIRED_IRFS", "ALL_IRFS"]

log = logging.getLogger(__name__)

ALL_IRFS = ["aeff", "edisp", "psf", "bkg", "rad_max"]
REQUIRED_IRFS = {
    "full-enclosure": {"aeff", "edisp", "psf", "bkg"},
    "full": {"aeff", "edisp", "psf", "bkg"},
    "point-like": {"aeff", "edisp"},
    "all-optional": set(),
}


class MissingRequiredHDU(IRFError):
    """An observation lacks an HDU that ``required_irf`` asks for."""


def _resolve_index_file(base_dir: Path, filename, default: str) -> tuple[Path, bool]:
    """Index file path (relative to base_dir if it exists there) and whether it was given."""
    if not filename:
        return base_dir / default, False
    filename = make_path(filename)
    if (base_dir / filename).exists():
        return base_dir / filename, True
    return filename, True


def _read_index(cls, path: Path, what: str):
    try:
        return cls.read(path, format="fits")
    except FileNotFoundError:
        raise DataStoreError(f"{what} index file not found: {path}") from None
    except Exception as exc:  # corrupt gzip, not FITS, no table HDU
        raise DataStoreError(f"cannot read {what} index file {path}: {type(exc).__name__}: {exc}") from exc


class DataStore:
    """IACT data store (GADF HDU index + observation index).

    Parameters
    ----------
    hdu_table : `HDUIndexTable`
        HDU index table (``meta["BASE_DIR"]`` anchors relative FILE_DIR entries).
    obs_table : `ObservationTable`, optional
        Observation index table; duplicated OBS_ID rows are dropped.
    cache : `FitsFileCache`, optional
        Cache of decompressed files shared by the observations (default: the process-wide one).
        IRF files shared by many observations (CTA calibration-database style) are decompressed
        once while they stay in the cache.
    """

    DEFAULT_HDU_TABLE = "hdu-index.fits.gz"
    DEFAULT_OBS_TABLE = "obs-index.fits.gz"

    def __init__(self, hdu_table: HDUIndexTable, obs_table: ObservationTable | None = None, cache: FitsFileCache | None = None):
        self.hdu_table = hdu_table
        self.obs_table = None if obs_table is None else astropy_table.unique(obs_table, keys="OBS_ID")
        self._cache = cache
        self._hdu_table_filename: str | None = None  # named in errors; set by from_dir
        self.obs_table_filename: str | None = None  # the observation index file (from_dir), for messages

    @classmethod
    def from_dir(cls, base_dir, hdu_table_filename=None, obs_table_filename=None) -> "DataStore":
        """Open a data store directory.

        Parameters
        ----------
        base_dir : str or `~pathlib.Path`
            Directory; ``$VARS`` and ``~`` are expanded (e.g. ``"$GAMMAPY_DATA/hess-dl3-dr1"``).
        hdu_table_filename, obs_table_filename : str or `~pathlib.Path`, optional
            Index files, relative to ``base_dir`` or absolute; default ``hdu-index.fits.gz`` and
            ``obs-index.fits.gz``. A missing default obs index gives ``obs_table=None`` (as
            gammapy); a missing explicitly named one is an error.

        Raises
        ------
        DataStoreError
            Base directory or an index file missing or unreadable, or the HDU index lacks columns.
        """
        base_dir = make_path(base_dir)
        if not base_dir.is_dir():
            raise DataStoreError(f"data store directory not found: {base_dir}")
        hdu_path, _ = _resolve_index_file(base_dir, hdu_table_filename, cls.DEFAULT_HDU_TABLE)
        obs_path, obs_given = _resolve_index_file(base_dir, obs_table_filename, cls.DEFAULT_OBS_TABLE)
        if not hdu_path.exists():
            raise DataStoreError(f"HDU index file not found: {hdu_path}")
        hdu_table = _read_index(HDUIndexTable, hdu_path, "HDU")
        missing = [c for c in REQUIRED_HDU_INDEX_COLUMNS if c not in hdu_table.colnames]
        if missing:
            raise DataStoreError(f"HDU index file {hdu_path} lacks columns {missing}")
        hdu_table.meta["BASE_DIR"] = str(base_dir)
        if obs_path.exists():
            obs_table = _read_index(ObservationTable, obs_path, "observation")
            if "OBS_ID" not in obs_table.colnames:
                raise DataStoreError(f"observation index file {obs_path} lacks column OBS_ID")
            ids, counts = np.unique(np.asarray(obs_table["OBS_ID"]), return_counts=True)
            if (counts > 1).any():
                log.warning(f"observation index file {obs_path} lists OBS_ID {ids[counts > 1].tolist()} more "
                            "than once; using the first row of each")
        elif obs_given:
            raise DataStoreError(f"observation index file not found: {obs_path}")
        else:
            log.info(f"No observation index table at {obs_path}")
            obs_table = None
        store = cls(hdu_table=hdu_table, obs_table=obs_table)
        store._hdu_table_filename = str(hdu_path)
        if obs_table is not None:
            store.obs_table_filename = str(obs_path)
        return store

    def __str__(self) -> str:
        return self.info(show=False)

    def info(self, show: bool = True) -> str | None:
        text = "Data store:\n" + self.hdu_table.summary() + "\n\n"
        text += self.obs_table.summary() if self.obs_table else "No observation index table."
        if show:
            print(text)
            return None
        return text

    @property
    def obs_ids(self) -> np.ndarray:
        """Sorted unique observation ids of the HDU index."""
        return np.unique(np.asarray(self.hdu_table["OBS_ID"]))

    @property
    def cache(self) -> FitsFileCache:
        return self._cache or default_file_cache()

    def obs(self, obs_id: int, required_irf="full-enclosure", require_events: bool = True) -> Observation:
        """One observation (lazy: files are read when its parts are first used).

        Parameters
        ----------
        obs_id : int
            Observation id.
        required_irf : str or list of str
            ``"full-enclosure"`` (alias ``"full"``: aeff, edisp, psf, bkg), ``"point-like"``
            (aeff, edisp), ``"all-optional"`` (none), or a list of HDU types out of
            ``["aeff", "edisp", "psf", "bkg", "rad_max"]``.
        require_events : bool
            Require the events and GTI HDUs too.

        Raises
        ------
        ObservationError
            ``obs_id`` is not in the HDU index (the message names the index file).
        MissingRequiredHDU
            A required HDU is not listed for this observation.
        ValueError
            ``required_irf`` is invalid.
        """
        required = _required_hdus(required_irf)
        if require_events:
            required = required | {"events", "gti"}
        try:
            obs_id = int(obs_id)
        except (TypeError, ValueError):
            raise ObservationError(f"invalid observation id {obs_id!r}", None, self._hdu_table_filename) from None
        locations = self.hdu_table.locations(obs_id)
        if not locations:
            raise ObservationError(
                f"OBS_ID {obs_id} not in HDU index table", obs_id, self._hdu_table_filename
            )
        missing = sorted(required.difference(locations))
        if missing:
            raise MissingRequiredHDU(
                f"required HDUs {missing} not found in HDU index for this observation",
                obs_id,
                self._hdu_table_filename,
            )
        locations = {k: v for k, v in locations.items() if k in ("events", "gti", *ALL_IRFS)}
        return Observation._from_locations(obs_id, locations, self._cache)

    def get_observations(
        self,
        obs_id: Iterable[int] | None = None,
        skip_missing: bool = False,
        required_irf="full-enclosure",
        require_events: bool = True,
        selection: Sequence[bool] | None = None,
    ) -> Observations:
        """Observations for a list of ids (default: all, sorted by id).

        Unknown ids raise `ObservationError` unless ``skip_missing`` (then a warning is logged).
        Observations lacking a required HDU are skipped with a warning, as gammapy does.
        ``selection`` is a boolean mask over `obs_ids`.
        """
        _required_hdus(required_irf)  # validate before the loop
        known = self.obs_ids
        allowed = known if selection is None else known[np.asarray(selection, dtype=bool)]
        if obs_id is None:
            wanted = list(allowed)
        else:
            wanted = []
            known_set = set(known.tolist())
            allowed_set = set(np.asarray(allowed).tolist())
            for value in np.atleast_1d(np.asarray(obs_id)).tolist():
                if value not in known_set:
                    if skip_missing:
                        log.warning(f"Skipping missing obs_id: {value!r}")
                        continue
                    raise ObservationError("OBS_ID not in HDU index table", value, self._hdu_table_filename)
                if value in allowed_set:
                    wanted.append(value)
            if len(set(wanted)) != len(wanted):
                log.warning("List of obs_id is not unique")
        observations = []
        for value in wanted:
            try:
                observations.append(self.obs(value, required_irf, require_events))
            except MissingRequiredHDU as exc:
                log.warning(f"Skipping observation with missing HDUs: {exc}")
        log.info(f"Observations selected: {len(observations)} out of {len(wanted)}.")
        return Observations(observations)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_cache"] = None  # process-local
        return state


def _required_hdus(required_irf) -> set[str]:
    if isinstance(required_irf, str):
        if required_irf not in REQUIRED_IRFS:
            raise ValueError(f"required_irf {required_irf!r} unknown; use one of {sorted(REQUIRED_IRFS)} or a list")
        return set(REQUIRED_IRFS[required_irf])
    required = {str(x) for x in required_irf}
    unknown = required.difference(ALL_IRFS)
    if unknown:
        raise ValueError(f"{sorted(unknown)} is not a valid hdu key. Choose from: {ALL_IRFS}")
    return required
