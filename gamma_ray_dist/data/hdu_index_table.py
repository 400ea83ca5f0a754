"""HDU index table (GADF ``hdu-index``) and the location of one HDU on disk."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from .fits_io import make_path

__all__ = ["HDUIndexTable", "HDULocation", "REQUIRED_HDU_INDEX_COLUMNS"]

log = logging.getLogger(__name__)

REQUIRED_HDU_INDEX_COLUMNS = ("OBS_ID", "HDU_TYPE", "HDU_CLASS", "FILE_DIR", "FILE_NAME", "HDU_NAME")


@dataclass(frozen=True)
class HDULocation:
    """Where one HDU of one observation lives: ``base_dir / file_dir / file_name``, HDU ``hdu_name``."""

    hdu_type: str
    hdu_class: str
    base_dir: str
    file_dir: str
    file_name: str
    hdu_name: str

    def path(self, abs_path: bool = True) -> Path:
        """Full file path.

        ``$VARS`` and ``~`` are expanded in base and file dir. As in gammapy, a path that does not
        exist below ``base_dir`` is tried relative to the working directory; if neither exists the
        ``base_dir`` form is returned so that error messages name the expected file.
        """
        file_dir = make_path(self.file_dir or ".")
        path = make_path(self.base_dir) / file_dir / self.file_name
        if abs_path and path.exists():
            return path
        relative = file_dir / self.file_name
        if relative.exists() or not abs_path:
            return relative
        return path


class HDUIndexTable(Table):
    """HDU index table: one row per (observation, HDU)."""

    VALID_HDU_TYPE = ["events", "gti", "aeff", "edisp", "psf", "bkg", "rad_max", "pointing"]
    VALID_HDU_CLASS = [
        "events", "gti", "aeff_2d", "edisp_2d", "psf_table", "psf_3gauss", "psf_king",
        "bkg_2d", "bkg_3d", "rad_max_2d", "pointing",
    ]

    @classmethod
    def read(cls, filename, **kwargs) -> "HDUIndexTable":
        """Read an HDU index file; ``BASE_DIR`` defaults to the file's directory."""
        filename = make_path(filename)
        table = super().read(filename, **kwargs)
        table.meta["BASE_DIR"] = filename.parent.as_posix()
        if "FILE_DIR" in table.colnames:
            table["FILE_DIR"].fill_value = ""  # empty FILE_DIR cells mean "base dir"
        return table.filled()

    @property
    def base_dir(self) -> Path:
        """Directory that FILE_DIR entries are relative to."""
        return make_path(self.meta.get("BASE_DIR", ""))

    def row_idx(self, obs_id: int, hdu_type: str | None = None, hdu_class: str | None = None) -> list[int]:
        """Row indices matching an observation and optionally an HDU type and class."""
        rows = np.nonzero(np.asarray(self["OBS_ID"]) == obs_id)[0]
        out = []
        for idx in rows:
            if hdu_type and _clean(self["HDU_TYPE"][idx]) != hdu_type:
                continue
            if hdu_class and _clean(self["HDU_CLASS"][idx]) != hdu_class:
                continue
            out.append(int(idx))
        return out

    def location_info(self, idx: int) -> HDULocation:
        """`HDULocation` of one row."""
        row = self[idx]
        return HDULocation(
            hdu_type=_clean(row["HDU_TYPE"]),
            hdu_class=_clean(row["HDU_CLASS"]),
            base_dir=self.base_dir.as_posix(),
            file_dir=str(row["FILE_DIR"]).strip(),
            file_name=str(row["FILE_NAME"]).strip(),
            hdu_name=str(row["HDU_NAME"]).strip(),
        )

    def hdu_location(
        self, obs_id: int, hdu_type: str | None = None, hdu_class: str | None = None, warn_missing: bool = True
    ) -> HDULocation | None:
        """Location of the HDU of one observation; None if absent, first row (with a warning) if
        several rows match."""
        if hdu_type is None and hdu_class is None:
            raise ValueError("give hdu_type or hdu_class")
        if hdu_type and hdu_type not in self.VALID_HDU_TYPE:
            raise ValueError(f"invalid hdu_type {hdu_type!r}; valid: {self.VALID_HDU_TYPE}")
        if hdu_class and hdu_class not in self.VALID_HDU_CLASS:
            raise ValueError(f"invalid hdu_class {hdu_class!r}; valid: {self.VALID_HDU_CLASS}")
        idx = self.row_idx(obs_id, hdu_type=hdu_type, hdu_class=hdu_class)
        if not idx:
            if warn_missing:
                log.warning(f"No HDU found matching OBS_ID={obs_id}, HDU_TYPE={hdu_type}, HDU_CLASS={hdu_class}")
            return None
        if len(idx) > 1:
            log.warning(f"Several HDUs match OBS_ID={obs_id}, HDU_TYPE={hdu_type}, HDU_CLASS={hdu_class}; using the first")
        return self.location_info(idx[0])

    def locations(self, obs_id: int) -> dict[str, HDULocation]:
        """All HDU locations of one observation keyed by HDU type (first row wins, as gammapy)."""
        out: dict[str, HDULocation] = {}
        for idx in self.row_idx(obs_id):
            loc = self.location_info(idx)
            if loc.hdu_type in out:
                log.warning(f"Several '{loc.hdu_type}' HDUs for OBS_ID={obs_id}; using the first")
                continue
            out[loc.hdu_type] = loc
        return out

    @property
    def obs_id_unique(self) -> np.ndarray:
        return np.unique(np.asarray(self["OBS_ID"]))

    @property
    def hdu_type_unique(self) -> list[str]:
        return sorted({_clean(v) for v in self["HDU_TYPE"]})

    @property
    def hdu_class_unique(self) -> list[str]:
        return sorted({_clean(v) for v in self["HDU_CLASS"]})

    def summary(self) -> str:
        obs_id = self.obs_id_unique
        return (
            "HDU index table:\n"
            f"BASE_DIR: {self.base_dir}\n"
            f"Rows: {len(self)}\n"
            f"OBS_ID: {obs_id[0]} -- {obs_id[-1]}\n"
            f"HDU_TYPE: {self.hdu_type_unique}\n"
            f"HDU_CLASS: {self.hdu_class_unique}\n"
        )


def _clean(value) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).strip().lower()
