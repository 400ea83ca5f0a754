"""Attach thin plotting methods (gammapy's names) to the package classes.

The plotting code lives in this package as pure functions; ``install_plot_methods`` sets methods
that call them on `WcsNDMap`, `Observation`, `MapDataset`, `SpectralModel` and `FluxPoints`, so the
classes' modules need no matplotlib and no plotting code.
"""
from __future__ import annotations

import importlib
from typing import Callable

from . import datasets as _ds
from . import maps as _maps
from . import observation as _obs
from . import spectral as _spec

__all__ = ["install_plot_methods", "TARGETS"]

_MARK = "_grd_plot_method"


# ---- the methods (thin wrappers; docstrings point to the functions) -------------------------
def _map_plot(self, ax=None, fig=None, add_cbar=False, stretch="linear", **kwargs):
    return _maps.plot_map(self, ax=ax, fig=fig, add_cbar=add_cbar, stretch=stretch, **kwargs)


def _map_plot_grid(self, ncols=3, figsize=None, **kwargs):
    return _maps.plot_grid(self, ncols=ncols, figsize=figsize, **kwargs)


def _obs_peek(self, figsize=(15, 10)):
    return _obs.peek_observation(self, figsize=figsize)


def _ds_plot_residuals_spatial(self, ax=None, method="diff", smooth_kernel="gauss", smooth_radius="0.1 deg",
                               **kwargs):
    return _ds.plot_residuals_spatial(self, ax=ax, method=method, smooth_kernel=smooth_kernel,
                                      smooth_radius=smooth_radius, **kwargs)


def _ds_plot_residuals_spectral(self, ax=None, method="diff", region=None, **kwargs):
    return _ds.plot_residuals_spectral(self, ax=ax, method=method, region=region, **kwargs)


def _ds_plot_residuals(self, ax_spatial=None, ax_spectral=None, kwargs_spatial=None, kwargs_spectral=None):
    return _ds.plot_residuals(self, ax_spatial=ax_spatial, ax_spectral=ax_spectral,
                              kwargs_spatial=kwargs_spatial, kwargs_spectral=kwargs_spectral)


def _ds_plot_npred_signal(self, ax=None, model_names=None, region=None, **kwargs):
    return _ds.plot_npred_signal(self, ax=ax, model_names=model_names, region=region, **kwargs)


def _spec_plot(self, energy_bounds, ax=None, sed_type="dnde", energy_power=0, n_points=100, **kwargs):
    return _spec.plot_spectrum(self, energy_bounds, ax=ax, sed_type=sed_type, energy_power=energy_power,
                               n_points=n_points, **kwargs)


def _spec_plot_error(self, energy_bounds, ax=None, sed_type="dnde", energy_power=0, n_points=100,
                     n_samples=3500, random_state=42, **kwargs):
    return _spec.plot_spectrum_error(self, energy_bounds, ax=ax, sed_type=sed_type, energy_power=energy_power,
                                     n_points=n_points, n_samples=n_samples, random_state=random_state,
                                     **kwargs)


def _fp_plot(self, ax=None, sed_type="e2dnde", energy_power=0, **kwargs):
    return _spec.plot_flux_points(self, ax=ax, sed_type=sed_type, energy_power=energy_power, **kwargs)


for _f, _src in ((_map_plot, _maps.plot_map), (_map_plot_grid, _maps.plot_grid),
                 (_obs_peek, _obs.peek_observation), (_ds_plot_residuals_spatial, _ds.plot_residuals_spatial),
                 (_ds_plot_residuals_spectral, _ds.plot_residuals_spectral),
                 (_ds_plot_residuals, _ds.plot_residuals), (_ds_plot_npred_signal, _ds.plot_npred_signal),
                 (_spec_plot, _spec.plot_spectrum), (_spec_plot_error, _spec.plot_spectrum_error),
                 (_fp_plot, _spec.plot_flux_points)):
    _f.__doc__ = _src.__doc__
    setattr(_f, _MARK, True)

# target -> (candidate modules, class name, {method name: function})
TARGETS: dict[str, tuple[tuple[str, ...], str, dict[str, Callable]]] = {
    "maps": (("gamma_ray_dist.maps.ndmap",), "WcsNDMap", {"plot": _map_plot, "plot_grid": _map_plot_grid}),
    "data": (("gamma_ray_dist.data.observations",), "Observation", {"peek": _obs_peek}),
    "datasets": (("gamma_ray_dist.datasets.map",), "MapDataset", {
        "plot_residuals_spatial": _ds_plot_residuals_spatial,
        "plot_residuals_spectral": _ds_plot_residuals_spectral,
        "plot_residuals": _ds_plot_residuals,
        "plot_npred_signal": _ds_plot_npred_signal,
    }),
    "modeling": (("gamma_ray_dist.modeling.models.spectral",), "SpectralModel",
                 {"plot": _spec_plot, "plot_error": _spec_plot_error}),
    "estimators": (("gamma_ray_dist.estimators", "gamma_ray_dist.estimators.points",
                    "gamma_ray_dist.estimators.flux_points", "gamma_ray_dist.estimators.core"),
                   "FluxPoints", {"plot": _fp_plot}),
}


def _find_class(modules, name):
    for modname in modules:
        try:
            module = importlib.import_module(modname)
        except ImportError:
            continue
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            return cls
    return None


def install_plot_methods(*targets, overwrite: bool = False) -> dict:
    """Set the plotting methods on the package classes.

    Parameters
    ----------
    *targets : str or class
        Any of ``"maps"`` (``WcsNDMap.plot``, ``plot_grid``), ``"data"`` (``Observation.peek``),
        ``"datasets"`` (``MapDataset.plot_residuals_spatial``, ``plot_residuals_spectral``,
        ``plot_residuals``, ``plot_npred_signal``), ``"modeling"`` (``SpectralModel.plot``,
        ``plot_error``), ``"estimators"`` (``FluxPoints.plot``); or one of those classes itself.
        None: all of them whose classes can be imported (a missing class is skipped).
    overwrite : bool
        Replace a method of the same name that the class defines itself (default: keep it).

    Returns
    -------
    dict
        ``{class name: [installed method names]}``.

    Notes
    -----
    Call it at the bottom of the module that defines each class, e.g. at the end of
    ``gamma_ray_dist/maps/ndmap.py``::

        from ..visualization import install_plot_methods
        install_plot_methods("maps")

    The visualization package imports neither matplotlib nor the other subpackages at import time,
    so this creates no import cycle; matplotlib is imported when a method is called.
    """
    explicit = bool(targets)
    targets = targets or tuple(TARGETS)
    installed: dict = {}
    for target in targets:
        if isinstance(target, type):
            spec = next(((k, v) for k, v in TARGETS.items()
                         if any(b.__name__ == v[1] for b in target.__mro__)), None)
            if spec is None:
                raise ValueError(f"no plotting methods for class {target.__name__}")
            cls, methods = target, spec[1][2]
        else:
            if target not in TARGETS:
                raise ValueError(f"unknown target {target!r}; choose from {list(TARGETS)}")
            modules, name, methods = TARGETS[target]
            cls = _find_class(modules, name)
            if cls is None:
                if explicit:
                    raise ImportError(f"cannot install plot methods: class {name} not found in {modules}")
                continue
        done = []
        for meth_name, func in methods.items():
            current = cls.__dict__.get(meth_name)
            if current is not None and not getattr(current, _MARK, False) and not overwrite:
                continue
            setattr(cls, meth_name, func)
            done.append(meth_name)
        installed[cls.__name__] = done
    return installed
