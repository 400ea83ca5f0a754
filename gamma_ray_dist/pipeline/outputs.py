"""Atomic writers for run outputs: a reader sees the old file or the complete new one, never a part.

Every writer writes into a temporary file in the destination directory (same file system, same
suffixes, so writers that choose compression by extension, e.g. ``.fits.gz``, behave the same) and
moves it into place with `os.replace`, which is atomic on POSIX file systems.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

__all__ = ["atomic_path", "atomic_write", "write_text", "write_json", "write_dataset", "write_models",
           "write_flux_points", "to_jsonable"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path with the same name in a private directory beside ``path``.

    On normal exit the file is moved onto ``path`` (`os.replace`); on error it is discarded and
    ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        tmp = tmp_dir / path.name
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"writer produced no file for {path}")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Call ``writer(tmp_path)`` and move the result onto ``path`` atomically; return ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text atomically, UTF-8 encoded (whatever the locale)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def to_jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays to Python, non-finite floats to None, paths to str."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return to_jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically (NaN/inf written as null)."""
    return write_text(path, json.dumps(to_jsonable(data), indent=1) + "\n")


def write_dataset(path: str | os.PathLike, dataset: Any) -> Path:
    """Write a `MapDataset` in gammapy's FITS format atomically."""
    return atomic_write(path, lambda tmp: dataset.write(tmp, overwrite=True))


def write_models(path: str | os.PathLike, models: Any) -> Path:
    """Write `Models` as gammapy YAML plus its ``<stem>_covariance.dat``, each file atomically.

    The covariance file is moved into place first, so the YAML never names a missing file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        models.write(tmp_dir / path.name, overwrite=True)
        written = sorted(tmp_dir.iterdir(), key=lambda p: p.name == path.name)  # the YAML last
        for tmp in written:
            os.replace(tmp, path.parent / tmp.name)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return path


def write_flux_points(path: str | os.PathLike, flux_points: Any, sed_type: str = "dnde") -> Path:
    """Write `FluxPoints` in gammapy's ECSV format atomically."""
    return atomic_write(path, lambda tmp: flux_points.write(tmp, sed_type=sed_type, overwrite=True))
