"""Typed errors shared by the whole package.

Every error about input data names what it is about (observation id, file, HDU, column, config key),
so that a run over thousands of observations can report and skip one bad observation precisely.
"""
from __future__ import annotations

__all__ = [
    "GammaRayDistError",
    "DataStoreError",
    "ObservationError",
    "MissingColumns",
    "WrongColumnUnit",
    "IRFError",
    "ConfigError",
    "FitError",
    "DatasetFileError",
]


class GammaRayDistError(Exception):
    """Base class of all errors raised by gamma_ray_dist."""


class DataStoreError(GammaRayDistError):
    """A data store (index files, paths) cannot be used."""


class ObservationError(GammaRayDistError):
    """One observation cannot be read or reduced.

    Parameters
    ----------
    obs_id : int or None
        Observation id the error is about.
    filename : str or None
        File involved (events file, IRF file, ...).
    reason : str
        What went wrong, in words a user can act on.
    """

    def __init__(self, reason: str, obs_id: int | None = None, filename: str | None = None):
        self.obs_id = None if obs_id is None else int(obs_id)
        self.filename = None if filename is None else str(filename)
        self.reason = reason
        where = []
        if self.obs_id is not None:
            where.append(f"obs_id={self.obs_id}")
        if self.filename is not None:
            where.append(f"file={self.filename}")
        prefix = f"[{', '.join(where)}] " if where else ""
        super().__init__(prefix + reason)

    def __reduce__(self):
        # Keep the structured fields when the error crosses a process boundary (Ray, multiprocessing).
        return (type(self), (self.reason, self.obs_id, self.filename))


class MissingColumns(ObservationError):
    """A FITS table lacks required columns."""


class WrongColumnUnit(ObservationError):
    """A FITS column or IRF has a unit that cannot be converted to the expected one."""


class IRFError(ObservationError):
    """An IRF HDU is missing, of an unknown class, or has invalid content (NaN, wrong shape)."""


class ConfigError(GammaRayDistError):
    """An analysis configuration is invalid; the message names the offending key."""

    def __init__(self, key: str, reason: str):
        self.key = key
        self.reason = reason
        super().__init__(f"config key '{key}': {reason}")

    def __reduce__(self):
        return (type(self), (self.key, self.reason))


class FitError(GammaRayDistError):
    """A fit cannot be set up (no free parameters, no data in the fit mask, ...)."""


class DatasetFileError(GammaRayDistError):
    """A datasets index (YAML) or a dataset file it names cannot be read or written.

    Parameters
    ----------
    reason : str
        What went wrong.
    filename : str
        The file involved (the dataset file, or the index when the index itself is the problem).
    """

    def __init__(self, reason: str, filename: str):
        self.reason = reason
        self.filename = str(filename)
        super().__init__(f"{self.filename}: {reason}")

    def __reduce__(self):
        return (type(self), (self.reason, self.filename))
