"""Pipeline set-up (selection, exclusion mask, fit range, models) and the atomic output writers."""
from __future__ import annotations

import json

import numpy as np
import pytest

from gamma_ray_dist.pipeline import outputs
from gamma_ray_dist.config import AnalysisConfig
from gamma_ray_dist.errors import ConfigError
from gamma_ray_dist.pipeline.inputs import make_exclusion_mask, make_geom, open_datastore, select_obs_ids

from .test_cli import CONFIG, MODELS


def _config(hess_dr1, edit=lambda d: d) -> AnalysisConfig:
    import yaml

    data = yaml.safe_load(CONFIG.read_text())
    data["observations"]["datastore"] = str(hess_dr1)
    return AnalysisConfig.from_dict(edit(data))


def test_selection_by_ids_cone_and_time(hess_dr1):
    def ids_only(d):
        d["observations"].pop("obs_cone")
        d["observations"]["obs_ids"] = [23592, 23523, 20136]
        return d

    cfg = _config(hess_dr1, ids_only)
    store = open_datastore(cfg)
    assert select_obs_ids(cfg, store) == [20136, 23523, 23592]

    def ids_and_cone(d):
        d = ids_only(d)
        d["observations"]["obs_cone"] = {"frame": "icrs", "lon": "83.633 deg", "lat": "22.014 deg", "radius": "5 deg"}
        return d

    assert select_obs_ids(_config(hess_dr1, ids_and_cone), store) == [23523, 23592]  # 20136 is not the Crab

    def time_box(d):  # the first two Crab runs were taken on 2004-12-04
        d["observations"]["obs_time"] = {"start": "2004-12-04T00:00:00", "stop": "2004-12-05T00:00:00"}
        return d

    assert select_obs_ids(_config(hess_dr1, time_box), store) == [23523, 23526]

    def unknown_and_cone(d):  # an id absent from the data store is kept (its reduction fails, reported)
        d = ids_and_cone(d)
        d["observations"]["obs_ids"] = [23523, 99999]
        return d

    assert select_obs_ids(_config(hess_dr1, unknown_and_cone), store) == [23523, 99999]
    assert select_obs_ids(_config(hess_dr1, lambda d: time_box(unknown_and_cone(d))), store) == [23523, 99999]


def test_exclusion_from_file_equals_the_region(hess_dr1, reference_dir):
    cfg = _config(hess_dr1)
    geom = make_geom(cfg)
    from_regions = make_exclusion_mask(cfg, geom)

    def from_file(d):
        d["datasets"]["background"].pop("exclusion_regions")
        d["datasets"]["background"]["exclusion"] = str(reference_dir / "exclusion_crab_gammapy.fits.gz")
        return d

    mask = make_exclusion_mask(_config(hess_dr1, from_file), geom)
    assert from_regions.data.dtype == bool and mask.data.dtype == bool
    assert 0 < (~from_regions.data).sum() < from_regions.data.size
    # gammapy's mask (3D, same pixels) excludes exactly the pixels our region mask excludes
    np.testing.assert_array_equal(np.broadcast_to(from_regions.data, mask.data.shape), mask.data)


def test_missing_exclusion_file_is_a_config_error(hess_dr1, tmp_path):
    def missing(d):
        d["datasets"]["background"]["exclusion"] = str(tmp_path / "nope.fits")
        return d

    cfg = _config(hess_dr1, missing)
    with pytest.raises(ConfigError, match="datasets.background.exclusion"):
        make_exclusion_mask(cfg, make_geom(cfg))


def test_fit_range_mask_and_models(hess_dr1):
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.pipeline.fitting import apply_fit_range, load_models
    from gamma_ray_dist.pipeline.inputs import make_energy_axis_true

    def narrow(d):
        d["fit"]["fit_range"] = {"min": "1.5 TeV", "max": "10 TeV"}
        return d

    cfg = _config(hess_dr1, narrow)
    dataset = MapDataset.create(make_geom(cfg), energy_axis_true=make_energy_axis_true(cfg), name="stacked")
    apply_fit_range(dataset, cfg)
    # bins 1-1.78 (not fully inside), 1.78-3.16, 3.16-5.62, 5.62-10 (top edge 10 within rounding)
    assert dataset.mask_fit.data[:, 0, 0].tolist() == [False, True, True, True]
    models = load_models(cfg, "stacked", MODELS)
    assert models.names == ["crab", "stacked-bkg"]
    assert load_models(cfg, "stacked", MODELS).names == models.names
    with pytest.raises(ConfigError, match="--models"):
        load_models(cfg, "stacked", None)


def test_atomic_writes_leave_old_file_on_failure(tmp_path):
    path = tmp_path / "fit.json"
    outputs.write_json(path, {"a": 1.0, "b": float("nan"), "c": np.arange(2)})
    assert json.loads(path.read_text()) == {"a": 1.0, "b": None, "c": [0, 1]}

    def broken(tmp):
        tmp.write_text('{"half": ')
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        outputs.atomic_write(path, broken)
    assert json.loads(path.read_text())["a"] == 1.0  # the old complete file is still there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.json"]  # no temporary left behind
