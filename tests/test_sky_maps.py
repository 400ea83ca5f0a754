"""Sky maps: TS and excess maps against gammapy (side by side), FITS compatibility, bit-identity over
tilings and backends, bad input, config and pipeline."""
from __future__ import annotations

import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest
from astropy import units as u

from tests.helpers import seed_best_fit_dataset

from gamma_ray_dist.estimators import EstimatorInputError, ExcessMapEstimator, FluxMaps, TSMapEstimator

TS_KW = dict(kernel_width="0.5 deg", energy_edges=[1, 10] * u.TeV)


def _bkg_only(reference_dir, seed_reference, library):
    ds = seed_best_fit_dataset(reference_dir / "crab_stacked_gammapy.fits.gz", seed_reference, library=library)
    ds.models = [m for m in ds.models if m.name.endswith("-bkg")]
    return ds


@pytest.fixture(scope="module")
def ours(reference_dir, seed_reference):
    return _bkg_only(reference_dir, seed_reference, "gamma_ray_dist")


@pytest.fixture(scope="module")
def theirs(reference_dir, seed_reference):
    pytest.importorskip("gammapy")
    return _bkg_only(reference_dir, seed_reference, "gammapy")


@pytest.fixture(scope="module")
def ts_pair(ours, theirs):
    import gammapy.estimators as ge

    return ge.TSMapEstimator(**TS_KW).run(theirs), TSMapEstimator(**TS_KW).run(ours)


def _pixels(sqrt_ts):
    """Chosen pixels: the maximum, a 5-sigma shoulder, a background pixel, a negative one."""
    s = np.asarray(sqrt_ts)[0]
    iy, ix = np.unravel_index(np.nanargmax(s), s.shape)
    shoulder = np.unravel_index(np.nanargmin(np.abs(s - 5)), s.shape)
    neg = np.unravel_index(np.nanargmin(s), s.shape)
    return [(iy, ix), shoulder, (10, 10), neg]


def _parity(gp, us, flux_tol=0.02):
    sa, sb = np.asarray(gp.sqrt_ts.data, float), np.asarray(us.sqrt_ts.data, float)
    assert np.nanargmax(sa) == np.nanargmax(sb)
    for p in _pixels(sa):
        a, b = sa[(0,) + tuple(p)], sb[(0,) + tuple(p)]
        assert abs(a - b) <= max(0.05, 0.01 * abs(a)), (p, a, b)
    n_a, n_b = int(np.sum(sa > 5)), int(np.sum(sb > 5))
    assert abs(n_a - n_b) <= 0.01 * n_a
    fa, fb = np.asarray(gp.flux.data, float), np.asarray(us.flux.data, float)
    sig = sa > 3
    assert np.allclose(fb[sig], fa[sig], rtol=flux_tol)
    assert gp.flux.unit == us.flux.unit


@pytest.mark.slow
def test_ts_map_parity_with_gammapy(ts_pair):
    gp, us = ts_pair
    _parity(gp, us)
    assert np.array_equal(np.isnan(gp.ts.data), np.isnan(us.ts.data))
    assert np.array_equal(gp.niter.data, us.niter.data, equal_nan=True)
    np.testing.assert_allclose(us.norm_err.data, gp.norm_err.data, rtol=1e-3)
    np.testing.assert_allclose(us.npred.data, gp.npred.data, rtol=1e-4)


def test_excess_map_parity_with_gammapy(ours, theirs):
    import gammapy.estimators as ge

    kw = dict(correlation_radius="0.1 deg", selection_optional="all")
    gp, us = ge.ExcessMapEstimator(**kw).run(theirs), ExcessMapEstimator(**kw).run(ours)
    _parity(gp, us, flux_tol=1e-3)
    for q in ("npred_excess", "norm_err", "norm_errn", "norm_errp", "norm_ul"):
        np.testing.assert_allclose(us._data[q].data, getattr(gp, q).data, rtol=1e-3, atol=1e-3)


def test_gammapy_reads_our_flux_maps(ours, tmp_path, monkeypatch):
    ge = pytest.importorskip("gammapy.estimators")

    us = TSMapEstimator(kernel_width="0.3 deg", selection_optional=["ul"]).run(_small(ours))
    us.write(tmp_path / "ts.fits.gz")
    monkeypatch.chdir(tmp_path.parent)
    back = ge.FluxMaps.read(tmp_path / "ts.fits.gz")
    assert {"ts", "norm", "norm_err", "norm_ul", "npred", "npred_excess", "niter"} <= set(back.available_quantities)
    np.testing.assert_array_equal(back.sqrt_ts.data, us.sqrt_ts.data)
    np.testing.assert_allclose(back.flux.data, us.flux.data, rtol=1e-12)
    ours_back = FluxMaps.read(tmp_path / "ts.fits.gz")
    np.testing.assert_array_equal(ours_back.ts.data, us.ts.data)


# --- bit-identity over tilings and backends ------------------------------------------------------
class PoolBackend:
    """Test backend: jobs on 2 processes; ``shuffle`` submits in random order."""

    def __init__(self, shuffle=False):
        self.cpus = 2
        self.shuffle = shuffle

    def map(self, fn, jobs, shared=None):
        order = list(range(len(jobs)))
        if self.shuffle:
            random.Random(3).shuffle(order)
        with ProcessPoolExecutor(2) as pool:
            futures = {i: pool.submit(fn, shared, jobs[i]) for i in order}
            return [futures[i].result() for i in range(len(jobs))]


def _small(ours):
    """A 40x40 cut of the seed dataset (keeps the test quick)."""
    return ours.cutout(ours.counts.geom.center_skydir, width=0.8 * u.deg)


def test_ts_map_bit_identical_over_tiles_and_backends(ours):
    ds = _small(ours)
    kw = dict(kernel_width="0.3 deg", selection_optional="all", energy_edges=[1, 3, 10] * u.TeV)
    ref = TSMapEstimator(tile_size=64, **kw).run(ds)
    runs = [TSMapEstimator(tile_size=7, **kw).run(ds),
            TSMapEstimator(tile_size=5, **kw).run(ds, backend=PoolBackend()),
            TSMapEstimator(tile_size=13, **kw).run(ds, backend=PoolBackend(shuffle=True))]
    for other in runs:
        for name in ref.available_quantities:
            assert np.array_equal(ref._data[name].data, other._data[name].data, equal_nan=True), name


def test_ts_map_downsampling_and_threshold_run(ours):
    ds = _small(ours)
    m = TSMapEstimator(kernel_width="0.3 deg", downsampling_factor=2, threshold=1).run(ds)
    assert m.ts.data.shape == (1, 40, 40)
    assert np.nanmax(m.sqrt_ts.data) > 10


# --- bad input --------------------------------------------------------------------------------
def test_no_counts_is_a_clear_error(ours):
    ds = _small(ours)
    ds.counts.data = np.zeros_like(ds.counts.data)
    for est in (TSMapEstimator(kernel_width="0.3 deg"), ExcessMapEstimator()):
        with pytest.raises(EstimatorInputError, match="no counts"):
            est.run(ds)


def test_kernel_wider_than_map_is_a_clear_error(ours):
    ds = _small(ours)
    with pytest.raises(EstimatorInputError, match="wider than the map"):
        TSMapEstimator(kernel_width="2 deg").run(ds)
    with pytest.raises(EstimatorInputError, match="wider than the map"):
        ExcessMapEstimator(correlation_radius="1 deg").run(ds)


def test_energy_range_outside_dataset_is_a_clear_error(ours):
    ds = _small(ours)
    for est in (TSMapEstimator(kernel_width="0.3 deg", energy_edges=[20, 50] * u.TeV),
                ExcessMapEstimator(energy_edges=[0.1, 0.5] * u.TeV)):
        with pytest.raises(EstimatorInputError, match="outside the dataset"):
            est.run(ds)


def test_unsupported_options_are_named():
    with pytest.raises(EstimatorInputError, match="scan"):
        TSMapEstimator(selection_optional=["scan"])
    with pytest.raises(EstimatorInputError, match="n_sigma_sensitivity"):
        TSMapEstimator(n_sigma_sensitivity=0)
    with pytest.raises(EstimatorInputError, match="power of 2"):
        TSMapEstimator(downsampling_factor=3)


# --- config and pipeline ------------------------------------------------------------------------
def test_config_and_pipeline(ours, reference_dir, seed_reference, tmp_path):
    import yaml
    from pathlib import Path

    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.pipeline.sky_maps import run_sky_maps

    base = yaml.safe_load((Path(__file__).parents[1] / "examples" / "crab_3d.yaml").read_text())
    base.pop("excess_map", None)
    cfg = AnalysisConfig.from_dict(dict(base, excess_map={"correlation_radius": "0.1 deg"},
                                        ts_map={"kernel_width": "0.3 deg", "selection_optional": ["ul"]}))
    assert cfg.excess_map.requested and cfg.ts_map.requested
    assert AnalysisConfig.from_yaml(cfg.to_yaml()).ts_map == cfg.ts_map
    full = seed_best_fit_dataset(reference_dir / "crab_stacked_gammapy.fits.gz", seed_reference)
    out = run_sky_maps(full, cfg, out_dir=tmp_path)
    assert (tmp_path / "excess_map.fits.gz").exists() and (tmp_path / "ts_map.fits.gz").exists()
    assert "norm_ul" in out["ts_map"].available_quantities
    assert [name for name, _ in out["source_positions"]] == ["crab"]
    stats = out["significance"]["ts_map"]
    assert stats["n"] > 5000 and abs(stats["mean"]) < 0.2 and 0.8 < stats["sigma"] < 1.3
    assert not AnalysisConfig.from_dict(base).ts_map.requested


def test_pixel_fits_do_not_depend_on_the_other_pixels():
    """A pixel's packed sums and fit are the same whichever pixels share its chunks (subsets,
    permutations, widths of the other windows): bit for bit."""
    from gamma_ray_dist.estimators.map.ts import TSOptions, ts_pixels

    rng = np.random.default_rng(1)
    n, length = 700, 300
    b = rng.uniform(0.01, 0.2, (n, length))
    m = rng.uniform(0, 1, (n, length)) * 10.0 ** rng.integers(-6, 1, (n, length))
    lam = b + rng.uniform(0, 3, (n, 1)) * m
    c = rng.poisson(lam * rng.uniform(0.05, 1, (n, 1))).astype(float)  # windows of very different fill
    opts = TSOptions(ul=True, errn_errp=True)
    ref = ts_pixels(c, b, m, np.ones(n), opts)
    assert np.mean(ref["success"]) > 0.99 and np.nanmax(ref["ts"]) > 25
    for sel in (rng.permutation(n), np.arange(0, n, 3), np.arange(n)[::-1][:300]):
        got = ts_pixels(c[sel], b[sel], m[sel], np.ones(sel.size), opts)
        for name, values in ref.items():
            assert np.array_equal(values[sel], got[name], equal_nan=True), name


def test_ts_map_default_jobs_follow_the_backend(ours):
    """Default jobs: one in-process, one per CPU of about equal cost on a parallel backend; same maps."""
    from gamma_ray_dist.estimators.map import ts as ts_module

    ds = _small(ours)
    est = TSMapEstimator(kernel_width="0.3 deg")
    shared, info = est.prepare(ds)
    assert len(est._jobs(shared, info, None)) == 1
    jobs = est._jobs(shared, info, PoolBackend())
    assert len(jobs) == 2 and sum(len(iy) for _, iy, _ in jobs) == int(info["mask2d"][0].sum())
    assert len(ts_module.ts_balanced_jobs(info["mask2d"], [shared["groups"][0]["n_positive"]], 225, 4)) == 4
    ref, par = est.run(ds), est.run(ds, backend=PoolBackend())
    for name in ref.available_quantities:
        assert np.array_equal(ref._data[name].data, par._data[name].data, equal_nan=True), name
    assert ts_module.ts_tile_jobs(info["mask2d"], 64)[0][1].size == info["mask2d"][0].sum()


def test_the_cli_writes_the_sky_maps_and_their_figures(hess_dr1, tmp_path):
    """`excess_map` / `ts_map` in the config: the run writes both maps (read back as `FluxMaps`) and the
    report draws the significance map and its distribution outside the exclusions, close to N(0, 1)."""
    import json

    import yaml

    from gamma_ray_dist.cli import main

    from .test_cli import CONFIG, MODELS

    cfg = yaml.safe_load(CONFIG.read_text().replace("$GAMMAPY_DATA/hess-dl3-dr1", str(hess_dr1)))
    cfg["excess_map"] = {"correlation_radius": "0.1 deg"}
    cfg["ts_map"] = {"kernel_width": "0.3 deg"}
    path = tmp_path / "sky.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    assert main(["run", str(path), "--models", str(MODELS), "--serial", "--no-progress", "--out", str(out)]) == 0
    for name in ("excess_map", "ts_map"):
        maps = FluxMaps.read(out / f"{name}.fits.gz")
        assert np.nanmax(maps.sqrt_ts.data) > 20  # the Crab
    for figure in ("significance_map.png", "significance_distribution.png"):
        assert (out / figure).stat().st_size > 10_000
    report = (out / "report.md").read_text()
    line = next(row for row in report.splitlines() if "(TS map)" in row and "fitted Gaussian" in row)
    mean = float(line.split("mean ")[1].split(",")[0])
    width = float(line.split("width ")[1].split(" ")[0])
    assert abs(mean) < 0.2 and 0.8 < width < 1.3, line
    assert json.loads((out / "reduction.json").read_text())["timings"]["sky_maps"] > 0


# --- optional quantities: likelihood scan and sensitivity ------------------------------------------
SCAN_KW = dict(kernel_width="0.3 deg", selection_optional=["stat_scan", "sensitivity"])


def _window_arrays(ds, n_pick=24):
    """Counts, background and model of the kernel windows of some pixels of ``ds`` (our shared inputs):
    the brightest pixel, its neighbours and random ones."""
    from gamma_ray_dist.estimators.map.ts import _windows, full_rows

    est = TSMapEstimator(**SCAN_KW)
    shared, info = est.prepare(ds)
    grp = shared["groups"][0]
    iy, ix = np.nonzero(info["mask2d"][0])
    rng = np.random.default_rng(5)
    top = np.argmax(grp["n_positive"][iy, ix])
    sel = np.unique(np.concatenate([[top], np.clip(top + np.arange(-3, 4), 0, iy.size - 1),
                                    rng.choice(iy.size, n_pick, replace=False)]))
    iy, ix = iy[sel], ix[sel]
    b, m = full_rows(grp, iy, ix)
    c = _windows(grp["counts"], grp["kernel"].shape[-2:], iy, ix).reshape(len(iy), -1)
    return c, b, m, shared["options"]


def test_stat_scan_and_sensitivity_match_gammapy_pixel_by_pixel(ours):
    """The scan, its estimates and the sensitivity against gammapy's per-pixel estimator on the same
    kernel-window arrays of the seed dataset (the algorithm side by side, without map differences)."""
    gts = pytest.importorskip("gammapy.estimators.map.ts")
    from gammapy.estimators.utils import _generate_scan_values, _get_default_norm

    from gamma_ray_dist.estimators.map.ts import ts_pixels

    c, b, m, opts = _window_arrays(_small(ours))
    us = ts_pixels(c, b, m, np.ones(len(c)), opts)
    fe = gts.BrentqFluxEstimator(rtol=opts.rtol, n_sigma=1, n_sigma_ul=2, n_sigma_sensitivity=5,
                                 selection_optional=["stat_scan", "sensitivity"], max_niter=100,
                                 norm=_get_default_norm(None, scan_values=_generate_scan_values(), interp="log"))
    n_detected = 0
    for i in range(len(c)):
        valid = ~((c[i] == 0) & (b[i] == 0) & (m[i] == 0))  # gammapy drops these entries
        gp = fe.run(gts.SimpleMapDataset(model=m[i][valid], counts=c[i][valid], background=b[i][valid],
                                         norm_guess=1.0))
        np.testing.assert_allclose(us["dnde_scan_values"][i], gp["dnde_scan_values"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(us["stat_scan"][i], gp["stat_scan"], rtol=1e-9, atol=1e-8)
        # norms picked on the scan grid: the same nodes
        for q in ("norm", "norm_ul", "norm_errn", "norm_errp", "norm_err"):
            np.testing.assert_allclose(us[q][i], gp[q], rtol=1e-9, atol=1e-12, err_msg=q)
        np.testing.assert_allclose(us["ts"][i], gp["ts"], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(us["stat"][i], gp["stat"], rtol=1e-9)
        np.testing.assert_allclose(us["npred"][i], gp["npred"], rtol=1e-9)
        # sensitivity: same Brent, sqrt(ts) for gammapy's ncx2 round trip (agrees to ~1e-8)
        assert np.isnan(us["norm_sensitivity"][i]) == np.isnan(gp["norm_sensitivity"])
        if np.isfinite(gp["norm_sensitivity"]):
            np.testing.assert_allclose(us["norm_sensitivity"][i], gp["norm_sensitivity"], rtol=1e-8)
            n_detected += 1
    assert n_detected >= 5


def test_stat_scan_and_sensitivity_maps_and_fits(ours, tmp_path, monkeypatch):
    """Layout as gammapy's (``dnde_bin`` axis first), serial == tiled == processes bit for bit, and the
    FITS file read back by gammapy's ``FluxMaps.read`` and ours."""
    ds = _small(ours)
    kw = dict(SCAN_KW, energy_edges=[1, 3, 10] * u.TeV)
    ref = TSMapEstimator(**kw).run(ds)
    assert ref.stat_scan.geom.axes.names == ["dnde_bin", "energy"]
    assert ref.stat_scan.data.shape == (2, 109, 40, 40)
    assert ref.dnde_scan_values.unit == u.Unit("cm-2 s-1 TeV-1")
    assert {"norm_sensitivity", "norm_ul", "norm_errn", "norm_errp"} <= set(ref.available_quantities)
    assert np.sum(np.isfinite(ref.norm_sensitivity.data)) > 100
    for other in (TSMapEstimator(tile_size=9, **kw).run(ds),
                  TSMapEstimator(tile_size=13, **kw).run(ds, backend=PoolBackend(shuffle=True))):
        for name in ref.available_quantities:
            assert np.array_equal(ref._data[name].data, other._data[name].data, equal_nan=True), name
    ref.write(tmp_path / "scan.fits.gz")
    back = FluxMaps.read(tmp_path / "scan.fits.gz")
    np.testing.assert_array_equal(back.stat_scan.data, ref.stat_scan.data)
    ge = pytest.importorskip("gammapy.estimators")
    monkeypatch.chdir(tmp_path.parent)
    gp = ge.FluxMaps.read(tmp_path / "scan.fits.gz")
    np.testing.assert_array_equal(gp.stat_scan.data, ref.stat_scan.data)
    np.testing.assert_allclose(gp.dnde_scan_values.data, ref.dnde_scan_values.data, rtol=1e-12)
    np.testing.assert_allclose(gp.flux_sensitivity.data, ref.flux_sensitivity.data, rtol=1e-12, equal_nan=True)


@pytest.mark.slow
def test_stat_scan_and_sensitivity_maps_match_gammapy(ours, theirs):
    """Maps side by side with gammapy's TSMapEstimator (60x60 cut of the seed dataset): within the
    fitted maps' own parity (Brent stops at rtol = 1 %: the scan's sparse norms follow the fitted norm
    and its error) and the scan grid's 1 % steps."""
    import gammapy.estimators as ge

    cut = dict(position=ours.counts.geom.center_skydir, width=1.2 * u.deg)
    us = TSMapEstimator(**SCAN_KW).run(ours.cutout(**cut))
    gp = ge.TSMapEstimator(**SCAN_KW).run(theirs.cutout(**cut))
    _parity(gp, us)
    for q in ("norm_sensitivity", "norm_ul", "npred"):
        a, b = np.asarray(getattr(gp, q).data), np.asarray(us._data[q].data)
        assert np.array_equal(np.isnan(a), np.isnan(b)), q
        np.testing.assert_allclose(b, a, rtol=2e-2, equal_nan=True, err_msg=q)
    # the profiles at the sparse norms both scans share exactly (-10..10 in steps of 1, -100, 100; the
    # others follow each library's fitted norm): the datasets' own differences (median 2e-4)
    xa, sa = np.asarray(gp.dnde_scan_values.data)[0], np.asarray(gp.stat_scan.data)[0]
    xb, sb = np.asarray(us.dnde_scan_values.data)[0], np.asarray(us.stat_scan.data)[0]
    ny, nx = sa.shape[-2:]
    worst = []
    for iy in range(ny):
        for ix in range(nx):
            common, ia, ib = np.intersect1d(xa[:, iy, ix], xb[:, iy, ix], return_indices=True)
            assert len(common) >= 23
            a, b = sa[ia, iy, ix], sb[ib, iy, ix]
            worst.append(np.max(np.abs(a - b) / (1 + np.abs(a))))
    assert np.median(worst) < 1e-3 and np.percentile(worst, 99) < 5e-2


def test_config_takes_the_scan_options_for_the_ts_map_only():
    from pathlib import Path

    import yaml

    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.errors import ConfigError

    base = yaml.safe_load((Path(__file__).parents[1] / "examples" / "crab_3d.yaml").read_text())
    base.pop("excess_map", None)
    sel = ["stat_scan", "sensitivity"]
    cfg = AnalysisConfig.from_dict(dict(base, ts_map={"selection_optional": sel}))
    assert list(cfg.ts_map.estimator_kwargs()["selection_optional"]) == sel
    with pytest.raises(ConfigError, match="excess_map.parameters.selection_optional"):
        AnalysisConfig.from_dict(dict(base, excess_map={"parameters": {"selection_optional": sel}}))


def test_pixel_fits_with_negative_background_match_gammapy():
    """The general path (some background bins < 0: truncated npred sums over the full windows at every
    norm) against gammapy's per-pixel estimator on the same arrays: fit, errors, limit, sensitivity."""
    gts = pytest.importorskip("gammapy.estimators.map.ts")
    from gammapy.estimators.utils import _generate_scan_values, _get_default_norm

    from gamma_ray_dist.estimators.map.ts import TSOptions, ts_pixels

    rng = np.random.default_rng(2)
    n, length = 30, 200
    b = rng.uniform(-0.02, 0.2, (n, length))
    m = rng.uniform(0, 1, (n, length)) * 10.0 ** rng.integers(-3, 1, (n, length))
    c = rng.poisson(np.clip(b, 0, None) + rng.uniform(0, 2, (n, 1)) * m).astype(float)
    us = ts_pixels(c, b, m, np.ones(n), TSOptions(ul=True, errn_errp=True, sensitivity=True))
    fe = gts.BrentqFluxEstimator(rtol=0.01, n_sigma=1, n_sigma_ul=2, max_niter=100,
                                 selection_optional=["ul", "errn-errp", "sensitivity"],
                                 norm=_get_default_norm(None, scan_values=_generate_scan_values(), interp="log"))
    for i in range(n):
        gp = fe.run(gts.SimpleMapDataset(model=m[i], counts=c[i], background=b[i], norm_guess=1.0))
        assert us["niter"][i] == gp["niter"]
        for q in ("ts", "norm", "norm_err", "norm_ul", "norm_errn", "norm_errp", "norm_sensitivity", "stat"):
            np.testing.assert_allclose(us[q][i], gp[q], rtol=1e-9, atol=1e-12, err_msg=q)
