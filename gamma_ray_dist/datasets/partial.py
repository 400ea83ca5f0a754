"""The distributed contract: one observation's contribution to the stacked dataset.

A `PartialDataset` is what a reduction task returns: plain C-contiguous numpy arrays,
already cropped to the part of the stacked geometry they cover and already weighted
exactly as gammapy's ``MapDataset.stack`` weights the other dataset (safe mask on
counts and background, spatial safe mask on exposure, PSF/EDisp stacking weights on
the IRF maps), plus small metadata. Nothing here needs Ray, and astropy objects only
appear at the edges (``from_dataset`` and `StackGeometry`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Dict, Optional, Tuple

import numpy as np
from astropy.time import Time

from ..maps.wcs import as_unit
from .interning import dumps_once, load_interned
from .stacking import (
    Bounds,
    edisp_stack_weights,
    overlap_bounds,
    psf_stack_weights,
)

__all__ = ["StackGeometry", "PartialDataset", "time_to_tuple", "time_from_tuple", "crop_window"]


def time_to_tuple(time: Time) -> Tuple[float, float, str]:
    """Exact, picklable form of a scalar `~astropy.time.Time`: ``(jd1, jd2, scale)``."""
    return float(time.jd1), float(time.jd2), str(time.scale)


def time_from_tuple(value: Tuple[float, float, str]) -> Time:
    """Inverse of `time_to_tuple`."""
    jd1, jd2, scale = value
    return Time(jd1, jd2, format="jd", scale=scale)


@dataclass
class StackGeometry:
    """Picklable description of the stacked geometries.

    Parameters
    ----------
    geoms : dict
        ``{"geom", "geom_exposure", "geom_psf", "geom_edisp"}`` as in
        ``MapDataset.geoms`` (PSF/EDisp entries may be missing).
    reference_time : tuple
        GTI reference epoch of the stacked dataset, as `time_to_tuple` gives.
    """

    geoms: Dict[str, Any]
    reference_time: Tuple[float, float, str] = field(
        default_factory=lambda: time_to_tuple(Time("2000-01-01"))
    )

    @classmethod
    def from_dataset(cls, dataset) -> "StackGeometry":
        """Geometry spec of a (usually empty) stacked `MapDataset`."""
        ref = dataset.gti.time_ref if dataset.gti is not None else Time("2000-01-01")
        return cls(geoms=dict(dataset.geoms), reference_time=time_to_tuple(ref))

    @property
    def fine_wcs(self):
        return self.geoms["geom"].wcs

    @property
    def fine_shape(self) -> Tuple[int, int]:
        return tuple(int(n) for n in self.geoms["geom"].data_shape[-2:])

    @property
    def coarse_geom(self):
        return self.geoms.get("geom_psf") or self.geoms.get("geom_edisp")

    @property
    def coarse_wcs(self):
        geom = self.coarse_geom
        return None if geom is None else geom.wcs

    @property
    def coarse_shape(self) -> Optional[Tuple[int, int]]:
        geom = self.coarse_geom
        return None if geom is None else tuple(int(n) for n in geom.data_shape[-2:])

    def shape(self, key: str) -> Tuple[int, ...]:
        """Data shape of ``"geom"``, ``"geom_exposure"``, ``"geom_psf"`` or ``"geom_edisp"``."""
        return tuple(int(n) for n in self.geoms[key].data_shape)

    def __reduce__(self):
        # Every task and accumulator state carries the geometry: its WCS objects are rebuilt once
        # per process (see `gamma_ray_dist.datasets.interning`); the geometry is immutable once built.
        return (_stack_geometry, (dumps_once(self, self.geoms), self.reference_time))


def _stack_geometry(blob: bytes, reference_time: Tuple[float, float, str]) -> StackGeometry:
    geometry = StackGeometry(geoms=load_interned(blob), reference_time=tuple(reference_time))
    geometry.__dict__["_interned_blob"] = blob
    return geometry


def _values(m, unit: str) -> np.ndarray:
    """Map data as float64 in ``unit`` (gammapy converts the other map's unit when stacking)."""
    factor = 1.0 if m.unit == as_unit(unit) else m.unit.to(unit)
    return np.asarray(m.data, dtype=np.float64) * factor


def crop_window(data: np.ndarray, bounds: Bounds, dtype) -> np.ndarray:
    """The window ``bounds`` of ``data`` (last two axes) as a C-contiguous ``dtype`` array, NaN/inf
    replaced by finite values (checked first: maps are finite by construction and
    ``np.nan_to_num`` costs several passes)."""
    (y0, y1), (x0, x1) = bounds
    out = np.asarray(data[..., y0:y1, x0:x1], dtype=dtype)
    if out.dtype.kind == "f" and not np.isfinite(out).all():
        out = np.nan_to_num(out)
    return np.ascontiguousarray(out)


@dataclass
class PartialDataset:
    """One observation's weighted contribution, cropped to the stacked geometry.

    Spatial bounds are ``((y0, y1), (x0, x1))`` in the stacked fine (``fine_bounds``) and
    coarse IRF (``coarse_bounds``) pixel grids; every array covers exactly that window.

    Units are canonical: exposures m2 s, PSF sr-1, counts/background/EDisp dimensionless.

    Attributes
    ----------
    counts : int64 ``(n_energy, ny, nx)``, counts times safe mask.
    background : float64, background times FoV model factor times safe mask.
    exposure : float64 ``(n_energy_true, ny, nx)``, times the spatial safe mask.
    mask_safe : bool ``(n_energy, ny, nx)``; mask_fit : bool or None.
    psf_weighted, psf_exposure : float64, ``psf * psf_exposure * w`` and ``psf_exposure * w``.
    edisp_weighted, edisp_exposure : float64, same for the EDisp kernel map.
    gti_start, gti_stop : float64 seconds after ``gti_reference`` (see `time_to_tuple`).
    livetime : float, seconds (NaN when unknown or when nothing is in the safe mask).
    fov_norm, fov_tilt : FoV background model parameters; fov_status : str.
    meta : dict, column -> (value, unit string) of gammapy's one-row meta table.
    """

    obs_id: int
    fine_bounds: Bounds
    coarse_bounds: Optional[Bounds]
    counts: np.ndarray
    background: Optional[np.ndarray]
    exposure: Optional[np.ndarray]
    mask_safe: np.ndarray
    mask_fit: Optional[np.ndarray] = None
    psf_weighted: Optional[np.ndarray] = None
    psf_exposure: Optional[np.ndarray] = None
    edisp_weighted: Optional[np.ndarray] = None
    edisp_exposure: Optional[np.ndarray] = None
    gti_start: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gti_stop: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gti_reference: Tuple[float, float, str] = field(
        default_factory=lambda: time_to_tuple(Time("2000-01-01"))
    )
    livetime: float = float("nan")
    fov_norm: float = 1.0
    fov_tilt: float = 0.0
    fov_status: str = "none"
    meta: Dict[str, Tuple[Any, str]] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dataset(cls, dataset, geometry: StackGeometry, obs_id: Optional[int] = None,
                     fov_status: Optional[str] = None) -> "PartialDataset":
        """Build the partial of a reduced per-observation (cutout) `MapDataset`.

        Parameters
        ----------
        dataset : `MapDataset`
            Reduced dataset on a cutout of the stacked geometry (safe mask and FoV
            background model already applied).
        geometry : `StackGeometry`
            The stacked geometry.
        obs_id : int, optional
            Observation id; default: first ``OBS_ID`` of the dataset's meta table.
        fov_status : str, optional
            Outcome of the FoV background fit, recorded for the run report; default
            ``"fitted"`` when the dataset has a background model, else ``"none"``.

        Returns
        -------
        partial : `PartialDataset`
        """
        if obs_id is None:
            obs_id = _obs_id_from_meta(dataset.meta_table)
        geom = dataset.counts.geom if dataset.counts is not None else dataset._geom
        parent_b, cut_b = overlap_bounds(
            geometry.fine_wcs, geometry.fine_shape, geom.wcs, tuple(geom.data_shape[-2:])
        )
        mask_safe = np.asarray(dataset.mask_safe.data, dtype=bool)
        mask_image = mask_safe.any(axis=0)

        counts = crop_window(np.asarray(dataset.counts.data) * mask_safe, cut_b, np.float64)
        counts = np.ascontiguousarray(np.rint(counts).astype(np.int64))

        background = None
        if dataset.background is not None:
            npred_bkg = _values(dataset.npred_background(), "")
            background = crop_window(npred_bkg * mask_safe, cut_b, np.float64)

        exposure, livetime = None, float("nan")
        if dataset.exposure is not None:
            exposure = crop_window(_values(dataset.exposure, "m2 s") * mask_image, cut_b,
                             np.float64)
            lt = dataset.exposure.meta.get("livetime") if dataset.exposure.meta else None
            if lt is not None:
                seconds = float(getattr(lt, "to_value", lambda unit: lt)("s"))
                livetime = seconds if mask_image.any() else float("nan")

        mask_fit = None
        if dataset.mask_fit is not None:
            mask_fit = crop_window(np.asarray(dataset.mask_fit.data, bool), cut_b, bool)

        psf_w = psf_e = edisp_w = edisp_e = None
        coarse_parent = None
        irf_geom = None
        if dataset.psf is not None:
            irf_geom = dataset.psf.psf_map.geom
        elif dataset.edisp is not None:
            irf_geom = dataset.edisp.edisp_map.geom
        if irf_geom is not None and geometry.coarse_geom is not None:
            coarse_shape = tuple(irf_geom.data_shape[-2:])
            coarse_parent, coarse_cut = overlap_bounds(
                geometry.coarse_wcs, geometry.coarse_shape, irf_geom.wcs, coarse_shape
            )
            if dataset.psf is not None:
                w = psf_stack_weights(mask_safe, geom.wcs, dataset.psf.psf_map.geom.wcs,
                                      coarse_shape)
                psf_data = _values(dataset.psf.psf_map, "sr-1")
                psf_exp = _values(dataset.psf.exposure_map, "m2 s")
                psf_w = crop_window(np.nan_to_num(psf_data * psf_exp) * w, coarse_cut, np.float64)
                psf_e = crop_window(np.nan_to_num(psf_exp) * w, coarse_cut, np.float64)
            if dataset.edisp is not None:
                w = edisp_stack_weights(mask_safe, geom.wcs, dataset.edisp.edisp_map.geom.wcs,
                                        coarse_shape)
                ed_data = _values(dataset.edisp.edisp_map, "")
                ed_exp = _values(dataset.edisp.exposure_map, "m2 s")
                edisp_w = crop_window(np.nan_to_num(ed_data * ed_exp) * w, coarse_cut, np.float64)
                w_exp = w.any(axis=1, keepdims=True)
                edisp_e = crop_window(np.nan_to_num(ed_exp) * w_exp, coarse_cut, np.float64)

        gti_start = gti_stop = np.zeros(0)
        gti_ref = time_to_tuple(Time("2000-01-01"))
        if dataset.gti is not None and len(dataset.gti.table) > 0:
            gti_ref = time_to_tuple(dataset.gti.time_ref)
            ref = dataset.gti.time_ref
            gti_start = np.atleast_1d((dataset.gti.time_start - ref).to_value("s")).astype(float)
            gti_stop = np.atleast_1d((dataset.gti.time_stop - ref).to_value("s")).astype(float)

        norm, tilt, status = 1.0, 0.0, "none"
        bkg_model = getattr(dataset, "background_model", None)
        if bkg_model is not None:
            spec = bkg_model.spectral_model
            norm = float(spec.norm.value) if hasattr(spec, "norm") else 1.0
            tilt = float(spec.tilt.value) if hasattr(spec, "tilt") else 0.0
            status = "fitted"

        return cls(
            obs_id=int(obs_id),
            fine_bounds=parent_b,
            coarse_bounds=coarse_parent,
            counts=counts,
            background=background,
            exposure=exposure,
            mask_safe=crop_window(mask_safe, cut_b, bool),
            mask_fit=mask_fit,
            psf_weighted=psf_w,
            psf_exposure=psf_e,
            edisp_weighted=edisp_w,
            edisp_exposure=edisp_e,
            gti_start=np.ascontiguousarray(gti_start),
            gti_stop=np.ascontiguousarray(gti_stop),
            gti_reference=gti_ref,
            livetime=livetime,
            fov_norm=norm,
            fov_tilt=tilt,
            fov_status=fov_status or status,
            meta=_meta_from_table(dataset.meta_table),
        )

    def arrays(self) -> Dict[str, np.ndarray]:
        """The array fields that are set (name -> array)."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if isinstance(getattr(self, f.name), np.ndarray)
        }

    @property
    def nbytes(self) -> int:
        """Total size of the arrays (bytes), for transfer accounting."""
        return int(sum(a.nbytes for a in self.arrays().values()))


def _obs_id_from_meta(meta_table) -> int:
    if meta_table is None or "OBS_ID" not in meta_table.colnames:
        raise ValueError("obs_id not given and the dataset has no OBS_ID in its meta table")
    return int(np.ravel(meta_table["OBS_ID"].data)[0])


def _meta_from_table(meta_table) -> Dict[str, Tuple[Any, str]]:
    """One-row meta table -> {column: (python scalar, unit string)}."""
    if meta_table is None:
        return {}
    out = {}
    for name in meta_table.colnames:
        col = meta_table[name]
        value = np.ravel(col.data)
        value = value[0].item() if value.size == 1 else value.tolist()
        if isinstance(value, bytes):
            value = value.decode()
        out[name] = (value, "" if col.unit is None else col.unit.to_string())
    return out
