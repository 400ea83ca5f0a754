"""Schema machinery of the analysis configuration: value converters, the dataclass builder, the dumper.

Each converter takes (raw YAML value, dotted key, field metadata) and returns a validated value or raises
`~gamma_ray_dist.errors.ConfigError` naming the dotted key.
"""
from __future__ import annotations

import datetime
import difflib
from dataclasses import field, fields, is_dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import astropy.units as u
import numpy as np
from astropy.time import Time

from ..errors import ConfigError


FRAMES = ("icrs", "galactic")
REQUIRED_IRFS = ("events", "gti", "aeff", "bkg", "edisp", "psf", "rad_max")
MAP_SELECTION = ("counts", "exposure", "background", "psf", "edisp")
SAFE_MASK_METHODS = ("aeff-default", "aeff-max", "edisp-bias", "offset-max", "bkg-peak")
SELECTION_OPTIONAL = ("errn-errp", "ul", "scan")
STEPS = ("data-reduction", "fit", "flux-points")


# --------------------------------------------------------------------------------------------------
# value converters: (raw YAML value, dotted key, field metadata) -> validated value
# --------------------------------------------------------------------------------------------------
def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _suggest(name: str, allowed: list[str]) -> str:
    close = difflib.get_close_matches(str(name), allowed, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown key{hint} (allowed: {', '.join(allowed)})"


def _quantity(value: Any, key: str, unit: u.Unit, what: str, example: str) -> u.Quantity:
    if isinstance(value, u.Quantity):
        q = value
    elif isinstance(value, str):
        try:
            q = u.Quantity(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(key, f"cannot parse {value!r} as {what} (e.g. '{example}'): {exc}") from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ConfigError(key, f"{value!r} has no unit: write {what} with a unit, e.g. '{value} {unit}'")
    else:
        raise ConfigError(key, f"expected {what} such as '{example}', got {type(value).__name__} {value!r}")
    if not q.isscalar:
        raise ConfigError(key, f"expected a scalar {what}, got {value!r}")
    if q.unit == u.dimensionless_unscaled:
        raise ConfigError(key, f"{value!r} has no unit: write {what} with a unit, e.g. '{example}'")
    try:
        q = q.to(unit)
    except u.UnitConversionError:
        raise ConfigError(key, f"unit '{q.unit}' of {value!r} is not {what} unit (convertible to {unit})") from None
    if not np.isfinite(q.value):
        raise ConfigError(key, f"{value!r} is not finite")
    return q


def _c_angle(v: Any, key: str, meta: Mapping) -> u.Quantity | None:
    return None if v is None else _quantity(v, key, u.deg, "an angle", "0.02 deg")


def _c_energy(v: Any, key: str, meta: Mapping) -> u.Quantity | None:
    return None if v is None else _quantity(v, key, u.TeV, "an energy", "1 TeV")


def _c_int(v: Any, key: str, meta: Mapping) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
        raise ConfigError(key, f"expected an integer, got {type(v).__name__} {v!r}")
    if meta.get("min") is not None and v < meta["min"]:
        raise ConfigError(key, f"must be >= {meta['min']}, got {v}")
    return int(v)


def _c_float(v: Any, key: str, meta: Mapping) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
        raise ConfigError(key, f"expected a number, got {type(v).__name__} {v!r}")
    return float(v)


def _c_bool(v: Any, key: str, meta: Mapping) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise ConfigError(key, f"expected true or false, got {v!r}")
    return bool(v)


def _c_str(v: Any, key: str, meta: Mapping) -> str | None:
    if v is None:
        return None
    if isinstance(v, Path):
        v = str(v)
    if not isinstance(v, str):
        raise ConfigError(key, f"expected a string, got {type(v).__name__} {v!r}")
    choices = meta.get("choices")
    if choices and v not in choices:
        raise ConfigError(key, f"{v!r} is not one of {list(choices)}")
    return v


def _c_str_list(v: Any, key: str, meta: Mapping) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str) or not isinstance(v, (list, tuple)):
        raise ConfigError(key, f"expected a list of strings, got {v!r}")
    return tuple(_c_str(x, f"{key}[{i}]", meta) for i, x in enumerate(v))


def _c_int_list(v: Any, key: str, meta: Mapping) -> tuple[int, ...]:
    if v is None:
        return ()
    if not isinstance(v, (list, tuple)):
        raise ConfigError(key, f"expected a list of integers, got {v!r}")
    return tuple(_c_int(x, f"{key}[{i}]", meta) for i, x in enumerate(v))


def _c_time(v: Any, key: str, meta: Mapping) -> Time | None:
    if v is None or isinstance(v, Time):
        return v
    raw = v if isinstance(v, (list, tuple)) else [v]
    items = []
    for x in raw:
        if isinstance(x, datetime.date) and not isinstance(x, datetime.datetime):
            x = x.isoformat()  # YAML turns an unquoted 2019-12-01 into a date
        if not isinstance(x, (str, datetime.datetime)):
            raise ConfigError(key, f"expected an ISO time such as '2019-12-01T00:00:00', got {x!r}")
        items.append(x)
    try:
        t = Time(items if isinstance(v, (list, tuple)) else items[0], scale=meta.get("scale", "utc"))
    except ValueError as exc:
        raise ConfigError(key, f"cannot parse {v!r} as a time: {exc}") from None
    return t


def _c_raw(v: Any, key: str, meta: Mapping) -> dict:
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(v).__name__} {v!r}")
    return dict(v)


def _c_selection(v: Any, key: str, meta: Mapping) -> str | tuple[str, ...] | None:
    if v is None or v == "all":
        return v
    return _c_str_list(v, key, {"choices": meta.get("choices", SELECTION_OPTIONAL)})


def _c_edges(v: Any, key: str, meta: Mapping) -> tuple | None:
    if v is None:
        return None
    if not isinstance(v, (list, tuple)) or len(v) < 2:
        raise ConfigError(key, f"expected a list of at least 2 energy edges, got {v!r}")
    return tuple(v)  # unit applied by FluxPointsEnergyConfig._check


_CONVERT: dict[str, Callable[[Any, str, Mapping], Any]] = {
    "angle": _c_angle, "energy": _c_energy, "int": _c_int, "float": _c_float, "bool": _c_bool,
    "str": _c_str, "str_list": _c_str_list, "int_list": _c_int_list, "time": _c_time, "raw": _c_raw,
    "params": _c_raw, "selection": _c_selection, "edges": _c_edges,
}


def _d_quantity(q: u.Quantity | None) -> str | None:
    return None if q is None else f"{float(q.value)!r} {q.unit.to_string()}"


def _d_time(t: Time | None) -> str | list | None:
    if t is None:
        return None
    return str(t.isot) if t.isscalar else [str(x) for x in t.isot]


def _d_plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_d_plain(x) for x in v]
    if isinstance(v, u.Quantity):
        return _d_quantity(v)
    if isinstance(v, dict):
        return {k: _d_plain(x) for k, x in v.items()}
    return v


_DUMP: dict[str, Callable[[Any], Any]] = {"angle": _d_quantity, "energy": _d_quantity, "time": _d_time}


def _field(kind: Any, default: Any = None, *, required: bool = False, extension: bool = False,
           **meta: Any) -> Any:
    """Declare a config field: ``kind`` is a converter name or a nested config dataclass.

    ``default`` is the raw YAML default (gammapy's); ``required`` means the value must not be null.
    """
    meta = dict(meta, kind=kind, default=default, required=required, extension=extension)
    if is_dataclass(kind):
        if default is None:
            return field(default_factory=kind, metadata=meta)
        return field(default_factory=lambda: _build(kind, default, "<default>"), metadata=meta)
    conv = _CONVERT[kind]
    return field(default_factory=lambda: conv(default, "<default>", meta), metadata=meta)


def _build(cls: type, data: Any, key: str) -> Any:
    """Build and validate config dataclass ``cls`` from the mapping ``data`` found at ``key``."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(key or "<root>", f"expected a mapping, got {type(data).__name__} {data!r}")
    specs = [f for f in fields(cls) if "kind" in f.metadata]
    allowed = [_yaml_name(f) for f in specs] + list(getattr(cls, "_IGNORED_KEYS", ()))
    for name in data:
        if name not in allowed:
            raise ConfigError(_join(key, str(name)), _suggest(name, allowed))
    kwargs = {}
    for f in specs:
        name, kind, meta = _yaml_name(f), f.metadata["kind"], f.metadata
        sub = _join(key, name)
        raw = data[name] if name in data else meta["default"]
        if is_dataclass(kind):
            kwargs[f.name] = _build(kind, raw, sub)
            continue
        if raw is None and meta["required"]:
            raise ConfigError(sub, "missing required value")
        kwargs[f.name] = _CONVERT[kind](raw, sub, meta)
    obj = cls(**kwargs)
    obj._check(key)
    return obj


def _yaml_name(f: Any) -> str:
    return f.metadata.get("yaml_name", f.name)


def _dump(obj: Any, gammapy_compatible: bool) -> dict:
    out: dict[str, Any] = {}
    for f in fields(obj):
        meta = f.metadata
        if "kind" not in meta or (gammapy_compatible and meta["extension"]):
            continue
        value, kind = getattr(obj, f.name), meta["kind"]
        if is_dataclass(kind):
            out[_yaml_name(f)] = _dump(value, gammapy_compatible)
        else:
            out[_yaml_name(f)] = _DUMP.get(kind, _d_plain)(value)
    return obj._post_dump(out, gammapy_compatible)


def _check_params(params: dict, schema: Mapping[str, tuple[str, dict]], key: str) -> dict:
    """Validate a free ``parameters`` mapping against ``schema`` {name: (kind, meta)}; convert values."""
    out = {}
    for name, value in params.items():
        if name not in schema:
            raise ConfigError(_join(key, str(name)), _suggest(name, list(schema)))
        kind, meta = schema[name]
        out[name] = _CONVERT[kind](value, _join(key, name), meta)
    return out


def _all_or_none(obj: Any, names: tuple[str, ...], key: str) -> bool:
    """Return True when all ``names`` are set, False when none; else raise naming the first missing."""
    set_ = [getattr(obj, n) is not None for n in names]
    if any(set_) and not all(set_):
        missing = names[set_.index(False)]
        given = [n for n, s in zip(names, set_) if s]
        raise ConfigError(_join(key, missing), f"missing required value (given with {', '.join(given)})")
    return all(set_)


class _Section:
    """Mix-in: validation and dump hooks (overridden where a section has cross-field rules)."""

    def _check(self, key: str) -> None:
        pass

    def _post_dump(self, out: dict, gammapy_compatible: bool) -> dict:
        return out


