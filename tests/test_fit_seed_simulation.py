"""Simulation closure on the seed's stacked dataset: counts drawn from a known model are fitted back.

Truth = gammapy's best fit of the seed (``crab_seed_gammapy.json``). For each realisation (fixed seeds)
``fake`` draws Poisson counts from ``npred`` and the fit restarts from the seed start values. Pulls
``(fit - truth) / error`` must be consistent with a unit Gaussian: each within 4, and their mean over
realisations within 3 / sqrt(n) of 0 for every parameter.
"""
import numpy as np

from gamma_ray_dist.datasets.map import MapDataset
from gamma_ray_dist.modeling import Fit

from .test_fit_seed import SEED, STACKED, seed_models

N_REALISATIONS = 5


def _set(models, values: dict) -> None:
    for m in models:
        for p in m.parameters:
            key = (m.name if m.name == "crab" else "bkg", p.name)
            if key in values:
                p.value = values[key]


def test_fake_and_fit_back(reference_dir, seed_reference):
    truth = {("crab" if p["model"] == "crab" else "bkg", p["name"]): p["value"]
             for p in seed_reference["fit"]["parameters"] if not p["frozen"]}
    start = {("crab", k): v for k, v in SEED.items()}
    start[("bkg", "norm")] = 1.0
    dataset = MapDataset.read(reference_dir / STACKED)
    dataset.models = seed_models(dataset.name)

    pulls = {key: [] for key in truth}
    for seed in range(N_REALISATIONS):
        _set(dataset.models, truth)
        dataset.fake(random_state=seed)
        _set(dataset.models, start)
        result = Fit().run([dataset])
        assert result.success, (seed, result.message)
        for m in dataset.models:
            for p in m.parameters:
                key = (m.name if m.name == "crab" else "bkg", p.name)
                if key in truth:
                    assert p.error > 0
                    pulls[key].append((p.value - truth[key]) / p.error)

    for key, values in pulls.items():
        values = np.array(values)
        assert np.all(np.abs(values) < 4), (key, values)
        assert abs(values.mean()) < 3 / np.sqrt(N_REALISATIONS), (key, values)
