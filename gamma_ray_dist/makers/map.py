"""`MapDatasetMaker` and the gammapy-named map-making functions (thin wrappers over `projection`)."""
from __future__ import annotations

from typing import Iterable, Optional

import numpy as np
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

from ..errors import IRFError
from ..maps import Map
from .coords import observation_pointing
from .irf_prep import interp_missing_data
from .projection import (
    background_values,
    background_values_altaz,
    bin_events,
    edisp_kernel_map_values,
    exposure_values,
    pad_offset_axis,
    psf_map_values,
)

__all__ = [
    "MapDatasetMaker",
    "make_counts",
    "make_map_exposure_true_energy",
    "make_map_background_irf",
    "make_psf_map",
    "make_edisp_kernel_map",
]


def _seconds(value) -> float:
    return float(u.Quantity(value, "s").to_value("s"))


def _energy_values(geom, name: str, what: str = "center") -> np.ndarray:
    axis = geom.axes[name]
    return np.asarray(axis.center_values if what == "center" else axis.edges_values, dtype=np.float64)


def make_counts(geom, events) -> "Map":
    """Counts map of an `EventList` on ``geom`` (gammapy ``Map.fill_events``), float32 as gammapy."""
    if geom.frame == "icrs":
        cols = events.arrays(("RA", "DEC", "ENERGY"))
        lon, lat = cols["RA"], cols["DEC"]
    else:
        cols = events.arrays(("RA", "DEC", "ENERGY"))
        c = SkyCoord(cols["RA"], cols["DEC"], unit="deg", frame="icrs").transform_to(geom.frame)
        sph = c.spherical
        lon, lat = sph.lon.deg, sph.lat.deg
    data = bin_events(geom, lon, lat, cols["ENERGY"])
    return Map.from_geom(geom, data=data.astype(np.float32), unit="")


def make_map_exposure_true_energy(pointing: SkyCoord, livetime, aeff, geom) -> "Map":
    """Exposure map (m2 s) on ``geom`` (spatial + ``energy_true`` axis), as gammapy.

    Parameters
    ----------
    pointing : SkyCoord
        Pointing direction (origin of the FoV offsets).
    livetime : Quantity or float
        Live time (s if a float).
    aeff : EffectiveAreaTable2D
    geom : WcsGeom
        Its ``energy_true`` axis may be squashed (IRF-map exposure).
    """
    values = exposure_values(aeff, pointing, _seconds(livetime), geom.to_image(),
                             _energy_values(geom, "energy_true"))
    values = values.reshape(geom.data_shape)
    meta = {"livetime": u.Quantity(_seconds(livetime), "s"), "is_pointlike": bool(aeff.is_pointlike)}
    return Map.from_geom(geom, data=values, unit="m2 s", meta=meta, dtype="float64")


def make_map_background_irf(pointing, ontime, bkg, geom, time_start=None, fov_rotation_step=1.0 * u.deg,
                            oversampling: Optional[int] = None, location=None) -> "Map":
    """Predicted background counts on ``geom`` (reco ``energy`` axis) from a background IRF.

    ``pointing`` is the ICRS SkyCoord of the (fixed) pointing. ALTAZ-aligned bkg_3d need
    ``time_start`` and ``location`` (FoV rotation followed in steps of ``fov_rotation_step``).
    """
    if hasattr(pointing, "fixed_icrs"):
        pointing = pointing.fixed_icrs
    edges = _energy_values(geom, "energy", "edges")
    image = geom.to_image()
    if "offset" not in bkg.axes.names and bkg.fov_alignment == "ALTAZ":
        if time_start is None or location is None:
            raise ValueError("an ALTAZ-aligned background needs time_start and location")
        step = float(u.Quantity(fov_rotation_step, "deg").value)
        values = background_values_altaz(bkg, pointing, location, time_start, _seconds(ontime), image,
                                         edges, step, oversampling)
    else:
        values = background_values(bkg, pointing, _seconds(ontime), image, edges, oversampling)
    return Map.from_geom(geom, data=values, unit="", dtype="float64")


def make_psf_map(psf, pointing: SkyCoord, geom, exposure_map=None):
    """`PSFMap` on ``geom`` (image + ``rad`` and ``energy_true`` axes, in that order)."""
    from ..datasets.irf_maps import PSFMap

    values = psf_map_values(psf, pointing, geom.to_image(), _energy_values(geom, "energy_true"),
                            _energy_values(geom, "rad", "edges"))
    psf_map = Map.from_geom(geom, data=values, unit="sr-1", dtype="float64")
    return PSFMap(psf_map, exposure_map)


def make_edisp_kernel_map(edisp, pointing: SkyCoord, geom, exposure_map=None, threshold: float = 1e-8):
    """`EDispKernelMap` on ``geom`` (image + ``energy`` and ``energy_true`` axes, in that order)."""
    from ..datasets.irf_maps import EDispKernelMap

    values = edisp_kernel_map_values(edisp, pointing, geom.to_image(),
                                     _energy_values(geom, "energy_true", "edges"),
                                     _energy_values(geom, "energy", "edges"), threshold=threshold)
    kernel = Map.from_geom(geom, data=values, unit="", dtype="float64")
    return EDispKernelMap(kernel, exposure_map)


def _require(observation, name: str):
    value = getattr(observation, name)
    if value is None:
        raise IRFError(f"observation has no {name} HDU", getattr(observation, "obs_id", None), None)
    return value


class MapDatasetMaker:
    """Make counts, exposure, background, PSF and EDisp maps of one observation (gammapy API).

    Parameters
    ----------
    selection : list of str, optional
        Subset of ``["counts", "exposure", "background", "psf", "edisp"]`` (default all).
    background_oversampling : int, optional
        Reco-energy oversampling of the background integration.
    background_interp_missing_data : bool
        Fill zero/NaN background values by interpolation along energy first (gammapy default).
    background_pad_offset : bool
        Pad the offset axis of radial backgrounds by one bin (gammapy default).
    fov_rotation_step : Quantity
        Maximum FoV rotation per time step for ALTAZ backgrounds (default 1 deg).
    """

    tag = "MapDatasetMaker"
    available_selection = ["counts", "exposure", "background", "psf", "edisp"]

    def __init__(self, selection: Optional[Iterable[str]] = None, background_oversampling: Optional[int] = None,
                 background_interp_missing_data: bool = True, background_pad_offset: bool = True,
                 fov_rotation_step=1.0 * u.deg):
        self.background_oversampling = background_oversampling
        self.background_interp_missing_data = background_interp_missing_data
        self.background_pad_offset = background_pad_offset
        self.fov_rotation_step = u.Quantity(fov_rotation_step, "deg")
        selection = set(self.available_selection if selection is None else selection)
        if not selection.issubset(self.available_selection):
            raise ValueError(f"{selection.difference(self.available_selection)} is not a valid method.")
        self.selection = selection

    # -- single maps (gammapy names) -----------------------------------------------------------
    @staticmethod
    def make_counts(geom, observation):
        return make_counts(geom, observation.events)

    @staticmethod
    def _pointing(observation, pointing=None) -> SkyCoord:
        return observation_pointing(observation) if pointing is None else pointing

    def make_exposure(self, geom, observation, pointing=None, livetime=None):
        if livetime is None:
            livetime = observation.observation_live_time_duration
        return make_map_exposure_true_energy(self._pointing(observation, pointing), livetime,
                                             _require(observation, "aeff"), geom)

    make_exposure_irf = make_exposure

    def prepared_background(self, observation):
        """The observation's background IRF as the maker uses it (missing data filled, offset padded)."""
        bkg = _require(observation, "bkg")
        if self.background_interp_missing_data:
            bkg = interp_missing_data(bkg, "energy")  # vectorised TableIRF.interp_missing_data
        if self.background_pad_offset and "offset" in bkg.axes.names:
            bkg = pad_offset_axis(bkg)
        return bkg

    def make_background(self, geom, observation, pointing=None, ontime=None):
        bkg = self.prepared_background(observation)
        fixed = observation.pointing.fixed_icrs
        # start time and site only for the FoV rotation of alt-az backgrounds (Time arithmetic)
        altaz = "offset" not in bkg.axes.names and bkg.fov_alignment == "ALTAZ"
        return make_map_background_irf(
            fixed if fixed is not None else self._pointing(observation, pointing),
            observation.observation_time_duration if ontime is None else ontime, bkg, geom,
            time_start=observation.tstart if altaz else None, fov_rotation_step=self.fov_rotation_step,
            oversampling=self.background_oversampling,
            location=observation.observatory_earth_location if altaz else None)

    def make_psf(self, geom, observation, pointing=None, livetime=None):
        pointing = self._pointing(observation, pointing)
        exposure = self.make_exposure_irf(geom.squash("rad"), observation, pointing, livetime)
        return make_psf_map(_require(observation, "psf"), pointing, geom, exposure)

    def make_edisp_kernel(self, geom, observation, pointing=None, livetime=None):
        pointing = self._pointing(observation, pointing)
        exposure = self.make_exposure_irf(geom.squash("energy"), observation, pointing, livetime)
        return make_edisp_kernel_map(_require(observation, "edisp"), pointing, geom, exposure)

    @staticmethod
    def make_meta_table(observation) -> Table:
        """One-row table: TELESCOP, OBS_ID and the pointing header keywords (as gammapy)."""
        aeff = observation.aeff
        row = {"TELESCOP": (aeff.meta.get("TELESCOP", "Unknown") if aeff is not None else "Unknown"),
               "OBS_ID": observation.obs_id}
        pointing = observation.pointing
        if pointing is not None and pointing.fixed_icrs is not None:
            row["RA_PNT"] = float(pointing.fixed_icrs.ra.deg)
            row["DEC_PNT"] = float(pointing.fixed_icrs.dec.deg)
        table = Table([row])
        for col in ("RA_PNT", "DEC_PNT"):
            if col in table.colnames:
                table[col].unit = u.deg
        return table

    # -- run -------------------------------------------------------------------------------------
    def run(self, dataset, observation):
        """Reduced `MapDataset` of ``observation`` on the geometries of ``dataset``."""
        kwargs = {"gti": observation.gti, "meta_table": self.make_meta_table(observation)}
        geom = dataset.counts.geom
        # once per run: pointing, and the GTI sums (astropy Time arithmetic)
        pointing = self._pointing(observation)
        ontime = observation.observation_time_duration
        livetime = ontime * (1 - observation.observation_dead_time_fraction)
        kwargs["mask_safe"] = Map.from_geom(geom, data=np.ones(geom.data_shape, dtype=bool), dtype=bool)
        if "counts" in self.selection:
            kwargs["counts"] = self.make_counts(geom, observation)
        else:
            kwargs["counts"] = Map.from_geom(geom)
        if "exposure" in self.selection and dataset.exposure is not None:
            kwargs["exposure"] = self.make_exposure(dataset.exposure.geom, observation, pointing, livetime)
        if "background" in self.selection:
            kwargs["background"] = self.make_background(geom, observation, pointing, ontime)
        if "psf" in self.selection and dataset.psf is not None:
            kwargs["psf"] = self.make_psf(dataset.psf.psf_map.geom, observation, pointing, livetime)
        if "edisp" in self.selection and dataset.edisp is not None:
            edisp_geom = dataset.edisp.edisp_map.geom
            if edisp_geom.axes[0].name.lower() == "migra":
                raise NotImplementedError("EDispMap (migra axis) is not supported; use an EDispKernelMap")
            kwargs["edisp"] = self.make_edisp_kernel(edisp_geom, observation, pointing, livetime)
        return dataset.__class__(name=dataset.name, **kwargs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(selection={sorted(self.selection)})"
