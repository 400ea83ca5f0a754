"""Plots of the seed workflow rendered to PNG (Agg) and checked as images; the numbers behind them;
the missing-matplotlib error."""
from __future__ import annotations

import sys

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.table import Table

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

from gamma_ray_dist import visualization as vis  # noqa: E402

DPI = 40


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def check_png(fig, path, dpi=DPI):
    """Save ``fig`` to ``path`` and check the PNG: expected pixel size, more than one colour."""
    fig.savefig(path, dpi=dpi)
    image = mpimg.imread(path)
    width, height = fig.get_size_inches() * dpi
    assert image.shape[:2] == (int(round(height)), int(round(width)))
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    flat = image.reshape(-1, image.shape[2])
    assert np.unique(flat[:: max(1, flat.shape[0] // 20000)], axis=0).shape[0] > 10, "image is (nearly) one colour"
    return image


# ---- fixtures: the seed's stacked dataset with the best-fit models ---------------------------
@pytest.fixture(scope="module")
def stacked(reference_dir, seed_reference):
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.modeling.models import (
        FoVBackgroundModel,
        PointSpatialModel,
        PowerLawSpectralModel,
        SkyModel,
    )

    dataset = MapDataset.read(reference_dir / "crab_stacked_gammapy.fits.gz")
    fit = {(p["model"].endswith("bkg"), p["name"]): p for p in seed_reference["fit"]["parameters"]}
    spectral = PowerLawSpectralModel(index=fit[False, "index"]["value"],
                                     amplitude=fit[False, "amplitude"]["value"] * u.Unit("cm-2 s-1 TeV-1"),
                                     reference=1 * u.TeV)
    spatial = PointSpatialModel(lon_0=fit[False, "lon_0"]["value"] * u.deg,
                                lat_0=fit[False, "lat_0"]["value"] * u.deg, frame="icrs")
    for model in (spectral, spatial):
        for par in model.parameters:
            par.error = fit[False, par.name]["error"]
    sky = SkyModel(spatial_model=spatial, spectral_model=spectral, name="crab")
    bkg = FoVBackgroundModel(dataset_name=dataset.name)
    bkg.spectral_model.norm.value = fit[True, "norm"]["value"]
    dataset.models = [sky, bkg]
    return dataset


@pytest.fixture(scope="module")
def crab_spectrum(stacked):
    return stacked.models["crab"].spectral_model


@pytest.fixture(scope="module")
def flux_points_table(seed_reference):
    fp = seed_reference["flux_points"]
    names = ["e_ref", "e_min", "e_max", "dnde", "dnde_err", "dnde_errn", "dnde_errp", "dnde_ul", "ts", "sqrt_ts"]
    table = Table({k: np.asarray(fp[k], float) for k in names})
    for k in names:
        table[k].unit = fp["units"][k] or None
    table.meta["SED_TYPE"] = "dnde"
    return table


def _require_signal(dataset):
    try:
        signal = dataset.npred_signal(model_names=["crab"])
    except TypeError:
        pytest.skip("MapDataset.npred_signal(model_names=...) not available yet (datasets/evaluator.py)")
    if not np.asarray(signal.data).sum() > 0:
        pytest.skip("MapDataset predicts no signal yet: the evaluator is not wired")


# ---- the seed's figures ------------------------------------------------------------------------
def test_counts_image_sqrt_stretch(stacked, tmp_path):
    """stacked.counts.sum_over_axes().smooth(0.05 deg).plot(stretch="sqrt", add_cbar=True)"""
    fig = plt.figure(figsize=(6, 5))
    ax = stacked.counts.sum_over_axes().smooth(0.05 * u.deg).plot(stretch="sqrt", add_cbar=True)
    assert ax.figure is fig and hasattr(ax, "coords")  # WCSAxes on the current figure
    assert ax.coords[0].get_axislabel() == "Right Ascension"
    assert len(fig.axes) == 2  # image + colour bar
    check_png(fig, tmp_path / "counts.png")


@pytest.mark.parametrize("stretch", ["linear", "log"])
def test_plot_map_stretches_and_errors(stacked, tmp_path, stretch):
    image = stacked.exposure.sum_over_axes()
    fig = plt.figure(figsize=(4, 4))
    ax = vis.plot_map(image, stretch=stretch, add_cbar=True, cmap="viridis")
    assert ax.images[0].norm.vmax == pytest.approx(float(np.nanmax(image.data)), rel=1e-6)
    check_png(fig, tmp_path / f"exposure_{stretch}.png")
    with pytest.raises(TypeError, match="plot_grid"):
        vis.plot_map(stacked.counts)
    with pytest.raises(ValueError, match="stretch"):
        vis.plot_map(image, stretch="cubic")


def test_plot_grid_per_energy(stacked, tmp_path):
    axes = stacked.counts.plot_grid(ncols=2, stretch="sqrt")
    assert len(axes) == stacked.counts.geom.axes["energy"].nbin == 4
    assert axes[0].get_title() == "1 TeV - 1.78 TeV"
    check_png(axes[0].figure, tmp_path / "grid.png")


def test_plot_npred_signal(stacked, tmp_path):
    """plot_npred_signal(stacked)"""
    _require_signal(stacked)
    spectra = vis.npred_signal_spectra(stacked)
    assert list(spectra) == ["crab"]
    np.testing.assert_allclose(spectra["crab"], stacked.npred_signal().data.sum(axis=(1, 2)), rtol=1e-12)
    fig = plt.figure(figsize=(6, 4))
    ax = vis.plot_npred_signal(stacked)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["crab", "background"]
    check_png(fig, tmp_path / "npred_signal.png")
    with pytest.raises(ValueError, match="not source models"):
        vis.plot_npred_signal(stacked, model_names=["nope"])


def test_plot_residuals_spatial(stacked, tmp_path):
    """stacked.plot_residuals_spatial(method="diff/sqrt(model)", vmin=-0.5, vmax=0.5)"""
    _require_signal(stacked)
    fig = plt.figure(figsize=(6, 5))
    ax = stacked.plot_residuals_spatial(method="diff/sqrt(model)", vmin=-0.5, vmax=0.5)
    norm = ax.images[0].norm
    assert (norm.vmin, norm.vmax) == (-0.5, 0.5)
    check_png(fig, tmp_path / "residuals_spatial.png")
    # numbers: masked counts / npred summed over energy, smoothed separately, then combined
    res = vis.residuals_spatial_map(stacked, method="diff", smooth_radius="0.1 deg")
    mask = np.asarray(stacked.mask.data, bool)
    counts = (stacked.counts.data * mask).sum(axis=0)
    npred = (stacked.npred().data * mask).sum(axis=0)
    assert np.nansum(res.data) == pytest.approx(counts.sum() - npred.sum(), rel=0.05, abs=5)


def test_plot_residuals_with_region(stacked, tmp_path):
    """stacked.plot_residuals(kwargs_spatial=..., kwargs_spectral=dict(region=region))"""
    from regions import CircleSkyRegion

    _require_signal(stacked)
    region = CircleSkyRegion(center=SkyCoord("83.63 deg", "22.14 deg"), radius=0.5 * u.deg)
    ax_spatial, ax_spectral = stacked.plot_residuals(
        kwargs_spatial=dict(method="diff/sqrt(model)", vmin=-0.5, vmax=0.5),
        kwargs_spectral=dict(region=region),
    )
    assert ax_spatial.figure is ax_spectral.figure
    assert len(ax_spatial.patches) == 1  # the region outline
    assert ax_spectral.get_ylabel() == "Residuals (data - model)"
    check_png(ax_spatial.figure, tmp_path / "residuals.png")
    res = vis.residuals_spectral(stacked, region=region)
    inside = stacked.counts.geom.to_image().region_mask(region).data.reshape(100, 100)
    expected = (stacked.counts.data * inside).sum(axis=(1, 2)) - (stacked.npred().data * inside).sum(axis=(1, 2))
    np.testing.assert_allclose(res["residuals"], expected, rtol=1e-9)
    np.testing.assert_allclose(res["yerr"], np.sqrt(res["counts"]))
    with pytest.raises(ValueError, match="Invalid method"):
        vis.residuals_spectral(stacked, method="diff/model")


def test_butterfly(crab_spectrum, tmp_path):
    """spec.plot(...) + spec.plot_error(...) with sed_type="e2dnde" between 1 and 10 TeV"""
    if not hasattr(crab_spectrum, "evaluate_error"):
        pytest.skip("SpectralModel.evaluate_error not available yet")
    energy_bounds = [1, 10] * u.TeV
    fig, ax = plt.subplots(figsize=(8, 6))
    crab_spectrum.plot(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    crab_spectrum.plot_error(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    energy, values = ax.lines[0].get_data()
    expected = (energy * u.TeV) ** 2 * crab_spectrum(energy * u.TeV)
    np.testing.assert_allclose(values, expected.to_value("erg cm-2 s-1"), rtol=1e-10)
    assert len(energy) == 100 and energy[0] > 1 and energy[-1] < 10
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.min() < values.min() and band.max() > values.max()
    assert ax.get_xscale() == ax.get_yscale() == "log"
    check_png(fig, tmp_path / "butterfly.png")


@pytest.mark.parametrize("sed_type", ["dnde", "flux", "eflux"])
def test_spectrum_sed_types(crab_spectrum, sed_type):
    edges = np.geomspace(1, 10, 11)
    energy, values = vis.spectrum_values(crab_spectrum, [1, 10] * u.TeV, sed_type=sed_type, n_points=10,
                                         energy_power=1)
    lo, hi = edges[:-1] * u.TeV, edges[1:] * u.TeV
    expected = {"dnde": crab_spectrum(energy * u.TeV).to("cm-2 s-1 TeV-1"),
                "flux": crab_spectrum.integral(lo, hi).to("cm-2 s-1"),
                "eflux": crab_spectrum.energy_flux(lo, hi).to("erg cm-2 s-1")}[sed_type]
    np.testing.assert_allclose(values, expected.value * energy, rtol=1e-10)
    _, lower, upper = vis.spectrum_error_values(crab_spectrum, [1, 10] * u.TeV, sed_type=sed_type,
                                                n_points=10, energy_power=1, n_samples=500)
    assert np.all(lower < values) and np.all(upper > values)
    with pytest.raises(ValueError, match="SED type"):
        vis.spectrum_values(crab_spectrum, [1, 10] * u.TeV, sed_type="counts")


def test_flux_points_from_table_with_upper_limit(crab_spectrum, flux_points_table, tmp_path):
    table = flux_points_table.copy()
    table["is_ul"] = [False, False, True]
    vals = vis.flux_points_values(table, sed_type="e2dnde")
    e2 = table["e_ref"].data ** 2 * u.TeV**2
    np.testing.assert_allclose(vals["y"][:2], (e2 * table["dnde"].quantity)[:2].to_value("erg cm-2 s-1"))
    ul = (e2 * table["dnde_ul"].quantity)[2].to_value("erg cm-2 s-1")
    assert vals["y"][2] == pytest.approx(ul)
    assert vals["yerr"][0][2] == pytest.approx(0.5 * ul) and vals["yerr"][1][2] == 0
    np.testing.assert_allclose(vals["yerr"][1][:2], (e2 * table["dnde_errp"].quantity)[:2].to_value("erg cm-2 s-1"))
    fig, ax = plt.subplots(figsize=(8, 6))
    crab_spectrum.plot(ax=ax, energy_bounds=[1, 10] * u.TeV, sed_type="e2dnde")
    vis.plot_flux_points(table, ax=ax, sed_type="e2dnde")
    assert "e2dnde" in ax.get_ylabel()
    check_png(fig, tmp_path / "flux_points_table.png")


def test_seed_flux_points_figure(crab_spectrum, flux_points_table, tmp_path):
    """spec.plot + spec.plot_error + flux_points.plot(sed_type="e2dnde") with our FluxPoints"""
    estimators = pytest.importorskip("gamma_ray_dist.estimators")
    if not hasattr(estimators, "FluxPoints"):
        pytest.skip("gamma_ray_dist.estimators.FluxPoints not available yet")
    flux_points = estimators.FluxPoints.from_table(flux_points_table, reference_model=crab_spectrum.copy())
    fig, ax = plt.subplots(figsize=(8, 6))
    energy_bounds = [1, 10] * u.TeV
    crab_spectrum.plot(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    crab_spectrum.plot_error(ax=ax, energy_bounds=energy_bounds, sed_type="e2dnde")
    flux_points.plot(ax=ax, sed_type="e2dnde")
    vals = vis.flux_points_values(flux_points, sed_type="e2dnde")
    e2 = flux_points_table["e_ref"].data ** 2 * u.TeV**2
    np.testing.assert_allclose(vals["y"], (e2 * flux_points_table["dnde"].quantity).to_value("erg cm-2 s-1"),
                               rtol=1e-6)
    assert not vals["is_ul"].any()
    check_png(fig, tmp_path / "flux_points.png")


# ---- observation quick look --------------------------------------------------------------------
def test_observation_peek(hess_dr1, tmp_path):
    from gamma_ray_dist.data import DataStore

    obs = DataStore.from_dir(hess_dr1).obs(23523)
    fig = obs.peek(figsize=(15, 10))
    titles = [ax.get_title() for ax in fig.axes]
    for title in ("Events (obs 23523)", "Effective area", "Background rate", "Point spread function"):
        assert title in titles
    assert any(t.startswith("Energy dispersion") for t in titles)
    image = vis.events_counts_image(obs.events)
    # the default image is the field of view: 99 % of the events, not the few strays tens of degrees
    # away (they stretched the panel over ~100 degrees, the events a few pixels wide)
    assert 0.99 * len(obs.events) <= image.data.sum() < len(obs.events)
    assert image.geom.width.to_value("deg").max() < 15 and max(image.geom.data_shape) <= 201
    everything = vis.events_counts_image(obs.events, width=130)
    assert everything.data.sum() == len(obs.events)  # an explicit width holds them all
    check_png(fig, tmp_path / "peek.png", dpi=30)


# ---- the methods and the optional dependency ------------------------------------------------------
def test_plot_methods_defined_on_classes():
    """The gammapy-named plot methods belong to the classes (no patching at import time)."""
    from gamma_ray_dist.data import Observation
    from gamma_ray_dist.datasets import MapDataset
    from gamma_ray_dist.estimators import FluxPoints
    from gamma_ray_dist.maps import WcsNDMap
    from gamma_ray_dist.modeling.models import SpectralModel

    methods = {WcsNDMap: ("plot", "plot_grid"), Observation: ("peek",),
               MapDataset: ("plot_residuals_spatial", "plot_residuals_spectral", "plot_residuals",
                            "plot_npred_signal"),
               SpectralModel: ("plot", "plot_error"), FluxPoints: ("plot",)}
    for cls, names in methods.items():
        for name in names:
            method = cls.__dict__.get(name)
            assert callable(method), f"{cls.__name__}.{name}"
            assert method.__module__ == cls.__module__, f"{cls.__name__}.{name} is defined in {method.__module__}"
            assert method.__doc__, f"{cls.__name__}.{name} has no docstring"
    assert not hasattr(vis, "install_plot_methods")


def test_missing_matplotlib_error(stacked, crab_spectrum, monkeypatch):
    image = stacked.counts.sum_over_axes()
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    for call in (lambda: image.plot(), lambda: vis.plot_npred_signal(stacked),
                 lambda: crab_spectrum.plot([1, 10] * u.TeV)):
        with pytest.raises(ImportError, match=r"pip install gamma_ray_dist\[plot\]"):
            call()
