"""Tests of gamma_ray_dist.simulate: analytic IRFs, event sampling, GADF writer, gammapy loading."""
from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table

from gamma_ray_dist.simulate import (
    AnalyticIRFs,
    SourceModel,
    angular_separation,
    edisp_bias,
    edisp_sigma,
    expected_background_counts,
    expected_signal_counts,
    plan_observations,
    psf_3gauss_params,
    sample_events,
    simulate_datastore,
    truth,
)
from gamma_ray_dist.simulate.fitsbytes import bintable_bytes, primary_bytes

IRFS = AnalyticIRFs()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return simulate_datastore(tmp_path_factory.mktemp("sim") / "store", n_obs=4, seed=1)


# --- analytic IRFs -------------------------------------------------------------------------


def test_psf_and_edisp_are_normalised():
    rad = np.linspace(0, 2.0, 20001)  # deg
    for e, th in [(0.1, 0.0), (1.0, 0.5), (30.0, 2.0)]:
        dens = IRFS.psf(rad, e, th)  # sr-1
        integral = np.trapezoid(dens * 2 * np.pi * np.sin(np.radians(rad)), np.radians(rad))
        assert integral == pytest.approx(1.0, rel=1e-3)
        migra = np.linspace(-1, 4, 20001)
        assert np.trapezoid(IRFS.edisp(migra, e, th), migra) == pytest.approx(1.0, rel=1e-6)


def test_aeff_shape():
    e = np.geomspace(0.05, 100, 50)
    a = IRFS.aeff(e, 0.0)
    assert np.all(np.diff(a) > 0) and a[-1] < IRFS.aeff_max
    assert IRFS.aeff(1.0, 2.0) < IRFS.aeff(1.0, 0.5)


def test_truth_names():
    t = truth()
    assert t["spatial_model"] == "PointSpatialModel" and t["spectral_model"] == "PowerLawSpectralModel"
    assert (t["lon_0"], t["lat_0"], t["index"]) == (83.6331, 22.0145, 2.6)
    lp = truth(SourceModel(spatial="gauss", sigma=0.2, spectral="lp"))
    assert lp["sigma"] == 0.2 and {"alpha", "beta"} <= set(lp)
    with pytest.raises(ValueError):
        SourceModel(spatial="gauss")


# --- FITS serialisation ----------------------------------------------------------------------


def test_fitsbytes_roundtrip():
    t = np.array([1.5, 2.5, 3.25])
    raw = primary_bytes() + bintable_bytes(
        "EVENTS",
        [("TIME", "D", "s", t), ("ENERGY", "E", "TeV", t * 2), ("EVENT_ID", "K", None, np.arange(3))],
        [("OBS_ID", 7, "id"), ("DEADC", 0.95, ""), ("LIVETIME", 1800.0, ""), ("OBJECT", "a 'q'", ""), ("FLAG", True, "")],
    )
    assert len(raw) % 2880 == 0
    with fits.open(__import__("io").BytesIO(raw)) as hdul:
        hdul.verify("exception")
        h = hdul["EVENTS"].header
        assert (h["OBS_ID"], h["DEADC"], h["OBJECT"], h["FLAG"]) == (7, 0.95, "a 'q'", True)
        assert isinstance(h["LIVETIME"], float)
        d = hdul["EVENTS"].data
        np.testing.assert_array_equal(d["TIME"], t)
        assert hdul["EVENTS"].columns["ENERGY"].unit == "TeV"


# --- sampling --------------------------------------------------------------------------------


def test_event_counts_are_poisson_consistent():
    """Summed counts of 40 observations agree with the expected counts within 4 sigma."""
    src = SourceModel()
    n_sig = n_bkg = mu_sig = mu_bkg = 0.0
    for obs_id in range(1, 41):
        rng = np.random.default_rng([3, obs_id])
        ev = sample_events(rng, IRFS, src, src.ra, src.dec + 0.5, 1800.0, 0.0, 1900.0)
        n_sig += ev.mc_id.sum()
        n_bkg += (ev.mc_id == 0).sum()
        mu_sig += ev.n_expected_signal
        mu_bkg += ev.n_expected_background
    assert abs(n_sig - mu_sig) < 4 * np.sqrt(mu_sig)
    assert abs(n_bkg - mu_bkg) < 4 * np.sqrt(mu_bkg)


def test_expected_counts_by_quadrature():
    """Expected signal counts equal a brute-force integral of dnde x aeff x livetime."""
    src = SourceModel()
    e = np.geomspace(IRFS.energy_true_edges[0], IRFS.energy_true_edges[-1], 200001)
    offset = 0.5
    brute = np.trapezoid(src.dnde(e) * IRFS.aeff(e, offset) * 1e4, e) * 1800.0
    mu = expected_signal_counts(IRFS, src, src.ra, src.dec + offset, 1800.0)
    assert mu == pytest.approx(brute, rel=1e-4)
    # background: integrate the rate over a fine FoV grid and energy
    x = np.linspace(IRFS.fov_edges[0], IRFS.fov_edges[-1], 1201)
    eb = np.geomspace(IRFS.energy_edges[0], IRFS.energy_edges[-1], 4001)
    spatial = np.trapezoid(np.trapezoid(np.exp(-0.5 * (x[:, None] ** 2 + x**2) / IRFS.aeff_offset_sigma**2), x), x)
    spec = np.trapezoid(IRFS.bkg(eb, 0.0, 0.0) * 1e6, eb)
    assert expected_background_counts(IRFS, 1800.0) == pytest.approx(spec * spatial * np.radians(1) ** 2 * 1800,
                                                                      rel=1e-4)


def test_signal_psf_and_edisp_distributions():
    """Sampled offsets and migra follow the analytic PSF / Gaussian energy dispersion."""
    src = SourceModel(amplitude=3e-10)  # bright: many events
    ev = sample_events(np.random.default_rng(5), IRFS, src, src.ra, src.dec + 0.5, 1800.0, 0.0, 1900.0)
    sig = ev.mc_id == 1
    e_true = ev.energy_true[sig]
    assert sig.sum() > 2000
    # PSF containment at 0.1 deg: observed fraction vs the per-event analytic expectation
    r = angular_separation(src.ra, src.dec, ev.ra[sig], ev.dec[sig])
    p = psf_3gauss_params(IRFS, e_true, 0.5)
    w = np.asarray(IRFS.psf_weights)
    cont = sum(w[i] * (1 - np.exp(-0.5 * 0.1**2 / p[f"sigma_{i + 1}"] ** 2)) for i in range(3))
    frac = np.mean(r < 0.1)
    assert abs(frac - cont.mean()) < 4 * np.sqrt(cont.mean() * (1 - cont.mean()) / sig.sum())
    # energy dispersion: standardised migra ~ N(0, 1)
    z = (ev.energy[sig] / e_true - 1 - edisp_bias(IRFS, e_true)) / edisp_sigma(IRFS, e_true)
    assert abs(z.mean()) < 4 / np.sqrt(sig.sum())
    assert z.std() == pytest.approx(1.0, abs=0.03)


def test_gaussian_source_and_logparabola():
    src = SourceModel(spatial="gauss", sigma=0.3, spectral="lp")
    mu = expected_signal_counts(IRFS, src, src.ra, src.dec + 0.5, 1800.0)
    ev = sample_events(np.random.default_rng(9), IRFS, src, src.ra, src.dec + 0.5, 1800.0, 0.0, 1900.0)
    n = ev.mc_id.sum()
    assert abs(n - mu) < 5 * np.sqrt(mu)
    r = angular_separation(src.ra, src.dec, ev.ra[ev.mc_id == 1], ev.dec[ev.mc_id == 1])
    assert 0.25 < np.median(r) < 0.45  # Rayleigh median 1.18 sigma, broadened by the PSF


# --- data store --------------------------------------------------------------------------------


def test_store_layout_and_headers(store):
    hdu = Table.read(store / "hdu-index.fits.gz")
    obs = Table.read(store / "obs-index.fits.gz")
    assert hdu.meta["HDUCLAS2"] == "HDU" and obs.meta["HDUCLAS2"] == "OBS"
    assert len(hdu) == 4 * 7 and list(obs["OBS_ID"]) == [1, 2, 3, 4]
    for col in ("RA_PNT", "DEC_PNT", "GLON_PNT", "GLAT_PNT", "ZEN_PNT", "ALT_PNT", "AZ_PNT", "ONTIME", "LIVETIME",
                "DEADC", "TSTART", "TSTOP", "DATE-OBS", "TIME-OBS", "N_TELS", "OBJECT", "EVENT_COUNT"):
        assert col in obs.colnames
    np.testing.assert_allclose(obs["OFFSET_OBJ"], 0.5, atol=1e-4)
    assert np.all(obs["ALT_PNT"] > 20)
    with fits.open(store / "data" / "obs_000001.fits.gz") as hdul:
        hdul.verify("exception")
        assert [h.name for h in hdul] == ["PRIMARY", "EVENTS", "GTI", "POINTING", "AEFF", "EDISP", "PSF", "BKG"]
        ev = hdul["EVENTS"].header
        for key in ("OBS_ID", "RA_PNT", "DEC_PNT", "ALT_PNT", "AZ_PNT", "TSTART", "TSTOP", "ONTIME", "LIVETIME",
                    "DEADC", "MJDREFI", "MJDREFF", "TIMESYS", "TIMEUNIT", "TIMEREF"):
            assert key in ev
        assert ev["LIVETIME"] == pytest.approx(ev["ONTIME"] * ev["DEADC"])
        assert hdul["BKG"].header["FOVALIGN"] == "RADEC"
        assert hdul["PSF"].header["HDUCLAS4"] == "PSF_3GAUSS"
        # index SIZE = header + data bytes of each HDU
        sizes = {r["HDU_TYPE"]: r["SIZE"] for r in hdu[hdu["OBS_ID"] == 1]}
        assert sizes["events"] == len(hdul["EVENTS"].header.tostring()) + hdul["EVENTS"]._data_size + (
            -hdul["EVENTS"]._data_size % 2880)
    info = json.loads((store / "truth.json").read_text())
    assert info["truth"] == json.loads(json.dumps(truth()))
    assert info["n_events"] == int(obs["EVENT_COUNT"].sum())


def test_reproducible_and_subset_independent(store, tmp_path):
    again = simulate_datastore(tmp_path / "again", n_obs=4, seed=1)
    subset = simulate_datastore(tmp_path / "subset", obs_ids=[2, 4], seed=1)
    for name in ("obs_000001.fits.gz", "obs_000004.fits.gz"):
        assert (again / "data" / name).read_bytes() == (store / "data" / name).read_bytes()
    assert (subset / "data" / "obs_000004.fits.gz").read_bytes() == (store / "data" / "obs_000004.fits.gz").read_bytes()
    e1 = fits.getdata(store / "data" / "obs_000001.fits.gz", "EVENTS")
    e2 = fits.getdata(store / "data" / "obs_000002.fits.gz", "EVENTS")
    assert len(e1) != len(e2) or not np.array_equal(e1["ENERGY"], e2["ENERGY"])
    other = simulate_datastore(tmp_path / "seed2", n_obs=1, seed=2)
    assert (other / "data" / "obs_000001.fits.gz").read_bytes() != (store / "data" / "obs_000001.fits.gz").read_bytes()


def test_multimember_gzip_is_plain_gzip(store):
    """Observation files are concatenated gzip members; gzip / astropy read them as one stream."""
    raw = gzip.decompress((store / "data" / "obs_000002.fits.gz").read_bytes())
    assert len(raw) % 2880 == 0
    with fits.open(store / "data" / "obs_000002.fits.gz") as hdul:
        assert len(hdul) == 8


def test_plan_observations():
    plan = plan_observations(8, 83.6331, 22.0145)
    sep = angular_separation(plan.ra_pnt, plan.dec_pnt, 83.6331, 22.0145)
    np.testing.assert_allclose(sep, 0.5, atol=1e-9)
    assert np.all(np.diff(plan.tstart) > plan.ontime[:-1])
    assert np.all(plan.alt_pnt > 30)  # scheduled around transit (culmination ~45 deg)
    with pytest.raises(ValueError):
        plan_observations(2, 0, 0, obs_ids=[1, 1])


def test_bench_simulate_prints_ms_per_observation(capsys):
    # The write timing lives in benchmarks/bench_simulate.py (a test asserts, a benchmark measures);
    # this only keeps the script working.
    import runpy

    from .test_cli import ROOT

    bench = runpy.run_path(str(ROOT / "benchmarks" / "bench_simulate.py"))
    bench["main"](["--n-obs", "2", "--repeat", "1"])
    out = capsys.readouterr().out
    assert re.match(r"\[simulate\] 2 observations written: best \d+\.\d+ s \(\d+\.\d ms/obs\)", out), out
