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
    "ModelsFileError",
    "FitError",
    "DatasetFileError",
    "yaml_error_reason",
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
    """An analysis configuration is invalid; the message names the offending key (and the file).

    Parameters
    ----------
    key : str
        Dotted path of the key (``datasets.geom.wcs.binsize``); ``<yaml>`` for a syntax error,
        ``<file>`` for a file that cannot be read, ``<root>`` for the document itself.
    reason : str
        What is wrong, one line.
    filename : str, optional
        The file the key was read from.
    """

    def __init__(self, key: str, reason: str, filename: str | None = None):
        self.key = key
        self.reason = reason
        self.filename = None if filename is None else str(filename)
        if self.filename is None:
            super().__init__(f"config key '{key}': {reason}")
        else:
            super().__init__(f"key '{key}' in {self.filename}: {reason}")

    def in_file(self, filename) -> "ConfigError":
        """The same error naming ``filename`` (unchanged if it names a file already)."""
        if self.filename is not None:
            return self
        return type(self)(self.key, self.reason, str(filename))

    def __reduce__(self):
        return (type(self), (self.key, self.reason, self.filename))


class FitError(GammaRayDistError):
    """A fit cannot be set up (no free parameters, no data in the fit mask, ...)."""


class ModelsFileError(ConfigError, ValueError):
    """A models YAML file is invalid; ``key`` is the path inside it (``components[0].spectral.type``).

    Also a `ValueError`, which is what gammapy's model readers raise for the same mistakes.
    """


def yaml_error_reason(exc: Exception) -> str:
    """One line from a PyYAML error: ``invalid YAML at line L, column C: <problem> (<context>)``."""
    mark = getattr(exc, "problem_mark", None)
    context_mark = getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context = getattr(exc, "context", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    what = str(problem)
    if context:
        started = ""
        if context_mark is not None and (mark is None or context_mark.line != mark.line):
            started = f" started at line {context_mark.line + 1}, column {context_mark.column + 1}"
        what += f" ({context}{started})"
    return f"invalid YAML{where}: {' '.join(what.split())}"


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
