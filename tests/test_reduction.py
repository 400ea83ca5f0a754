"""reduce_observation: the seed stacked through partials, and bad inputs (files written to tmp_path)."""
from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from regions import CircleSkyRegion

from gamma_ray_dist.errors import IRFError, ObservationError
from gamma_ray_dist.maps import MapAxis, WcsGeom
from gamma_ray_dist.reduction import ObservationOutsideGeometry, ReductionSpec, reduce_observation

SEED = (23523, 23526, 23559, 23592)


def _seed_spec(**kwargs) -> ReductionSpec:
    e = MapAxis.from_energy_bounds(1.0, 10.0, 4, unit="TeV")
    et = MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=(83.633, 22.014), binsz=0.02, width=(2, 2), frame="icrs", proj="CAR", axes=[e])
    excl = ~geom.region_mask([CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)])
    return ReductionSpec(geom, et, offset_max=2.5, exclusion_mask=excl, **kwargs)


@pytest.fixture(scope="module")
def spec():
    return _seed_spec()


def test_seed_stacked_through_partials_matches_reference(hess_dr1, seed_reference, spec):
    from gamma_ray_dist.datasets import StackAccumulator
    from gamma_ray_dist.reduction import prepare

    acc = StackAccumulator(prepare(spec).geometry)
    for obs_id in SEED:
        partial = reduce_observation((hess_dr1, obs_id), spec)
        assert partial.obs_id == obs_id and partial.fov_status == "fitted"
        acc.add(partial)
    ref = seed_reference["stacked"]
    stacked = acc.to_dataset("crab-stacked")
    assert stacked.counts.data.sum() == ref["counts"]
    np.testing.assert_array_equal(stacked.counts.data.sum(axis=(1, 2)), ref["counts_per_energy"])
    assert stacked.background.data.sum() == pytest.approx(ref["background"], rel=1e-3)
    np.testing.assert_allclose(stacked.background.data.sum(axis=(1, 2)), ref["background_per_energy"], rtol=1e-3)
    assert stacked.exposure.data.min() == pytest.approx(ref["exposure_min_m2s"], rel=1e-3)
    assert stacked.exposure.data.max() == pytest.approx(ref["exposure_max_m2s"], rel=1e-3)
    assert stacked.exposure.data.sum() == pytest.approx(ref["exposure_sum_m2s"], rel=1e-3)
    assert stacked.mask_safe.data.sum() == ref["mask_safe_bins"]
    e_true = spec.energy_axis_true.center
    r68 = stacked.psf.containment_radius(0.68, e_true).to_value("deg")
    np.testing.assert_allclose(r68, ref["psf_r68_deg_center"], atol=0.005)


def test_spec_pickles_and_observation_object_accepted(hess_dr1, spec):
    from gamma_ray_dist.data import DataStore

    spec2 = pickle.loads(pickle.dumps(spec))
    np.testing.assert_array_equal(spec2.exclusion_mask, spec.exclusion_mask)
    partial = reduce_observation(DataStore.from_dir(hess_dr1).obs(23526), spec2)
    assert partial.counts.sum() == 659
    assert set(partial.timings) >= {"make", "safe", "fov", "partial"}


# -- bad inputs ----------------------------------------------------------------------------------
def _single_obs_store(hess_dr1, tmp_path, obs_id=23523):
    """A one-observation copy of DR1 in tmp_path; returns (store dir, path of the obs file)."""
    hdu = Table.read(hess_dr1 / "hdu-index.fits.gz")
    obs = Table.read(hess_dr1 / "obs-index.fits.gz")
    hdu = hdu[hdu["OBS_ID"] == obs_id]
    obs = obs[obs["OBS_ID"] == obs_id]
    hdu.write(tmp_path / "hdu-index.fits.gz")
    obs.write(tmp_path / "obs-index.fits.gz")
    rel = f"{hdu['FILE_DIR'][0].strip()}/{hdu['FILE_NAME'][0].strip()}"
    dest = tmp_path / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(hess_dr1 / rel, dest)
    return tmp_path, dest


def _edit(path, func):
    with fits.open(path) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    func(hdul)
    hdul.writeto(path, overwrite=True)


def test_missing_file_raises_observation_error_naming_obs_and_file(hess_dr1, tmp_path, spec):
    store, path = _single_obs_store(hess_dr1, tmp_path)
    path.unlink()
    with pytest.raises(ObservationError) as info:
        reduce_observation((store, 23523), spec)
    assert info.value.obs_id == 23523
    assert info.value.filename and path.name in info.value.filename


def test_nan_in_effective_area_raises_irf_error(hess_dr1, tmp_path, spec):
    store, path = _single_obs_store(hess_dr1, tmp_path)

    def nan_aeff(hdul):
        data = hdul["AEFF"].data
        area = np.array(data["EFFAREA"])
        area[..., 3] = np.nan
        data["EFFAREA"] = area

    _edit(path, nan_aeff)
    with pytest.raises(IRFError) as info:
        reduce_observation((store, 23523), spec)
    assert info.value.obs_id == 23523 and path.name in info.value.filename
    assert "aeff" in str(info.value).lower()


def test_zero_effective_area_gives_empty_contribution(hess_dr1, tmp_path, spec):
    store, path = _single_obs_store(hess_dr1, tmp_path)

    def zero_aeff(hdul):
        hdul["AEFF"].data["EFFAREA"] = 0.0 * hdul["AEFF"].data["EFFAREA"]

    _edit(path, zero_aeff)
    partial = reduce_observation((store, 23523), spec)
    assert not partial.mask_safe.any()
    assert partial.counts.sum() == 0 and partial.background.sum() == 0 and partial.exposure.sum() == 0


def test_no_events_gives_empty_contribution(hess_dr1, tmp_path, spec):
    store, path = _single_obs_store(hess_dr1, tmp_path)
    _edit(path, lambda hdul: hdul.__setitem__("EVENTS", fits.BinTableHDU(hdul["EVENTS"].data[:0],
                                                                         header=hdul["EVENTS"].header)))
    partial = reduce_observation((store, 23523), spec)
    assert partial.counts.sum() == 0
    assert not partial.mask_safe.any()  # FoV normalisation impossible: masked, as gammapy
    assert partial.fov_status.startswith("failed")


def test_events_outside_geometry_give_empty_counts(hess_dr1, tmp_path, spec):
    """No counts inside the map: zero counts; with a FoV fit the observation is masked (as gammapy),
    without one its exposure and background still count."""
    store, path = _single_obs_store(hess_dr1, tmp_path)

    def move_events(hdul):
        hdul["EVENTS"].data["DEC"] = hdul["EVENTS"].data["DEC"] - 10.0

    _edit(path, move_events)
    partial = reduce_observation((store, 23523), spec)
    assert partial.counts.sum() == 0 and not partial.mask_safe.any()
    partial = reduce_observation((store, 23523), _seed_spec(fov_method=None))
    assert partial.counts.sum() == 0
    assert partial.exposure.sum() > 0 and partial.background.sum() > 0


def test_pointing_far_from_geometry_raises_clear_error(hess_dr1, tmp_path, spec):
    store, path = _single_obs_store(hess_dr1, tmp_path)

    def move_pointing(hdul):
        hdul["EVENTS"].header["DEC_PNT"] = -40.0

    _edit(path, move_pointing)
    with pytest.raises(ObservationOutsideGeometry) as info:
        reduce_observation((store, 23523), spec)
    assert info.value.obs_id == 23523 and "does not overlap" in str(info.value)


def test_altaz_background_matches_gammapy(hess_dr1, tmp_path):
    """A bkg_3d flagged FOVALIGN=ALTAZ (and events not from the legacy writer): the FoV rotation is
    followed in time steps, as gammapy's make_map_background_irf (rtol 1e-3: astropy alt-az
    transforms with the same erfa interpolation on both sides)."""
    gdata = pytest.importorskip("gammapy.data")
    from gammapy import datasets as gdatasets, makers as gmakers, maps as gmaps

    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.makers import MapDatasetMaker

    store, path = _single_obs_store(hess_dr1, tmp_path)

    def altaz(hdul):
        hdul["BKG"].header["FOVALIGN"] = "ALTAZ"
        hdul["EVENTS"].header["CREATOR"] = "test"

    _edit(path, altaz)
    gobs = gdata.DataStore.from_dir(store).obs(23523)
    obs = DataStore.from_dir(store).obs(23523)
    assert obs.bkg.fov_alignment == "ALTAZ"
    e = gmaps.MapAxis.from_energy_bounds(1, 10, 3, unit="TeV")
    ggeom = gmaps.WcsGeom.create(skydir=(83.63, 22.01), binsz=0.1, width=3, axes=[e])
    gd = gmakers.MapDatasetMaker(selection=["background"]).run(gdatasets.MapDataset.create(ggeom), gobs)
    e2 = MapAxis.from_energy_bounds(1, 10, 3, unit="TeV")
    geom = WcsGeom.create(skydir=(83.63, 22.01), binsz=0.1, width=3, axes=[e2])
    d = MapDatasetMaker(selection=["background"]).run(MapDataset.create(geom), obs)
    assert d.background.data.sum() > 0
    np.testing.assert_allclose(d.background.data, gd.background.data, rtol=1e-3)


# -- the fast path (reduce_observation) against the makers (reduce_to_dataset + from_dataset) --------
def _assert_partials_equal(fast, ref):
    """Counts and masks exact, floats to 1e-9 (both use the same IRF interpolation code)."""
    assert fast.obs_id == ref.obs_id and fast.fov_status == ref.fov_status
    assert fast.fine_bounds == ref.fine_bounds and fast.coarse_bounds == ref.coarse_bounds
    assert fast.meta == ref.meta and fast.gti_reference == ref.gti_reference
    for name in ("livetime", "fov_norm", "fov_tilt"):
        a, b = getattr(fast, name), getattr(ref, name)
        assert (np.isnan(a) and np.isnan(b)) or a == pytest.approx(b, rel=1e-12), name
    ref_arrays = ref.arrays()
    assert set(fast.arrays()) == set(ref_arrays)
    for name, a in fast.arrays().items():
        b = ref_arrays[name]
        assert a.dtype == b.dtype and a.shape == b.shape and a.flags.c_contiguous, name
        if a.dtype.kind in "bi":
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=0, err_msg=name)


@pytest.mark.parametrize("kwargs", [
    {},
    {"safe_mask_methods": ("offset-max", "aeff-max", "aeff-default", "bkg-peak"), "fov_method": "scale"},
    {"fov_method": None, "safe_mask_kwargs": {"aeff_percent": 30}, "cutout_width": 3.0},
])
def test_fast_path_matches_makers(hess_dr1, kwargs):
    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.reduction import reduce_with_makers

    spec = _seed_spec(**kwargs)
    store = DataStore.from_dir(hess_dr1)
    for obs_id in SEED:
        fast = reduce_observation(store.obs(obs_id), spec)
        assert "read" in fast.timings  # the fast path ran
        _assert_partials_equal(fast, reduce_with_makers(store.obs(obs_id), spec))


def test_fast_path_matches_makers_galactic_tan_partial_window(hess_dr1):
    """Another frame and projection, a window clipped by the geometry edge, a coarse IRF grid that
    does not divide the fine one, and an exclusion mask on another grid."""
    from gamma_ray_dist.data import DataStore
    from gamma_ray_dist.reduction import reduce_with_makers

    e = MapAxis.from_energy_bounds(0.7, 30, 6, unit="TeV")
    et = MapAxis.from_energy_bounds(0.3, 50, 15, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=(347.3, -0.5), binsz=0.05, width=(6, 3), frame="galactic", proj="TAN", axes=[e])
    excl_geom = WcsGeom.create(skydir=(347.31, -0.49), binsz=0.03, width=(3, 3), frame="galactic")
    excl = ~excl_geom.region_mask([CircleSkyRegion(SkyCoord(347.3, -0.5, unit="deg", frame="galactic"),
                                                   0.5 * u.deg)])
    spec = ReductionSpec(geom, et, offset_max=2.0, binsz_irf=0.3, exclusion_mask=excl)
    store = DataStore.from_dir(hess_dr1)
    for obs_id in (20326, 20327):
        fast = reduce_observation(store.obs(obs_id), spec)
        assert "read" in fast.timings
        ref = reduce_with_makers(store.obs(obs_id), spec)
        _assert_partials_equal(fast, ref)
        assert fast.counts.sum() > 0


def test_unsupported_configuration_uses_makers(hess_dr1):
    spec = _seed_spec(safe_mask_methods=("offset-max", "edisp-bias"))
    partial = reduce_observation((hess_dr1, 23523), spec)
    assert "read" not in partial.timings and partial.fov_status == "fitted"
