"""ExcessMapEstimator optional quantities (``sensitivity``, ``alpha``, ``acceptance_on``,
``acceptance_off``) against gammapy 2.1, side by side on the seed stacked dataset (background only, as
in tests/test_sky_maps.py); their maths on arrays; FITS both ways; config and pipeline.

Tolerances: the sensitivity maps agree with gammapy's to 1e-3 relative (measured ~2e-4: the two
libraries' exposures and background predictions differ at that level); the excess matching a
significance, computed from the same background array, to 1e-9.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits

from tests import test_sky_maps

from gamma_ray_dist.errors import ConfigError
from gamma_ray_dist.estimators import EstimatorInputError, ExcessMapEstimator, FluxMaps
from gamma_ray_dist.stats import CashCountsStatistic, apply_threshold_sensitivity

# the seed's background-only datasets, ours and gammapy's: test_sky_maps' module-scoped fixtures (built
# again for this module)
ours, theirs = test_sky_maps.ours, test_sky_maps.theirs

SENS_RTOL = 1e-3
ONOFF_KEYS = ("alpha", "acceptance_on", "acceptance_off")
# floors that both bite on the seed dataset: the 5-sigma excess over the correlated background is 17-25
# counts, the uncorrelated background per pixel 0.15-0.22 counts (118 x 0.2 = 23.6)
BOTH_FLOORS = dict(apply_threshold_sensitivity=True, gamma_min_sensitivity=24, bkg_syst_fraction_sensitivity=118)


def _assert_close_maps(gp_map, us_map, rtol):
    a, b = np.asarray(gp_map.data, dtype=float), np.asarray(us_map.data, dtype=float)
    assert a.shape == b.shape
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.isfinite(a).sum() > 1000
    np.testing.assert_allclose(b, a, rtol=rtol, equal_nan=True)
    assert u.Unit(gp_map.unit) == u.Unit(us_map.unit)


# --- side by side with gammapy -------------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(selection_optional="all"),
    dict(selection_optional=["sensitivity"], n_sigma_sensitivity=3, energy_edges=[0.7, 2, 10] * u.TeV),
    dict(selection_optional=["sensitivity", "ul"], **BOTH_FLOORS),
], ids=["all", "3sigma-two-bins", "floors"])
def test_sensitivity_parity_with_gammapy(ours, theirs, kw):
    import gammapy.estimators as ge

    gp = ge.ExcessMapEstimator(correlation_radius="0.1 deg", **kw).run(theirs)
    us = ExcessMapEstimator(correlation_radius="0.1 deg", **kw).run(ours)
    assert us.available_quantities == gp.available_quantities
    assert "norm_sensitivity" in us.available_quantities
    for q in ("norm_sensitivity", "flux_sensitivity", "dnde_sensitivity", "e2dnde_sensitivity",
              "eflux_sensitivity"):
        _assert_close_maps(getattr(gp, q), getattr(us, q), SENS_RTOL)
    for key in ("n_sigma_sensitivity", "gamma_min_sensitivity", "bkg_syst_fraction_sensitivity"):
        assert us.meta.get(key) == gp.meta.get(key)


def test_both_floors_bite_in_the_floors_case(ours):
    """The 'floors' parity case is meaningful: each floor raises some pixels and not others."""
    def sens(**kw):
        return np.asarray(ExcessMapEstimator(selection_optional=["sensitivity"], **kw).run(ours)
                          .norm_sensitivity.data)

    plain = sens()
    finite = np.isfinite(plain)
    for floor in (dict(apply_threshold_sensitivity=True, gamma_min_sensitivity=24, bkg_syst_fraction_sensitivity=0),
                  dict(apply_threshold_sensitivity=True, gamma_min_sensitivity=0, bkg_syst_fraction_sensitivity=118)):
        raised = sens(**floor)[finite] > plain[finite] * (1 + 1e-9)
        assert 0.05 < raised.mean() < 0.95, (floor, raised.mean())
    assert np.all(sens(**BOTH_FLOORS)[finite] >= plain[finite])
    assert np.array_equal(sens(gamma_min_sensitivity=24, bkg_syst_fraction_sensitivity=118), plain)


def test_onoff_quantities_on_a_map_dataset_match_gammapy(ours, theirs):
    """gammapy 2.1 returns no alpha/acceptance maps for a MapDataset (there are no OFF counts)."""
    import gammapy.estimators as ge

    kw = dict(selection_optional=list(ONOFF_KEYS))
    gp, us = ge.ExcessMapEstimator(**kw).run(theirs), ExcessMapEstimator(**kw).run(ours)
    assert us.available_quantities == gp.available_quantities
    assert not set(ONOFF_KEYS) & set(us.available_quantities)
    with pytest.raises(AttributeError, match="alpha"):
        us.alpha
    _assert_close_maps(gp.sqrt_ts, us.sqrt_ts, 1e-3)


# --- the maths on arrays ----------------------------------------------------------------------
BKG = np.array([0.0, -1.0, np.nan, 1e-6, 1e-3, 0.1, 1.0, 7.5, 100.0, 1e4, 1e6])


@pytest.mark.parametrize("significance", [5.0, 3.0, 1.0, 0.2])
def test_excess_matching_significance(significance):
    excess = CashCountsStatistic(np.zeros_like(BKG), BKG).n_sig_matching_significance(significance)
    positive = BKG > 0
    assert np.all(np.isnan(excess[~positive])) and np.all(excess[positive] > 0)
    # inverse of the significance: n_on = b + s over b gives the target back
    back = CashCountsStatistic(BKG[positive] + excess[positive], BKG[positive]).sqrt_ts
    np.testing.assert_allclose(back, significance, rtol=1e-6)
    gs = pytest.importorskip("gammapy.stats")
    theirs = gs.CashCountsStatistic(np.zeros_like(BKG), BKG).n_sig_matching_significance(significance)
    np.testing.assert_allclose(excess, theirs, rtol=1e-9, equal_nan=True)


def test_apply_threshold_sensitivity_matches_gammapy():
    rng = np.random.default_rng(3)
    excess = rng.uniform(0, 40, (3, 20, 20))
    excess[0, 0, :5] = np.nan
    background = rng.uniform(0, 600, (3, 20, 20))
    before = excess.copy()
    ours = apply_threshold_sensitivity(background, excess, 10, 0.05)
    assert np.array_equal(excess, before, equal_nan=True)  # the input is left alone
    assert (ours == 10).any() and (ours == 0.05 * background).any() and (ours == excess).any()
    utils = pytest.importorskip("gammapy.estimators.utils")
    np.testing.assert_array_equal(ours, utils.apply_threshold_sensitivity(background, excess.copy(), 10, 0.05))


# --- FITS both ways --------------------------------------------------------------------------------
def test_sensitivity_maps_fits_both_ways(ours, theirs, tmp_path, monkeypatch):
    ge = pytest.importorskip("gammapy.estimators")

    kw = dict(selection_optional="all", energy_edges=[0.7, 2, 10] * u.TeV)
    us = ExcessMapEstimator(**kw).run(ours)
    us.write(tmp_path / "ours.fits.gz")
    gp = ge.ExcessMapEstimator(**kw).run(theirs)
    gp.write(tmp_path / "theirs.fits.gz")
    with fits.open(tmp_path / "ours.fits.gz") as ours_hdus, fits.open(tmp_path / "theirs.fits.gz") as gp_hdus:
        # same HDUs in the same order (we also keep the dataset's GTI, which gammapy's excess maps drop)
        assert [h.name for h in ours_hdus if h.name != "GTI"] == [h.name for h in gp_hdus]
        assert ours_hdus["NORM_SENSITIVITY"].data.shape == gp_hdus["NORM_SENSITIVITY"].data.shape == (2, 100, 100)
    monkeypatch.chdir(tmp_path.parent)  # the header names the model YAML by its path as written
    back = ge.FluxMaps.read(tmp_path / "ours.fits.gz")
    assert back.available_quantities == ge.FluxMaps.read(tmp_path / "theirs.fits.gz").available_quantities
    np.testing.assert_array_equal(back.norm_sensitivity.data, us.norm_sensitivity.data)
    np.testing.assert_allclose(back.flux_sensitivity.data, us.flux_sensitivity.data, rtol=1e-12)
    assert back.flux_sensitivity.unit == us.flux_sensitivity.unit
    ours_back = FluxMaps.read(tmp_path / "theirs.fits.gz")
    assert "norm_sensitivity" in ours_back.available_quantities
    np.testing.assert_array_equal(ours_back.norm_sensitivity.data, gp.norm_sensitivity.data)
    np.testing.assert_allclose(ours_back.e2dnde_sensitivity.data, gp.e2dnde_sensitivity.data, rtol=1e-12)


# --- bad input ----------------------------------------------------------------------------------
def test_bad_options_are_one_line_errors():
    with pytest.raises(EstimatorInputError, match="'sensitivty'") as err:
        ExcessMapEstimator(selection_optional=["sensitivty"])
    assert "\n" not in str(err.value) and "acceptance_off" in str(err.value)
    with pytest.raises(EstimatorInputError, match="n_sigma_sensitivity must be positive"):
        ExcessMapEstimator(n_sigma_sensitivity=0)
    for name in ("gamma_min_sensitivity", "bkg_syst_fraction_sensitivity"):
        with pytest.raises(EstimatorInputError, match=f"{name} must be >= 0"):
            ExcessMapEstimator(**{name: -1})
    assert ExcessMapEstimator(selection_optional="all").selection_optional == [
        "errn-errp", "ul", "sensitivity", "alpha", "acceptance_on", "acceptance_off"]


# --- config and pipeline -------------------------------------------------------------------------
def _base_config() -> dict:
    import yaml

    base = yaml.safe_load((Path(__file__).parents[1] / "examples" / "crab_3d.yaml").read_text())
    base.pop("excess_map", None)
    base.pop("ts_map", None)
    base["flux_points"]["energy"] = {"min": "1 TeV", "max": "10 TeV", "nbins": 3}  # gammapy's form
    return base


def test_config_accepts_and_checks_the_sensitivity_options():
    from gamma_ray_dist.config import AnalysisConfig

    params = {"selection_optional": ["sensitivity", "alpha", "acceptance_on"], "n_sigma_sensitivity": 3,
              "apply_threshold_sensitivity": True, "gamma_min_sensitivity": 5,
              "bkg_syst_fraction_sensitivity": 0.1, "sum_over_energy_groups": False}
    cfg = AnalysisConfig.from_dict(dict(_base_config(), excess_map={"parameters": params}))
    kwargs = cfg.excess_map.estimator_kwargs()
    assert list(kwargs["selection_optional"]) == params["selection_optional"]
    est = ExcessMapEstimator(**kwargs)
    assert (est.n_sigma_sensitivity, est.gamma_min_sensitivity, est.bkg_syst_fraction_sensitivity) == (3, 5, 0.1)
    assert est.apply_threshold_sensitivity
    assert AnalysisConfig.from_yaml(cfg.to_yaml()).excess_map == cfg.excess_map
    bad = [({"selection_optional": ["scan"]}, "selection_optional"),
           ({"n_sigma_sensitivity": 0}, "n_sigma_sensitivity"),
           ({"bkg_syst_fraction_sensitivity": -0.1}, "bkg_syst_fraction_sensitivity"),
           ({"apply_threshold_sensitivity": "yes please"}, "apply_threshold_sensitivity")]
    for p, key in bad:
        with pytest.raises(ConfigError, match=f"excess_map.parameters.{key}") as err:
            AnalysisConfig.from_dict(dict(_base_config(), excess_map={"parameters": p}))
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="ts_map.selection_optional"):  # an excess-map-only option
        AnalysisConfig.from_dict(dict(_base_config(), ts_map={"selection_optional": ["alpha"]}))


def test_config_parameters_are_gammapy_estimator_arguments():
    """gammapy's Analysis passes ``excess_map.parameters`` to its ExcessMapEstimator as keywords."""
    ge = pytest.importorskip("gammapy.estimators")
    from gammapy.analysis import AnalysisConfig as GammapyConfig

    from gamma_ray_dist.config import AnalysisConfig

    params = {"selection_optional": ["sensitivity", "ul"], "n_sigma_sensitivity": 4,
              "apply_threshold_sensitivity": True, "gamma_min_sensitivity": 8}
    cfg = AnalysisConfig.from_dict(dict(_base_config(), excess_map={"parameters": params}))
    theirs = GammapyConfig.from_yaml(cfg.to_yaml(gammapy_compatible=True))
    est = ge.ExcessMapEstimator(**theirs.excess_map.parameters)
    assert est.n_sigma_sensitivity == 4 and est.gamma_min_sensitivity == 8
    assert list(est.selection_optional) == ["sensitivity", "ul"]


def test_pipeline_writes_the_sensitivity_map(ours, theirs, tmp_path, monkeypatch):
    ge = pytest.importorskip("gammapy.estimators")
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.pipeline.sky_maps import run_sky_maps

    params = {"selection_optional": ["sensitivity"], **BOTH_FLOORS}
    cfg = AnalysisConfig.from_dict(dict(_base_config(), excess_map={"correlation_radius": "0.1 deg",
                                                                    "parameters": params}))
    out = run_sky_maps(ours, cfg, out_dir=tmp_path)
    monkeypatch.chdir(tmp_path)
    written = ge.FluxMaps.read(out["paths"]["excess_map"])
    gp = ge.ExcessMapEstimator(correlation_radius="0.1 deg", **params).run(theirs)
    _assert_close_maps(gp.flux_sensitivity, written.flux_sensitivity, SENS_RTOL)
