"""MapDataset, PSF/EDisp maps, partials and the stack accumulator, compared with gammapy 2.1.

Tolerances: counts exact; float32 maps rtol 1e-5 against gammapy (our float64 sums vs its
float32 in-place sums), rtol 1e-6 between our two stacking paths; PSF containment radii
within 0.005 deg of the seed reference; PSF kernel rtol 1e-5.
"""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest

gammapy = pytest.importorskip("gammapy")

from astropy import units as u  # noqa: E402
from astropy.coordinates import SkyCoord  # noqa: E402

from gamma_ray_dist.datasets.accumulator import StackAccumulator  # noqa: E402
from gamma_ray_dist.datasets.map import MapDataset  # noqa: E402
from gamma_ray_dist.datasets.partial import PartialDataset, StackGeometry  # noqa: E402
from gamma_ray_dist.maps import MapAxis, WcsGeom  # noqa: E402

OBS_IDS = [23523, 23526, 23559, 23592]


def _seed_geoms(lib):
    energy_axis = lib.MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    geom = lib.WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=(2, 2), frame="icrs",
                              proj="CAR", axes=[energy_axis])
    energy_axis_true = lib.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    return geom, energy_axis_true


class _Ours:
    MapAxis = MapAxis
    WcsGeom = WcsGeom


def _gp_maps():
    from gammapy import maps

    return maps


def _ours_empty():
    geom, et = _seed_geoms(_Ours)
    return MapDataset.create(geom=geom, energy_axis_true=et, name="crab-stacked")


def _gp_empty():
    from gammapy.datasets import MapDataset as GPMapDataset

    geom, et = _seed_geoms(_gp_maps())
    return GPMapDataset.create(geom=geom, energy_axis_true=et, name="crab-stacked")


def _compare(ours, theirs, rtol=0.0, exact_counts=True):
    """Compare every array of our dataset with a gammapy dataset."""
    def eq(a, b, rtol_):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        if rtol_ == 0:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=rtol_, atol=0)

    eq(ours.counts.data, theirs.counts.data, 0 if exact_counts else rtol)
    eq(ours.exposure.data, theirs.exposure.data, rtol)
    eq(ours.background.data, theirs.background.data, rtol)
    eq(ours.psf.psf_map.data, theirs.psf.psf_map.data, rtol)
    eq(ours.psf.exposure_map.data, theirs.psf.exposure_map.data, rtol)
    eq(ours.edisp.edisp_map.data, theirs.edisp.edisp_map.data, rtol)
    eq(ours.edisp.exposure_map.data, theirs.edisp.exposure_map.data, rtol)
    eq(ours.mask_safe.data, theirs.mask_safe.data, 0)
    s0, s1 = ours.gti.met_values()
    np.testing.assert_allclose(s0, (theirs.gti.time_start - theirs.gti.time_ref).to_value("s"), atol=1e-6)
    np.testing.assert_allclose(s1, (theirs.gti.time_stop - theirs.gti.time_ref).to_value("s"), atol=1e-6)
    assert abs((ours.gti.time_ref - theirs.gti.time_ref).to_value("s")) < 1e-6


# --------------------------------------------------------------------------------------------
def test_read_reference_matches_gammapy(reference_dir):
    from gammapy.datasets import MapDataset as GPMapDataset

    filename = reference_dir / "crab_stacked_gammapy.fits.gz"
    ours, theirs = MapDataset.read(filename), GPMapDataset.read(filename)
    assert ours.name == theirs.name == "crab-stacked"
    _compare(ours, theirs)
    assert ours.counts.data.dtype == np.float32 and ours.mask_safe.data.dtype == bool
    assert ours.exposure.meta["livetime"].to_value("s") == pytest.approx(
        theirs.exposure.meta["livetime"].to_value("s"), rel=1e-12)
    assert list(ours.meta_table["OBS_ID"].data[0]) == OBS_IDS


def test_write_read_by_gammapy(reference_dir, tmp_path):
    from astropy.io import fits
    from gammapy.datasets import MapDataset as GPMapDataset

    ref = reference_dir / "crab_stacked_gammapy.fits.gz"
    ours = MapDataset.read(ref)
    out = tmp_path / "ours.fits.gz"
    ours.write(out)
    with pytest.raises(OSError):
        ours.write(out)
    theirs = GPMapDataset.read(out)
    assert theirs.name == "crab-stacked"
    _compare(ours, theirs)
    with fits.open(ref) as h_ref, fits.open(out) as h_out:
        assert [h.name for h in h_out] == [h.name for h in h_ref]
        for a, b in zip(h_out, h_ref):
            if a.data is not None and not isinstance(a, fits.BinTableHDU):
                assert a.data.dtype == b.data.dtype, a.name
            for key in ("BUNIT", "BANDSHDU", "WCSSHAPE", "AXCOLS1", "INTERP1", "CTYPE1", "CRPIX1",
                        "MJDREFI", "TIMESYS"):
                if key in b.header:
                    assert a.header[key] == b.header[key], (a.name, key)
    assert GPMapDataset.read(out).meta_table["OBS_ID"].data[0].tolist() == OBS_IDS


def test_create_matches_gammapy():
    ours, theirs = _ours_empty(), _gp_empty()
    for key, geom in theirs.geoms.items():
        assert ours.geoms[key].data_shape == geom.data_shape, key
        assert ours.geoms[key].axes.names == geom.axes.names
        for a, b in zip(ours.geoms[key].axes, geom.axes):
            np.testing.assert_allclose(a.edges.value, b.edges.to_value(a.unit), rtol=1e-12)
        assert ours.geoms[key].wcs.wcs.compare(geom.wcs.wcs, tolerance=1e-9), key
    # EDisp starts as the diagonal overlap response, as gammapy
    np.testing.assert_allclose(ours.edisp.edisp_map.data, theirs.edisp.edisp_map.data, rtol=1e-6)
    assert ours.gti.time_ref.isot == theirs.gti.time_ref.isot


@pytest.fixture(scope="module")
def gp_observations(hess_dr1):
    from gammapy.data import DataStore

    return DataStore.from_dir(hess_dr1).get_observations(OBS_IDS)


def test_cutouts_match_gammapy(gp_observations):
    ours, theirs = _ours_empty(), _gp_empty()
    for obs in gp_observations:
        pos = obs.get_pointing_icrs(obs.tmid)
        c_ours = ours.cutout(pos, width=5 * u.deg, name=f"obs-{obs.obs_id}")
        c_theirs = theirs.cutout(pos, width=5 * u.deg, name=f"obs-{obs.obs_id}")
        for key, geom in c_theirs.geoms.items():
            assert c_ours.geoms[key].data_shape == geom.data_shape, key
            assert c_ours.geoms[key].wcs.wcs.compare(geom.wcs.wcs, tolerance=1e-9), key
        # a smaller cutout, half-way to the pointing, really trims (fine and coarse grid)
        mid = SkyCoord((pos.ra.deg + 83.633) / 2, (pos.dec.deg + 22.014) / 2, unit="deg")
        s_ours = ours.cutout(mid, width=1.1 * u.deg)
        s_theirs = theirs.cutout(mid, width=1.1 * u.deg)
        for key, geom in s_theirs.geoms.items():
            assert s_ours.geoms[key].data_shape == geom.data_shape, key
            assert s_ours.geoms[key].wcs.wcs.compare(geom.wcs.wcs, tolerance=1e-9), key


# -- stacking -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reduced(gp_observations, tmp_path_factory):
    """gammapy per-observation datasets (seed makers) written to disk, and gammapy's stack."""
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from regions import CircleSkyRegion

    stacked = _gp_empty()
    geom = stacked.counts.geom
    maker = MapDatasetMaker()
    safe = SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg)
    circle = CircleSkyRegion(center=SkyCoord("83.63 deg", "22.14 deg"), radius=0.2 * u.deg)
    fov = FoVBackgroundMaker(method="fit", exclusion_mask=~geom.region_mask(regions=[circle]))
    path = tmp_path_factory.mktemp("reduced")
    files, norms = [], []
    for obs in gp_observations:
        cutout = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=5 * u.deg, name=f"obs-{obs.obs_id}")
        ds = fov.run(safe.run(maker.run(cutout, obs), obs))
        norms.append(ds.background_model.spectral_model.norm.value)
        # the FoV norm lives in the models, not in the file: bake it in like npred_background
        ds.background = ds.npred_background()
        ds.models = None
        filename = path / f"obs-{obs.obs_id}.fits"
        ds.write(filename)
        files.append(filename)
        stacked.stack(ds)
    return files, stacked, norms


def _our_datasets(files):
    return [MapDataset.read(f) for f in files]


def test_stack_matches_gammapy(reduced):
    files, gp_stacked, _ = reduced
    ours = _ours_empty()
    for ds in _our_datasets(files):
        ours.stack(ds)
    _compare(ours, gp_stacked, rtol=1e-5)
    assert ours.exposure.meta["livetime"].to_value("s") == pytest.approx(
        gp_stacked.exposure.meta["livetime"].to_value("s"), rel=1e-9)
    assert ours.meta_table["OBS_ID"].data[0].tolist() == OBS_IDS
    text = str(ours)
    for expected in ("Total counts                    : 2479", "Total background counts         : 2112.97",
                     "Exposure min                    : 3.75e+08 m2 s",
                     "Exposure max                    : 3.48e+09 m2 s", "Number of total bins            : 40000",
                     "Number of fit bins              : 40000"):
        assert expected in text


def test_accumulator_matches_sequential_stack(reduced, tmp_path):
    files, gp_stacked, _ = reduced
    datasets = _our_datasets(files)
    empty = _ours_empty()
    spec = StackGeometry.from_dataset(empty)
    partials = [PartialDataset.from_dataset(ds, spec) for ds in datasets]
    assert [p.obs_id for p in partials] == OBS_IDS
    for p in partials:
        for name, arr in p.arrays().items():
            assert arr.flags.c_contiguous, name
        assert p.counts.dtype == np.int64 and p.background.dtype == np.float64
    partials = pickle.loads(pickle.dumps(partials))

    sequential = _ours_empty()
    for ds in datasets:
        sequential.stack(ds)

    shuffled = partials[:]
    random.Random(3).shuffle(shuffled)
    acc = StackAccumulator.from_dataset(empty)
    for p in shuffled:
        assert acc.add(p)
    assert not acc.add(shuffled[0])  # idempotent per obs id
    result = acc.to_dataset("crab-stacked")
    _compare(result, sequential_as_gp(sequential), rtol=1e-6)
    _compare(result, gp_stacked, rtol=1e-5)
    assert result.meta_table is not None and sorted(result.meta_table["OBS_ID"].data[0]) == OBS_IDS

    # same order -> bit identical; tree merge and checkpoint round trip
    a1, a2 = StackAccumulator.from_dataset(empty), StackAccumulator.from_dataset(empty)
    for p in partials:
        a1.add(p)
        a2.add(p)
    for k, v in a1.buffers.items():
        if v is not None:
            assert np.array_equal(v, a2.buffers[k]), k
    left, right = StackAccumulator(spec), StackAccumulator(spec)
    for p in partials[:2]:
        left.add(p)
    for p in partials[2:]:
        right.add(p)
    restored = StackAccumulator.from_state(pickle.loads(pickle.dumps(left.state())))
    restored.merge(right)
    with pytest.raises(ValueError):
        restored.merge(right)
    merged = restored.to_dataset("crab-stacked")
    _compare(merged, sequential_as_gp(sequential), rtol=1e-6)
    # the finalised dataset is a valid gammapy file
    from gammapy.datasets import MapDataset as GPMapDataset

    merged.write(tmp_path / "acc.fits")
    _compare(merged, GPMapDataset.read(tmp_path / "acc.fits"))


def sequential_as_gp(ds):
    """Our dataset already exposes the attributes `_compare` reads from a gammapy one."""
    return _GPView(ds)


class _GPView:
    def __init__(self, ds):
        self._ds = ds

    def __getattr__(self, name):
        if name == "gti":
            return _GTIView(self._ds.gti)
        return getattr(self._ds, name)


class _GTIView:
    def __init__(self, gti):
        self.time_ref = gti.time_ref
        self.time_start = gti.time_start
        self.time_stop = gti.time_stop


def test_stacked_psf_and_edisp(reference_dir, seed_reference):
    from gammapy.datasets import MapDataset as GPMapDataset

    filename = reference_dir / "crab_stacked_gammapy.fits.gz"
    ours, theirs = MapDataset.read(filename), GPMapDataset.read(filename)
    center = theirs.counts.geom.center_skydir
    energy = theirs.psf.psf_map.geom.axes["energy_true"].center
    r68 = ours.psf.containment_radius(0.68, energy, center).to_value("deg")
    np.testing.assert_allclose(r68, seed_reference["stacked"]["psf_r68_deg_center"], atol=0.005)
    np.testing.assert_allclose(r68, theirs.psf.containment_radius(0.68, energy, center).to_value("deg"),
                               atol=1e-9)

    k_ours = ours.psf.get_psf_kernel(ours.exposure.geom, position=center)
    k_theirs = theirs.psf.get_psf_kernel(theirs.exposure.geom, position=center)
    assert k_ours.data.shape == k_theirs.psf_kernel_map.data.shape
    np.testing.assert_allclose(k_ours.data, k_theirs.psf_kernel_map.data, rtol=1e-5, atol=1e-9)

    position = SkyCoord(83.9, 22.3, unit="deg")
    e_ours = ours.edisp.get_edisp_kernel(position=position).pdf_matrix
    e_theirs = theirs.edisp.get_edisp_kernel(position=position).pdf_matrix
    np.testing.assert_allclose(e_ours, e_theirs, rtol=1e-6)
