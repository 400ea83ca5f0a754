"""The simulated data store read by gammapy 2.1: IRFs equal the analytic functions; known truth."""
from __future__ import annotations

import numpy as np
import pytest

from gamma_ray_dist.simulate import (AnalyticIRFs, edisp_bias, edisp_bin_pdf, edisp_sigma, simulate_datastore,
                                     truth)

gammapy = pytest.importorskip("gammapy")
u = pytest.importorskip("astropy.units")
pytestmark = pytest.mark.gammapy

IRFS = AnalyticIRFs()


def _log_centers(edges):
    return np.sqrt(edges[:-1] * edges[1:])


def _lin_centers(edges):
    return 0.5 * (edges[:-1] + edges[1:])


def _pick(centers, targets):
    """The table nodes nearest to ``targets`` (each IRF has its own axes)."""
    return centers[[int(np.argmin(np.abs(np.log(centers / t)))) for t in targets]]


# table nodes of each IRF (values there are exact up to float32 storage)
E_NODES = _pick(_log_centers(IRFS.energy_true_edges), [0.3, 1.5, 10.0])
TH_NODES = _lin_centers(IRFS.offset_edges)[[0, 7, 15]]
E_NODES_EDISP = _pick(_log_centers(IRFS.edisp_energy_true_edges), [0.3, 1.5, 10.0])
E_NODES_PSF = _pick(_log_centers(IRFS.psf_energy_true_edges), [0.3, 1.5, 10.0])
TH_NODES_PSF = _lin_centers(IRFS.psf_offset_edges)[[0, 3, 7]]
# off-node points: gammapy interpolates the tabulated IRFs (linear in log E / offset); the grids
# keep the interpolation error below 0.5 % for energies 0.15-90 TeV and offsets up to 2.5 deg
E_ANY = np.array([0.2, 0.77, 1.9, 13.0])
TH_ANY = np.array([0.1, 0.6, 1.3, 2.2])
E_DENSE = np.geomspace(0.15, 90.0, 211)
TH_DENSE = np.array([0.0, 0.33, 0.5, 0.77, 1.21, 1.64, 2.05, 2.5])
INTERP_TOL = 0.005


def _load(path, obs_id=1):
    from gammapy.data import DataStore

    return DataStore.from_dir(path).obs(obs_id)


@pytest.fixture(scope="module", params=[
    dict(),
    dict(psf="psf_table", bkg="bkg_2d", shared_irfs=True),
], ids=["psf_3gauss-bkg_3d-per_obs", "psf_table-bkg_2d-shared"])
def loaded(request, tmp_path_factory):
    path = simulate_datastore(tmp_path_factory.mktemp("gp") / "store", n_obs=2, seed=4, **request.param)
    return request.param, _load(path)


def test_observation_loads(loaded):
    kw, obs = loaded
    events = obs.events
    assert len(events.table) > 500 and obs.obs_id == 1
    assert obs.gti.time_sum.to_value("s") == pytest.approx(1800 / 0.95, rel=1e-9)
    assert obs.observation_live_time_duration.to_value("s") == pytest.approx(1800.0)
    assert obs.observation_dead_time_fraction == pytest.approx(0.05)
    assert obs.pointing.fixed_icrs.separation(obs.events.pointing_radec).deg < 1e-6
    assert type(obs.psf).__name__ == ("PSF3D" if kw.get("psf") == "psf_table" else "EnergyDependentMultiGaussPSF")
    assert type(obs.bkg).__name__ == ("Background2D" if kw.get("bkg") == "bkg_2d" else "Background3D")


def test_aeff_matches(loaded):
    _, obs = loaded
    e, th = np.meshgrid(E_NODES, TH_NODES, indexing="ij")
    got = obs.aeff.evaluate(energy_true=e * u.TeV, offset=th * u.deg).to_value("m2")
    np.testing.assert_allclose(got, IRFS.aeff(e, th), rtol=1e-6)  # float32 storage
    got = obs.aeff.evaluate(energy_true=E_ANY * u.TeV, offset=TH_ANY * u.deg).to_value("m2")
    np.testing.assert_allclose(got, IRFS.aeff(E_ANY, TH_ANY), rtol=INTERP_TOL)  # interpolation
    e, th = np.meshgrid(E_DENSE, TH_DENSE, indexing="ij")
    got = obs.aeff.evaluate(energy_true=e * u.TeV, offset=th * u.deg).to_value("m2")
    np.testing.assert_allclose(got, IRFS.aeff(e, th), rtol=INTERP_TOL)


def test_edisp_matches(loaded):
    _, obs = loaded
    m_edges = IRFS.migra_edges
    migra = 0.5 * (m_edges[:-1] + m_edges[1:])[[20, 35, 40, 45, 60]]
    e, th, m = np.meshgrid(E_NODES_EDISP, TH_NODES, migra, indexing="ij")
    got = obs.edisp.evaluate(energy_true=e * u.TeV, offset=th * u.deg, migra=m).to_value("")
    dm = 0.5 * (m_edges[1] - m_edges[0])
    np.testing.assert_allclose(got, edisp_bin_pdf(IRFS, m - dm, m + dm, e), rtol=1e-5)
    np.testing.assert_allclose(got, IRFS.edisp(m, e, th), rtol=0.02, atol=1e-3)  # bin mean vs density
    # between energy nodes: the cumulative migration distribution (what the reco-energy binning
    # reads) agrees with the analytic, truncated Gaussian to < 0.1 % absolute
    from scipy.special import ndtr

    mc = 0.5 * (m_edges[:-1] + m_edges[1:])
    for off in (0.2, 1.0, 2.4):
        pdf = obs.edisp.evaluate(energy_true=E_DENSE[:, None] * u.TeV, offset=off * u.deg,
                                 migra=mc[None, :]).to_value("")
        cdf = np.cumsum(pdf * np.diff(m_edges), axis=1)
        cdf /= cdf[:, -1:]
        s, mu = edisp_sigma(IRFS, E_DENSE)[:, None], 1 + edisp_bias(IRFS, E_DENSE)[:, None]
        lo, hi = ndtr((m_edges[0] - mu) / s), ndtr((m_edges[-1] - mu) / s)
        true = (ndtr((m_edges[None, 1:] - mu) / s) - lo) / (hi - lo)
        np.testing.assert_allclose(cdf, true, atol=1e-3)


def test_psf_matches(loaded):
    kw, obs = loaded
    rad = _lin_centers(IRFS.rad_edges)[[3, 20, 50, 80]]  # rad bin centres of the psf_table
    e, th, r = np.meshgrid(E_NODES_PSF, TH_NODES_PSF, rad, indexing="ij")
    got = obs.psf.evaluate(energy_true=e * u.TeV, offset=th * u.deg, rad=r * u.deg).to_value("sr-1")
    np.testing.assert_allclose(got, IRFS.psf(r, e, th), rtol=1e-5)
    got = obs.psf.evaluate(energy_true=E_ANY * u.TeV, offset=TH_ANY * u.deg, rad=0.05 * u.deg).to_value("sr-1")
    np.testing.assert_allclose(got, IRFS.psf(0.05, E_ANY, TH_ANY), rtol=INTERP_TOL)
    # anywhere: error below 0.5 % of the peak, at radii 0-5 core widths
    e, th = np.meshgrid(E_DENSE, TH_DENSE, indexing="ij")
    sigma1 = IRFS.psf_sigmas[0] * e**IRFS.psf_energy_index * (1 + IRFS.psf_offset_coeff * th**2)
    peak = IRFS.psf(0.0, e, th)
    for f in (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0):
        r = f * sigma1
        got = obs.psf.evaluate(energy_true=e * u.TeV, offset=th * u.deg, rad=r * u.deg).to_value("sr-1")
        np.testing.assert_allclose(got / peak, IRFS.psf(r, e, th) / peak, atol=INTERP_TOL)
    r68 = obs.psf.containment_radius(0.68, energy_true=1 * u.TeV, offset=0.5 * u.deg).to_value("deg")
    assert 0.05 < r68 < 0.15  # H.E.S.S.-like


def test_bkg_matches(loaded):
    kw, obs = loaded
    e_edges = IRFS.energy_edges
    e = np.sqrt(e_edges[:-1] * e_edges[1:])[[2, 8, 14]]
    if kw.get("bkg") == "bkg_2d":
        th = TH_NODES
        got = obs.bkg.evaluate(energy=e[:, None] * u.TeV, offset=th * u.deg).to_value("s-1 MeV-1 sr-1")
        np.testing.assert_allclose(got, IRFS.bkg(e[:, None], th, 0.0), rtol=1e-5)
        ee, th = np.meshgrid(E_DENSE, TH_DENSE, indexing="ij")
        got = obs.bkg.evaluate(energy=ee * u.TeV, offset=th * u.deg).to_value("s-1 MeV-1 sr-1")
        np.testing.assert_allclose(got, IRFS.bkg(ee, th, 0.0), rtol=INTERP_TOL)
        return
    x = 0.5 * (IRFS.fov_edges[:-1] + IRFS.fov_edges[1:])[[3, 10, 17]]
    ee, lon, lat = np.meshgrid(e, x, x[::-1], indexing="ij")
    got = obs.bkg.evaluate(energy=ee * u.TeV, fov_lon=lon * u.deg, fov_lat=lat * u.deg)
    np.testing.assert_allclose(got.to_value("s-1 MeV-1 sr-1"), IRFS.bkg(ee, lon, lat), rtol=1e-5)
    got = obs.bkg.evaluate(energy=E_ANY * u.TeV, fov_lon=TH_ANY * u.deg, fov_lat=-0.4 * u.deg)
    np.testing.assert_allclose(got.to_value("s-1 MeV-1 sr-1"), IRFS.bkg(E_ANY, TH_ANY, -0.4), rtol=INTERP_TOL)
    x = np.linspace(-2.1, 2.1, 29)  # offsets up to 3 deg in the corners
    ee, lon, lat = np.meshgrid(E_DENSE[::3], x, x, indexing="ij")
    got = obs.bkg.evaluate(energy=ee * u.TeV, fov_lon=lon * u.deg, fov_lat=lat * u.deg)
    np.testing.assert_allclose(got.to_value("s-1 MeV-1 sr-1"), IRFS.bkg(ee, lon, lat), rtol=INTERP_TOL)


def test_known_truth_recovery(tmp_path):
    """gammapy's MapDatasetMaker + FoV background + fit recovers the simulated source (4 obs)."""
    from astropy.coordinates import SkyCoord
    from gammapy.data import DataStore
    from gammapy.datasets import MapDataset
    from gammapy.makers import FoVBackgroundMaker, MapDatasetMaker, SafeMaskMaker
    from gammapy.maps import MapAxis, WcsGeom
    from gammapy.modeling import Fit
    from gammapy.modeling.models import PointSpatialModel, PowerLawSpectralModel, SkyModel

    path = simulate_datastore(tmp_path / "store", n_obs=4, seed=0)
    t = truth()
    observations = DataStore.from_dir(path).get_observations()
    center = SkyCoord(t["lon_0"], t["lat_0"], unit="deg")
    energy = MapAxis.from_energy_bounds(0.5, 50, 8, unit="TeV")
    energy_true = MapAxis.from_energy_bounds(0.2, 100, 16, unit="TeV", name="energy_true")
    geom = WcsGeom.create(skydir=center, binsz=0.04, width=(2.4, 2.4), frame="icrs", axes=[energy])
    stacked = MapDataset.create(geom=geom, energy_axis_true=energy_true, name="stacked")
    maker = MapDatasetMaker()
    safe = SafeMaskMaker(methods=["offset-max"], offset_max=2.0 * u.deg)
    from regions import CircleSkyRegion

    exclusion = ~geom.to_image().region_mask([CircleSkyRegion(center, 0.4 * u.deg)])
    fov = FoVBackgroundMaker(method="scale", exclusion_mask=exclusion)
    for obs in observations:
        ds = maker.run(stacked.copy(name=f"o{obs.obs_id}"), obs)
        ds = fov.run(safe.run(ds, obs))
        stacked.stack(ds)
    spatial = PointSpatialModel(lon_0=(t["lon_0"] + 0.02) * u.deg, lat_0=(t["lat_0"] - 0.02) * u.deg, frame="icrs")
    spectral = PowerLawSpectralModel(index=2.0, amplitude="1e-11 cm-2 s-1 TeV-1", reference="1 TeV")
    stacked.models = [SkyModel(spatial_model=spatial, spectral_model=spectral, name="src")]
    result = Fit().run([stacked])
    assert result.success
    p = stacked.models["src"].parameters
    err = {n: p[n].error for n in ("index", "amplitude", "lon_0", "lat_0")}
    print(f"\n[simulate] fit vs truth: index {p['index'].value:.3f}+-{err['index']:.3f} (2.6), "
          f"amplitude {p['amplitude'].value:.3e} ({t['amplitude']:.3e})")
    assert abs(p["index"].value - t["index"]) < 4 * err["index"] + 0.03
    assert abs(p["amplitude"].value - t["amplitude"]) < 4 * err["amplitude"] + 0.05 * t["amplitude"]
    assert abs(p["lon_0"].value - t["lon_0"]) < 0.01
    assert abs(p["lat_0"].value - t["lat_0"]) < 0.01
