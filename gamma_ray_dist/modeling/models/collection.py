"""`Models`: an ordered list of sky/background models, their joint parameters and covariance, YAML I/O.

The YAML layout is gammapy's (``components:`` list, optional ``covariance:`` file written beside the
YAML as an ``ascii.fixed_width`` table), so files round-trip between the two libraries.
"""
from __future__ import annotations

import copy
import datetime
import logging
from collections.abc import MutableSequence
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import yaml
from astropy.table import Table

from ...errors import ModelsFileError, yaml_error_reason
from ..parameter import Parameters
from .core import READ_ERRORS, keyed_error
from .sky import FoVBackgroundModel, SkyModel, subcovariance

__all__ = ["Models", "DatasetModels"]

log = logging.getLogger(__name__)

_COMPONENT_TYPES = {tag: cls for cls in (SkyModel, FoVBackgroundModel) for tag in cls.tag}


def _creator() -> str:
    from ... import __version__

    return f"gamma_ray_dist {__version__}"


class Models(MutableSequence):
    """List of models with unique names.

    Parameters
    ----------
    models : model or iterable of models
    covariance_data : ndarray, optional
        Joint covariance over ``parameters``.
    """

    def __init__(self, models: Any = None, covariance_data: Any = None):
        if models is None:
            models = []
        elif isinstance(models, Models):
            cov = models._covariance
            models = list(models)
            if covariance_data is None:
                covariance_data = cov
        elif not isinstance(models, (list, tuple)):
            models = [models]
        self._models: list = []
        seen: set[str] = set()
        for m in models:  # the checks of `insert`, with one set of names (linear in the number of models)
            self._check_type(m)
            if m.name in seen:
                raise ValueError(f"Model names must be unique; {m.name!r} is duplicated")
            seen.add(m.name)
            self._models.append(m)
        self._covariance = None
        self._covar_file: str | None = None
        if covariance_data is not None and len(covariance_data) == len(self.parameters):
            self.covariance = covariance_data

    # --- list protocol ----------------------------------------------------------------------
    def _check_name(self, model, skip: int | None = None) -> None:
        for i, m in enumerate(self._models):
            if i != skip and m.name == model.name:
                raise ValueError(f"Model names must be unique; {model.name!r} is duplicated")

    def __getitem__(self, key):
        if isinstance(key, str):
            return self._models[self.index(key)]
        if isinstance(key, slice):
            return type(self)(self._models[key])
        return self._models[key]

    def __setitem__(self, key, model) -> None:
        idx = self.index(key) if isinstance(key, str) else key
        self._check_name(model, skip=idx)
        self._models[idx] = model

    def __delitem__(self, key) -> None:
        idx = self.index(key) if isinstance(key, str) else key
        del self._models[idx]

    def __len__(self) -> int:
        return len(self._models)

    @staticmethod
    def _check_type(model) -> None:
        if not isinstance(model, (SkyModel, FoVBackgroundModel)):
            raise TypeError(f"Models holds SkyModel/FoVBackgroundModel objects, got {type(model).__name__}")

    def insert(self, idx: int, model) -> None:
        self._check_type(model)
        self._check_name(model)
        self._models.insert(idx, model)

    def index(self, key) -> int:
        if isinstance(key, str):
            for i, m in enumerate(self._models):
                if m.name == key:
                    return i
            raise IndexError(f"No model named {key!r}; names are {self.names}")
        return self._models.index(key)

    def __add__(self, other: Iterable) -> "Models":
        return type(self)(list(self) + list(other))

    @property
    def names(self) -> list[str]:
        return [m.name for m in self._models]

    # --- parameters ---------------------------------------------------------------------------
    @property
    def parameters(self) -> Parameters:
        """All parameters of all models (shared objects appear once per model that holds them)."""
        return Parameters.from_stack([m.parameters for m in self._models])

    @property
    def parameters_unique_names(self) -> list[str]:
        """``<model>.<spectral|spatial>.<name>`` for every entry of ``parameters``."""
        return [f"{m.name}.{n}" for m in self._models for n in m.parameters_unique_names]

    def parameter_by_unique_name(self, name: str):
        """Parameter object from ``crab.spectral.index``, or from a plain name if it is unambiguous."""
        pars = self.parameters
        names = self.parameters_unique_names
        if name in names:
            return pars[names.index(name)]
        matches = {id(p): p for p, full in zip(pars, names) if full.split(".")[-1] == name or full.endswith("." + name)}
        if len(matches) == 1:
            return next(iter(matches.values()))
        if not matches:
            raise KeyError(f"No parameter {name!r}; known: {names}")
        raise KeyError(f"Parameter name {name!r} is ambiguous; use one of {[n for n in names if n.endswith(name)]}")

    @property
    def covariance(self) -> np.ndarray:
        """Joint covariance over ``parameters`` (model blocks refreshed from each model)."""
        pars = self.parameters
        n = len(pars)
        cov = self._covariance.copy() if self._covariance is not None and self._covariance.shape == (n, n) else np.zeros((n, n))
        start = 0
        for m in self._models:
            k = len(m.parameters)
            cov[start:start + k, start:start + k] = m.covariance
            start += k
        return cov

    @covariance.setter
    def covariance(self, matrix: Any) -> None:
        matrix = np.array(matrix, dtype=float)
        pars = self.parameters
        if matrix.shape != (len(pars), len(pars)):
            raise ValueError(f"Covariance must have shape {(len(pars),) * 2}, got {matrix.shape}")
        self._covariance = matrix
        for m in self._models:
            m.covariance = subcovariance(matrix, pars, m.parameters)

    def copy(self) -> "Models":
        """Deep copy (parameter sharing between models is preserved inside the copy)."""
        return copy.deepcopy(self)

    def select(self, names: Iterable[str] | None = None, datasets_names: str | None = None) -> "Models":
        out = []
        for m in self._models:
            if names is not None and m.name not in names:
                continue
            if datasets_names is not None and m.datasets_names is not None and datasets_names not in m.datasets_names:
                continue
            out.append(m)
        return type(self)(out)

    def to_parameters_table(self) -> Table:
        """Parameters table with a leading ``model`` column (columns as gammapy's)."""
        table = self.parameters.to_table()
        table.add_column([n.split(".")[0] for n in self.parameters_unique_names], name="model", index=0)
        return table

    # --- YAML -----------------------------------------------------------------------------------
    def to_dict(self, full_output: bool = False) -> dict:
        self.parameters.update_link_label()
        data: dict[str, Any] = {"components": [m.to_dict(full_output) for m in self._models]}
        if self._covar_file is not None:
            data["covariance"] = str(self._covar_file)
        return data

    def to_yaml(self, full_output: bool = False) -> str:
        data = self.to_dict(full_output)
        data["metadata"] = {
            "creator": _creator(),
            "date": datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None).isoformat(),
            "origin": None,
        }
        return yaml.safe_dump(data, sort_keys=False, indent=4, width=80, default_flow_style=False)

    def write(self, path: str | Path, overwrite: bool = False, full_output: bool = False,
              write_covariance: bool = True) -> None:
        """Write YAML (and ``<stem>_covariance.dat`` beside it, as gammapy does)."""
        path = Path(path).expanduser()
        if path.exists() and not overwrite:
            raise OSError(f"File exists already: {path}")
        if write_covariance and len(self.parameters) > 0:
            filecovar = path.stem + "_covariance.dat"
            self.write_covariance(path.parent / filecovar, overwrite=overwrite)
            self._covar_file = filecovar
        path.write_text(self.to_yaml(full_output))

    def write_covariance(self, filename: str | Path, overwrite: bool = False) -> None:
        names = self.parameters_unique_names
        cov = self.covariance
        table = Table()
        table["Parameters"] = names
        for idx in range(len(names)):
            table[str(idx)] = cov[idx]
        table.write(str(filename), format="ascii.fixed_width", delimiter="|", overwrite=overwrite)

    def read_covariance(self, path: str | Path, filename: str) -> None:
        t = Table.read(str(Path(path) / filename), format="ascii.fixed_width", delimiter="|")
        t.remove_column("Parameters")
        self.covariance = np.array([list(row) for row in t], dtype=float)
        self._covar_file = filename

    @classmethod
    def from_dict(cls, data: dict, path: str | Path = "") -> "Models":
        """Models from the gammapy YAML layout; a `ModelsFileError` (a `ValueError`) names the bad key,
        e.g. ``components[0].spectral.parameters[1]``."""
        if not isinstance(data, dict):
            raise ModelsFileError("<root>", f"expected a mapping with a 'components' list, got {data!r}"[:200])
        components = data.get("components", [])
        if not isinstance(components, list):
            raise ModelsFileError("components", f"expected a list of models, got {components!r}"[:200])
        models = []
        for i, comp in enumerate(components):
            key = f"components[{i}]"
            if not isinstance(comp, dict):
                raise ModelsFileError(key, f"expected a mapping with 'name' and 'type', got {comp!r}"[:200])
            ctype = comp.get("type")
            if ctype not in _COMPONENT_TYPES:
                raise ModelsFileError(
                    f"{key}.type",
                    f"Unsupported model component type {ctype!r} (name {comp.get('name')!r}); "
                    f"supported: {sorted(set(c.__name__ for c in _COMPONENT_TYPES.values()))}"
                )
            try:
                models.append(_COMPONENT_TYPES[ctype].from_dict(comp))
            except READ_ERRORS as exc:
                raise keyed_error(key, exc) from None
        try:
            out = cls(models)
        except ValueError as exc:
            raise ModelsFileError("components", str(exc)) from None
        _link_parameters(out)
        if "covariance" in data:
            path = Path(path)
            filename = data["covariance"]
            if not (path / filename).exists():
                path, filename = Path(filename).parent, Path(filename).name
            try:
                out.read_covariance(path, str(filename))
            except (ValueError, OSError) as exc:
                log.warning(f"Could not read covariance {filename!r} ({exc}); using parameter errors only")
        return out

    @classmethod
    def from_yaml(cls, yaml_str: str, path: str | Path = "") -> "Models":
        try:
            data = yaml.safe_load(yaml_str)
        except yaml.YAMLError as exc:
            raise ModelsFileError("<yaml>", yaml_error_reason(exc)) from None
        if isinstance(data, dict):
            data.pop("metadata", None)
        return cls.from_dict(data, path=path)

    @classmethod
    def read(cls, filename: str | Path) -> "Models":
        """Read a models YAML file; a `ModelsFileError` names the key and the file (OSError if unreadable)."""
        filename = Path(filename).expanduser()
        text = filename.read_text()
        try:
            return cls.from_yaml(text, path=filename.parent)
        except ModelsFileError as exc:
            raise exc.in_file(filename) from None

    def __str__(self) -> str:
        s = f"{type(self).__name__}\n\n"
        for idx, m in enumerate(self._models):
            s += f"Component {idx}: {m}\n"
        return s.expandtabs(tabsize=2)


def _link_parameters(models: Models) -> None:
    """Replace parameters carrying the same YAML ``link`` label by one shared object."""
    shared: dict[str, Any] = {}
    for m in models:
        for comp in m._components:
            for name in comp._parameter_names:
                par = getattr(comp, name)
                if par.link_label is None:
                    continue
                if par.link_label in shared:
                    setattr(comp, name, shared[par.link_label])
                else:
                    shared[par.link_label] = par


DatasetModels = Models
