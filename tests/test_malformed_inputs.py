"""Malformed-input battery: one broken thing per case, on a small simulated DL3 store (no shared data).

DL3 files and index rows: the one observation they break (``obs_id=2`` of 3) fails with a one-line
message naming it and the file, and nothing else is lost: the stacked buffers equal those of a clean
run over the other observations, bit for bit, and the run report (``reduction.json``) lists the
failure with its error. Index files a whole run depends on, configs and models files: the command
stops before any work with one line on stderr naming the key (dotted path) and the file, exit code 2
(the documented "invalid usage or configuration"), no traceback, no output directory.

Observation cases reduce in this process (serial backend); the command line runs as a subprocess
for the cases about its inputs, and once end to end with a corrupt observation.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import yaml
from astropy.io import fits
from astropy.table import Table

from gamma_ray_dist.config import AnalysisConfig
from gamma_ray_dist.distributed import ExecutionSettings
from gamma_ray_dist.distributed.backend import SerialBackend
from gamma_ray_dist.errors import DataStoreError
from gamma_ray_dist.pipeline.demo import demo_config_dict, demo_models_dict
from gamma_ray_dist.pipeline.fitting import load_models
from gamma_ray_dist.pipeline.inputs import open_datastore, select_obs_ids
from gamma_ray_dist.pipeline.run import reduce_stacked, reduction_report
from gamma_ray_dist.simulate import SourceModel, simulate_datastore, truth

ROOT = Path(__file__).resolve().parents[1]
OBS_IDS = (1, 2, 3)
BAD = 2  # the observation a DL3 case breaks
OTHERS = [i for i in OBS_IDS if i != BAD]
SOURCE = SourceModel()


# -- the clean store, its config and models, the reference stacks ---------------------------------
def config_dict(store: Path) -> dict:
    """The demo analysis, coarser (0.05 deg pixels, 10 true-energy bins): the battery stays quick."""
    data = demo_config_dict(store, SOURCE.ra, SOURCE.dec)
    data["datasets"]["geom"]["wcs"]["binsize"] = "0.05 deg"
    data["datasets"]["geom"]["axes"]["energy_true"]["nbins"] = 10
    data["observations"]["obs_cone"] = {"frame": "icrs", "lon": f"{SOURCE.ra} deg", "lat": f"{SOURCE.dec} deg",
                                        "radius": "3 deg"}
    return data


def models_dict() -> dict:
    return demo_models_dict({k: v for k, v in truth(SOURCE).items() if isinstance(v, (int, float))})


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory) -> Path:
    return simulate_datastore(tmp_path_factory.mktemp("battery") / "store", n_obs=len(OBS_IDS), seed=3)


@pytest.fixture(scope="module")
def backend():
    return SerialBackend(ExecutionSettings.resolve(None, backend="serial", progress=False))


def reduce(store: Path, backend, obs_ids=OBS_IDS, edit: Callable[[dict], None] | None = None):
    """``(obs ids selected, state, report)`` of the reduction of ``store`` (selection as the pipeline's)."""
    data = config_dict(store)
    if edit is not None:
        edit(data)
    config = AnalysisConfig.from_dict(data)
    selected = select_obs_ids(config, open_datastore(config))
    state, report = reduce_stacked(config, list(obs_ids), backend)
    return selected, state, report


@pytest.fixture(scope="module")
def stack_without_bad(clean_store, backend) -> dict:
    """The clean store's stack over the observations a case leaves intact."""
    return reduce(clean_store, backend, OTHERS)[1]


@pytest.fixture(scope="module")
def stack_all(clean_store, backend) -> dict:
    return reduce(clean_store, backend, OBS_IDS)[1]


def assert_same_stack(state: dict, reference: dict) -> None:
    """Every part of the stacked state (buffers, live time, GTI, meta rows, summaries) is identical."""
    assert sorted(state) == sorted(reference)
    for key in reference:
        assert_identical(state[key], reference[key], key)
    assert int(np.asarray(reference["buffers"]["counts"]).sum()) > 0


def assert_identical(got, ref, where: str) -> None:
    if isinstance(ref, dict):
        assert isinstance(got, dict) and sorted(got, key=str) == sorted(ref, key=str), where
        for key in ref:
            assert_identical(got[key], ref[key], f"{where}.{key}")
    elif isinstance(ref, (list, tuple)) and not isinstance(ref, str):
        assert len(got) == len(ref), where
        for i, (a, b) in enumerate(zip(got, ref)):
            assert_identical(a, b, f"{where}[{i}]")
    elif isinstance(ref, np.ndarray) or isinstance(got, np.ndarray):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref), err_msg=where)
        assert np.asarray(got).dtype == np.asarray(ref).dtype, where
    else:
        assert got == ref or (got != got and ref != ref), where  # NaN equals NaN here


# -- how to break a copy of the store --------------------------------------------------------------
def obs_file(store: Path, obs_id: int = BAD) -> Path:
    return store / "data" / f"obs_{obs_id:06d}.fits.gz"


def rewrite_fits(path: Path, edit: Callable[[fits.HDUList], None]) -> None:
    with fits.open(path) as hdul:
        hdul = fits.HDUList([h.copy() for h in hdul])
    edit(hdul)
    hdul.writeto(path, overwrite=True)


def edit_columns(hdu_name: str, edit: Callable[[fits.ColDefs], None]) -> Callable[[fits.HDUList], None]:
    def apply(hdul):
        columns = hdul[hdu_name].columns
        edit(columns)
        hdul[hdu_name] = fits.BinTableHDU.from_columns(columns, header=hdul[hdu_name].header)

    return apply


def edit_index(path: Path, edit: Callable[[Table], None]) -> Path:
    table = Table.read(path)
    edit(table)
    table.write(path, overwrite=True)
    return path


def index_rows(table: Table, obs_id: int, hdu_type: str) -> np.ndarray:
    kinds = np.char.strip(np.asarray(table["HDU_TYPE"]).astype(str))
    return np.nonzero((np.asarray(table["OBS_ID"]) == obs_id) & (kinds == hdu_type))[0]


def truncate(store):
    path = obs_file(store)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    return path


def not_fits(store):
    path = obs_file(store)
    path.write_bytes(b"this is not a FITS file\n" * 200)
    return path


def drop_hdu(name):
    def corrupt(store):
        rewrite_fits(obs_file(store), lambda hdul: hdul.pop(name))
        return obs_file(store)

    return corrupt


def drop_column(name):
    def corrupt(store):
        rewrite_fits(obs_file(store), edit_columns("EVENTS", lambda cols: cols.del_col(name)))
        return obs_file(store)

    return corrupt


def set_unit(hdu_name, column, unit):
    def corrupt(store):
        def edit(cols):
            cols[column].unit = unit

        rewrite_fits(obs_file(store), edit_columns(hdu_name, edit))
        return obs_file(store)

    return corrupt


def empty_gti(store):
    def edit(hdul):
        hdul["GTI"] = fits.BinTableHDU(data=hdul["GTI"].data[:0], header=hdul["GTI"].header)

    rewrite_fits(obs_file(store), edit)
    return obs_file(store)


def inverted_gti(store):
    def edit(hdul):
        data = hdul["GTI"].data
        start = data["START"].copy()
        data["START"] = data["STOP"]
        data["STOP"] = start

    rewrite_fits(obs_file(store), edit)
    return obs_file(store)


def nan_aeff(store):
    def edit(hdul):
        hdul["AEFF"].data["EFFAREA"][:] = np.nan

    rewrite_fits(obs_file(store), edit)
    return obs_file(store)


def aeff_wrong_shape(store):
    """EFFAREA loses its last true-energy bin: the data no longer matches the axes."""
    def edit(hdul):
        old = hdul["AEFF"]
        area = old.data["EFFAREA"][:, :, :-1]
        columns = []
        for col in old.columns:
            if col.name == "EFFAREA":
                dim = "(" + ",".join(str(n) for n in area.shape[1:][::-1]) + ")"
                columns.append(fits.Column(name=col.name, format=f"{area[0].size}E", unit=col.unit, dim=dim,
                                           array=area))
            else:
                columns.append(fits.Column(name=col.name, format=col.format, unit=col.unit, dim=col.dim,
                                           array=old.data[col.name]))
        hdul["AEFF"] = fits.BinTableHDU.from_columns(columns, header=old.header)

    rewrite_fits(obs_file(store), edit)
    return obs_file(store)


def file_absent(store):
    obs_file(store).unlink()
    return obs_file(store)


def index_wrong_hdu_name(store):
    def edit(table):
        table["HDU_NAME"][index_rows(table, BAD, "aeff")] = "EFFAREA"

    edit_index(store / "hdu-index.fits.gz", edit)
    return obs_file(store)


def index_wrong_file(store):
    def edit(table):
        table["FILE_NAME"] = np.asarray(table["FILE_NAME"]).astype("S40")
        table["FILE_NAME"][index_rows(table, BAD, "events")] = "obs_000099.fits.gz"

    edit_index(store / "hdu-index.fits.gz", edit)
    return store / "data" / "obs_000099.fits.gz"


def index_row_missing(store):
    return edit_index(store / "hdu-index.fits.gz", lambda t: t.remove_rows(index_rows(t, BAD, "psf")))


@dataclass(frozen=True)
class Case:
    name: str
    corrupt: Callable[[Path], Path]  # breaks the copy, returns the file the message must name
    error: str  # error type recorded for the observation
    needles: tuple[str, ...]  # what the message says about the problem


DL3_CASES = [
    Case("events-file-truncated", truncate, "ObservationError", ("corrupt or truncated gzip file",)),
    Case("events-file-not-fits", not_fits, "ObservationError", ("not a readable FITS file",)),
    Case("events-hdu-missing", drop_hdu("EVENTS"), "ObservationError", ("HDU 'EVENTS' not found",)),
    Case("events-column-energy-missing", drop_column("ENERGY"), "MissingColumns", ("['ENERGY']",)),
    Case("events-column-ra-missing", drop_column("RA"), "MissingColumns", ("['RA']",)),
    Case("events-energy-unit-wrong", set_unit("EVENTS", "ENERGY", "deg"), "WrongColumnUnit",
         ("'ENERGY'", "unit 'deg'")),
    Case("events-energy-unit-missing", set_unit("EVENTS", "ENERGY", None), "WrongColumnUnit",
         ("'ENERGY'", "no unit")),
    Case("gti-empty", empty_gti, "ObservationError", ("GTI", "no good time")),
    Case("gti-inverted", inverted_gti, "ObservationError", ("STOP < START",)),
    Case("aeff-hdu-missing", drop_hdu("AEFF"), "IRFError", ("HDU 'AEFF' not found",)),
    Case("edisp-hdu-missing", drop_hdu("EDISP"), "IRFError", ("HDU 'EDISP' not found",)),
    Case("psf-hdu-missing", drop_hdu("PSF"), "IRFError", ("HDU 'PSF' not found",)),
    Case("bkg-hdu-missing", drop_hdu("BKG"), "IRFError", ("HDU 'BKG' not found",)),
    Case("aeff-nan", nan_aeff, "IRFError", ("'EFFAREA'", "NaN")),
    Case("aeff-wrong-shape", aeff_wrong_shape, "IRFError",
         ("column 'EFFAREA' has shape (139, 30) along ['energy_true', 'offset'], the axes need (140, 30)",)),
    Case("bkg-unit-wrong", set_unit("BKG", "BKG", "m2"), "WrongColumnUnit", ("'BKG'", "unit 'm2'")),
    Case("file-in-index-absent", file_absent, "ObservationError", ("file not found",)),
    Case("index-wrong-hdu-name", index_wrong_hdu_name, "IRFError", ("HDU 'EFFAREA' not found",)),
    Case("index-wrong-file-name", index_wrong_file, "ObservationError", ("file not found",)),
    Case("index-required-hdu-row-missing", index_row_missing, "MissingRequiredHDU", ("['psf']",)),
]


def copy_store(clean_store: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(clean_store, tmp_path / "store"))


def assert_failure_reported(state, report, obs_id: int, error: str, filename: Path, needles) -> str:
    """One failed observation, its one-line message naming it and the file; returns the message."""
    assert [s.obs_id for s in report.failures] == [obs_id]
    failure = report.failures[0]
    assert failure.error_type == error, failure.message
    message = failure.message
    assert "\n" not in message
    assert message.startswith(f"[obs_id={obs_id}, file={filename}] "), message
    assert failure.filename == str(filename)
    for needle in needles:
        assert needle in message, message
    entry = {e["obs_id"]: e for e in reduction_report(list(OBS_IDS), state, report, {})["observations"]}[obs_id]
    assert entry["status"] == "failed" and entry["error"] == f"{error}: {message}"
    assert entry["file"] == str(filename)
    return message


@pytest.mark.parametrize("case", DL3_CASES, ids=[c.name for c in DL3_CASES])
def test_broken_observation_is_named_and_nothing_else_is_lost(case, clean_store, tmp_path, backend,
                                                              stack_without_bad):
    store = copy_store(clean_store, tmp_path)
    named = case.corrupt(store)
    selected, state, report = reduce(store, backend)
    assert selected == list(OBS_IDS)  # the index still lists the broken observation: it is tried
    assert_failure_reported(state, report, BAD, case.error, named, case.needles)
    assert report.n_ok == len(OTHERS)
    assert_same_stack(state, stack_without_bad)


def test_obs_id_not_in_the_store(clean_store, tmp_path, backend, stack_all):
    """An obs id the config asks for but the store lacks is tried, reported, and costs nothing else."""
    store = copy_store(clean_store, tmp_path)

    def ask_for_7(data):
        data["observations"]["obs_ids"] = [*OBS_IDS, 7]

    selected, state, report = reduce(store, backend, [*OBS_IDS, 7], edit=ask_for_7)
    assert selected == [*OBS_IDS, 7]
    assert [s.obs_id for s in report.failures] == [7]
    message = report.failures[0].message
    assert message == f"[obs_id=7, file={store / 'hdu-index.fits.gz'}] OBS_ID 7 not in HDU index table"
    assert_same_stack(state, stack_all)


# -- duplicates: accepted as gammapy does, and nothing is stacked twice ---------------------------
def test_duplicate_obs_ids_in_the_config_are_stacked_once(clean_store, backend, stack_all):
    selected, state, report = reduce(clean_store, backend, [1, 2, 2, 3, 3])
    assert report.duplicate_obs_ids == [2, 3] and report.n_failed == 0
    assert_same_stack(state, stack_all)


def test_duplicate_obs_index_rows_are_stacked_once(clean_store, tmp_path, backend, stack_all, caplog):
    store = copy_store(clean_store, tmp_path)
    edit_index(store / "obs-index.fits.gz", lambda t: t.insert_row(1, t[1]))
    assert list(Table.read(store / "obs-index.fits.gz")["OBS_ID"]) == [1, 2, 2, 3]
    with caplog.at_level(logging.WARNING):
        selected, state, report = reduce(store, backend)
    assert selected == list(OBS_IDS) and report.n_failed == 0
    assert (f"observation index file {store / 'obs-index.fits.gz'} lists OBS_ID [2] more than once; using the "
            "first row of each") in caplog.text
    assert_same_stack(state, stack_all)


def test_duplicate_hdu_index_rows_use_the_first_as_gammapy(clean_store, tmp_path, backend, stack_all, caplog):
    store = copy_store(clean_store, tmp_path)
    edit_index(store / "hdu-index.fits.gz", lambda t: t.insert_row(index_rows(t, BAD, "events")[0],
                                                                    t[index_rows(t, BAD, "events")[0]]))
    with caplog.at_level(logging.WARNING):
        selected, state, report = reduce(store, backend)
    assert report.n_failed == 0
    assert f"Several 'events' HDUs for OBS_ID={BAD}; using the first" in caplog.text
    assert_same_stack(state, stack_all)


# -- index files the whole run depends on ------------------------------------------------------------
def test_obs_index_lacking_a_column_the_selection_needs(clean_store, tmp_path, backend):
    store = copy_store(clean_store, tmp_path)
    edit_index(store / "obs-index.fits.gz", lambda t: t.remove_column("RA_PNT"))
    with pytest.raises(DataStoreError) as info:
        reduce(store, backend)
    assert str(info.value) == (f"observation index file {store / 'obs-index.fits.gz'}: lacks column 'RA_PNT', "
                               "needed by observations.obs_cone")


def test_obs_index_lacking_the_time_reference(clean_store, tmp_path, backend):
    store = copy_store(clean_store, tmp_path)

    def drop_mjdrefi(table):
        del table.meta["MJDREFI"]

    edit_index(store / "obs-index.fits.gz", drop_mjdrefi)

    def time_box(data):
        data["observations"]["obs_time"] = {"start": "2004-01-01", "stop": "2020-01-01"}

    with pytest.raises(DataStoreError) as info:
        reduce(store, backend, edit=time_box)
    message = str(info.value)
    assert str(store / "obs-index.fits.gz") in message and "MJDREFI" in message
    assert message.endswith("needed by observations.obs_time")


def test_hdu_index_lacking_a_column(clean_store, tmp_path, backend):
    store = copy_store(clean_store, tmp_path)
    edit_index(store / "hdu-index.fits.gz", lambda t: t.remove_column("FILE_NAME"))
    with pytest.raises(DataStoreError) as info:
        reduce(store, backend)
    assert str(info.value) == f"HDU index file {store / 'hdu-index.fits.gz'} lacks columns ['FILE_NAME']"


# -- the command line: inputs checked before any work (subprocesses) ---------------------------------
def cli(*args: str, cwd: Path, in_process: bool = False) -> subprocess.CompletedProcess:
    """``python -m gamma_ray_dist ARGS`` in ``cwd``, this checkout first on the path, without $RAY_ADDRESS.

    ``in_process`` calls `gamma_ray_dist.cli.main` here instead (the same code, without the start-up
    cost of a Python process; an exception it let through would fail the test).
    """
    if in_process:
        import contextlib
        import io

        from gamma_ray_dist.cli import main

        out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
        os.chdir(cwd)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            os.chdir(here)
        return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    return subprocess.run([sys.executable, "-m", "gamma_ray_dist", *args], capture_output=True, text=True,
                          timeout=300, env=env, cwd=cwd)


#: Cases that also run as a subprocess (the rest call ``main`` in this process: the battery stays quick).
SUBPROCESS_CASES = {"config-yaml-syntax", "models-yaml-syntax", "cfg.yaml"}


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("gamma-ray-dist: error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def inputs(clean_store, tmp_path) -> Path:
    """A working directory with ``cfg.yaml`` and ``models.yaml`` for the clean store."""
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config_dict(clean_store), sort_keys=False))
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(models_dict(), sort_keys=False))
    return tmp_path


def _replace(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


# (case id, file to edit, old text, new text, expected exact message after "gamma-ray-dist: error: ")
CLI_CASES = [
    ("config-yaml-syntax", "cfg.yaml", "      binsize: 0.05 deg\n", "      binsize: [0.05 deg\n",
     "key '<yaml>' in cfg.yaml: invalid YAML at line {line_width}, column 12: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence started at line {line_binsize}, column 16)"),
    ("config-unknown-key", "cfg.yaml", "      binsize: 0.05 deg\n", "      binsze: 0.05 deg\n",
     "key 'datasets.geom.wcs.binsze' in cfg.yaml: unknown key; did you mean 'binsize'? "
     "(allowed: skydir, binsize, width, binsize_irf)"),
    ("config-wrong-type", "cfg.yaml", "        nbins: 4\n", "        nbins: four\n",
     "key 'datasets.geom.axes.energy.nbins' in cfg.yaml: expected an integer, got str 'four'"),
    ("config-energy-min-not-below-max", "cfg.yaml", "        max: 10 TeV\n", "        max: 1 TeV\n",
     "key 'datasets.geom.axes.energy.max' in cfg.yaml: must be > min (1.0 TeV), got 1.0 TeV"),
    ("models-unknown-type", "models.yaml", "PowerLawSpectralModel", "PowerLawSpectralModell",
     "key 'components[0].spectral.type' in models.yaml: Unknown spectral model type 'PowerLawSpectralModell'; "
     "supported: ['ExpCutoffPowerLawSpectralModel', 'LogParabolaSpectralModel', 'PowerLawNormSpectralModel', "
     "'PowerLawSpectralModel']"),
    ("models-value-not-a-number", "models.yaml", "      value: 2.3\n", "      value: steep\n",
     "key 'components[0].spectral.parameters[0]' in models.yaml: parameter 'index': Cannot parse \"steep\" as a "
     "Quantity. It does not start with a number."),
    ("models-unknown-parameter", "models.yaml", "    - name: index\n", "    - name: indx\n",
     "key 'components[0].spectral.parameters[0].name' in models.yaml: unknown parameter 'indx' for model type "
     "PowerLawSpectralModel; did you mean 'index'? (expected one of ['index', 'amplitude', 'reference'])"),
    ("models-yaml-syntax", "models.yaml", "  spectral:\n", "  spectral: [\n",
     "key '<yaml>' in models.yaml: invalid YAML at line 6, column 15: expected ',' or ']', but got ':' "
     "(while parsing a flow sequence started at line 4, column 13)"),
]


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(text))


@pytest.mark.parametrize("case_id, target, old, new, expected", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_config_and_models_errors_name_the_key_and_the_file(inputs, case_id, target, old, new, expected):
    path = inputs / target
    cfg = inputs / "cfg.yaml"
    fields = {"line_binsize": _line_of(cfg, "      binsize:"), "line_width": _line_of(cfg, "      width:")}
    _replace(path, old, new)
    out = inputs / "out"
    proc = cli("run", "cfg.yaml", "--models", "models.yaml", "--serial", "--no-progress", "--no-report",
               "--out", str(out), cwd=inputs, in_process=case_id not in SUBPROCESS_CASES)
    line = assert_one_line_error(proc, 2)
    assert line == "gamma-ray-dist: error: " + expected.format(**fields)
    assert not out.exists()  # nothing written


@pytest.mark.parametrize("which", ["cfg.yaml", "models.yaml"])
def test_missing_config_or_models_file(inputs, which):
    missing = inputs / f"missing-{which}"
    args = ["cfg.yaml", "--models", "models.yaml"]
    args[args.index(which)] = missing.name
    out = inputs / "out"
    proc = cli("run", *args, "--serial", "--no-progress", "--out", str(out), cwd=inputs,
               in_process=which not in SUBPROCESS_CASES)
    expected = {"cfg.yaml": f"key '<file>' in {missing.name}: file not found",
                "models.yaml": f"config key 'general.models_file': models file not found: {missing.name}"}[which]
    assert assert_one_line_error(proc, 2) == "gamma-ray-dist: error: " + expected
    assert not out.exists()


def test_missing_data_store_directory(clean_store, inputs):
    _replace(inputs / "cfg.yaml", f"  datastore: {clean_store}\n", f"  datastore: {inputs / 'nowhere'}\n")
    out = inputs / "out"
    proc = cli("run", "cfg.yaml", "--models", "models.yaml", "--serial", "--no-progress", "--out", str(out),
               cwd=inputs, in_process=True)
    assert assert_one_line_error(proc, 2) == (
        f"gamma-ray-dist: error: config key 'observations.datastore': data store directory not found: "
        f"{inputs / 'nowhere'}")
    assert not out.exists()


def test_obs_index_lacking_a_column_stops_the_command(clean_store, inputs):
    store = copy_store(clean_store, inputs)
    edit_index(store / "obs-index.fits.gz", lambda t: t.remove_column("RA_PNT"))
    _replace(inputs / "cfg.yaml", f"  datastore: {clean_store}\n", f"  datastore: {store}\n")
    out = inputs / "out"
    proc = cli("run", "cfg.yaml", "--models", "models.yaml", "--serial", "--no-progress", "--out", str(out),
               cwd=inputs, in_process=True)
    assert assert_one_line_error(proc, 2) == (
        f"gamma-ray-dist: error: data store: observation index file {store / 'obs-index.fits.gz'}: lacks column "
        "'RA_PNT', needed by observations.obs_cone")
    assert not out.exists()


# -- models: what gammapy accepts is accepted --------------------------------------------------------
def test_parameter_without_value_takes_the_default_as_gammapy(inputs, caplog):
    """``- name: index`` with no value: gammapy keeps the class default; so do we, and say so."""
    _replace(inputs / "models.yaml", "      value: 2.3\n", "")
    config = AnalysisConfig.read(inputs / "cfg.yaml")
    with caplog.at_level(logging.WARNING):
        models = load_models(config, "stacked", inputs / "models.yaml")
    assert models["crab"].spectral_model.index.value == 2.0
    assert "Parameter 'index' of PowerLawSpectralModel has no value in YAML; using default 2.0" in caplog.text
    gammapy_models = pytest.importorskip("gammapy.modeling.models")
    theirs = gammapy_models.Models.read(inputs / "models.yaml")
    assert theirs["crab"].spectral_model.index.value == models["crab"].spectral_model.index.value


def test_models_file_errors_are_value_errors_naming_the_key():
    """A `ModelsFileError` is a ValueError (what gammapy raises) carrying the key path."""
    from gamma_ray_dist.errors import ModelsFileError
    from gamma_ray_dist.modeling.models import Models

    with pytest.raises(ValueError) as info:
        Models.from_yaml("components:\n- {name: a, type: SkyModel, spectral: {parameters: []}}\n")
    assert isinstance(info.value, ModelsFileError)
    assert info.value.key == "components[0].spectral.type" and info.value.reason == "missing required key"
    with pytest.raises(ModelsFileError, match="'<root>'"):
        Models.from_yaml("- a\n- b\n")


# -- end to end: a corrupt observation in a command-line run ------------------------------------------
def test_command_line_run_with_a_corrupt_observation(clean_store, inputs, stack_without_bad):
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.pipeline.tasks import SummaryAccumulator

    store = copy_store(clean_store, inputs)
    bad = truncate(store)
    _replace(inputs / "cfg.yaml", f"  datastore: {clean_store}\n", f"  datastore: {store}\n")
    out = inputs / "out"
    proc = cli("run", "cfg.yaml", "--models", "models.yaml", "--serial", "--no-progress", "--no-report",
               "--out", str(out), cwd=inputs)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "failed" in line]
    assert warnings == [f"WARNING gamma_ray_dist.distributed.backend: observation {BAD} failed: ObservationError: "
                        f"[obs_id={BAD}, file={bad}] corrupt or truncated gzip file (EOFError: Compressed file "
                        "ended before the end-of-stream marker was reached)"]
    assert f"reduced {len(OTHERS)}/{len(OBS_IDS)} observations (1 failed, see reduction.json)" in proc.stdout
    report = json.loads((out / "reduction.json").read_text())
    status = {o["obs_id"]: o for o in report["observations"]}
    assert status[BAD]["status"] == "failed" and status[BAD]["file"] == str(bad)
    assert status[BAD]["error"].startswith(f"ObservationError: [obs_id={BAD}, file={bad}] corrupt or truncated")
    assert all(status[o]["status"] == "ok" for o in OTHERS)
    stacked = MapDataset.read(out / "stacked.fits.gz")
    reference = SummaryAccumulator.from_state(stack_without_bad).to_dataset("stacked")
    np.testing.assert_array_equal(stacked.counts.data, reference.counts.data)
    assert (out / "fit.json").exists()
