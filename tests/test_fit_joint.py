"""Joint fits of per-observation datasets vs gammapy 2.1: one `MapDataset` per run, a free FoV background
norm per run (``FoVBackgroundModel(dataset_name=...)``), one sky model shared by all (gammapy's joint
analysis tutorials), fitted with `Fit` on a `Datasets`.

Two set-ups, each reduced once per module with gammapy's makers (the seed's low-level loop per run: cutout,
MapDatasetMaker, SafeMaskMaker offset-max + aeff-max, FoVBackgroundMaker "fit" with the source excluded; no
stacking), every run written with gammapy's ``write`` to a temporary directory and read back by both
libraries, so both fits see the same numbers:

- crab4: the seed's four Crab runs (23523, 23526, 23559, 23592), the seed geometry (2 x 2 deg, 0.02 deg,
  1-10 TeV in 4 bins, exclusion 0.2 deg at (83.63, 22.14)), point source + power law from the seed start
  values: 4 datasets, 9 free parameters;
- pks21 (slow): all 21 PKS 2155-304 runs of DR1 (33787-33801, 47802-47804, 47827-47829), the 4-run
  stacked parity set-up of ``test_fit_targets.py`` (2 x 2 deg, 0.02 deg, 0.7-10 TeV in 6 bins, exclusion
  0.3 deg), point source + log-parabola: 21 datasets, 26 free parameters (gammapy's fit takes ~2-3 min
  here, ours a few seconds).

Position bounds (+-0.5 deg) are set in both libraries, as in ``test_fit_targets.py``; both fits start
each run's background norm at the value gammapy's FoV background maker fitted for that run.

Checks: our reduction of every run (our makers) against gammapy's arrays; the joint fits parameter by
parameter (the brief's tolerances: free parameters within 0.1 sigma of gammapy, errors within 3 %, total
stat within 0.5), the per-dataset statistics at gammapy's best fit.
"""
from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from regions import CircleSkyRegion

pytest.importorskip("gammapy")

from tests.test_fit_targets import DEG2_PER_SR, DNDE, OFFSET_MAX, POSITION_BOUND, _lib  # noqa: E402

SETUPS = {
    "crab4": dict(
        center=(83.633, 22.014), obs_ids=[23523, 23526, 23559, 23592], binsz=0.02, width=2.0,
        energy=(1.0, 10.0, 4), exclusion=((83.63, 22.14), 0.2),
        spectral=("PowerLawSpectralModel", dict(index=2.702, amplitude=4.712e-11 * DNDE, reference=1 * u.TeV)),
        spatial=("PointSpatialModel", dict(lon_0=83.63308 * u.deg, lat_0=22.0145 * u.deg, frame="icrs")),
    ),
    "pks21": dict(
        center=(329.71694, -30.2255),
        obs_ids=list(range(33787, 33802)) + [47802, 47803, 47804, 47827, 47828, 47829],
        binsz=0.02, width=2.0, energy=(0.7, 10.0, 6), exclusion=((329.71694, -30.2255), 0.3),
        spectral=("LogParabolaSpectralModel", dict(alpha=3.2, beta=0.2, amplitude=2e-11 * DNDE, reference=1 * u.TeV)),
        spatial=("PointSpatialModel", dict(lon_0=329.72 * u.deg, lat_0=-30.22 * u.deg, frame="icrs")),
    ),
}
SOURCE = "source"


def reduce_runs(lib: SimpleNamespace, hess_dr1, key: str) -> list:
    """One dataset per run (named ``obs-<id>``), the seed's makers; nothing stacked."""
    setup = SETUPS[key]
    observations = lib.DataStore.from_dir(hess_dr1).get_observations(setup["obs_ids"])
    e_min, e_max, nbin = setup["energy"]
    energy_axis = lib.MapAxis.from_energy_bounds(e_min, e_max, nbin, unit="TeV")
    energy_axis_true = lib.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    geom = lib.WcsGeom.create(skydir=setup["center"], binsz=setup["binsz"], width=setup["width"],
                              frame="icrs", proj="CAR", axes=[energy_axis])
    empty = lib.MapDataset.create(geom=geom, energy_axis_true=energy_axis_true, name="empty")
    (lon, lat), radius = setup["exclusion"]
    circle = CircleSkyRegion(center=SkyCoord(lon, lat, unit="deg"), radius=radius * u.deg)
    maker = lib.MapDatasetMaker()
    maker_safe = lib.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=OFFSET_MAX)
    maker_fov = lib.FoVBackgroundMaker(method="fit", exclusion_mask=~geom.region_mask(regions=[circle]))
    out = []
    for obs in observations:
        cutout = empty.cutout(obs.get_pointing_icrs(obs.tmid), width=2 * OFFSET_MAX, name=f"obs-{obs.obs_id}")
        out.append(maker_fov.run(maker_safe.run(maker.run(cutout, obs), obs)))
    return out


def joint_models(lib: SimpleNamespace, key: str, dataset_names: list[str]) -> list:
    """The shared sky model and one FoV background model per dataset."""
    setup = SETUPS[key]
    spectral_cls, spectral_kw = setup["spectral"]
    spatial_cls, spatial_kw = setup["spatial"]
    spatial = getattr(lib.models, spatial_cls)(**spatial_kw)
    for par in (spatial.lon_0, spatial.lat_0):
        par.min, par.max = par.value - POSITION_BOUND, par.value + POSITION_BOUND
    sky = lib.models.SkyModel(getattr(lib.models, spectral_cls)(**spectral_kw), spatial, name=SOURCE)
    return [sky] + [lib.models.FoVBackgroundModel(dataset_name=name) for name in dataset_names]


def read_joint(lib: SimpleNamespace, datasets_cls, paths: list, key: str, norms: dict | None = None):
    """Datasets read from ``paths`` with the joint models; background norms start at ``norms`` (by
    dataset name: the FoV background maker's fit of each run, which the written files do not keep)."""
    datasets = datasets_cls([lib.MapDataset.read(p) for p in paths])
    datasets.models = joint_models(lib, key, datasets.names)
    for dataset in datasets:
        if norms is not None:
            dataset.background_model.spectral_model.norm.value = norms[dataset.name]
    return datasets


def _datasets_classes():
    from gammapy.datasets import Datasets as GpDatasets

    from gamma_ray_dist.datasets import Datasets
    return GpDatasets, Datasets


# gammapy's 21-run fit takes ~2.5 min alone, several times that on a loaded machine
@pytest.fixture(scope="module", params=["crab4", pytest.param("pks21", marks=[pytest.mark.slow,
                                                                             pytest.mark.timeout(1800)])])
def joint(request, hess_dr1, tmp_path_factory):
    """gammapy's per-run datasets written once; both joint fits from those files; our own reduction."""
    key = request.param
    gp, ours = _lib("gammapy"), _lib("ours")
    gp_datasets_cls, datasets_cls = _datasets_classes()
    directory = tmp_path_factory.mktemp(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gammapy: IRF-range / FITS header warnings
        gp_runs = reduce_runs(gp, hess_dr1, key)
        paths = []
        for ds in gp_runs:
            paths.append(directory / f"{ds.name}.fits.gz")
            ds.write(paths[-1])
        # both fits start with each run's norm at the FoV maker's value (as a reduction that keeps the
        # maker's background model would): the same optimisation problem for both
        norms = {ds.name: float(ds.background_model.spectral_model.norm.value) for ds in gp_runs}
        gp_datasets = read_joint(gp, gp_datasets_cls, paths, key, norms)
        gp_result = gp.Fit().run(gp_datasets)
    our_runs = reduce_runs(ours, hess_dr1, key)
    datasets = read_joint(ours, datasets_cls, paths, key, norms)
    result = ours.Fit().run(datasets)
    return SimpleNamespace(key=key, paths=paths, gp_runs=gp_runs, our_runs=our_runs, gp_datasets=gp_datasets,
                           gp_result=gp_result, datasets=datasets, result=result)


def test_per_run_reduction_matches_gammapy(joint):
    assert [d.name for d in joint.our_runs] == [d.name for d in joint.gp_runs]
    assert len(joint.our_runs) == len(SETUPS[joint.key]["obs_ids"])
    for ours, theirs in zip(joint.our_runs, joint.gp_runs):
        name = ours.name
        np.testing.assert_array_equal(ours.counts.data, theirs.counts.data, err_msg=name)
        np.testing.assert_array_equal(ours.mask_safe.data, theirs.mask_safe.data, err_msg=name)
        np.testing.assert_allclose(ours.background.data, theirs.background.data, rtol=1e-4, atol=1e-12,
                                   err_msg=name)
        np.testing.assert_allclose(ours.exposure.data, theirs.exposure.quantity.to_value("m2 s"), rtol=1e-4,
                                   err_msg=name)
        np.testing.assert_allclose(ours.psf.psf_map.data / DEG2_PER_SR,
                                   theirs.psf.psf_map.quantity.to_value("deg-2"), rtol=1e-4, atol=1e-8,
                                   err_msg=name)
        np.testing.assert_allclose(ours.edisp.edisp_map.data, theirs.edisp.edisp_map.data, rtol=1e-4, atol=1e-7,
                                   err_msg=name)
        # FoV norms: our Cash minimum is exact, gammapy's MIGRAD stops within ~1e-3 (as test_makers)
        assert ours.background_model.spectral_model.norm.value == pytest.approx(
            theirs.background_model.spectral_model.norm.value, abs=0.002), name
    assert sum(float(d.counts.data.sum()) for d in joint.our_runs) > 1000


def _free_pairs(joint):
    theirs = {(m.name, p.name): p for m in joint.gp_datasets.models for p in m.parameters}
    pairs = []
    for model in joint.datasets.models:
        for par in model.parameters:
            gp_par = theirs[(model.name, par.name)]
            assert par.frozen == gp_par.frozen, (model.name, par.name)
            if not par.frozen:
                pairs.append((f"{model.name}.{par.name}", par, gp_par))
    return pairs


def test_joint_fit_converges_like_gammapy(joint):
    assert joint.gp_result.success, joint.gp_result.message
    assert joint.result.success, joint.result.message
    assert joint.result.total_stat == pytest.approx(joint.gp_result.total_stat, abs=0.5)
    n_runs = len(SETUPS[joint.key]["obs_ids"])
    n_source = len([p for p in joint.datasets.models[SOURCE].parameters if not p.frozen])
    assert len(_free_pairs(joint)) == n_source + n_runs  # one free background norm per run


def test_joint_fit_parameters_match_gammapy(joint):
    print(f"\n{joint.key}: stat {joint.result.total_stat:.3f} vs {joint.gp_result.total_stat:.3f}, "
          f"nfev {joint.result.nfev} vs {joint.gp_result.nfev}")
    for name, par, gp_par in _free_pairs(joint):
        gp_error = gp_par.error
        assert np.isfinite(gp_error) and gp_error > 0, name
        pull = (par.value - gp_par.value) / gp_error
        print(f"  {name}: {par.value:.6g} +- {par.error:.4g} vs {gp_par.value:.6g} +- {gp_error:.4g}: "
              f"{pull:+.4f} sigma, error ratio {par.error / gp_error:.4f}")
        assert abs(pull) < 0.1, f"{name}: {par.value} vs {gp_par.value} ({pull:.3f} sigma)"
        assert par.error == pytest.approx(gp_error, rel=0.03), f"{name}: {par.error} vs {gp_error}"


def test_per_dataset_stat_at_gammapy_best_fit(joint):
    """Every dataset's statistic at gammapy's best-fit values: the per-run pieces agree, not only their sum.

    Both sides freshly read, so that both evaluators anchor their cutouts at that position (after a fit
    each library's anchor depends on its own MIGRAD path, which moves the trimmed PSF tails by ~0.05).
    """
    gp_datasets_cls, datasets_cls = _datasets_classes()
    datasets = read_joint(_lib("ours"), datasets_cls, joint.paths, joint.key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp_datasets = read_joint(_lib("gammapy"), gp_datasets_cls, joint.paths, joint.key)
    best = {(m.name, p.name): p.value for m in joint.gp_datasets.models for p in m.parameters}
    for models in (datasets.models, gp_datasets.models):
        for model in models:
            for par in model.parameters:
                par.value = best[(model.name, par.name)]
    for ours, theirs in zip(datasets, gp_datasets):
        assert ours.name == theirs.name
        assert ours.stat_sum() == pytest.approx(theirs.stat_sum(), abs=0.05), ours.name


def test_fitted_source_is_physical(joint):
    model = joint.datasets.models[SOURCE]
    position = SkyCoord(model.spatial_model.lon_0.value, model.spatial_model.lat_0.value, unit="deg")
    assert position.separation(SkyCoord(*SETUPS[joint.key]["center"], unit="deg")).deg < 0.1
    for dataset in joint.datasets:
        assert 0.5 < dataset.background_model.spectral_model.norm.value < 1.6, dataset.name
