"""The fast path against the makers, and the fast IRF interpolation, on a simulated DL3 store.

The same checks as tests/test_reduction.py and the makers' IRF projections run on H.E.S.S. DR1 when
``../shared`` is present; these run on a small store written by `gamma_ray_dist.simulate`, so a
checkout without the shared data still covers them.
"""
from __future__ import annotations

import numpy as np
import pytest

from gamma_ray_dist.data import DataStore
from gamma_ray_dist.makers.fastinterp import evaluate_grid, evaluate_outer, supports_fast
from gamma_ray_dist.reduction import reduce_observation, reduce_with_makers
from gamma_ray_dist.simulate import simulate_datastore

from .test_reduction import _assert_partials_equal, _seed_spec

OBS_IDS = (1, 2, 3)


@pytest.fixture(scope="module")
def sim_store(tmp_path_factory):
    return simulate_datastore(tmp_path_factory.mktemp("sim-reduction") / "store", n_obs=len(OBS_IDS), seed=5)


@pytest.mark.parametrize("kwargs", [
    {},
    {"safe_mask_methods": ("offset-max", "aeff-max", "aeff-default", "bkg-peak"), "fov_method": "scale"},
    {"fov_method": None, "safe_mask_kwargs": {"aeff_percent": 30}, "cutout_width": 3.0},
])
def test_fast_path_matches_makers_on_simulated_store(sim_store, kwargs):
    spec = _seed_spec(**kwargs)
    store = DataStore.from_dir(sim_store)
    for obs_id in OBS_IDS:
        fast = reduce_observation(store.obs(obs_id), spec)
        assert "read" in fast.timings  # the fast path ran
        ref = reduce_with_makers(store.obs(obs_id), spec)
        _assert_partials_equal(fast, ref)
        assert fast.counts.sum() > 0


def _grid(irf, outer: dict, joint: dict) -> np.ndarray:
    """``irf.evaluate_values`` broadcast on the same grid as `evaluate_grid` (the reference)."""
    names = list(irf.required_axes)
    n_outer = len(outer)
    shape_p = np.shape(next(iter(joint.values())))
    coords = {}
    for i, (name, values) in enumerate(outer.items()):
        shape = [1] * (n_outer + len(shape_p))
        shape[i] = len(values)
        coords[name] = np.reshape(values, shape)
    for name, values in joint.items():
        coords[name] = np.reshape(values, (1,) * n_outer + shape_p)
    full = np.broadcast_shapes(*(np.shape(v) for v in coords.values()))
    return irf.evaluate_values(**{n: np.broadcast_to(coords[n], full) for n in names})


def test_fastinterp_matches_irf_evaluation_on_simulated_irfs(sim_store):
    obs = DataStore.from_dir(sim_store).obs(OBS_IDS[0])
    rng = np.random.default_rng(3)
    offset = rng.uniform(0.0, 3.0, size=(7, 5))
    e = np.geomspace(0.05, 80.0, 9)  # beyond the tables: extrapolation and fill
    checked = 0
    for irf, outer, joint in (
            (obs.aeff, {"energy_true": e}, {"offset": offset}),
            (obs.edisp, {"energy_true": e, "migra": np.linspace(0.1, 3.0, 11)}, {"offset": offset}),
            (obs.bkg, {"energy": e}, {"fov_lon": rng.uniform(-3, 3, (7, 5)), "fov_lat": rng.uniform(-3, 3, (7, 5))}),
            (obs.psf, {"energy_true": e, "rad": np.linspace(0.0, 0.5, 6)}, {"offset": offset})):
        if not supports_fast(irf) or not set(outer) | set(joint) <= set(irf.required_axes):
            continue
        ref = _grid(irf, outer, joint)
        got = evaluate_grid(irf, outer, joint)
        np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-300 + 1e-12 * np.abs(ref).max())
        first = evaluate_grid(irf, outer, joint, joint_first=True)  # layout P + outer axes
        np.testing.assert_allclose(np.moveaxis(first, [0, 1], [-2, -1]), got, rtol=1e-12, atol=0)
        checked += 1
    assert checked >= 3  # effective area, energy dispersion, background (the PSF is parametric)


def test_evaluate_outer_matches_irf_evaluation_on_simulated_aeff(sim_store):
    aeff = DataStore.from_dir(sim_store).obs(OBS_IDS[0]).aeff
    e = np.geomspace(0.1, 50.0, 6).reshape(-1, 1, 1)
    offset = np.linspace(0.0, 2.5, 12).reshape(1, 3, 4)
    ref = aeff.evaluate_values(energy_true=np.broadcast_to(e, (6, 3, 4)), offset=np.broadcast_to(offset, (6, 3, 4)))
    np.testing.assert_allclose(evaluate_outer(aeff, energy_true=e, offset=offset), ref, rtol=1e-10)


def test_compact_block_state_gives_back_the_same_sums(sim_store):
    """What a task ships (cropped to its observations' windows, narrow counts) restores the exact sums."""
    from gamma_ray_dist.datasets.accumulator import StackAccumulator
    from gamma_ray_dist.datasets.partial import StackGeometry

    spec = _seed_spec(cutout_width=1.0)  # cutouts smaller than the stacked map: a real window
    store = DataStore.from_dir(sim_store)
    geometry = StackGeometry.from_dataset(spec.stacked_dataset())
    block = StackAccumulator(geometry, "stacked")
    for obs_id in OBS_IDS:
        block.add(reduce_observation(store.obs(obs_id), spec))
    full, compact = block.state(), block.transport_state()
    (y0, y1), (x0, x1) = compact["window"]["fine"]
    ny, nx = full["buffers"]["counts"].shape[-2:]
    assert 0 < (y1 - y0) * (x1 - x0) < ny * nx
    assert compact["buffers"]["counts"].dtype.itemsize < full["buffers"]["counts"].dtype.itemsize

    def nbytes(state):
        return sum(v.nbytes for v in state["buffers"].values() if v is not None)

    assert nbytes(compact) < 0.8 * nbytes(full)
    restored = StackAccumulator.from_state(compact).state()
    for key, value in full["buffers"].items():
        got = restored["buffers"][key]
        assert (got is None) == (value is None), key
        if value is not None:
            assert got.dtype == value.dtype and got.tobytes() == value.tobytes(), key
    # merged after an earlier block, the compact and the full state give the same bits
    first = StackAccumulator(geometry, "stacked")
    first.add(reduce_observation(store.obs(OBS_IDS[0]), _seed_spec()))
    merged = []
    for state in (full, compact):
        root = StackAccumulator.from_state(first.state())
        root.obs_ids = []  # the same observations twice: only the sums matter here
        root.merge(StackAccumulator.from_state(state))
        merged.append(root.state())
    for key, value in merged[0]["buffers"].items():
        if value is not None:
            assert merged[1]["buffers"][key].tobytes() == value.tobytes(), key
