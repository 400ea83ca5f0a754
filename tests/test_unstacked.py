"""``datasets.stack: false``: one dataset per observation, written as gammapy writes ``Datasets``, fitted jointly.

On a small simulated store (3 observations): the pipeline writes ``datasets/datasets.yaml`` plus one
FITS file per observation; gammapy's ``Datasets.read`` and ours read them to the same arrays, and each
reads what the other writes; serial and Ray give identical per-observation arrays; stacking the
per-observation datasets onto the analysis geometry gives the stacked run's dataset (exact counts,
float32 rounding elsewhere). Errors: a file missing from the index, an unknown type.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from gamma_ray_dist.config import AnalysisConfig
from gamma_ray_dist.datasets import Datasets, MapDataset
from gamma_ray_dist.distributed import RayBackend, SerialBackend
from gamma_ray_dist.errors import DatasetFileError
from gamma_ray_dist.pipeline.demo import prepare_demo
from gamma_ray_dist.pipeline.run import PipelineOptions, run_pipeline

N_OBS = 3
QUIET = dict(progress=False)
MAPS = ("counts", "background", "exposure", "mask_safe", "mask_fit")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("unstacked")
    config, models, _ = prepare_demo(root / "demo", n_obs=N_OBS, seed=3)
    data = yaml.safe_load((root / "demo" / "demo.yaml").read_text())
    data["datasets"]["stack"] = False
    return root, AnalysisConfig.from_dict(data), config, models


@pytest.fixture(scope="module")
def serial_run(demo):
    root, unstacked, _, models = demo
    with SerialBackend(**QUIET) as backend:
        return run_pipeline(unstacked, PipelineOptions(models=models, out_dir=root / "serial", report=False),
                            backend)


@pytest.fixture(scope="module")
def stacked_run(demo):
    root, _, stacked, models = demo
    with SerialBackend(**QUIET) as backend:
        return run_pipeline(stacked, PipelineOptions(models=models, out_dir=root / "stacked", report=False),
                            backend)


def _arrays(dataset) -> dict:
    out = {key: np.asarray(getattr(dataset, key).data) for key in MAPS if getattr(dataset, key) is not None}
    out["psf"] = np.asarray(dataset.psf.psf_map.data)
    out["psf_exposure"] = np.asarray(dataset.psf.exposure_map.data)
    out["edisp"] = np.asarray(dataset.edisp.edisp_map.data)
    out["gti"] = np.concatenate([dataset.gti.time_start.mjd, dataset.gti.time_stop.mjd])
    return out


def _assert_same_arrays(a, b, exact: bool = True) -> None:
    xa, xb = _arrays(a), _arrays(b)
    assert xa.keys() == xb.keys()
    for key in xa:
        assert xa[key].shape == xb[key].shape, key
        if exact:
            assert np.array_equal(xa[key], xb[key]), key


# ---------------------------------------------------------------------------------------------
# The pipeline's outputs
# ---------------------------------------------------------------------------------------------
def test_outputs_are_an_index_and_one_file_per_observation_and_a_joint_fit(serial_run):
    out = serial_run.out_dir
    assert sorted(p.name for p in (out / "datasets").iterdir()) == [
        "datasets.yaml", "obs-1.fits.gz", "obs-2.fits.gz", "obs-3.fits.gz"]
    assert not (out / "stacked.fits.gz").exists()
    index = yaml.safe_load((out / "datasets" / "datasets.yaml").read_text())
    assert index["datasets"][0] == {"name": "obs-1", "type": "MapDataset", "filename": "obs-1.fits.gz"}
    fit = json.loads((out / "fit.json").read_text())
    assert fit["success"]
    models = {p["model"] for p in fit["parameters"]}
    assert models == {"crab", "obs-1-bkg", "obs-2-bkg", "obs-3-bkg"}  # one FoV background model per dataset
    assert (out / "models.yaml").exists() and (out / "flux_points.ecsv").exists()
    reduction = json.loads((out / "reduction.json").read_text())
    assert reduction["n_ok"] == N_OBS and all(o["counts"] > 0 for o in reduction["observations"])
    assert serial_run.datasets.names == ["obs-1", "obs-2", "obs-3"]


def test_ray_writes_identical_datasets_and_fits_the_same(demo, serial_run, ray_session):
    root, unstacked, _, models = demo
    with RayBackend(**QUIET, block_size=1) as backend:
        ray_run = run_pipeline(unstacked, PipelineOptions(models=models, out_dir=root / "ray", report=False),
                               backend)
    assert ray_run.datasets.names == serial_run.datasets.names
    for a, b in zip(ray_run.datasets, serial_run.datasets):
        _assert_same_arrays(a, b)
    assert ray_run.fit["total_stat"] == serial_run.fit["total_stat"]
    assert ray_run.fit["parameters"] == serial_run.fit["parameters"]


def test_stack_reduce_onto_the_analysis_geometry_is_the_stacked_run(serial_run, stacked_run):
    per_obs = Datasets.read(serial_run.out_dir / "datasets" / "datasets.yaml")
    reference = MapDataset.from_geoms(**stacked_run.dataset.geoms, name="empty")
    stacked = Datasets([reference] + list(per_obs)).stack_reduce(name="stacked")
    expected = stacked_run.dataset
    assert np.array_equal(stacked.counts.data, expected.counts.data)  # exact
    assert np.array_equal(stacked.mask_safe.data, expected.mask_safe.data)
    # float32 per dataset, summed again in float32: rounding only
    np.testing.assert_allclose(stacked.background.data, expected.background.data, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(stacked.exposure.data, expected.exposure.data, rtol=1e-5)
    np.testing.assert_allclose(stacked.psf.psf_map.data, expected.psf.psf_map.data, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(stacked.edisp.edisp_map.data, expected.edisp.edisp_map.data, rtol=1e-4, atol=1e-6)
    assert stacked.gti.time_sum.to_value("s") == pytest.approx(expected.gti.time_sum.to_value("s"), rel=1e-12)
    # gammapy's semantics: without a reference first, the first dataset's geometry
    assert per_obs.stack_reduce().counts.geom == per_obs[0].counts.geom


# ---------------------------------------------------------------------------------------------
# Files both ways with gammapy
# ---------------------------------------------------------------------------------------------
def test_gammapy_reads_our_datasets_and_we_read_gammapys(serial_run, tmp_path):
    gp = pytest.importorskip("gammapy.datasets")
    import warnings

    index = serial_run.out_dir / "datasets" / "datasets.yaml"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # our checksum line verifies in gammapy
        theirs = gp.Datasets.read(index)
    ours = Datasets.read(index)
    assert theirs.names == ours.names
    for a, b in zip(theirs, ours):
        for key in ("counts", "background", "exposure", "mask_safe"):
            assert np.array_equal(getattr(a, key).data, getattr(b, key).data), key
        assert a.counts.geom.data_shape == b.counts.geom.data_shape
        np.testing.assert_allclose(a.counts.geom.center_skydir.ra.deg, b.counts.geom.center_skydir.ra.deg, rtol=1e-12)
        assert np.array_equal(a.psf.psf_map.data, b.psf.psf_map.data)
        assert np.array_equal(a.edisp.edisp_map.data, b.edisp.edisp_map.data)
    # gammapy writes (its names: <name>.fits), we read; and the info tables agree
    theirs.write(tmp_path / "gp" / "datasets.yaml")
    back = Datasets.read(tmp_path / "gp" / "datasets.yaml")
    assert sorted(p.name for p in (tmp_path / "gp").iterdir()) == [
        "datasets.yaml", "obs-1.fits", "obs-2.fits", "obs-3.fits"]
    for a, b in zip(back, ours):
        _assert_same_arrays(a, b)
    for cumulative in (False, True):
        t_gp, t_ours = theirs.info_table(cumulative=cumulative), ours.info_table(cumulative=cumulative)
        assert t_ours.colnames == t_gp.colnames
        assert list(t_ours["name"]) == list(t_gp["name"])
        assert list(t_ours["counts"]) == list(t_gp["counts"])
        assert list(t_ours["n_bins"]) == list(t_gp["n_bins"])
        np.testing.assert_allclose(t_ours["background"], t_gp["background"], rtol=1e-6)
        np.testing.assert_allclose(t_ours["excess"], t_gp["excess"], rtol=1e-5)
        np.testing.assert_allclose(t_ours["sqrt_ts"], t_gp["sqrt_ts"], rtol=1e-5)
        for key in ("livetime", "ontime", "counts_rate"):
            assert t_ours[key].unit == t_gp[key].unit, key
            np.testing.assert_allclose(t_ours[key].quantity.value, t_gp[key].quantity.value, rtol=1e-9)
    assert list(ours.info_table(cumulative=True)["counts"]) == list(np.cumsum(ours.info_table()["counts"]))


def test_our_write_and_read_round_trip_with_models(serial_run, tmp_path):
    ours = Datasets.read(serial_run.out_dir / "datasets" / "datasets.yaml",
                         filename_models=serial_run.out_dir / "models.yaml")
    assert "obs-2-bkg" in ours.models.names and ours[1].models.names == ["crab", "obs-2-bkg"]
    ours.write(tmp_path / "again.yaml", filename_models=tmp_path / "models.yaml", overwrite=True)
    assert (tmp_path / "obs-1.fits").exists() and (tmp_path / "models.yaml").exists()
    again = Datasets.read(tmp_path / "again.yaml", filename_models=tmp_path / "models.yaml")
    for a, b in zip(again, ours):
        _assert_same_arrays(a, b)
    assert again.stat_sum() == pytest.approx(ours.stat_sum(), rel=1e-12)
    with pytest.raises(DatasetFileError, match="exists already"):
        ours.write(tmp_path / "again.yaml")


def test_missing_dataset_file_and_unknown_type_are_clear_errors(serial_run, tmp_path):
    index = serial_run.out_dir / "datasets" / "datasets.yaml"
    broken = tmp_path / "datasets.yaml"
    data = yaml.safe_load(index.read_text())
    data.pop("checksum")
    for entry in data["datasets"]:  # absolute: read as written
        entry["filename"] = str(index.parent / entry["filename"])
    data["datasets"][1]["filename"] = "obs-2-gone.fits.gz"  # relative to the index: not there
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(DatasetFileError) as info:
        Datasets.read(broken)
    message = str(info.value)
    assert "obs-2-gone.fits.gz" in message and "'obs-2'" in message and "\n" not in message
    assert info.value.filename == str(tmp_path / "obs-2-gone.fits.gz")
    data["datasets"][1]["filename"] = str(index.parent / "obs-2.fits.gz")
    broken.write_text(yaml.safe_dump(data))
    assert Datasets.read(broken).names == ["obs-1", "obs-2", "obs-3"]
    data["datasets"][0]["type"] = "SpectrumDatasetOnOff"
    broken.write_text(yaml.safe_dump(data))
    with pytest.raises(DatasetFileError, match="unknown dataset type 'SpectrumDatasetOnOff'"):
        Datasets.read(broken)
    with pytest.raises(DatasetFileError, match="not a datasets index"):
        (tmp_path / "x.yaml").write_text("a: 1\n")
        Datasets.read(tmp_path / "x.yaml")


def test_per_observation_dataset_is_the_cutout_of_its_observation(serial_run):
    """The dataset covers the part of the analysis geometry its cutout (2 x offset_max) overlaps."""
    stacked_geom_shape = serial_run.datasets[0].counts.geom.data_shape
    for dataset in serial_run.datasets:
        assert dataset.counts.geom.data_shape == stacked_geom_shape  # a 2 deg map inside a 5 deg cutout
        assert dataset.meta_table is None or "OBS_ID" in dataset.meta_table.colnames
        assert dataset.gti is not None and len(dataset.gti.table) == 1


# ---------------------------------------------------------------------------------------------
# Grouping by time intervals (light curves), and the grouped reduction on real accumulators
# ---------------------------------------------------------------------------------------------
def _obs_table(demo):
    from gamma_ray_dist.pipeline.inputs import open_datastore

    return open_datastore(demo[1]).obs_table


def test_time_intervals_group_observations_as_gammapys_select_time(demo):
    from astropy import units as u

    from gamma_ray_dist.data import group_by_time_intervals

    table = _obs_table(demo)
    t0, t1 = table.time_start, table.time_stop
    # interval 0 holds obs 1 and 2, interval 1 holds obs 3 (edges exactly on the observation times)
    intervals = [(t0[0], t1[1]), (t0[2], t1[2] + 1 * u.min)]
    grouping = group_by_time_intervals(table, intervals)
    assert grouping.groups == {1: 0, 2: 0, 3: 1} and grouping.members == [[1, 2], [3]]
    assert grouping.empty == grouping.outside == grouping.straddling == []

    # an interval with no observation: an error naming it, or an explicit empty entry
    late = (t1[2] + 1 * u.h, t1[2] + 2 * u.h)
    with pytest.raises(ValueError, match="time interval 2 .* contains no observation"):
        group_by_time_intervals(table, intervals + [late])
    assert group_by_time_intervals(table, intervals + [late], allow_empty=True).empty == [2]

    # obs 2 crosses the edge between two intervals: an error naming it, unless the caller chose a rule
    split = t0[1] + 5 * u.min
    cut = [(t0[0], split), (split, t1[2])]
    with pytest.raises(ValueError, match="observation 2 .* straddles time interval 0"):
        group_by_time_intervals(table, cut)
    dropped = group_by_time_intervals(table, cut, straddle="drop")
    assert dropped.groups == {1: 0, 3: 1} and dropped.straddling == [2]
    assert group_by_time_intervals(table, cut, straddle="start").groups == {1: 0, 2: 0, 3: 1}
    # observations in no interval are not grouped; overlapping intervals are refused
    assert group_by_time_intervals(table, intervals[:1]).outside == [3]
    with pytest.raises(ValueError, match="overlap"):
        group_by_time_intervals(table, [(t0[0], t1[1]), (t0[1], t1[2])])


def test_a_time_interval_group_is_the_stacked_reduction_of_its_observations(demo):
    from gamma_ray_dist.data import group_by_time_intervals
    from gamma_ray_dist.pipeline import group_dataset, reduce_groups
    from gamma_ray_dist.pipeline.run import reduce_stacked

    table = _obs_table(demo)
    grouping = group_by_time_intervals(table, [(table.time_start[0], table.time_stop[1]),
                                               (table.time_start[2], table.time_stop[2])])
    config = demo[1]
    backend = SerialBackend(**QUIET, block_size=1)  # two blocks in the first group: a merge
    result = reduce_groups(config, [1, 2, 3], backend, grouping.groups)
    assert list(result.state) == [0, 1]
    alone, _ = reduce_stacked(config, [1, 2], backend)
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    grouped = SummaryAccumulator.from_state(result.state[0]).state()
    for key, value in alone["buffers"].items():
        assert (value is None and grouped["buffers"][key] is None) or np.array_equal(value, grouped["buffers"][key]), key
    dataset = group_dataset(result.state[1], "interval-1")
    assert dataset.name == "interval-1" and dataset.counts.data.sum() > 0
    with pytest.raises(ValueError, match="'interval-9'.* no dataset"):
        group_dataset(None, "interval-9")


def test_command_line_runs_an_unstacked_analysis(demo, tmp_path, capsys):
    from gamma_ray_dist.cli import main

    root, unstacked, _, models = demo
    path = tmp_path / "unstacked.yaml"
    unstacked.write(path)
    assert main(["run", str(path), "--models", str(models), "--out", str(tmp_path / "out"), "--serial",
                 "--no-progress", "--no-report"]) == 0
    out = capsys.readouterr().out
    assert f"reduced {N_OBS}/{N_OBS} observations; counts " in out and f"in {N_OBS} datasets" in out
    assert "obs-2-bkg" in out
    assert (tmp_path / "out" / "datasets" / "datasets.yaml").exists()


# ---------------------------------------------------------------------------------------------
# H.E.S.S. DR1: the per-observation datasets against gammapy's unstacked reduction
# ---------------------------------------------------------------------------------------------
HESS_IDS = [23523, 23526]


@pytest.mark.slow
def test_per_observation_datasets_match_gammapys_unstacked_reduction(hess_dr1, tmp_path):
    """gammapy's ``Analysis`` with ``stack: false`` (its ``DatasetsMaker(stack_datasets=False)``, trim
    cutouts of width 2 x offset_max) against ours, on two Crab runs with the seed settings.

    gammapy keeps counts outside the safe mask and the FoV norm in a model; ours hold what stacking
    takes (gammapy's ``to_masked``): counts exact, exposure and IRF maps rtol 1e-4 (float32 maps),
    background (times the fitted FoV norm) rtol 1e-3,
    the same safe mask, cutout geometry and GTI.
    """
    gdata = pytest.importorskip("gammapy.data")
    from astropy import units as u
    from astropy.coordinates import SkyCoord
    from gammapy import datasets as gds, makers as gmk, maps as gmaps
    from regions import CircleSkyRegion

    from gamma_ray_dist.pipeline.unstacked import DatasetFilesWriter, reduce_per_observation

    from .test_cli import CONFIG

    text = CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(hess_dr1)).replace("stack: true",
                                                                                         "stack: false")
    config = AnalysisConfig.from_yaml(text)
    writer = DatasetFilesWriter(tmp_path / "datasets")
    result = reduce_per_observation(config, HESS_IDS, SerialBackend(**QUIET), on_group=writer)
    index = writer.write_index(result.state)
    ours = Datasets.read(index)

    centre = SkyCoord(83.633, 22.014, unit="deg")
    geom = gmaps.WcsGeom.create(skydir=centre, binsz=0.02, width=(2, 2), frame="icrs", proj="CAR",
                                axes=[gmaps.MapAxis.from_energy_bounds(1, 10, 4, unit="TeV")])
    etrue = gmaps.MapAxis.from_energy_bounds(0.5, 20, 10, unit="TeV", name="energy_true")
    reference = gds.MapDataset.create(geom, energy_axis_true=etrue, binsz_irf=0.2 * u.deg, name="stacked")
    exclusion = ~geom.to_image().region_mask([CircleSkyRegion(SkyCoord(83.63, 22.14, unit="deg"), 0.2 * u.deg)])
    makers = [gmk.MapDatasetMaker(selection=["counts", "exposure", "background", "psf", "edisp"]),
              gmk.SafeMaskMaker(methods=["offset-max", "aeff-max"], offset_max=2.5 * u.deg),
              gmk.FoVBackgroundMaker(method="fit", exclusion_mask=exclusion)]
    observations = gdata.DataStore.from_dir(hess_dr1).get_observations(HESS_IDS)
    theirs = gmk.DatasetsMaker(makers, stack_datasets=False, cutout_mode="trim",
                               cutout_width=5 * u.deg).run(reference, observations)

    assert ours.names == [f"obs-{i}" for i in HESS_IDS]
    for mine, gp in zip(ours, theirs):
        assert int(gp.meta_table["OBS_ID"][0]) == int(mine.meta_table["OBS_ID"][0])
        assert mine.counts.geom.data_shape == gp.counts.geom.data_shape
        assert np.allclose(mine.counts.geom.wcs.wcs.crval, gp.counts.geom.wcs.wcs.crval)
        assert np.allclose(mine.counts.geom.wcs.wcs.crpix, gp.counts.geom.wcs.wcs.crpix)
        mask = gp.mask_safe.data
        assert np.array_equal(mine.mask_safe.data, mask)
        assert np.array_equal(mine.counts.data, gp.counts.data * mask)
        # the FoV norms come from two fits (iminuit tolerance): 1.1e-4 measured, 1e-3 as the stacked tests
        np.testing.assert_allclose(mine.background.data, gp.npred_background().data * mask, rtol=1e-3, atol=1e-9)
        image = mask.any(axis=0)
        np.testing.assert_allclose(mine.exposure.quantity.to_value("m2 s"),
                                   gp.exposure.quantity.to_value("m2 s") * image, rtol=1e-4, atol=1e-3)
        assert mine.gti.time_sum.to_value("s") == pytest.approx(gp.gti.time_sum.to_value("s"), rel=1e-9)
        # gammapy's stacking of each gives the same numbers as our masked dataset
        gp_masked = gp.to_masked()
        np.testing.assert_allclose(mine.psf.psf_map.data, gp_masked.psf.psf_map.data, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(mine.edisp.edisp_map.data, gp_masked.edisp.edisp_map.data, rtol=1e-4, atol=1e-7)

    # the joint fit of the written files: ours vs gammapy's on the same files and start models
    from gammapy.datasets import Datasets as GPDatasets
    from gammapy.modeling import Fit as GPFit
    from gammapy.modeling.models import FoVBackgroundModel as GPFoV, Models as GPModels

    from gamma_ray_dist.pipeline.fitting import add_fov_background_models, apply_fit_range, fit_dataset, load_models

    from .test_cli import MODELS

    models = add_fov_background_models(load_models(config, None, MODELS), ours.names)
    for d in ours:
        apply_fit_range(d, config)
    ours.models = models
    mine = fit_dataset(ours)
    gp_sets = GPDatasets.read(index)
    for d in gp_sets:
        d.mask_fit = d.counts.geom.energy_mask(1 * u.TeV, 10 * u.TeV * (1 + 1e-9))
    gp_models = GPModels.read(MODELS)
    gp_models.extend([GPFoV(dataset_name=name) for name in gp_sets.names])
    gp_sets.models = gp_models
    gp_fit = GPFit().run(gp_sets)
    assert mine.success and gp_fit.success
    assert mine.total_stat == pytest.approx(gp_fit.total_stat, rel=1e-7)
    for par in gp_sets.models.parameters.free_parameters:
        name = next(n for p, n in zip(gp_sets.models.parameters, gp_sets.models.parameters_unique_names) if p is par)
        assert ours.models.parameters[ours.models.parameters_unique_names.index(name)].value == pytest.approx(
            par.value, rel=1e-3, abs=1e-6), name


def test_a_failed_observation_has_no_dataset_and_the_others_are_written(demo, tmp_path):
    from gamma_ray_dist.pipeline.tasks import reduce_task
    from gamma_ray_dist.pipeline.unstacked import DatasetFilesWriter, reduce_per_observation

    from .faults import FaultyTask

    writer = DatasetFilesWriter(tmp_path / "datasets")
    result = reduce_per_observation(demo[1], [1, 2, 3], SerialBackend(**QUIET), task_fn=FaultyTask(
        reduce_task, fail=frozenset({2})), on_group=writer)
    assert result.state[2] is None and result.report.failures[0].obs_id == 2
    index = writer.write_index(result.state)
    assert Datasets.read(index).names == ["obs-1", "obs-3"]
    assert sorted(writer.summaries) == [1, 3]
    assert not (tmp_path / "datasets" / "obs-2.fits.gz").exists()
