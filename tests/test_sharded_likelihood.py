"""The joint likelihood sharded over Ray actors equals the serial joint fit.

The serial reference is our own `Datasets` + `Fit` in one process, the object the sharded fit must
reproduce (gammapy's joint fit of the same files is the peer of the serial fit, tested elsewhere).
The statistic is summed in dataset order on the head, so totals, parameter values and errors are
expected bit-identical; the assertions allow 1e-9 relative on the total and 1e-6 on values/errors
(the brief's tolerance), and the bit-identity is asserted on its own.
"""
from __future__ import annotations

import numpy as np
import pytest

from gamma_ray_dist.distributed.likelihood import (
    DatasetEntry, FitShard, ShardLayout, check_entries, choose_fit_mode, joint_datasets, read_datasets,
    read_datasets_index, shard_bounds,
)
from gamma_ray_dist.distributed.likelihood import _unique_names
from gamma_ray_dist.errors import DatasetFileError, DataStoreError
from gamma_ray_dist.modeling import Fit
from gamma_ray_dist.modeling.models import Models

from .joint_data import joint_models, write_observation_datasets

N_DATASETS = 4


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    return write_observation_datasets(tmp_path_factory.mktemp("joint") / "datasets", N_DATASETS, seed=3)


@pytest.fixture(scope="module")
def entries(index):
    return read_datasets_index(index)


def _models(entries, **kwargs):
    models = joint_models([e.name for e in entries], **kwargs)
    models["crab"].spatial_model.lon_0.frozen = True  # fewer evaluations: a quick default test
    models["crab"].spatial_model.lat_0.frozen = True
    return models


def _fit_summary(datasets):
    result = Fit().run(datasets)
    pars = datasets.models.parameters
    return {"success": result.success, "nfev": result.nfev, "stat": result.total_stat,
            "values": np.array([p.value for p in pars]), "errors": np.array([p.error for p in pars]),
            "names": datasets.models.parameters_unique_names}


def _assert_same_fit(got, ref):
    assert got["success"] and ref["success"]
    assert got["names"] == ref["names"]
    assert got["stat"] == pytest.approx(ref["stat"], rel=1e-9)
    np.testing.assert_allclose(got["values"], ref["values"], rtol=1e-6, atol=0)
    np.testing.assert_allclose(got["errors"], ref["errors"], rtol=1e-6, atol=0)
    # the sum in dataset order makes the sharded statistic the serial float: same MIGRAD path
    assert got["nfev"] == ref["nfev"]
    assert got["stat"] == ref["stat"]
    assert np.array_equal(got["values"], ref["values"]) and np.array_equal(got["errors"], ref["errors"])


def test_index_entries_resolve_relative_to_the_index(index, entries):
    assert [e.name for e in entries] == [f"obs-{i}" for i in range(1, N_DATASETS + 1)]
    assert all(e.path.startswith(str(index.parent)) for e in entries)
    check_entries(entries)


def test_missing_file_is_one_line_naming_it(index, tmp_path):
    bad = tmp_path / "datasets.yaml"
    text = index.read_text().replace("obs-2.fits.gz", "obs-missing.fits.gz")
    bad.write_text(text.replace("filename: obs-", f"filename: {index.parent}/obs-"))
    entries = read_datasets_index(bad)
    with pytest.raises(DataStoreError) as info:
        joint_datasets(bad, models=None, backend=None)
    message = str(info.value)
    assert "\n" not in message and "obs-missing.fits.gz" in message and "'obs-2'" in message
    with pytest.raises(DataStoreError, match="obs-missing.fits.gz"):
        read_datasets(entries)


def test_bad_index_files(tmp_path):
    with pytest.raises(DatasetFileError, match="cannot read the datasets index") as info:
        read_datasets_index(tmp_path / "nope.yaml")
    assert "nope.yaml" in str(info.value)
    (tmp_path / "x.yaml").write_text("datasets: [{name: a}]\n")
    with pytest.raises(DatasetFileError, match="entry 0 of the datasets index lacks type, filename"):
        read_datasets_index(tmp_path / "x.yaml")
    (tmp_path / "y.yaml").write_text("datasets: [{name: a, type: SpectrumDatasetOnOff, filename: a.fits}]\n")
    with pytest.raises(DatasetFileError, match="MapDataset only"):
        read_datasets_index(tmp_path / "y.yaml")
    with pytest.raises(DataStoreError, match="appears twice"):
        check_entries([DatasetEntry("a", str(tmp_path / "x.yaml")), DatasetEntry("a", str(tmp_path / "y.yaml"))])


def test_shard_bounds_are_contiguous_in_dataset_order():
    assert shard_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds(2, 5) == [(0, 1), (1, 2)]
    for n, k in [(1000, 2), (7, 7), (101, 4)]:
        b = shard_bounds(n, k)
        assert b[0][0] == 0 and b[-1][1] == n and all(b[i][1] == b[i + 1][0] for i in range(len(b) - 1))


def test_choose_fit_mode():
    assert choose_fit_mode(10**9, cpus=1)[0] == "serial"
    assert choose_fit_mode(1000, cpus=2)[0] == "serial"
    assert choose_fit_mode(10**9, cpus=2)[0] == "sharded"


def test_serial_backend_fits_in_process(entries):
    from gamma_ray_dist.distributed import SerialBackend

    with SerialBackend() as backend:
        datasets = joint_datasets(entries, _models(entries), backend)
    assert type(datasets).__name__ == "Datasets" and datasets.choice[0] == "serial"
    assert datasets.names == [e.name for e in entries]


def test_shards_in_process_give_the_serial_statistics(entries):
    """`FitShard` (the actor's state) without Ray: per-dataset statistics equal the serial ones."""
    serial = read_datasets(entries, _models(entries))
    head = read_datasets(entries, _models(entries))  # gives the head's parameter layout
    all_pars = list(head.parameters)
    position = {id(p): i for i, p in enumerate(all_pars)}
    shards = []
    for a, b in shard_bounds(len(entries), 3):
        shard = FitShard(entries[a:b])
        used = {}
        for d in head[a:b]:
            for m in d.models:
                used.setdefault(id(m), m)
        subset = Models(list(used.values()))
        pars = subset.parameters.unique_parameters
        layout = ShardLayout(np.array([position[id(p)] for p in pars]), tuple(_unique_names(subset)))
        shard.set_models(subset.copy(), layout)
        shards.append((shard, layout))
    # a per-dataset parameter (obs-2's background norm) reaches only the shard holding obs-2
    for datasets in (serial, head):
        datasets.models["obs-2-bkg"].spectral_model.norm.value = 1.3
        datasets.models["crab"].spectral_model.index.value = 2.4
    values = np.array([p.value for p in all_pars])
    got = np.concatenate([shard.stats(np.arange(len(lay.index)), values[lay.index]) for shard, lay in shards])
    ref = np.array([d.stat_sum() for d in serial])
    assert np.array_equal(got, ref)
    assert ref[1] != pytest.approx(read_datasets(entries[1:2], _models(entries)).stat_sum(), rel=1e-6)


@pytest.mark.usefixtures("ray_session")
def test_sharded_fit_equals_serial_fit_with_2_and_3_actors(entries):
    from gamma_ray_dist.distributed.likelihood import ShardedDatasets

    ref = _fit_summary(read_datasets(entries, _models(entries)))
    for n_shards in (2, 3):
        with ShardedDatasets.open(entries, _models(entries), n_shards=n_shards) as sharded:
            assert sharded.n_shards == n_shards
            got = _fit_summary(sharded)
            infos = sharded.info()
        _assert_same_fit(got, ref)
        # each actor read only its own slice of the files
        assert [i["n_datasets"] for i in infos] == [b - a for a, b in shard_bounds(len(entries), n_shards)]
        assert len({i["pid"] for i in infos}) == n_shards


@pytest.mark.usefixtures("ray_session")
def test_unreadable_file_names_it_before_the_fit(entries, tmp_path):
    from gamma_ray_dist.distributed.likelihood import ShardedDatasets

    broken = tmp_path / "obs-broken.fits"
    broken.write_text("not a FITS file")
    bad = list(entries[:2]) + [DatasetEntry("obs-broken", str(broken))]
    with pytest.raises(DataStoreError, match="obs-broken.fits"):
        ShardedDatasets.open(bad, _models(bad), n_shards=2)


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_sharded_fit_all_parameters_free_with_tilts(tmp_path_factory):
    """Position, spectrum, every background norm and tilt free: still the serial fit, bit for bit."""
    from gamma_ray_dist.distributed.likelihood import ShardedDatasets

    index = write_observation_datasets(tmp_path_factory.mktemp("joint6") / "d", 6, seed=11)
    entries = read_datasets_index(index)
    names = [e.name for e in entries]
    ref = _fit_summary(read_datasets(entries, joint_models(names, tilt_free=True)))
    for n_shards in (2, 3):
        with ShardedDatasets.open(entries, joint_models(names, tilt_free=True), n_shards=n_shards) as sharded:
            got = _fit_summary(sharded)
        _assert_same_fit(got, ref)


@pytest.mark.usefixtures("ray_session")
def test_joint_datasets_chooses_through_the_ray_backend(entries):
    from gamma_ray_dist.distributed import RayBackend
    from gamma_ray_dist.distributed.likelihood import SHARDED_MIN_BINS, ShardedDatasets

    serial = read_datasets(entries, _models(entries))
    backend = RayBackend().start()  # joins the session's Ray
    small = joint_datasets(entries, _models(entries), backend)
    assert not isinstance(small, ShardedDatasets) and small.choice[0] == "serial"
    assert len(entries) * 40000 < SHARDED_MIN_BINS
    with joint_datasets(entries, _models(entries), backend, mode="sharded") as sharded:
        assert isinstance(sharded, ShardedDatasets) and sharded.n_shards == backend.cpus
        assert sharded.stat_sum() == serial.stat_sum()
        sharded.models["crab"].spectral_model.index.value = 2.3
        serial.models["crab"].spectral_model.index.value = 2.3
        assert sharded.stat_sum() == serial.stat_sum()
        assert [d.stat_sum() for d in sharded] == [d.stat_sum() for d in serial]
    backend.close()  # leaves the session's Ray running (it did not start it)


def test_the_stand_ins_do_not_replace_mapdataset_as_the_reader_of_its_tag():
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.distributed.likelihood import ShardedDataset
    from gamma_ray_dist.modeling.dataset import DATASET_REGISTRY

    assert ShardedDataset.tag == "MapDataset" and DATASET_REGISTRY["MapDataset"] is MapDataset
