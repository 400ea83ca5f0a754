"""Fit parity beyond the Crab seed: other DR1 targets, spectral and spatial models, vs gammapy 2.1.

Two targets, each reduced once per module with gammapy's makers (the seed's low-level loop: cutout,
MapDatasetMaker, SafeMaskMaker offset-max + aeff-max, FoVBackgroundMaker "fit" with the source excluded,
stack), written with gammapy's ``write`` and read back by both libraries:

- PKS 2155-304 (2006 flare runs 33791-33794, four wobble directions, zenith 7-24 deg): point source +
  LogParabola, 0.02 deg pixels, 2 x 2 deg, 0.7-10 TeV in 6 bins (the source is soft: ~60 % of the
  excess is below 1.5 TeV);
- MSH 15-52 (runs 20136, 20137, 20282, 20283, wobbles at +-0.4/0.6 deg): Gaussian + PowerLaw,
  0.04 deg pixels, 3 x 3 deg, 1-10 TeV in 4 bins (zenith 36-40 deg: no safe data below ~1 TeV).

Checks: our reduction of the same runs (our makers, ``MapDataset.stack``) against gammapy's stacked
arrays; the fits (same start values, same bounds) parameter by parameter; flux points of PKS 2155-304.

Tolerances (the brief's): free parameters within 0.1 sigma of gammapy, errors within 3 %, total stat
within 0.5; counts and masks exact, background / exposure / IRF maps rtol 1e-4; flux points dnde and ts
2 %, dnde_err 3 %. Measured: pulls <= 0.03 sigma, error ratios within 0.25 %, stat deltas <= 0.07,
flux points within 2e-7 (run with -s to print them).

Position bounds (+-0.5 deg) are set in *both* libraries: without them gammapy's MIGRAD steps a point
source off the map on its first position step and fails (design.md section 4); we would recover, but a
parity test needs both optimisers on the same problem.
"""
from __future__ import annotations

import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

pytest.importorskip("gammapy")

DNDE = u.Unit("cm-2 s-1 TeV-1")
DEG2_PER_SR = (180 / np.pi) ** 2
TIMINGS: dict[str, float] = {}  # printed with -s; handy when the module is re-tuned

TARGETS = {
    "pks2155": dict(
        center=(329.71694, -30.2255), obs_ids=[33791, 33792, 33793, 33794], binsz=0.02, width=2.0,
        energy=(0.7, 10.0, 6), exclusion_radius=0.3,
        spectral=("LogParabolaSpectralModel", dict(alpha=3.2, beta=0.2, amplitude=2e-11 * DNDE, reference=1 * u.TeV)),
        spatial=("PointSpatialModel", dict(lon_0=329.72 * u.deg, lat_0=-30.22 * u.deg, frame="icrs")),
    ),
    "msh1552": dict(
        center=(228.53, -59.16), obs_ids=[20136, 20137, 20282, 20283], binsz=0.04, width=3.0,
        energy=(1.0, 10.0, 4), exclusion_radius=0.5,
        spectral=("PowerLawSpectralModel", dict(index=2.3, amplitude=5e-12 * DNDE, reference=1 * u.TeV)),
        spatial=("GaussianSpatialModel", dict(lon_0=228.53 * u.deg, lat_0=-59.16 * u.deg, sigma=0.1 * u.deg,
                                              frame="icrs")),
    ),
}
SELECTION_RADIUS = 2.0  # deg, sky_circle around the target
OFFSET_MAX = 2.5 * u.deg
POSITION_BOUND = 0.5  # deg, both libraries


def _lib(name: str) -> SimpleNamespace:
    """The handful of names the low-level loop needs, from gammapy or from us (same API)."""
    if name == "gammapy":
        from gammapy import data, datasets, estimators, makers, maps, modeling
        from gammapy.modeling import models
    else:
        from gamma_ray_dist import data, datasets, estimators, makers, maps, modeling
        from gamma_ray_dist.modeling import models
    return SimpleNamespace(DataStore=data.DataStore, MapDataset=datasets.MapDataset, MapAxis=maps.MapAxis,
                           WcsGeom=maps.WcsGeom, MapDatasetMaker=makers.MapDatasetMaker,
                           SafeMaskMaker=makers.SafeMaskMaker, FoVBackgroundMaker=makers.FoVBackgroundMaker,
                           Fit=modeling.Fit, models=models, FluxPointsEstimator=estimators.FluxPointsEstimator)


def _selection(target: dict) -> dict:
    lon, lat = target["center"]
    return dict(type="sky_circle", frame="icrs", lon=f"{lon} deg", lat=f"{lat} deg", radius=f"{SELECTION_RADIUS} deg")


def _reduce(lib: SimpleNamespace, hess_dr1, key: str):
    """The seed's reduction loop for one target; returns (stacked dataset, {obs_id: FoV norm})."""
    target = TARGETS[key]
    store = lib.DataStore.from_dir(hess_dr1)
    observations = store.get_observations(target["obs_ids"])
    e_min, e_max, nbin = target["energy"]
    energy_axis = lib.MapAxis.from_energy_bounds(e_min, e_max, nbin, unit="TeV")
    energy_axis_true = lib.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = lib.WcsGeom.create(skydir=target["center"], binsz=target["binsz"], width=target["width"],
                              frame="icrs", proj="CAR", axes=[energy_axis])
    stacked = lib.MapDataset.create(geom=geom, energy_axis_true=energy_axis_true, name=f"{key}-stacked")
    circle = CircleSkyRegion(center=SkyCoord(*target["center"], unit="deg"),
                             radius=target["exclusion_radius"] * u.deg)
    maker = lib.MapDatasetMaker()
    maker_safe = lib.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=OFFSET_MAX)
    maker_fov = lib.FoVBackgroundMaker(method="fit", exclusion_mask=~geom.region_mask(regions=[circle]))
    norms = {}
    for obs in observations:
        cutout = stacked.cutout(obs.get_pointing_icrs(obs.tmid), width=2 * OFFSET_MAX, name=f"obs-{obs.obs_id}")
        dataset = maker_fov.run(maker_safe.run(maker.run(cutout, obs), obs))
        norms[int(obs.obs_id)] = float(dataset.background_model.spectral_model.norm.value)
        stacked.stack(dataset)
    return stacked, norms


def _sky_model(lib: SimpleNamespace, key: str):
    target = TARGETS[key]
    spectral_cls, spectral_kw = target["spectral"]
    spatial_cls, spatial_kw = target["spatial"]
    spatial = getattr(lib.models, spatial_cls)(**spatial_kw)
    for par in (spatial.lon_0, spatial.lat_0):
        par.min, par.max = par.value - POSITION_BOUND, par.value + POSITION_BOUND
    return lib.models.SkyModel(getattr(lib.models, spectral_cls)(**spectral_kw), spatial, name=key)


def _timed(label: str, fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    TIMINGS[label] = time.perf_counter() - t0
    return out


@pytest.fixture(scope="module", params=list(TARGETS))
def target(request, hess_dr1, tmp_path_factory):
    """Both reductions of one target, gammapy's written to disk and both fits from that file."""
    key = request.param
    gp, ours = _lib("gammapy"), _lib("ours")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gammapy: IRF-range / FITS header warnings
        gp_stacked, gp_norms = _timed(f"{key} reduce gammapy", _reduce, gp, hess_dr1, key)
        path = tmp_path_factory.mktemp(key) / f"{key}-stacked.fits.gz"
        gp_stacked.write(path)
        our_stacked, our_norms = _timed(f"{key} reduce ours", _reduce, ours, hess_dr1, key)

        gp_ds = gp.MapDataset.read(path)
        gp_ds.models = [_sky_model(gp, key), gp.models.FoVBackgroundModel(dataset_name=gp_ds.name)]
        gp_result = _timed(f"{key} fit gammapy", gp.Fit().run, [gp_ds])
    ds = ours.MapDataset.read(path)
    assert ds.name == gp_ds.name == f"{key}-stacked"
    ds.models = [_sky_model(ours, key), ours.models.FoVBackgroundModel(dataset_name=ds.name)]
    result = _timed(f"{key} fit ours", ours.Fit().run, [ds])
    yield SimpleNamespace(key=key, path=path, gp_stacked=gp_stacked, gp_norms=gp_norms, our_stacked=our_stacked,
                          our_norms=our_norms, gp_ds=gp_ds, gp_result=gp_result, ds=ds, result=result)
    print({k: round(v, 2) for k, v in TIMINGS.items()})


# --- observation selection and reduction --------------------------------------------------------
def test_selection_matches_gammapy_and_holds_the_runs(target, hess_dr1):
    gp_store = _lib("gammapy").DataStore.from_dir(hess_dr1)
    store = _lib("ours").DataStore.from_dir(hess_dr1)
    selection = _selection(TARGETS[target.key])
    ours = sorted(int(i) for i in store.obs_table.select_observations(selection)["OBS_ID"])
    theirs = sorted(int(i) for i in gp_store.obs_table.select_observations(selection)["OBS_ID"])
    assert ours == theirs
    assert set(TARGETS[target.key]["obs_ids"]) <= set(ours)


def test_stacked_reduction_matches_gammapy(target):
    ours, theirs = target.our_stacked, target.gp_stacked
    assert ours.counts.data.shape == theirs.counts.data.shape
    np.testing.assert_array_equal(ours.counts.data, theirs.counts.data)
    assert ours.counts.data.sum() > 1000
    np.testing.assert_array_equal(ours.mask_safe.data, theirs.mask_safe.data)
    np.testing.assert_allclose(ours.background.data, theirs.background.data, rtol=1e-4, atol=1e-12)
    np.testing.assert_allclose(ours.exposure.data, theirs.exposure.quantity.to_value("m2 s"), rtol=1e-4)
    np.testing.assert_allclose(ours.psf.psf_map.data / DEG2_PER_SR,
                               theirs.psf.psf_map.quantity.to_value("deg-2"), rtol=1e-4, atol=1e-8)
    np.testing.assert_allclose(ours.edisp.edisp_map.data, theirs.edisp.edisp_map.data, rtol=1e-4, atol=1e-7)
    assert ours.gti.time_sum.to_value("s") == pytest.approx(theirs.gti.time_sum.to_value("s"), rel=1e-9)
    # FoV norms: our Cash minimum is exact, gammapy's MIGRAD stops within ~1e-3 (as test_makers)
    assert ours.name == theirs.name
    for obs_id, norm in target.gp_norms.items():
        assert target.our_norms[obs_id] == pytest.approx(norm, abs=0.002), obs_id


# --- fits ---------------------------------------------------------------------------------------
def _free_pairs(target):
    theirs = {(m.name, p.name): p for m in target.gp_ds.models for p in m.parameters}
    pairs = []
    for model in target.ds.models:
        for par in model.parameters:
            gp_par = theirs[(model.name, par.name)]
            assert par.frozen == gp_par.frozen, (model.name, par.name)
            if not par.frozen:
                pairs.append((f"{model.name}.{par.name}", par, gp_par))
    return pairs


def test_fit_converges_like_gammapy(target):
    assert target.gp_result.success, target.gp_result.message
    assert target.result.success, target.result.message
    # same Cash function, same data: the minima agree far better than 0.5 (measured <= 0.07)
    assert target.result.total_stat == pytest.approx(target.gp_result.total_stat, abs=0.5)
    assert len(_free_pairs(target)) == 6  # 5 source parameters + the background norm


def test_fit_parameters_match_gammapy(target):
    print(f"\n{target.key}: stat {target.result.total_stat:.3f} vs {target.gp_result.total_stat:.3f}, "
          f"nfev {target.result.nfev} vs {target.gp_result.nfev}")
    for name, par, gp_par in _free_pairs(target):
        gp_value = gp_par.value
        gp_error = gp_par.error
        assert np.isfinite(gp_error) and gp_error > 0, name
        pull = (par.value - gp_value) / gp_error
        print(f"  {name}: {par.value:.6g} +- {par.error:.4g} vs {gp_value:.6g} +- {gp_error:.4g}: "
              f"{pull:+.4f} sigma, error ratio {par.error / gp_error:.4f}")
        assert abs(pull) < 0.1, f"{name}: {par.value} vs {gp_value} ({pull:.3f} sigma)"
        # errors from the MIGRAD covariance of both (same set-up); the Gaussian sigma's error is
        # as stable as the others here (measured 0.1 %), so no looser tolerance is needed for it
        assert par.error == pytest.approx(gp_error, rel=0.03), f"{name}: {par.error} vs {gp_error}"


def test_fitted_model_is_physical(target):
    """Sanity on top of parity: the source is where it should be and the background norm near 1."""
    model = target.ds.models[target.key]
    position = SkyCoord(model.spatial_model.lon_0.value, model.spatial_model.lat_0.value, unit="deg")
    assert position.separation(SkyCoord(*TARGETS[target.key]["center"], unit="deg")).deg < 0.1
    assert target.ds.background_model.spectral_model.norm.value == pytest.approx(1, abs=0.1)
    if target.key == "msh1552":
        assert 0.03 < model.spatial_model.sigma.value < 0.2  # extended, not a point source


# --- flux points --------------------------------------------------------------------------------
@pytest.mark.parametrize("target", ["pks2155"], indirect=True)
def test_flux_points_match_gammapy(target):
    gp, ours = _lib("gammapy"), _lib("ours")
    # bins made of whole dataset bins: 0.7-1.5-3.2-10 TeV (edges 0, 2, 4, 6 of the 6-bin axis)
    e_min, e_max, nbin = TARGETS[target.key]["energy"]
    edges = np.geomspace(e_min, e_max, nbin + 1)[[0, 2, 4, 6]] * u.TeV
    # both at gammapy's best fit, so that this test does not depend on the fit parity
    best = {(m.name, p.name): p.value for m in target.gp_ds.models for p in m.parameters}
    ds = target.ds.copy(name=target.ds.name)
    ds.models = [_sky_model(ours, target.key), ours.models.FoVBackgroundModel(dataset_name=ds.name)]
    for model in ds.models:
        for par in model.parameters:
            par.value = best[(model.name, par.name)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = _timed("pks2155 flux points gammapy",
                        gp.FluxPointsEstimator(energy_edges=edges, source=target.key).run, [target.gp_ds])
    fp = _timed("pks2155 flux points ours", ours.FluxPointsEstimator(energy_edges=edges, source=target.key).run, [ds])
    np.testing.assert_allclose(fp.energy_min.to_value("TeV"), theirs.energy_min.to_value("TeV"), rtol=1e-9)
    np.testing.assert_allclose(fp.energy_max.to_value("TeV"), theirs.energy_max.to_value("TeV"), rtol=1e-9)
    gp_dnde = theirs.dnde.quantity.to_value(DNDE).ravel()
    assert np.all(np.isfinite(gp_dnde)) and np.all(theirs.ts.data.ravel() > 4)
    np.testing.assert_allclose(fp.dnde.to_value(DNDE), gp_dnde, rtol=0.02)
    np.testing.assert_allclose(fp.ts, theirs.ts.data.ravel(), rtol=0.02)
    np.testing.assert_allclose(fp.dnde_err.to_value(DNDE), theirs.dnde_err.quantity.to_value(DNDE).ravel(),
                               rtol=0.03)
    np.testing.assert_array_equal(fp.counts[:, 0], theirs.counts.data.ravel())
    np.testing.assert_array_equal(fp.success, theirs.success.data.ravel())
    print("\nflux points dnde ratio", fp.dnde.to_value(DNDE) / gp_dnde, "ts ratio", fp.ts / theirs.ts.data.ravel(),
          "dnde_err ratio", fp.dnde_err.to_value(DNDE) / theirs.dnde_err.quantity.to_value(DNDE).ravel())
