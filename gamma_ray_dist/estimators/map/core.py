"""`FluxMaps`: sky maps of a norm-based flux estimate, in gammapy's ``FluxMaps`` FITS format.

The maps are stored as "likelihood" quantities (``norm``, ``norm_err``, ``norm_ul``, ``ts``, ``npred``
...) relative to a reference model; ``flux``, ``dnde``, ``eflux``, ``e2dnde`` (and their ``_err``,
``_errn``, ``_errp``, ``_ul`` forms) are the norms times the reference model's values in each energy
bin (`reference_fluxes`, shared with `FluxPoints`).

File layout (what gammapy 2.1 ``FluxMaps.write``/``read`` use): a primary HDU with ``SED_TYPE =
'likelihood'`` and ``MODEL`` = path of the reference model YAML; one image HDU per quantity named in
upper case, each followed by its own ``<NAME>_BANDS`` energy table; a ``GTI`` table when known.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from ...errors import GammaRayDistError
from ...maps import Map
from ..reference import reference_fluxes

__all__ = ["FluxMaps", "EstimatorInputError", "MapEstimator", "SED_QUANTITIES"]

SED_QUANTITIES = {
    "dnde": ("ref_dnde", "cm-2 s-1 TeV-1"),
    "e2dnde": ("ref_e2dnde", "TeV cm-2 s-1"),
    "flux": ("ref_flux", "cm-2 s-1"),
    "eflux": ("ref_eflux", "TeV cm-2 s-1"),
}
_NORM_SUFFIXES = ("", "_err", "_errn", "_errp", "_ul", "_sensitivity")
# order of the HDUs gammapy writes (quantities absent from a result are skipped)
_WRITE_ORDER = ("norm", "norm_err", "norm_errn", "norm_errp", "norm_ul", "norm_sensitivity", "ts", "sqrt_ts",
                "npred", "npred_excess", "stat", "stat_null", "stat_scan", "dnde_scan_values", "niter", "is_ul",
                "counts", "success",
                "alpha", "acceptance_on", "acceptance_off")


class EstimatorInputError(GammaRayDistError, ValueError):
    """An estimator cannot run on the given dataset or settings; the message names the cause."""


class MapEstimator:
    """What the map estimators share: ``selection_optional`` validated against the optional
    quantities they compute, and the check of their positive parameters."""

    tag = "MapEstimator"
    _available_selection_optional: list[str] = ["errn-errp", "ul"]

    @property
    def selection_optional(self) -> list:
        return self._selection_optional

    @selection_optional.setter
    def selection_optional(self, value: Any) -> None:
        if value is None:
            value = []
        elif value == "all":
            value = list(self._available_selection_optional)
        value = list(value)
        unknown = [v for v in value if v not in self._available_selection_optional]
        if unknown:
            raise EstimatorInputError(f"{self.tag}: selection_optional {unknown} not supported; "
                                      f"choose among {self._available_selection_optional} or 'all'")
        self._selection_optional = value

    def _require_positive(self, **values: Any) -> None:
        """Raise `EstimatorInputError` naming the first parameter that is not > 0."""
        for name, value in values.items():
            if not value > 0:
                raise EstimatorInputError(f"{self.tag}: {name} must be positive, got {value}")


class FluxMaps:
    """Flux maps of one estimator run (gammapy's ``FluxMaps`` names, "likelihood" storage).

    Parameters
    ----------
    data : dict of str to `WcsNDMap`
        Norm-based quantities on one geometry with an ``energy`` axis.
    reference_model : `SkyModel`
        Reference model; its spectral model converts norms into fluxes.
    meta : dict, optional
        ``n_sigma``, ``n_sigma_ul``, ... of the estimator.
    gti : `GTI`, optional
    """

    def __init__(self, data: dict, reference_model: Any = None, meta: dict | None = None, gti: Any = None):
        if "norm" not in data:
            raise ValueError("FluxMaps needs at least a 'norm' map")
        self._data = dict(data)
        if reference_model is None:
            from ...modeling.models import PointSpatialModel, PowerLawSpectralModel, SkyModel

            reference_model = SkyModel(spectral_model=PowerLawSpectralModel(index=2),
                                       spatial_model=PointSpatialModel(), name="reference")
        self.reference_model = reference_model
        self.meta = dict(meta or {})
        self.meta.setdefault("sed_type_init", "likelihood")
        self.gti = gti

    # -- basic --------------------------------------------------------------------------------
    @property
    def geom(self):
        return self._data["norm"].geom

    @property
    def energy_axis(self):
        return self.geom.axes["energy"]

    @property
    def available_quantities(self) -> list[str]:
        return list(self._data)

    @property
    def sed_type_init(self) -> str:
        return self.meta.get("sed_type_init", "likelihood")

    @property
    def n_sigma(self) -> float:
        return self.meta.get("n_sigma", 1)

    @property
    def n_sigma_ul(self) -> float:
        return self.meta.get("n_sigma_ul", 2)

    @property
    def sqrt_ts_threshold_ul(self) -> float:
        return self.meta.get("sqrt_ts_threshold_ul", 2)

    def _reference(self) -> dict[str, np.ndarray]:
        axis = self.energy_axis
        edges = axis.edges.to_value("TeV")
        return reference_fluxes(self.reference_model.spectral_model, edges[:-1], edges[1:])

    def _map(self, data: np.ndarray, unit: Any = "") -> Any:
        return Map.from_geom(self.geom, data=np.asarray(data), unit=unit)

    # -- quantities ---------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._data

    def _get(self, name: str):
        if name not in self._data:
            raise AttributeError(f"Quantity {name!r} is not available; available: {self.available_quantities}")
        return self._data[name]

    @property
    def sqrt_ts(self):
        if "sqrt_ts" in self._data:
            return self._data["sqrt_ts"]
        ts = np.clip(np.asarray(self._get("ts").data, dtype=float), 0, None)
        norm = np.asarray(self._data["norm"].data, dtype=float)
        with np.errstate(invalid="ignore"):
            return self._map(np.where(norm > 0, np.sqrt(ts), -np.sqrt(ts)))

    @property
    def is_ul(self):
        if "is_ul" in self._data:
            return self._data["is_ul"]
        norm = np.asarray(self._data["norm"].data, dtype=float)
        if "norm_ul" in self._data and ("ts" in self._data or "sqrt_ts" in self._data):
            with np.errstate(invalid="ignore"):
                data = np.asarray(self.sqrt_ts.data) < self.sqrt_ts_threshold_ul
        elif "norm_ul" in self._data:
            data = np.isfinite(np.asarray(self._data["norm_ul"].data))
        else:
            data = np.isnan(norm)
        return self._map(data)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        data = self.__dict__.get("_data", {})
        if name in data:
            return data[name]
        for sed, (ref_key, unit) in SED_QUANTITIES.items():
            if name.startswith(sed) and name[len(sed):] in _NORM_SUFFIXES:
                norm_name = "norm" + name[len(sed):]
                if norm_name not in data:
                    raise AttributeError(f"Quantity {norm_name!r} (needed for {name!r}) is not available")
                ref = self._reference()[ref_key]
                values = np.asarray(data[norm_name].data, dtype=float) * ref[:, None, None]
                return self._map(values, unit)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    # -- I/O ----------------------------------------------------------------------------------
    def to_maps(self) -> dict:
        """The maps gammapy writes for ``sed_type='likelihood'`` (adds ``sqrt_ts`` and ``is_ul``)."""
        maps = dict(self._data)
        if "ts" in maps and "sqrt_ts" not in maps:
            maps["sqrt_ts"] = self.sqrt_ts
        if "is_ul" not in maps:
            maps["is_ul"] = self.is_ul
        ordered = {k: maps[k] for k in _WRITE_ORDER if k in maps}
        ordered.update({k: v for k, v in maps.items() if k not in ordered})
        return ordered

    def to_hdulist(self, sed_type: str | None = None) -> fits.HDUList:
        """HDU list in gammapy's layout (``sed_type`` must be "likelihood")."""
        if sed_type not in (None, "likelihood"):
            raise ValueError(f"Only sed_type='likelihood' is written, got {sed_type!r}")
        primary = fits.PrimaryHDU()
        primary.header["SED_TYPE"] = "likelihood"
        hdulist = fits.HDUList([primary])
        for name, m in self.to_maps().items():
            data = np.asarray(m.data)
            if data.dtype == bool:
                m = Map.from_geom(m.geom, data=data.astype(np.int64), unit=m.unit)
            hdulist.extend(m.to_hdulist(hdu=name)[1:])
        if self.gti is not None:
            from ...datasets.io import gti_to_table_hdu

            hdulist.append(gti_to_table_hdu(self.gti))
        return hdulist

    @staticmethod
    def default_model_filename(filename: Any) -> Path:
        """gammapy's default reference-model file name: ``<filename>_model.yaml``."""
        return Path(str(filename) + "_model.yaml")

    def write(self, filename: Any, filename_model: Any = None, overwrite: bool = False,
              sed_type: str | None = None, model_path_in_header: Any = None) -> None:
        """Write the maps (FITS) and the reference model (YAML) as gammapy does.

        ``model_path_in_header`` is the model path recorded in the FITS header when it differs from
        where the YAML is written now (atomic writers write into a temporary directory first).
        """
        from ...modeling.models import Models

        filename = Path(filename).expanduser()
        filename_model = self.default_model_filename(filename) if filename_model is None else Path(filename_model)
        hdulist = self.to_hdulist(sed_type)
        Models([self.reference_model]).write(filename_model, overwrite=overwrite, write_covariance=False)
        recorded = filename_model if model_path_in_header is None else Path(model_path_in_header)
        hdulist[0].header["MODEL"] = recorded.as_posix()
        hdulist.writeto(filename, overwrite=overwrite)

    @classmethod
    def from_hdulist(cls, hdulist: fits.HDUList, reference_model: Any = None) -> "FluxMaps":
        sed_type = hdulist[0].header.get("SED_TYPE", "likelihood")
        if sed_type != "likelihood":
            raise ValueError(f"Only 'likelihood' flux maps can be read, this file has SED_TYPE={sed_type!r}")
        data = {}
        for hdu in hdulist[1:]:
            if hdu.is_image and hdu.data is not None:
                name = hdu.name.lower()
                m = Map.from_hdulist(hdulist, hdu=hdu.name)
                if name in ("success", "is_ul"):
                    m = Map.from_geom(m.geom, data=np.asarray(m.data).astype(bool))
                data[name] = m
        if reference_model is None:
            model_file = hdulist[0].header.get("MODEL")
            if model_file and Path(model_file).exists():
                from ...modeling.models import Models

                reference_model = Models.read(model_file)[0]
        gti = None
        if "GTI" in hdulist:
            from ...datasets.io import gti_from_table_hdu

            gti = gti_from_table_hdu(hdulist["GTI"])
        return cls(data, reference_model=reference_model, gti=gti)

    @classmethod
    def read(cls, filename: Any) -> "FluxMaps":
        with fits.open(Path(filename).expanduser()) as hdulist:
            return cls.from_hdulist(hdulist)

    def __str__(self) -> str:
        lines = [type(self).__name__, "-" * len(type(self).__name__), "",
                 f"  geom        : {type(self.geom).__name__}",
                 f"  shape       : {self.geom.data_shape[::-1]}",
                 f"  quantities  : {self.available_quantities}",
                 f"  ref. model  : {getattr(self.reference_model.spectral_model, 'tag', ['?'])[0]}",
                 f"  n_sigma     : {self.n_sigma}", f"  n_sigma_ul  : {self.n_sigma_ul}"]
        return "\n".join(lines)
