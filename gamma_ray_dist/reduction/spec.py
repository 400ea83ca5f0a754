"""`ReductionSpec` and the per-process objects built from it.

`ReductionSpec` is the small, frozen, picklable description of the stacked dataset and of the
makers that a driver ships once to every worker. Its copies are rebuilt through content
interning (`datasets.interning`), and what is built from it (the empty stacked dataset, its
`StackGeometry`, the makers) is cached per process by content (`SpecCache`), so a Ray task that
deserialises its own copy of the spec still finds what an earlier task built.
"""
from __future__ import annotations

import functools
import hashlib
import pickle
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Tuple, Union

import numpy as np
from astropy import units as u

from ..datasets.interning import load_interned
from ..errors import ObservationError

__all__ = ["ReductionSpec", "SpecCache", "Prepared", "prepare", "ObservationOutsideGeometry",
           "ObservationLike", "resolve_observation", "observation_filename", "digest_update"]


class ObservationOutsideGeometry(ObservationError):
    """The observation's cutout does not overlap the stacked geometry: it contributes nothing."""


@dataclass(frozen=True, eq=False)  # per-process caches are keyed by `content_key`, not by the object
class ReductionSpec:
    """Picklable, immutable description of the stacked dataset and of the per-observation makers.

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
        Boolean array (True = usable) on ``exclusion_geom`` (stored as a read-only copy).
    exclusion_geom : WcsGeom or None
        Geometry of ``exclusion_mask`` (default ``geom``).
    cutout_width : float or None
        Cutout width (deg); default ``2 * offset_max``.
    maker_kwargs : dict
        MapDatasetMaker arguments (selection, background_oversampling, ...).
    name : str
        Name of the stacked dataset.

    Notes
    -----
    Frozen: use ``dataclasses.replace`` for a variant. The dict fields are not deep-frozen; they
    must not be edited either (the content key is computed once per object).
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
        def put(name, value):  # normalising the fields of a frozen dataclass
            object.__setattr__(self, name, value)

        put("binsz_irf", float(u.Quantity(self.binsz_irf, "deg").value))
        put("offset_max", float(u.Quantity(self.offset_max, "deg").value))
        if self.cutout_width is not None:
            put("cutout_width", float(u.Quantity(self.cutout_width, "deg").value))
        put("safe_mask_methods", tuple(self.safe_mask_methods))
        if self.exclusion_mask is not None:
            mask = self.exclusion_mask
            if hasattr(mask, "geom") and hasattr(mask, "data"):  # a boolean map
                put("exclusion_geom", self.exclusion_geom or mask.geom)
                mask = mask.data
            mask = np.array(mask, dtype=bool, order="C")  # a copy: the caller keeps its array
            mask.flags.writeable = False
            put("exclusion_mask", mask)
            if self.exclusion_geom is None:
                put("exclusion_geom", self.geom)
            if mask.shape[-2:] != tuple(self.exclusion_geom.data_shape[-2:]):
                raise ValueError(f"exclusion_mask shape {mask.shape} does not match its "
                                 f"geometry {tuple(self.exclusion_geom.data_shape)}")

    def content_key(self) -> str:
        """Stable key of the spec's content (SHA-1 of a canonical form of its fields).

        The per-process caches (`prepare`, the fast path's context) are keyed by it, so the copy of
        a spec that every Ray task deserialises hits the cache its worker built for an earlier task.
        Computed once per object and carried through pickling.
        """
        key = self.__dict__.get("_content_key")
        if key is None:
            fields = {k: v for k, v in self.__dict__.items() if k != "_content_key"}
            digest = hashlib.sha1()
            digest_update(fields, digest)
            key = self.__dict__["_content_key"] = digest.hexdigest()
        return key

    def __reduce__(self):
        # Rebuilt through `load_interned`, so a worker parses the geometries' WCS once per content,
        # not once per task.
        state = {k: v for k, v in self.__dict__.items() if k != "_content_key"}
        state["_content_key"] = self.content_key()
        return (_load_spec, (pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL),))

    @property
    def width(self) -> float:
        """Cutout width in deg."""
        return self.cutout_width if self.cutout_width is not None else 2.0 * self.offset_max

    def stacked_dataset(self):
        """A fresh empty stacked `MapDataset` (gammapy's ``MapDataset.create``)."""
        from ..datasets import MapDataset

        return MapDataset.create(geom=self.geom, energy_axis_true=self.energy_axis_true,
                                 binsz_irf=self.binsz_irf * u.deg, name=self.name)

    def exclusion_map(self):
        """The exclusion mask as a boolean map, or None."""
        if self.exclusion_mask is None:
            return None
        from ..maps import Map

        return Map.from_geom(self.exclusion_geom, data=self.exclusion_mask, dtype=bool)

    def makers(self):
        """``(MapDatasetMaker, SafeMaskMaker, FoVBackgroundMaker or None)`` of this spec."""
        from ..makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker

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
    spec.__dict__.update(load_interned(blob))
    return spec


def digest_update(value: Any, digest) -> None:
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
            digest_update(item, digest)
        update(b")")
    elif isinstance(value, dict):
        update(f"dict[{len(value)}]{{".encode())
        for key in sorted(value, key=repr):
            digest_update(key, digest)
            digest_update(value[key], digest)
        update(b"}")
    elif isinstance(value, u.Quantity):
        update(f"q:{value.unit.to_string()}:".encode())
        digest_update(np.asarray(value.value), digest)
    elif isinstance(value, u.UnitBase):
        update(f"unit:{value.to_string()};".encode())
    elif isinstance(value, WCS):
        update(b"wcs:" + value.to_header_string(relax=True).encode())
        update(f":{value.array_shape};".encode())
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        cls = type(value)
        update(f"obj:{cls.__module__}.{cls.__qualname__}".encode())
        digest_update({k: v for k, v in vars(value).items() if k not in _DERIVED_ATTRIBUTES}, digest)
    else:
        update(b"pickle:" + pickle.dumps(value, protocol=4))


class SpecCache:
    """Small LRU cache of per-spec objects keyed by `ReductionSpec.content_key` (thread-safe).

    Keyed by content, not identity: every Ray task receives its own deserialised copy of the spec, and
    an identity key would rebuild the stacked dataset and makers (0.1-0.2 s) in every task.

    Parameters
    ----------
    build : callable
        ``build(spec)`` -> the object to cache.
    maxsize : int
        Number of spec contents kept.
    """

    def __init__(self, build: Callable[[ReductionSpec], Any], maxsize: int = 8) -> None:
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


@dataclass(frozen=True)
class Prepared:
    """What every observation of a spec shares in a process: the empty stacked dataset, its
    `StackGeometry` and the makers."""

    stacked: Any
    geometry: Any
    maker: Any
    safe: Any
    fov: Any


def _build_prepared(spec: ReductionSpec) -> Prepared:
    from ..datasets.partial import StackGeometry

    stacked = spec.stacked_dataset()
    return Prepared(stacked, StackGeometry.from_dataset(stacked), *spec.makers())


# One per spec content and process: workers reduce many observations with the same spec, and
# building these costs more than reducing a small observation.
prepare = SpecCache(_build_prepared, maxsize=8)


# -- observations ---------------------------------------------------------------------------------
ObservationLike = Union[Any, Tuple[Union[str, Path], int]]


@functools.lru_cache(maxsize=4)
def _datastore(base_dir: str):
    from ..data import DataStore

    return DataStore.from_dir(base_dir)


def resolve_observation(observation: ObservationLike):
    """The observation itself, or the one at ``(datastore_dir, obs_id)`` (store opened once per
    process and directory)."""
    if isinstance(observation, tuple):
        base_dir, obs_id = observation
        return _datastore(str(base_dir)).obs(int(obs_id))
    return observation


def observation_filename(obs, hdu: str) -> Optional[str]:
    """File of an observation's HDU for error messages (None for in-memory observations)."""
    try:
        return obs.filenames.get(hdu)
    except Exception:  # noqa: BLE001 - in-memory observations have no files
        return None
