"""SED plots: spectral model curves, their error band (butterfly) and flux points.

Values are drawn as plain floats in fixed units (energy in TeV; ``DEFAULT_UNIT`` per SED type times
TeV**energy_power), so curves and points drawn by these functions on the same axes always agree.
"""
from __future__ import annotations

import numpy as np
from astropy import units as u

from ._mpl import gca

__all__ = [
    "DEFAULT_UNIT",
    "SED_TYPES",
    "energy_grid",
    "spectrum_values",
    "spectrum_error_values",
    "flux_points_values",
    "plot_spectrum",
    "plot_spectrum_error",
    "plot_flux_points",
]

DEFAULT_UNIT = {
    "dnde": u.Unit("cm-2 s-1 TeV-1"),
    "e2dnde": u.Unit("erg cm-2 s-1"),
    "flux": u.Unit("cm-2 s-1"),
    "eflux": u.Unit("erg cm-2 s-1"),
    "norm": u.Unit(""),
}
SED_TYPES = tuple(DEFAULT_UNIT)


def _check_sed_type(sed_type: str) -> str:
    if sed_type not in SED_TYPES:
        raise ValueError(f"Not a valid SED type: {sed_type!r}; choose one of {SED_TYPES}")
    return sed_type


def energy_grid(energy_bounds, n_points: int = 100) -> np.ndarray:
    """Bin edges in TeV: ``n_points`` log bins between two bounds, or the edges of a `MapAxis`."""
    edges = getattr(energy_bounds, "edges", None)
    if edges is not None:
        return u.Quantity(edges, "TeV").value.astype(float)
    bounds = u.Quantity(energy_bounds, "TeV").value if not isinstance(energy_bounds, (list, tuple)) else \
        np.array([u.Quantity(e, "TeV").value for e in energy_bounds], dtype=float)
    bounds = np.asarray(bounds, dtype=float).ravel()
    if bounds.size != 2 or not (0 < bounds[0] < bounds[1]):
        raise ValueError(f"energy_bounds must be two increasing positive energies, got {energy_bounds!r}")
    return np.geomspace(bounds[0], bounds[1], int(n_points) + 1)


def _centers(edges: np.ndarray) -> np.ndarray:
    return np.sqrt(edges[:-1] * edges[1:])


def _y_unit(sed_type: str, energy_power: float) -> u.UnitBase:
    return DEFAULT_UNIT[sed_type] * u.TeV**energy_power


def _scale(values: u.Quantity, energy_tev: np.ndarray, sed_type: str, energy_power: float) -> np.ndarray:
    scaled = u.Quantity(values) * (energy_tev * u.TeV) ** energy_power
    return scaled.to_value(_y_unit(sed_type, energy_power))


def _resolve_sed_type(model, sed_type: str) -> str:
    if getattr(model, "is_norm_spectral_model", False):
        return "norm"
    return _check_sed_type(sed_type)


def spectrum_values(model, energy_bounds, sed_type: str = "dnde", energy_power: float = 0,
                    n_points: int = 100):
    """(energy centres in TeV, values in ``DEFAULT_UNIT[sed_type] * TeV**energy_power``) of ``model``.

    dnde/e2dnde/norm are evaluated at the log centres; flux/eflux are integrals over each bin.
    """
    sed_type = _resolve_sed_type(model, sed_type)
    edges = energy_grid(energy_bounds, n_points)
    lo, hi, center = edges[:-1] * u.TeV, edges[1:] * u.TeV, _centers(edges)
    if sed_type in ("dnde", "norm"):
        values = model(center * u.TeV)
    elif sed_type == "e2dnde":
        values = (center * u.TeV) ** 2 * model(center * u.TeV)
    elif sed_type == "flux":
        values = model.integral(lo, hi)
    else:
        values = model.energy_flux(lo, hi)
    return center, _scale(values, center, sed_type, energy_power)


def spectrum_error_values(model, energy_bounds, sed_type: str = "dnde", energy_power: float = 0,
                          n_points: int = 100, n_samples: int = 3500, random_state: int = 42):
    """(energy centres in TeV, lower, upper) of the 1-sigma band from the model covariance.

    Uses the model's error propagation: ``evaluate_error`` (dnde, e2dnde), ``integral_error`` (flux),
    ``energy_flux_error`` (eflux).
    """
    sed_type = _resolve_sed_type(model, sed_type)
    if len(model.parameters) == 0:
        raise NotImplementedError("plot_error is not defined for models without parameters")
    edges = energy_grid(energy_bounds, n_points)
    lo, hi, center = edges[:-1], edges[1:], _centers(edges)
    if sed_type in ("dnde", "norm", "e2dnde"):
        out = model.evaluate_error(center * u.TeV, n_samples=n_samples, random_state=random_state)
        if sed_type == "e2dnde":
            out = (center * u.TeV) ** 2 * out
    elif sed_type == "flux":
        out = model.integral_error(lo * u.TeV, hi * u.TeV, n_samples=n_samples, random_state=random_state)
    else:
        out = model.energy_flux_error(lo * u.TeV, hi * u.TeV, n_samples=n_samples, random_state=random_state)
    median, errn, errp = out[0], out[1], out[2]
    lower = _scale(median - errn, center, sed_type, energy_power)
    upper = _scale(median + errp, center, sed_type, energy_power)
    return center, lower, upper


def _format_sed_axes(ax, sed_type: str, energy_power: float, xlabel: bool = True) -> None:
    unit = _y_unit(sed_type, energy_power)
    quantity = f"e{energy_power} * {sed_type}" if energy_power > 0 else sed_type
    unit_str = unit.to_string("latex_inline") if unit != u.dimensionless_unscaled else ""
    ax.set_ylabel(f"{quantity} [{unit_str}]" if unit_str else quantity)
    if xlabel:
        ax.set_xlabel("Energy [TeV]")
    ax.set_xscale("log", nonpositive="clip")
    ax.set_yscale("log", nonpositive="clip")


def plot_spectrum(model, energy_bounds, ax=None, sed_type: str = "dnde", energy_power: float = 0,
                  n_points: int = 100, **kwargs):
    """Plot a spectral model between ``energy_bounds`` (two energies or a `MapAxis`).

    Parameters
    ----------
    model : `SpectralModel`
    energy_bounds : `~astropy.units.Quantity` (2,), list of two energies, or `MapAxis`
    ax : `~matplotlib.axes.Axes`, optional
    sed_type : {"dnde", "e2dnde", "flux", "eflux"}
        Norm models always plot "norm".
    energy_power : float
        Multiply the values by E**energy_power (E in TeV).
    n_points : int
        Number of log energy bins.
    **kwargs
        Passed to ``ax.plot``.
    """
    ax = gca(ax)
    sed_type = _resolve_sed_type(model, sed_type)
    energy, values = spectrum_values(model, energy_bounds, sed_type, energy_power, n_points)
    ax.plot(energy, values, **kwargs)
    _format_sed_axes(ax, sed_type, energy_power)
    return ax


def plot_spectrum_error(model, energy_bounds, ax=None, sed_type: str = "dnde", energy_power: float = 0,
                        n_points: int = 100, n_samples: int = 3500, random_state: int = 42, **kwargs):
    """Butterfly: the 1-sigma band of a spectral model from its parameter covariance.

    ``kwargs`` go to ``ax.fill_between`` (defaults ``facecolor="black"``, ``alpha=0.2``,
    ``linewidth=0``). Other parameters as `plot_spectrum`.
    """
    ax = gca(ax)
    sed_type = _resolve_sed_type(model, sed_type)
    kwargs.setdefault("facecolor", "black")
    kwargs.setdefault("alpha", 0.2)
    kwargs.setdefault("linewidth", 0)
    energy, lower, upper = spectrum_error_values(model, energy_bounds, sed_type, energy_power, n_points,
                                                 n_samples, random_state)
    ax.fill_between(energy, lower, upper, **kwargs)
    _format_sed_axes(ax, sed_type, energy_power)
    return ax


# ---- flux points -------------------------------------------------------------------------------
_ENERGY_NAMES = {"e_ref": ("energy_ref", "e_ref"), "e_min": ("energy_min", "e_min"),
                 "e_max": ("energy_max", "e_max")}


def _as_quantity(value, default_unit=""):
    """Quantity from a map (``.quantity``), a table column, a Quantity or an array; 1D."""
    if value is None:
        return None
    if hasattr(value, "quantity"):
        value = value.quantity
    elif getattr(value, "unit", None) is not None and not isinstance(value, u.Quantity):
        value = u.Quantity(np.asarray(value), value.unit)
    q = u.Quantity(value, default_unit) if not isinstance(value, u.Quantity) else value
    return q.reshape(-1) if q.size > 1 or q.ndim else q.reshape(1)


def _get(fp, name: str):
    if hasattr(fp, "colnames"):  # astropy Table in gammapy's SED format
        if name not in fp.colnames:
            return None
        col = fp[name]
        return u.Quantity(np.asarray(col, dtype=float), col.unit or "") if name != "is_ul" else np.asarray(col)
    try:
        value = getattr(fp, name)
    except (AttributeError, KeyError, ValueError):
        return None
    if name == "is_ul" and value is not None:
        return np.asarray(getattr(value, "data", value)).reshape(-1)
    return value


def _energy(fp, key: str) -> np.ndarray:
    for name in _ENERGY_NAMES[key]:
        value = _get(fp, name)
        if value is not None:
            return _as_quantity(value, "TeV").to_value("TeV")
    raise ValueError(f"flux points have no {_ENERGY_NAMES[key]} energies")


def _sed_quantity(fp, sed_type: str, suffix: str, e_ref: np.ndarray):
    """``<sed_type><suffix>`` (e.g. e2dnde_errn) of the flux points; e2dnde from dnde if needed."""
    value = _get(fp, sed_type + suffix)
    if value is not None:
        return _as_quantity(value)
    if sed_type == "e2dnde":
        dnde = _get(fp, "dnde" + suffix)
        if dnde is not None:
            return (e_ref * u.TeV) ** 2 * _as_quantity(dnde)
    return None


def _default_sed_type(flux_points) -> str:
    try:
        value = getattr(flux_points, "sed_type_plot_default")
    except (AttributeError, KeyError):
        value = None
    return value if value in SED_TYPES else "e2dnde"


def flux_points_values(flux_points, sed_type: str | None = "e2dnde", energy_power: float = 0) -> dict:
    """Arrays behind `plot_flux_points`: ``e_ref``, ``xerr`` (TeV); ``y``, ``yerr`` (lower, upper) in
    ``DEFAULT_UNIT[sed_type] * TeV**energy_power``; ``is_ul``. Upper limits replace the value, with
    a downward error of half the limit (the arrow length), as gammapy draws them. ``sed_type=None``:
    the flux points' ``sed_type_plot_default`` or "e2dnde"."""
    sed_type = _check_sed_type(sed_type or _default_sed_type(flux_points))
    e_ref, e_min, e_max = (_energy(flux_points, k) for k in ("e_ref", "e_min", "e_max"))
    value = _sed_quantity(flux_points, sed_type, "", e_ref)
    if value is None:
        raise ValueError(f"flux points have no {sed_type!r} values")
    unit = DEFAULT_UNIT[sed_type]
    y = value.to_value(unit).astype(float)
    errn = _sed_quantity(flux_points, sed_type, "_errn", e_ref)
    errp = _sed_quantity(flux_points, sed_type, "_errp", e_ref)
    if errn is None or errp is None:
        err = _sed_quantity(flux_points, sed_type, "_err", e_ref)
        errn = errp = err
    yerr = None
    if errn is not None:
        yerr = [errn.to_value(unit).astype(float), errp.to_value(unit).astype(float)]
    is_ul = _get(flux_points, "is_ul")
    is_ul = np.zeros(y.shape, bool) if is_ul is None else np.asarray(is_ul, bool).reshape(y.shape)
    ul = _sed_quantity(flux_points, sed_type, "_ul", e_ref)
    if is_ul.any():
        if ul is None:
            raise ValueError(f"flux points flag upper limits but have no {sed_type}_ul values")
        ul = ul.to_value(unit)
        y = np.where(is_ul, ul, y)
        if yerr is None:
            yerr = [np.zeros_like(y), np.zeros_like(y)]
        yerr[0] = np.where(is_ul, np.clip(0.5 * ul, 0, np.inf), yerr[0])
        yerr[1] = np.where(is_ul, 0.0, yerr[1])
    factor = e_ref**energy_power
    y = y * factor
    if yerr is not None:
        yerr = [np.clip(np.nan_to_num(e * factor), 0, np.inf) for e in yerr]
    return {"sed_type": sed_type, "e_ref": e_ref, "xerr": [e_ref - e_min, e_max - e_ref], "y": y, "yerr": yerr, "is_ul": is_ul}


def plot_flux_points(flux_points, ax=None, sed_type: str | None = "e2dnde", energy_power: float = 0, **kwargs):
    """Flux points with energy-bin and (asymmetric where available) flux error bars; upper limits as
    downward arrows.

    Parameters
    ----------
    flux_points : `FluxPoints` or `~astropy.table.Table`
        gammapy-like flux points (``energy_ref``/``energy_min``/``energy_max``, ``dnde``, ``dnde_errn``,
        ``dnde_errp``, ``dnde_ul``, ``is_ul``, ... as maps, Quantities or arrays) or a table in
        gammapy's SED format (``e_ref``, ``e_min``, ``e_max``, ``dnde``, ``dnde_errn``, ...).
    ax : `~matplotlib.axes.Axes`, optional
    sed_type : {"dnde", "e2dnde", "flux", "eflux"} or None
        None: the flux points' ``sed_type_plot_default`` or "e2dnde".
    energy_power : float
    **kwargs
        Passed to ``ax.errorbar`` (defaults ``marker="o"``, ``ls="None"``).
    """
    ax = gca(ax)
    vals = flux_points_values(flux_points, sed_type, energy_power)
    kwargs.setdefault("marker", "o")
    kwargs.setdefault("markersize", 4)
    kwargs.setdefault("ls", "None")
    kwargs.setdefault("xerr", vals["xerr"])
    kwargs.setdefault("yerr", vals["yerr"])
    if vals["is_ul"].any():
        kwargs.setdefault("uplims", vals["is_ul"])
    ax.errorbar(vals["e_ref"], vals["y"], **kwargs)
    _format_sed_axes(ax, vals["sed_type"], energy_power)
    return ax
