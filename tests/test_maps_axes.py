"""MapAxis / MapAxes against gammapy 2.1 (live). Tolerances: exact or rtol 1e-15 (same arithmetic)."""
import numpy as np
import pytest
from astropy import units as u

from gamma_ray_dist.errors import GammaRayDistError
from gamma_ray_dist.maps import MapAxes, MapAxis, MapError

gmaps = pytest.importorskip("gammapy.maps")

AXIS_SPECS = [
    ("from_energy_bounds", (1, 10, 4), dict(unit="TeV")),
    ("from_energy_bounds", (0.5, 100, 10), dict(unit="TeV", name="energy_true")),
    ("from_energy_bounds", (100, 1e5, 5), dict(unit="GeV", per_decade=True)),
    ("from_energy_bounds", (1, 10, 3), dict(unit="TeV", node_type="center")),
    ("from_bounds", (0, 0.66, 66), dict(unit="deg", name="rad")),
    ("from_bounds", (0.2, 5, 48), dict(name="migra")),
    ("from_bounds", (0.0, 2.5, 7), dict(unit="deg", name="offset", interp="sqrt")),
    ("from_edges", ([0.1, 0.3, 1.0, 3.0],), dict(unit="TeV", name="energy", interp="log")),
    ("from_nodes", ([0.0, 0.5, 1.0, 2.5],), dict(unit="deg", name="theta")),
]


def _pair(method, args, kwargs):
    return getattr(MapAxis, method)(*args, **kwargs), getattr(gmaps.MapAxis, method)(*args, **kwargs)


@pytest.mark.parametrize("method,args,kwargs", AXIS_SPECS)
def test_axis_edges_centers_match_gammapy(method, args, kwargs):
    ours, ref = _pair(method, args, kwargs)
    assert ours.nbin == ref.nbin
    assert (ours.name, ours.interp, ours.node_type, ours.unit) == (ref.name, ref.interp, ref.node_type, ref.unit)
    # Same operations as gammapy's interp1d path: bit-identical.
    np.testing.assert_array_equal(ours.edges.value, ref.edges.value)
    np.testing.assert_array_equal(ours.center.value, ref.center.value)
    np.testing.assert_array_equal(ours.bounds.value, ref.bounds.value)
    np.testing.assert_allclose(ours.bin_width.value, ref.bin_width.value, rtol=1e-15)


@pytest.mark.parametrize("method,args,kwargs", AXIS_SPECS)
def test_axis_pixel_transforms_match_gammapy(method, args, kwargs):
    ours, ref = _pair(method, args, kwargs)
    edges = ref.edges
    lo, hi = edges.value[0], edges.value[-1]
    coords = np.concatenate([np.linspace(lo, hi, 37), [lo - abs(lo) * 0.1 - 0.1, hi * 1.5, np.nan]]) * ref.unit
    np.testing.assert_allclose(ours.coord_to_pix(coords), ref.coord_to_pix(coords), rtol=1e-14, atol=1e-14)
    np.testing.assert_array_equal(ours.coord_to_idx(coords), ref.coord_to_idx(coords))
    np.testing.assert_array_equal(ours.coord_to_idx(coords, clip=True), ref.coord_to_idx(coords, clip=True))
    pix = np.linspace(-0.5, ref.nbin - 0.5, 23)
    np.testing.assert_allclose(ours.pix_to_coord(pix).value, ref.pix_to_coord(pix).value, rtol=1e-14)


def test_axis_slice_squash_copy_eq():
    ours, ref = _pair("from_energy_bounds", (0.5, 100, 10), dict(unit="TeV", name="energy_true"))
    for sl in (slice(2, 5), slice(None, 1), slice(7, None)):
        np.testing.assert_array_equal(ours.slice(sl).edges.value, ref.slice(sl).edges.value)
    np.testing.assert_array_equal(ours.squash().edges.value, ref.squash().edges.value)
    assert ours.squash().interp == "log"
    assert ours == ours.copy()
    assert ours != ours.copy(name="energy")
    assert ours != MapAxis.from_energy_bounds(0.5, 100, 11, unit="TeV", name="energy_true")
    assert ours.copy(unit="GeV").unit == u.GeV
    assert ours.is_aligned(ours.slice(slice(2, 5)))


def test_axes_container():
    e = MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")
    rad = MapAxis.from_bounds(0, 0.66, 66, unit="deg", name="rad")
    axes = MapAxes([rad, e])
    assert axes.shape == (66, 4)
    assert axes.names == ["rad", "energy"]
    assert axes["energy"] is e and axes[0] is rad
    assert axes.index_data("rad") == 1
    assert axes.slice_by_idx({"energy": 1}).names == ["rad"]
    with pytest.raises(KeyError):
        axes["migra"]
    with pytest.raises(MapError, match="unique"):
        MapAxes([e, e])


def test_axis_bad_input_errors():
    with pytest.raises(MapError, match="sorted"):
        MapAxis([1.0, 3.0, 2.0])
    with pytest.raises(MapError, match="unique"):
        MapAxis([1.0, 1.0, 2.0])
    with pytest.raises(MapError, match="energy unit"):
        MapAxis.from_energy_bounds(1, 10, 3, unit="deg")
    with pytest.raises(MapError, match="name"):
        MapAxis.from_energy_bounds(1, 10, 3, unit="TeV", name="rad")
    with pytest.raises(MapError, match="interp"):
        MapAxis([1.0, 2.0], interp="cubic")
    with pytest.raises(GammaRayDistError):
        MapAxis([-1.0, 2.0], interp="log")
