"""`MapDataset`: counts, exposure, background, PSF / EDisp maps, masks, GTI and models.

Mirrors gammapy 2.1's ``MapDataset`` for what the seed workflow uses: ``create``,
``cutout``, ``stack``, ``write``/``read`` (gammapy-compatible FITS) and the summary
``__str__``. Model evaluation (``npred``, ``npred_signal``, ``stat_sum``, ...) comes from the
`MapDatasetEvaluation` mixin (``map_evaluation.py``).
"""
from __future__ import annotations

import copy
from typing import Any, Optional

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from ..maps import Map, MapAxis
from ..maps.wcs import as_unit
from ..modeling.dataset import Dataset
from .io import (
    creation_header,
    gti_from_met,
    gti_from_table_hdu,
    gti_to_table_hdu,
    gti_union_met,
    hstack_meta_tables,
    meta_table_from_rows,
)
from .irf_maps import EDispKernelMap, PSFMap
from .map_evaluation import MapDatasetEvaluation
from .partial import PartialDataset, StackGeometry, time_from_tuple
from .stacking import window_slices

__all__ = ["MapDataset", "RAD_AXIS_DEFAULT", "MIGRA_AXIS_DEFAULT", "BINSZ_IRF_DEFAULT",
           "create_map_dataset_geoms"]

RAD_AXIS_DEFAULT = MapAxis.from_bounds(0, 0.66, nbin=66, node_type="edges", name="rad", unit="deg")
MIGRA_AXIS_DEFAULT = MapAxis.from_bounds(0.2, 5, nbin=48, node_type="edges", name="migra")
BINSZ_IRF_DEFAULT = 0.2 * u.deg

_counter = [0]


def _make_name(name: Optional[str]) -> str:
    if name is None:
        # gammapy uses a random 8-character id; a counter is enough to be unique in a process
        _counter[0] += 1
        return f"dataset-{_counter[0]:04d}"
    return str(name)


def create_map_dataset_geoms(geom, energy_axis_true=None, migra_axis=None, rad_axis=None,
                             binsz_irf=BINSZ_IRF_DEFAULT) -> dict:
    """Geometries of a `MapDataset` as gammapy builds them.

    The IRF maps live on ``geom.to_image().to_binsz(binsz_irf)`` (same centre and width).
    """
    rad_axis = rad_axis or RAD_AXIS_DEFAULT
    if energy_axis_true is not None:
        energy_axis_true.assert_name("energy_true")
    else:
        energy_axis_true = geom.axes["energy"].copy(name="energy_true")
    binsz = u.Quantity(binsz_irf, "deg").value if binsz_irf is not None else BINSZ_IRF_DEFAULT.value
    geom_image = geom.to_image()
    geom_irf = geom_image.to_binsz(binsz)
    if migra_axis:
        raise NotImplementedError("EDispMap (migra axis) is not supported; use an EDispKernelMap")
    edisp_axes = [geom.axes["energy"], energy_axis_true]
    return {
        "geom": geom,
        "geom_exposure": geom_image.to_cube([energy_axis_true]),
        "geom_psf": geom_irf.to_cube([rad_axis, energy_axis_true]),
        "geom_edisp": geom_irf.to_cube(edisp_axes),
    }


class MapDataset(MapDatasetEvaluation, Dataset):
    """Binned 3D dataset (gammapy-compatible).

    Parameters
    ----------
    models : list or `Models`, optional
    counts, exposure, background, mask_safe, mask_fit : `WcsNDMap`, optional
    psf : `PSFMap`, optional
    edisp : `EDispKernelMap`, optional
    gti : `GTI`, optional
    meta_table : `~astropy.table.Table`, optional
    name : str, optional
    """

    tag = "MapDataset"
    stat_type = "cash"

    def __init__(self, models=None, counts=None, exposure=None, background=None, psf=None, edisp=None,
                 mask_safe=None, mask_fit=None, gti=None, meta_table=None, name=None, meta=None):
        super().__init__(name=_make_name(name))
        if psf is not None and not isinstance(psf, PSFMap):
            raise ValueError(f"'psf' must be a PSFMap, got {type(psf).__name__}")
        if edisp is not None and not isinstance(edisp, EDispKernelMap):
            raise ValueError(f"'edisp' must be an EDispKernelMap, got {type(edisp).__name__}")
        self.counts = counts
        self.exposure = exposure
        self.background = background
        self.psf = psf
        self.edisp = edisp
        self.mask_safe = mask_safe
        self.mask_fit = mask_fit
        self.gti = gti
        self.meta_table = meta_table
        self.meta = meta or {}
        self._evaluators: dict = {}
        self.models = models

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_geoms(cls, geom, geom_exposure=None, geom_psf=None, geom_edisp=None,
                   reference_time="2000-01-01", name=None, **kwargs) -> "MapDataset":
        """Zero-filled dataset on the given geometries (EDisp: diagonal response, as gammapy)."""
        kwargs = dict(kwargs)
        kwargs["counts"] = Map.from_geom(geom, unit="")
        kwargs["background"] = Map.from_geom(geom, unit="")
        if geom_exposure is not None:
            kwargs["exposure"] = Map.from_geom(geom_exposure, unit="m2 s")
        if geom_edisp is not None:
            kwargs["edisp"] = EDispKernelMap.from_geom(geom_edisp)
        if geom_psf is not None:
            kwargs["psf"] = PSFMap.from_geom(geom_psf)
        kwargs.setdefault("gti", gti_from_met(np.zeros(0), np.zeros(0), Time(reference_time)))
        kwargs["mask_safe"] = Map.from_geom(geom, unit="", dtype=bool)
        return cls(name=name, **kwargs)

    @classmethod
    def create(cls, geom, energy_axis_true=None, migra_axis=None, rad_axis=None,
               binsz_irf=BINSZ_IRF_DEFAULT, reference_time="2000-01-01", name=None,
               meta_table=None, **kwargs) -> "MapDataset":
        """Zero-filled dataset with gammapy's default IRF geometries.

        Parameters
        ----------
        geom : `WcsGeom`
            Counts/background geometry with an ``energy`` axis.
        energy_axis_true : `MapAxis`, optional
            True-energy axis of the IRF maps (default: the reco axis renamed).
        rad_axis : `MapAxis`, optional
            PSF rad axis (default 0-0.66 deg in 66 bins).
        binsz_irf : `~astropy.units.Quantity`
            Pixel size of the coarse IRF geometry (default 0.2 deg).
        """
        geoms = create_map_dataset_geoms(geom, energy_axis_true=energy_axis_true, migra_axis=migra_axis,
                                         rad_axis=rad_axis, binsz_irf=binsz_irf)
        kwargs.update(geoms)
        return cls.from_geoms(reference_time=reference_time, name=name, meta_table=meta_table, **kwargs)

    # -- geometry & masks ----------------------------------------------------------------------
    @property
    def _geom(self):
        for m in (self.counts, self.background, self.mask_safe, self.mask_fit):
            if m is not None:
                return m.geom
        raise ValueError("Either 'counts', 'background', 'mask_fit' or 'mask_safe' must be defined.")

    @property
    def geoms(self) -> dict:
        geoms = {"geom": self._geom}
        if self.exposure is not None:
            geoms["geom_exposure"] = self.exposure.geom
        if self.psf is not None:
            geoms["geom_psf"] = self.psf.psf_map.geom
        if self.edisp is not None:
            geoms["geom_edisp"] = self.edisp.edisp_map.geom
        return geoms

    @property
    def data_shape(self) -> tuple:
        return self._geom.data_shape

    @property
    def mask(self):
        """Combined fit and safe mask (`WcsNDMap` or None)."""
        if self.mask_safe is None and self.mask_fit is None:
            return None
        if self.mask_safe is None:
            return self.mask_fit
        if self.mask_fit is None:
            return self.mask_safe
        return Map.from_geom(self._geom, data=self.mask_safe.data & self.mask_fit.data, dtype=bool)

    @property
    def mask_safe_image(self):
        if self.mask_safe is None:
            return None
        data = np.asarray(self.mask_safe.data, bool).any(axis=0)
        return Map.from_geom(self._geom.to_image(), data=data, dtype=bool)

    # -- models -------------------------------------------------------------------------------
    @property
    def models(self):
        return self._models

    @models.setter
    def models(self, models) -> None:
        Dataset.models.fset(self, models)
        self._evaluators = {}

    @property
    def background_model(self):
        """The FoV background model of this dataset (named ``<name>-bkg``), or None."""
        if self.models is None:
            return None
        from ..modeling.models import FoVBackgroundModel

        for model in self.models:
            if isinstance(model, FoVBackgroundModel) and self.name in (model.datasets_names or [self.name]):
                return model
        return None

    # -- predictions --------------------------------------------------------------------------
    # npred, npred_signal, npred_background, stat_sum, stat_array, residuals, fake: see
    # `map_evaluation.MapDatasetEvaluation` (model evaluation lives with the evaluator).

    # -- summary ------------------------------------------------------------------------------
    def info_dict(self, in_safe_data_range: bool = True) -> dict:
        """Summary numbers, as gammapy's ``info_dict`` (same keys, same order)."""
        from ..stats import CashCountsStatistic

        info: dict = {"name": self.name}
        mask = slice(None)
        if self.mask_safe is not None and in_safe_data_range:
            mask = np.asarray(self.mask_safe.data, bool)
        counts, background, excess, sqrt_ts = 0, np.nan, np.nan, np.nan
        if self.counts is not None:
            counts = self.counts.data[mask].sum()
            if self.background is not None:
                background = self.background.data[mask].sum()
                # gammapy sums the statistic over the bins: counts and npred_background summed
                stat = CashCountsStatistic(np.sum(np.asarray(self.counts.data, float)[mask]),
                                           np.sum(np.asarray(self.npred_background().data, float)[mask]))
                excess = float(stat.n_sig)
                sqrt_ts = float(stat.sqrt_ts)
        info["counts"] = int(counts)
        info["excess"] = float(excess)
        info["sqrt_ts"] = sqrt_ts
        info["background"] = float(background)
        npred = np.nan
        if self.models or not np.isnan(background):
            npred = self.npred().data[mask].sum()
        info["npred"] = float(npred)
        info["npred_background"] = float(self.npred_background().data[mask].sum()) \
            if self.background is not None else np.nan
        npred_signal = np.nan
        if self.models and (len(self.models) > 1 or self.background_model is None):
            npred_signal = self.npred_signal().data[mask].sum()
        info["npred_signal"] = float(npred_signal)
        exposure_min = exposure_max = np.nan
        livetime = np.nan * u.s
        if self.exposure is not None:
            sel = self.exposure.data > 0
            if self.mask_safe is not None:
                sel = sel & np.asarray(self.mask_safe.data, bool).any(axis=0)[np.newaxis]
            if not sel.any():
                sel = slice(None)
            exposure_min = float(np.min(self.exposure.data[sel]))
            exposure_max = float(np.max(self.exposure.data[sel]))
            livetime = self.exposure.meta.get("livetime", np.nan * u.s)
        info["exposure_min"] = exposure_min
        info["exposure_max"] = exposure_max
        info["livetime"] = livetime
        info["ontime"] = self.gti.time_sum if self.gti is not None else np.nan * u.s
        info["counts_rate"] = info["counts"] / info["livetime"]
        info["background_rate"] = info["background"] / info["livetime"]
        info["excess_rate"] = info["excess"] / info["livetime"]
        info["n_bins"] = int(self.counts.data.size) if self.counts is not None else 0
        info["n_fit_bins"] = int(np.sum(self.mask.data)) if self.mask is not None else 0
        info["stat_type"] = self.stat_type
        stat_sum = np.nan
        if self.counts is not None and self.models is not None:
            try:
                stat_sum = self.stat_sum()
            except NotImplementedError:
                stat_sum = np.nan
        info["stat_sum"] = float(stat_sum)
        return info

    def __str__(self) -> str:
        unit = "" if self.exposure is None else f" {self.exposure.unit.to_string()}"
        info = self.info_dict()
        lines = [
            "MapDataset", "----------", "",
            "\t{:32}: {} ".format("Name", info["name"]), "",
            "\t{:32}: {:.0f} ".format("Total counts", info["counts"]),
            "\t{:32}: {:.2f}".format("Total background counts", info["background"]),
            "\t{:32}: {:.2f}".format("Total excess counts", info["excess"]), "",
            "\t{:32}: {:.2f}".format("Predicted counts", info["npred"]),
            "\t{:32}: {:.2f}".format("Predicted background counts", info["npred_background"]),
            "\t{:32}: {:.2f}".format("Predicted excess counts", info["npred_signal"]), "",
            "\t{:32}: {:.2e}{}".format("Exposure min", info["exposure_min"], unit),
            "\t{:32}: {:.2e}{}".format("Exposure max", info["exposure_max"], unit), "",
            "\t{:32}: {} ".format("Number of total bins", info["n_bins"]),
            "\t{:32}: {} ".format("Number of fit bins", info["n_fit_bins"]), "",
            "\t{:32}: {}".format("Fit statistic type", info["stat_type"]),
            "\t{:32}: {:.2f}".format("Fit statistic value (-2 log(L))", info["stat_sum"]), "",
        ]
        n_models = n_pars = n_free = 0
        if self.models is not None:
            n_models = len(self.models)
            n_pars = len(self.models.parameters)
            n_free = len(self.models.parameters.free_parameters)
        lines += [
            "\t{:32}: {} ".format("Number of models", n_models),
            "\t{:32}: {}".format("Number of parameters", n_pars),
            "\t{:32}: {}".format("Number of free parameters", n_free), "",
        ]
        text = "\n".join(lines) + "\n"
        if self.models is not None:
            text += "\t" + "\n\t".join(str(self.models).split("\n")[2:])
        return text.expandtabs(tabsize=2)

    # -- cutout -------------------------------------------------------------------------------
    def cutout(self, position, width, mode: str = "trim", name: Optional[str] = None) -> "MapDataset":
        """Cutout of all maps around ``position`` (IRF maps on their coarse grid, >= 3 pixels)."""
        kwargs = dict(gti=self.gti, name=name, meta_table=self.meta_table)
        cut = dict(position=position, width=width, mode=mode)
        for key in ("counts", "exposure", "background", "mask_safe", "mask_fit"):
            m = getattr(self, key)
            if m is not None:
                kwargs[key] = m.cutout(**cut)
        if self.psf is not None:
            kwargs["psf"] = self.psf.cutout(**cut)
        if self.edisp is not None:
            kwargs["edisp"] = self.edisp.cutout(**cut)
        return self.__class__(**kwargs)

    # -- stacking -----------------------------------------------------------------------------
    def stack(self, other: "MapDataset", nan_to_num: bool = True) -> None:
        """Stack another dataset in place, as gammapy (float32 maps updated in place).

        Counts and background (times ``other``'s FoV model) are summed inside ``other``'s safe
        mask, exposure inside its spatial safe mask, PSF/EDisp are exposure-weighted, masks
        OR-ed, GTIs appended and merged, meta tables concatenated.
        """
        partial = PartialDataset.from_dataset(other, StackGeometry.from_dataset(self), obs_id=-1)
        self._apply_partial(partial)
        if self.mask_fit is not None and other.mask_fit is not None:
            self.mask_fit.data[window_slices(partial.fine_bounds)] |= partial.mask_fit
        elif other.mask_fit is not None:
            self.mask_fit = other.mask_fit.copy()
        if self.meta_table is not None and other.meta_table is not None:
            self.meta_table = hstack_meta_tables(self.meta_table, other.meta_table)
        elif other.meta_table is not None:
            self.meta_table = other.meta_table.copy()
        self.reset_evaluators()  # maps were edited in place: cached cutouts and statistic terms are stale

    def to_masked(self, name: Optional[str] = None, nan_to_num: bool = True) -> "MapDataset":
        """This dataset stacked onto an empty one of its geometries, as gammapy (data outside the safe
        mask zeroed, background times the FoV model, no models)."""
        dataset = self.__class__.from_geoms(**self.geoms, name=name)
        dataset.stack(self, nan_to_num=nan_to_num)
        return dataset

    def _apply_partial(self, p: PartialDataset) -> None:
        fine = window_slices(p.fine_bounds)
        self.counts.data[fine] += p.counts.astype(self.counts.data.dtype)
        if self.exposure is not None and p.exposure is not None:
            factor = as_unit("m2 s").to(self.exposure.unit)
            self.exposure.data[fine] += (p.exposure * factor).astype(self.exposure.data.dtype)
            if not np.isnan(p.livetime):
                lt = self.exposure.meta.get("livetime")
                self.exposure.meta["livetime"] = (lt if lt is not None else 0 * u.s) + p.livetime * u.s
        if self.background is not None and p.background is not None:
            background = self.npred_background()
            data = np.asarray(background.data, dtype=self.background.data.dtype).copy()
            data[fine] += p.background.astype(data.dtype)
            self.background = Map.from_geom(self.background.geom, data=data, unit=self.background.unit)
        for irf, w, e, unit in ((self.psf, p.psf_weighted, p.psf_exposure, "sr-1 m2 s"),
                                (self.edisp, p.edisp_weighted, p.edisp_exposure, "m2 s")):
            if irf is None or w is None:
                continue
            coarse = window_slices(p.coarse_bounds)
            dtype = irf._irf_map.data.dtype
            # partial arrays are in canonical units; convert to this dataset's map units
            f_exp = as_unit("m2 s").to(irf.exposure_map.unit)
            f_num = as_unit(unit).to(irf._irf_map.unit * irf.exposure_map.unit)
            num = irf._irf_map.data * irf.exposure_map.data
            num[coarse] += (w * f_num).astype(dtype)
            irf.exposure_map.data[coarse] += (e * f_exp).astype(dtype)
            with np.errstate(invalid="ignore", divide="ignore"):
                irf._irf_map.data = np.nan_to_num(num / irf.exposure_map.data).astype(dtype)
        self.mask_safe.data[fine] |= p.mask_safe
        if self.gti is not None and p.gti_start.size:
            ref = self.gti.time_ref
            offset = (time_from_tuple(p.gti_reference) - ref).to_value("s")
            start, stop = self.gti.met_values() if len(self.gti.table) else (np.zeros(0), np.zeros(0))
            start, stop = gti_union_met(np.concatenate([start, p.gti_start + offset]),
                                        np.concatenate([stop, p.gti_stop + offset]))
            self.gti = gti_from_met(start, stop, ref)

    @classmethod
    def _from_accumulator(cls, acc, name: Optional[str] = None) -> "MapDataset":
        """Finalise a `StackAccumulator` (see `StackAccumulator.to_dataset`)."""
        g = acc.geometry.geoms
        arr = acc.final_arrays()
        kwargs: dict = {}
        kwargs["counts"] = Map.from_geom(g["geom"], data=arr["counts"], unit="")
        kwargs["background"] = Map.from_geom(g["geom"], data=arr["background"], unit="")
        kwargs["mask_safe"] = Map.from_geom(g["geom"], data=arr["mask_safe"], dtype=bool)
        if arr["mask_fit"] is not None:
            kwargs["mask_fit"] = Map.from_geom(g["geom"], data=arr["mask_fit"], dtype=bool)
        if arr["exposure"] is not None:
            meta = {} if np.isnan(acc.livetime) else {"livetime": acc.livetime * u.s}
            kwargs["exposure"] = Map.from_geom(g["geom_exposure"], data=arr["exposure"], unit="m2 s",
                                               meta=meta)
        if arr["psf"] is not None:
            geom = g["geom_psf"]
            kwargs["psf"] = PSFMap(Map.from_geom(geom, data=arr["psf"], unit="sr-1"),
                                   Map.from_geom(geom.squash("rad"), data=arr["psf_exposure"], unit="m2 s"))
        if arr["edisp"] is not None:
            geom = g["geom_edisp"]
            kwargs["edisp"] = EDispKernelMap(
                Map.from_geom(geom, data=arr["edisp"], unit=""),
                Map.from_geom(geom.squash("energy"), data=arr["edisp_exposure"], unit="m2 s"))
        start, stop = gti_union_met(acc.gti_start, acc.gti_stop)
        kwargs["gti"] = gti_from_met(start, stop, time_from_tuple(acc.geometry.reference_time))
        kwargs["meta_table"] = meta_table_from_rows(acc.meta_rows)
        return cls(name=name, **kwargs)

    # -- I/O ----------------------------------------------------------------------------------
    def to_hdulist(self) -> fits.HDUList:
        """HDU list in gammapy's "gadf" dataset layout."""
        primary = fits.PrimaryHDU()
        primary.header["NAME"] = self.name
        hdulist = fits.HDUList([primary])
        for key in ("counts", "exposure", "background"):
            m = getattr(self, key)
            if m is not None:
                hdulist += m.to_hdulist(hdu=key)[1:]
        if self.edisp is not None:
            hdulist += self.edisp.to_hdulist()[1:]
        if self.psf is not None:
            hdulist += self.psf.to_hdulist()[1:]
        for key in ("mask_safe", "mask_fit"):
            m = getattr(self, key)
            if m is not None:
                hdulist += m.to_hdulist(hdu=key)[1:]
        if self.gti is not None:
            hdulist.append(gti_to_table_hdu(self.gti))
        if self.meta_table is not None:
            hdulist.append(fits.BinTableHDU(self.meta_table, name="META_TABLE"))
        creation = creation_header()
        for hdu in hdulist:
            hdu.header.update(creation)
        return hdulist

    def write(self, filename, overwrite: bool = False, checksum: bool = False) -> None:
        """Write to a FITS file that gammapy's ``MapDataset.read`` loads."""
        from pathlib import Path

        path = Path(filename).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.to_hdulist().writeto(path, overwrite=overwrite, checksum=checksum)

    @classmethod
    def from_hdulist(cls, hdulist: fits.HDUList, name: Optional[str] = None) -> "MapDataset":
        kwargs: dict = {"name": name}
        if "COUNTS" in hdulist:
            kwargs["counts"] = Map.from_hdulist(hdulist, hdu="COUNTS")
        if "EXPOSURE" in hdulist:
            exposure = Map.from_hdulist(hdulist, hdu="EXPOSURE")
            if exposure.geom.axes[0].name == "energy":
                axes = [exposure.geom.axes[0].copy(name="energy_true")] + list(exposure.geom.axes[1:])
                exposure = Map.from_geom(exposure.geom.to_image().to_cube(axes), data=exposure.data,
                                         unit=exposure.unit, meta=exposure.meta)
            kwargs["exposure"] = exposure
        if "BACKGROUND" in hdulist:
            kwargs["background"] = Map.from_hdulist(hdulist, hdu="BACKGROUND")
        if "EDISP" in hdulist:
            kwargs["edisp"] = EDispKernelMap.from_hdulist(hdulist)
        if "PSF" in hdulist:
            kwargs["psf"] = PSFMap.from_hdulist(hdulist)
        for key in ("MASK_SAFE", "MASK_FIT"):
            if key in hdulist:
                m = Map.from_hdulist(hdulist, hdu=key)
                kwargs[key.lower()] = Map.from_geom(m.geom, data=np.asarray(m.data, bool), dtype=bool)
        if "GTI" in hdulist:
            kwargs["gti"] = gti_from_table_hdu(hdulist["GTI"])
        if "META_TABLE" in hdulist:
            kwargs["meta_table"] = Table.read(hdulist["META_TABLE"])
        for key in ("counts", "exposure", "background", "mask_safe", "mask_fit"):
            if key in kwargs:
                _to_native(kwargs[key])
        for key in ("psf", "edisp"):
            if key in kwargs:
                _to_native(kwargs[key]._irf_map)
                if kwargs[key].exposure_map is not None:
                    _to_native(kwargs[key].exposure_map)
        return cls(**kwargs)

    @classmethod
    def read(cls, filename, name: Optional[str] = None) -> "MapDataset":
        """Read a dataset written by gammapy or by `write` (name from the primary header)."""
        from pathlib import Path

        path = Path(str(filename)).expanduser()
        with fits.open(path, memmap=False) as hdulist:
            if name is None:
                name = hdulist[0].header.get("NAME")
            return cls.from_hdulist(hdulist, name=name)

    # -- plotting: the drawing code is in gamma_ray_dist.visualization, imported (with matplotlib)
    # only when a plot is drawn.
    def plot_residuals_spatial(self, ax: Any = None, method: str = "diff", smooth_kernel: str = "gauss",
                               smooth_radius: Any = "0.1 deg", **kwargs: Any) -> Any:
        """Residual image summed over energy on WCS axes, as gammapy.

        Parameters
        ----------
        ax : `~astropy.visualization.wcsaxes.WCSAxes`, optional
            Axes to draw on (default: new WCS axes in the current figure).
        method : {"diff", "diff/model", "diff/sqrt(model)"}
            Residual definition; counts and npred are masked, summed over energy and smoothed first.
        smooth_kernel : {"gauss", "box"}
            Smoothing kernel.
        smooth_radius : str or `~astropy.units.Quantity`
            Smoothing radius.
        **kwargs
            Passed to `~gamma_ray_dist.visualization.plot_map` (defaults ``add_cbar=True``,
            ``cmap="coolwarm"``, ``vmin=-5``, ``vmax=5``).

        Returns
        -------
        ax : `~astropy.visualization.wcsaxes.WCSAxes`
        """
        from ..visualization.datasets import plot_residuals_spatial

        return plot_residuals_spatial(self, ax=ax, method=method, smooth_kernel=smooth_kernel,
                                      smooth_radius=smooth_radius, **kwargs)

    def plot_residuals_spectral(self, ax: Any = None, method: str = "diff", region: Any = None,
                                **kwargs: Any) -> Any:
        """Counts minus npred per energy bin inside ``region``, with the fit and safe masks shaded.

        Parameters
        ----------
        ax : `~matplotlib.axes.Axes`, optional
            Axes to draw on (default: the current axes).
        method : {"diff", "diff/sqrt(model)"}
            Residual definition.
        region : `~regions.SkyRegion` or str, optional
            Sum over the pixels inside it (default: all pixels).
        **kwargs
            Passed to `~gamma_ray_dist.visualization.plot_residuals_spectral` (then ``errorbar``).

        Returns
        -------
        ax : `~matplotlib.axes.Axes`
        """
        from ..visualization.datasets import plot_residuals_spectral

        return plot_residuals_spectral(self, ax=ax, method=method, region=region, **kwargs)

    def plot_residuals(self, ax_spatial: Any = None, ax_spectral: Any = None, kwargs_spatial: dict | None = None,
                       kwargs_spectral: dict | None = None) -> tuple:
        """Spatial residual image (left) and spectral residuals in a region (right, drawn on the image).

        Parameters
        ----------
        ax_spatial : `~astropy.visualization.wcsaxes.WCSAxes`, optional
            Axes of the image (default: left half of a new figure).
        ax_spectral : `~matplotlib.axes.Axes`, optional
            Axes of the spectrum (default: right half of a new figure).
        kwargs_spatial : dict, optional
            Passed to `plot_residuals_spatial`.
        kwargs_spectral : dict, optional
            Passed to `plot_residuals_spectral` (``region`` is also drawn on the image).

        Returns
        -------
        ax_spatial, ax_spectral
        """
        from ..visualization.datasets import plot_residuals

        return plot_residuals(self, ax_spatial=ax_spatial, ax_spectral=ax_spectral,
                              kwargs_spatial=kwargs_spatial, kwargs_spectral=kwargs_spectral)

    def plot_npred_signal(self, ax: Any = None, model_names: list[str] | None = None, region: Any = None,
                          **kwargs: Any) -> Any:
        """Predicted counts per energy bin of each source model, their sum and the background.

        Parameters
        ----------
        ax : `~matplotlib.axes.Axes`, optional
            Axes to draw on (default: the current axes).
        model_names : list of str, optional
            Source models to show (default: all but the background model).
        region : `~regions.SkyRegion` or str, optional
            Sum over the pixels inside it instead of the whole map.
        **kwargs
            Passed to ``errorbar`` for every curve.

        Returns
        -------
        ax : `~matplotlib.axes.Axes`
        """
        from ..visualization.datasets import plot_npred_signal

        return plot_npred_signal(self, ax=ax, model_names=model_names, region=region, **kwargs)

    def copy(self, name: Optional[str] = None) -> "MapDataset":
        new = copy.deepcopy(self)
        if name is not None:
            new._name = str(name)
        return new


def _to_native(m) -> None:
    """FITS data are big-endian: convert once on read so hot paths use native arrays."""
    data = np.asarray(m.data)
    m.data = np.ascontiguousarray(data.astype(data.dtype.newbyteorder("="), copy=False))


