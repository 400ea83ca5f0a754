"""Content-interned pickling of the objects every task deserialises (geometry, reduction spec)."""
from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

from gamma_ray_dist.datasets.partial import StackGeometry
from gamma_ray_dist.datasets.interning import load_interned
from gamma_ray_dist.maps import MapAxis, WcsGeom
from gamma_ray_dist.reduction import ReductionSpec


def _spec(**kwargs) -> ReductionSpec:
    e = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    return ReductionSpec(geom, et, offset_max=2.5, **kwargs)


def test_geometry_copies_share_the_rebuilt_geoms_and_stay_equal():
    spec = _spec()
    geometry = StackGeometry.from_dataset(spec.stacked_dataset())
    blob = pickle.dumps(geometry)
    a, b = pickle.loads(blob), pickle.loads(pickle.dumps(geometry))
    assert a.geoms is b.geoms  # parsed once per process
    assert a == geometry and a.reference_time == geometry.reference_time
    for key in ("geom", "geom_exposure", "geom_psf", "geom_edisp"):
        assert a.shape(key) == geometry.shape(key)
        assert a.geoms[key] == geometry.geoms[key]
    assert pickle.loads(pickle.dumps(a)) == geometry  # a copy pickles again


def test_spec_copies_share_fields_but_not_the_object():
    spec = _spec(exclusion_mask=np.ones((100, 100), bool))
    a, b = pickle.loads(pickle.dumps(spec)), pickle.loads(pickle.dumps(spec))
    assert a is not b and a.geom is b.geom
    assert a.content_key() == b.content_key() == spec.content_key()
    with pytest.raises(dataclasses.FrozenInstanceError):  # specs are immutable ...
        a.name = "edited"
    edited = dataclasses.replace(a, name="edited")  # ... a variant is a new spec
    assert b.name == "stacked" and a.name == "stacked"
    assert pickle.loads(pickle.dumps(edited)).name == "edited"
    assert pickle.loads(pickle.dumps(edited)).content_key() != spec.content_key()
    assert not spec.exclusion_mask.flags.writeable


def test_different_content_is_not_confused():
    assert load_interned(pickle.dumps({"x": 1})) == {"x": 1}
    assert load_interned(pickle.dumps({"x": 2})) == {"x": 2}
