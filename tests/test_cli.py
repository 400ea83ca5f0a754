"""``gamma-ray-dist`` end to end: the seed through the CLI on the local Ray gives gammapy's numbers.

Tolerances (vs crab_seed_gammapy.json): stacked counts exact (2479), background 0.1 %, fitted values
within 0.1 sigma (gammapy's error), errors 3 %, total stat 0.5, flux points dnde and ts 2 %.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gamma_ray_dist.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "crab_3d.yaml"
MODELS = ROOT / "examples" / "crab_models.yaml"


@pytest.fixture(scope="module")
def seed_run(ray_session, hess_dr1, tmp_path_factory):
    """The seed through ``gamma-ray-dist run`` on the session's Ray (run once for the module)."""
    out = tmp_path_factory.mktemp("seed_cli")
    address = ray_session.get_runtime_context().gcs_address
    mp = pytest.MonkeyPatch()
    mp.setenv("GAMMAPY_DATA", str(hess_dr1.parent))
    try:
        code = main(["run", str(CONFIG), "--models", str(MODELS), "--out", str(out), "--address", address,
                     "--no-progress"])
    finally:
        mp.undo()
    assert code == 0
    return out


def test_seed_outputs_exist(seed_run):
    names = {p.name for p in seed_run.iterdir()}
    assert {"stacked.fits.gz", "models.yaml", "fit.json", "flux_points.ecsv", "reduction.json"} <= names
    assert not any(n.startswith(".") for n in names)  # no temporary files left behind
    assert "profiles.json" not in names  # not asked for
    # the seed's figures and the run report (the test extra brings matplotlib)
    assert {"counts.png", "npred_signal.png", "residuals_spatial.png", "residuals.png", "spectrum.png",
            "report.md"} <= names
    report = (seed_run / "report.md").read_text()
    assert "![spectrum](spectrum.png)" in report and "| crab |" in report.replace("`", "")


def test_seed_reduction_matches_gammapy(seed_run, seed_reference):
    from gamma_ray_dist.datasets import MapDataset

    report = json.loads((seed_run / "reduction.json").read_text())
    assert report["backend"] == "ray" and report["n_ok"] == 4 and report["n_failed"] == 0
    ref_obs = {o["obs_id"]: o for o in seed_reference["per_obs"]}
    for entry in report["observations"]:
        ref = ref_obs[entry["obs_id"]]
        assert entry["status"] == "ok"
        assert entry["counts"] == ref["counts_safe"]
        assert entry["mask_safe_bins"] == ref["mask_safe_bins"]
        assert entry["bkg_norm"] == pytest.approx(ref["bkg_norm"], rel=1e-3)
    for stage in ("setup", "reduce", "fit", "flux_points", "total"):
        assert report["timings"][stage] >= 0
    stacked = MapDataset.read(seed_run / "stacked.fits.gz")
    assert int(stacked.counts.data.sum()) == seed_reference["stacked"]["counts"] == 2479
    np.testing.assert_array_equal(stacked.counts.data.sum(axis=(1, 2)), seed_reference["stacked"]["counts_per_energy"])
    assert stacked.background.data.sum() == pytest.approx(seed_reference["stacked"]["background"], rel=1e-3)


def test_seed_fit_matches_gammapy(seed_run, seed_reference):
    fit = json.loads((seed_run / "fit.json").read_text())
    ref = seed_reference["fit"]
    assert fit["success"] is True
    assert fit["total_stat"] == pytest.approx(ref["total_stat"], abs=0.5)
    ours = {(p["model"], p["name"]): p for p in fit["parameters"]}
    assert len(ours) == len(ref["parameters"])
    for r in ref["parameters"]:
        p = ours[(r["model"], r["name"])]
        assert p["frozen"] == r["frozen"]
        if r["frozen"]:
            assert p["value"] == r["value"]
            continue
        assert abs(p["value"] - r["value"]) <= 0.1 * r["error"], r["name"]
        assert p["error"] == pytest.approx(r["error"], rel=0.03), r["name"]


def test_seed_flux_points_match_gammapy(seed_run, seed_reference):
    from astropy.table import Table

    table = Table.read(seed_run / "flux_points.ecsv", format="ascii.ecsv")
    ref = seed_reference["flux_points"]
    assert table.meta["SED_TYPE"] == "dnde"
    np.testing.assert_allclose(table["e_min"].quantity.to_value("TeV"), ref["e_min"], rtol=1e-6)
    np.testing.assert_allclose(table["dnde"].quantity.to_value("cm-2 s-1 TeV-1"), ref["dnde"], rtol=0.02)
    np.testing.assert_allclose(table["ts"], ref["ts"], rtol=0.02)


def test_seed_outputs_read_by_gammapy(seed_run, seed_reference):
    pytest.importorskip("gammapy")
    from gammapy.datasets import MapDataset
    from gammapy.estimators import FluxPoints
    from gammapy.modeling.models import Models

    dataset = MapDataset.read(seed_run / "stacked.fits.gz")
    assert int(dataset.counts.data.sum()) == 2479
    models = Models.read(seed_run / "models.yaml")
    fit = json.loads((seed_run / "fit.json").read_text())
    index = next(p for p in fit["parameters"] if p["name"] == "index")
    assert models["crab"].spectral_model.index.value == pytest.approx(index["value"], rel=1e-9)
    assert models["crab"].spectral_model.index.error == pytest.approx(index["error"], rel=1e-6)
    assert "stacked-bkg" in models.names
    points = FluxPoints.read(seed_run / "flux_points.ecsv")
    np.testing.assert_allclose(points.dnde.data.ravel(), seed_reference["flux_points"]["dnde"], rtol=0.02)


def test_config_error_is_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG.read_text().replace("binsize: 0.02 deg", "binsize: fast"))
    assert main(["run", str(bad), "--serial", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "datasets.geom.wcs.binsize" in err


def test_missing_models_is_a_config_error(tmp_path, hess_dr1, monkeypatch, capsys):
    monkeypatch.setenv("GAMMAPY_DATA", str(hess_dr1.parent))
    assert main(["run", str(CONFIG), "--serial", "--no-progress", "--out", str(tmp_path)]) == 2
    assert "--models" in capsys.readouterr().err


def test_nothing_reduced_exits_non_zero(tmp_path, hess_dr1, capsys):
    cfg = tmp_path / "none.yaml"
    text = CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(hess_dr1))
    text = text.replace("    obs_cone: {frame: icrs, lon: 83.633 deg, lat: 22.014 deg, radius: 5 deg}",
                        "    obs_ids: [1, 2]")
    cfg.write_text(text)
    code = main(["run", str(cfg), "--models", str(MODELS), "--serial", "--no-progress", "--out", str(tmp_path / "o")])
    assert code == 1
    assert "none of the 2 selected observations" in capsys.readouterr().err
    report = json.loads((tmp_path / "o" / "reduction.json").read_text())
    assert [o["status"] for o in report["observations"]] == ["failed", "failed"]


def _corrupt_store(hess_dr1: Path, dst: Path, bad_obs: int) -> Path:
    """The 4 seed observations + the index files, with ``bad_obs``'s file truncated."""
    (dst / "data").mkdir(parents=True)
    for name in ("hdu-index.fits.gz", "obs-index.fits.gz"):
        shutil.copy(hess_dr1 / name, dst / name)
    for obs in (23523, 23526, 23559, 23592):
        src = hess_dr1 / "data" / f"hess_dl3_dr1_obs_id_{obs:06d}.fits.gz"
        shutil.copy(src, dst / "data" / src.name)
    bad = dst / "data" / f"hess_dl3_dr1_obs_id_{bad_obs:06d}.fits.gz"
    bad.write_bytes(bad.read_bytes()[:20000])
    return bad


@pytest.mark.parametrize("serial", [True, False], ids=["serial", "ray"])
def test_corrupt_observation_is_reported_and_the_rest_reduced(tmp_path, hess_dr1, serial, request):
    if not serial:
        request.getfixturevalue("ray_session")
    bad = _corrupt_store(hess_dr1, tmp_path / "store", 23559)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(tmp_path / "store")))
    out = tmp_path / "out"
    args = ["run", str(cfg), "--models", str(MODELS), "--no-progress", "--no-report", "--out", str(out)]
    assert main(args + (["--serial"] if serial else ["--backend", "ray"])) == 0
    report = json.loads((out / "reduction.json").read_text())
    status = {o["obs_id"]: o for o in report["observations"]}
    assert report["n_ok"] == 3 and report["n_failed"] == 1
    failed = status[23559]
    assert failed["status"] == "failed" and "23559" in failed["error"]
    assert Path(failed["file"]).name == bad.name
    assert all(status[o]["status"] == "ok" for o in (23523, 23526, 23592))
    assert not (out / "report.md").exists()  # --no-report


def test_strict_stops_at_the_corrupt_observation(tmp_path, hess_dr1, capsys):
    _corrupt_store(hess_dr1, tmp_path / "store", 23526)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(tmp_path / "store")))
    code = main(["run", str(cfg), "--models", str(MODELS), "--serial", "--strict", "--no-progress",
                 "--out", str(tmp_path / "out")])
    assert code == 1
    err = capsys.readouterr().err
    assert "23526" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "fit.json").exists()


def test_demo_runs_offline_and_prints_truth(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--n-obs", "2", "--serial", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "true" in out and "index" in out and "reduced 2/2 observations" in out
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["success"]
    index = next(p for p in fit["parameters"] if p["name"] == "index")
    assert abs(index["value"] - 2.6) < 4 * index["error"]  # the simulated truth is recovered


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "gamma_ray_dist", "run", "--help"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    for flag in ("--models", "--out", "--address", "--num-cpus", "--serial", "--strict", "--profiles",
                 "--no-progress"):
        assert flag in proc.stdout
