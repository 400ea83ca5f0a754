"""WcsGeom against gammapy 2.1 (live) on the seed geometry and variants, real DR1 pointings.

Tolerances: pixel coordinates exact (same WCS calls); solid angles rtol 1e-13 (same formula, float
rounding of astropy Quantity conversions); cutout windows and region masks exact.
"""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from regions import CircleSkyRegion

from gamma_ray_dist.maps import MapAxis, MapError, WcsGeom

gmaps = pytest.importorskip("gammapy.maps")

GEOMS = {
    "seed": dict(skydir=(83.633, 22.014), binsz=0.02, width=2, frame="icrs", proj="CAR"),
    "galactic_tan": dict(skydir=(184.557, -5.784), binsz=0.05, width=(3.1, 2.3), frame="galactic", proj="TAN"),
    "odd_width": dict(skydir=(83.633, 22.014), binsz=0.03, width=2.55, frame="icrs", proj="CAR"),
    "npix_odd_ait": dict(skydir=(329.717, -30.226), binsz=0.1, npix=(41, 31), frame="icrs", proj="AIT"),
    "high_dec_tan": dict(skydir=(10.0, 80.0), binsz=0.04, width=4, frame="icrs", proj="TAN"),
}


def _pair(name, with_axes=True):
    kw = dict(GEOMS[name])
    ours_axes = [MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")] if with_axes else None
    ref_axes = [gmaps.MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")] if with_axes else None
    return WcsGeom.create(axes=ours_axes, **kw), gmaps.WcsGeom.create(axes=ref_axes, **kw)


@pytest.mark.parametrize("name", GEOMS)
def test_geometry_layout_matches_gammapy(name):
    ours, ref = _pair(name)
    assert ours.data_shape == tuple(int(v) for v in ref.data_shape)
    assert ours.npix[0][0] == ref.npix[0][0] and ours.npix[1][0] == ref.npix[1][0]
    np.testing.assert_array_equal(ours.wcs.wcs.crpix, ref.wcs.wcs.crpix)
    assert repr(ours.to_header()) == repr(ref.to_header())
    assert (ours.frame, ours.projection) == (ref.frame, ref.projection)
    np.testing.assert_array_equal(ours.width.value, ref.width.value)
    np.testing.assert_allclose(ours.pixel_scales.deg, ref.pixel_scales.deg, rtol=0)
    assert ours.center_skydir.separation(ref.center_skydir).deg < 1e-12
    assert ours.data_shape_image == tuple(int(v) for v in ref.data_shape_image)


@pytest.mark.parametrize("name", GEOMS)
def test_pixel_centers_and_solid_angles_match_gammapy(name):
    ours, ref = _pair(name)
    lon, lat = ours.pixel_centers()
    coord = ref.to_image().get_coord()
    np.testing.assert_array_equal(lon, coord.lon.to_value("deg"))
    np.testing.assert_array_equal(lat, coord.lat.to_value("deg"))
    ref_sa = ref.solid_angle()
    assert ours.solid_angle().shape == ref_sa.shape
    np.testing.assert_allclose(ours.solid_angle().to_value("sr"), ref_sa.to_value("sr"), rtol=1e-13)
    np.testing.assert_allclose(ours.solid_angle_values(), ref.to_image().solid_angle().value, rtol=1e-13)
    ref_full = ref.get_coord()
    our_full = ours.get_coord()
    np.testing.assert_array_equal(our_full["energy"].value, ref_full["energy"].value)
    np.testing.assert_array_equal(our_full.lon.value, ref_full.lon.value)
    center = SkyCoord(83.6, 22.1, unit="deg")
    np.testing.assert_allclose(ours.separation(center).deg, ref.separation(center).deg, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", GEOMS)
def test_coord_pix_roundtrip_matches_gammapy(name):
    ours, ref = _pair(name)
    rng = np.random.default_rng(0)
    c = ref.center_skydir
    lon = c.data.lon.deg + rng.uniform(-1.5, 1.5, 200)
    lat = c.data.lat.deg + rng.uniform(-1.5, 1.5, 200)
    energy = rng.uniform(0.5, 12, 200) * u.TeV
    coords = {"lon": lon, "lat": lat, "energy": energy}
    for a, b in zip(ours.coord_to_pix(coords), ref.coord_to_pix(coords)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-12)
    for a, b in zip(ours.coord_to_idx(coords), ref.coord_to_idx(coords)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.contains(coords), ref.contains(coords))
    pix = (rng.uniform(-1, 30, 50), rng.uniform(-1, 30, 50), rng.uniform(-0.5, 3.5, 50))
    for a, b in zip(ours.pix_to_coord(pix), ref.pix_to_coord(pix)):
        np.testing.assert_allclose(a.value, b.value, rtol=1e-14)


def _pointings(hess_dr1):
    table = fits.getdata(hess_dr1 / "obs-index.fits.gz")
    return [SkyCoord(ra, dec, unit="deg") for ra, dec in zip(table["RA_PNT"], table["DEC_PNT"])]


@pytest.mark.parametrize("mode", ["trim", "partial"])
def test_cutout_windows_match_gammapy(hess_dr1, mode):
    # A parent bigger than the cutouts (Crab region), real pointings (some outside it) plus the seed's.
    kw = dict(skydir=(83.633, 22.014), binsz=0.02, width=(8, 6), frame="icrs", proj="CAR")
    ours = WcsGeom.create(axes=[MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")], **kw)
    ref = gmaps.WcsGeom.create(axes=[gmaps.MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")], **kw)
    positions = [SkyCoord(83.633, 21.514, unit="deg"), SkyCoord(83.633, 22.514, unit="deg")]
    positions += [p for p in _pointings(hess_dr1) if p.separation(ref.center_skydir).deg < 6]
    assert len(positions) >= 4
    for pos in positions:
        for width in (5 * u.deg, (2.5 * u.deg, 3.33 * u.deg)):
            a, b = ours.cutout(pos, width, mode=mode), ref.cutout(pos, width, mode=mode)
            assert a.data_shape == tuple(int(v) for v in b.data_shape)
            assert repr(a.to_header()) == repr(b.to_header())
            sa, sb = a.cutout_slices(ours, mode=mode), b.cutout_slices(ref, mode=mode)
            assert sa == {k: tuple(slice(*(None if x is None else int(x) for x in (s.start, s.stop, s.step)))
                                   for s in v) for k, v in sb.items()}
    a, b = ours.cutout(positions[0], 1.0, odd_npix=True), ref.cutout(positions[0], 1.0, odd_npix=True)
    assert a.data_shape == tuple(int(v) for v in b.data_shape) and a.data_shape[-1] % 2 == 1


def test_cutout_no_overlap_raises_typed_error():
    geom = WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=2)
    with pytest.raises(MapError, match="cutout"):
        geom.cutout(SkyCoord(200, -40, unit="deg"), 1 * u.deg)


@pytest.mark.parametrize("name", ["seed", "galactic_tan", "odd_width", "high_dec_tan"])
def test_region_mask_matches_gammapy(name):
    ours, ref = _pair(name)
    c = ref.center_skydir.icrs
    regions = [
        CircleSkyRegion(SkyCoord(c.ra.deg + 0.1, c.dec.deg + 0.12, unit="deg"), 0.2 * u.deg),
        CircleSkyRegion(SkyCoord(c.ra.deg - 0.5, c.dec.deg - 0.3, unit="deg"), 0.33 * u.deg),
    ]
    for inside in (True, False):
        a, b = ours.region_mask(regions, inside=inside), ref.region_mask(regions, inside=inside)
        assert a.data.dtype == bool and a.data.shape == b.data.shape
        np.testing.assert_array_equal(a.data, b.data)
    ds9 = f"icrs;circle({c.ra.deg:.4f},{c.dec.deg:.4f},0.3);box({c.ra.deg + 0.4:.4f},{c.dec.deg:.4f},0.3,0.2,30)"
    np.testing.assert_array_equal(ours.region_mask(ds9).data, ref.region_mask(ds9).data)


def test_region_mask_matches_reference_exclusion(reference_dir):
    geom = WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=2, frame="icrs", proj="CAR",
                          axes=[MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")])
    region = CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)
    exclusion = ~geom.to_image().region_mask([region])
    ref = fits.getdata(reference_dir / "exclusion_crab_gammapy.fits.gz")
    assert ref.shape == exclusion.data.shape
    np.testing.assert_array_equal(exclusion.data, ref.astype(bool))
    assert (~exclusion.data).sum() > 100  # the region is not empty


def test_derived_geometries():
    ours, ref = _pair("seed")
    assert ours.to_image().data_shape == (100, 100)
    rad = MapAxis.from_bounds(0, 0.66, 66, unit="deg", name="rad")
    assert ours.to_cube([rad]).data_shape == (66, 4, 100, 100)
    assert ours.squash("energy").data_shape == (1, 100, 100)
    assert ours.slice_by_idx({"energy": slice(1, 3)}).data_shape == (2, 100, 100)
    assert ours.slice_by_idx({"energy": 0}).is_image
    assert ours == ours.copy() and ours != ours.to_image()
    g_up, r_up = ours.upsample(2), ref.upsample(2)
    assert repr(g_up.to_header()) == repr(r_up.to_header())
    g_dn, r_dn = ours.downsample(4), ref.downsample(4)
    assert repr(g_dn.to_header()) == repr(r_dn.to_header())
    with pytest.raises(MapError):
        ours.downsample(3)


def test_create_bad_input():
    with pytest.raises(MapError, match="skydir"):
        WcsGeom.create(skydir="crab", binsz=0.1, width=1)
    with pytest.raises(MapError, match="proj"):
        WcsGeom.create(skydir=(0, 0), binsz=0.1, width=1, proj="XYZ")
    with pytest.raises(MapError):
        WcsGeom.create(skydir=(0, 0), binsz=1.0, width=0.2)


def test_geom_and_map_pickle_roundtrip():
    # Geometries cross process boundaries (Ray); the cache must not be shipped and must rebuild.
    import pickle

    geom, _ = _pair("galactic_tan")
    geom.solid_angle_values()
    clone = pickle.loads(pickle.dumps(geom))
    assert clone == geom and clone._cache == {}
    np.testing.assert_array_equal(clone.solid_angle_values(), geom.solid_angle_values())


@pytest.mark.parametrize("kw", [
    dict(skydir=(83.633, 22.014), binsz=0.02, width=(2, 2), frame="icrs", proj="CAR"),
    dict(skydir=(347.3, -0.4), binsz=0.05, width=(3, 2.5), frame="galactic", proj="TAN"),
    dict(skydir=(0, 0), binsz=1.0, frame="galactic", proj="AIT"),
    dict(skydir=(228.529, -59.157), binsz=0.013, width=(2.1, 1.9), frame="icrs", proj="SIN"),
])
def test_pickle_round_trip_is_exact_and_matches_astropy(kw):
    """Geometries pickle through their header text (fast); the WCS is the one astropy's pickling gives."""
    import pickle
    import warnings

    energy = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    geom = WcsGeom.create(axes=[energy], **kw)
    for g in (geom, geom.cutout(geom.center_skydir, width=0.77), geom.to_image()):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no FITSFixedWarning on the way back
            copy = pickle.loads(pickle.dumps(g))
        assert copy == g and copy.data_shape == g.data_shape and copy.axes.names == g.axes.names
        assert copy.wcs.array_shape == g.wcs.array_shape
        assert copy.wcs.wcs.compare(g.wcs.wcs)
        by_astropy = pickle.loads(pickle.dumps(g.wcs))
        assert by_astropy.to_header_string() == copy.wcs.to_header_string()
        ny, nx = g.data_shape[-2:]
        y, x = np.mgrid[0:ny:7, 0:nx:7].astype(float) + 0.3
        world = g.wcs.wcs_pix2world(x, y, 0)
        for a, b in zip(world, copy.wcs.wcs_pix2world(x, y, 0)):
            np.testing.assert_array_equal(a, b)  # NaN outside an all-sky projection on both sides
        for a, b in zip(g.wcs.wcs_world2pix(*world, 0), copy.wcs.wcs_world2pix(*world, 0)):
            np.testing.assert_array_equal(a, b)
