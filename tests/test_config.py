"""gamma_ray_dist.config: parsing, defaults, round trip and every error naming its dotted key."""
from __future__ import annotations

import copy
import pickle
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import yaml

from gamma_ray_dist.config import AnalysisConfig, RayConfig
from gamma_ray_dist.distributed import ExecutionSettings
from gamma_ray_dist.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture()
def crab_dict() -> dict:
    return yaml.safe_load((EXAMPLES / "crab_3d.yaml").read_text())


def _patched(base: dict, dotted: str, value, delete: bool = False) -> dict:
    data = copy.deepcopy(base)
    *parents, last = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
    if delete:
        node.pop(last, None)
    else:
        node[last] = value
    return data


def test_crab_example_values():
    cfg = AnalysisConfig.read(EXAMPLES / "crab_3d.yaml")
    obs = cfg.observations
    assert obs.datastore == "$GAMMAPY_DATA/hess-dl3-dr1"  # expansion deferred to the DataStore
    assert obs.obs_cone.is_set and obs.obs_cone.frame == "icrs"
    assert obs.obs_cone.radius == 5 * u.deg and obs.obs_cone.lon.unit == u.deg
    sel = obs.obs_cone.to_selection()
    assert sel["type"] == "sky_circle" and sel["lat"] == 22.014 * u.deg
    ds = cfg.datasets
    assert ds.type == "3d" and ds.stack is True
    wcs = ds.geom.wcs
    assert (wcs.skydir.frame, wcs.skydir.lon, wcs.skydir.lat) == ("icrs", 83.633 * u.deg, 22.014 * u.deg)
    assert wcs.binsize == 0.02 * u.deg and wcs.binsize_irf == 0.2 * u.deg
    assert wcs.width.width == 2 * u.deg and wcs.width.height == 2 * u.deg
    assert ds.geom.selection.offset_max == 2.5 * u.deg
    assert ds.geom.axes.energy.nbins == 4 and ds.geom.axes.energy_true.nbins == 10
    assert ds.geom.axes.energy_true.min == 0.5 * u.TeV and ds.geom.axes.energy_true.max == 20 * u.TeV
    assert ds.safe_mask.methods == ("offset-max", "aeff-max")
    assert ds.safe_mask.parameters == {"offset_max": 2.5 * u.deg}
    bkg = ds.background
    assert bkg.method == "fov_background" and bkg.parameters == {"method": "fit"} and bkg.exclusion is None
    (region,) = bkg.exclusion_regions
    assert type(region).__name__ == "CircleSkyRegion"
    assert region.radius == 0.2 * u.deg
    assert np.isclose(region.center.ra.deg, 83.63) and np.isclose(region.center.dec.deg, 22.14)
    assert cfg.fit.fit_range.min == 1 * u.TeV and cfg.fit.fit_range.max == 10 * u.TeV
    fp = cfg.flux_points
    assert fp.source == "crab" and fp.parameters == {"selection_optional": None}
    assert np.array_equal(fp.energy.edges().to_value("TeV"), [1, 2, 4, 10])
    assert cfg.ray == RayConfig()
    assert ExecutionSettings.resolve(cfg.ray, environ={}).max_in_flight_for(4) == 8  # 2 x CPUs


def test_units_are_converted_to_canonical(crab_dict):
    data = _patched(crab_dict, "datasets.geom.wcs.binsize", "1.2 arcmin")
    data = _patched(data, "datasets.geom.axes.energy", {"min": "100 GeV", "max": "0.01 PeV", "nbins": 3})
    cfg = AnalysisConfig.from_dict(data)
    assert cfg.datasets.geom.wcs.binsize.unit == u.deg
    assert np.isclose(cfg.datasets.geom.wcs.binsize.value, 0.02)
    axis = cfg.datasets.geom.axes.energy
    assert axis.min.unit == u.TeV and np.isclose(axis.min.value, 0.1) and np.isclose(axis.max.value, 10)
    assert axis.edges().shape == (4,)


def test_gammapy_defaults_apply():
    cfg = AnalysisConfig.from_dict(
        {"datasets": {"type": "3d", "geom": {"wcs": {"skydir": {"frame": "galactic", "lon": "0 deg",
                                                                   "lat": "0 deg"}}}}})
    assert cfg.observations.datastore == "$GAMMAPY_DATA/hess-dl3-dr1"
    assert cfg.observations.required_irf == ("aeff", "edisp", "psf", "bkg")
    g = cfg.datasets.geom
    assert g.wcs.binsize == 0.02 * u.deg and g.wcs.width.width == 5 * u.deg
    assert (g.axes.energy.min, g.axes.energy.max, g.axes.energy.nbins) == (1 * u.TeV, 10 * u.TeV, 5)
    assert (g.axes.energy_true.min, g.axes.energy_true.nbins) == (0.5 * u.TeV, 16)
    assert g.selection.offset_max == 2.5 * u.deg
    assert cfg.datasets.safe_mask.methods == ("aeff-default",)
    assert cfg.datasets.map_selection == ("counts", "exposure", "background", "psf", "edisp")
    assert cfg.datasets.background.method is None
    assert not cfg.fit.fit_range.is_set and not cfg.flux_points.energy.is_set
    assert cfg.flux_points.parameters == {"selection_optional": "all"}
    assert cfg.ray.block_size is None and cfg.ray.merge_fan_in == 256
    assert cfg.ray.strict is False and cfg.ray.address is None


def test_round_trip(crab_dict, tmp_path):
    cfg = AnalysisConfig.from_dict(crab_dict)
    text = cfg.to_yaml()
    again = AnalysisConfig.from_yaml(text)
    assert again == cfg
    assert again.to_yaml() == text
    cfg.write(tmp_path / "a.yaml")
    assert AnalysisConfig.read(tmp_path / "a.yaml") == cfg
    with pytest.raises(FileExistsError):
        cfg.write(tmp_path / "a.yaml")
    # frozen
    with pytest.raises(AttributeError):
        cfg.datasets.stack = False  # type: ignore[misc]
    # picklable (crosses Ray process boundaries)
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_round_trip_times_and_ids(crab_dict):
    data = _patched(crab_dict, "observations.obs_time",
                    {"start": ["2004-01-01", "2005-01-01"], "stop": ["2004-06-01", "2005-06-01"]})
    data = _patched(data, "observations.obs_ids", [23523, 23526])
    cfg = AnalysisConfig.from_dict(data)
    assert len(cfg.observations.obs_time.intervals()) == 2
    assert cfg.observations.obs_ids == (23523, 23526)
    assert AnalysisConfig.from_yaml(cfg.to_yaml()) == cfg
    # unquoted YAML dates become datetime.date: accepted
    text = yaml.safe_dump(crab_dict) + ""
    cfg2 = AnalysisConfig.from_yaml(text.replace("observations:\n", "observations:\n  obs_time: {start: 2004-01-01, stop: 2004-06-01}\n", 1))
    (start, stop), = cfg2.observations.obs_time.intervals()
    assert start.isot.startswith("2004-01-01") and stop > start


def test_flux_point_edges_with_unit_strings(crab_dict):
    data = _patched(crab_dict, "flux_points.energy", {"edges": ["1 TeV", "2000 GeV", "10 TeV"]})
    cfg = AnalysisConfig.from_dict(data)
    assert np.allclose(cfg.flux_points.energy.edges().to_value("TeV"), [1, 2, 10])
    data = _patched(crab_dict, "flux_points.energy", {"min": "1 TeV", "max": "10 TeV", "nbins": 2})
    assert np.allclose(AnalysisConfig.from_dict(data).flux_points.energy.edges().value, [1, 10**0.5, 10])


def test_gammapy_compatible_dump_drops_extensions(crab_dict):
    data = _patched(crab_dict, "flux_points.energy", {"min": "1 TeV", "max": "10 TeV", "nbins": 3})
    out = AnalysisConfig.from_dict(data).to_dict(gammapy_compatible=True)
    assert "ray" not in out and "exclusion_regions" not in out["datasets"]["background"]
    assert out["flux_points"]["energy"] == {"min": "1.0 TeV", "max": "10.0 TeV", "nbins": 3}
    with pytest.raises(ConfigError, match="flux_points.energy.edges"):
        AnalysisConfig.from_dict(crab_dict).to_dict(gammapy_compatible=True)


def test_replace_ray(crab_dict):
    cfg = AnalysisConfig.from_dict(crab_dict)
    new = cfg.replace_ray(address="auto", num_cpus=4, strict=True, max_in_flight=None)
    assert (new.ray.address, new.ray.num_cpus, new.ray.strict, new.ray.max_in_flight) == ("auto", 4, True, None)
    assert new.datasets == cfg.datasets and cfg.ray.address is None
    with pytest.raises(ConfigError, match="ray.num_cpus"):
        cfg.replace_ray(num_cpus=0)


ERROR_CASES = [
    # (dotted key to change, value or DELETE, expected key in the error, substring of the reason)
    ("datasets.type", "1d", "datasets.type", "1d"),
    ("datasets.type", "DELETE", "datasets.type", "missing"),
    ("datasets.stack", "yes", "datasets.stack", "true or false"),
    ("datasets.geom.wcs.binsize", "0.02 TeV", "datasets.geom.wcs.binsize", "not an angle unit"),
    ("datasets.geom.wcs.binsize", 0.02, "datasets.geom.wcs.binsize", "no unit"),
    ("datasets.geom.wcs.binsize", "two deg", "datasets.geom.wcs.binsize", "cannot parse"),
    ("datasets.geom.wcs.binsize", None, "datasets.geom.wcs.binsize", "missing"),
    ("datasets.geom.wcs.binsize", "-0.02 deg", "datasets.geom.wcs.binsize", "> 0"),
    ("datasets.geom.wcs.binsze", "0.02 deg", "datasets.geom.wcs.binsze", "did you mean 'binsize'"),
    ("datasets.geom.wcs.width.width", "2 TeV", "datasets.geom.wcs.width.width", "angle"),
    ("datasets.geom.wcs.skydir", {"frame": "icrs", "lat": "22 deg"}, "datasets.geom.wcs.skydir.lon", "missing"),
    ("datasets.geom.wcs.skydir.frame", "fk5", "datasets.geom.wcs.skydir.frame", "not one of"),
    ("datasets.geom.wcs.skydir.lat", "95 deg", "datasets.geom.wcs.skydir.lat", "outside"),
    ("datasets.geom.axes.energy.min", "1 deg", "datasets.geom.axes.energy.min", "energy"),
    ("datasets.geom.axes.energy.max", "0.5 TeV", "datasets.geom.axes.energy.max", "> min"),
    ("datasets.geom.axes.energy.nbins", 0, "datasets.geom.axes.energy.nbins", ">= 1"),
    ("datasets.geom.axes.energy.nbins", "4", "datasets.geom.axes.energy.nbins", "integer"),
    ("datasets.geom.axes.energy", {"min": "1 TeV", "max": "10 TeV"}, "datasets.geom.axes.energy.nbins", "missing"),
    ("datasets.geom.selection.offset_max", "2.5", "datasets.geom.selection.offset_max", "no unit"),
    ("datasets.map_selection", ["counts", "exposures"], "datasets.map_selection[1]", "not one of"),
    ("datasets.safe_mask.methods", ["aeff-maxx"], "datasets.safe_mask.methods[0]", "not one of"),
    ("datasets.safe_mask.parameters", {"offset_max": "2 TeV"}, "datasets.safe_mask.parameters.offset_max", "angle"),
    ("datasets.safe_mask.parameters", {"ofset_max": "2 deg"}, "datasets.safe_mask.parameters.ofset_max",
     "did you mean 'offset_max'"),
    ("datasets.background.method", "ring", "datasets.background.method", "not supported"),
    ("datasets.background.method", "fov", "datasets.background.method", "not one of"),
    ("datasets.background.parameters", {"method": "fitt"}, "datasets.background.parameters.method", "not one of"),
    ("datasets.background.exclusion_regions", ["circle(83.63,22.14,0.2)"],
     "datasets.background.exclusion_regions[0]", "frame"),
    ("datasets.background.exclusion_regions", ["icrs;blob(1,2"], "datasets.background.exclusion_regions[0]", ""),
    ("datasets.background.exclusion_regions", "icrs;circle(1,2,3)", "datasets.background.exclusion_regions",
     "list of strings"),
    ("datasets.on_region", {"frame": "icrs", "lon": "1 deg"}, "datasets.on_region.lat", "missing"),
    ("observations.datastore", None, "observations.datastore", "missing"),
    ("observations.obs_ids", [23523, "x"], "observations.obs_ids[1]", "integer"),
    ("observations.obs_file", "ids.txt", "observations.obs_file", "both"),  # with obs_ids set below
    ("observations.obs_cone", {"frame": "icrs", "lon": "83 deg", "lat": "22 deg"}, "observations.obs_cone.radius",
     "missing"),
    ("observations.obs_cone.radius", "5 TeV", "observations.obs_cone.radius", "angle"),
    ("observations.obs_time", {"start": "2004-01-01"}, "observations.obs_time.stop", "missing"),
    ("observations.obs_time", {"start": "2004-06-01", "stop": "2004-01-01"}, "observations.obs_time.stop", "after"),
    ("observations.obs_time", {"start": "not a time", "stop": "2004-01-01"}, "observations.obs_time.start", "time"),
    ("observations.required_irf", ["aeff", "psff"], "observations.required_irf[1]", "not one of"),
    ("fit.fit_range", {"min": "1 TeV"}, "fit.fit_range.max", "missing"),
    ("fit.fit_range", {"min": "10 TeV", "max": "1 TeV"}, "fit.fit_range.max", "> min"),
    ("fit.fit_rnge", {}, "fit.fit_rnge", "did you mean 'fit_range'"),
    ("flux_points.energy", {"edges": [1, 2], "min": "1 TeV"}, "flux_points.energy.min", "not both"),
    ("flux_points.energy", {"edges": [1, 4, 2]}, "flux_points.energy.edges", "increasing"),
    ("flux_points.energy", {"edges": [1]}, "flux_points.energy.edges", "at least 2"),
    ("flux_points.energy", {"edges": [1, 2], "unit": "deg"}, "flux_points.energy.edges[0]", "energy"),
    ("flux_points.energy", {"edges": [1, 2], "unit": "foo"}, "flux_points.energy.unit", "unknown unit"),
    ("flux_points.energy", {"unit": "TeV"}, "flux_points.energy.unit", "edges"),
    ("flux_points.parameters", {"selection_optional": ["ul", "foo"]}, "flux_points.parameters.selection_optional[1]",
     "not one of"),
    ("flux_points.parameters", {"n_sigma_ull": 2}, "flux_points.parameters.n_sigma_ull", "did you mean 'n_sigma_ul'"),
    ("ray.merge_fan_in", 1, "ray.merge_fan_in", ">= 2"),
    ("ray.block_size", 0, "ray.block_size", ">= 1"),
    ("ray.max_inflight", 8, "ray.max_inflight", "did you mean 'max_in_flight'"),
    ("ray.strict", "yes", "ray.strict", "true or false"),
    ("ray.num_cpus", 0, "ray.num_cpus", ">= 1"),
    ("general.steps", ["fit", "flux"], "general.steps[1]", "not one of"),
    ("general.n_jobs", 1.5, "general.n_jobs", "integer"),
    ("fits", {}, "fits", "did you mean 'fit'"),
    ("datasets", ["3d"], "datasets", "mapping"),
]


@pytest.mark.parametrize("dotted,value,key,reason", ERROR_CASES, ids=[f"{c[0]}={c[1]!r}" for c in ERROR_CASES])
def test_errors_name_the_key(crab_dict, dotted, value, key, reason):
    if dotted == "observations.obs_file":
        crab_dict["observations"]["obs_ids"] = [23523]
    data = _patched(crab_dict, dotted, value, delete=value == "DELETE")
    with pytest.raises(ConfigError) as info:
        AnalysisConfig.from_dict(data)
    err = info.value
    assert err.key == key, str(err)
    assert reason in err.reason, str(err)
    assert f"'{key}'" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert (again.key, again.reason) == (err.key, err.reason)


def test_document_level_errors(tmp_path):
    with pytest.raises(ConfigError, match="<yaml>"):
        AnalysisConfig.from_yaml("datasets: [unclosed")
    with pytest.raises(ConfigError, match="<root>"):
        AnalysisConfig.from_yaml("- a\n- b\n")
    with pytest.raises(ConfigError, match="datasets.type"):
        AnalysisConfig.from_yaml("")
    with pytest.raises(ConfigError, match="<file>"):
        AnalysisConfig.read(tmp_path / "missing.yaml")


def test_gammapy_metadata_section_is_ignored(crab_dict):
    crab_dict["metadata"] = {"creator": "Gammapy 2.1", "date": "2025-01-01", "origin": None}
    crab_dict["excess_map"] = {"correlation_radius": "0.1 deg", "parameters": {}}
    cfg = AnalysisConfig.from_dict(crab_dict)
    assert "metadata" not in cfg.to_dict() and cfg.excess_map.correlation_radius.to_value("deg") == 0.1
