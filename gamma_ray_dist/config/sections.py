"""The configuration sections: frozen dataclasses, one per YAML section, and `AnalysisConfig`."""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import astropy.units as u
import numpy as np
import yaml
from astropy.time import Time

from ..errors import ConfigError, yaml_error_reason

from .schema import (
    FRAMES,
    REQUIRED_IRFS,
    MAP_SELECTION,
    SAFE_MASK_METHODS,
    STEPS,
    _join,
    _c_energy,
    _c_bool,
    _c_str,
    _d_time,
    _field,
    _build,
    _dump,
    _check_params,
    _all_or_none,
    _Section,
)

__all__ = [
    "AnalysisConfig",
    "GeneralConfig",
    "LogConfig",
    "ObservationsConfig",
    "SkyCoordConfig",
    "ConeConfig",
    "TimeRangeConfig",
    "DatasetsConfig",
    "GeomConfig",
    "WcsConfig",
    "WidthConfig",
    "SelectionConfig",
    "EnergyAxesConfig",
    "EnergyAxisConfig",
    "BackgroundConfig",
    "SafeMaskConfig",
    "FitConfig",
    "EnergyRangeConfig",
    "FluxPointsConfig",
    "FluxPointsEnergyConfig",
    "RayConfig",
    "ExcessMapConfig",
    "TsMapConfig",
    "LightCurveConfig",
]


# --------------------------------------------------------------------------------------------------
# general
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LogConfig(_Section):
    """``general.log``: arguments of ``logging.basicConfig`` (level, filename, filemode, format, datefmt)."""

    level: str = _field("str", "info", required=True)
    filename: str | None = _field("str")
    filemode: str | None = _field("str")
    format: str | None = _field("str")
    datefmt: str | None = _field("str")


@dataclass(frozen=True)
class GeneralConfig(_Section):
    """``general``: accepted for compatibility; ``outdir`` is the default output directory."""

    log: LogConfig = _field(LogConfig)
    outdir: str = _field("str", ".", required=True)
    n_jobs: int = _field("int", 1, required=True)
    datasets_file: str | None = _field("str")
    models_file: str | None = _field("str")
    steps: tuple[str, ...] = _field("str_list", extension=True, choices=STEPS)

    def _post_dump(self, out: dict, gammapy_compatible: bool) -> dict:
        if not self.steps:
            out.pop("steps", None)
        return out


# --------------------------------------------------------------------------------------------------
# observations
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConeConfig(_Section):
    """A sky circle (``observations.obs_cone``, ``datasets.on_region``); all fields set or none."""

    frame: str | None = _field("str", choices=FRAMES)
    lon: u.Quantity | None = _field("angle")
    lat: u.Quantity | None = _field("angle")
    radius: u.Quantity | None = _field("angle")

    @property
    def is_set(self) -> bool:
        """True when the cone is defined."""
        return self.lon is not None

    def to_selection(self) -> dict:
        """Selection dict for ``ObservationTable.select_observations`` (as gammapy's Analysis builds it)."""
        return dict(type="sky_circle", frame=self.frame, lon=self.lon, lat=self.lat,
                    radius=self.radius, border=0 * u.deg)

    def _check(self, key: str) -> None:
        if _all_or_none(self, ("frame", "lon", "lat", "radius"), key):
            if abs(self.lat.value) > 90:
                raise ConfigError(_join(key, "lat"), f"latitude {self.lat} outside [-90, 90] deg")
            if self.radius.value <= 0:
                raise ConfigError(_join(key, "radius"), f"must be > 0, got {self.radius}")


@dataclass(frozen=True, eq=False)
class TimeRangeConfig(_Section):
    """``observations.obs_time``: ``start``/``stop`` astropy ``Time`` (scalars, or arrays of intervals)."""

    start: Time | None = _field("time")
    stop: Time | None = _field("time")

    @property
    def is_set(self) -> bool:
        return self.start is not None

    def intervals(self) -> list[tuple[Time, Time]]:
        """Time intervals as a list of (start, stop) pairs (empty when unset)."""
        if self.start is None:
            return []
        if self.start.isscalar:
            return [(self.start, self.stop)]
        return list(zip(self.start, self.stop))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TimeRangeConfig):
            return NotImplemented
        return _d_time(self.start) == _d_time(other.start) and _d_time(self.stop) == _d_time(other.stop)

    def _check(self, key: str) -> None:
        if not _all_or_none(self, ("start", "stop"), key):
            return
        if self.start.shape != self.stop.shape:
            raise ConfigError(_join(key, "stop"), "start and stop must have the same number of times")
        if np.any(self.stop <= self.start):
            raise ConfigError(_join(key, "stop"), "each stop time must be after its start time")


@dataclass(frozen=True)
class ObservationsConfig(_Section):
    """``observations``: which observations of which data store.

    ``datastore`` is kept as written: ``$VARS`` are expanded by ``DataStore.from_dir``.
    """

    datastore: str = _field("str", "$GAMMAPY_DATA/hess-dl3-dr1", required=True)
    obs_ids: tuple[int, ...] = _field("int_list")
    obs_file: str | None = _field("str")
    obs_cone: ConeConfig = _field(ConeConfig)
    obs_time: TimeRangeConfig = _field(TimeRangeConfig)
    required_irf: tuple[str, ...] = _field("str_list", ["aeff", "edisp", "psf", "bkg"],
                                           choices=REQUIRED_IRFS)

    def _check(self, key: str) -> None:
        if self.obs_ids and self.obs_file is not None:
            raise ConfigError(_join(key, "obs_file"), "obs_ids and obs_file cannot both be given")


# --------------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SkyCoordConfig(_Section):
    """``datasets.geom.wcs.skydir``: map centre (required for 3D)."""

    frame: str = _field("str", required=True, choices=FRAMES)
    lon: u.Quantity = _field("angle", required=True)
    lat: u.Quantity = _field("angle", required=True)

    def to_skycoord(self):
        """Return the centre as an astropy ``SkyCoord``."""
        from astropy.coordinates import SkyCoord

        return SkyCoord(self.lon, self.lat, frame=self.frame)

    def _check(self, key: str) -> None:
        if abs(self.lat.value) > 90:
            raise ConfigError(_join(key, "lat"), f"latitude {self.lat} outside [-90, 90] deg")


@dataclass(frozen=True)
class WidthConfig(_Section):
    """``datasets.geom.wcs.width``: map width and height (deg)."""

    width: u.Quantity = _field("angle", "5 deg", required=True)
    height: u.Quantity = _field("angle", "5 deg", required=True)

    def _check(self, key: str) -> None:
        for name in ("width", "height"):
            if getattr(self, name).value <= 0:
                raise ConfigError(_join(key, name), f"must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class WcsConfig(_Section):
    """``datasets.geom.wcs``: CAR projection map geometry."""

    skydir: SkyCoordConfig = _field(SkyCoordConfig)
    binsize: u.Quantity = _field("angle", "0.02 deg", required=True)
    width: WidthConfig = _field(WidthConfig)
    binsize_irf: u.Quantity = _field("angle", "0.2 deg", required=True)

    def _check(self, key: str) -> None:
        for name in ("binsize", "binsize_irf"):
            if getattr(self, name).value <= 0:
                raise ConfigError(_join(key, name), f"must be > 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class SelectionConfig(_Section):
    """``datasets.geom.selection``: ``offset_max`` sets the per-observation cutout (width 2*offset_max)."""

    offset_max: u.Quantity = _field("angle", "2.5 deg", required=True)

    def _check(self, key: str) -> None:
        if self.offset_max.value <= 0:
            raise ConfigError(_join(key, "offset_max"), f"must be > 0, got {self.offset_max}")


@dataclass(frozen=True)
class EnergyAxisConfig(_Section):
    """An energy axis ``{min, max, nbins}`` (TeV; log-spaced edges as ``MapAxis.from_energy_bounds``)."""

    min: u.Quantity | None = _field("energy")
    max: u.Quantity | None = _field("energy")
    nbins: int | None = _field("int", min=1)

    @property
    def is_set(self) -> bool:
        return self.min is not None

    def edges(self) -> u.Quantity | None:
        """Log-spaced bin edges in TeV, or None.

        These are ``np.geomspace`` nodes, as gammapy's ``MapAxis.from_energy_bounds`` stores them;
        gammapy's ``MapAxis.edges`` re-interpolates them and may differ by 1 ulp, so build map axes
        with ``gamma_ray_dist.maps.MapAxis.from_energy_bounds(min, max, nbins)``.
        """
        if not self.is_set:
            return None
        return np.geomspace(self.min.value, self.max.value, self.nbins + 1) * u.TeV

    def _check(self, key: str) -> None:
        if _all_or_none(self, ("min", "max", "nbins"), key):
            if self.min.value <= 0:
                raise ConfigError(_join(key, "min"), f"must be > 0, got {self.min}")
            if self.max <= self.min:
                raise ConfigError(_join(key, "max"), f"must be > min ({self.min}), got {self.max}")


@dataclass(frozen=True)
class EnergyAxesConfig(_Section):
    """``datasets.geom.axes``: reconstructed ``energy`` (required) and ``energy_true`` (optional)."""

    energy: EnergyAxisConfig = _field(EnergyAxisConfig, {"min": "1 TeV", "max": "10 TeV", "nbins": 5})
    energy_true: EnergyAxisConfig = _field(EnergyAxisConfig, {"min": "0.5 TeV", "max": "20 TeV", "nbins": 16})

    def _check(self, key: str) -> None:
        if not self.energy.is_set:
            raise ConfigError(_join(key, "energy.min"), "missing required value")


@dataclass(frozen=True)
class GeomConfig(_Section):
    """``datasets.geom``."""

    wcs: WcsConfig = _field(WcsConfig)
    selection: SelectionConfig = _field(SelectionConfig)
    axes: EnergyAxesConfig = _field(EnergyAxesConfig)


_FOV_PARAMS = {
    "method": ("str", {"choices": ("fit", "scale")}),
    "spectral_model": ("str", {"choices": ("pl-norm",)}),
    "min_counts": ("int", {"min": 0}),
    "min_npred_background": ("float", {}),
}


@dataclass(frozen=True)
class BackgroundConfig(_Section):
    """``datasets.background``: FoV background normalisation.

    Attributes
    ----------
    method : str or None
        ``"fov_background"`` or None (no background maker).
    exclusion : str or None
        Path of an exclusion mask FITS file in gammapy map format (True = usable pixel), read as given.
    parameters : dict
        ``FoVBackgroundMaker`` arguments: ``method`` ("fit" | "scale"), ``spectral_model`` ("pl-norm"),
        ``min_counts`` (int), ``min_npred_background`` (float).
    exclusion_regions_ds9 : tuple of str
        Extension: DS9 strings, e.g. ``"icrs;circle(83.63,22.14,0.2)"`` (radius in deg).
    exclusion_regions : tuple of regions.SkyRegion
        The parsed regions (derived from ``exclusion_regions_ds9``); excluded in addition to ``exclusion``.
    """

    method: str | None = _field("str", choices=("fov_background", "reflected", "ring"))
    exclusion: str | None = _field("str")
    parameters: dict = _field("params", {})
    exclusion_regions_ds9: tuple[str, ...] = field(
        default=(), metadata=dict(kind="str_list", default=None, required=False, extension=True,
                                  yaml_name="exclusion_regions"))
    exclusion_regions: tuple = field(default=(), compare=False)

    def _check(self, key: str) -> None:
        if self.method in ("reflected", "ring"):
            raise ConfigError(_join(key, "method"), f"'{self.method}' is not supported: 3D stacked analysis "
                                                   "supports 'fov_background' or null")
        params = _check_params(self.parameters, _FOV_PARAMS, _join(key, "parameters"))
        object.__setattr__(self, "parameters", params)
        object.__setattr__(self, "exclusion_regions",
                           _parse_ds9(self.exclusion_regions_ds9, _join(key, "exclusion_regions")))

    def _post_dump(self, out: dict, gammapy_compatible: bool) -> dict:
        if not out.get("exclusion_regions", True):
            out.pop("exclusion_regions")
        return out


def _parse_ds9(strings: tuple[str, ...], key: str) -> tuple:
    """Parse DS9 region strings into sky regions (``regions`` package)."""
    if not strings:
        return ()
    from regions import Regions, SkyRegion

    out = []
    for i, text in enumerate(strings):
        k = f"{key}[{i}]"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                parsed = Regions.parse(text, format="ds9")
            except Exception as exc:  # regions raises several error types
                raise ConfigError(k, f"cannot parse DS9 region {text!r}: {exc}") from None
        if len(parsed) == 0:
            why = "; ".join(str(w.message) for w in caught) or "no region found"
            raise ConfigError(k, f"no sky region in {text!r} ({why}); give a frame, "
                                 "e.g. 'icrs;circle(83.63,22.14,0.2)'")
        for reg in parsed:
            if not isinstance(reg, SkyRegion):
                raise ConfigError(k, f"{text!r} is a pixel region; use a sky frame (icrs, galactic)")
            out.append(reg)
    return tuple(out)


_SAFE_MASK_PARAMS = {
    "offset_max": ("angle", {}),
    "fixed_offset": ("angle", {}),
    "aeff_percent": ("float", {}),
    "bias_percent": ("float", {}),
    "irfs": ("str", {"choices": ("DL3", "DL4")}),
}


@dataclass(frozen=True)
class SafeMaskConfig(_Section):
    """``datasets.safe_mask``: ``SafeMaskMaker`` methods and arguments.

    ``parameters`` keys: ``offset_max``, ``fixed_offset`` (Quantity deg), ``aeff_percent``,
    ``bias_percent`` (float), ``irfs`` ("DL3" | "DL4").
    """

    methods: tuple[str, ...] = _field("str_list", ["aeff-default"], choices=SAFE_MASK_METHODS)
    parameters: dict = _field("params", {})

    def _check(self, key: str) -> None:
        object.__setattr__(self, "parameters",
                           _check_params(self.parameters, _SAFE_MASK_PARAMS, _join(key, "parameters")))


@dataclass(frozen=True)
class DatasetsConfig(_Section):
    """``datasets``: data reduction (only ``type: 3d``; ``stack: false`` keeps one dataset per observation)."""

    type: str = _field("str", required=True, choices=("1d", "3d"))
    stack: bool = _field("bool", True)
    geom: GeomConfig = _field(GeomConfig)
    map_selection: tuple[str, ...] = _field("str_list", list(MAP_SELECTION), choices=MAP_SELECTION)
    background: BackgroundConfig = _field(BackgroundConfig)
    safe_mask: SafeMaskConfig = _field(SafeMaskConfig)
    on_region: ConeConfig = _field(ConeConfig)  # ignored for 3D
    containment_correction: bool = _field("bool", True)  # ignored for 3D

    def _check(self, key: str) -> None:
        if self.type == "1d":
            raise ConfigError(_join(key, "type"), "1d (spectral) analysis is not supported; use type: 3d")


def _check_datasets_kind(data: Mapping) -> None:
    """Reject unsupported analyses (1d) before anything else is validated."""
    ds = data.get("datasets")
    if ds is not None and not isinstance(ds, Mapping):
        raise ConfigError("datasets", f"expected a mapping, got {type(ds).__name__} {ds!r}")
    if ds is None or ds.get("type") is None:
        raise ConfigError("datasets.type", "missing required value (gammapy's default is '1d', which is "
                                           "not supported): set type: 3d")
    meta = {f.name: f.metadata for f in fields(DatasetsConfig)}
    kind = _c_str(ds["type"], "datasets.type", meta["type"])
    stack = _c_bool(ds.get("stack", True), "datasets.stack", meta["stack"])
    DatasetsConfig(type=kind, stack=stack)._check("datasets")


# --------------------------------------------------------------------------------------------------
# fit, flux points, ray
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnergyRangeConfig(_Section):
    """An energy range ``{min, max}`` (TeV); both or neither."""

    min: u.Quantity | None = _field("energy")
    max: u.Quantity | None = _field("energy")

    @property
    def is_set(self) -> bool:
        return self.min is not None

    def _check(self, key: str) -> None:
        if _all_or_none(self, ("min", "max"), key) and self.max <= self.min:
            raise ConfigError(_join(key, "max"), f"must be > min ({self.min}), got {self.max}")


@dataclass(frozen=True)
class FitConfig(_Section):
    """``fit``: ``fit_range`` restricts the fit mask in reconstructed energy."""

    fit_range: EnergyRangeConfig = _field(EnergyRangeConfig)


@dataclass(frozen=True)
class FluxPointsEnergyConfig(EnergyAxisConfig):
    """``flux_points.energy``: ``{min, max, nbins}`` or (extension) ``{edges: [...], unit: TeV}``."""

    edges_values: tuple | None = field(
        default=None, metadata=dict(kind="edges", default=None, required=False, extension=True,
                                    yaml_name="edges"))
    unit: str | None = _field("str", extension=True)
    explicit_edges: u.Quantity | None = field(default=None, compare=False)

    @property
    def is_set(self) -> bool:
        return self.min is not None or self.explicit_edges is not None

    def edges(self) -> u.Quantity | None:
        """Flux-point energy edges in TeV (explicit, or log-spaced from min/max/nbins), or None."""
        if self.explicit_edges is not None:
            return self.explicit_edges
        return super().edges()

    def _check(self, key: str) -> None:
        if self.edges_values is None:
            if self.unit is not None:
                raise ConfigError(_join(key, "unit"), "only valid together with 'edges'")
            return super()._check(key)
        for name in ("min", "max", "nbins"):
            if getattr(self, name) is not None:
                raise ConfigError(_join(key, name), "give either 'edges' or min/max/nbins, not both")
        ekey = _join(key, "edges")
        unit = self.unit or "TeV"
        try:
            unit_q = u.Unit(unit)
        except ValueError:
            raise ConfigError(_join(key, "unit"), f"unknown unit {unit!r}") from None
        vals = []
        for i, e in enumerate(self.edges_values):
            if isinstance(e, (int, float)) and not isinstance(e, bool):
                e = f"{e} {unit_q.to_string()}"
            vals.append(_c_energy(e, f"{ekey}[{i}]", {}).value)
        arr = np.asarray(vals)
        if arr[0] <= 0 or np.any(np.diff(arr) <= 0):
            raise ConfigError(ekey, f"edges must be positive and strictly increasing, got {list(self.edges_values)}")
        object.__setattr__(self, "explicit_edges", arr * u.TeV)

    def _post_dump(self, out: dict, gammapy_compatible: bool) -> dict:
        if gammapy_compatible and self.explicit_edges is not None:
            raise ConfigError("flux_points.energy.edges", "explicit edges cannot be written in gammapy's "
                                                          "format (min/max/nbins only)")
        if out.get("edges") is not None:
            return {k: v for k, v in out.items() if k in ("edges", "unit") and v is not None}
        out.pop("edges", None)
        out.pop("unit", None)
        return out


_FP_PARAMS = {
    "selection_optional": ("selection", {}),
    "n_sigma": ("float", {}),
    "n_sigma_ul": ("float", {}),
    "n_sigma_sensitivity": ("float", {}),
    "reoptimize": ("bool", {}),
    "sum_over_energy_groups": ("bool", {}),
}


@dataclass(frozen=True)
class FluxPointsConfig(_Section):
    """``flux_points``: ``FluxPointsEstimator`` settings.

    ``parameters`` keys: ``selection_optional`` ("all", None, or a tuple of "errn-errp", "ul",
    "scan"), ``n_sigma``, ``n_sigma_ul``, ``n_sigma_sensitivity`` (float), ``reoptimize``,
    ``sum_over_energy_groups`` (bool). gammapy's default is ``{"selection_optional": "all"}``.
    """

    energy: FluxPointsEnergyConfig = _field(FluxPointsEnergyConfig)
    source: str = _field("str", "source", required=True)
    parameters: dict = _field("params", {"selection_optional": "all"})

    def _check(self, key: str) -> None:
        object.__setattr__(self, "parameters",
                           _check_params(self.parameters, _FP_PARAMS, _join(key, "parameters")))


_MAP_SELECTION = ("errn-errp", "ul")
# gammapy 2.1's ExcessMapEstimator options (alpha and the acceptances give maps for on-off datasets only)
_EXCESS_SELECTION = ("errn-errp", "ul", "sensitivity", "alpha", "acceptance_on", "acceptance_off")
_TS_SELECTION = ("errn-errp", "ul", "stat_scan", "sensitivity")


def _check_map_selection(value: Any, key: str, allowed: tuple = _MAP_SELECTION) -> None:
    if value in (None, "all"):
        return
    for v in value:
        if v not in allowed:
            raise ConfigError(key, f"{v!r} is not supported by the map estimators; choose among "
                                   f"{list(allowed)} or 'all'")


_EXCESS_PARAMS = {
    "selection_optional": ("selection", {"choices": _EXCESS_SELECTION}),
    "n_sigma": ("float", {}),
    "n_sigma_ul": ("float", {}),
    "correlate_off": ("bool", {}),
    "n_sigma_sensitivity": ("float", {}),
    "gamma_min_sensitivity": ("float", {}),
    "bkg_syst_fraction_sensitivity": ("float", {}),
    "apply_threshold_sensitivity": ("bool", {}),
    "sum_over_energy_groups": ("bool", {}),
}


@dataclass(frozen=True)
class ExcessMapConfig(_Section):
    """``excess_map`` (gammapy's section): ``ExcessMapEstimator`` settings.

    ``correlation_radius`` (default 0.1 deg); ``parameters``: ``selection_optional`` (None, "all" or a
    list of "errn-errp", "ul", "sensitivity", "alpha", "acceptance_on", "acceptance_off"), ``n_sigma``,
    ``n_sigma_ul``, ``n_sigma_sensitivity`` (> 0), ``gamma_min_sensitivity``,
    ``bkg_syst_fraction_sensitivity`` (>= 0), ``correlate_off``, ``apply_threshold_sensitivity``,
    ``sum_over_energy_groups`` (bool);
    ``energy_edges``: ``{min, max, nbins}`` (default: one bin over the dataset's energy axis).
    The pipeline computes the map when the section is present in the configuration (`requested`).
    """

    correlation_radius: u.Quantity = _field("angle", "0.1 deg", required=True)
    parameters: dict = _field("params", {})
    energy_edges: EnergyAxisConfig = _field(EnergyAxisConfig)
    requested: bool = field(default=False, compare=False)

    def _check(self, key: str) -> None:
        if self.correlation_radius.value <= 0:
            raise ConfigError(_join(key, "correlation_radius"), f"must be > 0, got {self.correlation_radius}")
        params = _check_params(self.parameters, _EXCESS_PARAMS, _join(key, "parameters"))
        _check_map_selection(params.get("selection_optional"), _join(key, "parameters.selection_optional"),
                             _EXCESS_SELECTION)
        for name in ("n_sigma", "n_sigma_ul", "n_sigma_sensitivity"):
            if name in params and not params[name] > 0:
                raise ConfigError(_join(key, f"parameters.{name}"), f"must be > 0, got {params[name]}")
        for name in ("gamma_min_sensitivity", "bkg_syst_fraction_sensitivity"):
            if name in params and not params[name] >= 0:
                raise ConfigError(_join(key, f"parameters.{name}"), f"must be >= 0, got {params[name]}")
        object.__setattr__(self, "parameters", params)

    def estimator_kwargs(self) -> dict:
        """Keyword arguments of `ExcessMapEstimator`."""
        kwargs = dict(self.parameters, correlation_radius=self.correlation_radius)
        if self.energy_edges.min is not None:
            kwargs["energy_edges"] = self.energy_edges.edges()
        return kwargs


@dataclass(frozen=True)
class TsMapConfig(_Section):
    """``ts_map`` (extension): ``TSMapEstimator`` settings, same keys as the estimator.

    ``kernel_width`` (angle; default the PSF kernel width + 0.2 deg), ``downsampling_factor`` (power of
    2), ``n_sigma`` (1), ``n_sigma_ul`` (2), ``threshold``, ``rtol`` (0.01), ``selection_optional``
    (None, "all" or a list of "errn-errp", "ul", "stat_scan", "sensitivity"), ``energy_edges``
    ``{min, max, nbins}`` (default one bin), ``sum_over_energy_groups`` (true), ``max_niter`` (100). The
    kernel is a point source with a power law of index 2. The pipeline computes the map when the
    section is present (`requested`).
    """

    kernel_width: u.Quantity | None = _field("angle")
    downsampling_factor: int | None = _field("int", min=1)
    n_sigma: float = _field("float", 1.0, required=True)
    n_sigma_ul: float = _field("float", 2.0, required=True)
    threshold: float | None = _field("float")
    rtol: float = _field("float", 0.01, required=True)
    selection_optional: Any = _field("selection", choices=_TS_SELECTION)
    energy_edges: EnergyAxisConfig = _field(EnergyAxisConfig)
    sum_over_energy_groups: bool = _field("bool", True)
    max_niter: int = _field("int", 100, required=True, min=1)
    requested: bool = field(default=False, compare=False)

    def _check(self, key: str) -> None:
        if self.kernel_width is not None and self.kernel_width.value <= 0:
            raise ConfigError(_join(key, "kernel_width"), f"must be > 0, got {self.kernel_width}")
        f = self.downsampling_factor
        if f is not None and f & (f - 1):
            raise ConfigError(_join(key, "downsampling_factor"), f"must be a power of 2, got {f}")
        for name in ("n_sigma", "n_sigma_ul", "rtol"):
            if not getattr(self, name) > 0:
                raise ConfigError(_join(key, name), f"must be > 0, got {getattr(self, name)}")
        _check_map_selection(self.selection_optional, _join(key, "selection_optional"), _TS_SELECTION)

    def estimator_kwargs(self) -> dict:
        """Keyword arguments of `TSMapEstimator`."""
        kwargs = {name: getattr(self, name) for name in (
            "kernel_width", "downsampling_factor", "n_sigma", "n_sigma_ul", "threshold", "rtol",
            "selection_optional", "sum_over_energy_groups", "max_niter")}
        if self.energy_edges.min is not None:
            kwargs["energy_edges"] = self.energy_edges.edges()
        return kwargs


_LC_PARAMS = dict(_FP_PARAMS, atol=("str", {}), stack_over_time_interval=("bool", {}))


@dataclass(frozen=True)
class LightCurveConfig(_Section):
    """``light_curve`` (gammapy's section): ``LightCurveEstimator`` settings.

    ``time_intervals``: ``start``/``stop`` lists of times (ordered, not overlapping; default: one bin per
    GTI of the datasets); ``energy_edges``: ``{min, max, nbins}`` (required when the section is used);
    ``source`` (default "source"); ``parameters``: ``selection_optional``, ``n_sigma``, ``n_sigma_ul``,
    ``n_sigma_sensitivity`` (float), ``reoptimize`` (bool), ``atol`` (a time, e.g. "1e-6 s"). The pipeline
    computes the light curve when ``energy_edges`` or ``time_intervals`` is set (`requested`): gammapy
    writes the section with neither in every configuration it dumps.
    """

    time_intervals: TimeRangeConfig = _field(TimeRangeConfig)
    energy_edges: EnergyAxisConfig = _field(EnergyAxisConfig)
    source: str = _field("str", "source", required=True)
    parameters: dict = _field("params", {"selection_optional": "all"})

    @property
    def requested(self) -> bool:
        """True when the section asks for a light curve (energy edges or time intervals given)."""
        return self.energy_edges.is_set or self.time_intervals.is_set

    def _check(self, key: str) -> None:
        params = _check_params(self.parameters, _LC_PARAMS, _join(key, "parameters"))
        for name in ("n_sigma", "n_sigma_ul", "n_sigma_sensitivity"):
            if name in params and not params[name] > 0:
                raise ConfigError(_join(key, f"parameters.{name}"), f"must be > 0, got {params[name]}")
        if "atol" in params:
            try:
                atol = u.Quantity(params["atol"])
                ok = atol.unit.is_equivalent(u.s) and atol.value >= 0
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ConfigError(_join(key, "parameters.atol"), f"expected a time >= 0 such as '1e-6 s', "
                                                                 f"got {params['atol']!r}")
        if params.get("stack_over_time_interval"):
            raise ConfigError(_join(key, "parameters.stack_over_time_interval"),
                              "stacking the datasets of a time bin is not supported")
        object.__setattr__(self, "parameters", params)
        tkey = _join(key, "time_intervals")
        if self.time_intervals.is_set:
            start, stop = self.time_intervals.start, self.time_intervals.stop
            if not start.isscalar:
                for i in range(1, len(start)):
                    if start[i] < start[i - 1]:
                        raise ConfigError(_join(tkey, "start"), f"interval {i} ({start[i].isot}) starts before "
                                                                f"interval {i - 1} ({start[i - 1].isot}): "
                                                                "intervals must be ordered in time")
                    if start[i] < stop[i - 1]:
                        raise ConfigError(_join(tkey, "start"), f"interval {i} ({start[i].isot}) starts before "
                                                                f"interval {i - 1} stops ({stop[i - 1].isot}): "
                                                                "intervals must not overlap")
            if not self.energy_edges.is_set:
                raise ConfigError(_join(key, "energy_edges"), "required (min, max, nbins) when time_intervals "
                                                              "are given")

    def intervals(self) -> list | None:
        """(start, stop) `~astropy.time.Time` pairs, or None for one bin per GTI of the datasets."""
        return self.time_intervals.intervals() or None

    def estimator_kwargs(self) -> dict:
        """Keyword arguments of `LightCurveEstimator` (``fit`` and ``backend`` are the caller's)."""
        kwargs = dict(self.parameters, source=self.source, time_intervals=self.intervals())
        if self.energy_edges.is_set:
            kwargs["energy_edges"] = self.energy_edges.edges()
        return kwargs


@dataclass(frozen=True)
class RayConfig(_Section):
    """``ray`` (extension): where and how the run executes.

    A command-line flag overrides the value here, and ``$RAY_ADDRESS`` overrides ``address``
    (precedence: flag > environment > config > default; `gamma_ray_dist.distributed.ExecutionSettings`).

    Attributes
    ----------
    address : str or None
        Cluster address (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); None = ``$RAY_ADDRESS``
        (set by ``ray job submit`` and RayJob), else a new local Ray.
    num_cpus : int or None
        CPUs for a local Ray (None = all of this machine).
    max_in_flight : int or None
        Bound on reduction tasks in flight; None = 2 x cluster CPUs.
    block_size : int or None
        Observations one task folds, in obs id order, into one state (>= 1); None (default) = chosen
        from the number of observations: at least 4 blocks, at most 8 observations each. Part of the
        result's definition (the summation order): the same value gives the same bits on any backend.
    merge_fan_in : int
        Block states merged by one reducer below the root (>= 2); also part of the result's definition.
    strict : bool
        If True, the first failing observation aborts the run; else it is recorded and skipped.
    connect_timeout : float
        Seconds to wait for a TCP connection to ``address`` before the run is refused (> 0).
    """

    address: str | None = _field("str")
    num_cpus: int | None = _field("int", min=1)
    max_in_flight: int | None = _field("int", min=1)
    block_size: int | None = _field("int", min=1)
    merge_fan_in: int = _field("int", 256, required=True, min=2)
    strict: bool = _field("bool", False)
    connect_timeout: float = _field("float", 10.0, required=True, min=0.001)


# --------------------------------------------------------------------------------------------------
# top level
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnalysisConfig(_Section):
    """A validated 3D stacked analysis configuration (gammapy ``AnalysisConfig`` YAML + extensions).

    Build with :meth:`read`, :meth:`from_yaml` or :meth:`from_dict` (these validate); the dataclasses
    are frozen, derive variants with :meth:`replace_ray` or ``dataclasses.replace``.
    """

    general: GeneralConfig = _field(GeneralConfig)
    observations: ObservationsConfig = _field(ObservationsConfig)
    datasets: DatasetsConfig = _field(DatasetsConfig)
    fit: FitConfig = _field(FitConfig)
    flux_points: FluxPointsConfig = _field(FluxPointsConfig)
    excess_map: ExcessMapConfig = _field(ExcessMapConfig)
    light_curve: LightCurveConfig = _field(LightCurveConfig)
    ray: RayConfig = _field(RayConfig, extension=True)
    ts_map: TsMapConfig = _field(TsMapConfig, extension=True)

    _IGNORED_KEYS = ("metadata",)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AnalysisConfig":
        """Validate a nested mapping (as loaded from YAML) into an ``AnalysisConfig``.

        Raises
        ------
        ConfigError
            Naming the dotted key of the first invalid, unknown or missing value.
        """
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError("<root>", f"expected a mapping at the top level, got {type(data).__name__}")
        _check_datasets_kind(data)
        config = _build(cls, data, "")
        for name in ("excess_map", "ts_map"):
            object.__setattr__(getattr(config, name), "requested", name in data)
        return config

    @classmethod
    def from_yaml(cls, text: str) -> "AnalysisConfig":
        """Parse and validate YAML text (a syntax error gives its line and column, on one line)."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("<yaml>", yaml_error_reason(exc)) from None
        return cls.from_dict(data)

    @classmethod
    def read(cls, path: str | Path) -> "AnalysisConfig":
        """Read and validate a YAML file; errors name the key and the file."""
        path = Path(path)
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise ConfigError("<file>", "file not found", str(path)) from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise ConfigError("<file>", f"cannot read: {reason}", str(path)) from None
        try:
            return cls.from_yaml(text)
        except ConfigError as exc:
            raise exc.in_file(path) from None

    def to_dict(self, gammapy_compatible: bool = False) -> dict:
        """Plain nested dict (quantities as ``"value unit"`` strings) that :meth:`from_dict` reads back.

        With ``gammapy_compatible=True`` our extension keys are left out, so gammapy's
        ``AnalysisConfig`` accepts the result.
        """
        return _dump(self, gammapy_compatible)

    def to_yaml(self, gammapy_compatible: bool = False) -> str:
        """YAML text (see :meth:`to_dict`)."""
        return yaml.safe_dump(self.to_dict(gammapy_compatible), sort_keys=False, indent=4)

    def write(self, path: str | Path, overwrite: bool = False, gammapy_compatible: bool = False) -> None:
        """Write YAML to ``path``."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; use overwrite=True")
        path.write_text(self.to_yaml(gammapy_compatible))

    def replace_ray(self, **changes: Any) -> "AnalysisConfig":
        """Return a copy with ``ray`` fields changed (e.g. CLI ``--address``/``--num-cpus``/``--strict``);
        values of None are ignored."""
        changes = {k: v for k, v in changes.items() if v is not None}
        data = self.to_dict()
        data["ray"].update(changes)
        return replace(self, ray=_build(RayConfig, data["ray"], "ray"))

    def _post_dump(self, out: dict, gammapy_compatible: bool) -> dict:
        if "light_curve" in out and not self.light_curve.requested:
            out.pop("light_curve")
        for name in ("excess_map", "ts_map"):
            if name in out and not getattr(self, name).requested:
                out.pop(name)
        return out

