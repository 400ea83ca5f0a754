"""`StackAccumulator`: float64/int64 buffers of the stacked geometry.

Partials are added into the buffers (``add``, idempotent per obs id); accumulators over
disjoint observations combine with ``merge`` (tree reduction); ``state``/``from_state``
give a plain dict of arrays for atomic checkpoints; ``to_dataset`` finalises into a
`MapDataset` (exposure-weighted PSF/EDisp, GTI union, meta table).

Counts are int64 (exact in any order); everything else is float64 and summed in the
order ``add`` is called, so the same order gives bit-identical results.
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional

import numpy as np

from .io import rows_from_meta_table
from .partial import PartialDataset, StackGeometry, time_from_tuple
from .stacking import exposure_weighted_mean, window_slices

__all__ = ["StackAccumulator"]

STATE_VERSION = 1

_FLOAT_BUFFERS = ("background", "exposure", "psf_weighted", "psf_exposure",
                  "edisp_weighted", "edisp_exposure")

#: Which grid each buffer lives on: the stacked geometry ("fine") or the IRF maps' ("coarse").
_GRID = {"counts": "fine", "background": "fine", "mask_safe": "fine", "mask_fit": "fine", "exposure": "fine",
         "psf_weighted": "coarse", "psf_exposure": "coarse", "edisp_weighted": "coarse",
         "edisp_exposure": "coarse"}

#: An extent covering the whole grid (an accumulator built from a dataset or a full state).
FULL = "full"


def _union(a, b):
    """Union of two extents: None (nothing), `FULL`, or pixel bounds ``((y0, y1), (x0, x1))``."""
    if a is None:
        return b
    if b is None:
        return a
    if a == FULL or b == FULL:
        return FULL
    (ay0, ay1), (ax0, ax1) = a
    (by0, by1), (bx0, bx1) = b
    return (min(ay0, by0), max(ay1, by1)), (min(ax0, bx0), max(ax1, bx1))


def _crop_geom(geom, bounds):
    """``geom`` restricted to the pixel window ``((y0, y1), (x0, x1))``: reference pixel shifted."""
    (y0, y1), (x0, x1) = bounds
    wcs = geom.wcs.deepcopy()
    wcs.wcs.crpix = wcs.wcs.crpix - np.array([x0, y0], dtype=float)
    return geom._init_copy(wcs=wcs, npix=(x1 - x0, y1 - y0))


def _narrow_counts(counts: np.ndarray) -> np.ndarray:
    """Counts in the narrowest integer type that holds them (for transport; widened on receipt)."""
    if counts.size == 0 or counts.min() < 0:
        return counts.copy()
    top = counts.max()
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return counts.astype(dtype)
    return counts.copy()


class StackAccumulator:
    """Sums of observation partials on the stacked geometry.

    Parameters
    ----------
    geometry : `StackGeometry`
        The stacked geometry (picklable).
    name : str, optional
        Default name of the finalised dataset.
    """

    def __init__(self, geometry: StackGeometry, name: Optional[str] = None):
        self.geometry = geometry
        self.name = name
        g = geometry
        self.buffers: Dict[str, Optional[np.ndarray]] = {
            "counts": np.zeros(g.shape("geom"), dtype=np.int64),
            "background": np.zeros(g.shape("geom"), dtype=np.float64),
            "mask_safe": np.zeros(g.shape("geom"), dtype=bool),
            "mask_fit": None,
            "exposure": None,
            "psf_weighted": None,
            "psf_exposure": None,
            "edisp_weighted": None,
            "edisp_exposure": None,
        }
        if "geom_exposure" in g.geoms:
            self.buffers["exposure"] = np.zeros(g.shape("geom_exposure"))
        if g.geoms.get("geom_psf") is not None:
            shape = g.shape("geom_psf")
            self.buffers["psf_weighted"] = np.zeros(shape)
            self.buffers["psf_exposure"] = np.zeros((shape[0], 1) + shape[2:])
        if g.geoms.get("geom_edisp") is not None:
            shape = g.shape("geom_edisp")
            self.buffers["edisp_weighted"] = np.zeros(shape)
            self.buffers["edisp_exposure"] = np.zeros((shape[0], 1) + shape[2:])
        self.livetime = float("nan")
        self.obs_ids: List[int] = []
        self.gti_start = np.zeros(0)
        self.gti_stop = np.zeros(0)
        self.meta_rows: List[Dict[str, Any]] = []
        self.fov: Dict[int, Dict[str, Any]] = {}
        # The part of each grid the sums cover (None: nothing yet): what a compact state ships.
        self.extent: Dict[str, Any] = {"fine": None, "coarse": None}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_dataset(cls, dataset, name: Optional[str] = None) -> "StackAccumulator":
        """Accumulator initialised with the content of a stacked `MapDataset`.

        For the usual empty ``MapDataset.create(...)`` result all buffers are zero; a
        non-empty dataset is taken as already stacked (its own safe mask is not applied,
        as in gammapy).
        """
        acc = cls(StackGeometry.from_dataset(dataset), name=name or dataset.name)
        acc.extent = {"fine": FULL, "coarse": FULL}
        b = acc.buffers
        b["counts"][...] = np.rint(np.nan_to_num(dataset.counts.data)).astype(np.int64)
        if dataset.background is not None:
            b["background"][...] = np.nan_to_num(dataset.npred_background().data)
        if dataset.mask_safe is not None:
            b["mask_safe"][...] = dataset.mask_safe.data
        if dataset.mask_fit is not None:
            b["mask_fit"] = np.array(dataset.mask_fit.data, dtype=bool)
        if b["exposure"] is not None and dataset.exposure is not None:
            b["exposure"][...] = np.nan_to_num(dataset.exposure.data)
            lt = dataset.exposure.meta.get("livetime") if dataset.exposure.meta else None
            if lt is not None:
                acc.livetime = float(lt.to_value("s"))
        for key, irf in (("psf", dataset.psf), ("edisp", dataset.edisp)):
            if b[key + "_weighted"] is not None and irf is not None:
                exp = np.nan_to_num(np.asarray(irf.exposure_map.data, np.float64))
                b[key + "_exposure"][...] = exp
                b[key + "_weighted"][...] = np.nan_to_num(irf._irf_map.data * exp)
        if dataset.gti is not None and len(dataset.gti.table) > 0:
            ref = time_from_tuple(acc.geometry.reference_time)
            acc.gti_start = np.atleast_1d((dataset.gti.time_start - ref).to_value("s"))
            acc.gti_stop = np.atleast_1d((dataset.gti.time_stop - ref).to_value("s"))
        if dataset.meta_table is not None:
            acc.meta_rows = rows_from_meta_table(dataset.meta_table)
        return acc

    # -- reduction ----------------------------------------------------------------------
    def add(self, partial: PartialDataset) -> bool:
        """Add one observation; a second add of the same obs id is ignored.

        Returns
        -------
        added : bool
            False when the obs id was already present.
        """
        if partial.obs_id in self.obs_ids:
            return False
        b = self.buffers
        self.extent["fine"] = _union(self.extent["fine"], partial.fine_bounds)
        fine = window_slices(partial.fine_bounds)
        b["counts"][fine] += partial.counts
        if partial.background is not None:
            b["background"][fine] += partial.background
        b["mask_safe"][fine] |= partial.mask_safe
        if partial.mask_fit is not None:
            if b["mask_fit"] is None:
                b["mask_fit"] = np.zeros(b["mask_safe"].shape, dtype=bool)
            b["mask_fit"][fine] |= partial.mask_fit
        if partial.exposure is not None and b["exposure"] is not None:
            b["exposure"][fine] += partial.exposure
        if partial.coarse_bounds is not None:
            self.extent["coarse"] = _union(self.extent["coarse"], partial.coarse_bounds)
            coarse = window_slices(partial.coarse_bounds)
            for key in ("psf_weighted", "psf_exposure", "edisp_weighted", "edisp_exposure"):
                value = getattr(partial, key)
                if value is not None and b[key] is not None:
                    b[key][coarse] += value
        self._add_livetime(partial.livetime)
        if partial.gti_start.size:
            offset = (time_from_tuple(partial.gti_reference)
                      - time_from_tuple(self.geometry.reference_time)).to_value("s")
            self.gti_start = np.concatenate([self.gti_start, partial.gti_start + offset])
            self.gti_stop = np.concatenate([self.gti_stop, partial.gti_stop + offset])
        if partial.meta:
            self.meta_rows.append(dict(partial.meta))
        self.fov[partial.obs_id] = {"norm": partial.fov_norm, "tilt": partial.fov_tilt,
                                    "status": partial.fov_status}
        self.obs_ids.append(partial.obs_id)
        return True

    def _add_livetime(self, livetime: float) -> None:
        if np.isnan(livetime):
            return
        self.livetime = livetime if np.isnan(self.livetime) else self.livetime + livetime

    def merge(self, other: "StackAccumulator") -> "StackAccumulator":
        """Add the sums of another accumulator over disjoint observations, in place."""
        common = set(self.obs_ids) & set(other.obs_ids)
        if common:
            raise ValueError(f"cannot merge accumulators sharing obs ids {sorted(common)}")
        for key, value in other.buffers.items():
            if value is None:
                continue
            if self.buffers[key] is None:
                self.buffers[key] = value.copy()
            elif value.dtype == bool:
                self.buffers[key] |= value
            else:
                self.buffers[key] += value
        self._add_livetime(other.livetime)
        self.gti_start = np.concatenate([self.gti_start, other.gti_start])
        self.gti_stop = np.concatenate([self.gti_stop, other.gti_stop])
        self.meta_rows.extend(dict(r) for r in other.meta_rows)
        self.fov.update(other.fov)
        self.obs_ids.extend(other.obs_ids)
        self.extent = {k: _union(self.extent[k], other.extent[k]) for k in self.extent}
        return self

    def __iadd__(self, other):
        return self.merge(other)

    # -- checkpoints --------------------------------------------------------------------
    def state(self, compact: bool = False) -> Dict[str, Any]:
        """Plain dict of numpy arrays and scalars (copies), for atomic checkpoints.

        ``compact=True`` (what a block task ships to its reducer): the buffers cropped to the part of
        each grid the sums cover (``state["window"]``) and the counts in the narrowest integer type;
        `from_state` restores the full buffers exactly, so a merge adds the same numbers.
        """
        fine, coarse = self.extent["fine"], self.extent["coarse"]
        window = None
        if compact and fine not in (None, FULL) and coarse != FULL:
            window = {"fine": fine} if coarse is None else {"fine": fine, "coarse": coarse}
        buffers = {}
        for k, v in self.buffers.items():
            if v is None:
                buffers[k] = None
            elif window is not None and _GRID[k] in window:
                v = v[window_slices(window[_GRID[k]])]
                buffers[k] = _narrow_counts(v) if k == "counts" else v.copy()
            else:
                buffers[k] = v.copy()
        out = {
            "version": STATE_VERSION,
            "geometry": self.geometry,
            "name": self.name,
            "buffers": buffers,
            "livetime": self.livetime,
            "obs_ids": np.array(self.obs_ids, dtype=np.int64),
            "gti_start": self.gti_start.copy(),
            "gti_stop": self.gti_stop.copy(),
            "meta_rows": [dict(r) for r in self.meta_rows],
            "fov": {int(k): dict(v) for k, v in self.fov.items()},
        }
        if window is not None:
            out["window"] = window
        return out

    def transport_state(self) -> Dict[str, Any]:
        """``state(compact=True)``: what a task ships (see `actors.protocols.Accumulator`)."""
        return self.state(compact=True)

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> "StackAccumulator":
        """Rebuild from `state` (arrays are copied: inputs may be read-only views)."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported accumulator state version {state.get('version')}")
        acc = cls(state["geometry"], name=state.get("name"))
        window = state.get("window")
        if window is None:
            acc.buffers = {k: (None if v is None else np.array(v)) for k, v in state["buffers"].items()}
            acc.extent = {"fine": FULL, "coarse": FULL}
        else:  # a compact state: zeros outside the window, exactly the shipped sums inside
            for k, v in state["buffers"].items():
                if v is None:
                    acc.buffers[k] = None
                    continue
                if _GRID[k] not in window:  # shipped whole (nothing was added on that grid)
                    acc.buffers[k] = np.array(v)
                    continue
                if acc.buffers[k] is None:  # mask_fit: created on first use
                    acc.buffers[k] = np.zeros(acc.buffers["mask_safe"].shape, dtype=bool)
                acc.buffers[k][window_slices(window[_GRID[k]])] = v
            acc.extent = {"fine": window.get("fine"), "coarse": window.get("coarse")}
        acc.livetime = float(state["livetime"])
        acc.obs_ids = [int(i) for i in state["obs_ids"]]
        acc.gti_start = np.array(state["gti_start"], dtype=float)
        acc.gti_stop = np.array(state["gti_stop"], dtype=float)
        acc.meta_rows = [dict(r) for r in state["meta_rows"]]
        acc.fov = {int(k): dict(v) for k, v in state["fov"].items()}
        return acc

    # -- finalisation -------------------------------------------------------------------
    def final_arrays(self) -> Dict[str, Optional[np.ndarray]]:
        """Finalised arrays in gammapy's dtypes (float32 maps, bool masks)."""
        b = self.buffers
        out = {
            "counts": b["counts"].astype(np.float32),
            "background": b["background"].astype(np.float32),
            "mask_safe": b["mask_safe"].copy(),
            "mask_fit": None if b["mask_fit"] is None else b["mask_fit"].copy(),
            "exposure": None if b["exposure"] is None else b["exposure"].astype(np.float32),
        }
        for key in ("psf", "edisp"):
            if b[key + "_weighted"] is None:
                out[key] = out[key + "_exposure"] = None
                continue
            mean = exposure_weighted_mean(b[key + "_weighted"], b[key + "_exposure"])
            out[key] = mean.astype(np.float32)
            out[key + "_exposure"] = b[key + "_exposure"].astype(np.float32)
        return out

    def to_dataset(self, name: Optional[str] = None, crop: bool = False):
        """Finalise into a `MapDataset` (gammapy-compatible).

        ``crop=True``: on the part of the stacked geometry the sums cover (`cropped`), e.g. one
        observation's cutout, as gammapy's per-observation datasets of an unstacked analysis.
        """
        from .map import MapDataset

        acc = self.cropped() if crop else self
        return MapDataset._from_accumulator(acc, name=name or self.name)

    def cropped(self) -> "StackAccumulator":
        """The same sums on the window of each grid they cover (fine: counts, background, masks,
        exposure; coarse: PSF/EDisp maps); the whole geometry when they cover all of it.

        The cropped geometries are the stacked ones with the reference pixel shifted (the pixel grid
        of a "trim" cutout), so the values are the same numbers.
        """
        fine, coarse = self.extent["fine"], self.extent["coarse"]
        if fine in (None, FULL):
            return self
        window = {"fine": fine, "coarse": coarse}
        geoms = {}
        for key, geom in self.geometry.geoms.items():
            grid = "fine" if key in ("geom", "geom_exposure") else "coarse"
            geoms[key] = geom if (geom is None or window[grid] in (None, FULL)) else _crop_geom(geom, window[grid])
        out = type(self)(StackGeometry(geoms=geoms, reference_time=self.geometry.reference_time), name=self.name)
        for key, value in self.buffers.items():
            bounds = window[_GRID[key]]
            if value is None or bounds in (None, FULL):
                out.buffers[key] = None if value is None else value.copy()
            else:
                out.buffers[key] = np.ascontiguousarray(value[window_slices(bounds)])
        out.livetime = self.livetime
        out.obs_ids = list(self.obs_ids)
        out.gti_start, out.gti_stop = self.gti_start.copy(), self.gti_stop.copy()
        out.meta_rows = [dict(r) for r in self.meta_rows]
        out.fov = {k: dict(v) for k, v in self.fov.items()}
        out.extent = {"fine": FULL, "coarse": FULL if coarse is not None else None}
        return out

    def __repr__(self) -> str:
        return f"StackAccumulator(n_obs={len(self.obs_ids)}, shape={self.buffers['counts'].shape})"
