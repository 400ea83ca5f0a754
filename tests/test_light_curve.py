"""LightCurveEstimator vs gammapy 2.1 on H.E.S.S. DR1 PKS 2155-304 (2006 flare), file formats, backends,
bad input, config section, figure.

Default tests: 3 runs (33787-33789) on a coarse geometry (0.04 deg, 2 energy bins), reduced by each
library with its own makers (tests/light_curve_setup.py), one time bin per run, 0.7-10 TeV in one bin.
Slow test: the 21 PKS 2155-304 runs of DR1 (33787-33801 of the 2006 flare, 47802-47804, 47827-47829) on the fit-target geometry (0.02 deg, 6 bins), errn-errp and ul.

Tolerances (the brief's): flux within 2 % of its error of gammapy's, flux errors (symmetric and
asymmetric) within 3 %, TS within 2 %; the upper limit within 2 % of the flux error. Measured (print
with -s): 3 runs, flux within 1.5e-4 of its error, errors and TS within 6e-5; 21 runs, flux within
7.6e-4 of its error, errors within 7.9e-5, TS within 4.7e-4.
"""
from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from astropy import units as u
from astropy.time import Time

from gamma_ray_dist.estimators import FluxPoints, LightCurveEstimator
from gamma_ray_dist.estimators.map import EstimatorInputError
from gamma_ray_dist.modeling.dataset import Datasets

from .light_curve_setup import PKS_RUNS, as_arrays, lib, per_run_datasets, run_intervals

EDGES = [0.7, 10] * u.TeV
QUICK_RUNS = PKS_RUNS[:3]


def _gammapy_light_curve(datasets, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return lib("gammapy").LightCurveEstimator(**kwargs).run(datasets)


def _compare(ours, theirs, flux_tol=0.02, err_tol=0.03, ts_tol=0.02):
    a, b = as_arrays(theirs), as_arrays(ours)
    assert np.all(np.isfinite(a["flux"])) and np.all(np.isfinite(b["flux"]))
    assert np.all(np.abs(b["flux"] - a["flux"]) <= flux_tol * a["flux_err"]), (b["flux"] - a["flux"]) / a["flux_err"]
    for key in ("flux_err", "flux_errn", "flux_errp"):
        if key in a:
            np.testing.assert_allclose(b[key], a[key], rtol=err_tol, err_msg=key)
    if "flux_ul" in a:
        assert np.all(np.abs(b["flux_ul"] - a["flux_ul"]) <= flux_tol * a["flux_err"])
    np.testing.assert_allclose(b["ts"], a["ts"], rtol=ts_tol)
    print("\nflux ratio", b["flux"] / a["flux"], "\nflux diff / err", (b["flux"] - a["flux"]) / a["flux_err"],
          "\nerr ratio", b["flux_err"] / a["flux_err"], "\nts ratio", b["ts"] / a["ts"])


@pytest.fixture(scope="module")
def quick(hess_dr1):
    pytest.importorskip("gammapy")
    gp_ds = per_run_datasets(lib("gammapy"), hess_dr1, QUICK_RUNS, binsz=0.04, nbin=2)
    ours_ds = per_run_datasets(lib("ours"), hess_dr1, QUICK_RUNS, binsz=0.04, nbin=2)
    kwargs = dict(energy_edges=EDGES, source="pks2155", selection_optional=["ul"])
    theirs = _gammapy_light_curve(gp_ds, time_intervals=run_intervals(gp_ds), **kwargs)
    ours = LightCurveEstimator(time_intervals=run_intervals(ours_ds), **kwargs).run(ours_ds)
    return dict(gp_ds=gp_ds, ds=ours_ds, theirs=theirs, ours=ours, kwargs=kwargs)


# --- parity with gammapy -----------------------------------------------------------------------------
def test_quick_light_curve_matches_gammapy(quick):
    ours, theirs = quick["ours"], quick["theirs"]
    assert ours.has_time_axis and len(ours.time_min) == len(QUICK_RUNS)
    gp_axis = theirs.geom.axes["time"]
    np.testing.assert_allclose(ours.time_min.tt.mjd, gp_axis.time_min.tt.mjd, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.time_max.tt.mjd, gp_axis.time_max.tt.mjd, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.energy_min.to_value("TeV"), theirs.energy_min.to_value("TeV"), rtol=1e-9)
    _compare(ours, theirs)
    np.testing.assert_array_equal(ours.is_ul, theirs.is_ul.data.reshape(ours.is_ul.shape))
    # per-run counts: each bin holds exactly its run (gammapy: NaN for the other runs' columns)
    np.testing.assert_array_equal(ours.counts, theirs.counts.data.reshape(ours.counts.shape))


def test_default_intervals_are_the_gtis(quick):
    """No time_intervals: one bin per GTI of the datasets, as gammapy (same bins as the explicit runs)."""
    ours = LightCurveEstimator(energy_edges=EDGES, source="pks2155").run(quick["ds"])
    np.testing.assert_array_equal(ours.time_min.tt.mjd, quick["ours"].time_min.tt.mjd)
    np.testing.assert_array_equal(ours.norm, quick["ours"].norm)


# --- files ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["ecsv", "fits"])
@pytest.mark.parametrize("sed_type", ["likelihood", "flux"])
def test_light_curve_files_both_ways(quick, tmp_path, ext, sed_type):
    """Ours written, read by gammapy; gammapy's written, read by us: the same table back.

    A likelihood table's reference model is rebuilt from its single ``ref_dnde`` point by a reader
    (gammapy's and ours), so ``ref_flux``/``ref_eflux`` are only compared for the "flux" tables.
    """
    from gammapy.estimators import FluxPoints as GPFluxPoints

    ours, theirs = quick["ours"], quick["theirs"]
    ours.write(tmp_path / f"ours.{ext}", format="lightcurve", sed_type=sed_type)
    theirs.write(tmp_path / f"theirs.{ext}", format="lightcurve", sed_type=sed_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gp_read = GPFluxPoints.read(tmp_path / f"ours.{ext}", format="lightcurve")
    our_read = FluxPoints.read(tmp_path / f"theirs.{ext}")  # format guessed from time_min
    assert our_read.has_time_axis and our_read.sed_type_init == sed_type
    skip = {"ref_flux", "ref_eflux"} if sed_type == "likelihood" else set()
    for a, b in ((gp_read, ours), (our_read, theirs)):
        ta, tb = a.to_table(format="lightcurve", sed_type=sed_type), b.to_table(format="lightcurve", sed_type=sed_type)
        assert ta.colnames == tb.colnames
        assert ta.meta == tb.meta
        for name in ta.colnames:
            assert ta[name].shape == tb[name].shape, name
            assert (ta[name].unit or "") == (tb[name].unit or ""), name
            if name in skip:
                continue
            if ta[name].dtype.kind == "f":
                np.testing.assert_allclose(np.asarray(ta[name]), np.asarray(tb[name]), rtol=1e-12, err_msg=name)
            else:
                np.testing.assert_array_equal(np.asarray(ta[name]), np.asarray(tb[name]), err_msg=name)
    assert our_read.time_min.isot.tolist() == theirs.geom.axes["time"].time_min.isot.tolist()


# --- backends: same bits ------------------------------------------------------------------------------
class _PickledReversedBackend:
    """Runs the jobs out of order on pickled copies (what a worker process sees), results in job order."""

    def map(self, fn, jobs, shared=None):
        shared = pickle.loads(pickle.dumps(shared))
        jobs = [pickle.loads(pickle.dumps(j)) for j in jobs]
        out = {i: fn(shared, jobs[i]) for i in reversed(range(len(jobs)))}
        return [pickle.loads(pickle.dumps(out[i])) for i in range(len(jobs))]


def _assert_bits(a: FluxPoints, b: FluxPoints) -> None:
    assert a._data.keys() == b._data.keys()
    for key in a._data:
        assert np.asarray(a._data[key]).tobytes() == np.asarray(b._data[key]).tobytes(), key


def test_results_do_not_depend_on_the_backend(quick):
    from gamma_ray_dist.distributed.backend import SerialBackend

    kwargs = dict(quick["kwargs"], selection_optional="all")
    inline = LightCurveEstimator(**kwargs).run(quick["ds"])
    serial = LightCurveEstimator(backend=SerialBackend(progress=False), **kwargs).run(quick["ds"])
    other = LightCurveEstimator(**kwargs).run(quick["ds"], backend=_PickledReversedBackend())
    _assert_bits(inline, serial)
    _assert_bits(inline, other)
    # a job without its datasets takes them by name from the shared Datasets: same rows
    from dataclasses import replace

    from gamma_ray_dist.estimators import run_light_curve_job

    job = LightCurveEstimator(**kwargs).jobs(quick["ds"])[1]
    by_name = run_light_curve_job(quick["ds"], replace(job, datasets=None))
    own = run_light_curve_job(None, job)
    assert [r["norm"] for r in by_name] == [r["norm"] for r in own] == list(inline.norm[1])
    assert "stat_scan" in inline._data and "norm_errp" in inline._data


@pytest.mark.slow
def test_ray_backend_gives_the_same_bits(quick, ray_session):
    from gamma_ray_dist.distributed.backend import RayBackend

    serial = LightCurveEstimator(**quick["kwargs"]).run(quick["ds"])
    with RayBackend(progress=False) as backend:
        ray = LightCurveEstimator(**quick["kwargs"]).run(quick["ds"], backend=backend)
    _assert_bits(serial, ray)


def test_reoptimize_fits_the_background_norms(quick):
    """reoptimize=True: the free background norms are re-fitted per bin (the generic path); the datasets'
    models are left as they were."""
    ds = quick["ds"]
    for m in ds.models:
        if m.name.endswith("-bkg"):
            m.spectral_model.norm.frozen = False
    before = [p.value for p in ds.models.parameters]
    try:
        lc = LightCurveEstimator(reoptimize=True, **quick["kwargs"]).run(ds)
    finally:
        for m in ds.models:
            if m.name.endswith("-bkg"):
                m.spectral_model.norm.frozen = True
    assert [p.value for p in ds.models.parameters] == before
    assert np.all(np.isfinite(lc.norm)) and np.all(lc.success)
    # same problem to within the background fit: close to the frozen result
    np.testing.assert_allclose(lc.norm, quick["ours"].norm, rtol=0.1)


# --- bad input ---------------------------------------------------------------------------------------
def _interval(ds, i):
    return run_intervals(ds)[i]


def test_interval_without_data_is_a_marked_empty_bin(quick, caplog):
    ds = quick["ds"]
    t0, t1 = _interval(ds, 0)
    gap = (t1 + 1 * u.h, t1 + 2 * u.h)
    intervals = [(t0, t1), gap]
    if gap[1] > _interval(ds, 1)[0]:  # the runs are consecutive: put the empty bin after the last one
        last = _interval(ds, len(ds) - 1)
        intervals = [(t0, t1), (last[1] + 1 * u.h, last[1] + 2 * u.h)]
    with caplog.at_level("WARNING"):
        lc = LightCurveEstimator(time_intervals=intervals, **quick["kwargs"]).run(ds)
    assert "no dataset in time interval 1" in caplog.text
    assert len(lc.time_min) == 2
    assert np.isfinite(lc.norm[0]).all() and lc.success[0].all()
    assert np.isnan(lc.norm[1]).all() and not lc.success[1].any()
    assert np.isnan(lc.counts[1]).all() and np.isnan(lc.ts[1]).all()
    assert np.isnan(lc.flux.value[1]).all()  # never a zero flux
    table = lc.to_table(format="lightcurve", sed_type="flux")
    assert not table["success"][1].any() and np.isnan(table["flux"][1]).all()


def test_no_data_in_any_interval_is_an_error(quick):
    last = _interval(quick["ds"], len(quick["ds"]) - 1)
    intervals = [(last[1] + 1 * u.h, last[1] + 2 * u.h)]
    with pytest.raises(EstimatorInputError, match="no dataset lies in any of the 1 time intervals"):
        LightCurveEstimator(time_intervals=intervals, **quick["kwargs"]).run(quick["ds"])


@pytest.mark.parametrize("case,match", [
    ("unordered", "starts before interval 0"),
    ("overlapping", "overlaps interval 0"),
    ("reversed", "is not after start"),
    ("not_pairs", "expected a .start, stop. pair"),
])
def test_bad_intervals_are_errors(case, match):
    t = Time("2006-07-29T20:00:00", scale="tt")
    h = 1 * u.h
    intervals = {"unordered": [(t + 2 * h, t + 3 * h), (t, t + h)],
                 "overlapping": [(t, t + 2 * h), (t + h, t + 3 * h)],
                 "reversed": [(t + h, t)],
                 "not_pairs": [t]}[case]
    with pytest.raises(EstimatorInputError, match=match):
        LightCurveEstimator(time_intervals=intervals)


def test_touching_intervals_are_fine():
    t = Time("2006-07-29T20:00:00", scale="tt")
    est = LightCurveEstimator(time_intervals=[(t, t + 1 * u.h), (t + 1 * u.h, t + 2 * u.h)])
    assert len(est.time_intervals) == 2


def test_unknown_source_is_an_error(quick):
    with pytest.raises(EstimatorInputError, match="source 'crab' is not among the models"):
        LightCurveEstimator(energy_edges=EDGES, source="crab").run(quick["ds"])
    with pytest.raises(EstimatorInputError, match="out of range"):
        LightCurveEstimator(energy_edges=EDGES, source=99).run(quick["ds"])


def test_stacking_per_interval_is_refused():
    with pytest.raises(NotImplementedError, match="stack_over_time_interval"):
        LightCurveEstimator(stack_over_time_interval=True)


def test_select_time_follows_gammapy(quick):
    """A dataset is selected only when its whole GTI lies in the interval (with atol)."""
    ds = quick["ds"]
    t0, t1 = _interval(ds, 1)
    assert Datasets(ds).select_time(t0, t1).names == [ds[1].name]
    assert Datasets(ds).select_time(t0 + 1 * u.s, t1).names == []
    assert Datasets(ds).select_time(t0 + 0.5e-6 * u.s, t1).names == [ds[1].name]  # within atol
    gp = quick["gp_ds"]
    g0, g1 = run_intervals(gp)[1]
    assert gp.select_time(g0, g1).names == Datasets(ds).select_time(t0, t1).names


# --- config, pipeline step, figure ------------------------------------------------------------------
CONFIG = """
datasets: {type: 3d, geom: {wcs: {skydir: {frame: icrs, lon: 329.71694 deg, lat: -30.2255 deg}}}}
light_curve:
  energy_edges: {min: 0.7 TeV, max: 10 TeV, nbins: 1}
  source: pks2155
  parameters: {selection_optional: [ul]}
"""


def test_pipeline_step_writes_gammapy_tables(quick, tmp_path):
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.pipeline.light_curve import run_light_curve, write_light_curve

    config = AnalysisConfig.from_yaml(CONFIG)
    lc = run_light_curve(quick["ds"], config)
    _assert_bits(lc, LightCurveEstimator(energy_edges=[0.7, 10] * u.TeV, source="pks2155",
                                         selection_optional=["ul"]).run(quick["ds"]))
    paths = write_light_curve(lc, tmp_path)
    assert [p.name for p in paths] == ["light_curve.ecsv", "light_curve.fits"]
    back = FluxPoints.read(paths[0])
    np.testing.assert_allclose(back.norm, lc.norm, rtol=1e-12)
    assert run_light_curve(quick["ds"], AnalysisConfig.from_yaml(CONFIG.split("light_curve")[0])) is None


def test_pipeline_step_unknown_source_names_the_key(quick):
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.errors import ConfigError
    from gamma_ray_dist.pipeline.light_curve import run_light_curve

    with pytest.raises(ConfigError) as info:
        run_light_curve(quick["ds"], AnalysisConfig.from_yaml(CONFIG.replace("source: pks2155", "source: crab")))
    assert info.value.key == "light_curve.source"


@pytest.mark.parametrize("text,key", [
    ("time_intervals: {start: ['2006-07-29T21:00', '2006-07-29T20:00'], stop: ['2006-07-29T22:00', "
     "'2006-07-29T20:30']}", "light_curve.time_intervals.start"),
    ("time_intervals: {start: ['2006-07-29T20:00', '2006-07-29T20:30'], stop: ['2006-07-29T21:00', "
     "'2006-07-29T21:30']}", "light_curve.time_intervals.start"),
    ("time_intervals: {start: ['2006-07-29T20:00'], stop: ['2006-07-29T19:00']}", "light_curve.time_intervals.stop"),
    ("parameters: {n_sigma_ul: -2}", "light_curve.parameters.n_sigma_ul"),
    ("parameters: {nsigma: 2}", "light_curve.parameters.nsigma"),
    ("parameters: {atol: 1 m}", "light_curve.parameters.atol"),
    ("parameters: {stack_over_time_interval: true}", "light_curve.parameters.stack_over_time_interval"),
    ("energy_edge: {min: 1 TeV}", "light_curve.energy_edge"),
])
def test_config_errors_name_the_key(text, key):
    from gamma_ray_dist.config import AnalysisConfig
    from gamma_ray_dist.errors import ConfigError

    base = CONFIG.replace("  parameters: {selection_optional: [ul]}\n", "")
    with pytest.raises(ConfigError) as info:
        AnalysisConfig.from_yaml(base + "  " + text + "\n")
    assert info.value.key == key


def test_config_section_round_trips_through_gammapy():
    pytest.importorskip("gammapy")
    from gammapy.analysis import AnalysisConfig as GPConfig

    from gamma_ray_dist.config import AnalysisConfig

    text = CONFIG + "  time_intervals: {start: ['2006-07-29T20:00:00', '2006-07-29T21:00:00'], " \
                    "stop: ['2006-07-29T21:00:00', '2006-07-29T22:00:00']}\n"
    ours = AnalysisConfig.from_yaml(text)
    assert ours.light_curve.requested
    gp = GPConfig.from_yaml(ours.to_yaml(gammapy_compatible=True))
    assert gp.light_curve.source == "pks2155"
    assert list(gp.light_curve.time_intervals.start.isot) == [t.isot for t, _ in ours.light_curve.intervals()]
    assert gp.light_curve.energy_edges.nbins == 1
    kwargs = ours.light_curve.estimator_kwargs()
    assert kwargs["selection_optional"] == ("ul",) and len(kwargs["time_intervals"]) == 2
    # gammapy dumps the section with nothing set in every config: not a light-curve request for us
    gp_default = GPConfig.from_yaml(text)
    gp_default.light_curve.energy_edges.min = None
    gp_default.light_curve.energy_edges.max = None
    gp_default.light_curve.energy_edges.nbins = None
    gp_default.light_curve.time_intervals.start = None
    gp_default.light_curve.time_intervals.stop = None
    assert not AnalysisConfig.from_yaml(gp_default.to_yaml()).light_curve.requested


def test_light_curve_figure(quick, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from gamma_ray_dist.pipeline.light_curve import write_light_curve_figure
    from gamma_ray_dist.visualization import light_curve_values

    lc = quick["ours"]
    lc.is_ul = np.array([[True], [False], [False]])  # force one upper limit onto the plot
    try:
        values = light_curve_values(lc)
        assert values["is_ul"].tolist() == [True, False, False]
        np.testing.assert_allclose(values["value"], lc.flux.to_value("cm-2 s-1")[:, 0])
        fig = Figure()
        FigureCanvasAgg(fig)
        ax = lc.plot(ax=fig.add_subplot(1, 1, 1))
        assert ax.get_xlabel() == "Time [MJD]"
        path = write_light_curve_figure(lc, tmp_path)
        assert path.exists() and path.stat().st_size > 1000
    finally:
        del lc._data["is_ul"]


# --- the 21 runs of DR1 ------------------------------------------------------------------------------
@pytest.mark.slow
def test_flare_light_curve_matches_gammapy(hess_dr1):
    """21 runs, one bin per run, 0.7-10 TeV, errn-errp and ul; datasets reduced by each library."""
    pytest.importorskip("gammapy")
    gp_ds = per_run_datasets(lib("gammapy"), hess_dr1, PKS_RUNS)
    ours_ds = per_run_datasets(lib("ours"), hess_dr1, PKS_RUNS)
    kwargs = dict(energy_edges=EDGES, source="pks2155", selection_optional=["errn-errp", "ul"])
    theirs = _gammapy_light_curve(gp_ds, time_intervals=run_intervals(gp_ds), **kwargs)
    ours = LightCurveEstimator(time_intervals=run_intervals(ours_ds), **kwargs).run(ours_ds)
    assert len(ours.time_min) == len(PKS_RUNS) == theirs.geom.axes["time"].nbin
    _compare(ours, theirs)
    np.testing.assert_array_equal(ours.counts, theirs.counts.data.reshape(ours.counts.shape))


def test_default_bins_merge_overlapping_gtis_only():
    """Without time_intervals: the GTI rows sorted, overlapping ones merged, touching ones kept apart
    (gammapy's ``gti.union(overlap_ok=False, merge_equal=False)``)."""
    from types import SimpleNamespace

    from gamma_ray_dist.data.gti import GTI
    from gamma_ray_dist.estimators.lightcurve import intervals_from_gti

    t = Time("2006-07-29T20:00:00", scale="tt")
    h = 1 * u.h
    fake = [SimpleNamespace(gti=GTI.create([3, 0] * h, [4, 1.5] * h, t)),  # unsorted rows
            SimpleNamespace(gti=GTI.create([1] * h, [2] * h, t)),          # overlaps [0, 1.5]
            SimpleNamespace(gti=GTI.create([4] * h, [5] * h, t))]          # touches [3, 4]
    bins = intervals_from_gti(fake)
    got = [((a - t).to_value("h"), (b - t).to_value("h")) for a, b in bins]
    np.testing.assert_allclose(got, [(0, 2), (3, 4), (4, 5)], atol=1e-9)


def test_dataset_across_a_bin_edge_is_reported(quick, caplog):
    """A dataset whose GTI is cut by an interval edge belongs to no bin (gammapy's rule): warned."""
    ds = quick["ds"]
    t0, t1 = _interval(ds, 0)
    mid = t0 + 0.5 * (t1 - t0)
    with caplog.at_level("WARNING"):
        lc = LightCurveEstimator(time_intervals=[(t0, mid), (mid, _interval(ds, 1)[1])], **quick["kwargs"]).run(ds)
    # the first run is cut by the edge, the third lies after the last interval
    assert f"datasets ['{ds[0].name}', '{ds[2].name}'] lie in no time interval" in caplog.text
    assert np.isnan(lc.norm[0]).all() and np.isfinite(lc.norm[1]).all()
