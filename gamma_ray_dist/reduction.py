"""Reduce one observation to its contribution to the stacked dataset (pure; no Ray).

`reduce_observation` is the body of the seed's data-reduction loop:

    cutout = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=2 * offset_max)
    dataset = MapDatasetMaker().run(cutout, obs)
    dataset = SafeMaskMaker(methods, offset_max=offset_max).run(dataset, obs)
    dataset = FoVBackgroundMaker(method, exclusion_mask).run(dataset)

returned as a `PartialDataset` (plain arrays cropped to the stacked geometry, weighted as gammapy's
``MapDataset.stack`` weights them). `ReductionSpec` is the small picklable description a driver ships
once to all workers.

Two implementations give the same numbers: `reduce_to_dataset` runs the public makers on a cutout
`MapDataset` (the reference), and `reduce_observation` computes the same arrays directly on the cutout
window of the stacked geometry (`reduction_fast`: no per-observation maps, WCS copies or SkyCoord/Time
arithmetic; per-process caches of the stacked pixel centres, solid angles and cutout windows). The
fast path covers the makers' usual configurations (see `_fast_spec_supported`); anything else, and
observations it does not handle (drift pointing, alt-az backgrounds, missing IRFs), goes through
`reduce_to_dataset`. tests/test_reduction.py checks both agree.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import pickle
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Tuple, Union

import numpy as np
from astropy import units as u

from .errors import GammaRayDistError, IRFError, ObservationError
from .interning import load_interned

__all__ = ["ReductionSpec", "reduce_observation", "reduce_to_dataset", "ObservationOutsideGeometry"]

log = logging.getLogger(__name__)


class ObservationOutsideGeometry(ObservationError):
    """The observation's cutout does not overlap the stacked geometry: it contributes nothing."""


@dataclass(eq=False)  # per-process caches are keyed by `content_key`, not by the object
class ReductionSpec:
    """Picklable description of the stacked dataset and of the per-observation makers.

    Parameters
    ----------
    geom : WcsGeom
        Stacked counts geometry (with its reconstructed ``energy`` axis).
    energy_axis_true : MapAxis
        True-energy axis of exposure and IRF maps.
    binsz_irf : float
        Pixel size (deg) of the coarse PSF/EDisp geometry (gammapy default 0.2).
    offset_max : float
        Maximum offset (deg) of the "offset-max" safe mask; the cutout width defaults to twice it.
    safe_mask_methods : tuple of str
        SafeMaskMaker methods (seed: offset-max, aeff-max).
    safe_mask_kwargs : dict
        Other SafeMaskMaker arguments (aeff_percent, bias_percent, position, fixed_offset, irfs).
    fov_method : str or None
        FoVBackgroundMaker method ("fit" or "scale"); None skips the FoV normalisation.
    fov_kwargs : dict
        Other FoVBackgroundMaker arguments (min_counts, min_npred_background, spectral_model).
    exclusion_mask : np.ndarray or None
        Boolean array (True = usable) on ``exclusion_geom``.
    exclusion_geom : WcsGeom or None
        Geometry of ``exclusion_mask`` (default ``geom``).
    cutout_width : float or None
        Cutout width (deg); default ``2 * offset_max``.
    maker_kwargs : dict
        MapDatasetMaker arguments (selection, background_oversampling, ...).
    name : str
        Name of the stacked dataset.
    """

    geom: Any
    energy_axis_true: Any
    binsz_irf: float = 0.2
    offset_max: float = 2.5
    safe_mask_methods: Tuple[str, ...] = ("offset-max", "aeff-max")
    safe_mask_kwargs: dict = field(default_factory=dict)
    fov_method: Optional[str] = "fit"
    fov_kwargs: dict = field(default_factory=dict)
    exclusion_mask: Optional[np.ndarray] = None
    exclusion_geom: Any = None
    cutout_width: Optional[float] = None
    maker_kwargs: dict = field(default_factory=dict)
    name: str = "stacked"

    def __post_init__(self):
        self.binsz_irf = float(u.Quantity(self.binsz_irf, "deg").value)
        self.offset_max = float(u.Quantity(self.offset_max, "deg").value)
        if self.cutout_width is not None:
            self.cutout_width = float(u.Quantity(self.cutout_width, "deg").value)
        self.safe_mask_methods = tuple(self.safe_mask_methods)
        if self.exclusion_mask is not None:
            mask = self.exclusion_mask
            if hasattr(mask, "geom") and hasattr(mask, "data"):  # a boolean map
                self.exclusion_geom = self.exclusion_geom or mask.geom
                mask = mask.data
            self.exclusion_mask = np.ascontiguousarray(np.asarray(mask, dtype=bool))
            if self.exclusion_geom is None:
                self.exclusion_geom = self.geom
            if self.exclusion_mask.shape[-2:] != tuple(self.exclusion_geom.data_shape[-2:]):
                raise ValueError(f"exclusion_mask shape {self.exclusion_mask.shape} does not match its "
                                 f"geometry {tuple(self.exclusion_geom.data_shape)}")

    def content_key(self) -> str:
        """Stable key of the spec's content (SHA-1 of its pickled fields).

        The per-process caches (`_prepare`, `_fast_context`) are keyed by it, so the copy of a spec
        that every Ray task deserialises hits the cache its worker built for an earlier task. Computed
        once per object (specs are treated as immutable once used) and carried through pickling
        (recomputed when pickled, so a copy always has the key of the content it carries).
        """
        key = self.__dict__.get("_content_key")
        if key is None:
            key = self.__dict__["_content_key"] = self._hash_fields()
        return key

    def _hash_fields(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "_content_key"}
        digest = hashlib.sha1()
        _canonical(fields, digest)
        return digest.hexdigest()

    def __reduce__(self):
        # Pickled afresh each time (a spec may still be edited before its first use) with its key
        # recomputed, so a copy always has the key of the content it carries; rebuilt through
        # `interning.load_interned`, so a worker parses the geometries' WCS once per content, not
        # once per task.
        state = {k: v for k, v in self.__dict__.items() if k != "_content_key"}
        state["_content_key"] = self._hash_fields()
        return (_load_spec, (pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),))

    @property
    def width(self) -> float:
        """Cutout width in deg."""
        return self.cutout_width if self.cutout_width is not None else 2.0 * self.offset_max

    def stacked_dataset(self):
        """A fresh empty stacked `MapDataset` (gammapy's ``MapDataset.create``)."""
        from .datasets import MapDataset

        return MapDataset.create(geom=self.geom, energy_axis_true=self.energy_axis_true,
                                 binsz_irf=self.binsz_irf * u.deg, name=self.name)

    def exclusion_map(self):
        """The exclusion mask as a boolean map, or None."""
        if self.exclusion_mask is None:
            return None
        from .maps import Map

        return Map.from_geom(self.exclusion_geom, data=self.exclusion_mask, dtype=bool)

    def makers(self):
        """``(MapDatasetMaker, SafeMaskMaker, FoVBackgroundMaker or None)`` of this spec."""
        from .makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker

        maker = MapDatasetMaker(**self.maker_kwargs)
        safe = SafeMaskMaker(methods=self.safe_mask_methods, offset_max=self.offset_max * u.deg,
                             **self.safe_mask_kwargs)
        fov = None
        if self.fov_method is not None:
            fov = FoVBackgroundMaker(method=self.fov_method, exclusion_mask=self.exclusion_map(),
                                     **self.fov_kwargs)
        return maker, safe, fov


#: Lazily filled, derived attributes of geometries and axes: not part of their content.
_DERIVED_ATTRIBUTES = frozenset({"_cache", "_edges", "_center"})


def _load_spec(blob: bytes) -> ReductionSpec:
    """Unpickle a `ReductionSpec`; its fields are shared with earlier copies of the same content."""
    spec = object.__new__(ReductionSpec)
    spec.__dict__.update(load_interned(blob))  # a new object, so edits to it stay its own
    return spec


def _canonical(value: Any, digest) -> None:
    """Feed a canonical description of ``value`` into ``digest``.

    Plain pickles are not canonical here: an astropy ``WCS`` pickles differently after a round trip,
    and geometries fill lazy caches as they are used. So arrays hash their dtype, shape and bytes,
    WCS their FITS header, objects their attributes minus `_DERIVED_ATTRIBUTES`; anything else its
    pickle.
    """
    from astropy.wcs import WCS

    update = digest.update
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        update(f"{type(value).__name__}:{value!r};".encode())
    elif isinstance(value, np.ndarray):
        update(f"nd:{value.dtype.str}:{value.shape}:".encode())
        update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (list, tuple)):
        update(f"{type(value).__name__}[{len(value)}](".encode())
        for item in value:
            _canonical(item, digest)
        update(b")")
    elif isinstance(value, dict):
        update(f"dict[{len(value)}]{{".encode())
        for key in sorted(value, key=repr):
            _canonical(key, digest)
            _canonical(value[key], digest)
        update(b"}")
    elif isinstance(value, u.Quantity):
        update(f"q:{value.unit.to_string()}:".encode())
        _canonical(np.asarray(value.value), digest)
    elif isinstance(value, u.UnitBase):
        update(f"unit:{value.to_string()};".encode())
    elif isinstance(value, WCS):
        update(b"wcs:" + value.to_header_string(relax=True).encode())
        update(f":{value.array_shape};".encode())
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        cls = type(value)
        update(f"obj:{cls.__module__}.{cls.__qualname__}".encode())
        _canonical({k: v for k, v in vars(value).items() if k not in _DERIVED_ATTRIBUTES}, digest)
    else:
        update(b"pickle:" + pickle.dumps(value, protocol=4))


class _SpecCache:
    """Small LRU cache of per-spec objects keyed by `ReductionSpec.content_key` (thread-safe).

    Keyed by content, not identity: every Ray task receives its own deserialised copy of the spec, and
    an identity key would rebuild the stacked dataset and makers (0.1-0.2 s) in every task.
    """

    def __init__(self, build, maxsize: int = 8) -> None:
        self._build = build
        self._maxsize = maxsize
        self._items: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.RLock()

    def __call__(self, spec: ReductionSpec):
        key = spec.content_key()
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = self._build(spec)
        with self._lock:
            value = self._items.setdefault(key, value)
            self._items.move_to_end(key)
            while len(self._items) > self._maxsize:
                self._items.popitem(last=False)
        return value

    def cache_clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def _build_prepared(spec: ReductionSpec):
    from .datasets.partial import StackGeometry

    stacked = spec.stacked_dataset()
    return stacked, StackGeometry.from_dataset(stacked), spec.makers()


# One empty stacked dataset, stack geometry and set of makers per spec content and process: workers
# reduce many observations with the same spec, and building them costs more than a small observation.
_prepare = _SpecCache(_build_prepared, maxsize=8)


@functools.lru_cache(maxsize=4)
def _datastore(base_dir: str):
    from .data import DataStore

    return DataStore.from_dir(base_dir)


ObservationLike = Union[Any, Tuple[Union[str, Path], int]]


def _resolve(observation: ObservationLike):
    if isinstance(observation, tuple):
        base_dir, obs_id = observation
        return _datastore(str(base_dir)).obs(int(obs_id))
    return observation


def _filename(obs, hdu: str) -> Optional[str]:
    try:
        return obs.filenames.get(hdu)
    except Exception:  # noqa: BLE001 - in-memory observations have no files
        return None


def _check_finite(obs, dataset) -> None:
    """IRFs with NaN/inf give a clear error naming the file, not NaNs in the stacked sums."""
    checks = (("exposure", "aeff", dataset.exposure), ("background", "bkg", dataset.background),
              ("psf", "psf", dataset.psf.psf_map if dataset.psf is not None else None),
              ("edisp", "edisp", dataset.edisp.edisp_map if dataset.edisp is not None else None))
    for what, hdu, m in checks:
        if m is not None and not np.all(np.isfinite(m.data)):
            raise IRFError(f"the {hdu} IRF gives non-finite values in the {what} map (NaN or inf in the "
                           "IRF table?)", obs.obs_id, _filename(obs, hdu))


def _empty_cutout(stacked, position, width_deg: float, name: str):
    """``stacked.cutout(position, width)`` for an *empty* stacked dataset: the makers only read the
    cutout's geometries, so only two image cutouts (fine, and coarse with >= 3 pixels as
    ``IRFMap.cutout``) are computed and the zero maps are made on them directly."""
    from .datasets import MapDataset
    from .datasets.irf_maps import IRF_MIN_NPIX

    geoms = stacked.geoms
    width = width_deg * u.deg
    fine = geoms["geom"].to_image().cutout(position, width, mode="trim")
    kwargs = {"geom": fine.to_cube(list(geoms["geom"].axes))}
    if geoms.get("geom_exposure") is not None:
        kwargs["geom_exposure"] = fine.to_cube(list(geoms["geom_exposure"].axes))
    irf_geom = geoms.get("geom_psf") or geoms.get("geom_edisp")
    if irf_geom is not None:
        coarse = irf_geom.to_image().cutout(position, width, mode="trim", min_npix=IRF_MIN_NPIX)
        for key in ("geom_psf", "geom_edisp"):
            if geoms.get(key) is not None:
                kwargs[key] = coarse.to_cube(list(geoms[key].axes))
    return MapDataset.from_geoms(name=name, gti=None, **kwargs)  # gti=None: no Time parsing


def reduce_to_dataset(observation: ObservationLike, spec: ReductionSpec, timings: Optional[dict] = None):
    """The seed loop body for one observation: the reduced cutout `MapDataset` (not yet stacked).

    Raises
    ------
    ObservationError
        Unreadable or invalid data (names obs id and file); `ObservationOutsideGeometry` when the
        cutout around the pointing does not overlap the stacked geometry.
    """
    from .maps.errors import MapError

    timings = {} if timings is None else timings
    t0 = time.perf_counter()
    obs = _resolve(observation)
    obs_id = getattr(obs, "obs_id", None)
    stacked, _, (maker, safe, fov) = _prepare(spec)
    try:
        pointing = obs.get_pointing_icrs(obs.tmid)
    except GammaRayDistError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise ObservationError(f"cannot get the pointing: {type(exc).__name__}: {exc}", obs_id,
                               _filename(obs, "events")) from exc
    try:
        cutout = _empty_cutout(stacked, pointing, spec.width, name=f"obs-{obs_id}")
    except (MapError, ValueError) as exc:
        raise ObservationOutsideGeometry(
            f"the cutout of width {spec.width} deg around the pointing (ra={pointing.ra.deg:.3f}, "
            f"dec={pointing.dec.deg:.3f}) does not overlap the stacked geometry", obs_id,
            _filename(obs, "events")) from exc
    t1 = time.perf_counter()
    try:
        dataset = maker.run(cutout, obs)
    except GammaRayDistError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ObservationError(f"map making failed: {type(exc).__name__}: {exc}", obs_id,
                               _filename(obs, "events")) from exc
    _check_finite(obs, dataset)
    t2 = time.perf_counter()
    dataset = safe.run(dataset, obs)
    t3 = time.perf_counter()
    if fov is not None:
        dataset = fov.run(dataset, obs)
    t4 = time.perf_counter()
    timings.update({"cutout": t1 - t0, "make": t2 - t1, "safe": t3 - t2, "fov": t4 - t3})
    return dataset


def reduce_observation(observation: ObservationLike, spec: ReductionSpec):
    """Reduce one observation to its `PartialDataset` (the distributed unit of work).

    Parameters
    ----------
    observation : Observation or (datastore_dir, obs_id)
        The observation, or where to read it (a `DataStore` is opened once per process and dir).
    spec : ReductionSpec

    Returns
    -------
    PartialDataset
        Counts/background/exposure/IRF-map contributions on the stacked geometry window, FoV norm
        and status, GTI, livetime, stage ``timings``. An observation whose FoV normalisation
        fails (no counts outside the exclusion, ...) has an all-False safe mask, i.e. contributes
        only its GTI, exactly as gammapy's stacking.

    Raises
    ------
    ObservationError
        See `reduce_to_dataset`.
    """
    t0 = time.perf_counter()
    obs = _resolve(observation)
    from .reduction_fast import _fast_context, _fast_spec_supported, _reduce_fast

    if _fast_spec_supported(spec):
        partial = _reduce_fast(obs, spec, _fast_context(spec), t0)
        if partial is not None:
            return partial
    return _reduce_with_makers(obs, spec)


def _reduce_with_makers(observation, spec: ReductionSpec):
    """`reduce_observation` through the public makers and `PartialDataset.from_dataset` (reference)."""
    from .datasets.partial import PartialDataset

    timings: dict = {}
    dataset = reduce_to_dataset(observation, spec, timings)
    t0 = time.perf_counter()
    _, geometry, _ = _prepare(spec)
    obs_id = dataset.meta_table["OBS_ID"][0] if dataset.meta_table is not None else None
    status = (dataset.meta or {}).get("fov_status", "none")
    partial = PartialDataset.from_dataset(dataset, geometry, obs_id=obs_id, fov_status=status)
    timings["partial"] = time.perf_counter() - t0
    partial.timings = timings
    return partial
