"""Dataset base class and the `Datasets` list that `Fit` works on: the interface between the fit and
the data.

They live in the modeling layer, below the concrete datasets (`gamma_ray_dist.datasets.MapDataset`
subclasses `Dataset`; ``gamma_ray_dist.datasets`` exports both names, as gammapy), so that `Fit` can use
them without importing the datasets package. A dataset only has to provide ``stat_sum()`` (a float, -2 log L up to a constant) for the current values
of the parameters of its ``models``; `Fit` never looks inside, except through the optional hooks
``fit_precheck()`` and ``model_coverage()`` (checks before MIGRAD; the base implementations check nothing). Concrete datasets (MapDataset, test
datasets) subclass `Dataset`.

Files: `Datasets.write` / `Datasets.read` use gammapy's layout, readable both ways: an index YAML
(``datasets: [{name, type, filename}]``, filenames relative to the index, an MD5 ``checksum`` line as
gammapy's) and one FITS file per dataset. Reading finds the class of each ``type`` in
`DATASET_REGISTRY`, which concrete dataset classes join when they are defined (``tag`` in their own
body); this module never imports them (they import it), so the import graph stays acyclic.
"""
from __future__ import annotations

import abc
import copy
import hashlib
import os
from collections.abc import MutableSequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DatasetFileError
from .models.collection import Models
from .parameter import Parameters

__all__ = ["Dataset", "Datasets", "DATASET_REGISTRY", "write_datasets_index", "read_datasets_index"]

#: Dataset classes by ``tag`` (the ``type`` of an index entry); filled as the classes are defined.
DATASET_REGISTRY: dict[str, type] = {}

_YAML_FORMAT = dict(sort_keys=False, indent=4, width=80, default_flow_style=False)


def _yaml_md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def write_datasets_index(filename: str | os.PathLike, entries: Sequence[dict], overwrite: bool = False,
                         checksum: bool = True) -> Path:
    """Write a datasets index YAML as gammapy's ``Datasets.write`` does.

    Parameters
    ----------
    filename : path
        The index file.
    entries : sequence of dict
        ``{"name", "type", "filename"}`` per dataset (filenames relative to the index's directory).
    overwrite : bool
        Replace an existing index.
    checksum : bool
        Append gammapy's ``checksum`` line (MD5 of the YAML above it), which its reader verifies.
    """
    import yaml

    from .. import __version__

    path = Path(filename).expanduser()
    if path.exists() and not overwrite:
        raise DatasetFileError("file exists already (overwrite=False)", str(path))
    data = {"datasets": [{"name": str(e["name"]), "type": str(e["type"]), "filename": str(e["filename"])}
                         for e in entries],
            "metadata": {"creator": f"gamma_ray_dist {__version__}",
                         "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
                         "origin": None}}
    text = yaml.safe_dump(data, **_YAML_FORMAT)
    if checksum:
        text += yaml.safe_dump({"checksum": _yaml_md5(text)}, **_YAML_FORMAT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def read_datasets_index(filename: str | os.PathLike, checksum: bool = False, check_files: bool = True) -> list[dict]:
    """The entries of a datasets index, each ``filename`` resolved as gammapy resolves it.

    A filename is taken relative to the index's directory when the file is there, else as written
    (absolute, or relative to the working directory). With ``check_files=False`` nothing but the
    index is opened: a relative filename is taken relative to the index's directory, and a missing
    file is left to whoever opens it (the sharded fit checks its files in one pass first).

    Raises
    ------
    DatasetFileError
        The index cannot be read or is not a datasets index; an entry's file does not exist (the
        error names that file and the index).
    """
    import warnings

    import yaml

    path = Path(os.path.expandvars(str(filename))).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetFileError(f"cannot read the datasets index: {exc}", str(path)) from None
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), list):
        raise DatasetFileError("not a datasets index (no 'datasets' list)", str(path))
    stored = data.pop("checksum", None)
    if checksum and stored is not None and _yaml_md5(yaml.dump(data, **_YAML_FORMAT)) != stored:
        warnings.warn(f"{path}: checksum verification failed", UserWarning, stacklevel=2)
    entries = []
    for i, entry in enumerate(data["datasets"]):
        missing = [k for k in ("name", "type", "filename") if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise DatasetFileError(f"entry {i} of the datasets index lacks {', '.join(missing)}", str(path))
        given = Path(os.path.expandvars(str(entry["filename"])))
        resolved = path.parent / given
        if not check_files:
            entries.append({**entry, "filename": str(resolved)})
            continue
        if not resolved.exists():
            resolved = given
        if not resolved.exists():
            raise DatasetFileError(f"dataset file of {entry['name']!r} (listed in {path}) does not exist",
                                   str(path.parent / given))
        entries.append({**entry, "filename": str(resolved)})
    return entries


class Dataset(abc.ABC):
    """Abstract dataset: a name, models and a fit statistic.

    Subclasses implement `stat_sum`; they may override the ``models`` setter to select the models that
    apply to them (e.g. by ``datasets_names``).
    """

    tag = "Dataset"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # a class naming its own type and able to read it: what a datasets index entry of that type
        # is read with (stand-ins that share a tag, e.g. the sharded fit's, cannot read and stay out)
        if "tag" in cls.__dict__ and callable(getattr(cls, "read", None)):
            DATASET_REGISTRY[cls.tag] = cls

    def __init__(self, name: str, models: Any = None):
        self._name = str(name)
        self._models = None
        if models is not None:
            self.models = models

    @property
    def name(self) -> str:
        return self._name

    @property
    def models(self) -> Models | None:
        """Models used by this dataset (shared objects: a fit updates them in place)."""
        return self._models

    @models.setter
    def models(self, models: Any) -> None:
        if models is None:
            self._models = None
            return
        models = Models(models)
        keep = [m for m in models if m.datasets_names is None or self.name in m.datasets_names]
        self._models = Models(keep)

    @abc.abstractmethod
    def stat_sum(self) -> float:
        """Total fit statistic for the current model parameters."""

    def fit_precheck(self) -> list[str]:
        """Problems that make a fit of this dataset meaningless (e.g. an empty fit mask, no counts).

        Optional hook used by `Fit` before MIGRAD: each string is a complete reason naming the dataset.
        The base implementation checks nothing (datasets that do not override it are not prechecked).
        """
        return []

    def model_coverage(self) -> dict[str, float] | None:
        """How much each sky model of this dataset *can* predict inside the fit mask, by model name.

        Optional hook used by `Fit`: the value must not depend on the spectral parameters (0 means the
        model predicts no counts in the fit mask whatever its amplitude, e.g. a source outside the map).
        None (the base implementation) or a missing name means "unknown": the model is not flagged.
        """
        return None

    def to_dict(self) -> dict[str, str]:
        """Index entry, as gammapy: ``{"name", "type", "filename": "<name>.fits"}`` (spaces -> ``_``)."""
        return {"name": self.name, "type": self.tag, "filename": f"{self.name.replace(' ', '_')}.fits"}

    @classmethod
    def from_dict(cls, data: dict, lazy: bool = False, cache: bool = True) -> "Dataset":
        """Read the dataset of an index entry (``read(filename, name=...)`` of the class)."""
        return cls.read(data["filename"], name=data["name"])

    def copy(self, name: str | None = None) -> "Dataset":
        """Deep copy (models included), optionally renamed."""
        new = copy.deepcopy(self)
        if name is not None:
            new._name = str(name)
        return new

    def __str__(self) -> str:
        n_models = 0 if self.models is None else len(self.models)
        return f"{type(self).__name__}\n\n  Name : {self.name}\n  Number of models : {n_models}\n"


class Datasets(MutableSequence):
    """List of datasets with unique names; joint ``models``, ``parameters`` and ``stat_sum``.

    Parameters
    ----------
    datasets : `Dataset` or iterable of `Dataset`
    """

    def __init__(self, datasets: Any = None):
        if datasets is None:
            datasets = []
        elif isinstance(datasets, Dataset):
            datasets = [datasets]
        self._datasets: list[Dataset] = []
        self._covariance: tuple[Parameters, np.ndarray] | None = None
        for d in datasets:
            self.append(d)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._datasets[self.index(key)]
        if isinstance(key, slice):
            return type(self)(self._datasets[key])
        return self._datasets[key]

    def __setitem__(self, key, dataset) -> None:
        idx = self.index(key) if isinstance(key, str) else key
        self._datasets[idx] = dataset

    def __delitem__(self, key) -> None:
        idx = self.index(key) if isinstance(key, str) else key
        del self._datasets[idx]

    def __len__(self) -> int:
        return len(self._datasets)

    def insert(self, idx: int, dataset: Dataset) -> None:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"Datasets holds Dataset objects, got {type(dataset).__name__}")
        if dataset.name in self.names:
            raise ValueError(f"Dataset names must be unique; {dataset.name!r} is duplicated")
        self._datasets.insert(idx, dataset)

    def index(self, key) -> int:
        if isinstance(key, str):
            for i, d in enumerate(self._datasets):
                if d.name == key:
                    return i
            raise IndexError(f"No dataset named {key!r}; names are {self.names}")
        return self._datasets.index(key)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self._datasets]

    @property
    def models(self) -> Models:
        """Unique models of all datasets (by object identity, first-seen order), with the joint covariance."""
        seen: dict[int, Any] = {}
        for d in self._datasets:
            if d.models is not None:
                for m in d.models:
                    seen.setdefault(id(m), m)
        models = Models(list(seen.values()))
        if self._covariance is not None and self._covariance[0] == models.parameters:
            models._covariance = self._covariance[1]
        return models

    @models.setter
    def models(self, models: Any) -> None:
        for d in self._datasets:
            d.models = models

    @property
    def parameters(self) -> Parameters:
        """Unique parameter objects of all models (what `Fit` optimises)."""
        return self.models.parameters.unique_parameters

    def stat_sum(self) -> float:
        """Sum of the datasets' ``stat_sum``."""
        total = 0.0
        for d in self._datasets:
            total += d.stat_sum()
        return total

    def select_time(self, time_min: Any, time_max: Any, atol: Any = "1e-6 s") -> "Datasets":
        """Datasets whose GTIs lie entirely in ``[time_min, time_max]`` (gammapy's rule), in list order.

        Parameters
        ----------
        time_min, time_max : `~astropy.time.Time`
            Interval bounds.
        atol : `~astropy.units.Quantity` or str
            Tolerance of the comparison (default 1e-6 s). A dataset without GTI is never selected.
        """
        from astropy import units as u

        atol = u.Quantity(atol)
        selected = []
        for d in self._datasets:
            gti = getattr(d, "gti", None)
            if gti is None or len(gti) == 0:
                continue
            if gti.time_start[0] >= time_min - atol and gti.time_stop[-1] <= time_max + atol:
                selected.append(d)
        return type(self)(selected)

    def copy(self) -> "Datasets":
        """Deep copy: models shared between datasets stay shared within the copy."""
        return copy.deepcopy(self)

    @property
    def is_all_same_type(self) -> bool:
        """Whether all datasets are of the same class."""
        return len(set(type(d) for d in self._datasets)) <= 1

    # -- stacking and summaries ------------------------------------------------------------------
    def stack_reduce(self, name: str | None = None, nan_to_num: bool = True) -> Dataset:
        """One dataset stacking all of them, as gammapy: the first's ``to_masked(name)`` (its geometry),
        then ``stack`` of each other in order.

        To stack onto a larger geometry (e.g. per-observation cutouts back into the analysis
        geometry), put an empty dataset of that geometry first.
        """
        if not self._datasets:
            raise ValueError("Stacking impossible: no dataset")
        if not self.is_all_same_type:
            raise ValueError("Stacking impossible: all Datasets contained are not of a unique type.")
        stacked = self[0].to_masked(name=name, nan_to_num=nan_to_num)
        for dataset in self._datasets[1:]:
            stacked.stack(dataset, nan_to_num=nan_to_num)
        return stacked

    def info_table(self, cumulative: bool = False):
        """`~astropy.table.Table` of the datasets' ``info_dict()`` (gammapy's columns).

        ``cumulative=True``: row ``i`` describes the stack of datasets ``0..i`` (named "stacked"),
        without their models.
        """
        from astropy.table import Table

        if not self.is_all_same_type:
            raise ValueError("Info table not supported for mixed dataset type.")
        rows = []
        if cumulative:
            stacked = self[0].to_masked(name="stacked")
            rows.append(stacked.info_dict())
            for dataset in self._datasets[1:]:
                stacked.stack(dataset)
                rows.append(stacked.info_dict())
        else:
            rows = [d.info_dict() for d in self._datasets]
        return Table(rows)

    # -- files ---------------------------------------------------------------------------------
    def write(self, filename: str | os.PathLike, filename_models: str | os.PathLike | None = None,
              overwrite: bool = False, write_covariance: bool = True, checksum: bool = True) -> None:
        """Write the index YAML ``filename`` and one FITS file per dataset beside it, as gammapy
        (``<name>.fits``; ``filename_models``: the models YAML too)."""
        path = Path(os.path.expandvars(str(filename))).expanduser()
        if path.exists() and not overwrite:
            raise DatasetFileError("file exists already (overwrite=False)", str(path))
        entries = []
        for dataset in self._datasets:
            entry = dataset.to_dict()
            dataset.write(path.parent / entry["filename"], overwrite=overwrite, checksum=checksum)
            entries.append(entry)
        write_datasets_index(path, entries, overwrite=overwrite, checksum=checksum)
        if filename_models:
            self.models.write(filename_models, overwrite=overwrite, write_covariance=write_covariance)

    @classmethod
    def read(cls, filename: str | os.PathLike, filename_models: str | os.PathLike | None = None,
             lazy: bool = True, cache: bool = True, checksum: bool = True) -> "Datasets":
        """Read an index YAML written by gammapy or by `write` (and the models YAML when given).

        Every dataset is read when this is called (``lazy`` and ``cache`` are accepted for gammapy's
        signature). A ``type`` must be a registered class (`DATASET_REGISTRY`: importing
        ``gamma_ray_dist.datasets`` registers ``MapDataset``).

        Raises
        ------
        DatasetFileError
            The index cannot be read, a file it names is missing (named in the message), a type is unknown.
        """
        path = Path(os.path.expandvars(str(filename))).expanduser()
        datasets = []
        for entry in read_datasets_index(path, checksum=checksum):
            dataset_cls = DATASET_REGISTRY.get(entry["type"])
            if dataset_cls is None:
                raise DatasetFileError(f"unknown dataset type {entry['type']!r} of {entry['name']!r} "
                                       f"(known: {sorted(DATASET_REGISTRY)})", str(path))
            try:
                datasets.append(dataset_cls.from_dict(entry, lazy=lazy, cache=cache))
            except (OSError, ValueError, KeyError) as exc:
                raise DatasetFileError(f"cannot read dataset {entry['name']!r}: {exc}", entry["filename"]) from None
        out = cls(datasets)
        if filename_models:
            out.models = Models.read(filename_models)
        return out

    def __str__(self) -> str:
        s = "Datasets\n--------\n\n"
        for idx, d in enumerate(self._datasets):
            s += f"Dataset {idx}: \n\n  Type : {type(d).__name__}\n  Name : {d.name}\n\n"
        return s
