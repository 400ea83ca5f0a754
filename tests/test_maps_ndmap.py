"""WcsNDMap against gammapy 2.1 (live): FITS format both ways, the reference stacked dataset, smoothing,
interpolation, filling, reductions, cutouts and arithmetic.

Tolerances: FITS data/headers exact; smoothing rtol 1e-12 (same scipy calls); interpolation rtol 1e-12.
"""
import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord

import gamma_ray_dist.maps as ours_maps
from gamma_ray_dist.maps import GeometryMismatch, Map, MapError, MapFormatError, WcsGeom, WcsNDMap

gmaps = pytest.importorskip("gammapy.maps")

STACKED_HDUS = ["COUNTS", "EXPOSURE", "BACKGROUND", "EDISP", "EDISP_EXPOSURE", "PSF", "PSF_EXPOSURE", "MASK_SAFE"]


def _axes(lib, kind):
    e = lib.MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")
    et = lib.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    rad = lib.MapAxis.from_bounds(0, 0.66, 66, unit="deg", name="rad")
    migra = lib.MapAxis.from_bounds(0.2, 5, 48, name="migra", node_type="edges")
    return {"counts": [e], "psf": [rad, et], "edisp": [e, et], "migra": [migra, et], "mask": [e], "image": None}[kind]


def _geoms(kind, binsz=0.02):
    kw = dict(skydir=(83.633, 22.014), binsz=binsz, width=2, frame="icrs", proj="CAR")
    if kind in ("psf", "edisp", "migra"):
        kw["binsz"] = 0.2
    return WcsGeom.create(axes=_axes(ours_maps, kind), **kw), \
        gmaps.WcsGeom.create(axes=_axes(gmaps, kind), **kw)


def _native(dtype):
    return np.dtype(dtype).newbyteorder("=")


def _data(shape, kind):
    rng = np.random.default_rng(42)
    if kind == "mask":
        return rng.random(shape) > 0.3
    return rng.random(shape).astype("float32")


@pytest.mark.parametrize("kind,unit", [("counts", ""), ("psf", "sr-1"), ("edisp", ""), ("migra", ""),
                                       ("mask", ""), ("image", "m2 s")])
def test_fits_ours_to_gammapy_and_back(tmp_path, kind, unit):
    geom, ref_geom = _geoms(kind)
    hdu = "mask_safe" if kind == "mask" else kind
    ours = Map.from_geom(geom, data=_data(geom.data_shape, kind), unit=unit, meta={"obs_id": 23523, "tag": "x"})
    path = tmp_path / "ours.fits"
    ours.write(path, hdu=hdu)
    ref = gmaps.Map.read(path, hdu=hdu)
    assert ref.geom == ref_geom
    assert _native(ref.data.dtype) == ours.data.dtype
    np.testing.assert_array_equal(ref.data, ours.data)
    assert ref.unit == ours.unit
    assert ref.meta["tag"] == "x"
    # gammapy writes exactly the same HDUs for the same map.
    ref_same = gmaps.Map.from_geom(ref_geom, data=ours.data.copy(), unit=unit, meta={"obs_id": 23523, "tag": "x"})
    ref_hdus = ref_same.to_hdulist(hdu=hdu)
    our_hdus = ours.to_hdulist(hdu=hdu)
    assert [h.name for h in our_hdus] == [h.name for h in ref_hdus]
    for a, b in zip(our_hdus, ref_hdus):
        assert repr(a.header) == repr(b.header)
        if a.data is not None:
            np.testing.assert_array_equal(np.asarray(a.data), np.asarray(b.data))
    # and gammapy's file reads back into ours.
    ref_path = tmp_path / "ref.fits"
    ref.write(ref_path, hdu=hdu)
    back = Map.read(ref_path, hdu=hdu)
    assert back.geom == geom
    np.testing.assert_array_equal(back.data, ours.data)
    assert back.unit == ours.unit and back.meta["obs_id"] == 23523


def test_fits_primary_hdu_roundtrip(tmp_path):
    geom, _ = _geoms("counts")
    ours = Map.from_geom(geom, data=_data(geom.data_shape, "counts"))
    ours.write(tmp_path / "m.fits")
    ref = gmaps.Map.read(tmp_path / "m.fits")
    np.testing.assert_array_equal(ref.data, ours.data)
    assert Map.read(tmp_path / "m.fits").geom == geom
    with pytest.raises(OSError):
        ours.write(tmp_path / "m.fits")


@pytest.mark.parametrize("hdu", STACKED_HDUS)
def test_read_reference_stacked_dataset(reference_dir, hdu):
    path = reference_dir / "crab_stacked_gammapy.fits.gz"
    ours, ref = Map.read(path, hdu=hdu), gmaps.Map.read(path, hdu=hdu)
    assert ours.geom.data_shape == tuple(int(v) for v in ref.geom.data_shape)
    assert ours.geom.axes.names == ref.geom.axes.names
    for a, b in zip(ours.geom.axes, ref.geom.axes):
        np.testing.assert_array_equal(a.edges.value, b.edges.value)
        assert (a.unit, a.interp, a.node_type) == (b.unit, b.interp, b.node_type)
    assert ours.data.dtype == _native(ref.data.dtype)  # we convert big-endian FITS data to native order
    np.testing.assert_array_equal(ours.data, ref.data)
    assert ours.unit == ref.unit
    assert repr(ours.geom.to_header()) == repr(ref.geom.to_header())
    # Writing it again gives gammapy's bytes-level header and data.
    for a, b in zip(ours.to_hdulist(hdu=hdu), ref.to_hdulist(hdu=hdu)):
        assert repr(a.header) == repr(b.header)


def test_read_errors(tmp_path, reference_dir):
    with pytest.raises(MapFormatError, match="not found"):
        Map.read(tmp_path / "missing.fits")
    with pytest.raises(MapFormatError, match="NOPE"):
        Map.read(reference_dir / "crab_stacked_gammapy.fits.gz", hdu="NOPE")
    geom, _ = _geoms("counts")
    hdus = Map.from_geom(geom).to_hdulist(hdu="counts")
    del hdus["COUNTS_BANDS"]
    with pytest.raises(MapFormatError, match="COUNTS_BANDS"):
        Map.from_hdulist(hdus, hdu="counts")


@pytest.mark.parametrize("kernel,width", [("gauss", 0.05 * u.deg), ("gauss", 3.0), ("disk", 0.1 * u.deg),
                                          ("box", 5)])
def test_smooth_matches_gammapy(kernel, width):
    geom, ref_geom = _geoms("counts")
    data = _data(geom.data_shape, "counts")
    ours = Map.from_geom(geom, data=data).smooth(width, kernel=kernel)
    ref = gmaps.Map.from_geom(ref_geom, data=data).smooth(width, kernel=kernel)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-12, atol=1e-15)
    with pytest.raises(MapError, match="kernel"):
        Map.from_geom(geom).smooth(1, kernel="cone")


def test_interp_get_fill_by_coord_match_gammapy():
    geom, ref_geom = _geoms("psf")
    data = _data(geom.data_shape, "psf")
    ours, ref = Map.from_geom(geom, data=data), gmaps.Map.from_geom(ref_geom, data=data)
    rng = np.random.default_rng(3)
    coords = {"lon": 83.633 + rng.uniform(-1.2, 1.2, 300), "lat": 22.014 + rng.uniform(-1.2, 1.2, 300),
              "rad": rng.uniform(0, 0.7, 300) * u.deg, "energy_true": rng.uniform(0.4, 25, 300) * u.TeV}
    np.testing.assert_allclose(ours.interp_by_coord(coords), ref.interp_by_coord(coords), rtol=1e-12)
    np.testing.assert_allclose(ours.interp_by_coord(coords, fill_value=0.0),
                               ref.interp_by_coord(coords, fill_value=0.0), rtol=1e-12)
    np.testing.assert_array_equal(ours.get_by_coord(coords), ref.get_by_coord(coords))
    cgeom, cref_geom = _geoms("counts")
    ours_c, ref_c = Map.from_geom(cgeom), gmaps.Map.from_geom(cref_geom)
    events = {"lon": coords["lon"], "lat": coords["lat"], "energy": rng.uniform(0.8, 12, 300) * u.TeV}
    ours_c.fill_by_coord(events)
    ref_c.fill_by_coord(events)
    np.testing.assert_array_equal(ours_c.data, ref_c.data)
    assert 0 < ours_c.data.sum() < 300  # some events fall outside the map or energy range
    w = rng.random(300)
    ours_c.fill_by_coord(events, weights=w)
    ref_c.fill_by_coord(events, weights=w)
    np.testing.assert_allclose(ours_c.data, ref_c.data, rtol=1e-6)


def test_reductions_slices_cutout_match_gammapy():
    geom, ref_geom = _geoms("edisp")
    data = _data(geom.data_shape, "edisp")
    ours, ref = Map.from_geom(geom, data=data, unit="m2"), gmaps.Map.from_geom(ref_geom, data=data, unit="m2")
    for kw in (dict(), dict(keepdims=False), dict(axes_names=["energy"])):
        a, b = ours.sum_over_axes(**kw), ref.sum_over_axes(**kw)
        assert a.geom.data_shape == tuple(int(v) for v in b.geom.data_shape)
        np.testing.assert_allclose(a.data, b.data, rtol=1e-6)
    a, b = ours.slice_by_idx({"energy_true": slice(2, 5)}), ref.slice_by_idx({"energy_true": slice(2, 5)})
    np.testing.assert_array_equal(a.data, b.data)
    np.testing.assert_array_equal(a.geom.axes["energy_true"].edges.value, b.geom.axes["energy_true"].edges.value)
    np.testing.assert_array_equal(ours.get_image_by_idx((1, 3)).data, ref.get_image_by_idx((1, 3)).data)
    cgeom, cref_geom = _geoms("counts")
    cdata = _data(cgeom.data_shape, "counts")
    pos = SkyCoord(83.2, 21.7, unit="deg")
    for mode in ("trim", "partial"):
        a = Map.from_geom(cgeom, data=cdata).cutout(pos, 1.5 * u.deg, mode=mode)
        b = gmaps.Map.from_geom(cref_geom, data=cdata).cutout(pos, 1.5 * u.deg, mode=mode)
        assert repr(a.geom.to_header()) == repr(b.geom.to_header())
        np.testing.assert_array_equal(a.data, b.data)


def test_arithmetic_and_boolean_ops():
    geom, _ = _geoms("counts")
    a = Map.from_geom(geom, data=np.full(geom.data_shape, 2.0), unit="m2")
    b = Map.from_geom(geom, data=np.full(geom.data_shape, 3.0), unit="s")
    assert (a * b).unit == u.Unit("m2 s") and np.all((a * b).data == 6.0)
    assert np.all((a + 1 * u.cm**2).data == pytest.approx(2.0001))
    assert (a / b).unit == u.Unit("m2 / s")
    assert np.all((2 * a).data == 4.0) and (2 * a).unit == u.m**2
    c = a.copy()
    c += a
    assert np.all(c.data == 4.0) and np.all(a.data == 2.0)
    with pytest.raises(MapError, match="units"):
        a + b
    m1 = Map.from_geom(geom, data=np.zeros(geom.data_shape, dtype=bool))
    m1.data[0, :5] = True
    m2 = ~m1
    assert m2.is_mask and not np.any((m1 & m2).data) and np.all((m1 | m2).data)
    assert np.array_equal((a > 1.5 * u.m**2).data, np.ones(geom.data_shape, dtype=bool))
    other = Map.from_geom(geom.to_image())
    with pytest.raises(GeometryMismatch):
        m1 & other
    with pytest.raises(MapError, match="shape"):
        WcsNDMap(geom, data=np.zeros((3, 100, 100)))


def test_region_mask_map_written_as_mask_reads_in_gammapy(tmp_path):
    geom, ref_geom = _geoms("counts")
    mask = ~geom.region_mask("icrs;circle(83.63,22.14,0.2)")
    mask.write(tmp_path / "mask.fits", hdu="mask_fit")
    ref = gmaps.Map.read(tmp_path / "mask.fits", hdu="mask_fit")
    assert ref.data.dtype == bool
    np.testing.assert_array_equal(ref.data, (~ref_geom.region_mask("icrs;circle(83.63,22.14,0.2)")).data)
