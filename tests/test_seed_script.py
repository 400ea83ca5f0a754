"""The seed tutorial (gammapy "low level API", analysis_2) run through our API by the example script.

``examples/seed_low_level.py`` is the tutorial's code with only the imports changed to
``gamma_ray_dist``. It runs here as ``__main__`` (runpy) with ``GAMMAPY_DATA`` pointed at the parent of
the ``hess_dr1`` fixture; its globals (``bkg_norms``, ``stacked``, ``result``, ``flux_points`` ...) are
compared with gammapy 2.1's numbers in ``shared/reference/crab_seed_gammapy.json``.

Tolerances: per-observation FoV background norms within 0.002 (absolute); stacked counts exact;
stacked background within 0.1 %; fitted values within 0.1 sigma (the reference error); errors within
3 %; total stat within 0.5; flux points dnde and ts within 2 %.
"""
from __future__ import annotations

import importlib
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "seed_low_level.py"

# every name the seed script imports: (module, name)
SEED_NAMES = [
    ("gamma_ray_dist.data", "DataStore"),
    ("gamma_ray_dist.datasets", "MapDataset"),
    ("gamma_ray_dist.estimators", "FluxPointsEstimator"),
    ("gamma_ray_dist.makers", "FoVBackgroundMaker"),
    ("gamma_ray_dist.makers", "MapDatasetMaker"),
    ("gamma_ray_dist.makers", "SafeMaskMaker"),
    ("gamma_ray_dist.maps", "MapAxis"),
    ("gamma_ray_dist.maps", "WcsGeom"),
    ("gamma_ray_dist.modeling", "Fit"),
    ("gamma_ray_dist.modeling.models", "FoVBackgroundModel"),
    ("gamma_ray_dist.modeling.models", "PointSpatialModel"),
    ("gamma_ray_dist.modeling.models", "PowerLawSpectralModel"),
    ("gamma_ray_dist.modeling.models", "SkyModel"),
]


def _require(names) -> None:
    """Fail, naming what is missing, when a module or name the seed script imports does not exist.

    Every one of them exists: a missing one is a regression, never a reason to skip.
    """
    missing = []
    for module, name in names:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            missing.append(f"{module} ({exc})")
            continue
        if not hasattr(mod, name):
            missing.append(f"{module}.{name}")
    if missing:
        pytest.fail("the seed script imports what gamma_ray_dist no longer has: " + ", ".join(missing))


def _run_script(hess_dr1: Path, out: Path, *extra: str) -> dict:
    """Run the example as ``__main__`` and return its globals."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GAMMAPY_DATA", str(hess_dr1.parent))
        mp.setattr(sys, "argv", [str(SCRIPT), "--out", str(out), *extra])
        return runpy.run_path(str(SCRIPT), run_name="__main__")


@pytest.fixture(scope="module")
def seed_run(hess_dr1, tmp_path_factory):
    _require(SEED_NAMES)
    out = tmp_path_factory.mktemp("seed")
    return _run_script(hess_dr1, out)


def _rel(a, b) -> float:
    return abs(float(a) - float(b)) / abs(float(b))


# ----------------------------------------------------------------------------------------------
# selection and reduction
# ----------------------------------------------------------------------------------------------
def test_selected_observations(seed_run, seed_reference):
    obs_ids = [int(o.obs_id) for o in seed_run["observations"]]
    assert obs_ids == seed_reference["obs_ids"]


def test_background_norms_per_observation(seed_run, seed_reference):
    norms = seed_run["bkg_norms"]
    for ref in seed_reference["per_obs"]:
        assert norms[ref["obs_id"]] == pytest.approx(ref["bkg_norm"], abs=0.002), ref["obs_id"]


def test_stacked_counts_exact(seed_run, seed_reference):
    ref = seed_reference["stacked"]
    counts = np.asarray(seed_run["stacked"].counts.data)
    assert int(counts.sum()) == ref["counts"]
    assert counts.sum(axis=(1, 2)).astype(int).tolist() == ref["counts_per_energy"]


def test_stacked_background(seed_run, seed_reference):
    ref = seed_reference["stacked"]
    bkg = np.asarray(seed_run["stacked"].background.data, dtype=float)
    assert _rel(bkg.sum(), ref["background"]) < 1e-3
    for got, want in zip(bkg.sum(axis=(1, 2)), ref["background_per_energy"]):
        assert _rel(got, want) < 1e-3


def test_stacked_exposure_and_mask(seed_run, seed_reference):
    ref = seed_reference["stacked"]
    stacked = seed_run["stacked"]
    exposure = stacked.exposure.quantity.to_value("m2 s")
    assert _rel(exposure.min(), ref["exposure_min_m2s"]) < 1e-3
    assert _rel(exposure.max(), ref["exposure_max_m2s"]) < 1e-3
    assert int(np.asarray(stacked.mask_safe.data).sum()) == ref["mask_safe_bins"]


def test_written_dataset_reads_back(seed_run, seed_reference):
    from gamma_ray_dist.datasets import MapDataset

    filename = seed_run["filename"]
    assert Path(filename).is_file()
    back = MapDataset.read(filename, name="crab-stacked")
    assert int(np.asarray(back.counts.data).sum()) == seed_reference["stacked"]["counts"]
    np.testing.assert_allclose(back.background.data, seed_run["stacked"].background.data, rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# fit
# ----------------------------------------------------------------------------------------------
def _fitted(seed_run) -> dict:
    """{(component, name): (value, error, unit)} with component "crab" or "bkg"."""
    table = seed_run["stacked"].models.to_parameters_table()
    out = {}
    for row in table:
        comp = "bkg" if str(row["model"]).endswith("-bkg") else str(row["model"])
        out[(comp, str(row["name"]))] = (float(row["value"]), float(row["error"]), str(row["unit"]))
    return out


def test_fit_converged_and_total_stat(seed_run, seed_reference):
    result = seed_run["result"]
    assert result.success
    assert result.total_stat == pytest.approx(seed_reference["fit"]["total_stat"], abs=0.5)


def test_fit_parameters(seed_run, seed_reference):
    import astropy.units as u

    fitted = _fitted(seed_run)
    for ref in seed_reference["fit"]["parameters"]:
        comp = "bkg" if ref["model"].endswith("-bkg") else ref["model"]
        value, error, unit = fitted[(comp, ref["name"])]
        scale = u.Unit(unit or "").to(u.Unit(ref["unit"] or ""))
        value, error = value * scale, error * scale
        label = f"{comp}.{ref['name']}"
        if ref["frozen"]:
            assert value == pytest.approx(ref["value"], rel=1e-12), label
            continue
        assert abs(value - ref["value"]) < 0.1 * ref["error"], (label, value, ref["value"], ref["error"])
        assert _rel(error, ref["error"]) < 0.03, (label, error, ref["error"])


# ----------------------------------------------------------------------------------------------
# flux points
# ----------------------------------------------------------------------------------------------
def test_flux_points(seed_run, seed_reference):
    ref = seed_reference["flux_points"]
    table = seed_run["flux_points"].to_table(sed_type="dnde")
    np.testing.assert_allclose(table["e_min"].quantity.to_value("TeV"), ref["e_min"], rtol=1e-6)
    np.testing.assert_allclose(table["e_max"].quantity.to_value("TeV"), ref["e_max"], rtol=1e-6)
    dnde = table["dnde"].quantity.to_value(ref["units"]["dnde"])
    np.testing.assert_allclose(dnde, ref["dnde"], rtol=0.02)
    np.testing.assert_allclose(np.asarray(table["ts"], dtype=float), ref["ts"], rtol=0.02)
    if "dnde_err" in table.colnames:
        np.testing.assert_allclose(table["dnde_err"].quantity.to_value(ref["units"]["dnde_err"]),
                                   ref["dnde_err"], rtol=0.03)


# ----------------------------------------------------------------------------------------------
# the tutorial's plots (--plot)
# ----------------------------------------------------------------------------------------------
PLOTS = ["observation_peek", "counts", "npred_signal", "residuals_spatial", "residuals",
         "residuals_smoothed", "butterfly", "flux_points"]


def test_plots(hess_dr1, tmp_path):
    import matplotlib  # noqa: F401  (a test dependency, pyproject [test]: its absence fails, never skips)

    _require(SEED_NAMES + [("gamma_ray_dist.visualization", "plot_npred_signal")])
    from gamma_ray_dist.data import Observation
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.maps import WcsNDMap
    from gamma_ray_dist.modeling.models import PowerLawSpectralModel

    import gamma_ray_dist.visualization  # noqa: F401  (may attach the plot methods)

    needed = [(Observation, "peek"), (WcsNDMap, "plot"), (WcsNDMap, "plot_grid"), (WcsNDMap, "smooth"),
              (MapDataset, "plot_residuals_spatial"), (MapDataset, "plot_residuals"),
              (MapDataset, "residuals"), (PowerLawSpectralModel, "plot"),
              (PowerLawSpectralModel, "plot_error")]
    missing = [f"{cls.__module__}.{cls.__name__}.{name}" for cls, name in needed if not hasattr(cls, name)]
    assert not missing, "plot methods the seed tutorial calls are missing: " + ", ".join(missing)
    ns = _run_script(hess_dr1, tmp_path, "--plot")
    for name in PLOTS:
        png = tmp_path / "analysis_2" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, name
    assert hasattr(ns["flux_points"], "plot")
