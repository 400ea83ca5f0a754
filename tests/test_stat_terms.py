"""The fit's hot path: the Cash statistic from precomputed sums (`datasets.stat_terms`) and the caches of
`MapEvaluator`, against the dense path and against evaluations with every value cache dropped.

A cached evaluation must never be served for changed parameters: random walks over all parameters
(spectral, spatial, background norm and tilt, frozen ones too, unit changes, returns to earlier values)
compare, at every step, the cached statistic with (a) the dense path on the same dataset and (b) a twin
dataset evaluated with all its value caches dropped (same anchor history, so bit-identical).
"""
from __future__ import annotations

import numpy as np
import pytest
from astropy import units as u

from gamma_ray_dist.datasets.convolution import KernelFFT, convolve_same
from gamma_ray_dist.datasets.evaluator import extended_source_fraction
from gamma_ray_dist.datasets.map import MapDataset
from gamma_ray_dist.maps import Map
from gamma_ray_dist.modeling.models import (
    FoVBackgroundModel,
    GaussianSpatialModel,
    PointSpatialModel,
    PowerLawSpectralModel,
    SkyModel,
)

STACKED = "crab_stacked_gammapy.fits.gz"
DNDE = u.Unit("cm-2 s-1 TeV-1")


def _models(name: str, extended: bool) -> list:
    spectral = PowerLawSpectralModel(index=2.7, amplitude=4.7e-11 * DNDE, reference=1 * u.TeV)
    if extended:
        spatial = GaussianSpatialModel(lon_0=83.633 * u.deg, lat_0=22.014 * u.deg, sigma=0.1 * u.deg, frame="icrs")
    else:
        spatial = PointSpatialModel(lon_0=83.633 * u.deg, lat_0=22.014 * u.deg, frame="icrs")
    return [SkyModel(spectral, spatial, name="src"), FoVBackgroundModel(dataset_name=name)]


@pytest.fixture(scope="module")
def path(reference_dir):
    return reference_dir / STACKED


def _dataset(path, extended=False) -> MapDataset:
    ds = MapDataset.read(path)
    ds.models = _models(ds.name, extended)
    return ds


def _drop_value_caches(ds: MapDataset) -> None:
    """Forget every parameter-keyed cache but keep each evaluator's setup (anchor, cutout, kernels)."""
    for ev in ds.evaluators.values():
        setup, n_updates, maker = ev.setup, ev.n_updates, ev._kernel_maker
        ev.reset()
        ev.setup, ev.n_updates, ev._kernel_maker = setup, n_updates, maker
        ev.model.spectral_model.__dict__.pop("_integral_memo", None)  # shared by the model's datasets
    ds._stat_cache = None
    ds._cash_static = None
    ds._background_factor_cache = (None, None)


def _pars(ds) -> dict:
    return {(m.name, p.name): p for m in ds.models for p in m.parameters}


def _walk(path, extended: bool, n_steps: int, seed: int):
    ds, twin = _dataset(path, extended), _dataset(path, extended)
    pars, twin_pars = _pars(ds), _pars(twin)
    rng = np.random.default_rng(seed)
    steps = {
        ("src", "amplitude"): lambda v: v * rng.uniform(0.8, 1.25),
        ("src", "index"): lambda v: v + rng.normal(0, 0.05),
        ("src", "lon_0"): lambda v: v + rng.normal(0, 0.03),  # sometimes beyond the 0.1 deg re-anchoring
        ("src", "lat_0"): lambda v: v + rng.normal(0, 0.03),
        (ds.background_model.name, "norm"): lambda v: v * rng.uniform(0.95, 1.05),
        (ds.background_model.name, "tilt"): lambda v: v + rng.normal(0, 0.02),  # frozen: changes too
    }
    if extended:
        steps[("src", "sigma")] = lambda v: abs(v * rng.uniform(0.8, 1.25))
    keys = list(steps)
    history = []
    seen = {}
    for _ in range(n_steps):
        if history and rng.uniform() < 0.2:  # back to an earlier point: the same value must come back
            values = history[rng.integers(len(history))]
            for key, value in values.items():
                pars[key].value = value
        else:
            for idx in rng.choice(len(keys), size=rng.integers(1, 3), replace=False):
                par = pars[keys[idx]]
                par.value = steps[keys[idx]](par.value)
        values = {key: par.value for key, par in pars.items()}
        history.append(values)
        for key, value in values.items():
            twin_pars[key].value = value
        stat = ds.stat_sum()
        _drop_value_caches(twin)
        assert stat == twin.stat_sum(), values  # same anchors, no value cache: bit-identical
        assert stat == pytest.approx(ds._stat_sum_dense(), rel=1e-11, abs=1e-8), values
        frozen = tuple(sorted(values.items())) + (tuple(ev.n_updates for ev in ds.evaluators.values()),)
        if frozen in seen:
            assert stat == seen[frozen]
        seen[frozen] = stat
    return ds


def test_point_source_walk_never_serves_stale_values(path):
    ds = _walk(path, extended=False, n_steps=60, seed=1)
    assert ds.evaluators["src"].n_updates > 1  # the walk re-anchored at least once


def test_extended_source_walk_never_serves_stale_values(path):
    _walk(path, extended=True, n_steps=40, seed=2)


def test_unit_change_and_negative_amplitude(path):
    ds = _dataset(path)
    amplitude = ds.models["src"].spectral_model.amplitude
    base = ds.stat_sum()
    amplitude.quantity = amplitude.quantity.to("m-2 s-1 TeV-1")  # same flux, another unit
    assert amplitude.unit == u.Unit("m-2 s-1 TeV-1")
    assert ds.stat_sum() == pytest.approx(base, rel=1e-12)
    amplitude.value = -amplitude.value  # negative prediction: the dense path (mu clipped at 0)
    negative = ds.stat_sum()
    assert negative == ds._stat_sum_dense()
    assert negative != pytest.approx(base, rel=1e-6)
    amplitude.value = -amplitude.value
    assert ds.stat_sum() == pytest.approx(base, rel=1e-12)


def test_replaced_or_edited_maps_invalidate(path):
    ds = _dataset(path)
    base = ds.stat_sum()
    # a new counts map (e.g. fake()): detected by identity
    ds.fake(random_state=0)
    faked = ds.stat_sum()
    assert faked != base and faked == pytest.approx(ds._stat_sum_dense(), rel=1e-11)
    # a new fit mask
    mask = np.ones(ds.counts.data.shape, dtype=bool)
    mask[:, :50] = False
    ds.mask_fit = Map.from_geom(ds.counts.geom, data=mask, dtype=bool)
    masked = ds.stat_sum()
    assert masked != faked and masked == pytest.approx(ds._stat_sum_dense(), rel=1e-11)
    # in-place edit + reset_evaluators (documented)
    ds.counts.data[:, 60:, 60:] = 0
    ds.reset_evaluators()
    edited = ds.stat_sum()
    assert edited != masked and edited == pytest.approx(ds._stat_sum_dense(), rel=1e-11)


def test_stack_resets_the_statistic(path):
    ds = _dataset(path)
    other = MapDataset.read(path)
    before = ds.stat_sum()
    ds.stack(other)  # counts edited in place
    after = ds.stat_sum()
    assert after != before
    assert after == pytest.approx(ds._stat_sum_dense(), rel=1e-11)


def test_kernel_fft_matches_convolve_same():
    rng = np.random.default_rng(3)
    kernel = rng.uniform(size=(3, 9, 9))
    kernel /= kernel.sum(axis=(1, 2), keepdims=True)
    for shape in [(20, 31), (7, 5)]:
        fft = KernelFFT(kernel, shape)
        image = rng.uniform(size=shape)
        np.testing.assert_allclose(fft.convolve(image), convolve_same(image, kernel), rtol=0, atol=1e-13)
        cube = rng.uniform(size=(3,) + shape)
        np.testing.assert_allclose(fft.convolve(cube), convolve_same(cube, kernel), rtol=0, atol=1e-13)
    with pytest.raises(ValueError):
        fft.convolve(np.zeros((4, 4)))


def test_extended_fraction_memo_is_exact(path):
    ds = _dataset(path, extended=True)
    geom = ds.counts.geom.to_image()
    spatial = ds.models["src"].spatial_model
    memo = {}
    rng = np.random.default_rng(4)
    for _ in range(25):
        spatial.lon_0.value = 83.633 + rng.normal(0, 0.05)
        spatial.lat_0.value = 22.014 + rng.normal(0, 0.05)
        spatial.sigma.value = rng.choice([0.02, 0.05, 0.1, 0.3])
        np.testing.assert_array_equal(extended_source_fraction(spatial, geom, "icrs", cache=memo),
                                      extended_source_fraction(spatial, geom, "icrs"))
    assert memo  # windows were memoised


def test_joint_datasets_sharing_a_model(path):
    """Two datasets, one sky model object (a joint fit): the model's integral memo is shared, each
    dataset's statistic still follows every change."""
    a = MapDataset.read(path)
    b = a.copy(name="other")
    models = _models(a.name, extended=False)
    sky = models[0]
    a.models = models
    b.models = [sky, FoVBackgroundModel(dataset_name="other")]
    twin_a, twin_b = MapDataset.read(path), a.copy(name="other")
    twin_sky = _models(a.name, extended=False)[0]
    twin_a.models = [twin_sky, FoVBackgroundModel(dataset_name=a.name)]
    twin_b.models = [twin_sky, FoVBackgroundModel(dataset_name="other")]
    rng = np.random.default_rng(5)
    spectral, twin_spectral = sky.spectral_model, twin_sky.spectral_model
    for step in range(20):
        name = ["index", "amplitude"][step % 2]
        value = getattr(spectral, name).value * rng.uniform(0.9, 1.1)
        getattr(spectral, name).value = value
        getattr(twin_spectral, name).value = value
        for ds, twin in ((a, twin_a), (b, twin_b)):
            stat = ds.stat_sum()
            _drop_value_caches(twin)
            assert stat == twin.stat_sum()
            assert stat == pytest.approx(ds._stat_sum_dense(), rel=1e-11)
    assert a.evaluators["src"]._spectral_cache[1] is b.evaluators["src"]._spectral_cache[1]  # shared
