"""IRFs read from H.E.S.S. DL3 DR1 compared with gammapy 2.1 (live) on grids inside and outside the axes."""
from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from numpy.testing import assert_allclose

from gamma_ray_dist.irf import (
    PSF3D,
    Background3D,
    EffectiveAreaTable2D,
    EnergyDispersion2D,
    irf_from_hdu,
)

gammapy = pytest.importorskip("gammapy")

OBS_IDS = [23523, 23592, 20136, 33787]  # Crab x2, MSH 15-52, PKS 2155-304

# Same maths, same float32 inputs: only summation-order rounding differs.
RTOL = 1e-6


@pytest.fixture(scope="module")
def store(hess_dr1):
    from gammapy.data import DataStore

    return DataStore.from_dir(hess_dr1)


@pytest.fixture(scope="module", params=OBS_IDS)
def pair(request, store, hess_dr1):
    """(gammapy observation, our IRFs by HDU name) for one observation."""
    obs = store.obs(request.param)
    filename = hess_dr1 / "data" / f"hess_dl3_dr1_obs_id_{request.param:06d}.fits.gz"
    with fits.open(filename) as hdulist:
        ours = {name: irf_from_hdu(hdulist[name], filename=filename, obs_id=request.param)
                for name in ("AEFF", "EDISP", "PSF", "BKG")}
    return obs, ours


ENERGY = np.geomspace(0.005, 300.0, 37)  # TeV, beyond the axes on both sides
OFFSET = np.linspace(-0.3, 3.2, 15)  # deg, includes negative and beyond-last-edge values


def test_types_and_axes(pair):
    obs, ours = pair
    assert isinstance(ours["AEFF"], EffectiveAreaTable2D)
    assert isinstance(ours["EDISP"], EnergyDispersion2D)
    assert isinstance(ours["PSF"], PSF3D)
    assert isinstance(ours["BKG"], Background3D)
    # the file says RADEC (gammapy's reader agrees); gammapy's Observation.bkg then switches old
    # H.E.S.S. files to REVERSE_LON_RADEC from the events header, which is the observation's job
    assert ours["BKG"].fov_alignment == "RADEC"
    assert obs.bkg.fov_alignment.value == "REVERSE_LON_RADEC"
    assert ours["BKG"].with_fov_alignment("REVERSE_LON_RADEC").fov_alignment == "REVERSE_LON_RADEC"
    for key, theirs in (("AEFF", obs.aeff), ("EDISP", obs.edisp), ("PSF", obs.psf), ("BKG", obs.bkg)):
        assert ours[key].axes.names == theirs.axes.names
        for ax in theirs.axes:
            assert_allclose(ours[key].axes[ax.name].edges, ax.edges.to_value(ours[key].axes[ax.name].unit or ""), rtol=1e-12)
            assert_allclose(ours[key].axes[ax.name].center, ax.center.to_value(ours[key].axes[ax.name].unit or ""), rtol=1e-12)


def test_aeff(pair):
    obs, ours = pair
    e, off = ENERGY[:, None], OFFSET[None, :]
    expected = obs.aeff.evaluate(energy_true=e * u.TeV, offset=off * u.deg).to_value("m2")
    assert_allclose(ours["AEFF"].evaluate_values(energy_true=e, offset=off), expected, rtol=RTOL, atol=1e-10)
    q = ours["AEFF"].evaluate(energy_true=e * 1e3 * u.GeV, offset=off * u.deg)
    assert q.unit == u.m**2
    assert_allclose(q.value, expected, rtol=RTOL, atol=1e-10)
    assert_allclose(ours["AEFF"].evaluate_grid_values(ENERGY, OFFSET), expected, rtol=RTOL, atol=1e-10)
    assert expected[0].max() == 0 and expected[:, 5].max() > 0  # the grid does leave the axes


def test_edisp(pair):
    obs, ours = pair
    e = np.geomspace(0.005, 300.0, 17)[:, None, None]
    migra = np.linspace(-0.1, 3.5, 31)[None, :, None]
    off = np.linspace(-0.2, 3.0, 9)[None, None, :]
    expected = obs.edisp.evaluate(energy_true=e * u.TeV, migra=migra, offset=off * u.deg).to_value("")
    actual = ours["EDISP"].evaluate_values(energy_true=e, migra=migra, offset=off)
    assert_allclose(actual, expected, rtol=RTOL, atol=1e-12)


@pytest.mark.parametrize("offset", [0.0, 0.5, 1.23, 2.4])
def test_edisp_kernel(pair, offset):
    from gammapy.maps import MapAxis

    obs, ours = pair
    etrue = MapAxis.from_energy_bounds(0.3, 100, nbin=20, unit="TeV", name="energy_true")
    ereco = MapAxis.from_energy_bounds(0.5, 50, nbin=12, unit="TeV", name="energy")
    kernel = obs.edisp.to_edisp_kernel(offset * u.deg, energy_axis_true=etrue, energy_axis=ereco)
    actual = ours["EDISP"].to_edisp_kernel_values(offset, etrue.edges.to_value("TeV"), ereco.edges.to_value("TeV"))
    assert actual.shape == kernel.pdf_matrix.shape
    assert_allclose(actual, kernel.pdf_matrix, rtol=1e-6, atol=1e-9)
    assert kernel.pdf_matrix.sum() > 1  # not trivially zero


def test_edisp_kernel_vectorised_offsets(pair):
    """Many offsets at once equal the one-offset results of gammapy."""
    from gammapy.maps import MapAxis

    obs, ours = pair
    etrue = MapAxis.from_energy_bounds(0.5, 30, nbin=8, unit="TeV", name="energy_true")
    ereco = MapAxis.from_energy_bounds(0.5, 30, nbin=6, unit="TeV", name="energy")
    offsets = np.array([[0.1, 0.7], [1.5, 2.2]])
    actual = ours["EDISP"].to_edisp_kernel_values(offsets, etrue.edges.value, ereco.edges.value)
    assert actual.shape == (8, 6, 2, 2)
    for idx in np.ndindex(offsets.shape):
        expected = obs.edisp.to_edisp_kernel(offsets[idx] * u.deg, energy_axis_true=etrue, energy_axis=ereco)
        assert_allclose(actual[(...,) + idx], expected.pdf_matrix, rtol=1e-6, atol=1e-9)


def test_psf(pair):
    obs, ours = pair
    e = np.geomspace(0.005, 300.0, 13)[:, None, None]
    off = np.linspace(-0.2, 3.0, 8)[None, :, None]
    rad = np.linspace(-0.05, 0.9, 40)[None, None, :]
    expected = obs.psf.evaluate(energy_true=e * u.TeV, offset=off * u.deg, rad=rad * u.deg).to_value("sr-1")
    assert_allclose(ours["PSF"].evaluate_values(energy_true=e, offset=off, rad=rad), expected, rtol=RTOL, atol=1e-6)
    q = ours["PSF"].evaluate(energy_true=e * u.TeV, offset=off * u.deg, rad=rad * u.deg)
    assert_allclose(q.to_value("sr-1"), expected, rtol=RTOL, atol=1e-6)


def test_psf_containment_radius(pair):
    obs, ours = pair
    energy = np.array([0.3, 1.0, 3.0, 10.0, 40.0])[:, None]
    offset = np.array([0.0, 0.5, 1.0, 2.0])[None, :]
    for fraction in (0.68, 0.95):
        expected = obs.psf.containment_radius(fraction=fraction, energy_true=energy * u.TeV, offset=offset * u.deg)
        actual = ours["PSF"].containment_radius(fraction, energy * u.TeV, offset * u.deg)
        # same radius samples: agreement is exact up to ties between neighbouring samples
        assert_allclose(actual.to_value("deg"), expected.to_value("deg"), rtol=1e-9)
        assert np.all(expected.to_value("deg") > 0)


def test_psf_map_values(pair):
    from astropy.coordinates import SkyCoord
    from gammapy.makers.utils import make_psf_map
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.datasets.map import RAD_AXIS_DEFAULT

    obs, ours = pair
    pointing = SkyCoord(83.6, 22.0, unit="deg")
    etrue = MapAxis.from_energy_bounds(0.5, 50, nbin=5, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=pointing, binsz=0.5, width=4.0, axes=[RAD_AXIS_DEFAULT, etrue])
    psf_map = make_psf_map(obs.psf, pointing, geom).psf_map
    offset = geom.to_image().get_coord().skycoord.separation(pointing).deg
    actual = ours["PSF"].psf_map_values(etrue.center.to_value("TeV"), offset, RAD_AXIS_DEFAULT.edges.to_value("deg"))
    assert_allclose(actual, psf_map.quantity.to_value("sr-1"), rtol=1e-6, atol=1e-6)


def test_bkg(pair):
    obs, ours = pair
    e = np.geomspace(0.03, 300.0, 15)[:, None, None]
    lon = np.linspace(-3.0, 3.0, 13)[None, :, None]
    lat = np.linspace(-2.9, 3.1, 11)[None, None, :]
    expected = obs.bkg.evaluate(energy=e * u.TeV, fov_lon=lon * u.deg, fov_lat=lat * u.deg).to_value("s-1 TeV-1 sr-1")
    actual = ours["BKG"].evaluate_values(energy=e, fov_lon=lon, fov_lat=lat)
    assert_allclose(actual, expected, rtol=RTOL, atol=0)
    assert expected.max() > 0 and (expected == 0).any()


def test_bkg_integrate_log_log(pair):
    obs, ours = pair
    edges = np.geomspace(0.05, 150.0, 13)
    lon = np.linspace(-2.6, 2.6, 9)[None, :, None]
    lat = np.linspace(-2.6, 2.6, 7)[None, None, :]
    expected = obs.bkg.integrate_log_log(
        axis_name="energy", energy=edges[:, None, None] * u.TeV, fov_lon=lon * u.deg, fov_lat=lat * u.deg
    ).to_value("s-1 sr-1")
    actual = ours["BKG"].integrate_log_log_values(edges, lon[0], lat[0])
    assert actual.shape == expected.shape == (12, 9, 7)
    assert_allclose(actual, expected, rtol=1e-6, atol=0)


def test_bkg_interp_missing_data(pair):
    obs, ours = pair
    import copy

    theirs = copy.deepcopy(obs.bkg)  # gammapy fills in place: keep the cached observation intact
    theirs.interp_missing_data(axis_name="energy")
    filled = ours["BKG"].interp_missing_data("energy")
    assert_allclose(filled.data, theirs.quantity.to_value("s-1 TeV-1 sr-1"), rtol=1e-6, atol=0)
    e = np.geomspace(0.1, 100.0, 9)[:, None, None]
    lon = np.linspace(-2.5, 2.5, 7)[None, :, None]
    expected = theirs.evaluate(energy=e * u.TeV, fov_lon=lon * u.deg, fov_lat=lon.T * u.deg).to_value("s-1 TeV-1 sr-1")
    assert_allclose(filled.evaluate_values(energy=e, fov_lon=lon, fov_lat=lon.T), expected, rtol=1e-6)
    assert not np.shares_memory(filled.data, ours["BKG"].data)


def test_read_by_hdu_name(hess_dr1, store):
    filename = hess_dr1 / "data" / "hess_dl3_dr1_obs_id_023523.fits.gz"
    aeff = EffectiveAreaTable2D.read(filename, hdu="AEFF")
    expected = store.obs(23523).aeff.data
    assert_allclose(aeff.data, expected, rtol=0)
    assert aeff.data.dtype == np.float64 and aeff.unit == u.m**2
    assert aeff.meta["HDUCLAS4"] == "AEFF_2D"
