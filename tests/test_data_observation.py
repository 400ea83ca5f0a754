"""Observation, EventList, GTI and pointing against gammapy on H.E.S.S. DL3 DR1."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time

from gamma_ray_dist.data import GTI, DataStore, EventList, FitsFileCache, Observation

IDS = [20136, 23523, 23592, 33787, 47802]


@pytest.fixture(scope="module")
def store(hess_dr1):
    return DataStore.from_dir(hess_dr1)


@pytest.fixture(scope="module")
def gp_store(hess_dr1):
    gammapy_data = pytest.importorskip("gammapy.data")
    return gammapy_data.DataStore.from_dir(hess_dr1)


@pytest.mark.parametrize("obs_id", IDS)
def test_events_match_gammapy(store, gp_store, obs_id):
    ours, ref = store.obs(obs_id).events, gp_store.obs(obs_id).events
    assert len(ours) == len(ref) > 0
    # The fast accessor: float64 in deg / TeV, exact copies of the float32 file values.
    arrays = ours.arrays(("RA", "DEC", "ENERGY"))
    assert all(a.dtype == np.float64 and a.flags.c_contiguous for a in arrays.values())
    np.testing.assert_array_equal(arrays["ENERGY"], ref.energy.to_value("TeV"))
    np.testing.assert_array_equal(arrays["RA"], ref.radec.ra.deg)
    np.testing.assert_array_equal(arrays["DEC"], ref.radec.dec.deg)
    # The table form: exact, including Time values of TIME.
    np.testing.assert_array_equal(ours.energy, ref.energy)
    assert np.all(ours.time == ref.time)
    np.testing.assert_array_equal(ours.radec.dec.deg, ref.radec.dec.deg)
    assert ours.table.colnames == ref.table.colnames
    met = ours.arrays(["TIME"])["TIME"]
    np.testing.assert_allclose(met, (ref.time - ref.time_ref).to_value("s"), rtol=0, atol=1e-6)
    assert str(ours) == str(ref)


def test_events_lazy_and_read_once(hess_dr1):
    cache = FitsFileCache()
    ds = DataStore(DataStore.from_dir(hess_dr1).hdu_table, cache=cache)
    obs = ds.obs(23523)
    assert cache.misses == 0  # nothing read to create an observation
    events = obs.events
    assert obs.events is events  # one EventList per observation
    first = events.arrays()
    assert events.arrays()["ENERGY"] is not first["ENERGY"]  # fresh read-only views ...
    assert np.shares_memory(events.arrays()["ENERGY"], first["ENERGY"])  # ... of kept arrays
    with pytest.raises(ValueError):
        first["ENERGY"][0] = 0.0
    assert events.table is events.table
    obs.gti, obs.meta, obs.pointing  # noqa: B018
    assert cache.misses == 1  # one decompression for events, GTI, header


@pytest.mark.parametrize("obs_id", IDS)
def test_times_match_gammapy(store, gp_store, obs_id):
    ours, ref = store.obs(obs_id), gp_store.obs(obs_id)
    # Built exactly as gammapy does: identical Time and Quantity values.
    assert ours.tstart == ref.tstart and ours.tstop == ref.tstop and ours.tmid == ref.tmid
    assert ours.tmid.scale == ref.tmid.scale == "tt"
    assert np.all(ours.gti.time_start == ref.gti.time_start)
    assert np.all(ours.gti.time_stop == ref.gti.time_stop)
    assert ours.gti.time_sum == ref.gti.time_sum
    assert ours.observation_time_duration == ref.observation_time_duration
    assert ours.observation_live_time_duration == ref.observation_live_time_duration
    assert ours.observation_dead_time_fraction == ref.observation_dead_time_fraction
    # MET: exact file values here, gammapy's carry ~1e-8 s Time round-off.
    np.testing.assert_allclose(ours.gti.met_start.value, ref.gti.met_start.value, rtol=0, atol=1e-6)
    np.testing.assert_allclose(ours.gti.met_stop.value, ref.gti.met_stop.value, rtol=0, atol=1e-6)
    start, stop = ours.gti.met_values()
    assert start.dtype == np.float64 and stop[0] > start[0]


@pytest.mark.parametrize("obs_id", IDS)
def test_pointing_and_str_match_gammapy(store, gp_store, obs_id):
    ours, ref = store.obs(obs_id), gp_store.obs(obs_id)
    p_ours, p_ref = ours.get_pointing_icrs(ours.tmid), ref.get_pointing_icrs(ref.tmid)
    assert p_ours.ra.deg == p_ref.ra.deg and p_ours.dec.deg == p_ref.dec.deg
    assert p_ours.obstime == p_ref.obstime
    assert ours.pointing_radec.separation(ref.pointing.fixed_icrs).deg < 1e-12
    assert ours.observatory_earth_location == ref.observatory_earth_location
    assert str(ours) == str(ref)
    assert str(ours.gti).splitlines()[:3] == str(ref.gti).splitlines()[:3]
    assert ours.available_hdus == ref.available_hdus


def test_meta_deadtime(store):
    obs = store.obs(23523)
    assert obs.meta.optional["CREATOR"] == "SASH FITS::EventListWriter"
    assert obs.observation_dead_time_fraction == pytest.approx(1 - 0.937603298574686, abs=1e-15)


def test_gti_read_and_create(hess_dr1):
    gammapy_data = pytest.importorskip("gammapy.data")
    path = hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz"
    ours, ref = GTI.read(path), gammapy_data.GTI.read(path)
    assert ours.time_sum == ref.time_sum and len(ours) == 1
    assert str(ours).splitlines()[:3] == str(ref).splitlines()[:3]
    created = GTI.create([0, 100] * u.s, [50, 200] * u.s, reference_time=Time("2010-01-01", scale="tt"))
    ref_created = gammapy_data.GTI.create([0, 100] * u.s, [50, 200] * u.s, reference_time=Time("2010-01-01", scale="tt"))
    assert created.time_sum == ref_created.time_sum  # same Time arithmetic
    assert created.time_sum.to_value("s") == pytest.approx(150, abs=1e-6)  # Time round-off only
    np.testing.assert_allclose(created.met_start.value, [0, 100], atol=1e-6)


def test_eventlist_read_and_selections(hess_dr1):
    gammapy_data = pytest.importorskip("gammapy.data")
    path = hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz"
    ours, ref = EventList.read(path), gammapy_data.EventList.read(path)
    erange = [1, 10] * u.TeV
    assert len(ours.select_energy(erange)) == len(ref.select_energy(erange)) > 0
    assert len(ours.select_offset([0.5, 1.5] * u.deg)) == len(ref.select_offset([0.5, 1.5] * u.deg)) > 0
    assert ours.observation_live_time_duration == ref.observation_live_time_duration
    assert ours.arrays(["ENERGY"])["ENERGY"].sum() == pytest.approx(ref.energy.value.astype(float).sum(), rel=1e-12)


def test_observations_container(store):
    obs = store.get_observations([23523, 23526, 23559])
    assert obs.ids == ["23523", "23526", "23559"]
    assert obs[1:].ids == ["23526", "23559"]
    assert obs[["23559", "23523"]].ids == ["23559", "23523"]
    assert obs[np.array([True, False, True])].ids == ["23523", "23559"]
    with pytest.raises(KeyError):
        obs["1"]  # noqa: B018
    with pytest.raises(TypeError):
        obs.append("not an observation")
    assert str(obs).startswith("Observations\nNumber of observations: 3\n")


def test_observation_pickles_as_locations(store):
    obs = store.obs(23523)
    obs.events.arrays()
    clone = pickle.loads(pickle.dumps(obs))
    assert clone._loaded == {}  # workers read their own data, nothing heavy travels
    np.testing.assert_array_equal(clone.events.arrays()["ENERGY"], obs.events.arrays()["ENERGY"])
    assert clone.tmid == obs.tmid


def test_in_memory_observation():
    gti = GTI.create([0] * u.s, [1000] * u.s, reference_time=Time("2020-01-01", scale="tt"))
    obs = Observation(obs_id=1, gti=gti)
    assert obs.observation_live_time_duration.to_value("s") == pytest.approx(1000, abs=1e-6)
    assert obs.available_hdus == ["gti"] and obs.aeff is None and obs.events is None


def _irf_available():
    try:
        from gamma_ray_dist.irf import irf_from_hdu  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _irf_available(), reason="gamma_ray_dist.irf.irf_from_hdu not written yet")
def test_irfs_lazy(hess_dr1):
    cache = FitsFileCache()
    ds = DataStore(DataStore.from_dir(hess_dr1).hdu_table, cache=cache)
    obs = ds.obs(23523)
    aeff = obs.aeff
    assert aeff is not None and obs.aeff is aeff  # read once
    for name in ("edisp", "psf", "bkg"):
        assert getattr(obs, name) is not None
    assert cache.misses == 1  # one decompression for all four IRFs
    # DR1 backgrounds are mirrored in FoV longitude (gammapy: REVERSE_LON_RADEC).
    assert obs.bkg.fov_alignment == "REVERSE_LON_RADEC"


@pytest.mark.skipif(not _irf_available(), reason="gamma_ray_dist.irf.irf_from_hdu not written yet")
def test_irf_types_match_gammapy(store, gp_store):
    ours, ref = store.obs(23592), gp_store.obs(23592)
    for name in ("aeff", "edisp", "psf", "bkg"):
        assert type(getattr(ours, name)).__name__ == type(getattr(ref, name)).__name__
    assert ours.bkg.fov_alignment == ref.bkg.fov_alignment.value
