"""`FluxPoints`: flux-point container with gammapy's "gadf-sed" table layout (ECSV / FITS I/O).

Light curves (gammapy's "lightcurve" format) are flux points with a leading time axis: every quantity
has shape ``(n_time, n_energy[, ...])`` and ``time_min``/``time_max`` hold the bin bounds.

Internally the "likelihood" SED type: ``norm`` quantities times reference values of a spectral model
(dnde at ``e_ref``, integral flux and energy flux over the bin) give the other SED types. Tables
written here are read by gammapy's ``FluxPoints.read`` with the same values and vice versa.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.time import Time
from scipy import stats

from ..modeling.models.spectral import SpectralModel
from .reference import TabulatedSpectralModel, default_reference_model, reference_fluxes

__all__ = ["FluxPoints", "SED_TYPES", "DEFAULT_UNIT", "TABLE_FORMATS"]

TABLE_FORMATS = ("gadf-sed", "lightcurve")

SED_TYPES = ("likelihood", "dnde", "e2dnde", "flux", "eflux")
# table units (gammapy's DEFAULT_UNIT); internal values are TeV / cm-2 s-1 based
DEFAULT_UNIT = {"dnde": u.Unit("cm-2 s-1 TeV-1"), "e2dnde": u.Unit("erg cm-2 s-1"), "flux": u.Unit("cm-2 s-1"),
                "eflux": u.Unit("erg cm-2 s-1"), "norm": u.Unit("")}
_CANONICAL = {"dnde": u.Unit("cm-2 s-1 TeV-1"), "e2dnde": u.Unit("TeV cm-2 s-1"), "flux": u.Unit("cm-2 s-1"),
              "eflux": u.Unit("TeV cm-2 s-1")}
_SUFFIXES = ("", "_err", "_errp", "_errn", "_ul", "_sensitivity")
_OPTIONAL = {s: [f"{s}_err", f"{s}_errp", f"{s}_errn", f"{s}_ul", f"{s}_sensitivity"] for s in _CANONICAL}
_OPTIONAL["likelihood"] = ["norm_err", "norm_errn", "norm_errp", "norm_ul", "norm_sensitivity"]
_COMMON = ["ts", "sqrt_ts", "npred", "npred_excess", "stat", "stat_null", "stat_scan", "dnde_scan_values",
           "niter", "is_ul", "counts", "success", "n_dof"]
_PER_DATASET = ("counts", "npred", "npred_excess")
_REQUIRED_COLUMNS = {"dnde": ["e_ref", "dnde"], "e2dnde": ["e_ref", "e2dnde"], "flux": ["e_min", "e_max", "flux"],
                     "eflux": ["e_min", "e_max", "eflux"],
                     "likelihood": ["e_min", "e_max", "e_ref", "ref_dnde", "ref_flux", "ref_eflux", "norm"]}
_UNITLESS = ("stat", "stat_scan", "is_ul")  # gammapy writes these without a unit


def _all_quantities(sed_type: str) -> list[str]:
    main = "norm" if sed_type == "likelihood" else sed_type
    out = [main] + _OPTIONAL[sed_type] + _COMMON
    if sed_type == "likelihood":
        out += ["stat_scan", "stat"]
    return out


class FluxPoints:
    """Flux points (one energy axis).

    Parameters
    ----------
    data : dict of str -> ndarray
        ``norm`` (n,) and optional ``norm_err``, ``norm_errp``, ``norm_errn``, ``norm_ul``, ``ts``,
        ``sqrt_ts``, ``stat``, ``stat_null``, ``success``, ``is_ul`` (n,), ``counts``/``npred``/
        ``npred_excess`` (n, n_datasets), ``stat_scan`` (n, n_scan) with ``norm_scan`` (n_scan,).
    energy_min, energy_max : ndarray or None
        Bin edges in TeV (None for differential points given at ``energy_ref`` only).
    energy_ref : ndarray, optional
        Reference energies in TeV (default: geometric mean of the edges).
    reference_model : `SpectralModel`, optional
        Model converting norms to dnde/e2dnde/flux/eflux (default: power law of index 2).
    meta : dict, optional
    filter_success_nan : bool
        Report NaN ``norm``/``norm_err`` where ``success`` is False (as gammapy).
    time_min, time_max : `~astropy.time.Time`, optional
        Bounds of the time bins of a light curve (n_time,); the data then have a leading time axis.
    """

    def __init__(self, data: dict, energy_min: Any = None, energy_max: Any = None, energy_ref: Any = None,
                 reference_model: SpectralModel | None = None, meta: dict | None = None,
                 filter_success_nan: bool = True, time_min: Time | None = None, time_max: Time | None = None):
        if "norm" not in data:
            raise ValueError("FluxPoints data needs a 'norm' entry")
        self._data = {k: np.asarray(v) for k, v in data.items()}
        self._e_min = None if energy_min is None else np.asarray(energy_min, dtype=float)
        self._e_max = None if energy_max is None else np.asarray(energy_max, dtype=float)
        if energy_ref is None:
            if self._e_min is None:
                raise ValueError("energy_ref is required when the bin edges are not given")
            energy_ref = np.sqrt(self._e_min * self._e_max)
        self._e_ref = np.asarray(energy_ref, dtype=float)
        self.reference_model = reference_model if reference_model is not None else default_reference_model()
        self.meta = dict(meta or {})
        self.meta.setdefault("sed_type_init", "likelihood")
        self.filter_success_nan = filter_success_nan
        if (time_min is None) != (time_max is None):
            raise ValueError("time_min and time_max go together")
        self._time = None
        if time_min is not None:
            time_min, time_max = Time(time_min), Time(time_max)
            if time_min.isscalar:
                time_min, time_max = time_min.reshape(1), time_max.reshape(1)
            if time_min.shape != time_max.shape or time_min.ndim != 1:
                raise ValueError("time_min and time_max must be 1D and of the same length")
            n_time = len(time_min)
            if self._data["norm"].shape[:1] != (n_time,):
                raise ValueError(f"light-curve data need a leading time axis of {n_time}, "
                                 f"'norm' has shape {self._data['norm'].shape}")
            self._time = (time_min, time_max)

    # --- construction ------------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Sequence[dict], dataset_names: Sequence[str], reference_model: SpectralModel,
                  meta: dict | None = None) -> "FluxPoints":
        """Assemble the per-bin dicts of `estimate_flux_point` (per-dataset arrays aligned on names)."""
        names = list(dataset_names)
        data: dict = {}
        keys = [k for k in rows[0] if k not in ("e_min", "e_max", "e_ref", "datasets", "norm_scan")]
        for key in keys:
            if key in _PER_DATASET:
                arr = np.full((len(rows), len(names)), np.nan if key != "counts" else 0.0)
                for i, row in enumerate(rows):
                    for name, value in zip(row.get("datasets", []), np.atleast_1d(row[key])):
                        arr[i, names.index(name)] = value
                data[key] = arr
            elif key == "stat_scan":
                data[key] = np.array([row[key] for row in rows], dtype=float)
            elif key == "success":
                data[key] = np.array([bool(row[key]) for row in rows])
            else:
                data[key] = np.array([row[key] for row in rows], dtype=float)
        if "norm_scan" in rows[0]:
            data["norm_scan"] = np.asarray(rows[0]["norm_scan"], dtype=float)
        e_min = np.array([row["e_min"] for row in rows], dtype=float)
        e_max = np.array([row["e_max"] for row in rows], dtype=float)
        return cls(data, e_min, e_max, reference_model=reference_model, meta=meta)

    @classmethod
    def from_time_bins(cls, bins: Sequence["FluxPoints"], time_min: Time, time_max: Time,
                       meta: dict | None = None) -> "FluxPoints":
        """Light curve from per-time-bin flux points (same energy bins and reference model).

        Quantities missing in some bins are NaN there (``success`` False); ``norm_scan`` is the first
        bin's.
        """
        if len(bins) == 0:
            raise ValueError("a light curve needs at least one time bin")
        first = bins[0]
        keys: list[str] = []
        for fp in bins:
            keys += [k for k in fp._data if k not in keys]
        data: dict = {}
        for key in keys:
            if key == "norm_scan":
                data[key] = next(fp._data[key] for fp in bins if key in fp._data)
                continue
            ref = next(fp._data[key] for fp in bins if key in fp._data)
            fill = False if ref.dtype == bool else np.nan
            data[key] = np.stack([fp._data[key] if key in fp._data else np.full(ref.shape, fill, dtype=ref.dtype)
                                  for fp in bins])
        return cls(data, first._e_min, first._e_max, first._e_ref, reference_model=first.reference_model,
                   meta=dict(meta if meta is not None else first.meta), filter_success_nan=first.filter_success_nan,
                   time_min=time_min, time_max=time_max)

    # --- time axis (light curves) --------------------------------------------------------------
    @property
    def has_time_axis(self) -> bool:
        """True for a light curve (data with a leading time axis)."""
        return self._time is not None

    def _require_time(self) -> tuple[Time, Time]:
        if self._time is None:
            raise ValueError("These flux points have no time axis (not a light curve)")
        return self._time

    @property
    def time_min(self) -> Time:
        """Start of each time bin."""
        return self._require_time()[0]

    @property
    def time_max(self) -> Time:
        """Stop of each time bin."""
        return self._require_time()[1]

    @property
    def time_ref(self) -> Time:
        """Centre of each time bin."""
        t0, t1 = self._require_time()
        return t0 + 0.5 * (t1 - t0)

    def slice_by_time_idx(self, idx: int) -> "FluxPoints":
        """The flux points (energy axis only) of one time bin."""
        self._require_time()
        data = {k: (v if k == "norm_scan" else v[idx]) for k, v in self._data.items()}
        return type(self)(data, self._e_min, self._e_max, self._e_ref, reference_model=self.reference_model,
                          meta=self.meta, filter_success_nan=self.filter_success_nan)

    # --- energies and reference values --------------------------------------------------------
    @property
    def energy_ref(self) -> u.Quantity:
        return u.Quantity(self._e_ref, "TeV")

    @property
    def energy_min(self) -> u.Quantity:
        return u.Quantity(self._require_edges(self._e_min), "TeV")

    @property
    def energy_max(self) -> u.Quantity:
        return u.Quantity(self._require_edges(self._e_max), "TeV")

    def _require_edges(self, edges):
        if edges is None:
            raise ValueError("Missing energy range definition (e_min/e_max)")
        return edges

    @property
    def has_edges(self) -> bool:
        return self._e_min is not None

    def _ref(self) -> dict[str, np.ndarray]:
        model = self.reference_model
        dnde = np.asarray(model.evaluate_values(self._e_ref), dtype=float)
        out = {"dnde": dnde, "e2dnde": dnde * self._e_ref**2}
        if self.has_edges:
            ref = reference_fluxes(model, self._e_min, self._e_max, energy_ref=self._e_ref)
            out["flux"], out["eflux"] = ref["ref_flux"], ref["ref_eflux"]
        return out

    @property
    def dnde_ref(self) -> u.Quantity:
        return u.Quantity(self._ref()["dnde"], _CANONICAL["dnde"])

    @property
    def flux_ref(self) -> u.Quantity:
        self._require_edges(self._e_min)
        return u.Quantity(self._ref()["flux"], _CANONICAL["flux"])

    @property
    def eflux_ref(self) -> u.Quantity:
        self._require_edges(self._e_min)
        return u.Quantity(self._ref()["eflux"], _CANONICAL["eflux"])

    # --- quantities -------------------------------------------------------------------------
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
    def n_sigma_ul(self):
        return self.meta.get("n_sigma_ul")

    @property
    def sqrt_ts_threshold_ul(self) -> float:
        return self.meta.get("sqrt_ts_threshold_ul", 2)

    @property
    def has_ul(self) -> bool:
        return "norm_ul" in self._data

    @property
    def has_stat_profiles(self) -> bool:
        return "stat_scan" in self._data

    def _get(self, name: str) -> np.ndarray:
        if name not in self._data:
            raise AttributeError(f"Quantity '{name}' is not defined on current flux estimate.")
        return self._data[name]

    def _filtered(self, name: str) -> np.ndarray:
        values = np.array(self._get(name), dtype=float)
        if self.filter_success_nan and "success" in self._data:
            values[~np.asarray(self._data["success"], bool)] = np.nan
        return values

    @property
    def norm(self) -> np.ndarray:
        return self._filtered("norm")

    @property
    def norm_err(self) -> np.ndarray:
        return self._filtered("norm_err")

    norm_errp = property(lambda self: self._get("norm_errp"))
    norm_errn = property(lambda self: self._get("norm_errn"))
    norm_ul = property(lambda self: self._get("norm_ul"))
    norm_sensitivity = property(lambda self: self._get("norm_sensitivity"))
    norm_scan = property(lambda self: self._get("norm_scan"))
    ts = property(lambda self: self._get("ts"))
    stat = property(lambda self: self._get("stat"))
    stat_null = property(lambda self: self._get("stat_null"))
    stat_scan = property(lambda self: self._get("stat_scan"))
    counts = property(lambda self: self._get("counts"))
    npred = property(lambda self: self._get("npred"))
    npred_excess = property(lambda self: self._get("npred_excess"))
    success = property(lambda self: np.asarray(self._get("success"), bool))

    @property
    def sqrt_ts(self) -> np.ndarray:
        """sqrt(TS), negative where the norm is not positive (unless given explicitly)."""
        if "sqrt_ts" in self._data:
            return self._data["sqrt_ts"]
        ts = np.clip(self._get("ts"), 0, None)
        with np.errstate(invalid="ignore"):
            return np.where(self.norm > 0, np.sqrt(ts), -np.sqrt(ts))

    @property
    def is_ul(self) -> np.ndarray:
        if "is_ul" in self._data:
            return np.asarray(self._data["is_ul"], bool)
        if self.has_ul and ("ts" in self._data or "sqrt_ts" in self._data):
            return self.sqrt_ts < self.sqrt_ts_threshold_ul
        if self.has_ul:
            return np.isfinite(self._data["norm_ul"])
        return np.isnan(self.norm)

    @is_ul.setter
    def is_ul(self, value: Any) -> None:
        self._data["is_ul"] = np.asarray(value, bool)

    def _sed(self, sed_type: str, suffix: str) -> u.Quantity:
        norm = getattr(self, "norm" + suffix)
        return u.Quantity(norm * self._ref()[sed_type], _CANONICAL[sed_type])

    def __getattr__(self, name: str):
        # dnde, dnde_err, ..., eflux_ul: norm quantity times the reference value
        for sed_type in _CANONICAL:
            if name.startswith(sed_type):
                suffix = name[len(sed_type):]
                if suffix in _SUFFIXES and not (sed_type == "e2dnde" and name.startswith("eflux")):
                    return self._sed(sed_type, suffix)
        raise AttributeError(f"{type(self).__name__!r} has no attribute {name!r}")

    # --- tables -----------------------------------------------------------------------------
    def to_table(self, sed_type: str | None = None, format: str | None = None, formatted: bool = False) -> Table:
        """Table in gammapy's "gadf-sed" layout and units (``e2dnde``/``eflux`` in erg cm-2 s-1).

        ``format="lightcurve"`` (the default for a light curve): one row per time bin, ``time_min`` and
        ``time_max`` in MJD (``TIMESYS`` tt, ``MJDREFI``/``MJDREFF`` 0, ``TIMEUNIT`` d) and each
        gadf-sed column as an array over the energy bins, as gammapy writes it.
        """
        sed_type = sed_type or self.sed_type_init
        if sed_type not in SED_TYPES:
            raise ValueError(f"Unknown SED type: {sed_type!r}; choose from {SED_TYPES}")
        if format is None:
            format = "lightcurve" if self.has_time_axis else "gadf-sed"
        if format not in TABLE_FORMATS:
            raise ValueError(f"Unknown table format {format!r}; choose from {TABLE_FORMATS}")
        if format == "lightcurve":
            return self._to_lightcurve_table(sed_type, formatted)
        if self.has_time_axis:
            raise ValueError("A light curve can only be written in the 'lightcurve' format")
        table = Table()
        table["e_ref"] = self.energy_ref
        if self.has_edges:
            table["e_min"] = self.energy_min
            table["e_max"] = self.energy_max
        table.meta["SED_TYPE"] = sed_type
        if self.n_sigma_ul:
            table.meta["UL_CONF"] = float(np.round(1 - 2 * stats.norm.sf(self.n_sigma_ul), 7))
        if sed_type == "likelihood":
            ref = self._ref()
            table["ref_dnde"] = u.Quantity(ref["dnde"], _CANONICAL["dnde"])
            table["ref_flux"] = u.Quantity(ref["flux"], _CANONICAL["flux"])
            table["ref_eflux"] = u.Quantity(ref["eflux"], _CANONICAL["eflux"]).to(DEFAULT_UNIT["eflux"])
        for quantity in _all_quantities(sed_type):
            if quantity in table.colnames or quantity == "norm_scan":
                continue
            try:
                value = getattr(self, quantity)
            except (AttributeError, ValueError):
                continue
            if isinstance(value, u.Quantity):
                table[quantity] = value.to(DEFAULT_UNIT[sed_type])
            elif quantity in _UNITLESS or value.dtype == bool and quantity == "is_ul":
                table[quantity] = value
            else:
                table[quantity] = u.Quantity(value, "")
            if quantity == "success":
                table[quantity] = u.Quantity(value.astype(float), "").value.astype(bool)
                table[quantity].unit = ""
        if self.has_stat_profiles:
            scan = np.asarray(self._data["norm_scan"], dtype=float)
            table["norm_scan"] = u.Quantity(np.broadcast_to(scan, (len(self._e_ref), scan.shape[-1])), "")
            table["stat"] = self._data["stat"]
            table["stat_scan"] = self._data["stat_scan"]
        table["is_ul"] = self.is_ul
        if not self.has_ul:
            table.remove_column("is_ul")
        if formatted:
            for c in table.colnames:
                if c.startswith(("dnde", "eflux", "flux", "e2dnde", "ref")):
                    table[c].format = ".3e"
                elif c.startswith(("e_min", "e_max", "e_ref", "sqrt_ts", "norm", "ts", "stat")):
                    table[c].format = ".3f"
        return table

    def _to_lightcurve_table(self, sed_type: str, formatted: bool) -> Table:
        t0, t1 = self._require_time()
        rows = []
        for idx in range(len(t0)):
            flat = Table()
            flat["time_min"] = [t0[idx].tt.mjd]
            flat["time_max"] = [t1[idx].tt.mjd]
            table = self.slice_by_time_idx(idx).to_table(sed_type=sed_type, format="gadf-sed", formatted=formatted)
            for name in table.colnames:
                flat[name] = table[name][np.newaxis]
            rows.append(flat)
        out = vstack(rows, metadata_conflicts="silent")
        # times serialised against MJD 0 (gammapy's convention)
        out.meta.update({"MJDREFI": 0, "MJDREFF": 0.0, "TIMESYS": "tt", "TIMEUNIT": "d"})
        return out

    @classmethod
    def _from_lightcurve_table(cls, table: Table, sed_type: str | None,
                               reference_model: SpectralModel | None) -> "FluxPoints":
        meta = dict(table.meta)
        unit = u.Unit(meta.get("TIMEUNIT", "d"))
        scale = str(meta.get("TIMESYS", "tt")).lower()
        ref = Time(float(meta.get("MJDREFI", 0)) + float(meta.get("MJDREFF", 0.0)), format="mjd", scale=scale)
        t0 = ref + u.Quantity(np.asarray(table["time_min"], dtype=float), unit)
        t1 = ref + u.Quantity(np.asarray(table["time_max"], dtype=float), unit)
        t0.format = t1.format = "mjd"
        names = [n for n in table.colnames if n not in ("time_min", "time_max")]
        bins = []
        for idx in range(len(table)):
            sub = Table([table[n][idx] for n in names], names=names, meta=meta)
            for n in names:
                sub[n].unit = table[n].unit
            bins.append(cls.from_table(sub, sed_type=sed_type, format="gadf-sed", reference_model=reference_model))
        return cls.from_time_bins(bins, t0, t1)

    @classmethod
    def from_table(cls, table: Table, sed_type: str | None = None, format: str | None = None,
                   reference_model: SpectralModel | None = None) -> "FluxPoints":
        """Flux points from a "gadf-sed" or "lightcurve" table (ours or gammapy's; guessed when None)."""
        if format is None:
            format = "lightcurve" if "time_min" in table.colnames else "gadf-sed"
        if format not in TABLE_FORMATS:
            raise ValueError(f"Unknown table format {format!r}; choose from {TABLE_FORMATS}")
        if format == "lightcurve":
            return cls._from_lightcurve_table(Table(table), sed_type, reference_model)
        table = Table(table)
        names = table.colnames
        sed_type = sed_type or table.meta.get("SED_TYPE")
        if sed_type is None:
            sed_type = next((s for s, req in _REQUIRED_COLUMNS.items() if set(req).issubset(names)), None)
        if sed_type not in SED_TYPES:
            raise ValueError("Specifying the SED type is required" if sed_type is None
                             else f"Unknown SED type: {sed_type!r}")
        for old, new in (("loglike", "stat"), ("loglike_null", "stat_null"), ("dloglike_scan", "stat_scan")):
            if old in names and new not in names:
                table[new] = 2 * table[old]

        def col(name, unit=None):
            c = table[name]
            if unit is not None and c.unit is not None:
                return u.Quantity(c.data, c.unit).to_value(unit)
            return np.asarray(c.data)

        e_min = col("e_min", "TeV").astype(float) if "e_min" in names else None
        e_max = col("e_max", "TeV").astype(float) if "e_max" in names else None
        e_ref = np.sqrt(e_min * e_max) if e_min is not None else col("e_ref", "TeV").astype(float)
        data: dict = {}
        if sed_type == "likelihood":
            if reference_model is None:
                reference_model = TabulatedSpectralModel(col("e_ref", "TeV"), col("ref_dnde", _CANONICAL["dnde"]))
            for key in ["norm"] + _OPTIONAL["likelihood"]:
                if key in names:
                    data[key] = col(key).astype(float)
        else:
            if reference_model is None:
                reference_model = default_reference_model()
            tmp = cls({"norm": np.zeros(len(e_ref))}, e_min, e_max, e_ref, reference_model)
            factor = tmp._ref()[sed_type]
            for key in [sed_type] + _OPTIONAL[sed_type]:
                if key in names:
                    data[key.replace(sed_type, "norm", 1)] = col(key, _CANONICAL[sed_type]) / factor
        for key in _COMMON + ["norm_scan"]:
            if key in names and key not in data:
                value = col(key)
                if key == "norm_scan":
                    value = np.asarray(value, dtype=float)
                    value = value[0] if value.ndim == 2 else value
                if key in _PER_DATASET and value.ndim == 1:
                    value = value[:, np.newaxis]
                data[key] = value
        meta = dict(table.meta)
        conf_ul = table.meta.get("UL_CONF")
        if conf_ul:
            meta["n_sigma_ul"] = float(np.round(stats.norm.isf(0.5 * (1 - conf_ul)), 1))
        meta["sed_type_init"] = table.meta.get("SED_TYPE", sed_type)
        return cls(data, e_min, e_max, e_ref, reference_model=reference_model, meta=meta)

    # --- files ------------------------------------------------------------------------------
    def write(self, filename: Any, sed_type: str | None = None, format: str | None = None,
              overwrite: bool = False) -> None:
        """Write an ECSV table (or a FITS ``FLUXPOINTS`` HDU when the name ends in .fits[.gz])."""
        path = Path(filename).expanduser()
        table = self.to_table(sed_type=sed_type or self.sed_type_init, format=format)
        if ".fits" in path.suffixes:
            hdus = fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)])
            hdus[1].name = "FLUXPOINTS"
            hdus.writeto(path, overwrite=overwrite)
            return
        table.write(path, format="ascii.ecsv", overwrite=overwrite)

    @classmethod
    def read(cls, filename: Any, sed_type: str | None = None, format: str | None = None,
             reference_model: SpectralModel | None = None, **kwargs) -> "FluxPoints":
        """Read an ECSV (or FITS) flux-point table or light curve written by us or by gammapy."""
        path = Path(filename).expanduser()
        if ".fits" in path.suffixes:
            with fits.open(path) as hdulist:
                hdu = hdulist["FLUXPOINTS"] if "FLUXPOINTS" in hdulist else hdulist[1]
                table = Table.read(hdu)
        else:
            table = Table.read(path, format="ascii.ecsv", **kwargs)
        return cls.from_table(table, sed_type=sed_type, format=format, reference_model=reference_model)

    # --- display ----------------------------------------------------------------------------
    def plot(self, ax: Any = None, sed_type: str | None = None, **kwargs: Any) -> Any:
        """Plot the flux points with error bars (upper limits as downward arrows), as gammapy.

        Parameters
        ----------
        ax : `~matplotlib.axes.Axes`, optional
            Axes to draw on (default: the current axes).
        sed_type : {"dnde", "e2dnde", "flux", "eflux"}, optional
            Quantity to plot (default: ``sed_type_plot_default``).
        **kwargs
            Passed to `~gamma_ray_dist.visualization.plot_flux_points` (``energy_power``, then
            ``ax.errorbar``).

        Returns
        -------
        ax : `~matplotlib.axes.Axes`
        """
        # imported here: the plotting code (and matplotlib) only when a plot is drawn
        if self.has_time_axis:
            from ..visualization.light_curve import plot_light_curve

            return plot_light_curve(self, ax=ax, sed_type=sed_type, **kwargs)
        from ..visualization.spectral import plot_flux_points

        return plot_flux_points(self, ax=ax, sed_type=sed_type, **kwargs)

    def __len__(self) -> int:
        return len(self._e_ref)

    def __str__(self) -> str:
        n_time = f"  n time bins      : {len(self._time[0])}\n" if self.has_time_axis else ""
        return (f"FluxPoints\n----------\n\n  n points         : {len(self)}\n{n_time}"
                f"  quantities       : {self.available_quantities}\n"
                f"  ref. model       : {type(self.reference_model).__name__}\n"
                f"  sed type init    : {self.sed_type_init}\n")
