"""Dataset base class and the `Datasets` list that `Fit` works on: the interface between the fit and
the data.

They live in the modeling layer, below the concrete datasets (`gamma_ray_dist.datasets.MapDataset`
subclasses `Dataset`; ``gamma_ray_dist.datasets`` exports both names, as gammapy), so that `Fit` can use
them without importing the datasets package. A dataset only has to provide ``stat_sum()`` (a float, -2 log L up to a constant) for the current values
of the parameters of its ``models``; `Fit` never looks inside, except through the optional hooks
``fit_precheck()`` and ``model_coverage()`` (checks before MIGRAD; the base implementations check nothing). Concrete datasets (MapDataset, test
datasets) subclass `Dataset`.
"""
from __future__ import annotations

import abc
import copy
from collections.abc import MutableSequence
from typing import Any, Iterable

import numpy as np

from .models.collection import Models
from .parameter import Parameters

__all__ = ["Dataset", "Datasets"]


class Dataset(abc.ABC):
    """Abstract dataset: a name, models and a fit statistic.

    Subclasses implement `stat_sum`; they may override the ``models`` setter to select the models that
    apply to them (e.g. by ``datasets_names``).
    """

    tag = "Dataset"

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

    def __str__(self) -> str:
        s = "Datasets\n--------\n\n"
        for idx, d in enumerate(self._datasets):
            s += f"Dataset {idx}: \n\n  Type : {type(d).__name__}\n  Name : {d.name}\n\n"
        return s
