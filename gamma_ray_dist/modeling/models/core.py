"""Model base class: parameters built from a per-class default specification, YAML dict I/O, registry.

Each model instance owns its `Parameter` objects (no class-level descriptors shared between
instances), so two copies of a model never alias state and both pickle independently.
"""
from __future__ import annotations

import copy
import logging
from typing import Any, ClassVar

import numpy as np
from astropy import units as u

from ..parameter import Parameter, Parameters

__all__ = ["ModelBase", "MODEL_REGISTRY", "register_model"]

log = logging.getLogger(__name__)

# tag -> class, filled by `register_model`; tags are gammapy's (long and short name).
MODEL_REGISTRY: dict[str, dict[str, type]] = {"spectral": {}, "spatial": {}, "sky": {}}

_OPTIONAL_KEYS = ("min", "max", "error", "interp", "scale_method", "scale_transform")


def register_model(kind: str):
    """Class decorator adding the class under each of its tags."""

    def deco(cls):
        for tag in cls.tag:
            MODEL_REGISTRY[kind][tag] = cls
        return cls

    return deco


def get_model_class(kind: str, tag: str) -> type:
    try:
        return MODEL_REGISTRY[kind][tag]
    except KeyError:
        known = sorted({c.__name__ for c in MODEL_REGISTRY[kind].values()})
        raise ValueError(f"Unknown {kind} model type {tag!r}; supported: {known}") from None


class ModelBase:
    """Base of spectral and spatial models.

    Subclasses define ``tag`` (list of YAML type names) and ``_defaults``: a list of
    ``(name, value, options)`` where ``value`` may carry a unit and ``options`` are `Parameter`
    keyword arguments (frozen, min, max, interp, ...).
    """

    tag: ClassVar[list[str]] = []
    type: ClassVar[str | None] = None
    _defaults: ClassVar[list[tuple[str, Any, dict]]] = []

    def __init__(self, **kwargs):
        names = [d[0] for d in self._defaults]
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise NameError(f"Unknown parameter(s) {unknown} for {type(self).__name__}; expected {names}")
        self._parameter_names = names
        for par in self.default_parameters():
            value = kwargs.get(par.name)
            if isinstance(value, Parameter):
                par = value
            elif value is not None:
                par.quantity = u.Quantity(value)
            par._type = self.type
            setattr(self, par.name, par)

    @classmethod
    def default_parameters(cls) -> Parameters:
        """Fresh `Parameters` with the class defaults."""
        pars = []
        for name, value, opts in cls._defaults:
            pars.append(Parameter(name, value, **opts))
        return Parameters(pars)

    @classmethod
    def from_parameters(cls, parameters: Parameters, **kwargs) -> "ModelBase":
        kw = {p.name: p for p in parameters}
        kw.update(kwargs)
        return cls(**kw)

    @property
    def parameters(self) -> Parameters:
        """Parameters of this model (the objects themselves, not copies)."""
        return Parameters([getattr(self, name) for name in self._parameter_names])

    @property
    def parameters_unique_names(self) -> list[str]:
        return self.parameters.unique_parameters.names

    def cache_key(self) -> tuple:
        """Everything an evaluation of this model depends on, for caches keyed on values.

        The object identity is part of the key, so replacing a model by another one (even with equal
        values) invalidates; models that wrap other models extend the key with the wrapped model's.
        """
        # the unit object itself (immutable; tuple comparison tries identity first) instead of its string
        return (id(self), getattr(self, "frame", None),
                tuple((p._value, p._unit) for p in [getattr(self, n) for n in self._parameter_names]))

    def parameter_values(self) -> dict[str, float]:
        """``{name: value}`` in each parameter's own unit (hot-path helper)."""
        return {name: getattr(self, name).value for name in self._parameter_names}

    def copy(self) -> "ModelBase":
        """Deep copy (new parameter objects)."""
        return copy.deepcopy(self)

    @property
    def frozen(self) -> bool:
        return all(p.frozen for p in self.parameters)

    def freeze(self) -> None:
        for p in self.parameters:
            p.frozen = True

    def unfreeze(self) -> None:
        defaults = {p.name: p.frozen for p in self.default_parameters()}
        for p in self.parameters:
            p.frozen = defaults[p.name]

    # --- YAML dict I/O (gammapy layout) ----------------------------------------------------
    def to_dict(self, full_output: bool = False) -> dict:
        params = self.parameters.to_dict()
        if not full_output:
            for par, default in zip(params, self.default_parameters()):
                init = default.to_dict()
                for key in _OPTIONAL_KEYS:
                    a, b = par[key], init[key]
                    if a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)):
                        del par[key]
                if par["frozen"] == init["frozen"]:
                    del par["frozen"]
                if init["unit"] == "":
                    del par["unit"]
        data = {"type": self.tag[0], "parameters": params}
        return {self.type: data} if self.type else data

    @classmethod
    def from_dict(cls, data: dict, **kwargs) -> "ModelBase":
        if cls.type in data:
            data = data[cls.type]
        if data["type"] not in cls.tag:
            raise ValueError(f"Invalid model type {data['type']!r} for class {cls.__name__}")
        return cls.from_parameters(_parameters_from_dict(data.get("parameters", []), cls), **kwargs)

    def __str__(self) -> str:
        return f"{type(self).__name__}\n\n{self.parameters.to_table()}"

    def __repr__(self) -> str:
        pars = ", ".join(f"{p.name}={p.value:g}" for p in self.parameters)
        return f"{type(self).__name__}({pars})"


def _parameters_from_dict(data: list[dict], cls: type) -> Parameters:
    """Class defaults updated by the YAML entries (missing ones keep their default, with a warning)."""
    by_name = {d["name"]: d for d in data}
    pars = []
    for default in cls.default_parameters():
        item = default.to_dict()
        if default.name in by_name:
            item.update(by_name[default.name])
            if "unit" not in by_name[default.name]:
                item["unit"] = default.unit.to_string("fits")
        else:
            log.warning(f"Parameter {default.name!r} not defined in YAML; using default {default.quantity}")
        pars.append(item)
    unknown = set(by_name) - {p.name for p in cls.default_parameters()}
    if unknown:
        raise ValueError(f"Unknown parameter(s) {sorted(unknown)} for model type {cls.__name__}")
    return Parameters.from_dict(pars)
