"""Run report (`gamma_ray_dist.report.write_report`): seed figures as PNG, report.md content and links,
figures only when their inputs exist, no matplotlib -> report.md with a note."""
from __future__ import annotations

import copy
import re
import sys

import numpy as np
import pytest
from astropy import units as u

from gamma_ray_dist.pipeline import report as rep
from gamma_ray_dist.pipeline.report import FIGURE_SIZES, FIGURES, DPI, MISSING_PLOT_NOTE, write_report

from .helpers import set_seed_best_fit

REDUCTION = {
    "observations": [
        {"obs_id": 23523, "status": "ok", "counts": 652, "background": 540.25, "bkg_norm": 0.99,
         "mask_safe_bins": 40000, "error": None},
        {"obs_id": 23526, "status": "ok", "counts": 701, "background": 610.5, "bkg_norm": 1.08,
         "mask_safe_bins": 40000, "error": None},
        {"obs_id": 99001, "status": "failed",
         "error": "IRFError: aeff_2d: no ENERG_LO column in obs-099001.fits.gz"},
        {"obs_id": 99002, "status": "failed", "error": "ObservationError: events file missing"},
    ]
}
TIMINGS = {"select": 0.12, "reduction": 3.5, "fit": 0.31, "flux_points": 0.07}


@pytest.fixture(scope="module")
def seed_inputs(reference_dir, seed_reference):
    """Stacked seed dataset with the seed models at gammapy's best fit, a FitResult, flux points."""
    from gamma_ray_dist.datasets.map import MapDataset
    from gamma_ray_dist.estimators import FluxPointsEstimator
    from gamma_ray_dist.modeling.fit_results import FitResult, OptimizeResult
    from gamma_ray_dist.modeling.models import FoVBackgroundModel, Models

    dataset = MapDataset.read(reference_dir / "crab_stacked_gammapy.fits.gz")
    models = Models.from_yaml(seed_reference["case"]["model"])
    models.append(FoVBackgroundModel(dataset_name=dataset.name))
    set_seed_best_fit(models, seed_reference, errors=True)
    dataset.models = models
    fit = seed_reference["fit"]
    fit_result = FitResult(OptimizeResult(models=models.copy() if hasattr(models, "copy") else models,
                                          nfev=fit["nfev"], total_stat=fit["total_stat"], backend="minuit",
                                          method="migrad", success=fit["success"], message=fit["message"]))
    flux_points = FluxPointsEstimator(energy_edges=[1, 2, 4, 10] * u.TeV, source="crab").run([dataset])
    return {"dataset": dataset, "models": models, "fit_result": fit_result, "flux_points": flux_points}


@pytest.fixture(scope="module")
def full_report(seed_inputs, tmp_path_factory):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path_factory.mktemp("report") / "run"  # does not exist yet: created by write_report
    plt = sys.modules.get("matplotlib.pyplot")
    before = None if plt is None else plt.get_fignums()
    paths = write_report(out_dir, seed_inputs["dataset"], fit_result=seed_inputs["fit_result"],
                         flux_points=seed_inputs["flux_points"], timings=TIMINGS, reduction=REDUCTION,
                         source="crab", exclusion_region="icrs; circle(83.63, 22.14, 0.2)",
                         title="Crab seed run")
    plt = sys.modules.get("matplotlib.pyplot")
    after = None if plt is None else plt.get_fignums()
    return {"out_dir": out_dir, "paths": paths, "fignums": (before, after)}


def check_png(path, name):
    import matplotlib.image as mpimg

    image = mpimg.imread(path)
    width, height = FIGURE_SIZES[name]
    assert image.shape[:2] == (round(height * DPI), round(width * DPI)), name
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    flat = image.reshape(-1, image.shape[2])
    colours = np.unique(flat[:: max(1, flat.shape[0] // 20000)], axis=0).shape[0]
    assert colours > 10, f"{name}.png is (nearly) one colour"
    return image


def test_all_figures_written_as_valid_pngs(full_report):
    paths, out_dir = full_report["paths"], full_report["out_dir"]
    assert set(paths) == set(FIGURES) | {"report"}
    for name in FIGURES:
        assert paths[name] == out_dir / f"{name}.png"
        check_png(paths[name], name)
    # atomic writes leave no temporary files; pyplot's figure list is untouched
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([f"{n}.png" for n in FIGURES] + ["report.md"])
    before, after = full_report["fignums"]
    assert after in (None, before or [])


def test_report_markdown_content(full_report, seed_inputs, seed_reference):
    text = full_report["paths"]["report"].read_text()
    assert text.startswith("# Crab seed run\n")
    # fit summary
    fit = seed_reference["fit"]
    assert "- success: True" in text
    assert f"- nfev: {fit['nfev']}" in text
    assert f"- total stat: {fit['total_stat']:.2f}" in text
    assert fit["message"] in text
    # parameters table: header and every parameter with formatted value and error
    assert "| model | name | value | error | unit | frozen |" in text
    for model in seed_inputs["models"]:
        for par in model.parameters:
            row = f"| {model.name} | {par.name} | {par.value:.4e} | {par.error:.3e} |"
            assert row in text, row
    assert "| crab | amplitude | 4.5921e-11 |" in text  # gammapy's printed best fit
    # flux points table
    fp = seed_inputs["flux_points"]
    for e_ref, dnde, ts in zip(fp.energy_ref.to_value("TeV"), fp.dnde.to_value("cm-2 s-1 TeV-1"), fp.ts):
        assert f"| {e_ref:.3f} | {dnde:.3e} |" in text
        assert f"{ts:.2f}" in text
    # reduction: counts and failed observations with their reasons
    assert "**2 ok**, **2 failed**" in text
    for entry in REDUCTION["observations"]:
        assert f"| {entry['obs_id']} |" in text
        if entry["status"] == "failed":
            assert entry["error"] in text
    # timings per stage and total
    for stage, seconds in TIMINGS.items():
        assert f"| {stage} | {seconds:.2f} |" in text
    assert f"**{sum(TIMINGS.values()):.2f}**" in text
    assert MISSING_PLOT_NOTE not in text


def test_report_links_are_relative_and_exist(full_report):
    out_dir = full_report["out_dir"]
    text = full_report["paths"]["report"].read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"{n}.png" for n in FIGURES)
    for link in links:
        assert not link.startswith("/")
        assert (out_dir / link).is_file()


def test_without_models_only_counts(seed_inputs, tmp_path):
    pytest.importorskip("matplotlib")
    dataset = copy.copy(seed_inputs["dataset"])
    dataset.models = None
    paths = write_report(tmp_path, dataset, reduction=REDUCTION)
    assert set(paths) == {"counts", "report"}
    check_png(paths["counts"], "counts")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counts.png", "report.md"]
    text = paths["report"].read_text()
    assert "No fit was run." in text
    assert "](counts.png)" in text and "residuals" not in text and "spectrum.png" not in text
    assert seed_inputs["dataset"].models is not None  # the caller's dataset is untouched


def test_without_matplotlib_report_md_still_written(seed_inputs, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith(("matplotlib.", "mpl_toolkits"))]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # also when matplotlib was never imported
    with pytest.raises(ImportError):
        import matplotlib.figure  # noqa: F401
    paths = write_report(tmp_path, seed_inputs["dataset"], fit_result=seed_inputs["fit_result"],
                         flux_points=seed_inputs["flux_points"], timings=TIMINGS, reduction=REDUCTION)
    assert set(paths) == {"report"}
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]
    text = paths["report"].read_text()
    assert MISSING_PLOT_NOTE in text and "gamma_ray_dist[plot]" in text
    assert "| crab | index |" in text and "ObservationError: events file missing" in text
    assert ".png" not in text


def test_models_argument_does_not_modify_dataset(seed_inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "_matplotlib_available", lambda: False)  # markdown only: fast
    dataset = copy.copy(seed_inputs["dataset"])
    dataset.models = None
    paths = write_report(tmp_path, dataset, models=seed_inputs["models"])
    assert dataset.models is None
    text = paths["report"].read_text()
    assert "| crab | lon_0 |" in text and "| crab-stacked-bkg | norm |" in text


def test_failing_figure_keeps_report(seed_inputs, tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")

    def boom(fig, *args):
        raise RuntimeError("cannot draw")

    monkeypatch.setattr(rep, "_draw_counts", boom)
    dataset = copy.copy(seed_inputs["dataset"])
    dataset.models = None
    paths = write_report(tmp_path, dataset)
    assert set(paths) == {"report"}
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]  # no partial PNG, no temp file
    assert "`counts.png` was not made: RuntimeError: cannot draw" in paths["report"].read_text()


def test_rewrite_replaces_files(seed_inputs, tmp_path, monkeypatch):
    monkeypatch.setattr(rep, "_matplotlib_available", lambda: False)
    write_report(tmp_path, seed_inputs["dataset"], title="first")
    paths = write_report(tmp_path, seed_inputs["dataset"], title="second")
    assert paths["report"].read_text().startswith("# second\n")
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_sky_map_figures(seed_inputs, tmp_path):
    """With ``sky_maps`` (run_sky_maps' dict): significance map and distribution as PNGs, listed in
    report.md with the significance fit and the source positions; pyplot untouched."""
    pytest.importorskip("matplotlib")
    import yaml
    from pathlib import Path

    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.pipeline.report import SKY_MAP_FIGURES
    from gamma_ray_dist.pipeline.sky_maps import run_sky_maps

    base = yaml.safe_load((Path(__file__).parents[1] / "examples" / "crab_3d.yaml").read_text())
    base.pop("excess_map", None)
    cfg = AnalysisConfig.from_dict(dict(base, ts_map={"kernel_width": "0.3 deg"}))
    sky_maps = run_sky_maps(seed_inputs["dataset"], cfg, out_dir=tmp_path)
    plt = sys.modules.get("matplotlib.pyplot")
    before = None if plt is None else plt.get_fignums()
    paths = write_report(tmp_path / "run", seed_inputs["dataset"], fit_result=seed_inputs["fit_result"],
                         sky_maps=sky_maps)
    plt = sys.modules.get("matplotlib.pyplot")
    assert (None if plt is None else plt.get_fignums()) in (None, before or [])
    for name in SKY_MAP_FIGURES:
        assert paths[name] == tmp_path / "run" / f"{name}.png"
        check_png(paths[name], name)
    text = paths["report"].read_text()
    for name in SKY_MAP_FIGURES:
        assert f"![{name}]({name}.png)" in text
    stats = sky_maps["significance"]["ts_map"]
    assert f"{stats['n']} pixels, fitted Gaussian mean {stats['mean']:.3f}, width {stats['sigma']:.3f}" in text
    assert "| crab |" in text and "`ts_map.fits.gz`" in text
    # without sky maps: no sky-map figure
    plain = write_report(tmp_path / "plain", seed_inputs["dataset"], fit_result=seed_inputs["fit_result"])
    assert not set(SKY_MAP_FIGURES) & set(plain)
