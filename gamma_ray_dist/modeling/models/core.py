"""Model base class: parameters built from a per-class default specification, YAML dict I/O, registry.

Each model instance owns its `Parameter` objects (no class-level descriptors shared between
instances), so two copies of a model never alias state and both pickle independently.
"""
from __future__ import annotations

import copy
import difflib
import logging
from typing import Any, ClassVar

import numpy as np
from astropy import units as u

from ...errors import ModelsFileError
from ..parameter import Parameter, Parameters

__all__ = ["ModelBase", "MODEL_REGISTRY", "register_model", "component_from_dict", "keyed_error", "READ_ERRORS"]

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


#: What a model reader raises for bad content; turned into a `ModelsFileError` naming the key.
READ_ERRORS = (ValueError, KeyError, TypeError, NameError, NotImplementedError)


def keyed_error(prefix: str, exc: BaseException) -> ModelsFileError:
    """``exc`` as a `ModelsFileError` whose key path starts with ``prefix`` (``spectral``, ``components[0]``)."""
    if isinstance(exc, ModelsFileError):
        return ModelsFileError(f"{prefix}.{exc.key}" if exc.key else prefix, exc.reason, exc.filename)
    if isinstance(exc, KeyError):
        return ModelsFileError(f"{prefix}.{exc.args[0]}", "missing required key")
    return ModelsFileError(prefix, " ".join(str(exc).split()))


def component_from_dict(kind: str, data: dict) -> "ModelBase":
    """The ``kind`` ("spectral" / "spatial") model of a sky-model dict; errors name ``kind.<key>``."""
    part = data[kind]
    try:
        if not isinstance(part, dict):
            raise ModelsFileError("", f"expected a mapping with 'type' and 'parameters', got {part!r}")
        if "type" not in part:
            raise ModelsFileError("type", "missing required key")
        try:
            cls = get_model_class(kind, part["type"])
        except ValueError as exc:
            raise ModelsFileError("type", str(exc)) from None
        return cls.from_dict({kind: part})
    except READ_ERRORS as exc:
        raise keyed_error(kind, exc) from None


def _parameters_from_dict(data: list[dict], cls: type) -> Parameters:
    """Class defaults updated by the YAML entries (missing ones keep their default, with a warning).

    An entry without a value keeps the default value, as in gammapy (e.g. ``{name: index, frozen:
    true}``). Errors are `ModelsFileError` keyed ``parameters[j]`` (the entry's position).
    """
    if not isinstance(data, list):
        raise ModelsFileError("parameters", f"expected a list of parameters, got {data!r}")
    defaults = cls.default_parameters()
    names = [p.name for p in defaults]
    by_name = {}
    for j, entry in enumerate(data):
        if not isinstance(entry, dict) or "name" not in entry:
            raise ModelsFileError(f"parameters[{j}]", f"expected a mapping with a 'name', got {entry!r}")
        if entry["name"] not in names:
            close = difflib.get_close_matches(str(entry["name"]), names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ModelsFileError(f"parameters[{j}].name", f"unknown parameter {entry['name']!r} for model type "
                                                            f"{cls.__name__}; {hint}(expected one of {names})")
        by_name[entry["name"]] = (j, entry)
    pars = []
    for default in defaults:
        item = default.to_dict()
        if default.name in by_name:
            j, entry = by_name[default.name]
            item.update({k: v for k, v in entry.items() if not (k == "value" and v is None)})
            if "unit" not in entry:
                item["unit"] = default.unit.to_string("fits")
            if entry.get("value") is None:
                log.warning(f"Parameter {default.name!r} of {cls.__name__} has no value in YAML; "
                            f"using default {default.quantity}")
        else:
            j = None
            log.warning(f"Parameter {default.name!r} not defined in YAML; using default {default.quantity}")
        try:
            pars.extend(Parameters.from_dict([item]))
        except (ValueError, TypeError) as exc:
            key = f"parameters[{j}]" if j is not None else "parameters"
            reason = " ".join(str(exc).split()).split(" If this is meant")[0]  # not astropy's advice
            raise ModelsFileError(key, f"parameter {default.name!r}: {reason}") from None
    return Parameters(pars)
