"""Model parameters: `Parameter` (value = transform^-1(factor * scale)) and the `Parameters` list.

The optimiser sees ``factor``; users see ``value``. ``autoscale`` (called by `Fit.optimize`) sets
``scale`` to a power of ten so that ``|factor|`` is in [1, 10), the same rule as gammapy's
``scale_method="scale10"``, which keeps Minuit's numerical derivatives well conditioned.

Parameters are plain Python objects (floats, an astropy Unit, no references to models), so models and
parameter lists pickle cheaply and can be shipped to Ray workers.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from astropy import units as u
from astropy.table import Table

__all__ = ["Parameter", "Parameters", "interp_scale", "interp_scale_inverse"]

_TINY = np.finfo(np.float64).tiny


def interp_scale(values: Any, interp: str) -> np.ndarray:
    """Forward transform for scans and scaling: ``lin`` identity, ``log`` (clipped at tiny), ``sqrt``."""
    values = np.asarray(values, dtype=float)
    if interp == "lin":
        return values
    if interp == "log":
        return np.log(np.clip(values, _TINY, np.inf))
    if interp == "sqrt":
        return np.sqrt(values)
    raise ValueError(f"Invalid interp {interp!r}: expected 'lin', 'log' or 'sqrt'")


def interp_scale_inverse(values: Any, interp: str) -> np.ndarray:
    """Inverse of `interp_scale` (``log``: values that underflow to ~tiny are returned as 0)."""
    values = np.asarray(values, dtype=float)
    if interp == "lin":
        return values
    if interp == "log":
        out = np.exp(values)
        return np.where(np.abs(out) - _TINY <= _TINY, 0, out)
    if interp == "sqrt":
        return values**2
    raise ValueError(f"Invalid interp {interp!r}: expected 'lin', 'log' or 'sqrt'")


def _interp_inverse_derivative(values: float, interp: str) -> float:
    if interp == "lin":
        return 1.0
    if interp == "log":
        return float(np.exp(values))
    if interp == "sqrt":
        return float(2 * values)
    raise ValueError(f"Invalid interp {interp!r}")


def _to_float(value: Any, unit: u.UnitBase) -> float:
    if isinstance(value, (u.Quantity, str)):
        return float(u.Quantity(value).to_value(unit))
    if value is None or isinstance(value, np.ma.core.MaskedConstant):
        return np.nan
    return float(value)


class Parameter:
    """A model parameter.

    Parameters
    ----------
    name : str
        Parameter name.
    value : float, str or `~astropy.units.Quantity`
        Value; a Quantity (or a string such as ``"1 TeV"``) also sets the unit.
    unit : str or `~astropy.units.Unit`
        Unit, when ``value`` is a float.
    scale : float
        ``value = factor * scale`` (for ``scale_transform="lin"``).
    min, max : float
        Bounds (NaN = unbounded), in ``unit``.
    frozen : bool
        Excluded from fitting when True.
    error : float
        1 sigma error, in ``unit``.
    scan_min, scan_max, scan_n_values, scan_n_sigma, scan_values
        Specification of the values used by `Fit.stat_profile` (as in gammapy).
    scale_method : {"scale10", "factor1", None}
        How `autoscale` chooses ``scale``.
    interp : {"lin", "log", "sqrt"}
        Spacing of the default scan values.
    scale_transform : {"lin", "log", "sqrt"}
        Transform applied before scaling (the optimiser sees ``transform(value) / scale``).
    """

    def __init__(
        self,
        name: str,
        value: Any,
        unit: Any = "",
        scale: float = 1,
        min: Any = np.nan,
        max: Any = np.nan,
        frozen: bool = False,
        error: Any = 0,
        scan_min: float | None = None,
        scan_max: float | None = None,
        scan_n_values: int = 11,
        scan_n_sigma: int = 2,
        scan_values: Any = None,
        scale_method: str | None = "scale10",
        interp: str = "lin",
        scale_transform: str = "lin",
        prior: Any = None,
    ):
        if not isinstance(name, str):
            raise TypeError(f"Parameter name must be a str, got {type(name).__name__}")
        if prior not in (None, ""):
            raise NotImplementedError("Parameter priors are not supported")
        self._name = name
        self._scale_method = scale_method
        self._scale_transform = scale_transform
        self.interp = interp
        self._scale = float(scale)
        self.frozen = frozen
        self.link_label = None  # label of a parameter shared by several models (YAML "link")
        if isinstance(value, (u.Quantity, str)):
            q = u.Quantity(value)
            self._unit = q.unit
            self.value = q.value
        else:
            self._unit = u.Unit(unit)
            self.value = float(value)
        self.error = error
        self.min = min
        self.max = max
        self.scan_min = scan_min
        self.scan_max = scan_max
        self.scan_n_values = int(scan_n_values)
        self.scan_n_sigma = int(scan_n_sigma)
        self.scan_values = scan_values

    # --- basic attributes -------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Parameter name."""
        return self._name

    @property
    def unit(self) -> u.UnitBase:
        """Unit (`~astropy.units.Unit`)."""
        return self._unit

    @unit.setter
    def unit(self, val: Any) -> None:
        self._unit = u.Unit(val)

    @property
    def value(self) -> float:
        """Value in ``unit`` (float)."""
        return self._value

    @value.setter
    def value(self, val: Any) -> None:
        self._value = float(val)
        self._factor = self.transform(self._value)

    @property
    def quantity(self) -> u.Quantity:
        """Value times unit."""
        return self._value * self._unit

    @quantity.setter
    def quantity(self, val: Any) -> None:
        q = u.Quantity(val)
        if not q.unit.is_equivalent(self._unit) and self._unit != u.dimensionless_unscaled:
            raise u.UnitConversionError(f"Unit must be equivalent to {self._unit} for parameter {self.name}")
        self._unit = q.unit
        self.value = q.value

    @property
    def factor(self) -> float:
        """Value seen by the optimiser."""
        return self._factor

    @factor.setter
    def factor(self, val: float) -> None:
        self._factor = float(val)
        self._value = float(self.inverse_transform(self._factor))

    @property
    def scale(self) -> float:
        """Scale such that ``value = inverse_transform(factor * scale)``."""
        return self._scale

    @property
    def error(self) -> float:
        """1 sigma error in ``unit``."""
        return self._error

    @error.setter
    def error(self, val: Any) -> None:
        self._error = _to_float(val, self._unit)

    @property
    def min(self) -> float:
        """Lower bound (NaN if none)."""
        return self._min

    @min.setter
    def min(self, val: Any) -> None:
        self._min = _to_float(val, self._unit)

    @property
    def max(self) -> float:
        """Upper bound (NaN if none)."""
        return self._max

    @max.setter
    def max(self, val: Any) -> None:
        self._max = _to_float(val, self._unit)

    @property
    def frozen(self) -> bool:
        """Whether the parameter is excluded from fits."""
        return self._frozen

    @frozen.setter
    def frozen(self, val: Any) -> None:
        if val in ("True", "False"):
            val = val == "True"
        if not isinstance(val, (bool, np.bool_)):
            raise TypeError(f"frozen must be a bool, got {val!r}")
        self._frozen = bool(val)

    @property
    def scale_method(self) -> str | None:
        return self._scale_method

    @property
    def scale_transform(self) -> str:
        return self._scale_transform

    @property
    def factor_min(self) -> float:
        """Lower bound in factor space (NaN if none)."""
        return float(self.transform(self.min))

    @property
    def factor_max(self) -> float:
        """Upper bound in factor space (NaN if none)."""
        return float(self.transform(self.max))

    # --- scaling ----------------------------------------------------------------------------
    def transform(self, value: float, update_scale: bool = False) -> float:
        """Value -> factor; with ``update_scale`` first recompute ``scale`` (`autoscale`)."""
        transformed = float(interp_scale(value, self._scale_transform))
        if update_scale:
            self._update_scale(transformed)
        return transformed / self._scale

    def inverse_transform(self, factor: float) -> float:
        """Factor -> value."""
        return float(interp_scale_inverse(self._scale * factor, self._scale_transform))

    def inverse_transform_derivative(self, factor: float) -> float:
        """d value / d factor at ``factor`` (used to turn the factor covariance into values)."""
        return _interp_inverse_derivative(self._scale * factor, self._scale_transform) * self._scale

    def _update_scale(self, transformed: float) -> None:
        if self._scale_method == "scale10":
            if transformed != 0 and np.isfinite(transformed):
                self._scale = float(np.power(10.0, np.floor(np.log10(np.abs(transformed)))))
        elif self._scale_method == "factor1":
            self._scale = transformed

    def autoscale(self) -> None:
        """Choose ``scale`` by ``scale_method`` and update ``factor`` (value unchanged)."""
        self.factor = self.transform(self._value, update_scale=True)

    def reset_autoscale(self) -> None:
        """Set ``scale = 1``, ``factor = value``."""
        self._scale = 1.0
        self._factor = self._value

    # --- bounds and scans --------------------------------------------------------------------
    def is_within_limits(self) -> bool:
        """False if the value is outside ``[min, max]`` (NaN bounds are open)."""
        below = not np.isnan(self.min) and self.value < self.min
        above = not np.isnan(self.max) and self.value > self.max
        return not (below or above)

    @property
    def _step(self) -> float:
        return self.error if self.error > 0 else abs(self.value)

    @property
    def scan_min(self) -> float:
        """Lowest scan value (default value - scan_n_sigma * error)."""
        if self._scan_min is None:
            return self.value - self._step * self.scan_n_sigma
        return self._scan_min

    @scan_min.setter
    def scan_min(self, val: float | None) -> None:
        self._scan_min = val

    @property
    def scan_max(self) -> float:
        """Highest scan value (default value + scan_n_sigma * error)."""
        if self._scan_max is None:
            return self.value + self._step * self.scan_n_sigma
        return self._scan_max

    @scan_max.setter
    def scan_max(self, val: float | None) -> None:
        self._scan_max = val

    @property
    def scan_values(self) -> np.ndarray:
        """Values of a likelihood scan, spaced according to ``interp``."""
        if self._scan_values is None:
            lo, hi = interp_scale([self.scan_min, self.scan_max], self.interp)
            return interp_scale_inverse(np.linspace(lo, hi, self.scan_n_values), self.interp)
        return np.asarray(self._scan_values, dtype=float)

    @scan_values.setter
    def scan_values(self, values: Any) -> None:
        self._scan_values = values

    def conf_bounds(self) -> tuple[float, float]:
        """Search bracket for confidence intervals: the bounds when set, else a wide default."""
        step = self._step
        large = max(step, abs(self.value)) * 1e5
        lo = self.min if not np.isnan(self.min) else min(self.value - step * self.scan_n_sigma, -large)
        hi = self.max if not np.isnan(self.max) else max(self.value + step * self.scan_n_sigma, large)
        return lo, hi

    # --- I/O --------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Dictionary in gammapy's YAML parameter layout."""
        out = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit.to_string("fits"),
            "error": self.error,
            "min": self.min,
            "max": self.max,
            "frozen": self.frozen,
            "interp": self.interp,
            "scale_method": self.scale_method,
            "scale_transform": self.scale_transform,
        }
        if self.link_label is not None:
            out["link"] = self.link_label
        return out

    def copy(self) -> "Parameter":
        """Deep copy."""
        return copy.deepcopy(self)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, value={self.value!r}, factor={self.factor!r}, "
            f"scale={self.scale!r}, unit={self.unit!r}, min={self.min!r}, max={self.max!r}, "
            f"frozen={self.frozen!r}, error={self.error!r})"
        )


class Parameters(Sequence):
    """Ordered list of `Parameter` objects (the same object may appear more than once if shared).

    Parameters
    ----------
    parameters : iterable of `Parameter`
    """

    def __init__(self, parameters: Iterable[Parameter] | None = None):
        self._parameters = list(parameters) if parameters is not None else []

    @classmethod
    def from_stack(cls, parameters_list: Iterable[Iterable[Parameter]]) -> "Parameters":
        """Concatenate several parameter lists."""
        return cls(itertools.chain(*parameters_list))

    def __len__(self) -> int:
        return len(self._parameters)

    def __getitem__(self, key):
        if isinstance(key, np.ndarray) and key.dtype == bool:
            return type(self)([p for p, keep in zip(self._parameters, key) if keep])
        if isinstance(key, slice):
            return type(self)(self._parameters[key])
        return self._parameters[self.index(key)]

    def __add__(self, other: "Parameters") -> "Parameters":
        if not isinstance(other, Parameters):
            raise TypeError(f"Cannot add {type(other).__name__} to Parameters")
        return Parameters.from_stack([self, other])

    def __eq__(self, other) -> bool:
        return len(self) == len(other) and all(a is b for a, b in zip(self, other))

    def index(self, val) -> int:
        """Position of a parameter given as object, name or int (first match for a name)."""
        if isinstance(val, (int, np.integer)):
            return int(val)
        if isinstance(val, Parameter):
            for idx, par in enumerate(self._parameters):
                if par is val:
                    return idx
            raise IndexError(f"Parameter {val.name!r} is not in this list")
        if isinstance(val, str):
            for idx, par in enumerate(self._parameters):
                if par.name == val:
                    return idx
            raise IndexError(f"No parameter named {val!r}; names are {self.names}")
        raise TypeError(f"Invalid parameter key type: {type(val).__name__}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self._parameters]

    @property
    def value(self) -> np.ndarray:
        """Values as a float64 array."""
        return np.array([p.value for p in self._parameters], dtype=np.float64)

    @value.setter
    def value(self, values: Sequence[float]) -> None:
        if len(values) != len(self):
            raise ValueError(f"Expected {len(self)} values, got {len(values)}")
        for par, val in zip(self._parameters, values):
            par.value = val

    values = value  # alias used by the brief / readability

    @property
    def error(self) -> np.ndarray:
        return np.array([p.error for p in self._parameters], dtype=np.float64)

    @property
    def min(self) -> np.ndarray:
        return np.array([p.min for p in self._parameters], dtype=np.float64)

    @property
    def max(self) -> np.ndarray:
        return np.array([p.max for p in self._parameters], dtype=np.float64)

    @property
    def free_parameters(self) -> "Parameters":
        """Parameters that are not frozen."""
        return type(self)([p for p in self._parameters if not p.frozen])

    @property
    def unique_parameters(self) -> "Parameters":
        """Parameters with duplicate objects removed (first occurrence kept)."""
        seen: dict[int, Parameter] = {}
        for par in self._parameters:
            seen.setdefault(id(par), par)
        return type(self)(seen.values())

    @property
    def free_unique_parameters(self) -> "Parameters":
        return self.unique_parameters.free_parameters

    def copy(self) -> "Parameters":
        return copy.deepcopy(self)

    def autoscale(self) -> None:
        """Autoscale every parameter (see `Parameter.autoscale`)."""
        for par in self._parameters:
            par.autoscale()

    def set_parameter_factors(self, factors: Sequence[float]) -> None:
        """Set the factors of the free parameters, in order (the optimiser interface)."""
        idx = 0
        for par in self._parameters:
            if not par.frozen:
                par.factor = factors[idx]
                idx += 1

    def out_of_limits(self) -> list[Parameter]:
        """Free parameters whose value lies outside their bounds."""
        return [p for p in self._parameters if not p.frozen and not p.is_within_limits()]

    def freeze_all(self) -> None:
        for par in self._parameters:
            par.frozen = True

    def unfreeze_all(self) -> None:
        for par in self._parameters:
            par.frozen = False

    def select(self, name=None, frozen: bool | None = None) -> "Parameters":
        """Sub-list by name(s) and/or frozen status."""
        names = [name] if isinstance(name, str) else name
        out = []
        for par in self._parameters:
            if names and par.name not in names:
                continue
            if frozen is not None and par.frozen != frozen:
                continue
            out.append(par)
        return type(self)(out)

    def restore_status(self, restore_values: bool = True) -> "_RestoreStatus":
        """Context manager restoring values (and frozen flags) on exit."""
        return _RestoreStatus(self, restore_values)

    def to_dict(self) -> list[dict]:
        return [p.to_dict() for p in self._parameters]

    @classmethod
    def from_dict(cls, data: list[dict]) -> "Parameters":
        pars = []
        for item in data:
            item = dict(item)
            link = item.pop("link", None)
            item.pop("is_norm", None)
            par = Parameter(**item)
            par.link_label = link
            pars.append(par)
        return cls(pars)

    def update_link_label(self) -> None:
        """Give a ``name@label`` link label to parameter objects that appear more than once."""
        counts: dict[int, int] = {}
        for par in self._parameters:
            counts[id(par)] = counts.get(id(par), 0) + 1
        for par in self.unique_parameters:
            if counts[id(par)] > 1 and par.link_label is None:
                par.link_label = f"{par.name}@{id(par):x}"

    def to_table(self) -> Table:
        """Table with columns type, name, value, unit, error, min, max, frozen, link, prior."""
        self.update_link_label()
        rows = []
        for p in self._parameters:
            rows.append(
                (getattr(p, "_type", "") or "", p.name, p.value, p.unit.to_string("fits"), p.error, p.min,
                 p.max, p.frozen, p.link_label or "", "")
            )
        names = ["type", "name", "value", "unit", "error", "min", "max", "frozen", "link", "prior"]
        dtype = ["str", "str", "float", "str", "float", "float", "float", "bool", "str", "str"]
        table = Table(rows=rows or None, names=names, dtype=dtype)
        table["value"].format = ".4e"
        for col in ["error", "min", "max"]:
            table[col].format = ".3e"
        return table

    def __str__(self) -> str:
        return format_parameters(self)

    def __repr__(self) -> str:
        return f"Parameters({self.names})"


class _RestoreStatus:
    def __init__(self, parameters: Parameters, restore_values: bool):
        self._parameters = list(parameters)
        self._restore_values = restore_values
        self._values = [p.value for p in self._parameters]
        self._frozen = [p.frozen for p in self._parameters]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for par, value, frozen in zip(self._parameters, self._values, self._frozen):
            if self._restore_values:
                par.value = value
            par.frozen = frozen
        return False


def format_parameters(parameters: Iterable[Parameter]) -> str:
    """Parameter lines as gammapy prints them in model summaries."""
    out = ""
    for par in parameters:
        if par.name == "amplitude":
            vfmt, efmt = "{:10.2e}", "{:7.1e}"
        else:
            vfmt, efmt = "{:10.3f}", "{:7.2f}"
        line = "\t{:21} {:8}: " + vfmt + "\t {} {:<12s}\n"
        name = par.link_label or par.name
        if par.frozen:
            frozen, err = "(frozen)", "\t\t"
        else:
            frozen, err = "", "+/- " + efmt.format(par.error)
        out += line.format(name, frozen, par.value, err, str(par.unit))
    return out.expandtabs(tabsize=2)
