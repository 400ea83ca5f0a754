"""gamma_ray_dist.config against gammapy 2.1's AnalysisConfig (the reference peer; test-only import)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import yaml
from astropy.time import Time

from gamma_ray_dist.config import AnalysisConfig
from gamma_ray_dist.errors import ConfigError

gp_analysis = pytest.importorskip("gammapy.analysis")
GPConfig = gp_analysis.AnalysisConfig
GP_CONFIG_DIR = Path(gp_analysis.__file__).resolve().parent / "config"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

pytestmark = pytest.mark.gammapy


def _assert_same(gp_value, ours, key=""):
    """Compare gammapy's JSON dump with our ``to_dict`` for every key gammapy has."""
    if isinstance(gp_value, dict):
        assert isinstance(ours, dict), key
        for k, v in gp_value.items():
            assert k in ours, f"{key}.{k} missing in ours"
            _assert_same(v, ours[k], f"{key}.{k}")
    elif isinstance(gp_value, list):
        assert len(gp_value) == len(ours), key
        for i, (a, b) in enumerate(zip(gp_value, ours)):
            _assert_same(a, b, f"{key}[{i}]")
    elif isinstance(gp_value, str) and gp_value != ours:
        if ".obs_time." in key:
            assert Time(gp_value) == Time(ours), key
            return
        a, b = u.Quantity(gp_value), u.Quantity(ours)
        assert a.unit.is_equivalent(b.unit), key
        assert np.isclose(a.to_value(b.unit), b.value, rtol=1e-12, atol=0), key
    else:
        assert gp_value == ours, key


def _gp_dump(cfg) -> dict:
    data = json.loads(cfg.model_dump_json())
    data.pop("metadata", None)
    return data


def _compare(gp_cfg, ours: AnalysisConfig) -> None:
    gp = _gp_dump(gp_cfg)
    mine = ours.to_dict()
    for section in ("excess_map", "light_curve"):  # accepted but unused by us
        gp.pop(section)
    _assert_same(gp, mine)


def test_gammapy_defaults_with_3d_settings():
    gp = GPConfig()
    gp.datasets.type = "3d"
    gp.datasets.geom.wcs.skydir = {"frame": "icrs", "lon": "83.633 deg", "lat": "22.014 deg"}
    text = gp.to_yaml()  # includes gammapy's metadata, excess_map, light_curve sections
    ours = AnalysisConfig.from_yaml(text)
    _compare(gp, ours)


def test_gammapy_example_3d_file():
    path = GP_CONFIG_DIR / "example-3d.yaml"
    ours = AnalysisConfig.read(path)
    _compare(GPConfig.read(path), ours)
    assert ours.datasets.background.parameters == {"method": "scale"}
    assert ours.observations.obs_ids == (23592, 23559)


# docs.yaml (stack: false, accepted) asks for the ring background, which is not supported
@pytest.mark.parametrize("name,key", [("example-1d.yaml", "datasets.type"), ("docs.yaml", "datasets.background.method")])
def test_gammapy_files_we_do_not_support(name, key):
    with pytest.raises(ConfigError) as info:
        AnalysisConfig.read(GP_CONFIG_DIR / name)
    assert info.value.key == key


def test_gammapy_docs_crab_3d_config():
    """The 3D Crab configuration of gammapy's high-level tutorial (analysis_1), built with gammapy."""
    gp = GPConfig()
    gp.general.log = {"level": "info"}
    gp.observations.datastore = "$GAMMAPY_DATA/hess-dl3-dr1/"
    gp.observations.obs_cone = {"frame": "icrs", "lon": "83.633 deg", "lat": "22.014 deg", "radius": "5 deg"}
    gp.datasets.type = "3d"
    gp.datasets.geom.wcs.skydir = {"lon": "83.633 deg", "lat": "22.014 deg", "frame": "icrs"}
    gp.datasets.geom.wcs.width = {"width": "2 deg", "height": "2 deg"}
    gp.datasets.geom.wcs.binsize = "0.02 deg"
    gp.datasets.geom.axes.energy.min = "1 TeV"
    gp.datasets.geom.axes.energy.max = "10 TeV"
    gp.datasets.geom.axes.energy.nbins = 4
    gp.datasets.geom.axes.energy_true.min = "0.5 TeV"
    gp.datasets.geom.axes.energy_true.max = "20 TeV"
    gp.datasets.geom.axes.energy_true.nbins = 10
    gp.datasets.background.method = "fov_background"
    gp.fit.fit_range.min = 1 * u.TeV
    gp.fit.fit_range.max = 10 * u.TeV
    gp.flux_points.energy = {"min": "1 TeV", "max": "10 TeV", "nbins": 4}
    gp.flux_points.source = "crab"
    gp.datasets.safe_mask.methods = ["offset-max"]
    gp.datasets.safe_mask.parameters = {"offset_max": "2.5 deg"}
    gp.observations.obs_time = {"start": "2004-12-01", "stop": "2005-01-01"}
    ours = AnalysisConfig.from_yaml(gp.to_yaml())
    _compare(gp, ours)
    assert ours.observations.datastore == "$GAMMAPY_DATA/hess-dl3-dr1"  # gammapy writes the Path form
    # our dump is read back by gammapy, to the same values
    _compare(GPConfig.from_yaml(ours.to_yaml(gammapy_compatible=True)), ours)


def test_gammapy_accepts_crab_example_minus_extensions():
    data = yaml.safe_load((EXAMPLES / "crab_3d.yaml").read_text())
    plain = copy.deepcopy(data)
    plain.pop("ray")
    plain["datasets"]["background"].pop("exclusion_regions")
    plain["flux_points"].pop("energy")  # explicit edges are our extension
    gp = GPConfig(**plain)
    ours = AnalysisConfig.from_dict(data)
    gp_dump = _gp_dump(gp)
    gp_dump["flux_points"].pop("energy")
    mine = ours.to_dict()
    for section in ("excess_map", "light_curve"):
        gp_dump.pop(section)
    _assert_same(gp_dump, mine)


def test_energy_edges_match_gammapy_axis():
    from gammapy.maps import MapAxis

    ours = AnalysisConfig.read(EXAMPLES / "crab_3d.yaml").datasets.geom.axes
    for axis, name in ((ours.energy, "energy"), (ours.energy_true, "energy_true")):
        ref = MapAxis.from_energy_bounds(axis.min, axis.max, axis.nbins, name=name)
        np.testing.assert_array_equal(axis.edges().to_value("TeV"), ref._nodes)  # same formula
        # gammapy's .edges re-interpolates its nodes: equal to 1 ulp
        np.testing.assert_allclose(axis.edges().to_value("TeV"), ref.edges.to_value("TeV"), rtol=1e-15)


def test_parameter_whitelists_are_gammapy_keywords():
    from gammapy.estimators import FluxPointsEstimator
    from gammapy.makers import FoVBackgroundMaker, SafeMaskMaker

    cfg = AnalysisConfig.from_dict({
        "datasets": {
            "type": "3d",
            "geom": {"wcs": {"skydir": {"frame": "icrs", "lon": "0 deg", "lat": "0 deg"}}},
            "safe_mask": {"methods": ["offset-max"], "parameters": {
                "offset_max": "2 deg", "fixed_offset": "1 deg", "aeff_percent": 10, "bias_percent": 10,
                "irfs": "DL4"}},
            "background": {"method": "fov_background", "parameters": {
                "method": "fit", "spectral_model": "pl-norm", "min_counts": 0, "min_npred_background": 0}},
        },
        "flux_points": {"parameters": {
            "selection_optional": ["ul"], "n_sigma": 1, "n_sigma_ul": 2, "n_sigma_sensitivity": 5,
            "reoptimize": False, "sum_over_energy_groups": False}},
    })
    SafeMaskMaker(methods=list(cfg.datasets.safe_mask.methods), **cfg.datasets.safe_mask.parameters)
    FoVBackgroundMaker(**cfg.datasets.background.parameters)
    FluxPointsEstimator(**cfg.flux_points.parameters)


def test_crab_models_file_reads_in_gammapy():
    from gammapy.modeling.models import Models

    models = Models.read(EXAMPLES / "crab_models.yaml")
    (crab,) = models
    assert crab.name == "crab"
    spec, spat = crab.spectral_model, crab.spatial_model
    assert type(spec).__name__ == "PowerLawSpectralModel" and type(spat).__name__ == "PointSpatialModel"
    assert spec.index.value == 2.702
    assert spec.amplitude.quantity == 4.712e-11 * u.Unit("cm-2 s-1 TeV-1")
    assert spec.reference.quantity == 1 * u.TeV and spec.reference.frozen
    assert spat.frame == "icrs"
    assert spat.lon_0.quantity == 83.63308 * u.deg and spat.lat_0.quantity == 22.0145 * u.deg
